//! The magic-wormhole flavour: what this crate needs to exchange data with
//! clients of magic-wormhole's ecosystem (the `wormhole` command, its
//! Python library, and their peers) through a magic-wormhole mailbox
//! server. The frames on the wire are [`crate::mailbox_wire`]'s.
//!
//! - [`crypto`]: SPAKE2 in its symmetric mode, the key derivations and
//!   NaCl's secretbox, as magic-wormhole's clients compute them.

pub mod crypto;
