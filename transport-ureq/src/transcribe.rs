//! Transcribe mode: the initiator allocates a channel and shows the code;
//! the receiver types it. See the crate docs for the flow.

use std::fmt;
use std::time::Duration;

use wormhole_sync_core::{Code, Config, Error, Exchange, Role, Schedule, Verifier};

use crate::driver::{os_seed, shared_agent, Driver};
use wormhole_sync_core::DEFAULT_RENDEZVOUS_URL;

/// One side: an exchange and the loop that drives it. Options change the
/// exchange until it starts at the first `get_*` call.
struct Client {
    // Boxed: moved by value through the option methods.
    driver: Box<Driver>,
}

impl Client {
    fn new(exchange: Exchange) -> Result<Client, Error> {
        let exchange = exchange.with_config(|c| c.with_rendezvous(DEFAULT_RENDEZVOUS_URL))?;
        Ok(Client { driver: Box::new(Driver::new(exchange, shared_agent())) })
    }

    fn change(self, change: impl FnOnce(Exchange) -> Result<Exchange, Error>) -> Result<Client, Error> {
        let Driver { exchange, agent } = *self.driver;
        Ok(Client { driver: Box::new(Driver::new(change(exchange)?, agent)) })
    }

    fn with_agent(mut self, agent: ureq::Agent) -> Client {
        self.driver.agent = agent;
        self
    }

    fn configure(self, change: impl FnOnce(Config) -> Result<Config, Error>) -> Result<Client, Error> {
        self.change(|exchange| exchange.with_config(change))
    }

    fn get_code(&mut self) -> Result<Code, Error> {
        let driver = &mut self.driver;
        driver.run_until(|e| e.code().is_some());
        match (driver.exchange.code(), driver.outcome()) {
            (_, Some(Err(error))) => Err(error),
            (Some(code), _) => Ok(code.clone()),
            (None, _) => Err(Error::Timeout),
        }
    }

    fn get_verifier(&mut self) -> Result<Verifier, Error> {
        let driver = &mut self.driver;
        driver.run_until(|e| e.verifier().is_some());
        match (driver.exchange.verifier(), driver.outcome()) {
            (Some(verifier), _) => Ok(verifier.clone()),
            (None, Some(Err(error))) => Err(error),
            (None, _) => Err(Error::Timeout),
        }
    }

    fn decide(&mut self, accept: bool) -> Result<(), Error> {
        let driver = &mut self.driver;
        if driver.exchange.confirm_verifier(crate::driver::now(), accept) {
            Ok(())
        } else {
            Err(Error::InvalidConfig("no verifier is waiting for a verdict".into()))
        }
    }

    fn get_data(&mut self) -> Result<Vec<u8>, Error> {
        let driver = &mut self.driver;
        driver.run_until(Exchange::awaits_confirmation);
        if driver.exchange.awaits_confirmation() {
            return Err(Error::VerifierUnconfirmed);
        }
        let outcome = driver.outcome().unwrap_or(Err(Error::Timeout));
        driver.finish();
        outcome
    }

    fn serialize(&self) -> Vec<u8> {
        self.driver.exchange.serialize()
    }

    fn from_serialized(bytes: &[u8], role: Role) -> Result<Client, Error> {
        let exchange = Exchange::from_serialized_as(bytes, role)?;
        Ok(Client { driver: Box::new(Driver::new(exchange, shared_agent())) })
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.driver.exchange.fmt(f)
    }
}

