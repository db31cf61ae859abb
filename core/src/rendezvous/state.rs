//! What a rendezvous holds: per application id, nameplates leading to
//! mailboxes, each with its members and message log; and the rules over
//! them (who may enter, which closed mailbox is kept as a tombstone).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rand_chacha::ChaCha20Rng;
use rand_core::RngCore;

use crate::code::MAX_CHANNEL_ID;
use crate::time::Timestamp;
use crate::wire::{ClosedSide, ErrorCode, Log, MailboxId, Message, Mood, WireError};

use super::err;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Member {
    pub(super) side: String,
    /// Allocated the nameplate (so a retried allocate finds it again).
    pub(super) allocated: bool,
    /// Came in through the nameplate (allocate, join, claim).
    pub(super) claimed: bool,
    /// Has let go of the nameplate (it knows the mailbox).
    pub(super) released: bool,
    pub(super) closed: Option<Mood>,
}

impl Member {
    pub(super) fn new(side: &str, allocated: bool, claimed: bool) -> Member {
        Member { side: side.to_string(), allocated, claimed, released: false, closed: None }
    }

    pub(super) fn holds_nameplate(&self) -> bool {
        self.claimed && !self.released
    }
}

#[derive(Clone, Debug)]
pub(super) struct Mailbox {
    /// The nameplate it was made for, if any (whether or not it still
    /// leads here: see [`App::nameplates`]).
    pub(super) nameplate: Option<u32>,
    pub(super) members: Vec<Member>,
    pub(super) messages: Vec<Message>,
    pub(super) burned: bool,
    pub(super) last_activity: Timestamp,
    /// Tells this mailbox from an earlier one deleted under the same id
    /// (see [`Rendezvous::mailbox_instance`]); not saved.
    pub(super) instance: u64,
}

impl Mailbox {
    pub(super) fn member(&self, side: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.side == side)
    }

    pub(super) fn member_mut(&mut self, side: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.side == side)
    }

    /// The messages after `after` and every side's close.
    pub(super) fn log(&self, after: u64) -> Log {
        let skip = usize::try_from(after).unwrap_or(usize::MAX);
        let messages = self.messages.iter().skip(skip).cloned().collect();
        let closed = self
            .members
            .iter()
            .filter_map(|m| m.closed.map(|mood| ClosedSide { side: m.side.clone(), mood }))
            .collect();
        Log { messages, closed }
    }

    pub(super) fn all_closed(&self) -> bool {
        self.members.iter().all(|m| m.closed.is_some())
    }

    /// A mailbox whose members all left, kept (emptied) for the retention
    /// only so its nameplate stays out of allocation and a late join learns
    /// what happened: `burned` after a wrong code, `crowded` after two sides
    /// used the code (see [`is_spent`]), `abandoned` after its only side
    /// stopped waiting (see [`is_abandoned`]).
    pub(super) fn is_tombstone(&self) -> bool {
        is_tombstone(self.all_closed(), self.burned, self.nameplate.is_some(), self.lone_holder())
    }

    /// How many members it has, and whether its only one still holds the nameplate.
    pub(super) fn lone_holder(&self) -> (usize, bool) {
        (self.members.len(), self.members.first().is_some_and(Member::holds_nameplate))
    }

    pub(super) fn is_abandoned(&self) -> bool {
        self.all_closed() && is_abandoned(self.nameplate.is_some(), self.lone_holder())
    }

    /// Whether a side may enter: refusals for strangers to a full, burned
    /// or abandoned mailbox.
    pub(super) fn admits(&self, side: &str) -> Result<(), WireError> {
        if self.member(side).is_some() {
            Ok(())
        } else if self.burned {
            Err(err(ErrorCode::Burned, "the channel was closed after a wrong code"))
        } else if self.members.len() >= 2 {
            Err(err(ErrorCode::Crowded, "two other sides already used this channel's code"))
        } else if self.is_abandoned() {
            Err(err(ErrorCode::Abandoned, "the other side stopped waiting before anyone joined"))
        } else {
            Ok(())
        }
    }
}

/// The one tombstone rule, for the mailboxes held and their snapshots
/// (`lone_holder`: see [`Mailbox::lone_holder`]).
pub(super) fn is_tombstone(all_closed: bool, burned: bool, has_nameplate: bool, lone_holder: (usize, bool)) -> bool {
    all_closed && (burned || is_spent(has_nameplate, lone_holder.0) || is_abandoned(has_nameplate, lone_holder))
}

