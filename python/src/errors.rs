//! The core's errors as the exceptions of `wormhole_sync.errors`, raised by
//! the class name the core gives (`Error::binding_class`), so the Python
//! module defines them (docstrings, bases such as `TimeoutError`) and this
//! crate only picks one.

use pyo3::prelude::*;
use wormhole_sync_core::Error;

/// The Python exception for `error`: its class from `wormhole_sync.errors`,
/// its message (never a secret: the core's errors carry none) and the
/// server's code.
pub(crate) fn to_py(py: Python<'_>, error: &Error) -> PyErr {
    let raised = (|| -> PyResult<PyErr> {
        let errors = py.import("wormhole_sync.errors")?;
        let class = errors.getattr(error.binding_class())?;
        let server_code = error.server_code().map(ToString::to_string);
        let exception = class.call1((error.message_with_causes(), server_code))?;
        Ok(PyErr::from_value(exception))
    })();
    raised.unwrap_or_else(|e| e)
}
