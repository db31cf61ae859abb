//! The magic-wormhole flavour: what this crate needs to exchange data with
//! clients of magic-wormhole's ecosystem (the `wormhole` command, its
//! Python library, and their peers) through a magic-wormhole mailbox
//! server. The frames on the wire are [`crate::mailbox_wire`]'s.
//!
//! - [`MailboxExchange`]: one side of an exchange with a magic-wormhole
//!   peer, as a sans-IO state machine over a WebSocket.
//! - [`text`]: the `wormhole` command's convention for text messages.
//! - [`crypto`]: SPAKE2 in its symmetric mode, the key derivations and
//!   NaCl's secretbox, as magic-wormhole's clients compute them.
//!
//! What it implements: codes (nameplate and words), the mailbox client
//! protocol, SPAKE2, key confirmation through `version`, one application
//! message each way (phase `0`), the verifier. What it does not: file and
//! directory transfer, the transit relay, dilation.

pub mod crypto;
mod exchange;
mod facts;
pub mod text;

pub use exchange::{MailboxExchange, Transmit, MAX_SERIALIZED_LEN};

/// magic-wormhole's public mailbox server, the `wormhole` command's default.
pub const PUBLIC_MAILBOX_URL: &str = "ws://relay.magic-wormhole.io:4000/v1";
/// The application id of the `wormhole` command's text, file and directory
/// transfers.
pub const TEXT_APPID: &str = "lothar.com/wormhole/text-or-file-xfer";
