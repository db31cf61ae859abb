//! The `wormhole` command's text messages (`wormhole send --text`), from
//! the core: the offer a sender sends, and reading one.

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use wormhole_sync_core::magic_wormhole::text::{self, Offer};

use crate::errors::to_py;

/// The application message offering `message`, as `wormhole send --text`
/// sends it.
#[pyfunction]
pub(crate) fn text_offer<'py>(py: Python<'py>, message: &str) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &text::offer(message))
}

/// Reads a sender's offer: `("text", message)` or `("unsupported", kind)`
/// (a file or directory); anything else raises `ProtocolError`.
#[pyfunction]
pub(crate) fn read_offer(py: Python<'_>, data: &[u8]) -> PyResult<(&'static str, String)> {
    match text::read_offer(data).map_err(|e| to_py(py, &e))? {
        Offer::Text(message) => Ok(("text", message)),
        Offer::Unsupported(kind) => Ok(("unsupported", kind)),
        // A kind of offer added later: not one this version takes.
        _ => Ok(("unsupported", String::new())),
    }
}

/// Whether a receiver's answer acknowledges a text offer.
#[pyfunction]
pub(crate) fn is_ack(data: &[u8]) -> bool {
    text::is_ack(data)
}

/// The application id of the `wormhole` command's text and file transfers.
pub(crate) const TEXT_APPID: &str = wormhole_sync_core::magic_wormhole::TEXT_APPID;

/// Where magic-wormhole's public mailbox server is.
pub(crate) const PUBLIC_MAILBOX_URL: &str = wormhole_sync_core::magic_wormhole::PUBLIC_MAILBOX_URL;
