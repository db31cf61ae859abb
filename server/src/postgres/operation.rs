//! Operations in a transaction: lock and load the mailboxes they name,
//! run the core on each in turn, write back what each changed, check the
//! caps and budgets that span the deployment, notify, commit. A batch of
//! operations shares one transaction and one commit ([`super::batch`]); a
//! read runs without one while it changes nothing worth writing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::GenericClient;
use rand_core::RngCore as _;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use wormhole_sync_core::rendezvous::{
    MailboxSnapshot, NameplatesInUse, Op, Outcome, Rendezvous, RendezvousSnapshot, Scope, Target,
};
use wormhole_sync_core::wire::{MailboxId, WireError};
use wormhole_sync_core::{ChannelId, Timestamp};

use super::rows::{self, MAILBOX_COLUMNS, MESSAGE_COLUMNS};
use super::writes::{self, Changed, Locks};
use crate::change::{Committed, MailboxNews, Ran};
use crate::ServerConfig;

/// The most an activity stamp may lag behind (see `stamp_step`).
const MAX_STAMP_STEP: Duration = Duration::from_secs(10);

/// Another transaction took a nameplate number this one took too (two
/// instances' allocations drew the same free number): running again draws
/// anew, and sees that one in use.
pub(super) fn is_nameplate_taken(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
        && e.as_db_error().and_then(|db| db.constraint()) == Some("mailboxes_nameplate")
}

/// A conflict with another transaction: running again sees its outcome.
pub(super) fn is_conflict(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code().is_some_and(|code| {
        [SqlState::UNIQUE_VIOLATION, SqlState::T_R_SERIALIZATION_FAILURE, SqlState::T_R_DEADLOCK_DETECTED]
            .contains(code)
    })
}

/// A mailbox by app id and id.
pub(super) type Key = (String, MailboxId);

fn key(appid: &str, mailbox: &MailboxId) -> Key {
    (appid.to_string(), mailbox.clone())
}

/// A mailbox as loaded: its instance, its last message's seq (0: none)
/// and its activity stamp.
pub(super) struct Loaded {
    pub(super) instance: u64,
    pub(super) max_seq: u64,
    pub(super) last_activity: Timestamp,
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
    /// A batch went past a cap or budget: run its operations one at a
    /// time, so only those past it are refused.
    OverCaps,
    /// No connection to run it on: this answer.
    Unavailable(WireError),
}

/// Why, for the debug log: a database's error by its code and message
/// (which name a constraint, not a row's values); a row the core cannot
/// read by its app id and mailbox, as the `storage-unavailable` warning
/// names it.
impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Database(e) => f.write_str(&super::describe(e)),
            Fail::Unreadable(why) => write!(f, "a stored mailbox cannot be read: {why}"),
            Fail::NeedsLock => f.write_str("a read would write"),
            Fail::OverCaps => f.write_str("past a cap or budget, or a new application id"),
            Fail::Unavailable(_) => f.write_str("no connection"),
        }
    }
}

/// An operation and the client it is charged to.
pub(super) type Charged<'a> = (&'a Op, Option<IpAddr>);

/// How a transaction takes the mailbox rows it loads.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Lock {
    /// Not at all (a read).
    None,
    /// Waiting for another transaction that holds one.
    Wait,
    /// Leaving those another transaction holds, and the operations that
    /// name them for a later transaction: a batch never waits for another
    /// instance's batch, so the two commit side by side.
    Skip,
}

/// The rows a [`Lock::Skip`] load left to another transaction, by each
/// way an operation names a mailbox.
#[derive(Default)]
struct Skipped {
    mailboxes: BTreeSet<Key>,
    nameplates: BTreeSet<(String, i32)>,
    allocators: BTreeSet<(String, String)>,
}

