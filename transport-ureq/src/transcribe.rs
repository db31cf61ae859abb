//! Transcribe mode: the initiator allocates a channel and shows the code;
//! the receiver types it. See the crate docs for the flow.

use std::fmt;
use std::time::Duration;

use wormhole_sync_core::{Code, Config, Error, Exchange, Role, Schedule, Verifier};

use crate::driver::{os_seed, Driver};
use crate::DEFAULT_RENDEZVOUS_URL;

/// What is needed to build the exchange; options may change until the first `get_*` call.
struct Setup {
    role: Role,
    config: Config,
    data: Vec<u8>,
    seed: [u8; 32],
    code: Option<Code>,
}

impl Setup {
    fn build(&self) -> Result<Exchange, Error> {
        let (config, data) = (self.config.clone(), self.data.clone());
        match (self.role, &self.code) {
            (Role::Initiator, None) => Exchange::initiator(config, data, self.seed),
            (Role::Initiator, Some(code)) => Exchange::initiator_with_code(config, code.clone(), data, self.seed),
            (Role::Receiver, Some(code)) => Exchange::receiver(config, code.clone(), data, self.seed),
            (Role::Receiver, None) => Err(Error::InvalidConfig("a receiver needs a code".into())),
        }
    }
}

enum Client {
    Setup(Setup),
    // Boxed: a running exchange is much larger than its setup.
    Running(Box<Driver>),
}

impl Client {
    fn new(role: Role, appid: &str, data: Vec<u8>, code: Option<Code>) -> Result<Client, Error> {
        let config = Config::new(appid)?.with_rendezvous(DEFAULT_RENDEZVOUS_URL)?;
        let setup = Setup { role, config, data, seed: os_seed(), code };
        setup.build()?; // Refuse oversized data now, not at the first call.
        Ok(Client::Setup(setup))
    }

    fn configure(mut self, change: impl FnOnce(Config) -> Result<Config, Error>) -> Result<Client, Error> {
        match &mut self {
            Client::Setup(setup) => {
                setup.config = change(setup.config.clone())?;
                Ok(self)
            }
            Client::Running(_) => Err(Error::InvalidConfig("options must be set before the first get_ call".into())),
        }
    }

    fn driver(&mut self) -> Result<&mut Driver, Error> {
        if let Client::Setup(setup) = self {
            let exchange = setup.build()?;
            let url = setup.config.rendezvous().unwrap_or(DEFAULT_RENDEZVOUS_URL).to_string();
            *self = Client::Running(Box::new(Driver::new(exchange, &url)));
        }
        match self {
            Client::Running(driver) => Ok(driver),
            Client::Setup(_) => unreachable!("replaced above"),
        }
    }

    fn get_code(&mut self) -> Result<Code, Error> {
        let driver = self.driver()?;
        driver.run_until(|e| e.code().is_some());
        match (driver.exchange.code(), driver.outcome()) {
            (_, Some(Err(error))) => Err(error),
            (Some(code), _) => Ok(code.clone()),
            (None, _) => Err(Error::Timeout),
        }
    }

    fn get_verifier(&mut self) -> Result<Verifier, Error> {
        let driver = self.driver()?;
        driver.run_until(|e| e.verifier().is_some());
        match (driver.exchange.verifier(), driver.outcome()) {
            (Some(verifier), _) => Ok(verifier.clone()),
            (None, Some(Err(error))) => Err(error),
            (None, _) => Err(Error::Timeout),
        }
    }

    fn decide(&mut self, accept: bool) -> Result<(), Error> {
        let driver = self.driver()?;
        if driver.exchange.confirm_verifier(crate::driver::now(), accept) {
            Ok(())
        } else {
            Err(Error::InvalidConfig("no verifier is waiting for a verdict".into()))
        }
    }

    fn get_data(&mut self) -> Result<Vec<u8>, Error> {
        let driver = self.driver()?;
        driver.run_until(Exchange::awaits_confirmation);
        if driver.exchange.awaits_confirmation() {
            return Err(Error::VerifierUnconfirmed);
        }
        let outcome = driver.outcome().unwrap_or(Err(Error::Timeout));
        driver.finish();
        outcome
    }

    fn serialize(&self) -> Vec<u8> {
        match self {
            Client::Running(driver) => driver.exchange.serialize(),
            Client::Setup(setup) => setup.build().map(|e| e.serialize()).unwrap_or_default(),
        }
    }

    fn from_serialized(bytes: &[u8], role: Role) -> Result<Client, Error> {
        let exchange = Exchange::from_serialized(bytes)?;
        if exchange.role() != role {
            return Err(Error::BadSerializedState(format!("this state belongs to a {:?}", exchange.role())));
        }
        let url = exchange.config().rendezvous().unwrap_or(DEFAULT_RENDEZVOUS_URL).to_string();
        Ok(Client::Running(Box::new(Driver::new(exchange, &url))))
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Client::Setup(setup) => f.debug_struct("NotStarted").field("role", &setup.role).finish_non_exhaustive(),
            Client::Running(driver) => driver.exchange.fmt(f),
        }
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
        /// **It contains secrets** (the code, the seed, our data).
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
        Ok(Initiator { client: Client::new(Role::Initiator, appid, data, None)? })
    }

    /// Uses a code the application chose (both people type it) instead of
    /// allocating one.
    pub fn with_code(self, code: &str) -> Result<Initiator, Error> {
        let code: Code = code.parse()?;
        match self.client {
            Client::Setup(mut setup) => {
                setup.code = Some(code);
                Ok(Initiator { client: Client::Setup(setup) })
            }
            Client::Running(_) => Err(Error::InvalidConfig("options must be set before the first get_ call".into())),
        }
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
        Ok(Receiver { client: Client::new(Role::Receiver, appid, data, Some(code))? })
    }

    shared_methods!(Role::Receiver);
}
