//! A partial view: a rendezvous that holds only the mailboxes an operation
//! names, as a server whose state is in a shared database loads for each
//! transaction. What it lacks to allocate a nameplate (which numbers its
//! app has in use elsewhere) the engine answers, in one of two ways:
//!
//! - every number in use ([`Rendezvous::reserve_nameplates`]), which
//!   costs as many rows as the app holds numbers; or
//! - how many are in use by length ([`NameplatesInUse`]), and then which of
//!   the numbers the view asks about are in use
//!   ([`Rendezvous::nameplates_to_check`], then
//!   [`reserve_nameplates`](Rendezvous::reserve_nameplates) with those in
//!   use), which costs about a handful of lookups per allocation whatever
//!   the app holds. The view draws what it asks about as an allocation
//!   draws, so a nameplate comes out as in the whole state; in the rare
//!   case it ran past them, [`Rendezvous::needs_every_nameplate`] says so
//!   and the engine runs the operations again the first way.

use crate::code::ChannelId;

use super::state::{digits, DIGIT_LENGTHS};
use super::Rendezvous;

/// How many nameplate numbers one application id has in use, counted by
/// their length in digits (one to nine), across the whole state: what an
/// engine tells a partial view before it allocates (see
/// [`Rendezvous::nameplates_to_check`]).
///
/// ```
/// use wormhole_sync_core::rendezvous::NameplatesInUse;
/// use wormhole_sync_core::ChannelId;
///
/// let mut in_use = NameplatesInUse::default();
/// in_use.add(1, 9); // every one-digit number
/// in_use.add(NameplatesInUse::digits(ChannelId::new(42).unwrap()), 1);
/// assert_eq!(in_use.count(2), 1);
/// in_use.add(12, 5); // no such length: ignored
/// in_use.add(3, -4); // a damaged counter: none
/// assert_eq!(in_use.count(3), 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NameplatesInUse {
    by_digits: [u32; DIGIT_LENGTHS],
}

impl NameplatesInUse {
    /// Adds `count` numbers of `digits` digits. Counts read from storage
    /// are not trusted: a length outside one to nine is ignored, a negative
    /// count adds nothing, and a count past the length's size means it is
    /// full.
    pub fn add(&mut self, digits: u32, count: i64) {
        let Some(slot) = usize::try_from(digits).ok().filter(|d| (1..DIGIT_LENGTHS).contains(d)) else { return };
        let count = u32::try_from(count.max(0)).unwrap_or(u32::MAX);
        self.by_digits[slot] = self.by_digits[slot].saturating_add(count);
    }

    /// How many numbers of `digits` digits are in use.
    pub fn count(&self, digits: u32) -> u32 {
        usize::try_from(digits).ok().and_then(|d| self.by_digits.get(d)).copied().unwrap_or(0)
    }

    /// The length a number is counted under: its count of digits.
    pub fn digits(number: ChannelId) -> u32 {
        u32::try_from(digits(number.get())).unwrap_or(0)
    }
}

impl Rendezvous {
    /// Marks nameplates of `appid` as held by mailboxes this rendezvous
    /// does not hold: for a partial view of a larger state, as a server
    /// sharing a database loads for one operation (the mailbox it names,
    /// and the numbers its app has in use). Allocation never hands them
    /// out, and a mailbox burned after its release does not take its
    /// number back while it is reserved.
    ///
    /// ```
    /// use wormhole_sync_core::rendezvous::{Rendezvous, RendezvousConfig};
    /// use wormhole_sync_core::{ChannelId, Timestamp};
    ///
    /// let mut partial = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    /// partial.reserve_nameplates("app", (1..=9).filter(|n| *n != 4).filter_map(ChannelId::new));
    /// let nameplate = partial.allocate_nameplate(Timestamp::EPOCH, "app", "s1")?;
    /// assert_eq!(nameplate.get(), 4, "the only free one-digit number");
    /// # Ok::<(), wormhole_sync_core::wire::WireError>(())
    /// ```
    pub fn reserve_nameplates(&mut self, appid: &str, numbers: impl IntoIterator<Item = ChannelId>) {
        let app = self.apps.entry(appid.to_string()).or_default();
        app.nameplates.reserve(numbers.into_iter().map(ChannelId::get));
    }

    /// Tells this partial view how many numbers `appid` has in use in the
    /// whole state (those of the mailboxes it holds included), and returns
    /// the numbers it needs to know about before up to `allocations`
    /// allocations (and burns, which may take their number back) of
    /// `appid`. The engine then passes those in use to
    /// [`reserve_nameplates`](Self::reserve_nameplates); it must not
    /// reserve any other number of `appid` in this view.
    ///
    /// ```
    /// use wormhole_sync_core::rendezvous::{NameplatesInUse, Rendezvous, RendezvousConfig};
    /// use wormhole_sync_core::{ChannelId, Timestamp};
    ///
    /// // Elsewhere: every one- and two-digit number, and 600 three-digit ones.
    /// let mut in_use = NameplatesInUse::default();
    /// in_use.add(1, 9);
    /// in_use.add(2, 90);
    /// in_use.add(3, 600);
    /// let mut partial = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    /// let asked = partial.nameplates_to_check("app", &in_use, 1);
    /// assert!(asked.iter().all(|n| (100..=999).contains(&n.get())));
    /// // Say every three-digit number asked about is in use but the last.
    /// let free = *asked.last().unwrap();
    /// partial.reserve_nameplates("app", asked.iter().copied().filter(|&n| n != free));
    /// assert_eq!(partial.allocate_nameplate(Timestamp::EPOCH, "app", "s1")?, free);
    /// assert!(!partial.needs_every_nameplate());
    /// # Ok::<(), wormhole_sync_core::wire::WireError>(())
    /// ```
    pub fn nameplates_to_check(&mut self, appid: &str, in_use: &NameplatesInUse, allocations: usize) -> Vec<ChannelId> {
        let app = self.apps.entry(appid.to_string()).or_default();
        let mut asked = app.nameplates.check(in_use.by_digits, allocations, &mut self.rng);
        // A burned mailbox takes its number back if nobody else holds it.
        for (id, mailbox) in &app.mailboxes {
            if let Some(number) = mailbox.nameplate {
                if app.nameplates.get(&number) != Some(id) && !app.nameplates.is_used(number) {
                    asked.push(number);
                }
            }
        }
        asked.into_iter().filter_map(ChannelId::new).collect()
    }

    /// Whether an allocation in this partial view ran past the numbers it
    /// checked ([`nameplates_to_check`](Self::nameplates_to_check)): its
    /// answer (`too-many-channels`) is not to be trusted, and the
    /// operations must run again in a view told every number in use. Rare:
    /// it takes a count that was off, or a length nearly full.
    pub fn needs_every_nameplate(&self) -> bool {
        self.ran_past_checked
    }
}