impl Skipped {
    /// Whether the mailbox `scope` names was left to another transaction.
    fn names(&self, scope: &Scope<'_>) -> bool {
        match scope.target {
            Target::Mailbox(id) => self.mailboxes.contains(&key(scope.appid, id)),
            Target::Nameplate(n) => self.nameplates.contains(&(scope.appid.to_string(), rows::nameplate_column(n))),
            Target::Allocator(side) => self.allocators.contains(&(scope.appid.to_string(), side.to_string())),
            Target::App => false,
        }
    }
}

/// Runs `ops` in order in the transaction `tx`: each sees what those
/// before it did. Returns what each did (`None`: left for a later
/// transaction, as [`Lock::Skip`] says), and how the transaction ends.
pub(super) async fn run_locked(
    tx: &impl GenericClient,
    config: &ServerConfig,
    ops: &[Charged<'_>],
    lock: Lock,
) -> Result<(Vec<Option<Ran>>, Ending), Box<Fail>> {
    let started = std::time::Instant::now();
    let scopes: Vec<Scope<'_>> = ops.iter().map(|(op, _)| op.scope()).collect();
    // How many operations of each app id may hand out or take back a number.
    let mut numbering: BTreeMap<&str, usize> = BTreeMap::new();
    for scope in scopes.iter().filter(|s| s.nameplates) {
        *numbering.entry(scope.appid).or_default() += 1;
    }
    // The counts of numbers in use go out with the load.
    let ((mut core, mut stored, skipped), in_use) =
        futures_util::future::try_join(load(tx, config, &scopes, lock), count_nameplates(tx, &numbering)).await?;
    let loaded = started.elapsed();
    let mut left: Vec<bool> = scopes.iter().map(|scope| skipped.names(scope)).collect();
    if !numbering.is_empty() {
        check_nameplates(tx, &mut core, &numbering, &in_use).await?;
    }
    let (mut changed, mut applied) = apply(config, &mut core, ops, &scopes, &left);
    if core.needs_every_nameplate() {
        // Rare (a count that was off, a length nearly full): the same
        // operations again, in a view told every number in use.
        tracing::debug!("an allocation ran past the numbers checked: reading every number in use");
        let (again, again_stored, again_skipped) = load(tx, config, &scopes, lock).await?;
        (core, stored) = (again, again_stored);
        // Rows another transaction took since are left for later too.
        for (left, scope) in left.iter_mut().zip(&scopes) {
            *left |= again_skipped.names(scope);
        }
        reserve_every_nameplate(tx, &mut core, numbering.keys().copied().collect()).await?;
        (changed, applied) = apply(config, &mut core, ops, &scopes, &left);
    }
    let (plan, written) = writes::plan(&core, &changed, &stored, stamp_step(config));
    let locks = Locks::of(&written, config.max_channels_per_address > 0);
    // The caps are read right after the writes, in their pipeline. A batch
    // sends its COMMIT in that pipeline too, behind a guard that fails it
    // past a cap or at a new app id: one round trip fewer. A lone operation
    // run again after such a failure judges them here, to be refused the
    // right way.
    let checks = super::caps::checks(config, &written);
    let commit_now = lock == Lock::Skip;
    let statement = if commit_now { checks.guarded_statement() } else { checks.statement() };
    // The mailboxes with news, each with the state the commit leaves it in
    // (that of a mailbox made in this transaction once its instance is known).
    let mut news: BTreeMap<Key, Option<Arc<Committed>>> = applied
        .iter()
        .flatten()
        .flat_map(|(_, changes, _)| changes.mailboxes.iter().filter(|change| change.news))
        .map(|change| key(&change.appid, &change.mailbox))
        .map(|key| {
            let instance = stored.get(&key).map(|s| s.instance).filter(|_| changed.made_at(&key).is_none());
            let committed = instance.zip(core.mailbox_snapshot(&key.0, &key.1));
            let committed = committed.map(|(instance, snapshot)| Arc::new(Committed { instance, snapshot }));
            (key, committed)
        })
        .collect();
    // Announced behind a commit in the pipeline.
    let payloads: Vec<String> = news
        .iter()
        .map(|((appid, mailbox), committed)| super::listen::payload(appid, mailbox, committed.as_deref()))
        .collect();
    let answers = match plan.execute(tx, &locks, statement, commit_now.then_some(&payloads)).await {
        Err(fail) if matches!(&*fail, Fail::Database(e) if super::caps::is_past_caps(e)) => {
            return Err(Box::new(Fail::OverCaps));
        }
        answers => answers?,
    };
    let values = checks.values(answers.after.as_ref());
    let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    tracing::debug!(
        mailboxes = stored.len(),
        load_us = micros(loaded),
        write_us = micros(started.elapsed() - loaded),
        "a transaction's statements"
    );

    for (key, committed) in news.iter_mut().filter(|(_, committed)| committed.is_none()) {
        if let (Some(&instance), Some(snapshot)) = (answers.instances.get(key), core.mailbox_snapshot(&key.0, &key.1)) {
            *committed = Some(Arc::new(Committed { instance, snapshot }));
        }
    }
    let mut rans = Vec::with_capacity(ops.len());
    for (i, (applied, scope)) in applied.into_iter().zip(&scopes).enumerate() {
        let Some((result, changes, present)) = applied else {
            rans.push(None);
            continue;
        };
        let instance = match scope.target {
            Target::Mailbox(id) if present => {
                let key = key(scope.appid, id);
                match changed.made_at(&key) {
                    Some(made) if made <= i => answers.instances.get(&key).copied(),
                    _ => stored.get(&key).map(|s| s.instance),
                }
            }
            _ => None,
        };
        let news = changes
            .mailboxes
            .into_iter()
            .filter(|change| change.news)
            .map(|change| {
                let committed = news.get(&key(&change.appid, &change.mailbox)).cloned().flatten();
                MailboxNews { appid: change.appid, mailbox: change.mailbox, committed }
            })
            .collect();
        let result = result.map(|answered| Outcome { instance, ..answered });
        rans.push(Some(Ran { result, news, finished: changes.finished }));
    }
    if commit_now {
        return Ok((rans, Ending::Committed { notified: answers.notified }));
    }
    if let Some(refusal) = super::caps::over_caps(tx, config, &checks, &values).await? {
        if ops.len() > 1 {
            return Err(Box::new(Fail::OverCaps));
        }
        let refused = Ran { result: Err(refusal), news: Vec::new(), finished: Vec::new() };
        return Ok((vec![Some(refused)], Ending::Rollback));
    }
    Ok((rans, Ending::Commit))
}

/// How a transaction whose operations ran ends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Ending {
    /// To be committed.
    Commit,
    /// To be rolled back: a lone operation was refused past a cap, and
    /// nothing it wrote stays.
    Rollback,
    /// Committed already, in the pipeline of its writes; `notified` if its
    /// news was announced there too.
    Committed { notified: bool },
}

