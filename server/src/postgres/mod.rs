//! PostgreSQL storage, for several server instances on one database.
//!
//! With SQLite, the state machine in memory is the source of truth and the
//! database its journal. Instances sharing a database cannot each hold the
//! state, so here the database is the truth. The operations that arrive
//! while a transaction runs share the next one ([`batch`]): it locks the
//! rows they name, loads them into a [`Rendezvous`] of its own, runs the
//! core's operations on it in arrival order, and writes back the net
//! change, one statement per kind of write ([`operation`], [`writes`]),
//! with the caps' guard, the `COMMIT` and the notifications of the
//! mailboxes with news in the same pipeline ([`caps`], [`listen`]), so a
//! long-poll or a WebSocket waiting on one instance is woken by a post on
//! another. A locking load reads the messages in a statement after the one
//! that takes the locks, so it sees what the transaction that held a lock
//! before it committed.
//!
//! **Allocation** reads how many numbers the app id has in use by length
//! (counters migration 5 keeps), checks which of the numbers the core
//! draws are in use, lets the core pick the shortest free one as it does
//! with the whole state ([`NameplatesInUse`](wormhole_sync_core::rendezvous::NameplatesInUse)),
//! and inserts it: a few index lookups, whatever the app id holds. Two
//! instances' batches allocate side by side: a partial unique index on
//! `(appid, nameplate)` fails the one that took a number the other took
//! too, and it runs again, drawing anew. Claims that make a nameplate
//! or `open`s that make a mailbox that meet another's write there run
//! again on what it wrote. **Reads** (fetches) run without locks or a
//! transaction, and again in a batch only if they change more than an
//! activity stamp. **Expiry** runs under a try-lock, so one instance sweeps
//! at a time, and its `DELETE` is idempotent anyway. **Usage** (what caps,
//! budgets and metrics read) is kept in counters that the migrations'
//! triggers update in the same transaction as the rows they count.
//! **Connections** are plain TCP, or TLS with the database's certificate
//! verified when the URL says `sslmode=require` ([`connect`]).

mod batch;
mod caps;
mod connect;
mod listen;
mod operation;
mod rows;
mod writes;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use deadpool::managed::QueueMode;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use wormhole_sync_core::rendezvous::{RendezvousConfig, RendezvousStats};
use wormhole_sync_core::wire::{ErrorCode, MailboxId, Message, WireError};
use wormhole_sync_core::{ChannelId, Timestamp};

use crate::error::{Chain, StorageError};

/// The rows whose sums are the server's totals: the server-wide counters,
/// and the sweep's removals of app ids and addresses (`gone`), which the
/// triggers cannot count.
const TOTALS: &str = "FROM wormhole_sync_usage WHERE scope IN ('server', 'gone') AND key = ''";

/// The SQL condition of an expired mailbox, with `$1` now, `$2` the
/// channel expiry and `$3` the burned retention (milliseconds): idle past
/// its expiry, or a tombstone past the retention. The first line is a plain
/// range, which an index on `last_activity` could serve; there is none, as
/// it would make every activity stamp written an index write too, so the
/// sweep reads the table (47 ms at 500,000 mailboxes, once a sweep).
macro_rules! expired {
    () => {
        "last_activity <= $1::BIGINT - LEAST($2::BIGINT, $3::BIGINT)
         AND last_activity <= $1::BIGINT - CASE WHEN tombstone THEN $3::BIGINT ELSE $2::BIGINT END"
    };
}

pub(crate) use listen::listen;
#[cfg(feature = "fuzzing")]
pub(crate) use listen::{parse as parse_notification, payload as notification_payload, MAX_PAYLOAD};
pub(crate) use operation::read_committed;

/// The versioned migrations, in order; each runs once, in a transaction.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_mailboxes.sql")),
    (2, include_str!("../../migrations/postgres/0002_mailbox_makers.sql")),
    (3, include_str!("../../migrations/postgres/0003_usage_counters.sql")),
    (4, include_str!("../../migrations/postgres/0004_counters_per_statement.sql")),
    (5, include_str!("../../migrations/postgres/0005_nameplates_by_length.sql")),
    (6, include_str!("../../migrations/postgres/0006_caps_guard.sql")),
];

