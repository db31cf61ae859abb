//! The one tokio runtime every exchange of the process runs on, with the
//! HTTP client they share, and the two ways Python waits on it: blocking
//! (the GIL released, Ctrl-C checked) and by a callback (for asyncio and
//! Twisted, whose loops must never block).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use wormhole_sync_core::Error;
use wormhole_sync_tokio::{reqwest, Handle};

use crate::errors::to_py;

/// How often a blocking wait looks for a signal (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// The runtime and the HTTP client of this process.
pub(crate) struct Shared {
    pub(crate) runtime: tokio::runtime::Runtime,
    pub(crate) http: reqwest::Client,
}

/// The process's runtime, made on first use. A child made by `os.fork()`
/// inherits a copy without its threads (and with its parent's pooled
/// connections), so it makes its own; the copy is leaked, as dropping it
/// would wait for threads that do not exist.
pub(crate) fn shared() -> PyResult<&'static Shared> {
    static CURRENT: Mutex<Option<(u32, &'static Shared)>> = Mutex::new(None);
    let mut current = CURRENT.lock().unwrap_or_else(PoisonError::into_inner);
    let pid = std::process::id();
    if let Some((owner, shared)) = *current {
        if owner == pid {
            return Ok(shared);
        }
    }
    let failed = |what: &str, e: &dyn std::fmt::Display| PyRuntimeError::new_err(format!("{what}: {e}"));
    // One worker: an exchange costs a few hundred microseconds of CPU, and
    // one thread waking for all of them costs less than several.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("wormhole-sync")
        .enable_all()
        .build()
        .map_err(|e| failed("could not start the runtime", &e))?;
    let http = reqwest::Client::builder()
        .user_agent(concat!("wormhole-sync-python/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| failed("could not make the HTTP client", &e))?;
    let shared: &'static Shared = Box::leak(Box::new(Shared { runtime, http }));
    *current = Some((pid, shared));
    Ok(shared)
}

/// Waits for `future` on this thread with the GIL released. A signal's
/// exception (Ctrl-C's `KeyboardInterrupt`) cancels the exchange, waits for
/// it to close its channel (unless it was serialized), and is raised.
pub(crate) fn block<T: Send>(
    py: Python<'_>,
    handle: &Handle,
    future: impl Future<Output = Result<T, Error>> + Send,
) -> PyResult<T> {
    let runtime = &shared()?.runtime;
    let mut future = std::pin::pin!(future);
    loop {
        let waited =
            py.detach(|| runtime.block_on(async { tokio::time::timeout(SIGNAL_CHECK, future.as_mut()).await }));
        match waited {
            Ok(result) => return result.map_err(|e| to_py(py, &e)),
            Err(_) => {
                if let Err(signal) = py.check_signals() {
                    handle.cancel();
                    py.detach(|| runtime.block_on(handle.when_finished()));
                    return Err(signal);
                }
            }
        }
    }
}

/// A result on its way to Python.
pub(crate) enum Value {
    Text(String),
    Bytes(Vec<u8>),
    Nothing,
}

impl Value {
    fn into_py(self, py: Python<'_>) -> Py<PyAny> {
        match self {
            Value::Text(text) => text.into_pyobject(py).map(|s| s.into_any().unbind()).unwrap_or_else(|_| py.None()),
            Value::Bytes(bytes) => pyo3::types::PyBytes::new(py, &bytes).into_any().unbind(),
            Value::Nothing => py.None(),
        }
    }
}

/// Runs `future` on the runtime and then calls `callback(value, None)` or
/// `callback(None, exception)` on a runtime thread, which hands it to its
/// own loop (`loop.call_soon_threadsafe`, `reactor.callFromThread`).
pub(crate) fn then(
    future: impl Future<Output = Result<Value, Error>> + Send + 'static,
    callback: Py<PyAny>,
) -> PyResult<()> {
    shared()?.runtime.spawn(async move {
        let result = future.await;
        let Some(_calling) = Calling::begin() else {
            return; // Python is shutting down: nobody is left to tell.
        };
        Python::attach(|py| {
            let (value, error) = match result {
                Ok(value) => (value.into_py(py), py.None()),
                Err(e) => (py.None(), to_py(py, &e).into_value(py).into_any()),
            };
            if let Err(raised) = callback.call1(py, (value, error)) {
                raised.write_unraisable(py, None);
            }
        });
    });
    Ok(())
}

/// Set once Python has begun to exit: runtime threads no longer call into it.
static EXITING: AtomicBool = AtomicBool::new(false);
/// Runtime threads calling into Python right now.
static CALLING: AtomicUsize = AtomicUsize::new(0);

/// A runtime thread's call into Python, counted so that Python's exit can
/// wait for it: a thread that still needs the interpreter while it
/// finalizes crashes the process.
struct Calling;

impl Calling {
    fn begin() -> Option<Calling> {
        CALLING.fetch_add(1, Ordering::SeqCst);
        if EXITING.load(Ordering::SeqCst) {
            CALLING.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Calling)
    }
}

impl Drop for Calling {
    fn drop(&mut self) {
        CALLING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Registered with `atexit`: from now on runtime threads leave Python
/// alone, and the calls under way finish before it finalizes.
#[pyfunction]
pub(crate) fn before_exit(py: Python<'_>) {
    EXITING.store(true, Ordering::SeqCst);
    py.detach(|| {
        // A callback takes microseconds; a bound in case one hangs.
        for _ in 0..1000 {
            if CALLING.load(Ordering::SeqCst) == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}