/// What running one operation gave: its result, what it changed, and
/// whether the mailbox it names is there after it.
type Applied = Option<(Result<Outcome, WireError>, wormhole_sync_core::rendezvous::Changes, bool)>;

/// Runs every operation not `left` on `core`, in order. Every operation runs
/// before anything is written, so the rows the writes will lock are known
/// and locked in one order (see `Locks`), and each kind of write is one
/// statement for all of them.
fn apply(
    config: &ServerConfig,
    core: &mut Rendezvous,
    ops: &[Charged<'_>],
    scopes: &[Scope<'_>],
    left: &[bool],
) -> (Changed, Vec<Applied>) {
    let mut changed = Changed::default();
    let mut applied = Vec::with_capacity(ops.len());
    for (i, ((op, client), scope)) in ops.iter().zip(scopes).enumerate() {
        if left[i] {
            applied.push(None);
            continue;
        }
        let result = core.apply(config.clock.now(), op);
        let changes = core.take_changes();
        changed.add(i, *client, &changes.mailboxes);
        let present = scope.mailbox().is_some_and(|id| core.contains_mailbox(scope.appid, id));
        applied.push(Some((result, changes, present)));
    }
    (changed, applied)
}

/// Runs a read (`scope().reads`) without locks or a transaction: its
/// outcome, or [`Fail::NeedsLock`] if it would change more than an
/// activity stamp that moved little.
pub(super) async fn run_unlocked(
    client: &impl GenericClient,
    config: &ServerConfig,
    op: &Op,
) -> Result<Ran, Box<Fail>> {
    let (mut core, stored, _) = load(client, config, std::slice::from_ref(&op.scope()), Lock::None).await?;
    let result = read_without_writes(config, &mut core, &stored, op)?;
    Ok(Ran { result, news: Vec::new(), finished: Vec::new() })
}

/// Runs a read on the state the commit `committed` announced, without the
/// database (see `App::long_poll`): its outcome, or `None` when it must run
/// on the stored state (the state is not of the mailbox it names, it would
/// write, or it was refused).
pub(crate) fn read_committed(config: &ServerConfig, op: &Op, committed: &Committed) -> Option<Outcome> {
    let (scope, snapshot) = (op.scope(), &committed.snapshot);
    let names_it = scope.reads
        && scope.appid == snapshot.appid
        && match scope.target {
            Target::Mailbox(id) => *id == snapshot.mailbox,
            Target::Nameplate(n) => snapshot.holds_nameplate && snapshot.nameplate == Some(n),
            Target::Allocator(_) | Target::App => false,
        };
    if !names_it {
        return None;
    }
    let restored = RendezvousSnapshot::new(vec![snapshot.clone()]);
    let mut core = Rendezvous::restore(config.rendezvous.clone(), restored, seed()).ok()?;
    let loaded = Loaded {
        instance: committed.instance,
        max_seq: snapshot.messages.last().map_or(0, |m| m.seq),
        last_activity: snapshot.last_activity,
    };
    let stored = HashMap::from([(key(&snapshot.appid, &snapshot.mailbox), loaded)]);
    read_without_writes(config, &mut core, &stored, op).ok()?.ok()
}

/// Runs a read on `core`, which holds the mailboxes `stored` loaded: its
/// outcome, with the instance of the mailbox it reached, or
/// [`Fail::NeedsLock`] if it would change more than an activity stamp that
/// moved little.
fn read_without_writes(
    config: &ServerConfig,
    core: &mut Rendezvous,
    stored: &HashMap<Key, Loaded>,
    op: &Op,
) -> Result<Result<Outcome, WireError>, Box<Fail>> {
    let scope = op.scope();
    let reached = match scope.target {
        Target::Mailbox(id) => Some(id.clone()),
        Target::Nameplate(n) => core.mailbox_of(scope.appid, n).cloned(),
        Target::Allocator(_) | Target::App => None,
    };
    let result = core.apply(config.clock.now(), op);
    let changes = core.take_changes();
    if writes::writes(&changes.mailboxes, stored, stamp_step(config)) {
        return Err(Box::new(Fail::NeedsLock));
    }
    let instance = reached.and_then(|id| stored.get(&key(scope.appid, &id))).map(|s| s.instance);
    Ok(result.map(|answered| Outcome { instance, ..answered }))
}

/// A seed for a core restored to run operations: drawn anew each time, as
/// a core's own would be.
fn seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut seed);
    seed
}

