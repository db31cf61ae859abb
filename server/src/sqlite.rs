//! The SQLite schema and the statements the journal runs.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use wormhole_sync_core::rendezvous::{MailboxSnapshot, MemberSnapshot, RendezvousSnapshot};
use wormhole_sync_core::wire::{MailboxId, Message};
use wormhole_sync_core::{ChannelId, Timestamp};

use crate::change::Change;
use crate::error::StorageError;

const SCHEMA_VERSION: i64 = 2;

fn fail(context: &str) -> impl Fn(rusqlite::Error) -> StorageError + '_ {
    move |e| StorageError::caused(context, e)
}

/// Version 2: mailboxes, each holding the nameplate (short id) it was made
/// for until both sides release it, and messages keyed by mailbox.
const SCHEMA_V2: &str = "
    CREATE TABLE IF NOT EXISTS mailboxes (
        appid TEXT NOT NULL,
        mailbox TEXT NOT NULL,
        nameplate INTEGER,
        holds_nameplate INTEGER NOT NULL,
        members TEXT NOT NULL,
        burned INTEGER NOT NULL,
        last_activity INTEGER NOT NULL,
        PRIMARY KEY (appid, mailbox)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS mailbox_messages (
        appid TEXT NOT NULL,
        mailbox TEXT NOT NULL,
        seq INTEGER NOT NULL,
        side TEXT NOT NULL,
        phase TEXT NOT NULL,
        body TEXT NOT NULL,
        server_rx INTEGER,
        client_id TEXT,
        PRIMARY KEY (appid, mailbox, seq)
    ) WITHOUT ROWID;";

/// From version 1 (channels): each channel becomes a mailbox named `c<id>`
/// that holds its id as nameplate, as a version 1 snapshot restores.
const MIGRATE_V1: &str = "
    INSERT INTO mailboxes (appid, mailbox, nameplate, holds_nameplate, members, burned, last_activity)
        SELECT appid, 'c' || channel, channel, 1, members, burned, last_activity FROM channels;
    INSERT INTO mailbox_messages (appid, mailbox, seq, side, phase, body)
        SELECT appid, 'c' || channel, seq, side, phase, body FROM messages;
    DROP TABLE messages;
    DROP TABLE channels;";

/// Opens (or creates, or migrates) the database, in WAL mode with full
/// syncs, locked to this process.
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
        return Err(StorageError::new(format!("the database has schema {version}, newer than this server's")));
    }
    let migrate = if version == 1 { MIGRATE_V1 } else { "" };
    connection
        .execute_batch(&format!("BEGIN; {SCHEMA_V2} {migrate} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"))
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
    file.by_ref().take(16).read_to_end(&mut header).map_err(|e| StorageError::caused("cannot read the database", e))?;
    let len = file.metadata().map_err(|e| StorageError::caused("cannot read the database", e))?.len();
    if header.is_empty() || (len >= 100 && header == b"SQLite format 3\0") {
        return Ok(());
    }
    Err(StorageError::new(format!(
        "{} is not an SQLite database ({len} bytes): restore a backup or move it away",
        path.display()
    )))
}

