//! The whole state as a value, to persist and restore.

use serde::{Deserialize, Serialize};

use crate::code::ChannelId;
use crate::time::Timestamp;
use crate::wire::{validate_appid, validate_phase, validate_side, MailboxId, Message, Mood};

use super::config::RendezvousConfig;
use super::state::{is_tombstone, App, Mailbox, Member};
use super::Rendezvous;

impl Rendezvous {
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
    /// list from version 1), checking its invariants; it draws ids from
    /// `seed` (see [`new`](Rendezvous::new)).
    pub fn restore(
        config: RendezvousConfig,
        snapshot: RendezvousSnapshot,
        seed: [u8; 32],
    ) -> Result<Rendezvous, SnapshotError> {
        let bad = |why: String| SnapshotError(why);
        let mailboxes = match (snapshot.format.as_str(), snapshot.version, snapshot.channels) {
            (SNAPSHOT_FORMAT, SNAPSHOT_VERSION, None) => snapshot.mailboxes,
            (SNAPSHOT_FORMAT, 1, Some(channels)) => channels.into_iter().map(MailboxSnapshot::from_channel).collect(),
            _ => return Err(bad("not a version 1 or 2 rendezvous snapshot".into())),
        };
        let mut rendezvous = Rendezvous::new(config, seed);
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
                if app.nameplates.hold(number.get(), m.mailbox.clone()).is_some() {
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

pub(super) fn member_snapshot(m: &Member) -> MemberSnapshot {
    MemberSnapshot {
        side: m.side.clone(),
        allocated: m.allocated,
        claimed: m.claimed,
        released: m.released,
        closed: m.closed,
    }
}

pub(super) fn snapshot_of(appid: &str, app: &App, id: &MailboxId, mailbox: &Mailbox) -> MailboxSnapshot {
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

pub(super) fn yes() -> bool {
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
