//! `wormhole_sync._native`: the blocking exchange of `wormhole-sync-ureq`
//! for Python. The Python package (`wormhole_sync.transcribe`) wraps these
//! classes; its exceptions are raised from here by name.
//!
//! Every wait releases the GIL, and runs on a thread of its own while the
//! calling thread checks for signals, so a Ctrl-C (`KeyboardInterrupt`)
//! cancels the exchange (closing its channel unless it was serialized) and
//! interrupts the wait promptly.

use std::sync::{mpsc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use wormhole_sync_core::{Error, Schedule};
use wormhole_sync_ureq::transcribe::{Initiator as RustInitiator, Receiver as RustReceiver};
use wormhole_sync_ureq::Canceller;

/// How often a waiting call looks for a signal (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

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
        Error::ServerBusy { .. } | Error::ServerRejected { .. } => "ServerRefusedError",
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

/// The Python exception for `error`: its class from `wormhole_sync.errors`,
/// its message (never a secret: the core's errors carry none) and the
/// server's code.
fn to_py(py: Python<'_>, error: &Error) -> PyErr {
    let raised = (|| -> PyResult<PyErr> {
        let errors = py.import("wormhole_sync.errors")?;
        let class = errors.getattr(class_of(error))?;
        let exception = class.call1((error.to_string(), server_code(error)))?;
        Ok(PyErr::from_value(exception))
    })();
    raised.unwrap_or_else(|e| e)
}

/// Runs `wait` on a thread of its own, the GIL released, checking for
/// signals meanwhile; a signal's exception (Ctrl-C) cancels the exchange
/// through `cancel` and is raised once the wait returned.
fn blocking<T: Send>(py: Python<'_>, cancel: impl Fn(), wait: impl FnOnce() -> Result<T, Error> + Send) -> PyResult<T> {
    std::thread::scope(|scope| {
        let (done, finished) = mpsc::channel();
        scope.spawn(move || {
            let _ = done.send(wait());
        });
        // Shared with the GIL-free wait below, which must be `Send`.
        let finished = Mutex::new(finished);
        let mut interrupted: Option<PyErr> = None;
        loop {
            let outcome = py.detach(|| match finished.lock() {
                Ok(finished) => finished.recv_timeout(SIGNAL_CHECK),
                Err(_) => Err(mpsc::RecvTimeoutError::Disconnected),
            });
            match outcome {
                Ok(result) => {
                    return match interrupted {
                        Some(signal) => Err(signal),
                        None => result.map_err(|e| to_py(py, &e)),
                    };
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(PyValueError::new_err("the exchange's thread stopped"));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if interrupted.is_none() {
                        if let Err(signal) = py.check_signals() {
                            cancel();
                            interrupted = Some(signal);
                        }
                    }
                }
            }
        }
    })
}

/// The options both sides take.
fn configure<C: wormhole_sync_core::builder::Client>(
    mut builder: wormhole_sync_core::builder::Builder<C>,
    rendezvous: Option<&str>,
    schedule: Option<Vec<(f64, f64)>>,
    timeout: Option<f64>,
    code_words: Option<usize>,
) -> PyResult<wormhole_sync_core::builder::Builder<C>> {
    if let Some(url) = rendezvous {
        builder = builder.rendezvous(url);
    }
    if let Some(steps) = schedule {
        let schedule = Schedule::from_secs(&steps).map_err(|e| PyValueError::new_err(e.to_string()))?;
        builder = builder.schedule(schedule);
    }
    if let Some(seconds) = timeout {
        let timeout = Duration::try_from_secs_f64(seconds)
            .map_err(|_| PyValueError::new_err("timeout must be a positive number of seconds"))?;
        builder = builder.timeout(timeout);
    }
    if let Some(words) = code_words {
        builder = builder.code_words(words);
    }
    Ok(builder)
}

/// Raised when a closed exchange is used.
fn closed() -> PyErr {
    PyValueError::new_err("this exchange was closed")
}

/// The state of one side, usable from any Python thread: one call at a
/// time runs it (a second waits for the first), while `cancel()` may come
/// from any thread at any time.
type Slot<T> = Mutex<Option<T>>;

/// Locks `slot`, waiting (without the GIL) for a call running on another
/// thread to return first.
fn lock<'a, T>(py: Python<'_>, slot: &'a Slot<T>) -> PyResult<MutexGuard<'a, Option<T>>> {
    loop {
        match slot.try_lock() {
            Ok(guard) => return Ok(guard),
            Err(TryLockError::WouldBlock) => py.detach(|| std::thread::sleep(Duration::from_millis(2))),
            Err(TryLockError::Poisoned(_)) => return Err(closed()),
        }
    }
}

/// Runs `call` on the side in `slot`, unless it was closed.
fn with_side<T, R>(py: Python<'_>, slot: &Slot<T>, call: impl FnOnce(&mut T) -> PyResult<R>) -> PyResult<R> {
    call(lock(py, slot)?.as_mut().ok_or_else(closed)?)
}

macro_rules! side {
    ($name:ident, $rust:ident, { $($extra:tt)* }) => {
        #[pymethods]
        impl $name {
            $($extra)*

            /// Blocks until the keys are agreed; returns the verifier (32
            /// bytes both people may compare).
            fn get_verifier<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
                let verifier = with_side(py, &self.inner, |side| {
                    self.prepare(py, side)?;
                    blocking(py, || self.canceller.cancel(), || side.get_verifier())
                })?;
                Ok(PyBytes::new(py, verifier.as_bytes()))
            }

            /// Blocks until the exchange completes; returns the peer's data.
            fn get_data<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
                let data = with_side(py, &self.inner, |side| {
                    self.prepare(py, side)?;
                    blocking(py, || self.canceller.cancel(), || side.get_data())
                })?;
                Ok(PyBytes::new(py, &data))
            }

            /// Stops the exchange from any thread: a call waiting on it
            /// raises `CancelledError`, and its channel is closed unless
            /// the state was serialized.
            fn cancel(&self) {
                self.canceller.cancel();
            }

            /// The whole state as printable JSON bytes. It contains
            /// secrets (the code, the data). Once serialized, closing or
            /// dropping this object no longer closes the channel.
            fn serialize<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
                let saved = with_side(py, &self.inner, |side| Ok(side.serialize()))?;
                Ok(PyBytes::new(py, &saved))
            }

            /// Restores an exchange from `serialize()`'s output (of Python
            /// or of the Rust crates).
            #[staticmethod]
            fn from_serialized(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
                let side = $rust::from_serialized(data).map_err(|e| to_py(py, &e))?;
                Ok($name::wrap(side))
            }

            /// Stops the exchange and closes its channel (unless it was
            /// serialized); the object cannot be used afterwards.
            fn close(&self, py: Python<'_>) {
                self.canceller.cancel();
                let side = lock(py, &self.inner).ok().and_then(|mut slot| slot.take());
                if let Some(side) = side {
                    py.detach(|| side.close());
                }
            }

            /// The rendezvous server's URL.
            #[getter]
            fn rendezvous(&self, py: Python<'_>) -> PyResult<String> {
                with_side(py, &self.inner, |side| Ok(side.rendezvous().to_string()))
            }

            /// The application id.
            #[getter]
            fn appid(&self, py: Python<'_>) -> PyResult<String> {
                with_side(py, &self.inner, |side| Ok(side.appid().to_string()))
            }
        }

    };
}

