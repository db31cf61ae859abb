//! The rendezvous server's logic as a pure state machine, in magic-wormhole's
//! mailbox model: per application id, short **nameplates** (the channel ids
//! in codes) lead to **mailboxes** (long random ids), each with at most two
//! sides, an ordered message log, closing, burning, expiry and limits.
//!
//! A nameplate is only the way in: it is released (its number free for the
//! next code) as soon as both sides know the mailbox, while the mailbox
//! lives until both sides close or it expires. Both front ends of the server
//! run on this one machine: the HTTP API through [`Rendezvous::handle`], and
//! magic-wormhole's WebSocket protocol through [`Rendezvous::claim`],
//! [`open`](Rendezvous::open), [`add`](Rendezvous::add),
//! [`release`](Rendezvous::release) and [`close`](Rendezvous::close), so
//! nameplates handed out by either never collide.
//!
//! **Words.** One per concept, as PROTOCOL.md 1 defines them, in code and
//! docs alike: a **nameplate** is the short number in a code (its type is
//! [`ChannelId`](crate::ChannelId), and the HTTP API's field and the clients'
//! docs call it the *channel id*, the word a user sees); a **mailbox** is
//! the store behind it (members, message log, closes), named by its
//! mailbox id; a **channel** is the two together as the HTTP API and the
//! caps count them (`max_channels`, "a new channel"). A **side** is one
//! client's id, a **member** a side inside a mailbox.
//!
//! An operation is also a value, [`Op`] (an HTTP request or a mailbox
//! protocol operation), with what a server needs to know before running it
//! (its [`Scope`], the rate [`Limit`]s and the [`Demands`] on caps), run by
//! [`Rendezvous::apply`]. After each operation, [`Rendezvous::effects`]
//! says which mailboxes it changed and how, for the caller to persist them
//! and wake whoever waits. The rules of a server's front ends are here too,
//! sans-IO, so the server and the simulation run the same code: a mailbox
//! protocol connection ([`MailboxSession`]: frames in, operations and
//! frames out) and a request held for news ([`LongPoll`]).
//!
//! Where things are: `config` (limits and timings), `state` (apps,
//! nameplates, mailboxes and their members; who may enter, which closed
//! mailbox is kept), `operations` (the HTTP API's requests and the steps
//! both front ends share), `mailbox_protocol` (the WebSocket front end's
//! operations), `op` (operations as values), `session` and `long_poll`
//! (the front ends' rules), `changes` (what an operation changed),
//! `expiry`, `queries` (reads that change nothing), `partial_view` (a
//! rendezvous holding part of a larger state, and what it must be told)
//! and `snapshot` (the whole state as a value).

mod changes;
mod config;
mod expiry;
#[cfg(test)]
mod host_tests;
mod long_poll;
mod mailbox_protocol;
mod op;
mod operations;
mod partial_view;
mod queries;
mod session;
mod snapshot;
mod state;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::wire::{ErrorCode, WireError};

pub use changes::{Changes, Effect, EffectKind, Finished, MailboxChange, Persist};
pub use config::{app_channels_full, server_channels_full, RendezvousConfig};
pub use expiry::SweepCursor;
pub use long_poll::{Held, LongPoll};
pub use op::{Answer, Demands, Limit, Op, Outcome, Scope, Target};
pub use partial_view::NameplatesInUse;
pub use session::{refusal, seconds, Listening, MailboxSession, Step};
pub use snapshot::{ChannelSnapshot, MailboxSnapshot, MemberSnapshot, RendezvousSnapshot, SnapshotError};
use state::App;

/// Counts for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RendezvousStats {
    /// Application ids with at least one mailbox.
    pub apps: usize,
    /// Open mailboxes (channels): not counting those kept, emptied, for
    /// the retention after their members all closed.
    pub channels: usize,
    /// Mailboxes kept, emptied, for the retention (spent, burned or abandoned codes).
    pub tombstones: usize,
    /// Nameplates in use (short ids not yet released).
    pub nameplates: usize,
    /// Stored messages.
    pub messages: usize,
}

