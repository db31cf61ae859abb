//! Transcribe mode on tokio: build an [`Initiator`] or [`Receiver`], set
//! options, [`start`](Initiator::start) it, then await the [`Handle`].

use std::time::Duration;

use rand_core::{OsRng, RngCore};
use wormhole_sync_core::{Code, Config, Error, Exchange, Role, Schedule, DEFAULT_RENDEZVOUS_URL};

use crate::driver::{self, Handle};

fn os_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    seed
}

/// An exchange that has not started, and the HTTP client it will use.
#[derive(Debug)]
struct Unstarted {
    exchange: Exchange,
    client: Option<reqwest::Client>,
}

impl Unstarted {
    fn new(exchange: Exchange) -> Result<Unstarted, Error> {
        let exchange = exchange.with_config(|c| c.with_rendezvous(DEFAULT_RENDEZVOUS_URL))?;
        Ok(Unstarted { exchange, client: None })
    }

    fn configure(self, change: impl FnOnce(Config) -> Result<Config, Error>) -> Result<Unstarted, Error> {
        Ok(Unstarted { exchange: self.exchange.with_config(change)?, ..self })
    }

    fn from_serialized(bytes: &[u8], role: Role) -> Result<Unstarted, Error> {
        Ok(Unstarted { exchange: Exchange::from_serialized_as(bytes, role)?, client: None })
    }

    fn start(self) -> Handle {
        driver::start(self.exchange, self.client.unwrap_or_else(driver::shared_client))
    }
}

/// The options both sides share, written once.
macro_rules! shared_options {
    ($role:expr) => {
        /// Uses this rendezvous server (base URL) instead of [`DEFAULT_RENDEZVOUS_URL`].
        pub fn rendezvous(self, url: &str) -> Result<Self, Error> {
            Ok(Self { inner: self.inner.configure(|c| c.with_rendezvous(url))? })
        }

        /// Sets the polling schedule: `(when, interval)` steps from the first start.
        pub fn schedule(self, schedule: Schedule) -> Result<Self, Error> {
            Ok(Self { inner: self.inner.configure(|c| Ok(c.with_schedule(schedule)))? })
        }

        /// Sets the longest time one request (a fetch, or a post with nothing
        /// after it) may be held by the server waiting for the peer (default
        /// 30 s; 5 s and growing while the peer is busy answering; the server
        /// may cap it). While the server holds requests, an online client
        /// keeps one open and sends about one
        /// request per window; `Duration::ZERO` turns long-polls off, and the
        /// schedule's interval then sets how often it asks.
        pub fn long_poll(self, wait: Duration) -> Result<Self, Error> {
            Ok(Self { inner: self.inner.configure(|c| Ok(c.with_long_poll(wait)))? })
        }

        /// Sets the hard timeout, counted from the first start.
        pub fn timeout(self, timeout: Duration) -> Result<Self, Error> {
            Ok(Self { inner: self.inner.configure(|c| Ok(c.with_timeout(timeout)))? })
        }

        /// Holds our data until [`Handle::accept_verifier`] is called.
        pub fn confirm_verifier(self, confirm: bool) -> Result<Self, Error> {
            Ok(Self { inner: self.inner.configure(|c| Ok(c.with_verifier_confirmation(confirm)))? })
        }

        /// Sends requests with this client instead of the process-wide one
        /// (all exchanges share one client unless told otherwise).
        pub fn http_client(self, client: reqwest::Client) -> Self {
            Self { inner: Unstarted { client: Some(client), ..self.inner } }
        }

        /// Starts the driver task on the current tokio runtime (like
        /// Twisted's `startService()`; panics outside a runtime, as
        /// `tokio::spawn` does). The schedule and timeout count from the
        /// first start, also across a restore.
        pub fn start(self) -> Handle {
            self.inner.start()
        }

        /// The state as printable JSON (see [`Handle::serialize`] for a
        /// running exchange). **It contains secrets.**
        pub fn serialize(&self) -> Vec<u8> {
            self.inner.exchange.serialize()
        }

        /// Restores from `serialize` output (of this crate or the blocking
        /// one: the format is the core's); call `start()` to resume.
        pub fn from_serialized(bytes: &[u8]) -> Result<Self, Error> {
            Ok(Self { inner: Unstarted::from_serialized(bytes, $role)? })
        }
    };
}

/// The side that allocates a channel and shows the invitation code.
#[derive(Debug)]
pub struct Initiator {
    inner: Unstarted,
}

impl Initiator {
    /// An initiator for `appid` that will send `data` (at most 32 KiB).
    pub fn new(appid: &str, data: Vec<u8>) -> Result<Initiator, Error> {
        let exchange = Exchange::initiator(Config::new(appid)?, data, os_seed())?;
        Ok(Initiator { inner: Unstarted::new(exchange)? })
    }

    /// Uses a code the application chose instead of allocating one.
    pub fn with_code(self, code: &str) -> Result<Initiator, Error> {
        let code: Code = code.parse()?;
        let exchange = self.inner.exchange.with_chosen_code(code)?;
        Ok(Initiator { inner: Unstarted { exchange, ..self.inner } })
    }

    /// Sets how many secret words the code has (1 to 16, default 2).
    pub fn code_words(self, words: usize) -> Result<Initiator, Error> {
        Ok(Initiator { inner: self.inner.configure(|c| c.with_code_words(words))? })
    }

    shared_options!(Role::Initiator);
}

/// The side that types the invitation code.
#[derive(Debug)]
pub struct Receiver {
    inner: Unstarted,
}

impl Receiver {
    /// A receiver for `appid` with the `code` a person typed, that will send
    /// `data` (at most 32 KiB). A malformed code is [`Error::BadCode`].
    pub fn new(appid: &str, code: &str, data: Vec<u8>) -> Result<Receiver, Error> {
        let code: Code = code.parse()?;
        let exchange = Exchange::receiver(Config::new(appid)?, code, data, os_seed())?;
        Ok(Receiver { inner: Unstarted::new(exchange)? })
    }

    shared_options!(Role::Receiver);
}
