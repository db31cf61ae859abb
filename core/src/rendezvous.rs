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
//! After each operation, [`Rendezvous::effects`] says which mailboxes it
//! changed and how, for the caller to persist them and wake whoever waits.
//! Long-polling is the caller's job: a fetch answers at once, and the caller
//! re-runs it when an effect touches the mailbox or the wait ends.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::code::{ChannelId, MAX_CHANNEL_ID};
use crate::time::Timestamp;
use crate::wire::{
    validate_appid, validate_phase, validate_side, AllocateResponse, CloseResponse, ClosedSide, ErrorCode,
    JoinResponse, Log, MailboxId, Message, Mood, PostResponse, Request, Response, WireError,
};

/// Limits and timings of a rendezvous server.
///
/// ```
/// use std::time::Duration;
/// use wormhole_sync_core::rendezvous::RendezvousConfig;
///
/// let config = RendezvousConfig { channel_expiry: Duration::from_secs(60), ..Default::default() };
/// assert_eq!(config.max_messages_per_channel, 16);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RendezvousConfig {
    /// A mailbox with no request for this long is deleted (with its nameplate).
    pub channel_expiry: Duration,
    /// Largest message body, in bytes of its JSON string.
    pub max_message_bytes: usize,
    /// Most messages one mailbox holds.
    pub max_messages_per_channel: usize,
    /// Most mailboxes one application id holds at once, not counting the
    /// emptied ones kept for the retention (spent and burned codes): an app
    /// id may finish any number of exchanges within a retention.
    pub max_channels_per_app: usize,
    /// Most mailboxes the server holds at once, the emptied ones kept for the
    /// retention included (they hold memory too).
    pub max_channels: usize,
    /// Longest long-poll wait the server grants.
    pub max_wait: Duration,
    /// How long a burned mailbox, one two sides entered, or one its only
    /// side left holding the nameplate, stays after its members have all
    /// closed (emptied of its messages): its nameplate is not allocated
    /// again meanwhile, and a late join with the old code learns `burned`,
    /// `crowded` or `abandoned` instead of `unknown-channel`.
    pub burned_retention: Duration,
}