/// Reads every mailbox and message, after checking the database's
/// structure: a damaged file is refused with the reason, never loaded in
/// part.
pub(crate) fn load(connection: &Connection) -> Result<RendezvousSnapshot, StorageError> {
    let verdict: String =
        connection.query_row("PRAGMA quick_check", [], |row| row.get(0)).map_err(fail("cannot check the database"))?;
    if verdict != "ok" {
        return Err(StorageError::new(format!(
            "the database is damaged ({verdict}); restore a backup or move it away"
        )));
    }
    let orphans: i64 = connection
        .query_row(
            "SELECT count(*) FROM mailbox_messages m
             WHERE NOT EXISTS (SELECT 1 FROM mailboxes b WHERE b.appid = m.appid AND b.mailbox = m.mailbox)",
            [],
            |row| row.get(0),
        )
        .map_err(fail("cannot check the database"))?;
    if orphans > 0 {
        return Err(StorageError::new(format!("the database is damaged: {orphans} messages belong to no mailbox")));
    }
    let mut mailboxes = Vec::new();
    let mut select = connection
        .prepare(
            "SELECT appid, mailbox, nameplate, holds_nameplate, members, burned, last_activity
             FROM mailboxes ORDER BY appid, mailbox",
        )
        .map_err(fail("cannot read mailboxes"))?;
    let rows = select
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<u32>>(2)?,
                row.get::<_, bool>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, bool>(5)?,
                row.get::<_, i64>(6)?,
            ))
        })
        .map_err(fail("cannot read mailboxes"))?;
    let mut messages = connection
        .prepare(
            "SELECT seq, side, phase, body, server_rx, client_id FROM mailbox_messages
             WHERE appid = ?1 AND mailbox = ?2 ORDER BY seq",
        )
        .map_err(fail("cannot read messages"))?;
    for row in rows {
        let (appid, mailbox, nameplate, holds_nameplate, members, burned, last_activity) =
            row.map_err(fail("cannot read a mailbox"))?;
        let id = MailboxId::new(mailbox.as_str()).ok_or_else(|| StorageError::new("invalid mailbox id"))?;
        let nameplate = match nameplate {
            None => None,
            Some(n) => Some(ChannelId::new(n).ok_or_else(|| StorageError::new(format!("invalid nameplate {n}")))?),
        };
        let members: Vec<MemberSnapshot> = serde_json::from_str(&members)
            .map_err(|e| StorageError::caused(format!("mailbox {id} of {appid:?} has invalid members"), e))?;
        let log = messages
            .query_map(params![appid, id.as_str()], |row| {
                let server_rx = row.get::<_, Option<i64>>(4)?.map(|ms| Timestamp::from_millis(ms.max(0) as u64));
                Ok(Message::new(
                    row.get(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                )
                .received(server_rx, row.get(5)?))
            })
            .and_then(Iterator::collect)
            .map_err(fail("cannot read messages"))?;
        let last_activity = Timestamp::from_millis(u64::try_from(last_activity).unwrap_or(0));
        mailboxes.push(MailboxSnapshot {
            appid,
            mailbox: id,
            nameplate,
            holds_nameplate,
            members,
            messages: log,
            burned,
            last_activity,
        });
    }
    Ok(RendezvousSnapshot::new(mailboxes))
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
        let mut put_mailbox = tx
            .prepare_cached(
                "INSERT INTO mailboxes (appid, mailbox, nameplate, holds_nameplate, members, burned, last_activity)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (appid, mailbox) DO UPDATE SET
                     nameplate = ?3, holds_nameplate = ?4, members = ?5, burned = ?6, last_activity = ?7",
            )
            .map_err(fail("cannot prepare"))?;
        let mut put_message = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO mailbox_messages (appid, mailbox, seq, side, phase, body, server_rx, client_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(fail("cannot prepare"))?;
        let mut touch = tx
            .prepare_cached(
                "UPDATE mailboxes SET last_activity = max(last_activity, ?3) WHERE appid = ?1 AND mailbox = ?2",
            )
            .map_err(fail("cannot prepare"))?;
        let mut release = tx
            .prepare_cached(
                "UPDATE mailboxes SET holds_nameplate = ?3, members = ?4, last_activity = max(last_activity, ?5)
                 WHERE appid = ?1 AND mailbox = ?2",
            )
            .map_err(fail("cannot prepare"))?;
        let mut delete_mailbox = tx
            .prepare_cached("DELETE FROM mailboxes WHERE appid = ?1 AND mailbox = ?2")
            .map_err(fail("cannot prepare"))?;
        let mut delete_messages = tx
            .prepare_cached("DELETE FROM mailbox_messages WHERE appid = ?1 AND mailbox = ?2")
            .map_err(fail("cannot prepare"))?;
        let mut drop_messages_after = tx
            .prepare_cached("DELETE FROM mailbox_messages WHERE appid = ?1 AND mailbox = ?2 AND seq > ?3")
            .map_err(fail("cannot prepare"))?;
        let mut stored_messages = tx
            .prepare_cached("SELECT max(seq) FROM mailbox_messages WHERE appid = ?1 AND mailbox = ?2")
            .map_err(fail("cannot prepare"))?;
        let mut store = |appid: &str, mailbox: &MailboxId, m: &Message| {
            let server_rx = m.server_rx.map(millis);
            put_message
                .execute(params![appid, mailbox.as_str(), m.seq, m.side, m.phase, m.body, server_rx, m.id])
                .map(|_| ())
                .map_err(fail("cannot store a message"))
        };
        for change in changes {
            match change {
                Change::Mailbox(m) => {
                    let members = serde_json::to_string(&m.members).expect("members serialize");
                    let (appid, id) = (m.appid.as_str(), m.mailbox.as_str());
                    let nameplate = m.nameplate.map(ChannelId::get);
                    put_mailbox
                        .execute(params![
                            appid,
                            id,
                            nameplate,
                            m.holds_nameplate,
                            members,
                            m.burned,
                            millis(m.last_activity)
                        ])
                        .map_err(fail("cannot store a mailbox"))?;
                    let stored: Option<u64> = stored_messages
                        .query_row(params![appid, id], |row| row.get(0))
                        .optional()
                        .map_err(fail("cannot read messages"))?
                        .flatten();
                    for message in m.messages.iter().filter(|message| Some(message.seq) > stored) {
                        store(appid, &m.mailbox, message)?;
                    }
                    // The snapshot holds the whole log. Only a mailbox kept, emptied, for
                    // its retention ever drops messages, so only then can the stored log
                    // be longer than the snapshot's.
                    if m.is_tombstone() {
                        let last = m.messages.last().map_or(0, |message| message.seq);
                        drop_messages_after.execute(params![appid, id, last]).map_err(fail("cannot delete"))?;
                    }
                }
                Change::Message { appid, mailbox, message, at } => {
                    store(appid, mailbox, message)?;
                    touch.execute(params![appid, mailbox.as_str(), millis(*at)]).map_err(fail("cannot touch"))?;
                }
                Change::Released { appid, mailbox, holds_nameplate, members, at } => {
                    let members = serde_json::to_string(members).expect("members serialize");
                    let row = params![appid, mailbox.as_str(), holds_nameplate, members, millis(*at)];
                    release.execute(row).map_err(fail("cannot store a release"))?;
                }
                Change::Touch { appid, mailbox, at } => {
                    touch.execute(params![appid, mailbox.as_str(), millis(*at)]).map_err(fail("cannot touch"))?;
                }
                Change::Delete { appid, mailbox } => {
                    delete_mailbox.execute(params![appid, mailbox.as_str()]).map_err(fail("cannot delete"))?;
                    delete_messages.execute(params![appid, mailbox.as_str()]).map_err(fail("cannot delete"))?;
                }
            }
        }
    }
    tx.commit().map_err(fail("cannot commit"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_commits_apply_and_leave_full_sync_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("soft.sqlite3");
        let mut connection = open(&path).unwrap();
        let mailbox = MailboxId::new("abcdefg").unwrap();
        let created = Change::Mailbox(MailboxSnapshot {
            appid: "app".into(),
            mailbox: mailbox.clone(),
            nameplate: ChannelId::new(4),
            holds_nameplate: true,
            members: vec![MemberSnapshot::new("s1", true, None)],
            messages: Vec::new(),
            burned: false,
            last_activity: Timestamp::from_millis(1_000),
        });
        apply(&mut connection, Durability::Synced, std::iter::once(&created)).unwrap();
        let touched = Change::Touch { appid: "app".into(), mailbox, at: Timestamp::from_millis(9_000) };
        apply(&mut connection, Durability::Soft, std::iter::once(&touched)).unwrap();
        let synchronous: i64 = connection.query_row("PRAGMA synchronous", [], |row| row.get(0)).unwrap();
        assert_eq!(synchronous, 2, "FULL again after a soft commit");
        drop(connection);
        let loaded = load(&open(&path).unwrap()).unwrap();
        assert_eq!(loaded.mailboxes[0].last_activity, Timestamp::from_millis(9_000));
    }

    #[test]
    fn a_version_one_database_migrates_to_mailboxes_holding_their_channel_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.sqlite3");
        let v1 = Connection::open(&path).unwrap();
        v1.execute_batch(
            r#"CREATE TABLE channels (appid TEXT NOT NULL, channel INTEGER NOT NULL, members TEXT NOT NULL,
                   burned INTEGER NOT NULL, last_activity INTEGER NOT NULL, PRIMARY KEY (appid, channel)) WITHOUT ROWID;
               CREATE TABLE messages (appid TEXT NOT NULL, channel INTEGER NOT NULL, seq INTEGER NOT NULL,
                   side TEXT NOT NULL, phase TEXT NOT NULL, body TEXT NOT NULL,
                   PRIMARY KEY (appid, channel, seq)) WITHOUT ROWID;
               INSERT INTO channels VALUES ('app', 7, '[{"side":"a","allocated":true,"closed":null}]', 0, 5000);
               INSERT INTO messages VALUES ('app', 7, 1, 'a', 'pake', 'AAAA');
               PRAGMA user_version = 1;"#,
        )
        .unwrap();
        drop(v1);
        let loaded = load(&open(&path).unwrap()).unwrap();
        let [mailbox] = &loaded.mailboxes[..] else { panic!("{loaded:?}") };
        assert_eq!(
            (mailbox.mailbox.as_str(), mailbox.nameplate, mailbox.holds_nameplate),
            ("c7", ChannelId::new(7), true)
        );
        assert_eq!(mailbox.members, [MemberSnapshot::new("a", true, None)]);
        assert_eq!(mailbox.messages, [Message::new(1, "a", "pake", "AAAA")]);
        // Reopening a migrated database changes nothing.
        assert_eq!(load(&open(&path).unwrap()).unwrap(), loaded);
    }
}
