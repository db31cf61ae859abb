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
    EffectKind, MailboxSnapshot, Op, Outcome, Rendezvous, RendezvousSnapshot, Target,
};
use wormhole_sync_core::wire::{ErrorCode, MailboxId, WireError};
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

        // Activity stamps are soft state: one that moved less than this is not
        // written, so most fetches write nothing.
        let rendezvous = &config.rendezvous;
        let stamp_step = (rendezvous.channel_expiry.min(rendezvous.burned_retention) / 100).min(MAX_STAMP_STEP);
        if !lock {
            if writes(&core, &loaded, stamp_step) {
                return Err(Box::new(Fail::NeedsLock));
            }
            let instance = match scope.target {
                Target::Mailbox(id) => loaded.get(id).map(|l| l.instance),
                _ => None,
            };
            let result = result.map(|answered| Outcome { instance, ..answered });
            return Ok((Ran { result, news: Vec::new(), finished: Vec::new() }, false));
        }
        let written = write_effects(tx, &core, &loaded, client, stamp_step).await?;
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
        let finished = core.finished().to_vec();
        let result = result.map(|answered| Outcome { instance, ..answered });
        Ok((Ran { result, news: written.news, finished }, true))
    }
}

/// Whether the core's last operation changed anything worth writing: more
/// than activity stamps that moved less than `stamp_step`.
fn writes(core: &Rendezvous, loaded: &HashMap<MailboxId, Loaded>, stamp_step: Duration) -> bool {
    core.effects().iter().any(|effect| {
        let stamp_moved = || {
            let (Some(was), Some(now)) =
                (loaded.get(&effect.mailbox), core.mailbox_snapshot(&effect.appid, &effect.mailbox))
            else {
                return true;
            };
            now.last_activity.saturating_since(was.last_activity) >= stamp_step
        };
        effect.kind != EffectKind::Touched || stamp_moved()
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

/// Writes back what the core's last operation changed, mailbox by mailbox.
async fn write_effects(
    tx: &impl GenericClient,
    core: &Rendezvous,
    loaded: &HashMap<MailboxId, Loaded>,
    client: Option<IpAddr>,
    stamp_step: Duration,
) -> Result<Written, Box<Fail>> {
    let effects = core.effects();
    let mut written = Written::default();
    if effects.iter().all(|e| e.kind == EffectKind::Touched) {
        // Nothing but row locks and activity stamps, which are soft state (as with
        // SQLite): losing the last few to a crash only lets a mailbox expire a little
        // early, so the commit does not wait for the log to reach the disk.
        execute(tx, "SET LOCAL synchronous_commit TO OFF", &[]).await?;
    }
    // Whoever runs the operation: the poster of the messages it stores, the
    // maker of the channel it makes.
    let poster = client.map(|ip| crate::client_address::subscriber(ip).to_string());
    let mut order: Vec<(&str, &MailboxId)> = Vec::new();
    for effect in effects {
        if !order.iter().any(|(a, m)| *a == effect.appid && **m == effect.mailbox) {
            order.push((&effect.appid, &effect.mailbox));
        }
    }
    for (appid, id) in order {
        let kinds: Vec<EffectKind> =
            effects.iter().filter(|e| e.appid == appid && e.mailbox == *id).map(|e| e.kind).collect();
        let deleted = kinds.contains(&EffectKind::Deleted);
        let now = core.mailbox_snapshot(appid, id);
        let was = loaded.get(id);
        if deleted && was.is_some() {
            execute(tx, "DELETE FROM mailboxes WHERE appid = $1 AND mailbox = $2", &[&appid, &id.as_str()]).await?;
        }
        let news = kinds.iter().any(|kind| kind.is_news());
        let Some(snapshot) = now else {
            if news {
                written.news.push((appid.to_string(), id.clone()));
            }
            continue;
        };
        let stored_before = match was {
            Some(was) if !deleted => {
                let appended = kinds.iter().any(|k| matches!(k, EffectKind::Appended(_)));
                if kinds.iter().all(|k| matches!(k, EffectKind::Touched | EffectKind::Appended(_))) {
                    // Its row changed only in its activity stamp.
                    if appended || snapshot.last_activity.saturating_since(was.last_activity) >= stamp_step {
                        execute(
                            tx,
                            "UPDATE mailboxes SET last_activity = GREATEST(last_activity, $3)
                             WHERE appid = $1 AND mailbox = $2",
                            &[&appid, &id.as_str(), &rows::millis(snapshot.last_activity)],
                        )
                        .await?;
                    }
                } else {
                    put_mailbox(tx, &snapshot, None).await?;
                }
                if !appended && snapshot.messages.len() >= was.messages {
                    if news {
                        written.news.push((appid.to_string(), id.clone()));
                    }
                    continue;
                }
                was.messages
            }
            _ => {
                let maker = poster.as_deref().filter(|_| kinds.contains(&EffectKind::Created));
                if let Some(instance) = put_mailbox(tx, &snapshot, Some(maker)).await? {
                    written.instances.insert(id.clone(), instance);
                }
                written.made.push(appid.to_string());
                if maker.is_some() {
                    written.maker = maker.map(str::to_string);
                }
                0
            }
        };
        for message in snapshot.messages.iter().skip(stored_before) {
            let body_poster = poster.as_deref();
            execute(
                tx,
                "INSERT INTO mailbox_messages (appid, mailbox, seq, side, phase, body, server_rx, client_id, poster)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &appid,
                    &id.as_str(),
                    &i64::try_from(message.seq).unwrap_or(i64::MAX),
                    &message.side,
                    &message.phase,
                    &message.body,
                    &message.server_rx.map(rows::millis),
                    &message.id,
                    &body_poster,
                ],
            )
            .await?;
            written.stored.push((appid.to_string(), poster.clone()));
        }
        if snapshot.messages.len() < stored_before {
            // A mailbox kept for its retention (a tombstone) keeps no log.
            let last = i64::try_from(snapshot.messages.len()).unwrap_or(i64::MAX);
            execute(
                tx,
                "DELETE FROM mailbox_messages WHERE appid = $1 AND mailbox = $2 AND seq > $3",
                &[&appid, &id.as_str(), &last],
            )
            .await?;
        }
        if news {
            written.news.push((appid.to_string(), id.clone()));
        }
    }
    Ok(written)
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
