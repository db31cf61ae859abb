//! The sans-IO protocol core of **wormhole-sync**: securely exchange a small
//! piece of data between two computers using a short invitation code like
//! `7-guitarist-revenge`, through a rendezvous server that only relays
//! encrypted messages.
//!
//! This crate does no I/O, reads no clock and uses no global randomness:
//! time is an input ([`Timestamp`], wall-clock milliseconds) and all
//! randomness derives from a 32-byte seed the caller supplies. The same inputs
//! always give the same outputs, so the whole protocol runs deterministically
//! in tests (module `sim`, feature `sim`) and under fuzzers. The transport crates
//! `wormhole-sync-ureq` (blocking) and `wormhole-sync-tokio` (async) bind it
//! to HTTP.
//!
//! # Pieces
//! - [`Exchange`]: one side (initiator or receiver) of an exchange, and
//!   [`Progress`], the record of its news a driver keeps.
//! - [`builder::Builder`]: the options both client crates share.
//! - [`rendezvous::Rendezvous`]: the server's logic, for the server crate.
//! - [`wire`]: the client-server messages (specified in `PROTOCOL.md`).
//! - [`Code`], [`Config`], [`Schedule`], [`Error`].
//!
//! # Options
//! A [`Config`] holds the application id, the polling [`Schedule`]
//! (`(when, interval)` steps from the first start, e.g.
//! `Schedule::every(minute)?.then_after(ten_minutes, hour)?`), the hard
//! timeout, the long-poll wait, the code length and whether the verifier
//! waits for a person's confirmation. Client crates set them through
//! [`builder::Builder`], whose setters cannot fail.
//!
//! # Errors
//! One [`Error`] type for every layer: the outcomes an exchange can end
//! with ([`Error::is_outcome`]), refused inputs (a malformed code, too much
//! data, a corrupt saved state) and [`ApiMisuse`]. A server's refusal
//! carries a typed [`ServerErrorCode`]; a transport's failure is kept whole
//! as a [`TransportError`], the `source()` of [`Error::ServerUnreachable`].
//!
//! # Driving an exchange
//! An [`Exchange`] is driven by a loop the caller owns:
//!
//! 1. `exchange.start(now)` once.
//! 2. Send every request [`poll_transmit(now)`](Exchange::poll_transmit)
//!    hands out: `POST` [`t.body()`](Transmit::body) to
//!    [`t.url()`](Transmit::url), giving up after
//!    [`t.timeout()`](Transmit::timeout). Report the answer with
//!    [`handle_response`](Exchange::handle_response) (any HTTP status) or
//!    [`handle_transport_error`](Exchange::handle_transport_error).
//! 3. Act on every [`poll_event()`](Exchange::poll_event): the code to show,
//!    the verifier, the outcome (the peer's data or the error). A driver
//!    that answers questions later keeps them in a [`Progress`].
//! 4. Sleep until [`poll_timeout()`](Exchange::poll_timeout) or an answer
//!    arrives, call [`handle_timeout(now)`](Exchange::handle_timeout), and go
//!    to 2, until [`is_finished()`](Exchange::is_finished).
//!
//! Here both sides and the rendezvous run in memory, in virtual time:
//!
//! ```
//! use wormhole_sync_core::rendezvous::{Rendezvous, RendezvousConfig};
//! use wormhole_sync_core::wire::{Request, Route};
//! use wormhole_sync_core::{Config, Event, Exchange, Progress, Timestamp};
//!
//! /// Sends every due request to the in-memory server and hands back its answer.
//! fn pump(side: &mut Exchange, server: &mut Rendezvous, now: Timestamp) {
//!     while let Some(t) = side.poll_transmit(now) {
//!         let request = Request::parse(Route::from_path(t.path()).unwrap(), &t.body()).unwrap();
//!         match server.handle(now, &request) {
//!             Ok(answer) => side.handle_response(now, t.id(), 200, &answer.to_json()),
//!             Err(error) => side.handle_response(now, t.id(), error.http_status(), &error.to_json()),
//!         }
//!     }
//! }
//!
//! let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
//! let config = Config::new("example.com/app1")?;
//! let mut now = Timestamp::from_millis(1_700_000_000_000);
//!
//! let mut initiator = Exchange::initiator(config.clone(), b"initiator's data".to_vec(), [1; 32])?;
//! initiator.start(now);
//! pump(&mut initiator, &mut server, now);
//! let Some(Event::Code(code)) = initiator.poll_event() else { panic!("no code yet") };
//! println!("Invitation Code: {code}");
//!
//! let mut receiver = Exchange::receiver(config, code, b"receiver's data".to_vec(), [2; 32])?;
//! receiver.start(now);
//! let (mut i_news, mut r_news) = (Progress::default(), Progress::default());
//! while !(initiator.is_finished() && receiver.is_finished()) {
//!     pump(&mut initiator, &mut server, now);
//!     pump(&mut receiver, &mut server, now);
//!     i_news.drain(&mut initiator);
//!     r_news.drain(&mut receiver);
//!     // Nothing else can happen before the earliest wake-up time.
//!     now = [initiator.poll_timeout(), receiver.poll_timeout()].into_iter().flatten().min().unwrap_or(now);
//! }
//! assert_eq!(i_news.outcome(), Some(Ok(&b"receiver's data"[..])));
//! assert_eq!(r_news.outcome(), Some(Ok(&b"initiator's data"[..])));
//! // Both closed: the log is gone; the channel id stays spent for the retention.
//! assert_eq!(server.stats().messages, 0);
//! # Ok::<(), wormhole_sync_core::Error>(())
//! ```
//!
//! # Secrets
//! The code, the exchange's seed, the keys and the PAKE state never appear in `Debug`
//! output or error messages. [`Exchange::serialize`] output *does* contain
//! them: store it like the data itself.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod ascii_json;
#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod bench_internals;
pub mod builder;
mod code;
mod config;
mod crypto;
mod error;
mod exchange;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod magic_wormhole;
pub mod mailbox_wire;
pub mod rendezvous;
mod saved_fields;
#[cfg(feature = "sim")]
pub mod sim;
mod time;
#[cfg(test)]
mod vectors;
pub mod wire;
mod words;

use serde::{Deserialize, Serialize};

pub use code::{
    word_list, ChannelId, Code, CodeError, CodeInput, MAX_CHANNEL_ID, MAX_CODE_LEN, MAX_CODE_WORDS, MAX_WORD_LEN,
};
pub use config::{
    parse_duration, Config, Schedule, DEFAULT_LONG_POLL, DEFAULT_RENDEZVOUS_URL, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_TIMEOUT, MAX_SCHEDULE_STEPS, MAX_TIMEOUT, MAX_URL_LEN, MIN_INTERVAL,
};
pub use crypto::Verifier;
pub use error::{ApiMisuse, Error, ServerErrorCode, ServerTrouble, TransportError};
pub use exchange::{Event, Exchange, Progress, RequestId, Transmit, CLOSE_GRACE, MAX_DATA_LEN, MAX_SERIALIZED_LEN};
pub use time::Timestamp;
pub use wire::{ErrorCode, Mood};

/// Which side of an exchange this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Allocates the channel and shows the code.
    Initiator,
    /// Types the code the initiator showed.
    Receiver,
}

impl Role {
    /// The other role.
    pub fn peer(self) -> Role {
        match self {
            Role::Initiator => Role::Receiver,
            Role::Receiver => Role::Initiator,
        }
    }
}
