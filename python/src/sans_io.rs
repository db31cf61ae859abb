//! `Exchange`: the core's sans-IO state machine itself, for a program that
//! brings its own event loop and HTTP client. Time is passed in as seconds
//! since the Unix epoch (`time.time()`); nothing here reads a clock or
//! touches the network.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use wormhole_sync_core::{Event, Exchange as CoreExchange, RequestId, Timestamp, TransportError};

use crate::errors::to_py;
use crate::options::{role, Options};

/// `now` in seconds since the epoch, as the core's timestamp.
fn timestamp(now: f64) -> PyResult<Timestamp> {
    if !now.is_finite() || now < 0.0 {
        return Err(PyValueError::new_err("now must be seconds since the Unix epoch, as time.time() gives"));
    }
    // Saturates at u64::MAX milliseconds, far beyond any clock.
    Ok(Timestamp::from_millis((now * 1000.0) as u64))
}

/// A request to send: (id, method, url, body, timeout in seconds).
type TransmitTuple<'py> = (u64, &'static str, String, Bound<'py, PyBytes>, f64);

/// The transcribe-mode exchange as a state machine.
#[pyclass(module = "wormhole_sync._native")]
pub(crate) struct Exchange {
    inner: CoreExchange,
}

#[pymethods]
impl Exchange {
    #[new]
    #[pyo3(signature = (role_name, appid, data, code=None, rendezvous=None, schedule=None, timeout=None, code_words=None))]
    #[allow(clippy::too_many_arguments)]
    fn py_new(
        py: Python<'_>,
        role_name: &str,
        appid: &str,
        data: Vec<u8>,
        code: Option<&str>,
        rendezvous: Option<&str>,
        schedule: Option<Vec<(f64, f64)>>,
        timeout: Option<f64>,
        code_words: Option<usize>,
    ) -> PyResult<Exchange> {
        let options = Options { appid, data, code, rendezvous, schedule, timeout, code_words, answer_text: false };
        Ok(Exchange { inner: options.build(py, role(role_name)?)? })
    }

    /// Restores an exchange from `serialize()`'s output; its role is read
    /// from the state.
    #[staticmethod]
    fn from_serialized(py: Python<'_>, data: &[u8]) -> PyResult<Exchange> {
        Ok(Exchange { inner: CoreExchange::from_serialized(data).map_err(|e| to_py(py, &e))? })
    }

    fn start(&mut self, now: f64) -> PyResult<()> {
        self.inner.start(timestamp(now)?);
        Ok(())
    }

    fn handle_timeout(&mut self, now: f64) -> PyResult<()> {
        self.inner.handle_timeout(timestamp(now)?);
        Ok(())
    }

    fn handle_response(&mut self, now: f64, id: u64, status: u16, body: &[u8]) -> PyResult<()> {
        self.inner.handle_response(timestamp(now)?, RequestId::from_u64(id), status, body);
        Ok(())
    }

    #[pyo3(signature = (now, id, description, permanent=false))]
    fn handle_transport_error(&mut self, now: f64, id: u64, description: String, permanent: bool) -> PyResult<()> {
        let cause = TransportError::from_message(&description);
        let cause = if permanent { cause.into_permanent() } else { cause };
        self.inner.handle_transport_error(timestamp(now)?, RequestId::from_u64(id), cause);
        Ok(())
    }

    fn cancel(&mut self, now: f64) -> PyResult<()> {
        self.inner.cancel(timestamp(now)?);
        Ok(())
    }

    fn poll_transmit<'py>(&mut self, py: Python<'py>, now: f64) -> PyResult<Option<TransmitTuple<'py>>> {
        Ok(self.inner.poll_transmit(timestamp(now)?).map(|transmit| {
            (
                transmit.id().as_u64(),
                transmit.method(),
                transmit.url().to_string(),
                PyBytes::new(py, &transmit.body()),
                transmit.timeout().as_secs_f64(),
            )
        }))
    }

    /// The next event as `(kind, value)`: `("code", str)`, `("verifier",
    /// bytes)`, `("data", bytes)` or `("failed", exception)`.
    fn poll_event(&mut self, py: Python<'_>) -> Option<(&'static str, Py<PyAny>)> {
        let bytes = |b: &[u8]| PyBytes::new(py, b).into_any().unbind();
        self.inner.poll_event().map(|event| match event {
            Event::Code(code) => (
                "code",
                code.to_string().into_pyobject(py).map(|s| s.into_any().unbind()).unwrap_or_else(|_| py.None()),
            ),
            Event::Verifier(verifier) => ("verifier", bytes(verifier.as_bytes())),
            Event::Outcome(Ok(data)) => ("data", bytes(&data)),
            Event::Outcome(Err(error)) => ("failed", to_py(py, &error).into_value(py).into_any()),
            // A kind of event added later: nothing this version can hand out.
            _ => ("unknown", py.None()),
        })
    }

    /// Seconds since the epoch at which to call `handle_timeout`, or None.
    fn poll_timeout(&self) -> Option<f64> {
        self.inner.poll_timeout().map(|t| t.as_millis() as f64 / 1000.0)
    }

    fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }

    fn serialize<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.serialize())
    }

    #[getter]
    fn role(&self) -> &'static str {
        match self.inner.role() {
            wormhole_sync_core::Role::Initiator => "initiator",
            wormhole_sync_core::Role::Receiver => "receiver",
        }
    }
}