/// Activity stamps are soft state: one that moved less than this is not
/// written, so most fetches write nothing.
fn stamp_step(config: &ServerConfig) -> Duration {
    let rendezvous = &config.rendezvous;
    (rendezvous.channel_expiry.min(rendezvous.burned_retention) / 100).min(MAX_STAMP_STEP)
}

/// Loads the mailboxes `scopes` name (locked, when `lock`) with their
/// messages into a core of their own.
async fn load<'a>(
    tx: &impl GenericClient,
    config: &ServerConfig,
    scopes: &[Scope<'a>],
    lock: Lock,
) -> Result<(Rendezvous, HashMap<Key, Loaded>, Skipped), Box<Fail>> {
    let mut by_id: (Vec<&str>, Vec<&str>) = Default::default();
    let mut by_nameplate: (Vec<&str>, Vec<i32>) = Default::default();
    let mut by_allocator: (Vec<&str>, Vec<&str>) = Default::default();
    // Each name once: a mailbox two operations name (the two sides of an
    // exchange, most often) is one row, its messages loaded once.
    let mut named_once = BTreeSet::new();
    let name = |scope: &Scope<'a>| match scope.target {
        Target::Mailbox(id) => (scope.appid, 0, id.as_str(), 0),
        Target::Nameplate(n) => (scope.appid, 1, "", rows::nameplate_column(n)),
        Target::Allocator(side) => (scope.appid, 2, side, 0),
        Target::App => (scope.appid, 3, "", 0),
    };
    for scope in scopes.iter().filter(|scope| named_once.insert(name(scope))) {
        match scope.target {
            Target::Mailbox(id) => (by_id.0.push(scope.appid), by_id.1.push(id.as_str())),
            Target::Nameplate(n) => (by_nameplate.0.push(scope.appid), by_nameplate.1.push(rows::nameplate_column(n))),
            Target::Allocator(side) => (by_allocator.0.push(scope.appid), by_allocator.1.push(side)),
            // No mailbox (the engine answers `list` with a query of its own).
            Target::App => ((), ()),
        };
    }
    // One statement, so the rows are locked in one order (the key's) by
    // every transaction, with each mailbox's messages (one row each).
    let for_update = match lock {
        Lock::None => "",
        Lock::Wait => "FOR UPDATE OF b",
        Lock::Skip => "FOR UPDATE OF b SKIP LOCKED",
    };
    // The names come as pairs of arrays (app id and mailbox, nameplate or
    // allocating side; only the kinds given are written), and each pair is
    // looked up on its own in the unique index that finds it (so `LIMIT 1`
    // loses nothing). A condition `appid = ANY(..) AND mailbox = ANY(..)`
    // was costed as every pair of the arrays' elements, and with a hundred
    // names the planner scanned the whole table instead (50 ms at 500,000
    // mailboxes); a plain join is misjudged when the statistics are off.
    let lookup = |name: &str, condition: &str| {
        format!(
            "SELECT b.appid, b.mailbox FROM unnest($a::TEXT[], $n::{name}) AS n(appid, name)
             CROSS JOIN LATERAL (SELECT b.appid, b.mailbox FROM mailboxes b
                                 WHERE b.appid = n.appid AND {condition} LIMIT 1) b"
        )
    };
    let named: [(String, &Vec<&str>, &(dyn ToSql + Sync)); 3] = [
        (lookup("TEXT[]", "b.mailbox = n.name"), &by_id.0, &by_id.1),
        (lookup("INT[]", "b.nameplate = n.name AND b.holds_nameplate"), &by_nameplate.0, &by_nameplate.1),
        (lookup("TEXT[]", "b.allocator = n.name"), &by_allocator.0, &by_allocator.1),
    ];
    let mut branches = Vec::new();
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
    for (sql, appids, names) in named.into_iter().filter(|(_, appids, _)| !appids.is_empty()) {
        let n = params.len();
        branches.push(sql.replace("$a", &format!("${}", n + 1)).replace("$n", &format!("${}", n + 2)));
        params.extend([appids as &(dyn ToSql + Sync), names]);
    }
    // The keys of the named rows that exist, without locks.
    let named_keys = format!("WITH named AS ({}) ", branches.join(" UNION "));
    // A lock is taken when a row is reached, after the statement's snapshot:
    // messages another transaction stored and committed while this one
    // waited for (or came upon) the mailbox's lock are not in that
    // snapshot. So a locking load reads the messages in a statement of its
    // own, sent in the same pipeline, whose snapshot is taken once the locks
    // are held; an unlocked read reads all in one statement, one snapshot.
    let one_by_id = matches!((&by_id.0[..], &by_nameplate.0[..], &by_allocator.0[..]), ([_], [], []));
    let (found, messages) = match (branches.is_empty(), one_by_id, lock) {
        (true, _, _) => (Vec::new(), Vec::new()),
        // One mailbox by id (a lone read, most often): a statement whose plan
        // the connection keeps, where the arrays' is made again each time.
        (false, true, Lock::None) => {
            let sql = format!(
                "SELECT {MAILBOX_COLUMNS}, {MESSAGE_COLUMNS} FROM mailboxes b
                 LEFT JOIN mailbox_messages m ON m.appid = b.appid AND m.mailbox = b.mailbox
                 WHERE b.appid = $1 AND b.mailbox = $2 ORDER BY m.seq"
            );
            (query(tx, &sql, &[&by_id.0[0], &by_id.1[0]]).await?, Vec::new())
        }
        (false, true, _) => {
            let mailbox =
                format!("SELECT {MAILBOX_COLUMNS} FROM mailboxes b WHERE b.appid = $1 AND b.mailbox = $2 {for_update}");
            let messages = format!(
                "SELECT {MESSAGE_COLUMNS}, m.appid, m.mailbox FROM mailbox_messages m
                 WHERE m.appid = $1 AND m.mailbox = $2 ORDER BY m.seq"
            );
            locked_then_read(tx, [mailbox, messages], vec![&by_id.0[0], &by_id.1[0]]).await?
        }
        (false, false, Lock::None) => {
            let sql = format!(
                "{named_keys} SELECT {MAILBOX_COLUMNS}, {MESSAGE_COLUMNS} FROM mailboxes b
                 JOIN named k ON k.appid = b.appid AND k.mailbox = b.mailbox
                 LEFT JOIN mailbox_messages m ON m.appid = b.appid AND m.mailbox = b.mailbox
                 ORDER BY b.appid, b.mailbox, m.seq"
            );
            (query(tx, &sql, &params).await?, Vec::new())
        }
        (false, false, _) => {
            let mailboxes = format!(
                "{named_keys} SELECT {MAILBOX_COLUMNS} FROM mailboxes b
                 JOIN named k ON k.appid = b.appid AND k.mailbox = b.mailbox
                 ORDER BY b.appid, b.mailbox {for_update}"
            );
            let messages = format!(
                "{named_keys} SELECT {MESSAGE_COLUMNS}, m.appid, m.mailbox FROM mailbox_messages m
                 JOIN named k ON k.appid = m.appid AND k.mailbox = m.mailbox
                 ORDER BY m.appid, m.mailbox, m.seq"
            );
            locked_then_read(tx, [mailboxes, messages], params.clone()).await?
        }
    };
    let unreadable = || Box::new(Fail::Unreadable(Box::new("invalid mailbox row")));
    let mut snapshots: BTreeMap<Key, MailboxSnapshot> = BTreeMap::new();
    let mut stored = HashMap::new();
    let mut in_order = Vec::new();
    for row in &found {
        let (snapshot, instance) = rows::mailbox(row).ok_or_else(unreadable)?;
        let key = key(&snapshot.appid, &snapshot.mailbox);
        if lock == Lock::None {
            in_order.extend(rows::message_after_mailbox(row).map(|message| (key.clone(), message)));
        }
        stored.entry(key.clone()).or_insert_with(|| Loaded {
            instance,
            max_seq: 0,
            last_activity: snapshot.last_activity,
        });
        snapshots.entry(key).or_insert(snapshot);
    }
    for row in &messages {
        let mailbox = MailboxId::new(row.get::<_, String>("mailbox")).ok_or_else(unreadable)?;
        in_order.push(((row.get("appid"), mailbox), rows::message(row).ok_or_else(unreadable)?));
    }
    for (key, message) in in_order {
        // Only to a mailbox loaded: a locking load's messages may be of one it
        // left to another transaction.
        if let (Some(snapshot), Some(loaded)) = (snapshots.get_mut(&key), stored.get_mut(&key)) {
            loaded.max_seq = loaded.max_seq.max(message.seq);
            snapshot.messages.push(message);
        }
    }
    // What another transaction holds: named, there, and not loaded. Asked
    // only when a mailbox named by id or nameplate found no row (most often
    // none is held), which spares most batches a statement. An allocating
    // side's name is not asked about: it is new almost always, and the rare
    // one another transaction holds (a side's allocation retried on another
    // instance while the first runs) meets the allocator's unique index,
    // and its batch runs one operation per transaction.
    let mut skipped = Skipped::default();
    let all_found = || {
        let loaded = |appid: &str, found: &dyn Fn(&MailboxSnapshot) -> bool| {
            snapshots.iter().any(|((a, _), snapshot)| a == appid && found(snapshot))
        };
        by_id.0.iter().zip(&by_id.1).all(|(appid, id)| loaded(appid, &|s| s.mailbox.as_str() == *id))
            && by_nameplate.0.iter().zip(&by_nameplate.1).all(|(appid, n)| {
                loaded(appid, &|s| s.holds_nameplate && s.nameplate.map(rows::nameplate_column) == Some(*n))
            })
    };
    if lock == Lock::Skip && !branches.is_empty() && !all_found() {
        let sql = format!(
            "{named_keys} SELECT b.appid, b.mailbox, b.nameplate, b.holds_nameplate, b.allocator FROM mailboxes b
             JOIN named k ON k.appid = b.appid AND k.mailbox = b.mailbox"
        );
        for row in query(tx, &sql, &params).await? {
            let Some(mailbox) = MailboxId::new(row.get::<_, String>(1)) else { continue };
            let key = (row.get::<_, String>(0), mailbox);
            if snapshots.contains_key(&key) {
                continue;
            }
            if let (Some(nameplate), true) = (row.get::<_, Option<i32>>(2), row.get::<_, bool>(3)) {
                skipped.nameplates.insert((key.0.clone(), nameplate));
            }
            if let Some(side) = row.get::<_, Option<String>>(4) {
                skipped.allocators.insert((key.0.clone(), side));
            }
            skipped.mailboxes.insert(key);
        }
    }
    let snapshot = RendezvousSnapshot::new(snapshots.into_values().collect());
    let core = Rendezvous::restore(config.rendezvous.clone(), snapshot, seed())
        .map_err(|e| Box::new(Fail::Unreadable(Box::new(e.0))))?;
    Ok((core, stored, skipped))
}

