//! One operation, one transaction: lock and load what it names, run the
//! core on it, write back what changed, check the caps and budgets that
//! span the deployment, notify, commit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use deadpool_postgres::GenericClient;
use rand_core::RngCore as _;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use wormhole_sync_core::rendezvous::{
    MailboxChange, MailboxSnapshot, Op, Outcome, Persist, Rendezvous, RendezvousSnapshot, Target,
};
use wormhole_sync_core::wire::{ErrorCode, MailboxId, Message, WireError};
use wormhole_sync_core::{ChannelId, Timestamp};

use super::rows::{self, MAILBOX_COLUMNS, MESSAGE_COLUMNS};
use super::{describe, listen, unavailable, Postgres, CHANNEL, OPERATION_TIMEOUT};
use crate::change::Ran;
use crate::ServerConfig;

/// The most an activity stamp may lag behind (see `stamp_step`).
const MAX_STAMP_STEP: Duration = Duration::from_secs(10);

/// Runs of one operation that conflicted with another instance's
/// (a unique constraint) before it is answered `storage-unavailable`.
const MAX_ATTEMPTS: u32 = 8;

/// A conflict with another transaction: running again sees its outcome.
fn is_conflict(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code().is_some_and(|code| {
        [SqlState::UNIQUE_VIOLATION, SqlState::T_R_SERIALIZATION_FAILURE, SqlState::T_R_DEADLOCK_DETECTED]
            .contains(code)
    })
}

/// A mailbox as loaded: its instance and how many messages it had.
struct Loaded {
    instance: u64,
    messages: usize,
    last_activity: Timestamp,
}

type Failure = Box<dyn std::fmt::Display + Send + Sync>;

impl From<tokio_postgres::Error> for Box<Fail> {
    fn from(e: tokio_postgres::Error) -> Self {
        Box::new(Fail::Database(e))
    }
}

/// Why a transaction did not commit.
pub(super) enum Fail {
    Database(tokio_postgres::Error),
    Unreadable(Failure),
    /// A run without locks would write: run again with them.
    NeedsLock,
}

impl Postgres {
    /// Runs `op` in a transaction over the rows it names, its messages and
    /// channels charged to `client`, refused past the caps and budgets that
    /// span the deployment. Answers `storage-unavailable` if the database
    /// cannot be reached or fails.
    pub(crate) async fn run(&self, config: &ServerConfig, op: &Op, client: Option<IpAddr>) -> Result<Ran, WireError> {
        let scope = op.scope();
        let run = async {
            let mut connection = self.client().await?;
            let mut attempt = 1;
            let mut lock = !scope.reads;
            loop {
                if !lock {
                    // A read runs its statements on their own, without a transaction.
                    match self.transaction(&connection, config, op, client, false).await {
                        Ok((outcome, _)) => return Ok(outcome),
                        Err(fail) => match *fail {
                            Fail::NeedsLock => {
                                lock = true;
                                continue;
                            }
                            Fail::Database(e) => return Err(unavailable("a read failed", describe(&e))),
                            Fail::Unreadable(why) => return Err(unavailable("a stored mailbox cannot be read", why)),
                        },
                    }
                }
                let tx = connection.transaction().await.map_err(|e| unavailable("cannot begin", describe(&e)))?;
                let fail = match self.transaction(&tx, config, op, client, lock).await {
                    Ok((outcome, commit)) => {
                        let ended = if commit { tx.commit().await } else { tx.rollback().await };
                        match ended {
                            Ok(()) => return Ok(outcome),
                            Err(e) => e,
                        }
                    }
                    Err(fail) => match *fail {
                        Fail::Database(e) => e,
                        Fail::NeedsLock => unreachable!("a run with locks writes what it needs"),
                        Fail::Unreadable(why) => return Err(unavailable("a stored mailbox cannot be read", why)),
                    },
                };
                // Another instance took the number, made the mailbox or claimed the
                // allocation first: run again on what it wrote.
                if attempt < MAX_ATTEMPTS && is_conflict(&fail) {
                    attempt += 1;
                    continue;
                }
                return Err(unavailable("an operation failed", describe(&fail)));
            }
        };
        let ran = tokio::time::timeout(OPERATION_TIMEOUT, run).await;
        let ran = ran.unwrap_or_else(|_| Err(unavailable("an operation", "timed out")));
        self.mark(ran.as_ref().map_or_else(|e| e.code != ErrorCode::StorageUnavailable, |_| true));
        ran
    }