impl Default for RendezvousConfig {
    /// Three days' expiry (the "days" use case), 64 KiB messages, 16
    /// messages per mailbox, 10,000 mailboxes per app, a million in all,
    /// 60 s long-polls, burned mailboxes kept 5 minutes.
    fn default() -> Self {
        RendezvousConfig {
            channel_expiry: Duration::from_secs(3 * 24 * 3600),
            max_message_bytes: 64 * 1024,
            max_messages_per_channel: 16,
            max_channels_per_app: 10_000,
            max_channels: 1_000_000,
            max_wait: Duration::from_secs(60),
            burned_retention: Duration::from_secs(5 * 60),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Member {
    side: String,
    /// Allocated the nameplate (so a retried allocate finds it again).
    allocated: bool,
    /// Came in through the nameplate (allocate, join, claim).
    claimed: bool,
    /// Has let go of the nameplate (it knows the mailbox).
    released: bool,
    closed: Option<Mood>,
}

impl Member {
    fn new(side: &str, allocated: bool, claimed: bool) -> Member {
        Member { side: side.to_string(), allocated, claimed, released: false, closed: None }
    }

    fn holds_nameplate(&self) -> bool {
        self.claimed && !self.released
    }
}

#[derive(Clone, Debug)]
struct Mailbox {
    /// The nameplate it was made for, if any (whether or not it still
    /// leads here: see [`App::nameplates`]).
    nameplate: Option<u32>,
    members: Vec<Member>,
    messages: Vec<Message>,
    burned: bool,
    last_activity: Timestamp,
    /// Tells this mailbox from an earlier one deleted under the same id
    /// (see [`Rendezvous::mailbox_instance`]); not saved.
    instance: u64,
}

impl Mailbox {
    fn member(&self, side: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.side == side)
    }

    fn member_mut(&mut self, side: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.side == side)
    }

    /// The messages after `after` and every side's close.
    fn log(&self, after: u64) -> Log {
        let skip = usize::try_from(after).unwrap_or(usize::MAX);
        let messages = self.messages.iter().skip(skip).cloned().collect();
        let closed = self
            .members
            .iter()
            .filter_map(|m| m.closed.map(|mood| ClosedSide { side: m.side.clone(), mood }))
            .collect();
        Log { messages, closed }
    }

    fn all_closed(&self) -> bool {
        self.members.iter().all(|m| m.closed.is_some())
    }

    /// A mailbox whose members all left, kept (emptied) for the retention
    /// only so its nameplate stays out of allocation and a late join learns
    /// what happened: `burned` after a wrong code, `crowded` after two sides
    /// used the code (see [`is_spent`]), `abandoned` after its only side
    /// stopped waiting (see [`is_abandoned`]).
    fn is_tombstone(&self) -> bool {
        is_tombstone(self.all_closed(), self.burned, self.nameplate.is_some(), self.lone_holder())
    }

    /// How many members it has, and whether its only one still holds the nameplate.
    fn lone_holder(&self) -> (usize, bool) {
        (self.members.len(), self.members.first().is_some_and(Member::holds_nameplate))
    }

    fn is_abandoned(&self) -> bool {
        self.all_closed() && is_abandoned(self.nameplate.is_some(), self.lone_holder())
    }

    /// Whether a side may enter: refusals for strangers to a full, burned
    /// or abandoned mailbox.
    fn admits(&self, side: &str) -> Result<(), WireError> {
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
fn is_tombstone(all_closed: bool, burned: bool, has_nameplate: bool, lone_holder: (usize, bool)) -> bool {
    all_closed && (burned || is_spent(has_nameplate, lone_holder.0) || is_abandoned(has_nameplate, lone_holder))
}

/// Whether a closed mailbox made for a nameplate had one member, which
/// closed it still holding the nameplate: nobody used the code, and its
/// person stopped waiting (cancelled, or timed out). It is kept for the
/// retention so the person who types the code late learns `abandoned`, not
/// `unknown-channel`. A side that released the nameplate first (the
/// mailbox protocol's clients do) frees it as before, and a join that may
/// create the channel (a code both people chose, tried again) replaces it.
fn is_abandoned(has_nameplate: bool, (members, holds_nameplate): (usize, bool)) -> bool {
    has_nameplate && members == 1 && holds_nameplate
}

/// Whether a mailbox made for a nameplate has had two members: its code was
/// used, so the nameplate stays with it while it lives and for the retention
/// after, and a third side gets `crowded`. Were the number handed out again,
/// whoever took the second seat could re-create it and wait there for the
/// real receiver, for a second guess at the same code.
fn is_spent(has_nameplate: bool, members: usize) -> bool {
    has_nameplate && members >= 2
}

#[derive(Clone, Debug, Default)]
struct App {
    /// Nameplates in use, each leading to its mailbox.
    nameplates: BTreeMap<u32, MailboxId>,
    mailboxes: BTreeMap<MailboxId, Mailbox>,
    /// Which mailbox each allocating side got, so a retried allocate is idempotent.
    allocated_by: HashMap<String, MailboxId>,
    /// Nameplates held by mailboxes this rendezvous does not hold (a
    /// partial view: see [`Rendezvous::reserve_nameplates`]).
    reserved: BTreeSet<u32>,
    /// How many of `mailboxes` are tombstones (not counted by the app's cap).
    tombstones: usize,
}

impl App {
    /// A nameplate no mailbox of this app holds, drawn uniformly from the
    /// free ones of the shortest length that has any (1-9, then 10-99, ...):
    /// codes stay short, and the number that just ended is not the one
    /// handed out next, so a stale code rarely reaches a stranger.
    fn random_free_nameplate(&self, rng: &mut ChaCha20Rng) -> Option<u32> {
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
    fn used_nameplates(&self, low: u32, high: u32) -> impl Iterator<Item = u32> + '_ {
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

    fn by_nameplate(&self, nameplate: u32) -> Option<&MailboxId> {
        self.nameplates.get(&nameplate)
    }

    /// Once no member holds the nameplate, its allocator no longer gets it
    /// back from a retried allocate, and the number is free, unless two
    /// sides used it (see [`is_spent`]): then it stays with the mailbox.
    /// Returns whether the number was freed.
    fn release_if_unheld(&mut self, id: &MailboxId) -> bool {
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

/// How an operation changed a mailbox, for the caller to persist it and
/// wake whoever waits on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EffectKind {
    /// It was made by this operation (a `Changed` follows): a server
    /// charges it to the client that made it.
    Created,
    /// Its members, nameplate, burning or closes changed (or it is new):
    /// persist the whole mailbox.
    Changed,
    /// A side let go of the nameplate by naming the mailbox (and the
    /// nameplate may be free now): persist the mailbox, though a crash may
    /// lose this, since the side's next request naming the mailbox does it
    /// again.
    Released,
    /// One message was appended (by its sequence number).
    Appended(u64),
    /// Only its activity time moved (a read).
    Touched,
    /// Its log was dropped: every side closed, and it is kept, emptied, only
    /// for the retention (burned, two sides used its code, or its only side
    /// left it).
    LogDropped,
    /// It is gone, with its nameplate.
    Deleted,
}

/// One effect of the last operation on one mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effect {
    /// The mailbox's application id.
    pub appid: String,
    /// The mailbox.
    pub mailbox: MailboxId,
    /// What happened to it.
    pub kind: EffectKind,
}

/// An exchange whose last side just closed its mailbox, for the server's
/// log (one line per finished exchange): nothing secret, no side ids.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finished {
    /// The mailbox's application id.
    pub appid: String,
    /// Each side's mood, in the order the sides came.
    pub moods: Vec<Mood>,
    /// Messages the mailbox held when its last side closed.
    pub messages: usize,
}

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

/// Where a sweep in steps ([`Rendezvous::expire_step`]) continues.
#[derive(Clone, Debug, Default)]
pub struct SweepCursor(Option<(String, MailboxId)>);

/// Which channel a request names: by its short nameplate (old clients,
/// and joins), or by its mailbox.
#[derive(Clone, Copy, Debug)]
enum Target<'a> {
    Nameplate(ChannelId),
    Mailbox(&'a MailboxId),
}

/// The rendezvous state machine.
///
/// ```
/// use wormhole_sync_core::rendezvous::Rendezvous;
/// use wormhole_sync_core::wire::{AllocateRequest, Request, Response};
/// use wormhole_sync_core::Timestamp;
///
/// let mut server = Rendezvous::default();
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
}

impl Default for Rendezvous {
    fn default() -> Self {
        Rendezvous::new(RendezvousConfig::default())
    }
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
    /// An empty rendezvous with these limits. Nameplates and mailbox ids are
    /// drawn from a fixed seed until [`with_seed`](Self::with_seed) gives
    /// another: a server must seed it from the operating system, so the ids
    /// it hands out cannot be predicted.
    pub fn new(config: RendezvousConfig) -> Rendezvous {
        Rendezvous {
            config,
            apps: BTreeMap::new(),
            mailboxes: 0,
            tombstones: 0,
            nameplates: 0,
            messages: 0,
            rng: ChaCha20Rng::from_seed([0; 32]),
            effects: Vec::new(),
            finished: Vec::new(),
            instances: 0,
        }
    }

    fn next_instance(&mut self) -> u64 {
        self.instances += 1;
        self.instances
    }

    /// Seeds the generator that draws nameplates and mailbox ids.
    ///
    /// ```
    /// use wormhole_sync_core::rendezvous::Rendezvous;
    /// use wormhole_sync_core::wire::{AllocateRequest, Request, Response};
    /// use wormhole_sync_core::Timestamp;
    ///
    /// let allocate = Request::Allocate(AllocateRequest::new("app", "s1"));
    /// let first_id = |seed| match Rendezvous::default().with_seed(seed).handle(Timestamp::EPOCH, &allocate) {
    ///     Ok(Response::Allocated(a)) => a.channel.get(),
    ///     other => panic!("{other:?}"),
    /// };
    /// assert_eq!(first_id([1; 32]), first_id([1; 32])); // the same seed, the same ids
    /// assert!((1..=9).contains(&first_id([2; 32]))); // one digit while one-digit ids are free
    /// ```
    pub fn with_seed(mut self, seed: [u8; 32]) -> Rendezvous {
        self.rng = ChaCha20Rng::from_seed(seed);
        self
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

    /// What the last operation (a request, a mailbox operation or an
    /// expiry) changed, mailbox by mailbox, in order.
    pub fn effects(&self) -> &[Effect] {
        &self.effects
    }

    /// Forgets the last operation's effects, for a caller about to run
    /// steps of its own that may refuse before any operation runs: then
    /// [`effects`](Self::effects) tells only what happened since.
    ///
    /// ```
    /// use wormhole_sync_core::rendezvous::Rendezvous;
    /// use wormhole_sync_core::Timestamp;
    ///
    /// let mut server = Rendezvous::default();
    /// server.allocate_nameplate(Timestamp::EPOCH, "app", "s1")?;
    /// assert!(!server.effects().is_empty());
    /// server.clear_effects();
    /// assert!(server.effects().is_empty());
    /// # Ok::<(), wormhole_sync_core::wire::WireError>(())
    /// ```
    pub fn clear_effects(&mut self) {
        self.effects.clear();
        self.finished.clear();
    }

    /// The exchanges the last operation finished: its last side closed the
    /// mailbox (a `close`, or a mailbox-protocol `close`).
    pub fn finished(&self) -> &[Finished] {
        &self.finished
    }

    fn effect(&mut self, appid: &str, mailbox: &MailboxId, kind: EffectKind) {
        self.effects.push(Effect { appid: appid.to_string(), mailbox: mailbox.clone(), kind });
    }

    /// Handles one HTTP API request at `now`. Every request is idempotent: a
    /// retry after a lost answer gets the same answer and changes nothing
    /// more.
    pub fn handle(&mut self, now: Timestamp, request: &Request) -> Result<Response, WireError> {
        self.clear_effects();
        request.validate()?;
        let (appid, side) = (request.appid(), request.side());
        let target = match (request.mailbox(), request.channel()) {
            (Some(mailbox), _) => Some(Target::Mailbox(mailbox)),
            (None, Some(channel)) => Some(Target::Nameplate(channel)),
            (None, None) => None,
        };
        if let Some(target) = target {
            self.expire_if_idle(appid, target, now);
        }
        match request {
            Request::Allocate(_) => {
                let (channel, mailbox) = self.allocate(now, appid, side)?;
                Ok(Response::Allocated(AllocateResponse { channel, mailbox: Some(mailbox) }))
            }
            Request::Join(r) => {
                let mailbox = self.claim_nameplate(now, appid, r.channel, side, r.create, false)?;
                let found = &self.apps[appid].mailboxes[&mailbox];
                let sides = u8::try_from(found.members.len()).expect("at most two members");
                let log = Some(found.log(0));
                Ok(Response::Joined(JoinResponse { sides, mailbox: Some(mailbox), log }))
            }
            Request::Post(r) => {
                let mailbox = self.resolve(appid, target.expect("posts name a channel"), side)?;
                let seq = self.append(now, appid, &mailbox, side, Message::new(0, side, &r.phase, &r.body))?;
                let log = r.after.map(|after| self.apps[appid].mailboxes[&mailbox].log(after));
                Ok(Response::Posted(PostResponse { seq, log }))
            }
            Request::Fetch(r) => {
                let mailbox = self.resolve(appid, target.expect("fetches name a channel"), side)?;
                let found = self.mailbox_mut(appid, &mailbox).expect("just resolved");
                found.last_activity = now;
                let log = found.log(r.after);
                self.effect(appid, &mailbox, EffectKind::Touched);
                Ok(Response::Fetched(log))
            }
            Request::Close(r) => {
                let mailbox = match self.resolve(appid, target.expect("closes name a channel"), side) {
                    Ok(mailbox) => mailbox,
                    // Already gone: closing again is a no-op, so retries succeed. A
                    // stranger gets the same answer, so a close cannot tell which
                    // channel ids are in use.
                    Err(e) if matches!(e.code, ErrorCode::UnknownChannel | ErrorCode::NotJoined) => {
                        return Ok(Response::Closed(CloseResponse { deleted: true }))
                    }
                    Err(e) => return Err(e),
                };
                let deleted = self.close_member(now, appid, &mailbox, side, r.mood)?;
                Ok(Response::Closed(CloseResponse { deleted }))
            }
        }
    }

    fn mailbox_mut(&mut self, appid: &str, mailbox: &MailboxId) -> Option<&mut Mailbox> {
        self.apps.get_mut(appid)?.mailboxes.get_mut(mailbox)
    }

    /// The mailbox a member's request names. Naming the mailbox itself
    /// shows the side knows it: once both members have shown it, the
    /// nameplate is released for the next code.
    fn resolve(&mut self, appid: &str, target: Target<'_>, side: &str) -> Result<MailboxId, WireError> {
        let app = self.apps.get_mut(appid).ok_or_else(unknown)?;
        let id = match target {
            Target::Nameplate(channel) => app.by_nameplate(channel.get()).cloned().ok_or_else(unknown)?,
            Target::Mailbox(id) if app.mailboxes.contains_key(id) => id.clone(),
            Target::Mailbox(_) => return Err(unknown()),
        };
        let mailbox = app.mailboxes.get_mut(&id).expect("nameplates lead to mailboxes");
        let both_present = mailbox.members.len() == 2;
        let member = mailbox
            .member_mut(side)
            .ok_or_else(|| err(ErrorCode::NotJoined, "this side has not joined the channel"))?;
        if matches!(target, Target::Mailbox(_)) && both_present && member.holds_nameplate() {
            member.released = true;
            if app.release_if_unheld(&id) {
                self.nameplates -= 1;
            }
            self.effect(appid, &id, EffectKind::Released);
        }
        Ok(id)
    }

    fn check_capacity(&self, appid: &str) -> Result<(), WireError> {
        if self.mailboxes >= self.config.max_channels {
            return Err(err(ErrorCode::ServerFull, "the server holds as many channels as it allows"));
        }
        if self.channels_in(appid) >= self.config.max_channels_per_app {
            return Err(err(ErrorCode::TooManyChannels, "this application holds as many channels as allowed"));
        }
        Ok(())
    }

    /// A fresh mailbox id no mailbox of `appid` has.
    fn fresh_mailbox_id(&mut self, appid: &str) -> MailboxId {
        loop {
            let mut bytes = [0u8; 8];
            self.rng.fill_bytes(&mut bytes);
            let id = MailboxId::new(base32(bytes)).expect("base32 is alphanumeric");
            if !self.apps.get(appid).is_some_and(|a| a.mailboxes.contains_key(&id)) {
                return id;
            }
        }
    }

    /// Creates a mailbox with one member, led to by `nameplate` if given.
    fn create(&mut self, now: Timestamp, appid: &str, nameplate: Option<u32>, member: Member) -> MailboxId {
        let id = self.fresh_mailbox_id(appid);
        let instance = self.next_instance();
        let app = self.apps.entry(appid.to_string()).or_default();
        if member.allocated {
            app.allocated_by.insert(member.side.clone(), id.clone());
        }
        if let Some(number) = nameplate {
            app.nameplates.insert(number, id.clone());
            self.nameplates += 1;
        }
        let mailbox = Mailbox {
            nameplate,
            members: vec![member],
            messages: Vec::new(),
            burned: false,
            last_activity: now,
            instance,
        };
        app.mailboxes.insert(id.clone(), mailbox);
        self.mailboxes += 1;
        self.effect(appid, &id, EffectKind::Created);
        self.effect(appid, &id, EffectKind::Changed);
        id
    }

    fn allocate(&mut self, now: Timestamp, appid: &str, side: &str) -> Result<(ChannelId, MailboxId), WireError> {
        if let Some(app) = self.apps.get_mut(appid) {
            if let Some(id) = app.allocated_by.get(side).cloned() {
                let found = app.mailboxes.get_mut(&id);
                let number = found.as_ref().and_then(|m| m.nameplate);
                let live = number.is_some_and(|n| app.nameplates.get(&n) == Some(&id));
                match (found, number.and_then(ChannelId::new)) {
                    (Some(mailbox), Some(channel)) if live => {
                        mailbox.last_activity = now;
                        self.effect(appid, &id, EffectKind::Touched);
                        return Ok((channel, id));
                    }
                    // Its nameplate was released or it is gone: a later allocate gets a fresh one.
                    _ => {
                        app.allocated_by.remove(side);
                    }
                }
            }
        }
        self.check_capacity(appid)?;
        let no_app = App::default();
        let app = self.apps.get(appid).unwrap_or(&no_app);
        let channel = app
            .random_free_nameplate(&mut self.rng)
            .and_then(ChannelId::new)
            .ok_or_else(|| err(ErrorCode::TooManyChannels, "no channel id is free for this application"))?;
        let mailbox = self.create(now, appid, Some(channel.get()), Member::new(side, true, true));
        Ok((channel, mailbox))
    }

    /// A side claims a nameplate (HTTP join, mailbox claim): it enters the
    /// nameplate's mailbox, which is created (with the nameplate) if
    /// `create` and it does not exist. `strict` refuses a side that
    /// already released it (the mailbox protocol's `reclaimed`).
    fn claim_nameplate(
        &mut self,
        now: Timestamp,
        appid: &str,
        channel: ChannelId,
        side: &str,
        create: bool,
        strict: bool,
    ) -> Result<MailboxId, WireError> {
        let existing = self.apps.get(appid).and_then(|a| a.by_nameplate(channel.get())).cloned();
        let Some(id) = existing else {
            if !create {
                return Err(unknown());
            }
            self.check_capacity(appid)?;
            return Ok(self.create(now, appid, Some(channel.get()), Member::new(side, false, true)));
        };
        let mailbox = self.mailbox_mut(appid, &id).expect("nameplates lead to mailboxes");
        if create && mailbox.is_abandoned() && mailbox.member(side).is_none() {
            // Nobody used the code and its side left: one that may create the
            // channel (a chosen code tried again) starts it afresh.
            self.delete(appid, &id);
            self.check_capacity(appid)?;
            return Ok(self.create(now, appid, Some(channel.get()), Member::new(side, false, true)));
        }
        mailbox.admits(side)?;
        match mailbox.member_mut(side) {
            Some(member) if member.closed.is_some() => {
                return Err(err(ErrorCode::SideClosed, "this side already closed the channel"));
            }
            Some(member) if strict && member.released => {
                return Err(err(ErrorCode::Reclaimed, "this side already released this nameplate"));
            }
            Some(member) => member.claimed = true,
            None => mailbox.members.push(Member::new(side, false, true)),
        }
        mailbox.last_activity = now;
        self.effect(appid, &id, EffectKind::Changed);
        Ok(id)
    }

    /// Appends a member's message (one per side and phase: a repeat with the
    /// same body answers the original's sequence number).
    fn append(
        &mut self,
        now: Timestamp,
        appid: &str,
        id: &MailboxId,
        side: &str,
        message: Message,
    ) -> Result<u64, WireError> {
        let (max_bytes, max_messages) = (self.config.max_message_bytes, self.config.max_messages_per_channel);
        let mailbox = self.mailbox_mut(appid, id).ok_or_else(unknown)?;
        let member =
            mailbox.member(side).ok_or_else(|| err(ErrorCode::NotJoined, "this side has not joined the channel"))?;
        if member.closed.is_some() {
            return Err(err(ErrorCode::SideClosed, "this side already closed the channel"));
        }
        if mailbox.burned {
            return Err(err(ErrorCode::Burned, "the channel was closed after a wrong code"));
        }
        if message.body.len() > max_bytes {
            return Err(err(ErrorCode::MessageTooLarge, "the message body is larger than this server allows"));
        }
        mailbox.last_activity = now;
        if let Some(existing) = mailbox.messages.iter().find(|m| m.side == side && m.phase == message.phase) {
            let answer = if existing.body == message.body {
                Ok(existing.seq)
            } else {
                Err(err(ErrorCode::Conflict, "this side already posted a different message in this phase"))
            };
            self.effect(appid, id, EffectKind::Touched);
            return answer;
        }
        if mailbox.messages.len() >= max_messages {
            return Err(err(ErrorCode::TooManyMessages, "the channel holds as many messages as allowed"));
        }
        let seq = mailbox.messages.len() as u64 + 1;
        mailbox.messages.push(Message { seq, ..message });
        self.messages += 1;
        self.effect(appid, id, EffectKind::Appended(seq));
        Ok(seq)
    }

    /// A member leaves with `mood`. `scary` burns the mailbox; the last
    /// close deletes it (a burned one stays, emptied, for its retention).
    /// Returns whether it was deleted.
    fn close_member(
        &mut self,
        now: Timestamp,
        appid: &str,
        id: &MailboxId,
        side: &str,
        mood: Mood,
    ) -> Result<bool, WireError> {
        let app = self.apps.get_mut(appid).ok_or_else(unknown)?;
        let mailbox = app.mailboxes.get_mut(id).ok_or_else(unknown)?;
        let was_tombstone = mailbox.is_tombstone();
        let was_finished = mailbox.all_closed();
        let member = mailbox
            .member_mut(side)
            .ok_or_else(|| err(ErrorCode::NotJoined, "this side has not joined the channel"))?;
        member.closed.get_or_insert(mood);
        let allocated = member.allocated;
        mailbox.last_activity = now;
        let mut nameplate_back = false;
        if mood == Mood::Scary && !mailbox.burned {
            mailbox.burned = true;
            // The nameplate leads here again if it was released and is still
            // free, so the person with the right code learns it was burned.
            if let Some(number) = mailbox.nameplate {
                if !app.reserved.contains(&number) {
                    if let std::collections::btree_map::Entry::Vacant(slot) = app.nameplates.entry(number) {
                        slot.insert(id.clone());
                        nameplate_back = true;
                    }
                }
            }
        }
        if !was_finished && mailbox.all_closed() {
            let moods = mailbox.members.iter().filter_map(|m| m.closed).collect();
            self.finished.push(Finished { appid: appid.to_string(), moods, messages: mailbox.messages.len() });
        }
        let tombstone = mailbox.is_tombstone();
        let deleted = mailbox.all_closed() && !tombstone;
        let dropped = if tombstone { std::mem::take(&mut mailbox.messages).len() } else { 0 };
        let made_tombstone = tombstone && !was_tombstone;
        app.tombstones += usize::from(made_tombstone);
        if allocated && app.allocated_by.get(side) == Some(id) {
            // A later allocate by this side gets a fresh nameplate.
            app.allocated_by.remove(side);
        }
        self.messages -= dropped;
        self.tombstones += usize::from(made_tombstone);
        if nameplate_back {
            self.nameplates += 1;
        }
        if deleted {
            self.delete(appid, id);
        } else {
            self.effect(appid, id, EffectKind::Changed);
            if tombstone {
                self.effect(appid, id, EffectKind::LogDropped);
            }
        }
        Ok(deleted)
    }

    fn delete(&mut self, appid: &str, id: &MailboxId) {
        let Some(app) = self.apps.get_mut(appid) else { return };
        if let Some(mailbox) = app.mailboxes.remove(id) {
            self.mailboxes -= 1;
            if mailbox.is_tombstone() {
                self.tombstones -= 1;
                app.tombstones -= 1;
            }
            self.messages -= mailbox.messages.len();
            if let Some(number) = mailbox.nameplate {
                if app.nameplates.get(&number) == Some(id) {
                    app.nameplates.remove(&number);
                    self.nameplates -= 1;
                }
            }
            for member in mailbox.members.iter().filter(|m| m.allocated) {
                if app.allocated_by.get(&member.side) == Some(id) {
                    app.allocated_by.remove(&member.side);
                }
            }
            self.effects.push(Effect { appid: appid.to_string(), mailbox: id.clone(), kind: EffectKind::Deleted });
        }
        if app.mailboxes.is_empty() && app.reserved.is_empty() {
            self.apps.remove(appid);
        }
    }

    /// When `mailbox` is deleted if nothing touches it first.
    fn expires_at(&self, mailbox: &Mailbox) -> Timestamp {
        let keep = if mailbox.is_tombstone() { self.config.burned_retention } else { self.config.channel_expiry };
        mailbox.last_activity + keep
    }

    fn is_idle(&self, mailbox: &Mailbox, now: Timestamp) -> bool {
        self.expires_at(mailbox) <= now
    }

    fn expire_if_idle(&mut self, appid: &str, target: Target<'_>, now: Timestamp) {
        let Some(app) = self.apps.get(appid) else { return };
        let id = match target {
            Target::Nameplate(channel) => app.by_nameplate(channel.get()),
            Target::Mailbox(id) => Some(id),
        };
        let Some(id) = id.cloned() else { return };
        if app.mailboxes.get(&id).is_some_and(|m| self.is_idle(m, now)) {
            self.delete(appid, &id);
        }
    }

    /// Deletes every mailbox idle for the expiry time; returns which.
    pub fn expire(&mut self, now: Timestamp) -> Vec<(String, MailboxId)> {
        self.clear_effects();
        let idle: Vec<(String, MailboxId)> = self
            .apps
            .iter()
            .flat_map(|(appid, app)| {
                app.mailboxes
                    .iter()
                    .filter(|(_, m)| self.is_idle(m, now))
                    .map(move |(id, _)| (appid.clone(), id.clone()))
            })
            .collect();
        for (appid, id) in &idle {
            self.delete(appid, id);
        }
        self.shrink_indexes();
        idle
    }

    /// Gives back the memory of indexes that shrank after a burst (a hash
    /// map keeps the capacity of its peak).
    pub fn shrink_indexes(&mut self) {
        for app in self.apps.values_mut() {
            let index = &mut app.allocated_by;
            if index.capacity() > 64 && index.len() < index.capacity() / 4 {
                index.shrink_to_fit();
            }
        }
    }

    /// Expires idle mailboxes among the next `limit` mailboxes (in appid,
    /// then id order) from `cursor`, and moves the cursor past them: a sweep
    /// in steps, so a server need not hold its state across a scan of every
    /// mailbox. Returns the deleted mailboxes and whether the scan reached
    /// the end (the cursor then starts over).
    ///
    /// ```
    /// use wormhole_sync_core::rendezvous::{Rendezvous, SweepCursor};
    /// use wormhole_sync_core::Timestamp;
    ///
    /// let mut server = Rendezvous::default();
    /// let mut cursor = SweepCursor::default();
    /// let (expired, done) = server.expire_step(Timestamp::EPOCH, &mut cursor, 1_000);
    /// assert!(expired.is_empty() && done);
    /// ```
    pub fn expire_step(
        &mut self,
        now: Timestamp,
        cursor: &mut SweepCursor,
        limit: usize,
    ) -> (Vec<(String, MailboxId)>, bool) {
        self.clear_effects();
        let start = cursor.0.take();
        let mut seen = 0;
        let mut idle = Vec::new();
        let mut next = None;
        let from_app = start.as_ref().map_or(String::new(), |(a, _)| a.clone());
        'apps: for (appid, app) in self.apps.range(from_app.clone()..) {
            let from = match &start {
                Some((a, id)) if *a == *appid => std::ops::Bound::Included(id.clone()),
                _ => std::ops::Bound::Unbounded,
            };
            for (id, mailbox) in app.mailboxes.range((from, std::ops::Bound::Unbounded)) {
                if seen == limit {
                    next = Some((appid.clone(), id.clone()));
                    break 'apps;
                }
                seen += 1;
                if self.is_idle(mailbox, now) {
                    idle.push((appid.clone(), id.clone()));
                }
            }
        }
        for (appid, id) in &idle {
            self.delete(appid, id);
        }
        let done = next.is_none();
        cursor.0 = next;
        (idle, done)
    }

    /// When the next mailbox will have been idle for the expiry time.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.apps.values().flat_map(|a| a.mailboxes.values()).map(|m| self.expires_at(m)).min()
    }

    /// Whether a nameplate is in use (it leads to a mailbox).
    pub fn contains(&self, appid: &str, channel: ChannelId) -> bool {
        self.apps.get(appid).is_some_and(|a| a.nameplates.contains_key(&channel.get()))
    }

    /// The mailbox a nameplate leads to, while it is in use.
    pub fn mailbox_of(&self, appid: &str, channel: ChannelId) -> Option<&MailboxId> {
        self.apps.get(appid)?.by_nameplate(channel.get())
    }

    /// Whether this HTTP request would make a new channel: an allocate
    /// (unless it repeats one whose channel still holds its id), or a join
    /// with `create` of an id not in use. For caps on channels, checked
    /// before the request runs.
    ///
    /// ```
    /// use wormhole_sync_core::rendezvous::Rendezvous;
    /// use wormhole_sync_core::wire::{AllocateRequest, Request};
    /// use wormhole_sync_core::Timestamp;
    ///
    /// let mut server = Rendezvous::default();
    /// let allocate = Request::Allocate(AllocateRequest::new("app", "s1"));
    /// assert!(server.creates_channel(&allocate));
    /// server.handle(Timestamp::EPOCH, &allocate)?;
    /// assert!(!server.creates_channel(&allocate), "a repeat answers the same channel");
    /// # Ok::<(), wormhole_sync_core::wire::WireError>(())
    /// ```
    pub fn creates_channel(&self, request: &Request) -> bool {
        let app = self.apps.get(request.appid());
        match request {
            Request::Allocate(r) => !app.is_some_and(|app| {
                app.allocated_by.get(&r.side).is_some_and(|id| {
                    let number = app.mailboxes.get(id).and_then(|m| m.nameplate);
                    number.is_some_and(|n| app.nameplates.get(&n) == Some(id))
                })
            }),
            Request::Join(r) => r.create && !self.contains(request.appid(), r.channel),
            _ => false,
        }
    }

    /// Whether a mailbox exists.
    pub fn contains_mailbox(&self, appid: &str, mailbox: &MailboxId) -> bool {
        self.apps.get(appid).is_some_and(|a| a.mailboxes.contains_key(mailbox))
    }

    /// Which mailbox under this id exists now, if one does: a mailbox
    /// deleted and made again under the same id (`open` makes unknown ones)
    /// has a different instance number, so a listener of the first one can
    /// tell its messages from the second's. Numbers are not saved in
    /// snapshots; they stay distinct within one process.
    ///
    /// ```
    /// use wormhole_sync_core::rendezvous::Rendezvous;
    /// use wormhole_sync_core::wire::{MailboxId, Mood};
    /// use wormhole_sync_core::Timestamp;
    ///
    /// let mut server = Rendezvous::default();
    /// let mailbox = MailboxId::new("abc").unwrap();
    /// server.open(Timestamp::EPOCH, "app", &mailbox, "s1")?;
    /// let first = server.mailbox_instance("app", &mailbox);
    /// server.close(Timestamp::EPOCH, "app", &mailbox, "s1", Mood::Happy)?;
    /// assert_eq!(server.mailbox_instance("app", &mailbox), None);
    /// server.open(Timestamp::EPOCH, "app", &mailbox, "s1")?;
    /// assert!(server.mailbox_instance("app", &mailbox).is_some());
    /// assert_ne!(server.mailbox_instance("app", &mailbox), first);
    /// # Ok::<(), wormhole_sync_core::wire::WireError>(())
    /// ```
    pub fn mailbox_instance(&self, appid: &str, mailbox: &MailboxId) -> Option<u64> {
        Some(self.apps.get(appid)?.mailboxes.get(mailbox)?.instance)
    }

    /// Whether any mailbox of `appid` exists.
    pub fn has_app(&self, appid: &str) -> bool {
        self.apps.get(appid).is_some_and(|app| !app.mailboxes.is_empty())
    }

    /// The channels of `appid` its cap counts: its mailboxes but the
    /// tombstones (see [`RendezvousConfig::max_channels_per_app`]).
    ///
    /// ```
    /// use wormhole_sync_core::rendezvous::Rendezvous;
    /// use wormhole_sync_core::wire::{AllocateRequest, Request};
    /// use wormhole_sync_core::Timestamp;
    ///
    /// let mut server = Rendezvous::default();
    /// server.handle(Timestamp::from_millis(0), &Request::Allocate(AllocateRequest::new("app", "side"))).unwrap();
    /// assert_eq!(server.channels_in("app"), 1);
    /// ```
    pub fn channels_in(&self, appid: &str) -> usize {
        self.apps.get(appid).map_or(0, |app| app.mailboxes.len() - app.tombstones)
    }

    /// The mailbox a request reaches (by the mailbox it names, else by its
    /// nameplate), if it exists now.
    pub fn mailbox_for(&self, request: &Request) -> Option<MailboxId> {
        let app = self.apps.get(request.appid())?;
        match (request.mailbox(), request.channel()) {
            (Some(id), _) => app.mailboxes.contains_key(id).then(|| id.clone()),
            (None, Some(channel)) => app.by_nameplate(channel.get()).cloned(),
            (None, None) => None,
        }
    }

    /// Whether `side` already posted in `phase` of this mailbox (a repeated
    /// post stores nothing new).
    pub fn has_posted(&self, appid: &str, mailbox: &MailboxId, side: &str, phase: &str) -> bool {
        let found = self.apps.get(appid).and_then(|a| a.mailboxes.get(mailbox));
        found.is_some_and(|m| m.messages.iter().any(|m| m.side == side && m.phase == phase))
    }

    /// A mailbox's messages after `after` (empty if it does not exist).
    pub fn messages_after(&self, appid: &str, mailbox: &MailboxId, after: u64) -> &[Message] {
        let found = self.apps.get(appid).and_then(|a| a.mailboxes.get(mailbox));
        let messages = found.map_or(&[][..], |m| &m.messages[..]);
        &messages[usize::try_from(after).unwrap_or(usize::MAX).min(messages.len())..]
    }

    /// One message, by its sequence number.
    pub fn message(&self, appid: &str, mailbox: &MailboxId, seq: u64) -> Option<&Message> {
        let found = self.apps.get(appid)?.mailboxes.get(mailbox)?;
        found.messages.get(usize::try_from(seq).ok()?.checked_sub(1)?)
    }

    /// Nameplates in use for `appid`, in order.
    pub fn nameplates(&self, appid: &str) -> Vec<ChannelId> {
        let Some(app) = self.apps.get(appid) else { return Vec::new() };
        app.nameplates.keys().filter_map(|&n| ChannelId::new(n)).collect()
    }

    /// Marks nameplates of `appid` as held by mailboxes this rendezvous
    /// does not hold: for a partial view of a larger state, as a server
    /// sharing a database loads for one operation (the mailbox it names,
    /// and the numbers its app has in use). Allocation never hands them
    /// out, and a mailbox burned after its release does not take its
    /// number back while it is reserved.
    ///
    /// ```
    /// use wormhole_sync_core::rendezvous::Rendezvous;
    /// use wormhole_sync_core::{ChannelId, Timestamp};
    ///
    /// let mut partial = Rendezvous::default();
    /// partial.reserve_nameplates("app", (1..=9).filter(|n| *n != 4).filter_map(ChannelId::new));
    /// let nameplate = partial.allocate_nameplate(Timestamp::EPOCH, "app", "s1")?;
    /// assert_eq!(nameplate.get(), 4, "the only free one-digit number");
    /// # Ok::<(), wormhole_sync_core::wire::WireError>(())
    /// ```
    pub fn reserve_nameplates(&mut self, appid: &str, numbers: impl IntoIterator<Item = ChannelId>) {
        let app = self.apps.entry(appid.to_string()).or_default();
        app.reserved.extend(numbers.into_iter().map(ChannelId::get));
    }

    // The mailbox protocol's operations (magic-wormhole's WebSocket front end).

    /// `allocate`: a free nameplate, claimed by `side` (with a new mailbox).
    ///
    /// ```
    /// use wormhole_sync_core::rendezvous::Rendezvous;
    /// use wormhole_sync_core::Timestamp;
    ///
    /// let mut server = Rendezvous::default();
    /// let now = Timestamp::EPOCH;
    /// let nameplate = server.allocate_nameplate(now, "app", "s1")?;
    /// let mailbox = server.claim(now, "app", nameplate, "s1")?; // the allocator claims it too
    /// assert_eq!(server.claim(now, "app", nameplate, "s2")?, mailbox);
    /// server.release(now, "app", nameplate, "s1")?;
    /// server.release(now, "app", nameplate, "s2")?;
    /// // Two sides used it: the number stays with the mailbox, and a third side is refused.
    /// assert_eq!(server.mailbox_of("app", nameplate), Some(&mailbox));
    /// assert!(server.claim(now, "app", nameplate, "s3").is_err());
    /// # Ok::<(), wormhole_sync_core::wire::WireError>(())
    /// ```
    pub fn allocate_nameplate(&mut self, now: Timestamp, appid: &str, side: &str) -> Result<ChannelId, WireError> {
        self.clear_effects();
        validate_appid(appid)?;
        validate_side(side)?;
        Ok(self.allocate(now, appid, side)?.0)
    }

    /// `claim`: `side` claims a nameplate, creating it (and its mailbox) if
    /// unused, and enters its mailbox. Refused with `crowded` for a third
    /// side, `reclaimed` for a side that released it, `burned` after a
    /// wrong code.
    pub fn claim(
        &mut self,
        now: Timestamp,
        appid: &str,
        nameplate: ChannelId,
        side: &str,
    ) -> Result<MailboxId, WireError> {
        self.clear_effects();
        validate_appid(appid)?;
        validate_side(side)?;
        self.expire_if_idle(appid, Target::Nameplate(nameplate), now);
        self.claim_nameplate(now, appid, nameplate, side, true, true)
    }

    /// `release`: `side` gives the nameplate up; once no side holds it, its
    /// number is free. Releasing what is not held changes nothing.
    pub fn release(&mut self, now: Timestamp, appid: &str, nameplate: ChannelId, side: &str) -> Result<(), WireError> {
        self.clear_effects();
        let Some(app) = self.apps.get_mut(appid) else { return Ok(()) };
        let Some(id) = app.by_nameplate(nameplate.get()).cloned() else { return Ok(()) };
        let mailbox = app.mailboxes.get_mut(&id).expect("nameplates lead to mailboxes");
        if mailbox.member(side).is_some_and(Member::holds_nameplate) && mailbox.is_abandoned() {
            // Its only side closed before letting go of the nameplate (the
            // mailbox protocol sends both at once): nothing is left to keep.
            self.delete(appid, &id);
            return Ok(());
        }
        let Some(member) = mailbox.member_mut(side).filter(|m| m.holds_nameplate()) else { return Ok(()) };
        member.released = true;
        mailbox.last_activity = now;
        if app.release_if_unheld(&id) {
            self.nameplates -= 1;
        }
        self.effect(appid, &id, EffectKind::Changed);
        Ok(())
    }

    /// `open`: `side` enters a mailbox (created, with no nameplate, if it
    /// does not exist, as the reference server does) and gets every
    /// message in it. Refused with `crowded` for a third side and `burned`
    /// for a stranger after a wrong code.
    pub fn open(&mut self, now: Timestamp, appid: &str, id: &MailboxId, side: &str) -> Result<Vec<Message>, WireError> {
        self.clear_effects();
        validate_appid(appid)?;
        validate_side(side)?;
        self.expire_if_idle(appid, Target::Mailbox(id), now);
        let Some(mailbox) = self.mailbox_mut(appid, id) else {
            self.check_capacity(appid)?;
            let instance = self.next_instance();
            let app = self.apps.entry(appid.to_string()).or_default();
            let mailbox = Mailbox {
                nameplate: None,
                members: vec![Member::new(side, false, false)],
                messages: Vec::new(),
                burned: false,
                last_activity: now,
                instance,
            };
            app.mailboxes.insert(id.clone(), mailbox);
            self.mailboxes += 1;
            self.effect(appid, id, EffectKind::Created);
            self.effect(appid, id, EffectKind::Changed);
            return Ok(Vec::new());
        };
        mailbox.admits(side)?;
        let joined = mailbox.member(side).is_none();
        if joined {
            mailbox.members.push(Member::new(side, false, false));
        }
        mailbox.last_activity = now;
        let messages = mailbox.messages.clone();
        let kind = if joined { EffectKind::Changed } else { EffectKind::Touched };
        self.effect(appid, id, kind);
        Ok(messages)
    }

    /// `add`: a member of the mailbox adds a message, received at `now`
    /// under the sender's `client_id`. Returns its sequence number.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        now: Timestamp,
        appid: &str,
        id: &MailboxId,
        side: &str,
        phase: &str,
        body: &str,
        client_id: Option<String>,
    ) -> Result<u64, WireError> {
        self.clear_effects();
        validate_phase(phase)?;
        self.expire_if_idle(appid, Target::Mailbox(id), now);
        let message = Message::new(0, side, phase, body).received(Some(now), client_id);
        self.append(now, appid, id, side, message)
    }

