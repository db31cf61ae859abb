//! `Side`: one side of an exchange (either flavour, either role), run by
//! the process's tokio runtime. The Python classes of every flavour
//! (blocking, asyncio, Twisted) wrap it: blocking calls wait with the GIL
//! released; `when_*` calls return at once and call back.

use std::sync::{Mutex, MutexGuard, PoisonError};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use wormhole_sync_core::builder::Client;
use wormhole_sync_core::magic_wormhole::MailboxExchange;
use wormhole_sync_core::{Error, Exchange, Role};
use wormhole_sync_tokio::{magic_wormhole, transcribe, Handle};

use crate::errors::to_py;
use crate::options::{role, seconds, Options};
use crate::runtime::{self, block, then, Value};

/// The state machine of a side that has not started.
enum Machine {
    /// Transcribe mode, over HTTP.
    Transcribe(Exchange),
    /// The magic-wormhole flavour, over a WebSocket.
    Mailbox(MailboxExchange),
}

impl Machine {
    fn serialize(&self) -> Vec<u8> {
        match self {
            Machine::Transcribe(exchange) => exchange.serialize(),
            Machine::Mailbox(exchange) => exchange.serialize(),
        }
    }

    fn set_timeout(&mut self, timeout: std::time::Duration) -> Result<(), Error> {
        match self {
            Machine::Transcribe(exchange) => exchange.set_timeout(timeout),
            Machine::Mailbox(exchange) => exchange.set_timeout(timeout),
        }
    }

    /// Starts its driver on the process's runtime.
    fn start(self, role: Role) -> PyResult<Handle> {
        let shared = runtime::shared()?;
        let _inside = shared.runtime.enter();
        let http = Some(shared.http.clone());
        Ok(match (self, role) {
            (Machine::Transcribe(e), Role::Initiator) => transcribe::Initiator::from_machine(e, http).start(),
            (Machine::Transcribe(e), Role::Receiver) => transcribe::Receiver::from_machine(e, http).start(),
            (Machine::Mailbox(e), Role::Initiator) => magic_wormhole::Initiator::from_machine(e, None).start(),
            (Machine::Mailbox(e), Role::Receiver) => magic_wormhole::Receiver::from_machine(e, None).start(),
        })
    }
}

enum State {
    /// Made or restored; started by the first wait.
    Ready(Box<Machine>),
    Running(Handle),
    Closed,
}

/// The flavour as Python spells it.
fn is_mailbox(flavour: &str) -> PyResult<bool> {
    match flavour {
        "transcribe" => Ok(false),
        "magic-wormhole" => Ok(true),
        _ => Err(PyValueError::new_err("flavour must be 'transcribe' or 'magic-wormhole'")),
    }
}

fn closed() -> PyErr {
    PyValueError::new_err("this exchange was closed")
}

/// One side of an exchange, usable from any Python thread.
#[pyclass(module = "wormhole_sync._native", frozen)]
pub(crate) struct Side {
    state: Mutex<State>,
    role: Role,
    appid: String,
    rendezvous: String,
}

impl Side {
    fn new(machine: Machine, role: Role) -> Side {
        let config = match &machine {
            Machine::Transcribe(exchange) => exchange.config(),
            Machine::Mailbox(exchange) => exchange.config(),
        };
        let (appid, rendezvous) = (config.appid().to_string(), config.rendezvous().unwrap_or_default().to_string());
        Side { state: Mutex::new(State::Ready(Box::new(machine))), role, appid, rendezvous }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The running exchange, started now if it was not.
    fn handle(&self) -> PyResult<Handle> {
        let mut state = self.state();
        match std::mem::replace(&mut *state, State::Closed) {
            State::Ready(machine) => {
                let handle = machine.start(self.role)?;
                *state = State::Running(handle.clone());
                Ok(handle)
            }
            State::Running(handle) => {
                *state = State::Running(handle.clone());
                Ok(handle)
            }
            State::Closed => Err(closed()),
        }
    }
}

/// The peer's data, once the channel is closed too: returning earlier could
/// let a program end before its close reached the server.
async fn data_then_finished(handle: Handle) -> Result<Vec<u8>, Error> {
    let data = handle.when_data().await;
    handle.when_finished().await;
    data
}

#[pymethods]
impl Side {
    #[new]
    #[pyo3(signature = (flavour, role_name, appid, data, code=None, rendezvous=None, schedule=None, timeout=None, code_words=None, answer_text=false))]
    #[allow(clippy::too_many_arguments)]
    fn py_new(
        py: Python<'_>,
        flavour: &str,
        role_name: &str,
        appid: &str,
        data: Vec<u8>,
        code: Option<&str>,
        rendezvous: Option<&str>,
        schedule: Option<Vec<(f64, f64)>>,
        timeout: Option<f64>,
        code_words: Option<usize>,
        answer_text: bool,
    ) -> PyResult<Side> {
        let role = role(role_name)?;
        let options = Options { appid, data, code, rendezvous, schedule, timeout, code_words, answer_text };
        let machine = if is_mailbox(flavour)? {
            Machine::Mailbox(options.build(py, role)?)
        } else {
            Machine::Transcribe(options.build(py, role)?)
        };
        Ok(Side::new(machine, role))
    }

