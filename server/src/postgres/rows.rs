//! Rows to the core's snapshots and back.

use tokio_postgres::Row;
use wormhole_sync_core::rendezvous::{MailboxSnapshot, MemberSnapshot};
use wormhole_sync_core::wire::{MailboxId, Message};
use wormhole_sync_core::{ChannelId, Timestamp};

/// The columns [`mailbox`] reads, in its order (of `mailboxes b`).
pub(super) const MAILBOX_COLUMNS: &str =
    "b.appid, b.mailbox, b.instance, b.nameplate, b.holds_nameplate, b.members, b.burned, b.last_activity";

/// The columns [`message`] reads, in its order (of `mailbox_messages m`).
pub(super) const MESSAGE_COLUMNS: &str = "m.seq, m.side, m.phase, m.body, m.server_rx, m.client_id";

pub(super) fn millis(at: Timestamp) -> i64 {
    i64::try_from(at.as_millis()).unwrap_or(i64::MAX)
}

fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_millis(u64::try_from(ms).unwrap_or(0))
}

pub(super) fn nameplate_column(nameplate: ChannelId) -> i32 {
    i32::try_from(nameplate.get()).unwrap_or(i32::MAX)
}

/// A mailbox row (without its messages) and its instance number; `None`
/// for a row this server cannot read (written by a newer one, or by hand).
pub(super) fn mailbox(row: &Row) -> Option<(MailboxSnapshot, u64)> {
    let id = MailboxId::new(row.get::<_, String>(1))?;
    let instance = u64::try_from(row.get::<_, i64>(2)).ok()?;
    let nameplate = match row.get::<_, Option<i32>>(3) {
        None => None,
        Some(n) => Some(ChannelId::new(u32::try_from(n).ok()?)?),
    };
    let members: Vec<MemberSnapshot> = serde_json::from_str(&row.get::<_, String>(5)).ok()?;
    let snapshot = MailboxSnapshot {
        appid: row.get(0),
        mailbox: id,
        nameplate,
        holds_nameplate: row.get(4),
        members,
        messages: Vec::new(),
        burned: row.get(6),
        last_activity: timestamp(row.get(7)),
    };
    Some((snapshot, instance))
}

/// The message in a row of [`MESSAGE_COLUMNS`].
pub(super) fn message(row: &Row) -> Option<Message> {
    message_at(row, 0)
}

/// The message in a row of [`MAILBOX_COLUMNS`] then [`MESSAGE_COLUMNS`]
/// (of a left join: `None` for a mailbox without messages).
pub(super) fn message_after_mailbox(row: &Row) -> Option<Message> {
    message_at(row, MAILBOX_COLUMN_COUNT)
}

/// The columns of [`MAILBOX_COLUMNS`].
const MAILBOX_COLUMN_COUNT: usize = 8;

fn message_at(row: &Row, first: usize) -> Option<Message> {
    let seq = u64::try_from(row.get::<_, Option<i64>>(first)?).unwrap_or(0);
    let server_rx = row.get::<_, Option<i64>>(first + 4).map(timestamp);
    let text = |i: usize| row.get::<_, String>(first + i);
    Some(Message::new(seq, text(1), text(2), text(3)).received(server_rx, row.get(first + 5)))
}

/// The side that allocated the nameplate and may still ask for it again
/// (the core's index of allocations is rebuilt from this).
pub(super) fn allocator(snapshot: &MailboxSnapshot) -> Option<&str> {
    let holds = snapshot.holds_nameplate;
    snapshot.members.iter().find(|m| holds && m.allocated && m.closed.is_none()).map(|m| m.side.as_str())
}