/// Runs the statement that locks the mailboxes and then the one that reads
/// their messages, in one pipeline and in that order, so the second's
/// snapshot is taken once the locks are held; their rows.
async fn locked_then_read(
    tx: &impl GenericClient,
    [lock, read]: [String; 2],
    params: Vec<&(dyn ToSql + Sync)>,
) -> Result<(Vec<Row>, Vec<Row>), Box<Fail>> {
    let mut pipeline = writes::Pipeline::default();
    pipeline.push(lock, params.clone());
    pipeline.push(read, params);
    let mut rows = pipeline.run(tx).await?.into_iter();
    Ok((rows.next().unwrap_or_default(), rows.next().unwrap_or_default()))
}

/// The counter keys of an app id's numbers in use, one per length (as
/// migration 5 names them): `digits:appid`.
fn length_keys(appid: &str) -> impl Iterator<Item = (u32, String)> + '_ {
    (1..=9).map(move |digits| (digits, format!("{digits}:{appid}")))
}

/// How many numbers each app id in `numbering` has in use, by length.
/// No lock: two instances' batches allocate side by side, and the rare
/// number both drew fails one of them on the unique index
/// ([`is_nameplate_taken`]), which runs again. Taking turns on a lock held
/// to the commit made every allocating batch of one app id wait for the
/// other instance's, so two instances did fewer exchanges than one.
async fn count_nameplates(
    tx: &impl GenericClient,
    numbering: &BTreeMap<&str, usize>,
) -> Result<BTreeMap<String, NameplatesInUse>, Box<Fail>> {
    if numbering.is_empty() {
        return Ok(BTreeMap::new());
    }
    let appids: Vec<&str> = numbering.keys().copied().collect();
    let keys: Vec<String> = appids.iter().flat_map(|appid| length_keys(appid).map(|(_, key)| key)).collect();
    let count = "SELECT key, sum(nameplates)::BIGINT FROM wormhole_sync_usage
                 WHERE scope = 'length' AND key = ANY($1::TEXT[]) GROUP BY key";
    let counted: HashMap<String, i64> =
        query(tx, count, &[&keys]).await?.iter().map(|row| (row.get(0), row.get(1))).collect();
    let mut in_use = BTreeMap::new();
    for appid in appids {
        let counts: &mut NameplatesInUse = in_use.entry(appid.to_string()).or_default();
        for (digits, key) in length_keys(appid) {
            counts.add(digits, counted.get(&key).copied().unwrap_or(0));
        }
    }
    Ok(in_use)
}

