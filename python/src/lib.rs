//! `wormhole_sync._native`: this project's Rust core and tokio client for
//! Python. The Python package (`wormhole_sync.transcribe`,
//! `wormhole_sync.magic_wormhole`, `wormhole_sync.sans_io`) wraps these
//! classes; its exceptions are raised from here by name.
//!
//! Every exchange runs on one tokio runtime per process. Blocking waits
//! release the GIL and check for signals, so a Ctrl-C (`KeyboardInterrupt`)
//! cancels the exchange (closing its channel unless it was serialized) and
//! interrupts the wait promptly; asyncio and Twisted wait by callback.

mod errors;
mod options;
mod runtime;
mod sans_io;
mod side;
mod text;

use pyo3::prelude::*;

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<side::Side>()?;
    module.add_class::<sans_io::Exchange>()?;
    module.add_function(wrap_pyfunction!(text::text_offer, module)?)?;
    module.add_function(wrap_pyfunction!(text::read_offer, module)?)?;
    module.add_function(wrap_pyfunction!(text::is_ack, module)?)?;
    module.add("TEXT_APPID", text::TEXT_APPID)?;
    module.add("PUBLIC_MAILBOX_URL", text::PUBLIC_MAILBOX_URL)?;
    let before_exit = wrap_pyfunction!(runtime::before_exit, module)?;
    module.py().import("atexit")?.call_method1("register", (before_exit,))?;
    Ok(())
}
