//! The blocking loop: send what the core asks for (each request on a thread
//! of its own from [`pool`], so a held long-poll never blocks a post, a
//! cancel or a close),
//! feed back the answers, and sleep until the core's next deadline, waking
//! early for an answer or a cancel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::SystemTime;

use wormhole_sync_core::wire::MAX_RESPONSE_BYTES;
use wormhole_sync_core::{Exchange, Progress, RequestId, ServerTrouble, Timestamp, Transmit, TransportError};

use crate::pool;

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// The agent exchanges use unless given one: shared by every exchange in
/// the process, so they reuse its kept-alive connections instead of each
/// opening its own.
pub(crate) fn shared_agent() -> ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT
        .get_or_init(|| {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_idle_connections(64)
                .max_idle_connections_per_host(16)
                .user_agent(concat!("wormhole-sync-ureq/", env!("CARGO_PKG_VERSION")))
                .build()
                .into()
        })
        .clone()
}

/// What wakes the loop before its next deadline.
enum Signal {
    Answer(RequestId, Result<(u16, Vec<u8>), ureq::Error>),
    Cancel,
}

/// Stops an exchange from another thread: the blocking call running it (or
/// the next one) returns [`Error::Cancelled`](crate::Error::Cancelled) at
/// once, and the channel is closed so the peer learns at once too.
/// `Clone + Send + Sync`; cancelling a finished exchange does nothing.
///
/// ```no_run
/// use wormhole_sync_ureq::transcribe::Initiator;
///
/// let mut initiator = Initiator::new("example.com/app1", b"data".to_vec())?;
/// let canceller = initiator.canceller();
/// std::thread::spawn(move || {
///     std::thread::sleep(std::time::Duration::from_secs(60));
///     canceller.cancel(); // Nobody came within a minute.
/// });
/// let result = initiator.get_data(); // Err(Error::Cancelled) after a minute.
/// # Ok::<(), wormhole_sync_ureq::Error>(())
/// ```
#[derive(Clone)]
pub struct Canceller {
    cancel: Arc<dyn Fn() + Send + Sync>,
}

impl Canceller {
    /// A canceller that runs `cancel` (it signals the exchange's loop).
    pub(crate) fn new(cancel: impl Fn() + Send + Sync + 'static) -> Canceller {
        Canceller { cancel: Arc::new(cancel) }
    }

    /// Cancels the exchange.
    pub fn cancel(&self) {
        (self.cancel)();
    }
}

impl std::fmt::Debug for Canceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Canceller")
    }
}

/// Reads, from another thread, how an exchange that a blocking call is
/// running fares: whether its server has stopped answering, since when and
/// why, to show a person while the call retries. `Clone + Send + Sync`.
///
/// ```no_run
/// use std::time::Duration;
/// use wormhole_sync_ureq::transcribe::Initiator;
///
/// let mut initiator = Initiator::new("example.com/app1", b"data".to_vec())?;
/// let observer = initiator.observer();
/// std::thread::spawn(move || loop {
///     std::thread::sleep(Duration::from_secs(5));
///     if let Some(trouble) = observer.server_trouble() {
///         eprintln!("retrying: {}", trouble.cause);
///     }
/// });
/// let code = initiator.get_code()?;
/// # Ok::<(), wormhole_sync_ureq::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Observer {
    trouble: Arc<Mutex<Option<ServerTrouble>>>,
}

impl Observer {
    /// Why the server has not answered lately, as of the exchange's last
    /// step: `None` while requests are answered, and once there is an
    /// outcome (see [`Exchange::server_trouble`]).
    pub fn server_trouble(&self) -> Option<ServerTrouble> {
        self.trouble.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn publish(&self, trouble: Option<ServerTrouble>) {
        *self.trouble.lock().unwrap_or_else(PoisonError::into_inner) = trouble;
    }
}

impl std::fmt::Debug for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signal::Answer(..) => "Answer",
            Signal::Cancel => "Cancel",
        })
    }
}

/// An exchange, the news it announced, and what sends its requests.
pub(crate) struct Driver {
    pub(crate) exchange: Exchange,
    pub(crate) news: Progress,
    agent: ureq::Agent,
    signals: mpsc::Sender<Signal>,
    inbox: mpsc::Receiver<Signal>,
    pub(crate) observer: Observer,
    /// The state was handed out: the application may resume it elsewhere,
    /// so dropping this one must not close the channel.
    saved: AtomicBool,
}