/// The initiator: allocates a channel and shows the code.
#[pyclass(module = "wormhole_sync._native")]
struct Initiator {
    inner: Slot<RustInitiator>,
    canceller: Canceller,
    /// The code, once known: `get_code()` answers it at once, even while
    /// another thread waits for the data (which holds the exchange).
    code: Mutex<Option<String>>,
}

impl Initiator {
    fn wrap(side: RustInitiator) -> Initiator {
        Initiator { canceller: side.canceller(), inner: Mutex::new(Some(side)), code: Mutex::new(None) }
    }

    /// Before a wait for the verifier or the data: the code, so a
    /// `get_code()` on another thread is answered while this one waits.
    fn prepare(&self, py: Python<'_>, side: &mut RustInitiator) -> PyResult<()> {
        let code = blocking(py, || self.canceller.cancel(), || side.get_code())?;
        if let Ok(mut cached) = self.code.lock() {
            *cached = Some(code.to_string());
        }
        Ok(())
    }

    fn cached_code(&self) -> Option<String> {
        self.code.lock().ok().and_then(|code| code.clone())
    }
}

side!(Initiator, RustInitiator, {
    #[new]
    #[pyo3(signature = (appid, data, rendezvous=None, schedule=None, timeout=None, code_words=None))]
    fn new(
        py: Python<'_>,
        appid: &str,
        data: Vec<u8>,
        rendezvous: Option<&str>,
        schedule: Option<Vec<(f64, f64)>>,
        timeout: Option<f64>,
        code_words: Option<usize>,
    ) -> PyResult<Initiator> {
        let builder = configure(RustInitiator::builder(appid, data), rendezvous, schedule, timeout, code_words)?;
        let side = builder.build().map_err(|e| to_py(py, &e))?;
        Ok(Initiator::wrap(side))
    }

    /// Blocks until the server allocated a channel; returns the code.
    fn get_code(&self, py: Python<'_>) -> PyResult<String> {
        loop {
            if let Some(code) = self.cached_code() {
                return Ok(code);
            }
            // Not with `lock`: a wait for the data on another thread holds the
            // exchange, and caches the code as soon as it is known.
            match self.inner.try_lock() {
                Ok(mut slot) => {
                    let side = slot.as_mut().ok_or_else(closed)?;
                    self.prepare(py, side)?;
                }
                Err(TryLockError::WouldBlock) => py.detach(|| std::thread::sleep(Duration::from_millis(2))),
                Err(TryLockError::Poisoned(_)) => return Err(closed()),
            }
        }
    }
});

/// The receiver: types the code.
#[pyclass(module = "wormhole_sync._native")]
struct Receiver {
    inner: Slot<RustReceiver>,
    canceller: Canceller,
}

impl Receiver {
    fn wrap(side: RustReceiver) -> Receiver {
        Receiver { canceller: side.canceller(), inner: Mutex::new(Some(side)) }
    }

    fn prepare(&self, _py: Python<'_>, _side: &mut RustReceiver) -> PyResult<()> {
        Ok(())
    }
}

side!(Receiver, RustReceiver, {
    #[new]
    #[pyo3(signature = (appid, code, data, rendezvous=None, schedule=None, timeout=None))]
    fn new(
        py: Python<'_>,
        appid: &str,
        code: &str,
        data: Vec<u8>,
        rendezvous: Option<&str>,
        schedule: Option<Vec<(f64, f64)>>,
        timeout: Option<f64>,
    ) -> PyResult<Receiver> {
        let builder = configure(RustReceiver::builder(appid, code, data), rendezvous, schedule, timeout, None)?;
        let side = builder.build().map_err(|e| to_py(py, &e))?;
        Ok(Receiver::wrap(side))
    }
});

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Initiator>()?;
    module.add_class::<Receiver>()?;
    Ok(())
}