/// Tells the core how many numbers each app id in `numbering` has in use,
/// and which of the numbers it asks about are: index lookups, as many as
/// the core asks (a handful per allocation), whatever the app ids hold.
async fn check_nameplates(
    tx: &impl GenericClient,
    core: &mut Rendezvous,
    numbering: &BTreeMap<&str, usize>,
    in_use: &BTreeMap<String, NameplatesInUse>,
) -> Result<(), Box<Fail>> {
    let (mut appids, mut numbers): (Vec<&str>, Vec<i32>) = Default::default();
    for (&appid, &allocations) in numbering {
        let counts = in_use.get(appid).copied().unwrap_or_default();
        for number in core.nameplates_to_check(appid, &counts, allocations) {
            appids.push(appid);
            numbers.push(rows::nameplate_column(number));
        }
    }
    // Each number looked up on its own in the unique index (as `load` looks
    // up names). As `EXISTS`, the planner may judge the index small enough
    // to read whole and join: with statistics taken before the numbers in
    // use grew (the table's other rows outnumber them, so a new analysis is
    // far off), that read every number in use, 2 ms per allocation at a
    // million messages stored and 21 ms at 20,000 numbers in use.
    let used = query(
        tx,
        "SELECT c.appid, c.nameplate FROM unnest($1::TEXT[], $2::INT[]) AS c(appid, nameplate)
         CROSS JOIN LATERAL (SELECT 1 FROM mailboxes b
                             WHERE b.appid = c.appid AND b.nameplate = c.nameplate AND b.holds_nameplate
                             LIMIT 1) b",
        &[&appids, &numbers],
    )
    .await?;
    reserve(core, &used);
    Ok(())
}