    /// Counts as activity on a mailbox a client listens to (a WebSocket
    /// that opened it and stays connected), so it does not expire under a
    /// client that is still there. Nothing happens to a mailbox that is gone.
    ///
    /// ```
    /// use wormhole_sync_core::rendezvous::{EffectKind, Rendezvous};
    /// use wormhole_sync_core::wire::MailboxId;
    /// use wormhole_sync_core::Timestamp;
    ///
    /// let mut server = Rendezvous::default();
    /// let mailbox = MailboxId::new("abc").unwrap();
    /// server.open(Timestamp::EPOCH, "app", &mailbox, "s1")?;
    /// server.touch(Timestamp::from_millis(5), "app", &mailbox);
    /// assert_eq!(server.effects()[0].kind, EffectKind::Touched);
    /// # Ok::<(), wormhole_sync_core::wire::WireError>(())
    /// ```
    pub fn touch(&mut self, now: Timestamp, appid: &str, id: &MailboxId) {
        self.clear_effects();
        if let Some(mailbox) = self.mailbox_mut(appid, id) {
            mailbox.last_activity = mailbox.last_activity.max(now);
            self.effect(appid, id, EffectKind::Touched);
        }
    }

    /// `close`: `side` leaves the mailbox with `mood` (`scary` burns it).
    /// Closing a mailbox that is gone changes nothing.
    pub fn close(
        &mut self,
        now: Timestamp,
        appid: &str,
        id: &MailboxId,
        side: &str,
        mood: Mood,
    ) -> Result<(), WireError> {
        self.clear_effects();
        if !self.contains_mailbox(appid, id) {
            return Ok(());
        }
        self.close_member(now, appid, id, side, mood).map(|_| ())
    }

