//! The core's errors as the exceptions of `wormhole_sync.errors`, raised by
//! class name so the Python module defines them (docstrings, bases such as
//! `TimeoutError`) and this crate only picks one.

use pyo3::prelude::*;
use wormhole_sync_core::Error;

/// The name of the `wormhole_sync.errors` class an error is raised as.
fn class_of(error: &Error) -> &'static str {
    match error {
        Error::WrongCode => "WrongCodeError",
        Error::Timeout => "ExchangeTimeoutError",
        Error::Crowded => "CrowdedError",
        Error::UnknownChannel => "UnknownChannelError",
        Error::ChannelExpired | Error::ChannelBurned => "ChannelGoneError",
        Error::PeerClosed { .. } | Error::PeerVanished | Error::PeerDeclined => "PeerClosedError",
        Error::ServerUnreachable { .. } => "ServerUnreachableError",
        Error::ServerBusy { .. } => "ServerBusyError",
        Error::ServerRejected { .. } => "ServerRefusedError",
        Error::BadSerializedState(_) => "BadStateError",
        Error::BadCode(_) => "BadCodeError",
        Error::Cancelled => "CancelledError",
        Error::DataTooLarge { .. } | Error::InvalidConfig(_) | Error::ApiMisuse(_) => "UsageError",
        _ => "ProtocolError",
    }
}

/// The server's error code, where the server refused.
fn server_code(error: &Error) -> Option<String> {
    match error {
        Error::ServerBusy { code, .. } | Error::ServerRejected { code, .. } => Some(code.to_string()),
        _ => None,
    }
}

/// The error's text with its causes (why the server could not be reached).
fn message(error: &Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        text = format!("{text}: {inner}");
        cause = inner.source();
    }
    text
}

/// The Python exception for `error`: its class from `wormhole_sync.errors`,
/// its message (never a secret: the core's errors carry none) and the
/// server's code.
pub(crate) fn to_py(py: Python<'_>, error: &Error) -> PyErr {
    let raised = (|| -> PyResult<PyErr> {
        let errors = py.import("wormhole_sync.errors")?;
        let class = errors.getattr(class_of(error))?;
        let exception = class.call1((message(error), server_code(error)))?;
        Ok(PyErr::from_value(exception))
    })();
    raised.unwrap_or_else(|e| e)
}
