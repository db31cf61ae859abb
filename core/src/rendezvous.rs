//! The rendezvous server's logic as a pure state machine: channels per
//! application id, at most two sides each, ordered message logs, closing,
//! expiry and limits. The server crate binds it to HTTP and storage; the
//! simulation harness drives it directly.
//!
//! Long-polling is the caller's job: a fetch answers at once, and the caller
//! re-runs it when a post or close touches the channel (see
//! [`Request::wakes_waiters`]) or the wait ends.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::code::{ChannelId, MAX_CHANNEL_ID};
use crate::time::Timestamp;
use crate::wire::{
    validate_appid, validate_phase, validate_side, AllocateResponse, CloseResponse, ClosedSide, ErrorCode,
    JoinResponse, Log, Message, Mood, PostResponse, Request, Response, WireError,
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
    /// A channel with no request for this long is deleted and its id freed.
    pub channel_expiry: Duration,
    /// Largest message body, in bytes of its JSON string.
    pub max_message_bytes: usize,
    /// Most messages one channel holds.
    pub max_messages_per_channel: usize,
    /// Most channels one application id holds at once.
    pub max_channels_per_app: usize,
    /// Most channels the server holds at once.
    pub max_channels: usize,
    /// Longest long-poll wait the server grants.
    pub max_wait: Duration,
    /// How long a burned channel stays after its members have all closed:
    /// its id is not allocated again meanwhile, and a late join with the
    /// old code learns `burned` instead of `unknown-channel`.
    pub burned_retention: Duration,
}

impl Default for RendezvousConfig {
    /// Three days' expiry (the "days" use case), 64 KiB messages, 16
    /// messages per channel, 10,000 channels per app, a million in all,
    /// 60 s long-polls, burned channels kept 5 minutes.
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
    allocated: bool,
    closed: Option<Mood>,
}

#[derive(Clone, Debug, Default)]
struct Channel {
    members: Vec<Member>,
    messages: Vec<Message>,
    burned: bool,
    last_activity: Option<Timestamp>,
}