/// Advisory lock keys (the two-integer form).
pub(super) const LOCK_CLASS: i32 = 0x5753_594e; // "WSYN"
const MIGRATION_LOCK: i32 = 1;
const SWEEP_LOCK: i32 = 2;
/// Held while a transaction that made a new application id counts them, so
/// two such transactions cannot pass the cap together.
pub(super) const NEW_APP_LOCK: i32 = 3;
/// Held by the batch that has the turn (see `batch`): one batch at a time
/// over every instance.
pub(super) const BATCH_TURN_LOCK: i32 = 4;

/// The channel commits notify on: the payload is `[appid, mailbox]`.
const CHANNEL: &str = "wormhole_sync";

/// How long an operation may take, pool wait included, before it is
/// answered `storage-unavailable`.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// A database shared with other instances.
pub(crate) struct Postgres {
    pool: Pool,
    connector: connect::Connector,
    /// Whether the last attempt to reach the database worked.
    reachable: AtomicBool,
    /// Batches that did not commit together and ran one operation per
    /// transaction (a metric: contention between instances, caps reached).
    split_batches: std::sync::atomic::AtomicU64,
    /// Batches whose turn did not come in time and ran beside the one that
    /// had it (a metric: an instance stuck in its transaction, or turns
    /// too short for the load).
    missed_turns: std::sync::atomic::AtomicU64,
    /// Tells the other instances of news.
    notifier: listen::Notifier,
    /// Where operations wait for a batch, once the first has come.
    queue: OnceLock<tokio::sync::mpsc::Sender<batch::Job>>,
    /// Where the sweep's next look for unused counters starts.
    clear_cursor: parking_lot::Mutex<ClearCursor>,
}

pub(crate) fn unavailable(context: &str, e: impl std::fmt::Display) -> WireError {
    tracing::warn!(error = %e, "{context}; answering storage-unavailable");
    WireError::new(ErrorCode::StorageUnavailable, "the server cannot store anything right now")
}

/// A database error in words: the server's message, not just "db error";
/// a client-side one with its causes ("error connecting to server:
/// Connection refused").
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => Chain(e).to_string(),
    }
}

fn failed(context: &str) -> impl Fn(tokio_postgres::Error) -> StorageError + '_ {
    move |e| StorageError::caused(context, e)
}

impl Postgres {
    /// Connects to `url` with at most `pool_size` connections (and one to
    /// listen), and creates or migrates the schema.
    pub(crate) async fn connect(url: &str, pool_size: usize) -> Result<Postgres, StorageError> {
        let connector = connect::Connector::parse(url)?;
        let manager = Manager::from_config(
            connector.config.clone(),
            connector.tls.clone(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let timeouts = deadpool_postgres::Timeouts {
            wait: Some(OPERATION_TIMEOUT),
            create: Some(Duration::from_secs(5)),
            recycle: Some(Duration::from_secs(5)),
        };
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(2))
            // The connection used last goes out first: under a light load a
            // few connections serve everything, their prepared statements
            // and the database's caches warm, the rest idle.
            .queue_mode(QueueMode::Lifo)
            .timeouts(timeouts)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StorageError::caused("cannot make the connection pool", e))?;
        let notifier = listen::Notifier::start(connector.clone());
        let postgres = Postgres {
            pool,
            connector,
            reachable: AtomicBool::new(true),
            split_batches: Default::default(),
            missed_turns: Default::default(),
            notifier,
            queue: OnceLock::new(),
            clear_cursor: Default::default(),
        };
        postgres.migrate().await?;
        Ok(postgres)
    }