    /// The whole state, for persistence.
    pub fn snapshot(&self) -> RendezvousSnapshot {
        let mailboxes = self
            .apps
            .iter()
            .flat_map(|(appid, app)| app.mailboxes.iter().map(move |(id, m)| snapshot_of(appid, app, id, m)))
            .collect();
        RendezvousSnapshot { format: SNAPSHOT_FORMAT.into(), version: SNAPSHOT_VERSION, mailboxes, channels: None }
    }

    /// One mailbox's state (for persisting it after a change), if it exists.
    pub fn mailbox_snapshot(&self, appid: &str, mailbox: &MailboxId) -> Option<MailboxSnapshot> {
        let app = self.apps.get(appid)?;
        let found = app.mailboxes.get(mailbox)?;
        Some(snapshot_of(appid, app, mailbox, found))
    }

    /// A mailbox's sides and whether it holds its nameplate, without its
    /// log: what a release changes.
    pub fn members_snapshot(&self, appid: &str, mailbox: &MailboxId) -> Option<(bool, Vec<MemberSnapshot>)> {
        let app = self.apps.get(appid)?;
        let found = app.mailboxes.get(mailbox)?;
        let holds = found.nameplate.is_some_and(|n| app.nameplates.get(&n) == Some(mailbox));
        Some((holds, found.members.iter().map(member_snapshot).collect()))
    }