/// Whether a closed mailbox made for a nameplate had one member, which
/// closed it still holding the nameplate: nobody used the code, and its
/// person stopped waiting (cancelled, or timed out). It is kept for the
/// retention so the person who types the code late learns `abandoned`, not
/// `unknown-channel`. A side that released the nameplate first (the
/// mailbox protocol's clients do) frees it as before, and a join that may
/// create the channel (a code both people chose, tried again) replaces it.
pub(super) fn is_abandoned(has_nameplate: bool, (members, holds_nameplate): (usize, bool)) -> bool {
    has_nameplate && members == 1 && holds_nameplate
}

/// Whether a mailbox made for a nameplate has had two members: its code was
/// used, so the nameplate stays with it while it lives and for the retention
/// after, and a third side gets `crowded`. Were the number handed out again,
/// whoever took the second seat could re-create it and wait there for the
/// real receiver, for a second guess at the same code.
pub(super) fn is_spent(has_nameplate: bool, members: usize) -> bool {
    has_nameplate && members >= 2
}

#[derive(Clone, Debug, Default)]
pub(super) struct App {
    /// Nameplates in use, each leading to its mailbox.
    pub(super) nameplates: BTreeMap<u32, MailboxId>,
    pub(super) mailboxes: BTreeMap<MailboxId, Mailbox>,
    /// Which mailbox each allocating side got, so a retried allocate is idempotent.
    pub(super) allocated_by: HashMap<String, MailboxId>,
    /// Nameplates held by mailboxes this rendezvous does not hold (a
    /// partial view: see [`Rendezvous::reserve_nameplates`]).
    pub(super) reserved: BTreeSet<u32>,
    /// How many of `mailboxes` are tombstones (not counted by the app's cap).
    pub(super) tombstones: usize,
}

impl App {
    /// A nameplate no mailbox of this app holds, drawn uniformly from the
    /// free ones of the shortest length that has any (1-9, then 10-99, ...):
    /// codes stay short, and the number that just ended is not the one
    /// handed out next, so a stale code rarely reaches a stranger.
    pub(super) fn random_free_nameplate(&self, rng: &mut ChaCha20Rng) -> Option<u32> {
        let mut low = 1u32;
        while low <= MAX_CHANNEL_ID {
            let high = low.saturating_mul(10).saturating_sub(1).min(MAX_CHANNEL_ID);
            let used = self.used_nameplates(low, high).count() as u64;
            let free = u64::from(high - low + 1) - used;
            if free > 0 {
                // The pick-th free number: step over every used one at or below the candidate.
                let pick = rng.next_u64() % free;
                let mut candidate = u64::from(low) + pick;
                for id in self.used_nameplates(low, high) {
                    if u64::from(id) > candidate {
                        break;
                    }
                    candidate += 1;
                }
                return u32::try_from(candidate).ok();
            }
            low = high.saturating_add(1);
        }
        None
    }

    /// The nameplates in use from `low` to `high`, in order: those of
    /// mailboxes held here and the reserved ones.
    pub(super) fn used_nameplates(&self, low: u32, high: u32) -> impl Iterator<Item = u32> + '_ {
        let mut held = self.nameplates.range(low..=high).map(|(id, _)| *id).peekable();
        let mut reserved = self.reserved.range(low..=high).copied().peekable();
        std::iter::from_fn(move || match (held.peek(), reserved.peek()) {
            (Some(a), Some(b)) if a == b => {
                reserved.next();
                held.next()
            }
            (Some(a), Some(b)) if a > b => reserved.next(),
            (Some(_), _) => held.next(),
            (None, _) => reserved.next(),
        })
    }

    pub(super) fn by_nameplate(&self, nameplate: u32) -> Option<&MailboxId> {
        self.nameplates.get(&nameplate)
    }

    /// Once no member holds the nameplate, its allocator no longer gets it
    /// back from a retried allocate, and the number is free, unless two
    /// sides used it (see [`is_spent`]): then it stays with the mailbox.
    /// Returns whether the number was freed.
    pub(super) fn release_if_unheld(&mut self, id: &MailboxId) -> bool {
        let Some(mailbox) = self.mailboxes.get_mut(id) else { return false };
        let Some(number) = mailbox.nameplate else { return false };
        let leads_here = self.nameplates.get(&number) == Some(id);
        if !leads_here || mailbox.burned || mailbox.members.iter().any(Member::holds_nameplate) {
            return false;
        }
        for member in mailbox.members.iter_mut().filter(|m| m.allocated) {
            member.allocated = false;
            if self.allocated_by.get(&member.side) == Some(id) {
                self.allocated_by.remove(&member.side);
            }
        }
        if is_spent(true, mailbox.members.len()) {
            return false;
        }
        self.nameplates.remove(&number);
        true
    }
}
