//! Blocking **wormhole-sync** client: the transcribe-mode [`Initiator`] and
//! [`Receiver`] for programs that block, as a thin loop around the
//! sans-IO core ([`wormhole_sync_core::Exchange`]) that sends its requests
//! with a keep-alive [`ureq`] agent and sleeps until its next deadline.
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
//! Options (`rendezvous`, `schedule`, `timeout`, code length, verifier
//! confirmation, the HTTP `agent`) are set with methods before the first
//! `get_*` call. Exchanges share one kept-alive [`ureq::Agent`] unless given
//! their own.
//! [`Initiator::serialize`] and [`Initiator::from_serialized`] work between
//! any two calls; the serialized state contains secrets.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod driver;
pub mod transcribe;

pub use transcribe::{Initiator, Receiver};
/// The HTTP client this crate is built on, for [`Initiator::agent`].
pub use ureq;
pub use wormhole_sync_core::{Code, Error, Schedule, Verifier, DEFAULT_RENDEZVOUS_URL};