    /// Rebuilds a rendezvous from a snapshot (this version's, or a channel
    /// list from version 1), checking its invariants.
    pub fn restore(config: RendezvousConfig, snapshot: RendezvousSnapshot) -> Result<Rendezvous, SnapshotError> {
        let bad = |why: String| SnapshotError(why);
        let mailboxes = match (snapshot.format.as_str(), snapshot.version, snapshot.channels) {
            (SNAPSHOT_FORMAT, SNAPSHOT_VERSION, None) => snapshot.mailboxes,
            (SNAPSHOT_FORMAT, 1, Some(channels)) => channels.into_iter().map(MailboxSnapshot::from_channel).collect(),
            _ => return Err(bad("not a version 1 or 2 rendezvous snapshot".into())),
        };
        let mut rendezvous = Rendezvous::new(config);
        for m in mailboxes {
            let at = format!("mailbox {} of {:?}", m.mailbox, m.appid);
            validate_appid(&m.appid).map_err(|e| bad(format!("{at}: {e}")))?;
            if m.members.is_empty() || m.members.len() > 2 {
                return Err(bad(format!("{at}: must have one or two members")));
            }
            if m.members.len() == 2 && m.members[0].side == m.members[1].side {
                return Err(bad(format!("{at}: duplicate member")));
            }
            for member in &m.members {
                validate_side(&member.side).map_err(|e| bad(format!("{at}: {e}")))?;
            }
            for (i, message) in m.messages.iter().enumerate() {
                let in_order = message.seq == i as u64 + 1;
                let from_member = m.members.iter().any(|member| member.side == message.side);
                if !in_order || !from_member || validate_phase(&message.phase).is_err() {
                    return Err(bad(format!("{at}: message {} is out of order or invalid", i + 1)));
                }
            }
            if m.holds_nameplate && m.nameplate.is_none() {
                return Err(bad(format!("{at}: holds a nameplate it does not name")));
            }
            let app = rendezvous.apps.entry(m.appid.clone()).or_default();
            if app.mailboxes.contains_key(&m.mailbox) {
                return Err(bad(format!("{at}: appears twice")));
            }
            if let (true, Some(number)) = (m.holds_nameplate, m.nameplate) {
                if app.nameplates.insert(number.get(), m.mailbox.clone()).is_some() {
                    return Err(bad(format!("{at}: nameplate {number} leads to two mailboxes")));
                }
                rendezvous.nameplates += 1;
            }
            for member in m.members.iter().filter(|member| member.allocated && member.closed.is_none()) {
                app.allocated_by.insert(member.side.clone(), m.mailbox.clone());
            }
            rendezvous.mailboxes += 1;
            rendezvous.tombstones += usize::from(m.is_tombstone());
            app.tombstones += usize::from(m.is_tombstone());
            rendezvous.instances += 1;
            rendezvous.messages += m.messages.len();
            let members = m
                .members
                .into_iter()
                .map(|s| Member {
                    side: s.side,
                    allocated: s.allocated,
                    claimed: s.claimed,
                    released: s.released,
                    closed: s.closed,
                })
                .collect();
            let mailbox = Mailbox {
                nameplate: m.nameplate.map(ChannelId::get),
                members,
                messages: m.messages,
                burned: m.burned,
                last_activity: m.last_activity,
                instance: rendezvous.instances,
            };
            app.mailboxes.insert(m.mailbox, mailbox);
        }
        Ok(rendezvous)
    }
}