    /// The transaction's work; returns the outcome and whether to commit.
    async fn transaction(
        &self,
        tx: &impl GenericClient,
        config: &ServerConfig,
        op: &Op,
        client: Option<IpAddr>,
        lock: bool,
    ) -> Result<(Ran, bool), Box<Fail>> {
        let scope = op.scope();
        let appid = scope.appid;
        let for_update = if lock { "FOR UPDATE" } else { "" };
        let found = match scope.target {
            Target::Mailbox(id) => {
                let sql =
                    format!("SELECT {MAILBOX_COLUMNS} FROM mailboxes b WHERE appid = $1 AND mailbox = $2 {for_update}");
                query(tx, &sql, &[&appid, &id.as_str()]).await?
            }
            Target::Nameplate(nameplate) => {
                let sql = format!(
                    "SELECT {MAILBOX_COLUMNS} FROM mailboxes b
                     WHERE appid = $1 AND nameplate = $2 AND holds_nameplate {for_update}"
                );
                query(tx, &sql, &[&appid, &rows::nameplate_column(nameplate)]).await?
            }
            Target::Allocator(side) => {
                let sql = format!(
                    "SELECT {MAILBOX_COLUMNS} FROM mailboxes b WHERE appid = $1 AND allocator = $2 {for_update}"
                );
                query(tx, &sql, &[&appid, &side]).await?
            }
            // No mailbox (the engine answers `list` with a query of its own).
            Target::App => Vec::new(),
        };
        let mut snapshots = Vec::with_capacity(found.len());
        let mut loaded: HashMap<MailboxId, Loaded> = HashMap::new();
        let message_sql =
            format!("SELECT {MESSAGE_COLUMNS} FROM mailbox_messages m WHERE appid = $1 AND mailbox = $2 ORDER BY seq");
        for row in &found {
            let (mut snapshot, instance) =
                rows::mailbox(appid, row).ok_or_else(|| Box::new(Fail::Unreadable(Box::new("invalid mailbox row"))))?;
            let messages = query(tx, &message_sql, &[&appid, &snapshot.mailbox.as_str()]).await?;
            snapshot.messages = messages.iter().map(rows::message).collect();
            let (messages, last_activity) = (snapshot.messages.len(), snapshot.last_activity);
            loaded.insert(snapshot.mailbox.clone(), Loaded { instance, messages, last_activity });
            snapshots.push(snapshot);
        }
        let mut seed = [0u8; 32];
        rand_core::OsRng.fill_bytes(&mut seed);
        let mut core = Rendezvous::restore(config.rendezvous.clone(), RendezvousSnapshot::new(snapshots), seed)
            .map_err(|e| Box::new(Fail::Unreadable(Box::new(e.0))))?;
        if scope.nameplates {
            let held =
                query(tx, "SELECT nameplate FROM mailboxes WHERE appid = $1 AND holds_nameplate", &[&appid]).await?;
            let others = held
                .iter()
                .filter_map(|row| u32::try_from(row.get::<_, i32>(0)).ok().and_then(ChannelId::new))
                .filter(|n| core.mailbox_of(appid, *n).is_none());
            let others: Vec<ChannelId> = others.collect();
            core.reserve_nameplates(appid, others);
        }

        let at = config.clock.now();
        let result = core.apply(at, op);
        let changes = core.take_changes();

        // Activity stamps are soft state: one that moved less than this is not
        // written, so most fetches write nothing.
        let rendezvous = &config.rendezvous;
        let stamp_step = (rendezvous.channel_expiry.min(rendezvous.burned_retention) / 100).min(MAX_STAMP_STEP);
        if !lock {
            if writes(&changes.mailboxes, &loaded, stamp_step) {
                return Err(Box::new(Fail::NeedsLock));
            }
            let instance = match scope.target {
                Target::Mailbox(id) => loaded.get(id).map(|l| l.instance),
                _ => None,
            };
            let result = result.map(|answered| Outcome { instance, ..answered });
            return Ok((Ran { result, news: Vec::new(), finished: Vec::new() }, false));
        }
        let written = write_changes(tx, changes.mailboxes, &loaded, client, stamp_step).await?;
        let mut instance = match scope.target {
            Target::Mailbox(id) => written.instances.get(id).copied().or_else(|| loaded.get(id).map(|l| l.instance)),
            _ => None,
        };
        if let Target::Mailbox(id) = scope.target {
            if !core.contains_mailbox(appid, id) {
                instance = None;
            }
        }
        if let Some(refusal) = super::caps::over_caps(tx, config, &written).await? {
            return Ok((Ran { result: Err(refusal), news: Vec::new(), finished: Vec::new() }, false));
        }
        for (appid, mailbox) in &written.news {
            execute(tx, "SELECT pg_notify($1, $2)", &[&CHANNEL, &listen::payload(appid, mailbox.as_str())]).await?;
        }
        let finished = changes.finished;
        let result = result.map(|answered| Outcome { instance, ..answered });
        Ok((Ran { result, news: written.news, finished }, true))
    }
}