    /// Applies the migrations this database lacks, one instance at a time.
    async fn migrate(&self) -> Result<(), StorageError> {
        let mut client = self.pool.get().await.map_err(|e| StorageError::caused("cannot connect", e))?;
        client
            .execute("SELECT pg_advisory_lock($1, $2)", &[&LOCK_CLASS, &MIGRATION_LOCK])
            .await
            .map_err(failed("cannot lock the schema"))?;
        let migrated = async {
            let fresh: bool = client
                .query_one("SELECT to_regclass('wormhole_sync_migrations') IS NULL", &[])
                .await
                .map_err(failed("cannot read the schema"))?
                .get(0);
            if fresh {
                client
                    .batch_execute(
                        "CREATE TABLE wormhole_sync_migrations (
                             version INTEGER PRIMARY KEY,
                             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                    )
                    .await
                    .map_err(failed("cannot create the migrations table"))?;
            }
            let row = client
                .query_one("SELECT coalesce(max(version), 0) FROM wormhole_sync_migrations", &[])
                .await
                .map_err(failed("cannot read the schema version"))?;
            let current: i32 = row.get(0);
            let latest = MIGRATIONS.last().map_or(0, |(version, _)| *version);
            if current > latest {
                return Err(StorageError::new(format!("the database has schema {current}, newer than this server's")));
            }
            for (version, sql) in MIGRATIONS.iter().filter(|(version, _)| *version > current) {
                let tx = client.transaction().await.map_err(failed("cannot begin"))?;
                tx.batch_execute(sql)
                    .await
                    .map_err(|e| StorageError::caused(format!("migration {version} failed"), e))?;
                tx.execute("INSERT INTO wormhole_sync_migrations (version) VALUES ($1)", &[version])
                    .await
                    .map_err(failed("cannot record a migration"))?;
                tx.commit().await.map_err(failed("cannot commit a migration"))?;
                tracing::info!(version, "migrated the PostgreSQL schema");
            }
            Ok(())
        }
        .await;
        let _ = client.execute("SELECT pg_advisory_unlock($1, $2)", &[&LOCK_CLASS, &MIGRATION_LOCK]).await;
        migrated
    }