fn member_snapshot(m: &Member) -> MemberSnapshot {
    MemberSnapshot {
        side: m.side.clone(),
        allocated: m.allocated,
        claimed: m.claimed,
        released: m.released,
        closed: m.closed,
    }
}

fn snapshot_of(appid: &str, app: &App, id: &MailboxId, mailbox: &Mailbox) -> MailboxSnapshot {
    let nameplate = mailbox.nameplate.and_then(ChannelId::new);
    MailboxSnapshot {
        appid: appid.to_string(),
        mailbox: id.clone(),
        nameplate,
        holds_nameplate: nameplate.is_some_and(|n| app.nameplates.get(&n.get()) == Some(id)),
        members: mailbox.members.iter().map(member_snapshot).collect(),
        messages: mailbox.messages.clone(),
        burned: mailbox.burned,
        last_activity: mailbox.last_activity,
    }
}

impl RendezvousSnapshot {
    /// A snapshot of these mailboxes (for loading them from storage).
    pub fn new(mailboxes: Vec<MailboxSnapshot>) -> RendezvousSnapshot {
        RendezvousSnapshot { format: SNAPSHOT_FORMAT.into(), version: SNAPSHOT_VERSION, mailboxes, channels: None }
    }
}

const SNAPSHOT_FORMAT: &str = "wormhole-sync/rendezvous";
const SNAPSHOT_VERSION: u32 = 2;

/// A restorable copy of a rendezvous's state (serde-serializable).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RendezvousSnapshot {
    format: String,
    version: u32,
    /// Every mailbox.
    #[serde(default)]
    pub mailboxes: Vec<MailboxSnapshot>,
    /// Version 1's channels (each becomes a mailbox holding its nameplate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    channels: Option<Vec<ChannelSnapshot>>,
}

