//! The SQLite schema and the statements the journal runs.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use wormhole_sync_core::rendezvous::{ChannelSnapshot, MemberSnapshot, RendezvousSnapshot};
use wormhole_sync_core::wire::Message;
use wormhole_sync_core::{ChannelId, Timestamp};

use crate::storage::{Change, StorageError};

const SCHEMA_VERSION: i64 = 1;

fn fail(context: &str) -> impl Fn(rusqlite::Error) -> StorageError + '_ {
    move |e| StorageError(format!("{context}: {e}"))
}

/// Opens (or creates) the database, in WAL mode with full syncs, locked to
/// this process.
pub(crate) fn open(path: &Path) -> Result<Connection, StorageError> {
    refuse_non_database(path)?;
    let connection = Connection::open(path).map_err(fail("cannot open the database"))?;
    connection
        .execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA locking_mode = EXCLUSIVE;
             PRAGMA busy_timeout = 2000;",
        )
        .map_err(fail("cannot configure the database"))?;
    let version: i64 =
        connection.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(fail("cannot read the schema"))?;
    if version > SCHEMA_VERSION {
        return Err(StorageError(format!("the database has schema {version}, newer than this server's")));
    }
    connection
        .execute_batch(
            "BEGIN;
             CREATE TABLE IF NOT EXISTS channels (
                 appid TEXT NOT NULL,
                 channel INTEGER NOT NULL,
                 members TEXT NOT NULL,
                 burned INTEGER NOT NULL,
                 last_activity INTEGER NOT NULL,
                 PRIMARY KEY (appid, channel)
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS messages (
                 appid TEXT NOT NULL,
                 channel INTEGER NOT NULL,
                 seq INTEGER NOT NULL,
                 side TEXT NOT NULL,
                 phase TEXT NOT NULL,
                 body TEXT NOT NULL,
                 PRIMARY KEY (appid, channel, seq)
             ) WITHOUT ROWID;
             PRAGMA user_version = 1;
             COMMIT;",
        )
        .map_err(fail("cannot create the schema (is another server using this database?)"))?;
    Ok(connection)
}

/// SQLite takes a file shorter than its 100-byte header for a new, empty
/// database and would write a fresh one over it: a database cut short
/// (a full disk, a bad copy) must be refused instead, not emptied.
fn refuse_non_database(path: &Path) -> Result<(), StorageError> {
    use std::io::Read as _;
    let Ok(mut file) = std::fs::File::open(path) else { return Ok(()) }; // Missing: created.
    let mut header = Vec::with_capacity(16);
    file.by_ref()
        .take(16)
        .read_to_end(&mut header)
        .map_err(|e| StorageError(format!("cannot read the database: {e}")))?;
    let len = file.metadata().map_err(|e| StorageError(format!("cannot read the database: {e}")))?.len();
    if header.is_empty() || (len >= 100 && header == b"SQLite format 3\0") {
        return Ok(());
    }
    Err(StorageError(format!(
        "{} is not an SQLite database ({len} bytes): restore a backup or move it away",
        path.display()
    )))
}

/// Reads every channel and message, after checking the database's
/// structure: a damaged file is refused with the reason, never loaded in
/// part.
pub(crate) fn load(connection: &Connection) -> Result<RendezvousSnapshot, StorageError> {
    let verdict: String =
        connection.query_row("PRAGMA quick_check", [], |row| row.get(0)).map_err(fail("cannot check the database"))?;
    if verdict != "ok" {
        return Err(StorageError(format!("the database is damaged ({verdict}); restore a backup or move it away")));
    }
    let orphans: i64 = connection
        .query_row(
            "SELECT count(*) FROM messages m
             WHERE NOT EXISTS (SELECT 1 FROM channels c WHERE c.appid = m.appid AND c.channel = m.channel)",
            [],
            |row| row.get(0),
        )
        .map_err(fail("cannot check the database"))?;
    if orphans > 0 {
        return Err(StorageError(format!("the database is damaged: {orphans} messages belong to no channel")));
    }
    let mut channels = Vec::new();
    let mut select = connection
        .prepare("SELECT appid, channel, members, burned, last_activity FROM channels ORDER BY appid, channel")
        .map_err(fail("cannot read channels"))?;
    let rows = select
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, u32>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, bool>(3)?,
                row.get::<_, i64>(4)?,
            ))
        })
        .map_err(fail("cannot read channels"))?;
    let mut messages = connection
        .prepare("SELECT seq, side, phase, body FROM messages WHERE appid = ?1 AND channel = ?2 ORDER BY seq")
        .map_err(fail("cannot read messages"))?;
    for row in rows {
        let (appid, channel, members, burned, last_activity) = row.map_err(fail("cannot read a channel"))?;
        let channel = ChannelId::new(channel).ok_or_else(|| StorageError(format!("invalid channel id {channel}")))?;
        let members: Vec<MemberSnapshot> = serde_json::from_str(&members)
            .map_err(|e| StorageError(format!("channel {channel} of {appid:?} has invalid members: {e}")))?;
        let log = messages
            .query_map(params![appid, channel.get()], |row| {
                Ok(Message::new(
                    row.get(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                ))
            })
            .and_then(Iterator::collect)
            .map_err(fail("cannot read messages"))?;
        let last_activity = Timestamp::from_millis(u64::try_from(last_activity).unwrap_or(0));
        channels.push(ChannelSnapshot { appid, channel, members, messages: log, burned, last_activity });
    }
    Ok(RendezvousSnapshot::new(channels))
}

fn millis(at: Timestamp) -> i64 {
    i64::try_from(at.as_millis()).unwrap_or(i64::MAX)
}