/// The rendezvous state machine.
///
/// ```
/// use wormhole_sync_core::rendezvous::{Rendezvous, RendezvousConfig};
/// use wormhole_sync_core::wire::{AllocateRequest, Request, Response};
/// use wormhole_sync_core::Timestamp;
///
/// let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
/// let now = Timestamp::from_millis(0);
/// let alloc = |side: &str| Request::Allocate(AllocateRequest::new("app", side));
/// let Ok(Response::Allocated(a)) = server.handle(now, &alloc("s1")) else { panic!() };
/// let Ok(Response::Allocated(b)) = server.handle(now, &alloc("s2")) else { panic!() };
/// // Two different one-digit ids, drawn at random, each leading to its own mailbox.
/// assert_ne!(a.channel, b.channel);
/// assert!(a.channel.get() <= 9 && b.channel.get() <= 9);
/// assert_ne!(a.mailbox, b.mailbox);
/// ```
#[derive(Clone, Debug)]
pub struct Rendezvous {
    config: RendezvousConfig,
    apps: BTreeMap<String, App>,
    /// Mailboxes held, tombstones included (the caps count them).
    mailboxes: usize,
    tombstones: usize,
    nameplates: usize,
    messages: usize,
    /// Draws nameplates and mailbox ids; seeded by the caller (the core has
    /// no randomness of its own).
    rng: ChaCha20Rng,
    /// What the last operation changed.
    effects: Vec<Effect>,
    /// Exchanges the last operation finished (cleared with the effects).
    finished: Vec<Finished>,
    /// Mailboxes made or restored so far: the next one's instance number.
    instances: u64,
    /// An allocation ran past the numbers this partial view checked (see
    /// [`Rendezvous::nameplates_to_check`]).
    ran_past_checked: bool,
}

fn err(code: ErrorCode, message: &str) -> WireError {
    WireError::new(code, message)
}

fn unknown() -> WireError {
    err(ErrorCode::UnknownChannel, "no such channel for this application")
}

/// Lowercase RFC 4648 base32 of 8 bytes, unpadded: 13 characters, as
/// magic-wormhole's mailbox ids.
fn base32(bytes: [u8; 8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let bits = u64::from_be_bytes(bytes);
    // 64 bits in 13 groups of 5: the last group is padded with a zero bit.
    let padded = u128::from(bits) << 1;
    (0..13).rev().map(|i| char::from(ALPHABET[((padded >> (i * 5)) & 31) as usize])).collect()
}

impl Rendezvous {
    /// An empty rendezvous with these limits, drawing nameplates and mailbox
    /// ids from `seed` (the core has no randomness of its own). A server
    /// must seed it from the operating system, so the ids it hands out
    /// cannot be predicted; a simulation or a test passes a fixed one.
    ///
    /// ```
    /// use wormhole_sync_core::rendezvous::{Rendezvous, RendezvousConfig};
    /// use wormhole_sync_core::wire::{AllocateRequest, Request, Response};
    /// use wormhole_sync_core::Timestamp;
    ///
    /// let allocate = Request::Allocate(AllocateRequest::new("app", "s1"));
    /// let first_id = |seed| match Rendezvous::new(RendezvousConfig::default(), seed).handle(Timestamp::EPOCH, &allocate) {
    ///     Ok(Response::Allocated(a)) => a.channel.get(),
    ///     other => panic!("{other:?}"),
    /// };
    /// assert_eq!(first_id([1; 32]), first_id([1; 32])); // the same seed, the same ids
    /// assert!((1..=9).contains(&first_id([2; 32]))); // one digit while one-digit ids are free
    /// ```
    pub fn new(config: RendezvousConfig, seed: [u8; 32]) -> Rendezvous {
        Rendezvous {
            config,
            apps: BTreeMap::new(),
            mailboxes: 0,
            tombstones: 0,
            nameplates: 0,
            messages: 0,
            rng: ChaCha20Rng::from_seed(seed),
            effects: Vec::new(),
            finished: Vec::new(),
            instances: 0,
            ran_past_checked: false,
        }
    }

    fn next_instance(&mut self) -> u64 {
        self.instances += 1;
        self.instances
    }

    /// Draws ids from `seed` from now on, as a restarted server would: for
    /// a fuzz target that compares a rendezvous kept in memory with one
    /// restored from its snapshot.
    #[cfg(feature = "fuzzing")]
    pub fn reseed(&mut self, seed: [u8; 32]) {
        self.rng = ChaCha20Rng::from_seed(seed);
    }

    /// The limits in force.
    pub fn config(&self) -> &RendezvousConfig {
        &self.config
    }

    /// Counts of apps, mailboxes, nameplates and messages.
    pub fn stats(&self) -> RendezvousStats {
        RendezvousStats {
            apps: self.apps.len(),
            channels: self.mailboxes - self.tombstones,
            tombstones: self.tombstones,
            nameplates: self.nameplates,
            messages: self.messages,
        }
    }
}
