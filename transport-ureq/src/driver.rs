//! The blocking loop: send what the core asks for, feed back the answers,
//! sleep until its next deadline.

use std::time::{Duration, SystemTime};

use rand_core::{OsRng, RngCore};
use wormhole_sync_core::wire::MAX_RESPONSE_BYTES;
use wormhole_sync_core::{Error, Exchange, Timestamp, Transmit, DEFAULT_RENDEZVOUS_URL};

/// Longest time spent closing the channel after the outcome is known.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Shortest HTTP timeout given to a request, even right at the deadline.
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_millis(200);

pub(crate) fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// A fresh secret seed from the operating system.
pub(crate) fn os_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    seed
}

/// The agent exchanges use unless given one: shared by every exchange in
/// the process, so they reuse its kept-alive connections instead of each
/// opening its own.
pub(crate) fn shared_agent() -> ureq::Agent {
    static AGENT: std::sync::OnceLock<ureq::Agent> = std::sync::OnceLock::new();
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

/// An exchange bound to an HTTP agent; the server is the one its config names.
pub(crate) struct Driver {
    pub(crate) exchange: Exchange,
    pub(crate) agent: ureq::Agent,
}

impl Driver {
    pub(crate) fn new(exchange: Exchange, agent: ureq::Agent) -> Driver {
        Driver { exchange, agent }
    }

    /// Runs the exchange until `done` holds or it has an outcome.
    pub(crate) fn run_until(&mut self, mut done: impl FnMut(&Exchange) -> bool) {
        self.exchange.start(now());
        while !done(&self.exchange) && self.exchange.outcome().is_none() {
            if !self.step(None) {
                break;
            }
        }
    }

    /// Once there is an outcome, closes the channel (best effort, briefly).
    pub(crate) fn finish(&mut self) {
        let until = std::time::Instant::now() + CLOSE_GRACE;
        while !self.exchange.is_finished() && std::time::Instant::now() < until {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if !self.step(Some(left)) {
                break;
            }
        }
    }

    /// Sends what is due now, or sleeps until something is. Returns false
    /// when there is nothing left to wait for.
    fn step(&mut self, cap: Option<Duration>) -> bool {
        let at = now();
        let due: Vec<Transmit> = std::iter::from_fn(|| self.exchange.poll_transmit(at)).collect();
        if due.is_empty() {
            let Some(wake) = self.exchange.poll_timeout() else { return false };
            let mut sleep = wake.saturating_since(now());
            if let Some(cap) = cap {
                sleep = sleep.min(cap);
            }
            std::thread::sleep(sleep);
            self.exchange.handle_timeout(now());
            return true;
        }
        for transmit in due {
            self.send(&transmit, cap);
        }
        true
    }

    /// One HTTP request; never longer than the hard timeout allows.
    fn send(&mut self, transmit: &Transmit, cap: Option<Duration>) {
        let mut timeout = transmit.timeout();
        if let Some(deadline) = self.exchange.deadline().filter(|_| self.exchange.outcome().is_none()) {
            timeout = timeout.min(deadline.saturating_since(now()).max(MIN_REQUEST_TIMEOUT));
        }
        if let Some(cap) = cap {
            timeout = timeout.min(cap.max(MIN_REQUEST_TIMEOUT));
        }
        let base = self.exchange.config().rendezvous().unwrap_or(DEFAULT_RENDEZVOUS_URL).trim_end_matches('/');
        let url = format!("{base}{}", transmit.path());
        let answer = self
            .agent
            .post(&url)
            .header("content-type", "application/json")
            .config()
            // Error statuses carry the protocol's error codes, whatever the agent's own setting.
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .send(&transmit.body()[..])
            .and_then(|mut response| {
                let status = response.status().as_u16();
                let body = response.body_mut().with_config().limit(MAX_RESPONSE_BYTES as u64).read_to_vec()?;
                Ok((status, body))
            });
        match answer {
            Ok((status, body)) => self.exchange.handle_response(now(), transmit.id(), status, &body),
            Err(e) => self.exchange.handle_transport_error(now(), transmit.id(), &describe(&e)),
        }
    }

    /// The outcome as a `Result`, once there is one.
    pub(crate) fn outcome(&self) -> Option<Result<Vec<u8>, Error>> {
        self.exchange.outcome().map(|o| o.map(<[u8]>::to_vec).map_err(Clone::clone))
    }
}

/// A short description of a transport failure, for `ServerUnreachable`.
fn describe(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Timeout(_) => "the server did not answer in time".into(),
        ureq::Error::BodyExceedsLimit(_) => "the server's answer was too large".into(),
        other => other.to_string().chars().take(200).collect(),
    }
}
