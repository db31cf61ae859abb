//! Transcribe mode: the initiator allocates a channel and shows the code;
//! the receiver types it. See the crate docs for the flow.

use std::fmt;

use wormhole_sync_core::builder::{Builder, Client};
use wormhole_sync_core::{ApiMisuse, Code, CodeInput, Error, Exchange, Role, Timestamp, Verifier};

use crate::driver::{shared_agent, Canceller, Driver, Observer};

/// The methods both sides share, written once.
macro_rules! shared_methods {
    ($side:ident, $role:expr) => {
        impl Client for $side {
            type Http = ureq::Agent;
            type Machine = Exchange;
            const ROLE: Role = $role;

            fn from_machine(exchange: Exchange, agent: Option<ureq::Agent>) -> Self {
                $side { driver: Driver::new(exchange, agent.unwrap_or_else(shared_agent)) }
            }
        }

        impl $side {
            /// Blocks until the keys are agreed and returns the verifier,
            /// which both people can compare.
            pub fn get_verifier(&mut self) -> Result<Verifier, Error> {
                self.driver.run_until(|news, _| news.verifier_result().is_some());
                self.driver.news.verifier_result().unwrap_or(Err(Error::Timeout))
            }

            /// Releases our data after the person confirmed the verifier
            /// (with [`Builder::confirm_verifier`]).
            pub fn accept_verifier(&mut self) -> Result<(), Error> {
                self.decide(true)
            }

            /// Refuses the verifier: the channel is closed and both sides
            /// fail with a "declined" error.
            pub fn reject_verifier(&mut self) -> Result<(), Error> {
                self.decide(false)
            }

            fn decide(&mut self, accept: bool) -> Result<(), Error> {
                let now = Timestamp::from_system_time(std::time::SystemTime::now());
                match self.driver.exchange.confirm_verifier(now, accept) {
                    true => Ok(()),
                    false => Err(ApiMisuse::NoVerifierPending.into()),
                }
            }

            /// Blocks until the exchange completes and its channel is
            /// closed, and returns the peer's data or the error
            /// (`WrongCode`, `Timeout`, `Crowded`, ...). Calling it again
            /// returns the same result. With verifier confirmation on, it
            /// returns [`ApiMisuse::VerifierUnconfirmed`] rather than wait for
            /// a verdict that only this thread could give.
            pub fn get_data(&mut self) -> Result<Vec<u8>, Error> {
                self.driver.run_until(|_, exchange| exchange.awaits_confirmation());
                if self.driver.exchange.awaits_confirmation() {
                    return Err(ApiMisuse::VerifierUnconfirmed.into());
                }
                self.driver.news.data().unwrap_or(Err(Error::Timeout))
            }

            /// The rendezvous server's base URL this exchange uses.
            pub fn rendezvous(&self) -> &str {
                self.driver.exchange.config().rendezvous().unwrap_or(wormhole_sync_core::DEFAULT_RENDEZVOUS_URL)
            }

            /// The application id this exchange runs under.
            pub fn appid(&self) -> &str {
                self.driver.exchange.config().appid()
            }

            /// Whether the server ever answered this exchange (before a
            /// restore too): if not, nothing was made or stored there.
            pub fn server_reached(&self) -> bool {
                self.driver.exchange.server_reached()
            }

            /// Gives the exchange another hard timeout, still counted from
            /// the first start: a restored invitation saved with a short
            /// one can be given days. Once there is an outcome it changes
            /// nothing.
            ///
            /// # Errors
            /// [`Error::InvalidConfig`] over
            /// [`MAX_TIMEOUT`](wormhole_sync_core::MAX_TIMEOUT).
            pub fn set_timeout(&mut self, timeout: std::time::Duration) -> Result<(), Error> {
                self.driver.exchange.set_timeout(timeout)
            }

            /// A handle that cancels this exchange from another thread.
            pub fn canceller(&self) -> Canceller {
                self.driver.canceller()
            }

            /// A handle that tells another thread, while a blocking call
            /// runs this exchange, whether its server has stopped answering.
            pub fn observer(&self) -> Observer {
                self.driver.observer.clone()
            }

            /// Stops the exchange and closes its channel (the peer fails at
            /// once with [`Error::PeerClosed`]), waiting at most
            /// [`CLOSE_GRACE`](wormhole_sync_core::CLOSE_GRACE). Dropping an
            /// exchange that was never serialized does the same.
            pub fn close(mut self) {
                self.driver.close();
            }

            /// The whole state as printable JSON; restore it with
            /// `from_serialized`, in this process or another, and continue.
            /// **It contains secrets** (the code, our seed, our data). Once
            /// serialized, dropping this object no longer closes the
            /// channel: the saved copy may continue it.
            pub fn serialize(&self) -> Vec<u8> {
                self.driver.serialize()
            }

            /// Restores an object from [`serialize`](Self::serialize)'s
            /// output (of this crate or the async one); the schedule and
            /// timeout continue from the original start. It uses the shared
            /// HTTP agent unless given another with
            /// [`with_http_client`](Self::with_http_client).
            pub fn from_serialized(bytes: &[u8]) -> Result<Self, Error> {
                Ok(Self::from_machine(Exchange::from_serialized_as(bytes, $role)?, None))
            }

            /// Sends its requests through this agent from now on (a restored
            /// exchange whose server needs a private CA, say).
            pub fn with_http_client(self, agent: ureq::Agent) -> Self {
                let Self { driver } = self;
                Self { driver: driver.with_agent(agent) }
            }
        }

        impl fmt::Debug for $side {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($side)).field(&self.driver.exchange).finish()
            }
        }
    };
}