    /// Where it is, for logs: hosts, port, database and whether the
    /// connections are encrypted, never a password.
    pub(crate) fn describe(&self) -> String {
        let config = &self.connector.config;
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .map(|host| match host {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let database = config.get_dbname().unwrap_or("(the user's)");
        let tls = if self.connector.encrypted() { "TLS, certificate verified" } else { "plain TCP" };
        format!("postgres at {}:{port}, database {database}, {tls}", hosts.join(","))
    }

    /// How to connect (for the listening connection).
    pub(crate) fn connector(&self) -> connect::Connector {
        self.connector.clone()
    }

    /// Whether the last attempt to reach the database worked.
    pub(crate) fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    fn mark(&self, reachable: bool) {
        self.reachable.store(reachable, Ordering::Relaxed);
    }

    /// Asks the database whether it answers (health checks).
    pub(crate) async fn check(&self) -> bool {
        let answered = tokio::time::timeout(Duration::from_secs(2), async {
            let client = self.pool.get().await.ok()?;
            client.query_one("SELECT 1", &[]).await.ok()
        })
        .await;
        let reachable = matches!(answered, Ok(Some(_)));
        self.mark(reachable);
        reachable
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, WireError> {
        match self.pool.get().await {
            Ok(client) => Ok(client),
            Err(e) => {
                self.mark(false);
                Err(unavailable("no database connection", e))
            }
        }
    }

    /// Runs a read, answering `storage-unavailable` when it fails.
    async fn read<T>(
        &self,
        context: &str,
        query: impl AsyncFnOnce(&deadpool_postgres::Object) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, WireError> {
        let run = async {
            let client = self.client().await?;
            query(&client).await.map_err(|e| {
                self.mark(false);
                unavailable(context, describe(&e))
            })
        };
        let answer = tokio::time::timeout(OPERATION_TIMEOUT, run).await;
        let answer = answer.unwrap_or_else(|_| Err(unavailable(context, "timed out")))?;
        self.mark(true);
        Ok(answer)
    }

    /// Counts for metrics, and the bytes stored and how many client
    /// addresses they are charged to: a read of the counters the database
    /// keeps (the migration's triggers), whatever it stores.
    pub(crate) async fn stats(&self) -> Result<(RendezvousStats, u64, usize), WireError> {
        self.read("cannot count", async |client| {
            let row = client
                .query_one(
                    &format!(
                        "SELECT coalesce(sum(apps), 0)::BIGINT, coalesce(sum(mailboxes), 0)::BIGINT,
                                coalesce(sum(nameplates), 0)::BIGINT, coalesce(sum(messages), 0)::BIGINT,
                                coalesce(sum(bytes), 0)::BIGINT, coalesce(sum(posters), 0)::BIGINT,
                                coalesce(sum(tombstones), 0)::BIGINT {TOTALS}"
                    ),
                    &[],
                )
                .await?;
            let count = |i: usize| usize::try_from(row.get::<_, i64>(i)).unwrap_or(0);
            let stats = RendezvousStats {
                apps: count(0),
                channels: count(1).saturating_sub(count(6)),
                tombstones: count(6),
                nameplates: count(2),
                messages: count(3),
            };
            Ok((stats, count(4) as u64, count(5)))
        })
        .await
    }

    /// The nameplates of `appid` in use, in order.
    pub(crate) async fn nameplates(&self, appid: &str) -> Result<Vec<ChannelId>, WireError> {
        self.read("cannot list nameplates", async |client| {
            let rows = client
                .query(
                    "SELECT nameplate FROM mailboxes WHERE appid = $1 AND holds_nameplate ORDER BY nameplate",
                    &[&appid],
                )
                .await?;
            Ok(rows
                .iter()
                .filter_map(|row| u32::try_from(row.get::<_, i32>(0)).ok().and_then(ChannelId::new))
                .collect())
        })
        .await
    }

    /// The mailbox a nameplate leads to, if any.
    pub(crate) async fn mailbox_of(&self, appid: &str, nameplate: ChannelId) -> Result<Option<MailboxId>, WireError> {
        self.read("cannot find a mailbox", async |client| {
            let row = client
                .query_opt(
                    "SELECT mailbox FROM mailboxes WHERE appid = $1 AND nameplate = $2 AND holds_nameplate",
                    &[&appid, &rows::nameplate_column(nameplate)],
                )
                .await?;
            Ok(row.and_then(|row| MailboxId::new(row.get::<_, String>(0))))
        })
        .await
    }

    /// The messages after `after` of this instance of a mailbox (none if
    /// it is gone or was made again under its id).
    pub(crate) async fn messages_after(
        &self,
        appid: &str,
        mailbox: &MailboxId,
        instance: u64,
        after: u64,
    ) -> Result<Vec<Message>, WireError> {
        let instance = i64::try_from(instance).unwrap_or(i64::MAX);
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.read("cannot read messages", async |client| {
            let sql = format!(
                "SELECT {} FROM mailbox_messages m JOIN mailboxes b ON b.appid = m.appid AND b.mailbox = m.mailbox
                 WHERE m.appid = $1 AND m.mailbox = $2 AND b.instance = $3 AND m.seq > $4 ORDER BY m.seq",
                rows::MESSAGE_COLUMNS
            );
            let rows = client.query(&sql, &[&appid, &mailbox.as_str(), &instance, &after]).await?;
            Ok(rows.iter().filter_map(rows::message).collect())
        })
        .await
    }

    /// Deletes the mailboxes idle past their expiry (a burned one past its
    /// retention), unless another instance is sweeping; notifies their
    /// waiters. Returns how many it deleted.
    pub(crate) async fn sweep(&self, now: Timestamp, config: &RendezvousConfig) -> Result<usize, WireError> {
        let expiry = millis_of(config.channel_expiry);
        let retention = millis_of(config.burned_retention);
        let now = rows::millis(now);
        let run = async {
            let mut client = self.client().await?;
            let failed = |e: tokio_postgres::Error| {
                self.mark(false);
                unavailable("cannot sweep", describe(&e))
            };
            let mut swept = 0;
            loop {
                // One scan finds a batch without locks; each shard's part is
                // then deleted in a transaction of its own: one that held the
                // counters of several shards could deadlock with operations
                // (which take one shard's).
                let found = client
                    .query(
                        concat!(
                            "SELECT appid, mailbox, wormhole_sync_shard(mailbox) FROM mailboxes WHERE ",
                            expired!(),
                            " LIMIT $4"
                        ),
                        &[&now, &expiry, &retention, &SWEEP_BATCH],
                    )
                    .await
                    .map_err(failed)?;
                let mut shards: BTreeMap<i16, (Vec<&str>, Vec<&str>)> = BTreeMap::new();
                for row in &found {
                    let (appids, mailboxes) = shards.entry(row.get(2)).or_default();
                    appids.push(row.get(0));
                    mailboxes.push(row.get(1));
                }
                let mut deleted_now = 0;
                for (appids, mailboxes) in shards.values() {
                    let deleted = sweep_some(&mut client, appids, mailboxes, [now, expiry, retention]);
                    match deleted.await.map_err(failed)? {
                        Some(deleted) => deleted_now += deleted,
                        None => return Ok(swept),
                    }
                }
                swept += deleted_now;
                // A short batch was the last; a full one whose mailboxes were
                // all held by operations would be read again unchanged, so
                // they are left for the next sweep.
                if found.len() < SWEEP_BATCH as usize || deleted_now == 0 {
                    break;
                }
            }
            self.clear_unused(&client).await;
            Ok(swept)
        };
        tokio::time::timeout(OPERATION_TIMEOUT, run).await.unwrap_or_else(|_| Err(unavailable("sweep", "timed out")))
    }
}

/// How many expired mailboxes the sweep reads at a time.
const SWEEP_BATCH: i64 = 5_000;

/// How many addresses, and counter rows, one sweep looks at for those
/// holding nothing any more: a sweep's cost stays the same whatever the
/// database holds, and a pass over all of them takes as many sweeps as
/// needed (idle counters harm nothing meanwhile).
const CLEAR_SLICE: i64 = 5_000;

/// Where the next sweep's look for unused addresses and counters starts:
/// after this address, and at this counter key (empty: from the first).
#[derive(Default)]
struct ClearCursor {
    poster: String,
    counter: (String, String),
}

/// Deletes the counter rows of the keys in the slice from `start` whose rows
/// sum to zero, and returns where the next slice starts. A key's rows return
/// to zero in sum (migration 4); rows in use are skipped, and of the rest
/// only a set that sums to zero goes, so the total is kept whatever runs
/// meanwhile. Each statement reads one range of the primary key or looks
/// keys up in it, so none grows with the table, whatever its statistics say.
async fn clear_idle_counters(
    client: &deadpool_postgres::Object,
    start: &(String, String),
) -> Result<(String, String), tokio_postgres::Error> {
    const KEYED: &str = "scope IN ('app', 'length', 'maker', 'poster') AND (scope, key) >= ($1, $2)";
    const IDLE: &str = "GROUP BY scope, key
                        HAVING sum(mailboxes) = 0 AND sum(tombstones) = 0 AND sum(nameplates) = 0
                           AND sum(messages) = 0 AND sum(bytes) = 0";
    let end = client
        .query_opt(
            &format!("SELECT scope, key FROM wormhole_sync_usage WHERE {KEYED} ORDER BY scope, key OFFSET $3 LIMIT 1"),
            &[&start.0, &start.1, &CLEAR_SLICE],
        )
        .await?
        .map(|row| (row.get::<_, String>(0), row.get::<_, String>(1)));
    let idle = match &end {
        Some((scope, key)) => {
            let sql =
                format!("SELECT scope, key FROM wormhole_sync_usage WHERE {KEYED} AND (scope, key) < ($3, $4) {IDLE}");
            client.query(&sql, &[&start.0, &start.1, scope, key]).await?
        }
        None => {
            client
                .query(
                    &format!("SELECT scope, key FROM wormhole_sync_usage WHERE {KEYED} {IDLE}"),
                    &[&start.0, &start.1],
                )
                .await?
        }
    };
    if !idle.is_empty() {
        // By scope, each key list an array the condition looks up (hashed, if
        // the planner scans), never a join that could loop over the table.
        let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for row in &idle {
            keys.entry(row.get(0)).or_default().push(row.get(1));
        }
        let [app, length, maker, poster] =
            ["app", "length", "maker", "poster"].map(|scope| keys.remove(scope).unwrap_or_default());
        let sql = format!(
            "WITH locked AS (
                 SELECT ctid AS row, scope, key, mailboxes, tombstones, nameplates, messages, bytes
                 FROM wormhole_sync_usage
                 WHERE (scope = 'app' AND key = ANY($1::TEXT[])) OR (scope = 'length' AND key = ANY($2::TEXT[]))
                    OR (scope = 'maker' AND key = ANY($3::TEXT[])) OR (scope = 'poster' AND key = ANY($4::TEXT[]))
                 FOR UPDATE SKIP LOCKED),
             zero AS (SELECT scope, key FROM locked {IDLE})
             DELETE FROM wormhole_sync_usage u USING locked JOIN zero USING (scope, key) WHERE u.ctid = locked.row"
        );
        client.execute(&sql, &[&app, &length, &maker, &poster]).await?;
    }
    // Past the last slice, the next starts from the first.
    Ok(end.unwrap_or_default())
}

impl Postgres {
    /// Deletes the app ids, and the slices of the addresses and usage
    /// counters after the cursor, that hold nothing any more. Counter rows
    /// in use are skipped, not waited for. None of it is needed to go on,
    /// so a failure is only logged.
    async fn clear_unused(&self, client: &deadpool_postgres::Object) {
        // The first mailbox of each app id, by the primary key: `NOT EXISTS`
        // was planned as a scan of every mailbox when one app id holds most.
        let apps = "WITH gone AS (
                        DELETE FROM wormhole_sync_apps a
                        WHERE (SELECT b.mailbox FROM mailboxes b WHERE b.appid = a.appid
                               ORDER BY b.mailbox LIMIT 1) IS NULL
                        RETURNING 1)
                    UPDATE wormhole_sync_usage SET apps = apps - (SELECT count(*) FROM gone)
                    WHERE scope = 'gone' AND key = '' AND shard = 0";
        let posters = "WITH slice AS (
                           SELECT poster FROM wormhole_sync_posters WHERE poster > $1 ORDER BY poster LIMIT $2),
                       gone AS (
                           DELETE FROM wormhole_sync_posters p USING slice s
                           WHERE p.poster = s.poster
                             AND NOT EXISTS (SELECT 1 FROM wormhole_sync_usage u
                                             WHERE u.scope = 'poster' AND u.key = p.poster HAVING sum(u.messages) <> 0)
                           RETURNING 1),
                       counted AS (
                           UPDATE wormhole_sync_usage SET posters = posters - (SELECT count(*) FROM gone)
                           WHERE scope = 'gone' AND key = '' AND shard = 0)
                       SELECT count(*), coalesce(max(poster), '') FROM slice";
        let (poster, counter) = {
            let cursor = self.clear_cursor.lock();
            (cursor.poster.clone(), cursor.counter.clone())
        };
        let cleared = async {
            client.execute(apps, &[]).await?;
            let row = client.query_one(posters, &[&poster, &CLEAR_SLICE]).await?;
            // A short slice was the last: the next starts from the first.
            let next_poster = if row.get::<_, i64>(0) < CLEAR_SLICE { String::new() } else { row.get(1) };
            let next_counter = clear_idle_counters(client, &counter).await?;
            Ok::<_, tokio_postgres::Error>((next_poster, next_counter))
        };
        match cleared.await {
            Ok((poster, counter)) => *self.clear_cursor.lock() = ClearCursor { poster, counter },
            Err(e) => tracing::debug!("clearing unused counters: {}", describe(&e)),
        }
    }
}

/// Deletes those of the named mailboxes that are still expired, unless
/// another instance is sweeping (then `None`); notifies their waiters.
async fn sweep_some(
    client: &mut deadpool_postgres::Object,
    appids: &[&str],
    mailboxes: &[&str],
    [now, expiry, retention]: [i64; 3],
) -> Result<Option<usize>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let locked: bool =
        tx.query_one("SELECT pg_try_advisory_xact_lock($1, $2)", &[&LOCK_CLASS, &SWEEP_LOCK]).await?.get(0);
    if !locked {
        return Ok(None);
    }
    // Mailboxes are locked before the counters, as operations lock them; one
    // an operation holds is left for the next sweep.
    let deleted = tx
        .query(
            concat!(
                "WITH expired AS (
                     SELECT appid, mailbox FROM mailboxes
                     WHERE (appid, mailbox) IN (SELECT * FROM unnest($4::TEXT[], $5::TEXT[])) AND ",
                expired!(),
                " FOR UPDATE SKIP LOCKED)
                 DELETE FROM mailboxes b USING expired e WHERE b.appid = e.appid AND b.mailbox = e.mailbox
                 RETURNING b.appid, b.mailbox"
            ),
            &[&now, &expiry, &retention, &appids, &mailboxes],
        )
        .await?;
    for row in &deleted {
        // An id that is not a mailbox's was never stored by a server: no waiter has it.
        let Some(mailbox) = MailboxId::new(row.get::<_, String>(1)) else { continue };
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &listen::payload(row.get(0), &mailbox, None)]).await?;
    }
    tx.commit().await?;
    Ok(Some(deleted.len()))
}

fn millis_of(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 4)
}