impl RendezvousSnapshot {
    /// JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("snapshots always serialize")
    }

    /// Parses JSON bytes (untrusted: checked again by [`Rendezvous::restore`]).
    pub fn from_json(bytes: &[u8]) -> Result<RendezvousSnapshot, SnapshotError> {
        serde_json::from_slice(bytes).map_err(|e| SnapshotError(format!("malformed snapshot: {e}")))
    }
}

/// One mailbox in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxSnapshot {
    /// Its application id.
    pub appid: String,
    /// Its id.
    pub mailbox: MailboxId,
    /// The nameplate it was made for, if any.
    pub nameplate: Option<ChannelId>,
    /// Whether that nameplate still leads here (it is not yet released).
    pub holds_nameplate: bool,
    /// Its one or two sides.
    pub members: Vec<MemberSnapshot>,
    /// Its message log.
    pub messages: Vec<Message>,
    /// Whether a wrong code closed it for good.
    pub burned: bool,
    /// Its last request.
    pub last_activity: Timestamp,
}

impl MailboxSnapshot {
    /// Whether this mailbox is only kept for the retention: every member
    /// closed, and it burned, two sides entered it, or its only side left
    /// it holding the nameplate. Its log is empty, and
    /// it expires `burned_retention` after its last activity.
    pub fn is_tombstone(&self) -> bool {
        let lone_holds = self.members.first().is_some_and(|m| m.claimed && !m.released);
        let all_closed = self.members.iter().all(|m| m.closed.is_some());
        is_tombstone(all_closed, self.burned, self.nameplate.is_some(), (self.members.len(), lone_holds))
    }

    /// A version 1 channel as a mailbox that holds the channel's id as its
    /// nameplate; its mailbox id is derived from the channel id, since
    /// version 1 had none.
    pub fn from_channel(channel: ChannelSnapshot) -> MailboxSnapshot {
        MailboxSnapshot {
            appid: channel.appid,
            mailbox: MailboxId::new(format!("c{}", channel.channel)).expect("digits are alphanumeric"),
            nameplate: Some(channel.channel),
            holds_nameplate: true,
            members: channel.members,
            messages: channel.messages,
            burned: channel.burned,
            last_activity: channel.last_activity,
        }
    }
}

/// One channel in a version 1 snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSnapshot {
    /// Its application id.
    pub appid: String,
    /// Its id.
    pub channel: ChannelId,
    /// Its one or two sides.
    pub members: Vec<MemberSnapshot>,
    /// Its message log.
    pub messages: Vec<Message>,
    /// Whether a wrong code closed it for good.
    pub burned: bool,
    /// Its last request.
    pub last_activity: Timestamp,
}

fn yes() -> bool {
    true
}

/// One side of a mailbox in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSnapshot {
    /// The side id.
    pub side: String,
    /// Whether this side allocated the nameplate.
    pub allocated: bool,
    /// Whether this side came in through the nameplate (version 1: always).
    #[serde(default = "yes")]
    pub claimed: bool,
    /// Whether this side has released the nameplate.
    #[serde(default)]
    pub released: bool,
    /// Its mood, once closed.
    pub closed: Option<Mood>,
}

impl MemberSnapshot {
    /// A side that came in through the nameplate and holds it.
    pub fn new(side: impl Into<String>, allocated: bool, closed: Option<Mood>) -> MemberSnapshot {
        MemberSnapshot { side: side.into(), allocated, claimed: true, released: false, closed }
    }
}

