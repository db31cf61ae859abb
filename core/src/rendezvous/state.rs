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
    pub(super) nameplates: Nameplates,
    pub(super) mailboxes: BTreeMap<MailboxId, Mailbox>,
    /// Which mailbox each allocating side got, so a retried allocate is idempotent.
    pub(super) allocated_by: HashMap<String, MailboxId>,
    /// How many of `mailboxes` are tombstones (not counted by the app's cap).
    pub(super) tombstones: usize,
}

/// An app's nameplate numbers in use: those leading to mailboxes held here,
/// and those reserved for mailboxes held elsewhere (a partial view: see
/// [`Rendezvous::reserve_nameplates`]), counted by length so an allocation
/// knows which lengths are full without counting them.
#[derive(Clone, Debug, Default)]
pub(super) struct Nameplates {
    held: BTreeMap<u32, MailboxId>,
    reserved: BTreeSet<u32>,
    /// How many numbers are in use (held or reserved), by count of digits.
    used_by_digits: [u32; DIGIT_LENGTHS],
}

/// Lengths of nameplate numbers, by digits (index 0 unused):
/// [`MAX_CHANNEL_ID`] has nine.
const DIGIT_LENGTHS: usize = 10;

/// How many digits `number` (at least 1) has.
fn digits(number: u32) -> usize {
    number.checked_ilog10().map_or(1, |log| log as usize + 1)
}

impl Nameplates {
    /// The mailbox `number` leads to, if it leads to one held here.
    pub(super) fn get(&self, number: &u32) -> Option<&MailboxId> {
        self.held.get(number)
    }

    /// Whether `number` leads to a mailbox held here.
    pub(super) fn contains_key(&self, number: &u32) -> bool {
        self.held.contains_key(number)
    }

