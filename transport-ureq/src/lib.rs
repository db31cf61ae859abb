//! Blocking **wormhole-sync** client: securely exchange a small piece of data
//! (a key, an address, an invitation) between two computers using a short
//! invitation code like `7-guitarist-revenge` that a person reads off one
//! screen and types into the other.
//!
//! ```no_run
//! use wormhole_sync_ureq::transcribe::{Initiator, Receiver};
//!
//! // On the first machine:
//! let mut i = Initiator::new("example.com/app1", b"initiator's data".to_vec())?;
//! let code = i.get_code()?; // blocks until the channel is allocated
//! println!("Invitation Code: {code}");
//! let theirs = i.get_data()?; // blocks until the exchange completes
//!
//! // On the second machine, with the code a person typed:
//! let mut r = Receiver::new("example.com/app1", &code.to_string(), b"receiver's data".to_vec())?;
//! let theirs = r.get_data()?;
//! # Ok::<(), wormhole_sync_ureq::Error>(())
//! ```
//!
//! # Options
//! `Initiator::builder` and `Receiver::builder` return a [`Builder`] whose
//! setters cannot fail; `build()` checks everything once:
//!
//! ```no_run
//! use std::time::Duration;
//! use wormhole_sync_ureq::transcribe::Initiator;
//! use wormhole_sync_ureq::Schedule;
//!
//! const MINUTE: Duration = Duration::from_secs(60);
//! let mut i = Initiator::builder("example.com/app1", b"my address".to_vec())
//!     .rendezvous("https://rendezvous.example.com")
//!     // Every minute for ten minutes, then hourly; give up after three days.
//!     .schedule(Schedule::every(MINUTE)?.then_after(10 * MINUTE, 60 * MINUTE)?)
//!     .timeout(3 * 24 * 60 * MINUTE)
//!     .build()?;
//! # Ok::<(), wormhole_sync_ureq::Error>(())
//! ```
//!
//! The others: `code_words`, `confirm_verifier` (then `get_verifier`,
//! `accept_verifier`/`reject_verifier`), `long_poll`, `request_timeout`, a
//! chosen `code`, and `http_client` for your own [`ureq::Agent`] (a proxy, a
//! private CA). Exchanges share one kept-alive agent unless given their own.
//!
//! # Blocking, cancelling, closing
//! Each `get_*` call drives the exchange until it has its answer; requests
//! run on short-lived threads of their own. A [`Canceller`] stops a blocked
//! call from another thread. `close()`, or dropping an exchange that was
//! never serialized, closes the channel so the peer learns at once.
//!
//! # Errors
//! Every call returns the one [`Error`] type shared with the async crate:
//! outcomes (`WrongCode`, `Timeout`, `Crowded`, `ServerUnreachable` with the
//! transport's error as its `source()`, ...), refused inputs (`BadCode`,
//! `DataTooLarge`, `InvalidConfig`, `BadSerializedState`) and
//! [`ApiMisuse`].
//!
//! # magic-wormhole peers
//! [`magic_wormhole`] has an `Initiator` and a `Receiver` of the same shape
//! that exchange one message each way with magic-wormhole's clients (the
//! `wormhole` command, applications on its library) through a
//! magic-wormhole mailbox server, over a WebSocket (`ws://`, `wss://`).
//!
//! # Serialization and secrets
//! `serialize()` and `from_serialized()` work between any two calls, also
//! across processes and with the async crate. The saved state **contains
//! secrets** (the code, the exchange's seed, our data): store it as
//! carefully as the data. Neither `Debug` nor error texts show them.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod driver;
pub mod magic_wormhole;
mod mailbox;
mod pool;
pub mod transcribe;

pub use driver::{Canceller, Observer};
/// The TLS library of `wss://` connections, for a [`magic_wormhole::TlsConfig`].
pub use rustls;
pub use transcribe::{Initiator, Receiver};
/// The HTTP client this crate is built on, for [`Builder::http_client`].
pub use ureq;
pub use wormhole_sync_core::builder::{Builder, Client};
pub use wormhole_sync_core::{
    ApiMisuse, ChannelId, Code, CodeError, CodeInput, Error, ErrorCode, Mood, Role, Schedule, ServerErrorCode,
    ServerTrouble, TransportError, Verifier, CLOSE_GRACE, DEFAULT_RENDEZVOUS_URL, MAX_DATA_LEN,
};