/// Whether an operation changed anything worth writing: more than activity
/// stamps that moved less than `stamp_step`.
fn writes(changes: &[MailboxChange], loaded: &HashMap<MailboxId, Loaded>, stamp_step: Duration) -> bool {
    changes.iter().any(|change| match (&change.persist, loaded.get(&change.mailbox)) {
        (Persist::Activity { last_activity }, Some(was)) if change.appended.is_empty() => {
            last_activity.saturating_since(was.last_activity) >= stamp_step
        }
        _ => true,
    })
}

/// What an operation wrote.
#[derive(Default)]
pub(super) struct Written {
    /// Mailboxes made (the app ids they were made in).
    pub(super) made: Vec<String>,
    /// Messages stored: their app ids and posters (whose budgets to check).
    pub(super) stored: Vec<(String, Option<String>)>,
    /// The client that made a channel, if one was made (whose cap to check).
    pub(super) maker: Option<String>,
    /// Instance numbers of mailboxes inserted.
    instances: HashMap<MailboxId, u64>,
    news: Vec<(String, MailboxId)>,
}

/// Writes back what an operation changed, mailbox by mailbox.
async fn write_changes(
    tx: &impl GenericClient,
    changes: Vec<MailboxChange>,
    loaded: &HashMap<MailboxId, Loaded>,
    client: Option<IpAddr>,
    stamp_step: Duration,
) -> Result<Written, Box<Fail>> {
    let mut written = Written::default();
    if changes.iter().all(MailboxChange::is_soft) {
        // Soft state only (as with SQLite): row locks, activity stamps, a
        // release a side repeats. Losing the last few to a crash only lets a
        // mailbox expire a little early, so the commit does not wait for the
        // log to reach the disk.
        execute(tx, "SET LOCAL synchronous_commit TO OFF", &[]).await?;
    }
    // Whoever runs the operation: the poster of the messages it stores, the
    // maker of the channel it makes.
    let poster = client.map(|ip| crate::client_address::subscriber(ip).to_string());
    for change in changes {
        let (appid, id) = (change.appid.as_str(), &change.mailbox);
        let was = loaded.get(id).filter(|_| !change.deleted);
        if change.deleted && loaded.contains_key(id) {
            execute(tx, "DELETE FROM mailboxes WHERE appid = $1 AND mailbox = $2", &[&appid, &id.as_str()]).await?;
        }
        match (&change.persist, was) {
            (Persist::Gone, _) => {}
            // Its row changed only in its activity stamp.
            (Persist::Activity { last_activity }, Some(was)) => {
                let moved = last_activity.saturating_since(was.last_activity) >= stamp_step;
                if !change.appended.is_empty() || moved {
                    execute(
                        tx,
                        "UPDATE mailboxes SET last_activity = GREATEST(last_activity, $3)
                         WHERE appid = $1 AND mailbox = $2",
                        &[&appid, &id.as_str(), &rows::millis(*last_activity)],
                    )
                    .await?;
                }
            }
            (Persist::Whole(snapshot) | Persist::Released(snapshot), Some(was)) => {
                put_mailbox(tx, snapshot, None).await?;
                if snapshot.messages.len() < was.messages {
                    // A mailbox kept for its retention (a tombstone) keeps no log.
                    let last = i64::try_from(snapshot.messages.len()).unwrap_or(i64::MAX);
                    execute(
                        tx,
                        "DELETE FROM mailbox_messages WHERE appid = $1 AND mailbox = $2 AND seq > $3",
                        &[&appid, &id.as_str(), &last],
                    )
                    .await?;
                }
            }
            // New, or made anew under its id: every message it holds is appended.
            (Persist::Whole(snapshot) | Persist::Released(snapshot), None) => {
                let maker = poster.as_deref().filter(|_| change.created);
                if let Some(instance) = put_mailbox(tx, snapshot, Some(maker)).await? {
                    written.instances.insert(id.clone(), instance);
                }
                written.made.push(appid.to_string());
                if maker.is_some() {
                    written.maker = maker.map(str::to_string);
                }
            }
            // Not seen: a mailbox changes only once loaded, or made (then all of it is new).
            (Persist::Activity { .. }, None) => {}
        }
        if change.persist != Persist::Gone {
            for message in &change.appended {
                insert_message(tx, appid, id, message, poster.as_deref()).await?;
                written.stored.push((appid.to_string(), poster.clone()));
            }
        }
        if change.news {
            written.news.push((change.appid, change.mailbox));
        }
    }
    Ok(written)
}

