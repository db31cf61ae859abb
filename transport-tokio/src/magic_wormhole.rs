//! The magic-wormhole flavour on tokio: exchange one message each way with
//! a client of magic-wormhole's ecosystem (the `wormhole` command, an
//! application on its Python library) through any magic-wormhole mailbox
//! server, over a WebSocket (`ws://` or `wss://`).
//!
//! The same shape as [`transcribe`](crate::transcribe): build an
//! [`Initiator`] or [`Receiver`] (the same [`Builder`]), `start()` it,
//! await the [`Handle`]. The rendezvous URL is the mailbox server's
//! WebSocket URL; by default magic-wormhole's public server
//! ([`PUBLIC_MAILBOX_URL`]). Verifier confirmation is not offered.
//!
//! ```no_run
//! use wormhole_sync_tokio::magic_wormhole::{text, Initiator};
//!
//! # async fn demo() -> Result<(), wormhole_sync_tokio::Error> {
//! // What `wormhole receive` prints, sent as `wormhole send --text` does:
//! let sender = Initiator::text_builder("meet at 6").rendezvous("ws://127.0.0.1:4000/v1").build()?.start();
//! println!("Wormhole code is: {}", sender.when_code().await?);
//! let answer = sender.when_data().await?;
//! assert!(text::is_ack(&answer));
//! # Ok(()) }
//! ```

use wormhole_sync_core::builder::{Builder, Client};
use wormhole_sync_core::magic_wormhole::MailboxExchange;
pub use wormhole_sync_core::magic_wormhole::{text, PUBLIC_MAILBOX_URL, TEXT_APPID};
use wormhole_sync_core::{CodeInput, Error, Role};

use crate::driver::{self, Handle};
pub use crate::mailbox::TlsConfig;

/// The methods both sides share, written once.
macro_rules! shared_methods {
    ($side:ident, $role:expr) => {
        impl Client for $side {
            type Http = TlsConfig;
            type Machine = MailboxExchange;
            const ROLE: Role = $role;

            fn from_machine(exchange: MailboxExchange, connector: Option<TlsConfig>) -> Self {
                $side { exchange, connector }
            }
        }

        impl std::fmt::Debug for $side {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($side))
                    .field("exchange", &self.exchange)
                    .field("own_connector", &self.connector.is_some())
                    .finish()
            }
        }

        impl $side {
            /// Starts the driver task on the current tokio runtime (it
            /// panics outside a runtime, as `tokio::spawn` does). The
            /// schedule (here: how soon a dropped connection is opened
            /// again) and the timeout count from the first start, also
            /// across a restore.
            pub fn start(self) -> Handle {
                driver::start(self.exchange, |guard| crate::mailbox::drive(guard, self.connector))
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
            /// blocking one); call `start()` to resume.
            pub fn from_serialized(bytes: &[u8]) -> Result<Self, Error> {
                let exchange = MailboxExchange::from_serialized(bytes)?;
                if exchange.role() != $role {
                    return Err(Error::BadSerializedState("this state belongs to the other side".into()));
                }
                Ok(Self::from_machine(exchange, None))
            }
        }
    };
}

/// The side that allocates a nameplate and shows the code (as `wormhole
/// send` does); not started yet.
pub struct Initiator {
    exchange: MailboxExchange,
    connector: Option<TlsConfig>,
}

impl Initiator {
    /// Options for an initiator sending `data` (at most 32 KiB) to an
    /// application of `appid`: `.rendezvous(url)`, `.timeout(d)`, ... then
    /// `.build()?`.
    pub fn builder(appid: &str, data: Vec<u8>) -> Builder<Initiator> {
        Builder::new(appid, data)
    }

    /// Options for sending `message` as `wormhole send --text` does (the
    /// `wormhole` command's app id and text offer); the peer's answer
    /// satisfies [`text::is_ack`].
    pub fn text_builder(message: &str) -> Builder<Initiator> {
        Builder::new(TEXT_APPID, text::offer(message))
    }
}

shared_methods!(Initiator, Role::Initiator);

/// The side that types the code (as `wormhole receive` does); not started yet.
pub struct Receiver {
    exchange: MailboxExchange,
    connector: Option<TlsConfig>,
}

impl Receiver {
    /// Options for a receiver with the `code` a person typed, sending
    /// `data` (at most 32 KiB) back.
    pub fn builder(appid: &str, code: impl Into<CodeInput>, data: Vec<u8>) -> Builder<Receiver> {
        Builder::new(appid, data).code(code)
    }

    /// Options for receiving what `wormhole send --text` sends: read the
    /// data with [`text::read_offer`]; the answer `wormhole` waits for is
    /// sent back (a refusal it shows cleanly, if it offered a file or a
    /// directory: see [`Builder::answer_text_offers`]).
    pub fn text_builder(code: impl Into<CodeInput>) -> Builder<Receiver> {
        Builder::new(TEXT_APPID, Vec::new()).code(code).answer_text_offers(true)
    }
}

shared_methods!(Receiver, Role::Receiver);
