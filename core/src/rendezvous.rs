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

use serde::{Deserialize, Serialize};

use crate::code::ChannelId;
use crate::time::Timestamp;
use crate::wire::{
    validate_appid, validate_phase, validate_side, AllocateResponse, CloseResponse, ClosedSide, ErrorCode,
    FetchResponse, JoinResponse, Message, Mood, PostResponse, Request, Response, WireError,
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
}

impl Default for RendezvousConfig {
    /// Three days' expiry (the "days" use case), 64 KiB messages, 16
    /// messages per channel, 10,000 channels per app, a million in all,
    /// 60 s long-polls.
    fn default() -> Self {
        RendezvousConfig {
            channel_expiry: Duration::from_secs(3 * 24 * 3600),
            max_message_bytes: 64 * 1024,
            max_messages_per_channel: 16,
            max_channels_per_app: 10_000,
            max_channels: 1_000_000,
            max_wait: Duration::from_secs(60),
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
}

#[derive(Clone, Debug, Default)]
struct App {
    channels: BTreeMap<u32, Channel>,
    /// Which channel each allocating side got, so a retried allocate is idempotent.
    allocated_by: HashMap<String, u32>,
}

impl App {
    /// The smallest id no channel of this app uses.
    fn smallest_free_id(&self) -> u32 {
        let mut candidate = 1;
        for &id in self.channels.keys() {
            if id != candidate {
                break;
            }
            candidate += 1;
        }
        candidate
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

/// The rendezvous state machine.
///
/// ```
/// use wormhole_sync_core::rendezvous::Rendezvous;
/// use wormhole_sync_core::wire::{AllocateRequest, Request, Response};
/// use wormhole_sync_core::Timestamp;
///
/// let mut server = Rendezvous::default();
/// let now = Timestamp::from_millis(0);
/// let alloc = |side: &str| Request::Allocate(AllocateRequest { appid: "app".into(), side: side.into() });
/// let Ok(Response::Allocated(a)) = server.handle(now, &alloc("s1")) else { panic!() };
/// let Ok(Response::Allocated(b)) = server.handle(now, &alloc("s2")) else { panic!() };
/// assert_eq!((a.channel.get(), b.channel.get()), (1, 2));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Rendezvous {
    config: RendezvousConfig,
    apps: BTreeMap<String, App>,
    channels: usize,
    messages: usize,
}

fn err(code: ErrorCode, message: &str) -> WireError {
    WireError::new(code, message)
}

impl Rendezvous {
    /// An empty rendezvous with these limits.
    pub fn new(config: RendezvousConfig) -> Rendezvous {
        Rendezvous { config, ..Rendezvous::default() }
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
            Request::Post(r) => self.post(now, &r.appid, r.channel, &r.side, &r.phase, &r.body),
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
        let id = self.apps.get(appid).map_or(1, App::smallest_free_id);
        let channel = ChannelId::new(id)
            .ok_or_else(|| err(ErrorCode::TooManyChannels, "no channel id is free for this application"))?;
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
            return Ok(Response::Joined(JoinResponse { sides: 1 }));
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
        Ok(Response::Joined(JoinResponse { sides }))
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
    ) -> Result<Response, WireError> {
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
                Ok(Response::Posted(PostResponse { seq: existing.seq }))
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
        Ok(Response::Posted(PostResponse { seq }))
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
        let skip = usize::try_from(after).unwrap_or(usize::MAX);
        let messages = channel.messages.iter().skip(skip).cloned().collect();
        let closed = channel
            .members
            .iter()
            .filter_map(|m| m.closed.map(|mood| ClosedSide { side: m.side.clone(), mood }))
            .collect();
        Ok(Response::Fetched(FetchResponse { messages, closed }))
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
        let deleted = channel.members.iter().all(|m| m.closed.is_some());
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

    fn is_idle(&self, channel: &Channel, now: Timestamp) -> bool {
        channel.last_activity.is_none_or(|t| t + self.config.channel_expiry <= now)
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
        idle.into_iter().map(|(appid, id)| (appid, ChannelId::new(id).expect("ids in use are valid"))).collect()
    }

    /// When the next channel will have been idle for the expiry time.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.apps
            .values()
            .flat_map(|a| a.channels.values())
            .map(|c| c.last_activity.unwrap_or(Timestamp::EPOCH) + self.config.channel_expiry)
            .min()
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