impl Channel {
    fn member(&mut self, side: &str) -> Option<&mut Member> {
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

    /// A burned channel whose members all left: kept, empty, only so its id
    /// stays out of allocation and late joins learn `burned`.
    fn is_tombstone(&self) -> bool {
        self.burned && self.all_closed()
    }
}

#[derive(Clone, Debug, Default)]
struct App {
    channels: BTreeMap<u32, Channel>,
    /// Which channel each allocating side got, so a retried allocate is idempotent.
    allocated_by: HashMap<String, u32>,
}

impl App {
    /// An id no channel of this app uses, drawn uniformly from the free ids
    /// of the shortest length that has any (1-9, then 10-99, ...): codes
    /// stay short, and the id that just ended is not the one handed out
    /// next, so a stale code rarely reaches a stranger's channel.
    fn random_free_id(&self, rng: &mut ChaCha20Rng) -> Option<u32> {
        let mut low = 1u32;
        while low <= MAX_CHANNEL_ID {
            let high = low.saturating_mul(10).saturating_sub(1).min(MAX_CHANNEL_ID);
            let used = self.channels.range(low..=high).count() as u64;
            let free = u64::from(high - low + 1) - used;
            if free > 0 {
                // The pick-th free id: step over every used id at or below the candidate.
                let pick = rng.next_u64() % free;
                let mut candidate = u64::from(low) + pick;
                for &id in self.channels.range(low..=high).map(|(id, _)| id) {
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
}

/// Counts for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RendezvousStats {
    /// Application ids with at least one channel.
    pub apps: usize,
    /// Open channels.
    pub channels: usize,
    /// Stored messages.
    pub messages: usize,
}

/// Where a sweep in steps ([`Rendezvous::expire_step`]) continues.
#[derive(Clone, Debug, Default)]
pub struct SweepCursor(Option<(String, u32)>);

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
/// // Two different one-digit ids, drawn at random.
/// assert_ne!(a.channel, b.channel);
/// assert!(a.channel.get() <= 9 && b.channel.get() <= 9);
/// ```
#[derive(Clone, Debug)]
pub struct Rendezvous {
    config: RendezvousConfig,
    apps: BTreeMap<String, App>,
    channels: usize,
    messages: usize,
    /// Draws channel ids; seeded by the caller (the core has no randomness of its own).
    rng: ChaCha20Rng,
}

impl Default for Rendezvous {
    fn default() -> Self {
        Rendezvous::new(RendezvousConfig::default())
    }
}

fn err(code: ErrorCode, message: &str) -> WireError {
    WireError::new(code, message)
}

impl Rendezvous {
    /// An empty rendezvous with these limits. Channel ids are drawn from a
    /// fixed seed until [`with_seed`](Self::with_seed) gives another: a
    /// server must seed it from the operating system, so the ids it hands
    /// out cannot be predicted.
    pub fn new(config: RendezvousConfig) -> Rendezvous {
        Rendezvous { config, apps: BTreeMap::new(), channels: 0, messages: 0, rng: ChaCha20Rng::from_seed([0; 32]) }
    }

    /// Seeds the generator that draws channel ids.
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

    /// Counts of apps, channels and messages.
    pub fn stats(&self) -> RendezvousStats {
        RendezvousStats { apps: self.apps.len(), channels: self.channels, messages: self.messages }
    }

    /// Handles one request at `now`. Every request is idempotent: a retry
    /// after a lost answer gets the same answer and changes nothing more.
    pub fn handle(&mut self, now: Timestamp, request: &Request) -> Result<Response, WireError> {
        request.validate()?;
        if let Some(channel) = request.channel() {
            self.expire_channel_if_idle(request.appid(), channel, now);
        }
        match request {
            Request::Allocate(r) => self.allocate(now, &r.appid, &r.side),
            Request::Join(r) => self.join(now, &r.appid, r.channel, &r.side, r.create),
            Request::Post(r) => {
                let seq = self.post(now, &r.appid, r.channel, &r.side, &r.phase, &r.body)?;
                let log = match r.after {
                    Some(after) => Some(self.member_channel(&r.appid, r.channel, &r.side)?.log(after)),
                    None => None,
                };
                Ok(Response::Posted(PostResponse { seq, log }))
            }
            Request::Fetch(r) => self.fetch(now, &r.appid, r.channel, &r.side, r.after),
            Request::Close(r) => self.close(now, &r.appid, r.channel, &r.side, r.mood),
        }
    }

    fn check_capacity(&self, appid: &str) -> Result<(), WireError> {
        if self.channels >= self.config.max_channels {
            return Err(err(ErrorCode::ServerFull, "the server holds as many channels as it allows"));
        }
        let in_app = self.apps.get(appid).map_or(0, |a| a.channels.len());
        if in_app >= self.config.max_channels_per_app {
            return Err(err(ErrorCode::TooManyChannels, "this application holds as many channels as allowed"));
        }
        Ok(())
    }

    fn create(&mut self, now: Timestamp, appid: &str, id: u32, side: &str, allocated: bool) {
        let app = self.apps.entry(appid.to_string()).or_default();
        let member = Member { side: side.to_string(), allocated, closed: None };
        let channel = Channel { members: vec![member], last_activity: Some(now), ..Channel::default() };
        app.channels.insert(id, channel);
        if allocated {
            app.allocated_by.insert(side.to_string(), id);
        }
        self.channels += 1;
    }

    fn allocate(&mut self, now: Timestamp, appid: &str, side: &str) -> Result<Response, WireError> {
        if let Some(app) = self.apps.get_mut(appid) {
            if let Some(&id) = app.allocated_by.get(side) {
                match (app.channels.get_mut(&id), ChannelId::new(id)) {
                    (Some(channel), Some(channel_id)) => {
                        channel.last_activity = Some(now);
                        return Ok(Response::Allocated(AllocateResponse { channel: channel_id }));
                    }
                    // A stale index entry (never expected): forget it and allocate afresh.
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
            .random_free_id(&mut self.rng)
            .and_then(ChannelId::new)
            .ok_or_else(|| err(ErrorCode::TooManyChannels, "no channel id is free for this application"))?;
        let id = channel.get();
        self.create(now, appid, id, side, true);
        Ok(Response::Allocated(AllocateResponse { channel }))
    }

    fn join(
        &mut self,
        now: Timestamp,
        appid: &str,
        id: ChannelId,
        side: &str,
        create: bool,
    ) -> Result<Response, WireError> {
        let existing = self.apps.get_mut(appid).and_then(|a| a.channels.get_mut(&id.get()));
        let Some(channel) = existing else {
            if !create {
                return Err(err(ErrorCode::UnknownChannel, "no such channel for this application"));
            }
            self.check_capacity(appid)?;
            self.create(now, appid, id.get(), side, false);
            return Ok(Response::Joined(JoinResponse { sides: 1, log: Some(Log::default()) }));
        };
        if let Some(member) = channel.member(side) {
            if member.closed.is_some() {
                return Err(err(ErrorCode::SideClosed, "this side already closed the channel"));
            }
        } else if channel.burned {
            return Err(err(ErrorCode::Burned, "the channel was closed after a wrong code"));
        } else if channel.members.len() >= 2 {
            return Err(err(ErrorCode::Crowded, "two other sides already hold this channel"));
        } else {
            channel.members.push(Member { side: side.to_string(), allocated: false, closed: None });
        }
        channel.last_activity = Some(now);
        let sides = u8::try_from(channel.members.len()).expect("at most two members");
        Ok(Response::Joined(JoinResponse { sides, log: Some(channel.log(0)) }))
    }

    /// The channel and the caller's membership, for operations of members only.
    fn member_channel(&mut self, appid: &str, id: ChannelId, side: &str) -> Result<&mut Channel, WireError> {
        let channel = self
            .apps
            .get_mut(appid)
            .and_then(|a| a.channels.get_mut(&id.get()))
            .ok_or_else(|| err(ErrorCode::UnknownChannel, "no such channel for this application"))?;
        if channel.member(side).is_none() {
            return Err(err(ErrorCode::NotJoined, "this side has not joined the channel"));
        }
        Ok(channel)
    }

    #[allow(clippy::too_many_arguments)]
    fn post(
        &mut self,
        now: Timestamp,
        appid: &str,
        id: ChannelId,
        side: &str,
        phase: &str,
        body: &str,
    ) -> Result<u64, WireError> {
        let (max_bytes, max_messages) = (self.config.max_message_bytes, self.config.max_messages_per_channel);
        let channel = self.member_channel(appid, id, side)?;
        if channel.member(side).is_some_and(|m| m.closed.is_some()) {
            return Err(err(ErrorCode::SideClosed, "this side already closed the channel"));
        }
        if channel.burned {
            return Err(err(ErrorCode::Burned, "the channel was closed after a wrong code"));
        }
        if body.len() > max_bytes {
            return Err(err(ErrorCode::MessageTooLarge, "the message body is larger than this server allows"));
        }
        channel.last_activity = Some(now);
        if let Some(existing) = channel.messages.iter().find(|m| m.side == side && m.phase == phase) {
            return if existing.body == body {
                Ok(existing.seq)
            } else {
                Err(err(ErrorCode::Conflict, "this side already posted a different message in this phase"))
            };
        }
        if channel.messages.len() >= max_messages {
            return Err(err(ErrorCode::TooManyMessages, "the channel holds as many messages as allowed"));
        }
        let seq = channel.messages.len() as u64 + 1;
        channel.messages.push(Message { seq, side: side.into(), phase: phase.into(), body: body.into() });
        self.messages += 1;
        Ok(seq)
    }

    fn fetch(
        &mut self,
        now: Timestamp,
        appid: &str,
        id: ChannelId,
        side: &str,
        after: u64,
    ) -> Result<Response, WireError> {
        let channel = self.member_channel(appid, id, side)?;
        channel.last_activity = Some(now);
        Ok(Response::Fetched(channel.log(after)))
    }

    fn close(
        &mut self,
        now: Timestamp,
        appid: &str,
        id: ChannelId,
        side: &str,
        mood: Mood,
    ) -> Result<Response, WireError> {
        let Some(channel) = self.apps.get_mut(appid).and_then(|a| a.channels.get_mut(&id.get())) else {
            // Already gone: closing again is a no-op, so retries succeed.
            return Ok(Response::Closed(CloseResponse { deleted: true }));
        };
        let member =
            channel.member(side).ok_or_else(|| err(ErrorCode::NotJoined, "this side has not joined the channel"))?;
        member.closed.get_or_insert(mood);
        let allocated = member.allocated;
        if mood == Mood::Scary {
            channel.burned = true;
        }
        channel.last_activity = Some(now);
        let deleted = channel.all_closed() && !channel.burned;
        if channel.is_tombstone() {
            // Nobody can read the log any more: keep the id, drop the messages.
            self.messages -= std::mem::take(&mut channel.messages).len();
        }
        if allocated {
            // A later allocate by this side gets a fresh channel.
            let app = self.apps.get_mut(appid).expect("the channel exists");
            if app.allocated_by.get(side) == Some(&id.get()) {
                app.allocated_by.remove(side);
            }
        }
        if deleted {
            self.delete(appid, id.get());
        }
        Ok(Response::Closed(CloseResponse { deleted }))
    }

    fn delete(&mut self, appid: &str, id: u32) {
        let Some(app) = self.apps.get_mut(appid) else { return };
        if let Some(channel) = app.channels.remove(&id) {
            self.channels -= 1;
            self.messages -= channel.messages.len();
            for member in channel.members.iter().filter(|m| m.allocated) {
                if app.allocated_by.get(&member.side) == Some(&id) {
                    app.allocated_by.remove(&member.side);
                }
            }
        }
        if app.channels.is_empty() {
            self.apps.remove(appid);
        }
    }

    /// When `channel` is deleted if nothing touches it first.
    fn expires_at(&self, channel: &Channel) -> Timestamp {
        let keep = if channel.is_tombstone() { self.config.burned_retention } else { self.config.channel_expiry };
        channel.last_activity.unwrap_or(Timestamp::EPOCH) + keep
    }

    fn is_idle(&self, channel: &Channel, now: Timestamp) -> bool {
        self.expires_at(channel) <= now
    }

    fn expire_channel_if_idle(&mut self, appid: &str, id: ChannelId, now: Timestamp) {
        let idle = self.apps.get(appid).and_then(|a| a.channels.get(&id.get())).is_some_and(|c| self.is_idle(c, now));
        if idle {
            self.delete(appid, id.get());
        }
    }

    /// Deletes every channel idle for the expiry time; returns which.
    pub fn expire(&mut self, now: Timestamp) -> Vec<(String, ChannelId)> {
        let idle: Vec<(String, u32)> = self
            .apps
            .iter()
            .flat_map(|(appid, app)| {
                app.channels.iter().filter(|(_, c)| self.is_idle(c, now)).map(move |(&id, _)| (appid.clone(), id))
            })
            .collect();
        for (appid, id) in &idle {
            self.delete(appid, *id);
        }
        self.shrink_indexes();
        idle.into_iter().map(|(appid, id)| (appid, ChannelId::new(id).expect("ids in use are valid"))).collect()
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

    /// Expires idle channels among the next `limit` channels (in appid,
    /// then id order) from `cursor`, and moves the cursor past them: a sweep
    /// in steps, so a server need not hold its state across a scan of every
    /// channel. Returns the deleted channels and whether the scan reached
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
    ) -> (Vec<(String, ChannelId)>, bool) {
        let start = cursor.0.take();
        let (from_app, from_id) = start.map_or((String::new(), 0), |(a, i)| (a, i));
        let mut seen = 0;
        let mut idle = Vec::new();
        let mut next = None;
        'apps: for (appid, app) in self.apps.range(from_app.clone()..) {
            let first_id = if *appid == from_app { from_id } else { 0 };
            for (&id, channel) in app.channels.range(first_id..) {
                if seen == limit {
                    next = Some((appid.clone(), id));
                    break 'apps;
                }
                seen += 1;
                if self.is_idle(channel, now) {
                    idle.push((appid.clone(), id));
                }
            }
        }
        for (appid, id) in &idle {
            self.delete(appid, *id);
        }
        let done = next.is_none();
        cursor.0 = next;
        let expired = idle.into_iter().map(|(appid, id)| (appid, ChannelId::new(id).expect("ids in use are valid")));
        (expired.collect(), done)
    }

    /// When the next channel will have been idle for the expiry time.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.apps.values().flat_map(|a| a.channels.values()).map(|c| self.expires_at(c)).min()
    }

    /// The whole state, for persistence.
    pub fn snapshot(&self) -> RendezvousSnapshot {
        let channels = self
            .apps
            .iter()
            .flat_map(|(appid, app)| app.channels.iter().map(move |(&id, c)| snapshot_of(appid, id, c)))
            .collect();
        RendezvousSnapshot { format: SNAPSHOT_FORMAT.into(), version: SNAPSHOT_VERSION, channels }
    }

    /// Whether a channel exists.
    pub fn contains(&self, appid: &str, channel: ChannelId) -> bool {
        self.apps.get(appid).is_some_and(|a| a.channels.contains_key(&channel.get()))
    }

    /// Whether any channel of `appid` exists.
    pub fn has_app(&self, appid: &str) -> bool {
        self.apps.contains_key(appid)
    }

    /// Whether `side` already posted in `phase` of this channel (a repeated
    /// post stores nothing new).
    pub fn has_posted(&self, appid: &str, channel: ChannelId, side: &str, phase: &str) -> bool {
        let found = self.apps.get(appid).and_then(|a| a.channels.get(&channel.get()));
        found.is_some_and(|c| c.messages.iter().any(|m| m.side == side && m.phase == phase))
    }

    /// The bytes of message bodies a channel stores (0 if it does not exist).
    pub fn stored_bytes(&self, appid: &str, channel: ChannelId) -> u64 {
        let found = self.apps.get(appid).and_then(|a| a.channels.get(&channel.get()));
        found.map_or(0, |c| c.messages.iter().map(|m| m.body.len() as u64).sum())
    }

    /// One channel's state (for persisting it after a change), if it exists.
    pub fn channel_snapshot(&self, appid: &str, channel: ChannelId) -> Option<ChannelSnapshot> {
        let found = self.apps.get(appid)?.channels.get(&channel.get())?;
        Some(snapshot_of(appid, channel.get(), found))
    }

    /// Rebuilds a rendezvous from a snapshot, checking its invariants.
    pub fn restore(config: RendezvousConfig, snapshot: RendezvousSnapshot) -> Result<Rendezvous, SnapshotError> {
        let bad = |why: String| SnapshotError(why);
        if snapshot.format != SNAPSHOT_FORMAT || snapshot.version != SNAPSHOT_VERSION {
            return Err(bad("not a version 1 rendezvous snapshot".into()));
        }
        let mut rendezvous = Rendezvous::new(config);
        for c in snapshot.channels {
            let at = format!("channel {} of {:?}", c.channel, c.appid);
            validate_appid(&c.appid).map_err(|e| bad(format!("{at}: {e}")))?;
            if c.members.is_empty() || c.members.len() > 2 {
                return Err(bad(format!("{at}: must have one or two members")));
            }
            if c.members.len() == 2 && c.members[0].side == c.members[1].side {
                return Err(bad(format!("{at}: duplicate member")));
            }
            for m in &c.members {
                validate_side(&m.side).map_err(|e| bad(format!("{at}: {e}")))?;
            }
            for (i, message) in c.messages.iter().enumerate() {
                let in_order = message.seq == i as u64 + 1;
                let from_member = c.members.iter().any(|m| m.side == message.side);
                if !in_order || !from_member || validate_phase(&message.phase).is_err() {
                    return Err(bad(format!("{at}: message {} is out of order or invalid", i + 1)));
                }
            }
            let app = rendezvous.apps.entry(c.appid.clone()).or_default();
            if app.channels.contains_key(&c.channel.get()) {
                return Err(bad(format!("{at}: appears twice")));
            }
            for m in c.members.iter().filter(|m| m.allocated && m.closed.is_none()) {
                app.allocated_by.insert(m.side.clone(), c.channel.get());
            }
            rendezvous.channels += 1;
            rendezvous.messages += c.messages.len();
            let members = c
                .members
                .into_iter()
                .map(|m| Member { side: m.side, allocated: m.allocated, closed: m.closed })
                .collect();
            let channel =
                Channel { members, messages: c.messages, burned: c.burned, last_activity: Some(c.last_activity) };
            app.channels.insert(c.channel.get(), channel);
        }
        Ok(rendezvous)
    }
}

fn snapshot_of(appid: &str, id: u32, channel: &Channel) -> ChannelSnapshot {
    ChannelSnapshot {
        appid: appid.to_string(),
        channel: ChannelId::new(id).expect("ids in use are valid"),
        members: channel
            .members
            .iter()
            .map(|m| MemberSnapshot { side: m.side.clone(), allocated: m.allocated, closed: m.closed })
            .collect(),
        messages: channel.messages.clone(),
        burned: channel.burned,
        last_activity: channel.last_activity.unwrap_or(Timestamp::EPOCH),
    }
}

impl RendezvousSnapshot {
    /// A snapshot of these channels (for loading them from storage).
    pub fn new(channels: Vec<ChannelSnapshot>) -> RendezvousSnapshot {
        RendezvousSnapshot { format: SNAPSHOT_FORMAT.into(), version: SNAPSHOT_VERSION, channels }
    }
}

const SNAPSHOT_FORMAT: &str = "wormhole-sync/rendezvous";
const SNAPSHOT_VERSION: u32 = 1;

/// A restorable copy of a rendezvous's state (serde-serializable).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RendezvousSnapshot {
    format: String,
    version: u32,
    /// Every open channel.
    pub channels: Vec<ChannelSnapshot>,
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

/// One channel in a snapshot.
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

/// One side of a channel in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSnapshot {
    /// The side id.
    pub side: String,
    /// Whether this side allocated the channel.
    pub allocated: bool,
    /// Its mood, once closed.
    pub closed: Option<Mood>,
}

/// A snapshot that cannot be restored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid rendezvous snapshot: {0}")]
pub struct SnapshotError(pub String);