/// Whether a commit must be on disk before it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durability {
    /// fsync before returning (`synchronous = FULL`): for anything acknowledged.
    Synced,
    /// No fsync (`synchronous = NORMAL`): in WAL mode the commit stays atomic
    /// and is made durable by the next synced commit, which syncs the log.
    Soft,
}

/// Applies a batch of changes in one transaction.
pub(crate) fn apply<'a>(
    connection: &mut Connection,
    durability: Durability,
    changes: impl Iterator<Item = &'a Change>,
) -> Result<(), StorageError> {
    if durability == Durability::Soft {
        connection.execute_batch("PRAGMA synchronous = NORMAL").map_err(fail("cannot configure"))?;
    }
    let applied = apply_in_transaction(connection, changes);
    if durability == Durability::Soft {
        connection.execute_batch("PRAGMA synchronous = FULL").map_err(fail("cannot configure"))?;
    }
    applied
}

fn apply_in_transaction<'a>(
    connection: &mut Connection,
    changes: impl Iterator<Item = &'a Change>,
) -> Result<(), StorageError> {
    let tx = connection.transaction().map_err(fail("cannot begin"))?;
    {
        let mut put_channel = tx
            .prepare_cached(
                "INSERT INTO channels (appid, channel, members, burned, last_activity) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (appid, channel) DO UPDATE SET members = ?3, burned = ?4, last_activity = ?5",
            )
            .map_err(fail("cannot prepare"))?;
        let mut put_message = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO messages (appid, channel, seq, side, phase, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(fail("cannot prepare"))?;
        let mut touch = tx
            .prepare_cached(
                "UPDATE channels SET last_activity = max(last_activity, ?3) WHERE appid = ?1 AND channel = ?2",
            )
            .map_err(fail("cannot prepare"))?;
        let mut delete_channel = tx
            .prepare_cached("DELETE FROM channels WHERE appid = ?1 AND channel = ?2")
            .map_err(fail("cannot prepare"))?;
        let mut delete_messages = tx
            .prepare_cached("DELETE FROM messages WHERE appid = ?1 AND channel = ?2")
            .map_err(fail("cannot prepare"))?;
        let mut drop_messages_after = tx
            .prepare_cached("DELETE FROM messages WHERE appid = ?1 AND channel = ?2 AND seq > ?3")
            .map_err(fail("cannot prepare"))?;
        let mut stored_messages = tx
            .prepare_cached("SELECT max(seq) FROM messages WHERE appid = ?1 AND channel = ?2")
            .map_err(fail("cannot prepare"))?;
        for change in changes {
            match change {
                Change::Channel(c) => {
                    let members = serde_json::to_string(&c.members).expect("members serialize");
                    let id = c.channel.get();
                    put_channel
                        .execute(params![c.appid, id, members, c.burned, millis(c.last_activity)])
                        .map_err(fail("cannot store a channel"))?;
                    let stored: Option<u64> = stored_messages
                        .query_row(params![c.appid, id], |row| row.get(0))
                        .optional()
                        .map_err(fail("cannot read messages"))?
                        .flatten();
                    for m in c.messages.iter().filter(|m| Some(m.seq) > stored) {
                        put_message
                            .execute(params![c.appid, id, m.seq, m.side, m.phase, m.body])
                            .map_err(fail("cannot store a message"))?;
                    }
                    // The snapshot holds the whole log. Only a burned channel ever drops
                    // messages (when it is kept, emptied, for its retention), so only then
                    // can the stored log be longer than the snapshot's.
                    if c.burned {
                        let last = c.messages.last().map_or(0, |m| m.seq);
                        drop_messages_after.execute(params![c.appid, id, last]).map_err(fail("cannot delete"))?;
                    }
                }
                Change::Message { appid, channel, message: m, at } => {
                    put_message
                        .execute(params![appid, channel.get(), m.seq, m.side, m.phase, m.body])
                        .map_err(fail("cannot store a message"))?;
                    touch.execute(params![appid, channel.get(), millis(*at)]).map_err(fail("cannot touch"))?;
                }
                Change::Touch { appid, channel, at } => {
                    touch.execute(params![appid, channel.get(), millis(*at)]).map_err(fail("cannot touch"))?;
                }
                Change::Delete { appid, channel } => {
                    delete_channel.execute(params![appid, channel.get()]).map_err(fail("cannot delete"))?;
                    delete_messages.execute(params![appid, channel.get()]).map_err(fail("cannot delete"))?;
                }
            }
        }
    }
    tx.commit().map_err(fail("cannot commit"))
}

#[cfg(test)]
mod tests {
    use wormhole_sync_core::rendezvous::MemberSnapshot;

    use super::*;

    #[test]
    fn soft_commits_apply_and_leave_full_sync_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("soft.sqlite3");
        let mut connection = open(&path).unwrap();
        let channel = ChannelId::new(4).unwrap();
        let member = MemberSnapshot { side: "s1".into(), allocated: true, closed: None };
        let created = Change::Channel(ChannelSnapshot {
            appid: "app".into(),
            channel,
            members: vec![member],
            messages: Vec::new(),
            burned: false,
            last_activity: Timestamp::from_millis(1_000),
        });
        apply(&mut connection, Durability::Synced, std::iter::once(&created)).unwrap();
        let touched = Change::Touch { appid: "app".into(), channel, at: Timestamp::from_millis(9_000) };
        apply(&mut connection, Durability::Soft, std::iter::once(&touched)).unwrap();
        let synchronous: i64 = connection.query_row("PRAGMA synchronous", [], |row| row.get(0)).unwrap();
        assert_eq!(synchronous, 2, "FULL again after a soft commit");
        drop(connection);
        let loaded = load(&open(&path).unwrap()).unwrap();
        assert_eq!(loaded.channels[0].last_activity, Timestamp::from_millis(9_000));
    }
}