/// A snapshot that cannot be restored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid rendezvous snapshot: {0}")]
pub struct SnapshotError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_close_finishes_the_exchange_once() {
        let mut server = Rendezvous::default();
        let at = Timestamp::EPOCH;
        let channel = server.allocate_nameplate(at, "app", "s1").unwrap();
        let mailbox = server.claim(at, "app", channel, "s1").unwrap();
        server.claim(at, "app", channel, "s2").unwrap();
        server.close(at, "app", &mailbox, "s1", Mood::Happy).unwrap();
        assert!(server.finished().is_empty(), "one side is still there");
        server.close(at, "app", &mailbox, "s2", Mood::Scary).unwrap();
        let finished = server.finished().to_vec();
        assert_eq!(finished.len(), 1);
        assert_eq!((finished[0].appid.as_str(), &finished[0].moods[..]), ("app", &[Mood::Happy, Mood::Scary][..]));
        // Told once: the next operation starts afresh.
        server.close(at, "app", &mailbox, "s2", Mood::Scary).unwrap();
        assert!(server.finished().is_empty());
    }
    use crate::wire::{AllocateRequest, CloseRequest, FetchRequest, JoinRequest, PostRequest};

    const APP: &str = "app";

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn mailbox_ids_are_base32_of_eight_random_bytes() {
        assert_eq!(base32([0; 8]), "aaaaaaaaaaaaa");
        assert_eq!(base32([0xff; 8]), "7777777777776");
        // As Python's base64.b32encode(bytes(range(8))).lower().strip("=").
        assert_eq!(base32([0, 1, 2, 3, 4, 5, 6, 7]), "aaaqeayeaudao");
    }

    /// Allocates for "a" and joins as "b": the nameplate and its mailbox.
    fn paired(server: &mut Rendezvous) -> (ChannelId, MailboxId) {
        let Ok(Response::Allocated(a)) = server.handle(at(0), &Request::Allocate(AllocateRequest::new(APP, "a")))
        else {
            panic!()
        };
        let join = Request::Join(JoinRequest::new(APP, "b", a.channel, false));
        let Ok(Response::Joined(joined)) = server.handle(at(1), &join) else { panic!() };
        assert_eq!(joined.mailbox, a.mailbox);
        (a.channel, a.mailbox.unwrap())
    }

    /// A code used by two sides is spent: its number leads to its mailbox
    /// while the mailbox lives and for the retention after, so whoever took
    /// the second seat cannot re-create it and wait there for the real
    /// receiver (a second guess at the same code).
    #[test]
    fn a_nameplate_two_sides_used_stays_with_its_mailbox() {
        let mut server = Rendezvous::default();
        let (channel, mailbox) = paired(&mut server);
        let post = |side: &str| {
            let mut post = PostRequest::new(APP, side, channel, "pake", "x");
            post.mailbox = Some(mailbox.clone());
            Request::Post(post)
        };
        server.handle(at(2), &post("a")).unwrap();
        server.handle(at(3), &post("b")).unwrap();
        assert_eq!(server.effects()[0].kind, EffectKind::Released);
        assert_eq!(server.mailbox_of(APP, channel), Some(&mailbox), "both know the mailbox; the number stays");
        let third = |create| Request::Join(JoinRequest::new(APP, "c", channel, create));
        assert_eq!(server.handle(at(4), &third(false)).unwrap_err().code, ErrorCode::Crowded);
        assert_eq!(server.handle(at(4), &third(true)).unwrap_err().code, ErrorCode::Crowded);
        assert_eq!(server.claim(at(4), APP, channel, "c").unwrap_err().code, ErrorCode::Crowded);
        let others: Vec<ChannelId> = (1..=9).filter(|n| *n != channel.get()).filter_map(ChannelId::new).collect();
        server.reserve_nameplates(APP, others);
        let next = server.allocate_nameplate(at(4), APP, "d").unwrap();
        assert!(next.get() >= 10, "the spent number was handed out again");
        // Both close: the mailbox is emptied and kept for the retention.
        for side in ["a", "b"] {
            let close =
                CloseRequest { appid: APP.into(), side: side.into(), channel, mailbox: None, mood: Mood::Happy };
            let close = Request::Close(close).with_mailbox(Some(mailbox.clone()));
            assert_eq!(server.handle(at(5), &close), Ok(Response::Closed(CloseResponse { deleted: false })));
        }
        assert_eq!(server.effects().last().map(|e| e.kind), Some(EffectKind::LogDropped));
        assert!(server.messages_after(APP, &mailbox, 0).is_empty());
        assert!(server.mailbox_snapshot(APP, &mailbox).unwrap().is_tombstone());
        assert_eq!(server.handle(at(6), &third(true)).unwrap_err().code, ErrorCode::Crowded);
        let retention = server.config().burned_retention.as_millis() as u64;
        assert_eq!(server.expire(at(5 + retention - 1)), Vec::new());
        assert_eq!(server.expire(at(5 + retention)), vec![(APP.to_string(), mailbox)]);
        assert!(!server.contains(APP, channel), "after the retention the number is free");
    }

    #[test]
    fn finished_exchanges_kept_for_the_retention_leave_the_apps_cap_free() {
        let config = RendezvousConfig { max_channels_per_app: 2, ..RendezvousConfig::default() };
        let mut server = Rendezvous::new(config).with_seed([7; 32]);
        // Three whole exchanges, one after the other: each leaves a spent
        // channel behind, and the next still gets a channel.
        for round in 0..3u64 {
            let (a, b) = (format!("a{round}"), format!("b{round}"));
            let allocate = Request::Allocate(AllocateRequest::new(APP, &a));
            let Ok(Response::Allocated(allocated)) = server.handle(at(round), &allocate) else {
                panic!("round {round}: no channel")
            };
            let channel = allocated.channel;
            server.handle(at(round), &Request::Join(JoinRequest::new(APP, &b, channel, false))).unwrap();
            for side in [&a, &b] {
                let close =
                    CloseRequest { appid: APP.into(), side: side.clone(), channel, mailbox: None, mood: Mood::Happy };
                server.handle(at(round), &Request::Close(close)).unwrap();
            }
        }
        assert_eq!(server.stats().tombstones, 3);
        // Two open channels fill the cap, tombstones or not.
        let Ok(Response::Allocated(c)) = server.handle(at(9), &Request::Allocate(AllocateRequest::new(APP, "c")))
        else {
            panic!("no channel for c")
        };
        server.handle(at(9), &Request::Allocate(AllocateRequest::new(APP, "d"))).unwrap();
        let refused = server.handle(at(9), &Request::Allocate(AllocateRequest::new(APP, "e"))).unwrap_err();
        assert_eq!(refused.code, ErrorCode::TooManyChannels);
        // Restored from a snapshot, the tombstones are told apart again.
        let mut restored = Rendezvous::restore(server.config().clone(), server.snapshot()).unwrap();
        let refused = restored.handle(at(9), &Request::Allocate(AllocateRequest::new(APP, "e"))).unwrap_err();
        assert_eq!(refused.code, ErrorCode::TooManyChannels);
        let close =
            CloseRequest { appid: APP.into(), side: "c".into(), channel: c.channel, mailbox: None, mood: Mood::Lonely };
        restored.handle(at(9), &Request::Close(close)).unwrap();
        restored.handle(at(9), &Request::Allocate(AllocateRequest::new(APP, "e"))).unwrap();
    }

    #[test]
    fn a_lone_initiator_naming_its_mailbox_keeps_the_nameplate() {
        let mut server = Rendezvous::default();
        let Ok(Response::Allocated(a)) = server.handle(at(0), &Request::Allocate(AllocateRequest::new(APP, "a")))
        else {
            panic!()
        };
        let fetch = Request::Fetch(FetchRequest::new(APP, "a", a.channel, 0, 0)).with_mailbox(a.mailbox.clone());
        server.handle(at(1), &fetch).unwrap();
        assert!(server.contains(APP, a.channel), "the receiver has yet to use the code");
    }

    /// A side alone in its mailbox released the number (the mailbox
    /// protocol allows it), and its peer came in by the mailbox id.
    fn released_alone_then_opened(server: &mut Rendezvous) -> (ChannelId, MailboxId) {
        let channel = server.allocate_nameplate(at(0), APP, "a").unwrap();
        let mailbox = server.claim(at(0), APP, channel, "a").unwrap();
        server.release(at(1), APP, channel, "a").unwrap();
        assert!(!server.contains(APP, channel), "one side, released: the number is free");
        server.open(at(2), APP, &mailbox, "b").unwrap();
        (channel, mailbox)
    }

    #[test]
    fn a_burn_after_release_puts_the_nameplate_back_if_free() {
        let mut server = Rendezvous::default();
        let (channel, mailbox) = released_alone_then_opened(&mut server);
        server.close(at(3), APP, &mailbox, "a", Mood::Scary).unwrap();
        assert!(server.contains(APP, channel));
        let late = Request::Join(JoinRequest::new(APP, "c", channel, false));
        assert_eq!(server.handle(at(4), &late).unwrap_err().code, ErrorCode::Burned);
    }

    #[test]
    fn reserved_nameplates_are_never_allocated_nor_taken_back_by_a_burn() {
        let mut server = Rendezvous::default();
        let (channel, mailbox) = released_alone_then_opened(&mut server);
        // Another mailbox, not held by this partial view, took the number since.
        server.reserve_nameplates(APP, [channel]);
        server.close(at(3), APP, &mailbox, "a", Mood::Scary).unwrap();
        assert!(!server.contains(APP, channel), "the burn took a reserved number back");
        let all_but_two: Vec<ChannelId> = (1..=99).filter(|n| *n != 5 && *n != 77).filter_map(ChannelId::new).collect();
        server.reserve_nameplates(APP, all_but_two);
        let mut given: Vec<u32> =
            ["x", "y"].iter().map(|side| server.allocate_nameplate(at(4), APP, side).unwrap().get()).collect();
        given.sort_unstable();
        assert_eq!(given, [5, 77]);
        let next = server.allocate_nameplate(at(4), APP, "z").unwrap().get();
        assert!((100..=999).contains(&next), "{next}");
    }

    #[test]
    fn mailbox_protocol_refusals() {
        let mut server = Rendezvous::default();
        let nameplate = server.allocate_nameplate(at(0), APP, "a").unwrap();
        let mailbox = server.claim(at(0), APP, nameplate, "a").unwrap();
        server.claim(at(1), APP, nameplate, "b").unwrap();
        assert_eq!(server.claim(at(1), APP, nameplate, "c").unwrap_err().code, ErrorCode::Crowded);
        assert_eq!(server.open(at(1), APP, &mailbox, "c").unwrap_err().code, ErrorCode::Crowded);
        server.release(at(2), APP, nameplate, "b").unwrap();
        assert_eq!(server.claim(at(2), APP, nameplate, "b").unwrap_err().code, ErrorCode::Reclaimed);
        // Every listener, the sender included, sees each message; a repeat is not stored twice.
        assert_eq!(server.add(at(3), APP, &mailbox, "a", "pake", "aa", Some("1".into())), Ok(1));
        assert_eq!(server.add(at(3), APP, &mailbox, "a", "pake", "aa", Some("1".into())), Ok(1));
        let replay = server.open(at(4), APP, &mailbox, "b").unwrap();
        assert_eq!(replay.len(), 1);
        assert_eq!((replay[0].server_rx, replay[0].id.as_deref()), (Some(at(3)), Some("1")));
        server.close(at(5), APP, &mailbox, "a", Mood::Happy).unwrap();
        server.close(at(5), APP, &mailbox, "b", Mood::Happy).unwrap();
        // Kept, emptied, for the retention: the code was used.
        assert_eq!(server.claim(at(6), APP, nameplate, "c").unwrap_err().code, ErrorCode::Crowded);
        assert_eq!(server.stats().messages, 0);
        server.expire(at(5) + server.config().burned_retention);
        assert!(!server.contains_mailbox(APP, &mailbox));
        assert_eq!(server.effects().last().map(|e| e.kind), Some(EffectKind::Deleted));
        assert_eq!(server.stats(), RendezvousStats::default());
    }

    #[test]
    fn both_front_ends_share_nameplates() {
        let mut server = Rendezvous::default();
        let mut taken = std::collections::BTreeSet::new();
        for i in 0..9 {
            let number = if i % 2 == 0 {
                server.allocate_nameplate(at(0), APP, &format!("w{i}")).unwrap()
            } else {
                let allocate = Request::Allocate(AllocateRequest::new(APP, format!("h{i}")));
                let Ok(Response::Allocated(a)) = server.handle(at(0), &allocate) else { panic!() };
                a.channel
            };
            assert!(taken.insert(number.get()), "nameplate {number} handed out twice");
        }
        assert_eq!(taken, (1..=9).collect());
        let tenth = server.allocate_nameplate(at(0), APP, "w10").unwrap();
        assert!(tenth.get() >= 10, "one-digit nameplates are all in use");
    }

    #[test]
    fn version_one_snapshots_restore_as_mailboxes_holding_their_nameplates() {
        let channel = ChannelId::new(7).unwrap();
        let v1 = r#"{"format":"wormhole-sync/rendezvous","version":1,"channels":[{"appid":"app","channel":7,
            "members":[{"side":"a","allocated":true,"closed":null}],
            "messages":[{"seq":1,"side":"a","phase":"pake","body":"x"}],"burned":false,"last_activity":5}]}"#;
        let snapshot = RendezvousSnapshot::from_json(v1.as_bytes()).unwrap();
        let mut server = Rendezvous::restore(RendezvousConfig::default(), snapshot).unwrap();
        assert!(server.contains(APP, channel));
        let join = Request::Join(JoinRequest::new(APP, "b", channel, false));
        let Ok(Response::Joined(joined)) = server.handle(at(6), &join) else { panic!() };
        assert_eq!(joined.mailbox.as_ref().map(MailboxId::as_str), Some("c7"));
        assert_eq!(joined.log.unwrap().messages.len(), 1);
        let again = Rendezvous::restore(RendezvousConfig::default(), server.snapshot()).unwrap();
        assert_eq!(again.snapshot(), server.snapshot());
    }
}