impl Driver {
    pub(crate) fn new(exchange: Exchange, agent: ureq::Agent) -> Driver {
        let (signals, inbox) = mpsc::channel();
        Driver {
            exchange,
            news: Progress::default(),
            agent,
            signals,
            inbox,
            observer: Observer::default(),
            saved: AtomicBool::new(false),
        }
    }

    /// The same exchange, its requests sent through `agent` from now on.
    pub(crate) fn with_agent(mut self, agent: ureq::Agent) -> Driver {
        self.agent = agent;
        self
    }

    pub(crate) fn canceller(&self) -> Canceller {
        let signals = self.signals.clone();
        // Nothing to do if the exchange is gone already.
        Canceller::new(move || {
            let _ = signals.send(Signal::Cancel);
        })
    }

    pub(crate) fn serialize(&self) -> Vec<u8> {
        self.saved.store(true, Ordering::Relaxed);
        self.exchange.serialize()
    }

    /// Runs the exchange until `done` holds or nothing is left to do
    /// (outcome known and channel closed, or its close given up). Once
    /// there is an outcome, it returns only after closing the channel.
    pub(crate) fn run_until(&mut self, done: impl Fn(&Progress, &Exchange) -> bool) {
        self.exchange.start(now());
        loop {
            let at = now();
            while let Some(transmit) = self.exchange.poll_transmit(at) {
                self.send(transmit);
            }
            self.news.drain(&mut self.exchange);
            self.observer.publish(self.exchange.server_trouble());
            if done(&self.news, &self.exchange) && !self.exchange.has_outcome() {
                return;
            }
            let Some(wake) = self.exchange.poll_timeout() else { return };
            match self.inbox.recv_timeout(wake.saturating_since(now())) {
                Ok(Signal::Answer(id, Ok((status, body)))) => self.exchange.handle_response(now(), id, status, &body),
                Ok(Signal::Answer(id, Err(error))) => {
                    // An untrusted certificate stays untrusted: no point retrying for days.
                    let cause = TransportError::classify(error, is_tls_refusal);
                    self.exchange.handle_transport_error(now(), id, cause)
                }
                Ok(Signal::Cancel) => self.exchange.cancel(now()),
                // Disconnection cannot happen: this driver holds a sender itself.
                Err(_) => self.exchange.handle_timeout(now()),
            }
        }
    }

    /// Cancels the exchange and closes its channel (briefly: at most the
    /// core's close grace), unless it has ended already.
    pub(crate) fn close(&mut self) {
        if self.exchange.is_started() && !self.exchange.is_finished() {
            self.exchange.cancel(now());
            self.run_until(|_, _| false);
        }
    }

    /// Sends one request on a thread of its own (from the pool); its answer
    /// comes back through the inbox.
    fn send(&self, transmit: Transmit) {
        let (agent, signals) = (self.agent.clone(), self.signals.clone());
        let id = transmit.id();
        let started = pool::run(move || {
            let _ = signals.send(Signal::Answer(transmit.id(), post(&agent, &transmit)));
        });
        if let Err(error) = started {
            let _ = self.signals.send(Signal::Answer(id, Err(ureq::Error::Io(error))));
        }
    }
}

impl Drop for Driver {
    /// Closes the channel of an exchange dropped mid-way, so the peer fails
    /// at once instead of at its timeout; a saved exchange without an
    /// outcome is left open for whoever restores it.
    fn drop(&mut self) {
        if !self.saved.load(Ordering::Relaxed) || self.exchange.has_outcome() {
            self.close();
        }
    }
}

/// Whether TLS refused the server (its certificate, say), as ureq reports it.
fn is_tls_refusal(error: &(dyn std::error::Error + 'static)) -> bool {
    match error.downcast_ref::<ureq::Error>() {
        Some(ureq::Error::Rustls(_) | ureq::Error::Tls(_)) => true,
        Some(ureq::Error::Io(io)) => io.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()),
        _ => error.is::<rustls::Error>(),
    }
}

/// One HTTP request, within the transmit's timeout.
fn post(agent: &ureq::Agent, transmit: &Transmit) -> Result<(u16, Vec<u8>), ureq::Error> {
    let mut response = agent
        .post(transmit.url())
        .header("content-type", "application/json")
        .config()
        // Error statuses carry the protocol's error codes, whatever the agent's own setting.
        .http_status_as_error(false)
        .timeout_global(Some(transmit.timeout()))
        .build()
        .send(&transmit.body()[..])?;
    let status = response.status().as_u16();
    let body = response.body_mut().with_config().limit(MAX_RESPONSE_BYTES as u64).read_to_vec()?;
    Ok((status, body))
}