/// Tells the core every number `appids` have in use: as many rows as they
/// hold, for the rare allocation that ran past the numbers it checked.
async fn reserve_every_nameplate(
    tx: &impl GenericClient,
    core: &mut Rendezvous,
    appids: Vec<&str>,
) -> Result<(), Box<Fail>> {
    let held = query(
        tx,
        "SELECT appid, nameplate FROM mailboxes WHERE appid = ANY($1::TEXT[]) AND holds_nameplate",
        &[&appids],
    )
    .await?;
    reserve(core, &held);
    Ok(())
}

/// Reserves in `core` the numbers of `rows` (app id, number) it has not
/// loaded.
fn reserve(core: &mut Rendezvous, rows: &[Row]) {
    let mut others: BTreeMap<String, Vec<ChannelId>> = BTreeMap::new();
    for row in rows {
        let appid: String = row.get(0);
        let Some(nameplate) = u32::try_from(row.get::<_, i32>(1)).ok().and_then(ChannelId::new) else { continue };
        if core.mailbox_of(&appid, nameplate).is_none() {
            others.entry(appid).or_default().push(nameplate);
        }
    }
    for (appid, numbers) in others {
        core.reserve_nameplates(&appid, numbers);
    }
}

// Statements are prepared once per connection and cached: parsing and
// planning each one anew cost the database more than running it.

pub(super) async fn query(
    tx: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, Box<Fail>> {
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
