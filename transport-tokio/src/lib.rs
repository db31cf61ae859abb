//! Async **wormhole-sync** client on tokio: securely exchange a small piece
//! of data (a key, an address, an invitation) between two computers using a
//! short invitation code like `7-guitarist-revenge`, from programs built
//! around an event loop.
//!
//! ```no_run
//! use wormhole_sync_tokio::transcribe::{Initiator, Receiver};
//!
//! # async fn demo() -> Result<(), wormhole_sync_tokio::Error> {
//! let i = Initiator::new("example.com/app1", b"initiator's data".to_vec())?.start();
//! let code = i.when_code().await?; // may be awaited by many tasks, before or after it is known
//! println!("Invitation Code: {code}");
//! let theirs = i.when_data().await?; // likewise; every waiter gets the result or the error
//!
//! // Elsewhere, with the code a person typed:
//! let r = Receiver::new("example.com/app1", &code.to_string(), b"receiver's data".to_vec())?.start();
//! let theirs = r.when_data().await?;
//! # Ok(()) }
//! ```
//!
//! # Options
//! `Initiator::builder` and `Receiver::builder` return the same [`Builder`]
//! as the blocking crate's; its setters cannot fail and `build()` checks
//! everything once:
//!
//! ```no_run
//! use std::time::Duration;
//! use wormhole_sync_tokio::transcribe::Initiator;
//! use wormhole_sync_tokio::Schedule;
//!
//! # async fn demo() -> Result<(), wormhole_sync_tokio::Error> {
//! const MINUTE: Duration = Duration::from_secs(60);
//! let handle = Initiator::builder("example.com/app1", b"my address".to_vec())
//!     .rendezvous("https://rendezvous.example.com")
//!     .schedule(Schedule::every(MINUTE)?.then_after(10 * MINUTE, 60 * MINUTE)?)
//!     .timeout(3 * 24 * 60 * MINUTE)
//!     .build()?
//!     .start();
//! # Ok(()) }
//! ```
//!
//! The others: `code_words`, `confirm_verifier` (then
//! [`Handle::when_verifier`] and `accept_verifier`/`reject_verifier`),
//! `long_poll`, `request_timeout`, a chosen `code`, and `http_client` for
//! your own [`reqwest::Client`]. All exchanges of a process share one HTTP
//! client (keep-alive pool) unless given their own, and no thread of their
//! own.
//!
//! # Handles and futures
//! Handles are `Clone + Send + Sync`, their futures `Send + 'static`; it
//! works on current-thread and multi-thread runtimes. An exchange runs while
//! a handle or a `when_*` future is alive; then it stops and closes its
//! channel (unless serialized). If its driver task panics or its runtime
//! shuts down, every waiter gets [`Error::DriverStopped`].
//!
//! # Errors
//! The one [`Error`] type shared with the blocking crate: outcomes
//! (`WrongCode`, `Timeout`, `Crowded`, `ServerUnreachable` with the
//! transport's error as its `source()`, ...), refused inputs and
//! [`ApiMisuse`].
//!
//! # magic-wormhole peers
//! [`magic_wormhole`] has an `Initiator` and a `Receiver` of the same shape
//! that exchange one message each way with magic-wormhole's clients (the
//! `wormhole` command, applications on its library) through a
//! magic-wormhole mailbox server, over a WebSocket (`ws://`, `wss://`).
//!
//! # Serialization and secrets
//! [`Handle::serialize`] works at any time, also while running; restore with
//! `Initiator::from_serialized` (here or in the blocking crate) and
//! `start()`. The saved state **contains secrets** (the code, the exchange's
//! seed, our data): store it as carefully as the data. Neither `Debug` nor
//! error texts show them.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod driver;
pub mod magic_wormhole;
mod mailbox;
pub mod transcribe;

pub use driver::Handle;
/// The HTTP client this crate is built on, for [`Builder::http_client`].
pub use reqwest;
/// The TLS library of `wss://` connections, for a [`magic_wormhole::TlsConfig`].
pub use rustls;
pub use transcribe::{Initiator, Receiver};
pub use wormhole_sync_core::builder::{Builder, Client};
pub use wormhole_sync_core::{
    ApiMisuse, ChannelId, Code, CodeError, CodeInput, Error, ErrorCode, Mood, Role, Schedule, ServerErrorCode,
    ServerTrouble, TransportError, Verifier, CLOSE_GRACE, DEFAULT_RENDEZVOUS_URL, MAX_DATA_LEN,
};

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;