/// The methods both sides share, written once.
macro_rules! shared_methods {
    ($role:expr) => {
        /// Uses this rendezvous server (base URL) instead of [`DEFAULT_RENDEZVOUS_URL`].
        pub fn rendezvous(self, url: &str) -> Result<Self, Error> {
            Ok(Self { client: self.client.configure(|c| c.with_rendezvous(url))? })
        }

        /// Sets the polling schedule: `(when, interval)` steps from the first call.
        pub fn schedule(self, schedule: Schedule) -> Result<Self, Error> {
            Ok(Self { client: self.client.configure(|c| Ok(c.with_schedule(schedule)))? })
        }

        /// Sets the longest time one request (a fetch, or a post with nothing
        /// after it) may be held by the server waiting for the peer (default
        /// 30 s; 5 s and growing while the peer is busy answering; the server
        /// may cap it). While the server holds requests, an online client
        /// keeps one open and sends about one
        /// request per window; `Duration::ZERO` turns long-polls off, and the
        /// schedule's interval then sets how often it asks.
        pub fn long_poll(self, wait: Duration) -> Result<Self, Error> {
            Ok(Self { client: self.client.configure(|c| Ok(c.with_long_poll(wait)))? })
        }

        /// Sends requests through this [`ureq::Agent`] (a proxy, a private CA,
        /// your own connection pool) instead of the one all exchanges in the
        /// process share by default. Error statuses reach the exchange
        /// whatever the agent's `http_status_as_error` says.
        ///
        /// ```
        /// # use wormhole_sync_ureq::transcribe::Initiator;
        /// use wormhole_sync_ureq::ureq;
        ///
        /// let agent: ureq::Agent = ureq::Agent::config_builder().max_idle_connections(256).build().into();
        /// let initiator = Initiator::new("example.com/app1", b"data".to_vec())?.agent(agent);
        /// # Ok::<(), wormhole_sync_ureq::Error>(())
        /// ```
        pub fn agent(self, agent: ureq::Agent) -> Self {
            Self { client: self.client.with_agent(agent) }
        }

        /// Sets the hard timeout, counted from the first `get_*` call.
        pub fn timeout(self, timeout: Duration) -> Result<Self, Error> {
            Ok(Self { client: self.client.configure(|c| Ok(c.with_timeout(timeout)))? })
        }

        /// Holds our data until [`accept_verifier`](Self::accept_verifier) is
        /// called (after showing [`get_verifier`](Self::get_verifier) to a person).
        pub fn confirm_verifier(self, confirm: bool) -> Result<Self, Error> {
            Ok(Self { client: self.client.configure(|c| Ok(c.with_verifier_confirmation(confirm)))? })
        }

        /// Blocks until the keys are agreed and returns the verifier, which
        /// both people can compare.
        pub fn get_verifier(&mut self) -> Result<Verifier, Error> {
            self.client.get_verifier()
        }

        /// Releases our data after the person confirmed the verifier.
        pub fn accept_verifier(&mut self) -> Result<(), Error> {
            self.client.decide(true)
        }

        /// Refuses: the channel is closed and both sides fail with a
        /// "declined" error.
        pub fn reject_verifier(&mut self) -> Result<(), Error> {
            self.client.decide(false)
        }

        /// Blocks until the exchange completes and returns the peer's data,
        /// or the error (`WrongCode`, `Timeout`, `Crowded`, ...). Calling it
        /// again returns the same result. With verifier confirmation on, it
        /// returns [`Error::VerifierUnconfirmed`] rather than wait for a
        /// verdict that only this thread could give.
        pub fn get_data(&mut self) -> Result<Vec<u8>, Error> {
            self.client.get_data()
        }

        /// The whole state as printable JSON; restore it with
        /// `from_serialized`, in this process or another, and continue.
        /// **It contains secrets** (the code, our seed, our data).
        pub fn serialize(&self) -> Vec<u8> {
            self.client.serialize()
        }

        /// Restores an object from [`serialize`](Self::serialize)'s output;
        /// the schedule and timeout continue from the original start.
        pub fn from_serialized(bytes: &[u8]) -> Result<Self, Error> {
            Ok(Self { client: Client::from_serialized(bytes, $role)? })
        }
    };
}

/// The side that allocates a channel and shows the invitation code.
///
/// `Send`: it can be moved to a worker thread. `Debug` never shows the code,
/// keys or data.
#[derive(Debug)]
pub struct Initiator {
    client: Client,
}

impl Initiator {
    /// An initiator for `appid` that will send `data` (at most 32 KiB).
    pub fn new(appid: &str, data: Vec<u8>) -> Result<Initiator, Error> {
        let exchange = Exchange::initiator(Config::new(appid)?, data, os_seed())?;
        Ok(Initiator { client: Client::new(exchange)? })
    }

    /// Uses a code the application chose (both people type it) instead of
    /// allocating one.
    pub fn with_code(self, code: &str) -> Result<Initiator, Error> {
        let code: Code = code.parse()?;
        Ok(Initiator { client: self.client.change(|e| e.with_chosen_code(code))? })
    }

    /// Sets how many secret words the code has (1 to 16, default 2).
    pub fn code_words(self, words: usize) -> Result<Initiator, Error> {
        Ok(Initiator { client: self.client.configure(|c| c.with_code_words(words))? })
    }

    /// Blocks until the channel is allocated and returns the code to show.
    pub fn get_code(&mut self) -> Result<Code, Error> {
        self.client.get_code()
    }

    shared_methods!(Role::Initiator);
}

/// The side that types the invitation code.
///
/// `Send`: it can be moved to a worker thread. `Debug` never shows the code,
/// keys or data.
#[derive(Debug)]
pub struct Receiver {
    client: Client,
}

impl Receiver {
    /// A receiver for `appid` with the `code` a person typed, that will send
    /// `data` (at most 32 KiB). A malformed code is [`Error::BadCode`].
    pub fn new(appid: &str, code: &str, data: Vec<u8>) -> Result<Receiver, Error> {
        let code: Code = code.parse()?;
        let exchange = Exchange::receiver(Config::new(appid)?, code, data, os_seed())?;
        Ok(Receiver { client: Client::new(exchange)? })
    }

    shared_methods!(Role::Receiver);
}
