//! Transcribe mode on tokio: build an [`Initiator`] or [`Receiver`],
//! [`start`](Initiator::start) it, then await the [`Handle`].

use wormhole_sync_core::builder::{Builder, Client};
use wormhole_sync_core::{CodeInput, Error, Exchange, Role};

use crate::driver::{self, Handle};

/// The methods both sides share, written once.
macro_rules! shared_methods {
    ($side:ident, $role:expr) => {
        impl Client for $side {
            type Http = reqwest::Client;
            type Machine = Exchange;
            const ROLE: Role = $role;

            fn from_machine(exchange: Exchange, client: Option<reqwest::Client>) -> Self {
                $side { exchange, client }
            }
        }

        impl $side {
            /// Starts the driver task on the current tokio runtime (it
            /// panics outside a runtime, as `tokio::spawn` does). The
            /// schedule and timeout count from the first start, also across
            /// a restore.
            pub fn start(self) -> Handle {
                let client = self.client.unwrap_or_else(driver::shared_client);
                driver::start(self.exchange, |guard| driver::drive(guard, client))
            }

            /// The state as printable JSON (see [`Handle::serialize`] for a
            /// running exchange). **It contains secrets.**
            pub fn serialize(&self) -> Vec<u8> {
                self.exchange.serialize()
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
                self.exchange.set_timeout(timeout)
            }

            /// Restores from `serialize` output (of this crate or the
            /// blocking one: the format is the core's); call `start()` to
            /// resume. It uses the shared HTTP client.
            pub fn from_serialized(bytes: &[u8]) -> Result<Self, Error> {
                Ok(Self::from_machine(Exchange::from_serialized_as(bytes, $role)?, None))
            }
        }
    };
}

/// The side that allocates a channel and shows the invitation code; not
/// started yet.
#[derive(Debug)]
pub struct Initiator {
    exchange: Exchange,
    client: Option<reqwest::Client>,
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
}

shared_methods!(Initiator, Role::Initiator);

/// The side that types the invitation code; not started yet.
#[derive(Debug)]
pub struct Receiver {
    exchange: Exchange,
    client: Option<reqwest::Client>,
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
