//! Async **wormhole-sync** client on tokio: the event-loop-friendly
//! transcribe-mode [`Initiator`] and [`Receiver`] (for programs built
//! around an event loop), as one driver task per exchange around the sans-IO core.
//!
//! ```no_run
//! use wormhole_sync_tokio::transcribe::{Initiator, Receiver};
//!
//! # async fn demo() -> Result<(), wormhole_sync_tokio::Error> {
//! let i = Initiator::new("example.com/app1", b"initiator's data".to_vec())?.start(); // like startService()
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
//! Handles are `Clone + Send + Sync`, their futures `Send + 'static`; it
//! works on current-thread and multi-thread runtimes. All exchanges of a
//! process share one HTTP client (keep-alive pool) and no thread of their
//! own. Errors and the serialized format are the core's, shared with the
//! blocking `wormhole-sync-ureq`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod driver;
pub mod transcribe;

pub use driver::Handle;
pub use transcribe::{Initiator, Receiver};
pub use wormhole_sync_core::{Code, Error, Schedule, Verifier, DEFAULT_RENDEZVOUS_URL};
