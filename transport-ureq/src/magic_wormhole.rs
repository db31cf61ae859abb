//! The magic-wormhole flavour, blocking: exchange one message each way
//! with a client of magic-wormhole's ecosystem (the `wormhole` command, an
//! application on its Python library) through any magic-wormhole mailbox
//! server, over a WebSocket (`ws://` or `wss://`).
//!
//! The same shape as [`transcribe`](crate::transcribe): build an
//! [`Initiator`] or [`Receiver`] (the same [`Builder`]), then `get_code`,
//! `get_verifier`, `get_data`. The rendezvous URL is the mailbox server's
//! WebSocket URL; by default magic-wormhole's public server
//! ([`PUBLIC_MAILBOX_URL`]). Verifier confirmation is not offered.
//!
//! ```no_run
//! use wormhole_sync_ureq::magic_wormhole::{text, Receiver};
//!
//! // What `wormhole send --text hi` sent, with the code it showed:
//! let mut receiver = Receiver::text_builder("7-guitarist-revenge").rendezvous("ws://127.0.0.1:4000/v1").build()?;
//! if let text::Offer::Text(message) = text::read_offer(&receiver.get_data()?)? {
//!     println!("{message}");
//! }
//! # Ok::<(), wormhole_sync_ureq::Error>(())
//! ```

use std::fmt;

use wormhole_sync_core::builder::{Builder, Client};
use wormhole_sync_core::magic_wormhole::MailboxExchange;
pub use wormhole_sync_core::magic_wormhole::{text, PUBLIC_MAILBOX_URL, TEXT_APPID};
use wormhole_sync_core::{Code, CodeInput, Error, Role, Verifier};

use crate::driver::{Canceller, Observer};
use crate::mailbox::MailboxDriver;
pub use crate::mailbox::TlsConfig;

/// The methods both sides share, written once.
macro_rules! shared_methods {
    ($side:ident, $role:expr) => {
        impl Client for $side {
            type Http = TlsConfig;
            type Machine = MailboxExchange;
            const ROLE: Role = $role;

            fn from_machine(exchange: MailboxExchange, connector: Option<TlsConfig>) -> Self {
                $side { driver: MailboxDriver::new(exchange, connector) }
            }
        }

        impl $side {
            /// Blocks until the peer proved it has the same code, and
            /// returns the verifier both people can compare.
            pub fn get_verifier(&mut self) -> Result<Verifier, Error> {
                self.driver.run_until(|news| news.verifier_result().is_some());
                self.driver.news.verifier_result().unwrap_or(Err(Error::Timeout))
            }

            /// Blocks until the exchange completes and its mailbox is
            /// closed, and returns the peer's message or the error
            /// (`WrongCode`, `Timeout`, `Crowded`, ...). Calling it again
            /// returns the same result.
            pub fn get_data(&mut self) -> Result<Vec<u8>, Error> {
                self.driver.run_until(|_| false);
                self.driver.news.data().unwrap_or(Err(Error::Timeout))
            }

            /// The mailbox server's URL this exchange uses.
            pub fn rendezvous(&self) -> &str {
                self.driver.exchange.config().rendezvous().unwrap_or(PUBLIC_MAILBOX_URL)
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

            /// Stops the exchange and closes its mailbox, waiting at most
            /// [`CLOSE_GRACE`](wormhole_sync_core::CLOSE_GRACE). Dropping an
            /// exchange that was never serialized does the same.
            pub fn close(mut self) {
                self.driver.close();
            }

            /// The whole state as printable JSON; restore it with
            /// `from_serialized`, in this process or another, and continue.
            /// **It contains secrets** (the code, our seed, our data). Once
            /// serialized, dropping this object no longer closes the
            /// mailbox: the saved copy may continue it.
            pub fn serialize(&self) -> Vec<u8> {
                self.driver.serialize()
            }

            /// Restores an object from [`serialize`](Self::serialize)'s
            /// output (of this crate or the async one); the schedule and
            /// timeout continue from the original start.
            pub fn from_serialized(bytes: &[u8]) -> Result<Self, Error> {
                let exchange = MailboxExchange::from_serialized(bytes)?;
                if exchange.role() != $role {
                    return Err(Error::BadSerializedState("this state belongs to the other side".into()));
                }
                Ok(Self::from_machine(exchange, None))
            }

            /// Opens its `wss://` connections with this TLS configuration from now
            /// on (a restored exchange whose server needs a private CA, say).
            pub fn with_tls_config(self, config: TlsConfig) -> Self {
                let Self { driver } = self;
                Self { driver: driver.with_connector(config) }
            }
        }

        impl fmt::Debug for $side {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($side)).field(&self.driver.exchange).finish()
            }
        }
    };
}

/// The side that allocates a nameplate and shows the code, as `wormhole
/// send` does. `Send`; `Debug` never shows the code, keys or data.
pub struct Initiator {
    driver: MailboxDriver,
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

    /// Blocks until a nameplate is allocated and returns the code to show.
    pub fn get_code(&mut self) -> Result<Code, Error> {
        self.driver.run_until(|news| news.code_result().is_some());
        self.driver.news.code_result().unwrap_or(Err(Error::Timeout))
    }
}

shared_methods!(Initiator, Role::Initiator);

/// The side that types the code, as `wormhole receive` does. `Send`;
/// `Debug` never shows the code, keys or data.
pub struct Receiver {
    driver: MailboxDriver,
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