    /// Restores a side from `serialize()`'s output (of Python or of the
    /// Rust crates), optionally with another timeout (counted from the
    /// first start).
    #[staticmethod]
    #[pyo3(signature = (flavour, role_name, data, timeout=None))]
    fn restore(py: Python<'_>, flavour: &str, role_name: &str, data: &[u8], timeout: Option<f64>) -> PyResult<Side> {
        let role = role(role_name)?;
        let restored = if is_mailbox(flavour)? {
            MailboxExchange::from_serialized(data).and_then(|exchange| {
                if exchange.role() == role {
                    Ok(Machine::Mailbox(exchange))
                } else {
                    Err(Error::BadSerializedState("this state belongs to the other side".into()))
                }
            })
        } else {
            Exchange::from_serialized_as(data, role).map(Machine::Transcribe)
        };
        let mut machine = restored.map_err(|e| to_py(py, &e))?;
        if let Some(timeout) = timeout {
            machine.set_timeout(seconds(timeout)?).map_err(|e| to_py(py, &e))?;
        }
        Ok(Side::new(machine, role))
    }

    /// Starts the exchange now rather than at the first wait.
    fn start(&self) -> PyResult<()> {
        self.handle().map(drop)
    }

    /// Blocks until the code is known; returns it.
    fn get_code(&self, py: Python<'_>) -> PyResult<String> {
        let handle = self.handle()?;
        let code = block(py, &handle, handle.when_code())?;
        Ok(code.to_string())
    }

    /// Blocks until the keys are agreed; returns the 32-byte verifier.
    fn get_verifier<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let handle = self.handle()?;
        let verifier = block(py, &handle, handle.when_verifier())?;
        Ok(PyBytes::new(py, verifier.as_bytes()))
    }

    /// Blocks until the exchange completed and its channel is closed;
    /// returns the peer's data.
    fn get_data<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let handle = self.handle()?;
        let data = block(py, &handle, data_then_finished(handle.clone()))?;
        Ok(PyBytes::new(py, &data))
    }

    /// Calls `callback(code, None)` or `callback(None, exception)` on a
    /// runtime thread once the code is known.
    fn when_code(&self, callback: Py<PyAny>) -> PyResult<()> {
        let handle = self.handle()?;
        then(async move { handle.when_code().await.map(|code| Value::Text(code.to_string())) }, callback)
    }

    /// `when_code` for the verifier.
    fn when_verifier(&self, callback: Py<PyAny>) -> PyResult<()> {
        let handle = self.handle()?;
        then(async move { handle.when_verifier().await.map(|v| Value::Bytes(v.as_bytes().to_vec())) }, callback)
    }

    /// `when_code` for the peer's data (once the channel is closed too).
    fn when_data(&self, callback: Py<PyAny>) -> PyResult<()> {
        let handle = self.handle()?;
        then(async move { data_then_finished(handle).await.map(Value::Bytes) }, callback)
    }

    /// Stops the exchange from any thread: waiters get `CancelledError`,
    /// and the channel is closed unless the state was serialized.
    fn cancel(&self) -> PyResult<()> {
        if let State::Running(handle) = &*self.state() {
            handle.cancel();
        }
        Ok(())
    }

    /// Stops the exchange (as `cancel`), blocks until its channel is
    /// closed, and ends this object.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if let State::Running(handle) = std::mem::replace(&mut *self.state(), State::Closed) {
            handle.cancel();
            block(py, &handle, async {
                handle.when_finished().await;
                Ok::<_, Error>(())
            })?;
        }
        Ok(())
    }

    /// `close` with a callback: `callback(None, None)` once closed.
    fn when_closed(&self, callback: Py<PyAny>) -> PyResult<()> {
        let state = std::mem::replace(&mut *self.state(), State::Closed);
        then(
            async move {
                if let State::Running(handle) = state {
                    handle.cancel();
                    handle.when_finished().await;
                }
                Ok(Value::Nothing)
            },
            callback,
        )
    }

    /// The whole state as printable JSON bytes; it contains secrets. Once
    /// serialized, stopping or dropping this side leaves the channel open.
    fn serialize<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let saved = match &*self.state() {
            State::Ready(machine) => machine.serialize(),
            State::Running(handle) => handle.serialize(),
            State::Closed => return Err(closed()),
        };
        Ok(PyBytes::new(py, &saved))
    }

    /// The rendezvous server's URL.
    #[getter]
    fn rendezvous(&self) -> &str {
        &self.rendezvous
    }

    /// The application id.
    #[getter]
    fn appid(&self) -> &str {
        &self.appid
    }
}
