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
    /// How many numbers are in use (held or reserved), by count of digits;
    /// for a view told the counts (see `checked`), in the whole state.
    used_by_digits: [u32; DIGIT_LENGTHS],
    /// For a partial view told only how many numbers are in use by length
    /// and whether some are: what it was told.
    checked: Option<Box<Checked>>,
}

/// What a partial view knows of the numbers in use beyond its own (see
/// [`Nameplates::check`]).
#[derive(Clone, Debug, Default)]
struct Checked {
    /// Lengths whose every number was checked: their numbers in use are all
    /// held or reserved here.
    whole: [bool; DIGIT_LENGTHS],
    /// Numbers drawn from the other lengths, in the order drawn; those in
    /// use are reserved.
    drawn: Vec<u32>,
}

/// Lengths of nameplate numbers, by digits (index 0 unused):
/// [`MAX_CHANNEL_ID`] has nine.
pub(super) const DIGIT_LENGTHS: usize = 10;

/// How many digits `number` (at least 1) has.
pub(super) fn digits(number: u32) -> usize {
    number.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// The numbers of `digits` digits: the first and the last.
fn length_range(digits: usize) -> (u32, u32) {
    let low = 10u32.saturating_pow(u32::try_from(digits).unwrap_or(u32::MAX).saturating_sub(1));
    (low, low.saturating_mul(10).saturating_sub(1).min(MAX_CHANNEL_ID))
}

/// Most numbers a partial view asks about for one allocation: past this a
/// length is so nearly full that reading its numbers in use costs less.
const MOST_DRAWN: u64 = 4_096;

/// The longest length a partial view checks whole (five digits); in a
/// nearly full longer one it checks [`MOST_DRAWN`] per allocation and may
/// run out (see [`Draw::Unchecked`]).
const MOST_CHECKED_WHOLE: u64 = 90_000;

/// What an allocation drew.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Draw {
    Free(u32),
    /// Every number is in use.
    Full,
    /// A partial view ran past the numbers it checked: it cannot tell.
    Unchecked,
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

    /// Marks `numbers` in use by mailboxes held elsewhere. A view told the
    /// counts has them counted already, but for the lengths it checked
    /// whole, which are recounted from what it now knows.
    pub(super) fn reserve(&mut self, numbers: impl IntoIterator<Item = u32>) {
        let counted = self.checked.is_some();
        for number in numbers {
            if !self.held.contains_key(&number) && self.reserved.insert(number) && !counted {
                self.used_by_digits[digits(number)] += 1;
            }
        }
        if let Some(checked) = &self.checked {
            for length in (1..DIGIT_LENGTHS).filter(|&d| checked.whole[d]) {
                let (low, high) = length_range(length);
                self.used_by_digits[length] = u32::try_from(self.used(low, high).count()).unwrap_or(u32::MAX);
            }
        }
    }

    /// Makes this a view told how many numbers are in use by length in the
    /// whole state (`in_use`, which counts those held here too); returns
    /// the numbers to check for up to `allocations` allocations, in the
    /// order an allocation would draw them. The lengths they fall in are
    /// drawn from as [`random_free`](Self::random_free) draws; a length
    /// with fewer numbers than the draws it would take is checked whole.
    pub(super) fn check(
        &mut self,
        in_use: [u32; DIGIT_LENGTHS],
        allocations: usize,
        rng: &mut ChaCha20Rng,
    ) -> Vec<u32> {
        let mut checked = Checked::default();
        let mut ask = Vec::new();
        let mut remaining = u64::try_from(allocations.max(1)).unwrap_or(u64::MAX);
        for (length, &told) in in_use.iter().enumerate().skip(1) {
            let (low, high) = length_range(length);
            let size = u64::from(high - low + 1);
            // Counts past the length's size (a damaged counter) mean full.
            let used = u64::from(told).min(size);
            self.used_by_digits[length] = u32::try_from(used).unwrap_or(u32::MAX);
            let free = size - used;
            if remaining == 0 || free == 0 {
                continue;
            }
            let taken = remaining.min(free);
            remaining -= taken;
            // An allocation takes size/free draws on average. Draws expected
            // to find twice as many free numbers as needed, and fourteen
            // more, make running out (then every number in use is read) a
            // chance under one in a million.
            let draws = size.div_ceil(free).saturating_mul(taken.saturating_mul(2).saturating_add(14));
            let most = MOST_DRAWN.saturating_mul(taken);
            if draws >= size || (draws > most && size <= MOST_CHECKED_WHOLE) {
                checked.whole[length] = true;
                ask.extend(low..=high);
            } else {
                let drawn = (0..draws.min(most)).map(|_| low + u32::try_from(rng.next_u64() % size).unwrap_or(0));
                checked.drawn.extend(drawn);
            }
        }
        ask.extend(&checked.drawn);
        self.checked = Some(Box::new(checked));
        ask
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
    ///
    /// A view told the counts (see [`check`](Self::check)) takes, in a
    /// length it did not check whole, the first number drawn there that is
    /// free: the same draw, made ahead.
    pub(super) fn random_free(&self, rng: &mut ChaCha20Rng) -> Draw {
        for length in 1..DIGIT_LENGTHS {
            let (low, high) = length_range(length);
            let size = u64::from(high - low + 1);
            let used = u64::from(self.used_by_digits[length]);
            if used < size {
                if let Some(checked) = self.checked.as_ref().filter(|c| !c.whole[length]) {
                    let mut drawn = checked.drawn.iter().copied();
                    return match drawn.find(|&n| (low..=high).contains(&n) && !self.is_used(n)) {
                        Some(number) => Draw::Free(number),
                        None => Draw::Unchecked,
                    };
                }
                let free = size - used;
                // A number drawn uniformly from the length and kept only if
                // free is drawn uniformly from the free ones. Where free ones
                // are rare, stepping over those in use costs less.
                let draws = (size / free).saturating_mul(4).min(used / 8) + 16;
                for _ in 0..draws {
                    let candidate = low + u32::try_from(rng.next_u64() % size).unwrap_or(0);
                    if !self.is_used(candidate) {
                        return Draw::Free(candidate);
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
                // Past the length only if its count was wrong: then it is full.
                match u32::try_from(candidate) {
                    Ok(number) if number <= high && !self.is_used(number) => return Draw::Free(number),
                    _ => continue,
                }
            }
        }
        Draw::Full
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
            let (low, high) = length_range(d);
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
            let Draw::Free(number) = nameplates.random_free(&mut rng) else { panic!("none free") };
            *seen.entry(number).or_insert(0) += 1;
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

    /// A view of `whole` told its counts, with the numbers it asks about
    /// answered from `whole`.
    fn partial_view(whole: &Nameplates, allocations: usize, seed: u64) -> Nameplates {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut view = Nameplates::default();
        let asked = view.check(whole.used_by_digits, allocations, &mut rng);
        view.reserve(asked.into_iter().filter(|&n| whole.is_used(n)));
        view
    }

    #[test]
    fn a_view_told_the_counts_allocates_as_the_whole_state_would() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        for round in 0..200u64 {
            // Up to 12,000 numbers in use, most in the shorter lengths, as
            // allocation leaves them.
            let mut whole = Nameplates::default();
            let held = rng.next_u32() % 12_000;
            for _ in 0..held {
                let number = 1 + rng.next_u32() % 10u32.pow(1 + rng.next_u32() % 5);
                whole.hold(number, id(number));
            }
            let allocations = 1 + (rng.next_u32() % 40) as usize;
            let mut view = partial_view(&whole, allocations, round);
            for _ in 0..allocations {
                let shortest_free = (1..DIGIT_LENGTHS).find(|&d| {
                    let (low, high) = length_range(d);
                    whole.used_by_digits[d] < high - low + 1
                });
                let Draw::Free(number) = view.random_free(&mut rng) else { panic!("round {round}: ran out") };
                assert!(!whole.is_used(number), "round {round}: {number} is in use");
                assert_eq!(
                    Some(digits(number)),
                    shortest_free,
                    "round {round}: {number} is not of the shortest length"
                );
                whole.hold(number, id(number));
                view.hold(number, id(number));
                assert_eq!(view.used_by_digits, whole.used_by_digits, "round {round}");
            }
        }
    }

    #[test]
    fn a_view_told_the_counts_draws_evenly() {
        // 8,000 of the 9,000 four-digit numbers in use, every shorter one
        // too: each view asks about a few hundred drawn numbers (not the
        // whole length) and takes the first free one.
        let mut whole = Nameplates::default();
        whole.reserve(1..=999);
        for n in (1_000..=9_999).filter(|n| n % 9 != 0) {
            whole.hold(n, id(n));
        }
        let mut buckets = [0u32; 10];
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        for seed in 0..10_000 {
            let view = partial_view(&whole, 1, seed);
            let checked = view.checked.as_ref().unwrap();
            assert!(!checked.whole[4] && checked.drawn.len() < 1_000, "{}", checked.drawn.len());
            let Draw::Free(number) = view.random_free(&mut rng) else { panic!("seed {seed}: ran out") };
            assert!(number % 9 == 0 && (1_000..=9_999).contains(&number), "{number}");
            buckets[((number - 1_000) / 900) as usize] += 1;
        }
        // 1,000 expected in each tenth of the length.
        assert!(buckets.iter().all(|&k| (850..=1_150).contains(&k)), "{buckets:?}");
    }

    #[test]
    fn a_view_whose_counts_are_off_runs_out_or_skips_but_never_hands_out_a_used_number() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        // Every number up to 999 in use, but the counts say none: the view
        // checks the one-digit length whole (it has fewer numbers than the
        // draws) and recounts it full, asked nothing of the next, and says
        // it ran out.
        let mut whole = Nameplates::default();
        whole.reserve(1..=999);
        let mut view = Nameplates::default();
        let asked = view.check([0; DIGIT_LENGTHS], 1, &mut rng);
        view.reserve(asked.into_iter().filter(|&n| whole.is_used(n)));
        assert_eq!(&view.used_by_digits[1..3], [9, 0]);
        assert_eq!(view.random_free(&mut rng), Draw::Unchecked);
        // Counts past a length's size mean full; one that says full when it
        // is not only makes the next length the one drawn from.
        let mut in_use = [0; DIGIT_LENGTHS];
        in_use[1] = 9;
        in_use[2] = u32::MAX;
        let mut view = Nameplates::default();
        let asked = view.check(in_use, 1, &mut rng);
        assert!(asked.iter().all(|n| (100..=999).contains(n)));
        view.reserve([]);
        let Draw::Free(number) = view.random_free(&mut rng) else { panic!("none free") };
        assert!((100..=999).contains(&number));
    }
}