    /// The numbers that lead to mailboxes held here, in order.
    pub(super) fn keys(&self) -> impl Iterator<Item = &u32> + '_ {
        self.held.keys()
    }

    /// Whether `number` leads to a mailbox here or is reserved.
    pub(super) fn is_used(&self, number: u32) -> bool {
        self.held.contains_key(&number) || self.reserved.contains(&number)
    }

    /// Whether no number is reserved.
    pub(super) fn none_reserved(&self) -> bool {
        self.reserved.is_empty()
    }

    /// Makes `number` lead to the mailbox `id`; returns the mailbox it led
    /// to before, if any.
    pub(super) fn hold(&mut self, number: u32, id: MailboxId) -> Option<MailboxId> {
        let newly_used = !self.is_used(number);
        let before = self.held.insert(number, id);
        if newly_used {
            self.used_by_digits[digits(number)] += 1;
        }
        before
    }

    /// Frees `number` (unless reserved); returns the mailbox it led to.
    pub(super) fn free(&mut self, number: u32) -> Option<MailboxId> {
        let before = self.held.remove(&number);
        if before.is_some() && !self.reserved.contains(&number) {
            self.used_by_digits[digits(number)] -= 1;
        }
        before
    }

    /// Marks `numbers` in use by mailboxes held elsewhere.
    pub(super) fn reserve(&mut self, numbers: impl IntoIterator<Item = u32>) {
        for number in numbers {
            if !self.held.contains_key(&number) && self.reserved.insert(number) {
                self.used_by_digits[digits(number)] += 1;
            }
        }
    }

    /// A number not in use, drawn uniformly from the free ones of the
    /// shortest length that has any (1-9, then 10-99, ...): codes stay
    /// short, and the number that just ended is not the one handed out
    /// next, so a stale code rarely reaches a stranger.
    ///
    /// It costs about as many draws as the length has numbers per free one,
    /// and at most about an eighth of the numbers in use there: an app that
    /// holds a hundred thousand spent codes for the retention allocates
    /// about as fast as an idle one.
    pub(super) fn random_free(&self, rng: &mut ChaCha20Rng) -> Option<u32> {
        let mut low = 1u32;
        while low <= MAX_CHANNEL_ID {
            let high = low.saturating_mul(10).saturating_sub(1).min(MAX_CHANNEL_ID);
            let size = u64::from(high - low + 1);
            let used = u64::from(self.used_by_digits[digits(low)]);
            if used < size {
                let free = size - used;
                // A number drawn uniformly from the length and kept only if
                // free is drawn uniformly from the free ones. Where free ones
                // are rare, stepping over those in use costs less.
                let draws = (size / free).saturating_mul(4).min(used / 8) + 16;
                for _ in 0..draws {
                    let candidate = low + u32::try_from(rng.next_u64() % size).unwrap_or(0);
                    if !self.is_used(candidate) {
                        return Some(candidate);
                    }
                }
                // The pick-th free number: step over every used one at or below the candidate.
                let pick = rng.next_u64() % free;
                let mut candidate = u64::from(low) + pick;
                for id in self.used(low, high) {
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

    /// The numbers in use from `low` to `high`, in order: those of
    /// mailboxes held here and the reserved ones.
    fn used(&self, low: u32, high: u32) -> impl Iterator<Item = u32> + '_ {
        let mut held = self.held.range(low..=high).map(|(id, _)| *id).peekable();
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
}

impl App {
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
        self.nameplates.free(number);
        true
    }
}

#[cfg(test)]
mod nameplate_tests {
    use rand_core::SeedableRng;

    use super::*;

    fn id(n: u32) -> MailboxId {
        MailboxId::new(format!("m{n}")).unwrap()
    }

    /// The counts by length, recounted from the numbers in use.
    fn recount(nameplates: &Nameplates) -> [u32; DIGIT_LENGTHS] {
        let mut counts = [0; DIGIT_LENGTHS];
        for (d, count) in counts.iter_mut().enumerate().skip(1) {
            let low = 10u32.pow(d as u32 - 1);
            let high = low.saturating_mul(10).saturating_sub(1).min(MAX_CHANNEL_ID);
            *count = nameplates.used(low, high).count() as u32;
        }
        counts
    }

    #[test]
    fn the_counts_by_length_follow_holds_frees_and_reservations() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let mut nameplates = Nameplates::default();
        for step in 0..5_000 {
            // Numbers of one to four digits, so lengths fill and empty.
            let number = 1 + (rng.next_u32() % 1_500) * (1 + rng.next_u32() % 7);
            match rng.next_u32() % 4 {
                0 | 1 => drop(nameplates.hold(number, id(number))),
                2 => drop(nameplates.free(number)),
                _ => nameplates.reserve([number]),
            }
            assert_eq!(nameplates.used_by_digits, recount(&nameplates), "after step {step}");
        }
        assert!(nameplates.used_by_digits[4] > 0, "four-digit numbers were used");
    }

    /// Draws from `nameplates` `n` times; how often each number came.
    fn draw(nameplates: &Nameplates, n: usize) -> BTreeMap<u32, u32> {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let mut seen = BTreeMap::new();
        for _ in 0..n {
            *seen.entry(nameplates.random_free(&mut rng).unwrap()).or_insert(0) += 1;
        }
        seen
    }

    #[test]
    fn a_crowded_length_gives_each_free_number_as_often() {
        // Every one-digit number held, and 80 of the 90 two-digit ones
        // (half of them reserved): ten are free.
        let mut nameplates = Nameplates::default();
        for n in 1..=9 {
            nameplates.hold(n, id(n));
        }
        for n in (10..=99).filter(|n| n % 9 != 0) {
            if n % 2 == 0 {
                nameplates.hold(n, id(n));
            } else {
                nameplates.reserve([n]);
            }
        }
        let seen = draw(&nameplates, 10_000);
        assert_eq!(seen.keys().copied().collect::<Vec<_>>(), (10..=99).filter(|n| n % 9 == 0).collect::<Vec<_>>());
        // 1,000 expected each; a fair draw stays well within ±15 %.
        assert!(seen.values().all(|&k| (850..=1_150).contains(&k)), "{seen:?}");
    }

    #[test]
    fn a_nearly_full_length_still_gives_its_last_free_numbers() {
        // Two free numbers among 9,000 four-digit ones (the draws give up
        // and step over those in use).
        let mut nameplates = Nameplates::default();
        nameplates.reserve(1..=999);
        for n in (1_000..=9_999).filter(|n| ![4_321, 8_765].contains(n)) {
            nameplates.hold(n, id(n));
        }
        let seen = draw(&nameplates, 2_000);
        assert_eq!(seen.keys().copied().collect::<Vec<_>>(), [4_321, 8_765]);
        assert!(seen.values().all(|&k| (850..=1_150).contains(&k)), "{seen:?}");
        // Both taken: the length is full, and the next one is drawn from.
        nameplates.hold(4_321, id(4_321));
        nameplates.reserve([8_765]);
        assert!(draw(&nameplates, 100).keys().all(|n| (10_000..=99_999).contains(n)));
    }

    #[test]
    fn a_sparse_length_is_drawn_from_evenly() {
        // 50,000 of the 90,000 five-digit numbers in use, every shorter one too.
        let mut nameplates = Nameplates::default();
        nameplates.reserve(1..=9_999);
        for n in (0..5).flat_map(|k| (10_000 + k..=99_999).step_by(9)) {
            nameplates.hold(n, id(n));
        }
        assert_eq!(nameplates.used_by_digits[5], 50_000);
        let seen = draw(&nameplates, 40_000);
        assert!(seen.keys().all(|&n| (10_000..=99_999).contains(&n) && !nameplates.is_used(n)));
        // Ten buckets of the range's free numbers, about 4,000 draws each.
        let mut buckets = [0u32; 10];
        for (n, k) in &seen {
            buckets[((n - 10_000) / 9_000) as usize] += k;
        }
        assert!(buckets.iter().all(|&k| (3_400..=4_600).contains(&k)), "{buckets:?}");
    }
}