/// Stores one message, charged to its poster.
async fn insert_message(
    tx: &impl GenericClient,
    appid: &str,
    mailbox: &MailboxId,
    message: &Message,
    poster: Option<&str>,
) -> Result<(), Box<Fail>> {
    execute(
        tx,
        "INSERT INTO mailbox_messages (appid, mailbox, seq, side, phase, body, server_rx, client_id, poster)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &appid,
            &mailbox.as_str(),
            &i64::try_from(message.seq).unwrap_or(i64::MAX),
            &message.side,
            &message.phase,
            &message.body,
            &message.server_rx.map(rows::millis),
            &message.id,
            &poster,
        ],
    )
    .await?;
    Ok(())
}

/// Writes a mailbox's row: a new one (`new`: with the client that made it,
/// if known; returning its instance number), or over the one loaded.
async fn put_mailbox(
    tx: &impl GenericClient,
    snapshot: &MailboxSnapshot,
    new: Option<Option<&str>>,
) -> Result<Option<u64>, Box<Fail>> {
    let members = serde_json::to_string(&snapshot.members).expect("members serialize");
    let (nameplate, allocator) = (snapshot.nameplate.map(rows::nameplate_column), rows::allocator(snapshot));
    let (tombstone, last_activity) = (snapshot.is_tombstone(), rows::millis(snapshot.last_activity));
    let row: [&(dyn ToSql + Sync); 9] = [
        &snapshot.appid,
        &snapshot.mailbox.as_str(),
        &nameplate,
        &snapshot.holds_nameplate,
        &allocator,
        &members,
        &snapshot.burned,
        &tombstone,
        &last_activity,
    ];
    if let Some(maker) = new {
        let mut row = row.to_vec();
        row.push(&maker);
        let inserted = query_one(
            tx,
            "INSERT INTO mailboxes
                 (appid, mailbox, nameplate, holds_nameplate, allocator, members, burned, tombstone, last_activity,
                  maker)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING instance",
            &row,
        )
        .await?;
        return Ok(Some(u64::try_from(inserted.get::<_, i64>(0)).unwrap_or(0)));
    }
    execute(
        tx,
        "UPDATE mailboxes SET nameplate = $3, holds_nameplate = $4, allocator = $5, members = $6, burned = $7,
             tombstone = $8, last_activity = $9
         WHERE appid = $1 AND mailbox = $2",
        &row,
    )
    .await?;
    Ok(None)
}

// Statements are prepared once per connection and cached: parsing and
// planning each one anew cost the database more than running it.

async fn query(tx: &impl GenericClient, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Box<Fail>> {
    let statement = tx.prepare_cached(sql).await?;
    Ok(tx.query(&statement, params).await?)
}

pub(super) async fn query_one(
    tx: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Row, Box<Fail>> {
    let statement = tx.prepare_cached(sql).await?;
    Ok(tx.query_one(&statement, params).await?)
}

pub(super) async fn execute(
    tx: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, Box<Fail>> {
    let statement = tx.prepare_cached(sql).await?;
    Ok(tx.execute(&statement, params).await?)
}