/// The side that allocates a channel and shows the invitation code.
///
/// `Send`: it can be moved to a worker thread. `Debug` never shows the code,
/// keys or data. Dropped before its exchange ended, it closes the channel
/// (best effort, at most [`CLOSE_GRACE`](wormhole_sync_core::CLOSE_GRACE)),
/// unless it was serialized.
pub struct Initiator {
    driver: Driver,
}

impl Initiator {
    /// An initiator for `appid` that will send `data` (at most 32 KiB),
    /// with every option at its default.
    pub fn new(appid: &str, data: Vec<u8>) -> Result<Initiator, Error> {
        Initiator::builder(appid, data).build()
    }

    /// Options for an initiator: `Initiator::builder(appid, data)
    /// .rendezvous(url).timeout(d).build()?`.
    pub fn builder(appid: &str, data: Vec<u8>) -> Builder<Initiator> {
        Builder::new(appid, data)
    }

    /// Blocks until the channel is allocated and returns the code to show.
    pub fn get_code(&mut self) -> Result<Code, Error> {
        self.driver.run_until(|news, _| news.code_result().is_some());
        self.driver.news.code_result().unwrap_or(Err(Error::Timeout))
    }
}

shared_methods!(Initiator, Role::Initiator);

/// The side that types the invitation code.
///
/// `Send`: it can be moved to a worker thread. `Debug` never shows the code,
/// keys or data. Dropped before its exchange ended, it closes the channel
/// (best effort, at most [`CLOSE_GRACE`](wormhole_sync_core::CLOSE_GRACE)),
/// unless it was serialized.
pub struct Receiver {
    driver: Driver,
}

impl Receiver {
    /// A receiver for `appid` with the `code` a person typed, that will send
    /// `data` (at most 32 KiB). A malformed code is [`Error::BadCode`].
    pub fn new(appid: &str, code: impl Into<CodeInput>, data: Vec<u8>) -> Result<Receiver, Error> {
        Receiver::builder(appid, code, data).build()
    }

    /// Options for a receiver: `Receiver::builder(appid, code, data)
    /// .rendezvous(url).build()?`.
    pub fn builder(appid: &str, code: impl Into<CodeInput>, data: Vec<u8>) -> Builder<Receiver> {
        Builder::new(appid, data).code(code)
    }
}

shared_methods!(Receiver, Role::Receiver);
