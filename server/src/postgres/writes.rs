//! What a transaction writes: the net change its operations made to each
//! mailbox (the core's state at the end against the rows loaded at the
//! start), written one statement per kind of write, however many mailboxes
//! and messages the batch touched. The database's cost is per statement
//! (and its triggers' per statement: migration 4) far more than per row.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use deadpool_postgres::GenericClient;
use rand_core::RngCore as _;
use tokio_postgres::types::ToSql;
use wormhole_sync_core::rendezvous::{MailboxChange, MailboxSnapshot, Persist, Rendezvous};
use wormhole_sync_core::wire::{MailboxId, Message};

use super::operation::{Fail, Key, Loaded};
use super::rows;

/// What the operations of a transaction did to one mailbox.
#[derive(Default)]
struct Touched {
    /// An operation deleted it (and may have made it anew under its id).
    deleted: bool,
    /// More than its activity stamp and log changed.
    reshaped: bool,
    /// The first operation that made it (anew), and the client charged.
    made: Option<(usize, Option<String>)>,
    /// Who is charged with each message appended, by seq.
    posters: HashMap<u64, Option<String>>,
}

/// The changes of a transaction's operations, gathered in their order.
pub(super) struct Changed {
    touched: BTreeMap<Key, Touched>,
    /// Only soft state changed (see [`MailboxChange::is_soft`]).
    soft: bool,
}

impl Default for Changed {
    fn default() -> Changed {
        Changed { touched: BTreeMap::new(), soft: true }
    }
}

impl Changed {
    /// Adds what operation `op` (run for `client`) changed.
    pub(super) fn add(&mut self, op: usize, client: Option<IpAddr>, changes: &[MailboxChange]) {
        // The client charged: the poster of the messages it stores, the maker
        // of the channel it makes.
        let charged = client.map(|ip| crate::client_address::subscriber(ip).to_string());
        self.soft &= changes.iter().all(MailboxChange::is_soft);
        for change in changes {
            let touched = self.touched.entry((change.appid.clone(), change.mailbox.clone())).or_default();
            touched.deleted |= change.deleted;
            touched.reshaped |= !matches!(change.persist, Persist::Activity { .. });
            let made_anew = change.deleted && change.persist != Persist::Gone;
            // The first operation that made it, or the last that made it anew.
            if (change.created && touched.made.is_none()) || made_anew {
                touched.made = Some((op, charged.clone().filter(|_| change.created)));
            }
            for message in &change.appended {
                touched.posters.insert(message.seq, charged.clone());
            }
        }
    }

    /// The operation after which `key`'s row is a new one, if it is.
    pub(super) fn made_at(&self, key: &Key) -> Option<usize> {
        self.touched.get(key)?.made.as_ref().map(|(op, _)| *op)
    }
}

/// Taken before the writes: the makers' caps (when capped), locked in one
/// order every transaction follows; and the shard of the usage counters the
/// writes are counted on (migration 4), one per transaction, drawn at
/// random, so concurrent transactions rarely meet on a counter row and
/// never deadlock on them.
pub(super) struct Locks {
    makers: Vec<String>,
    shard: String,
}

impl Locks {
    /// The locks the writes of `written` need; makers' only when their
    /// caps are on.
    pub(super) fn of(written: &Written, makers_capped: bool) -> Locks {
        let makers: BTreeSet<&String> = if makers_capped { written.makers.iter().collect() } else { BTreeSet::new() };
        let makers = makers.into_iter().cloned().collect();
        let shard = (rand_core::OsRng.next_u32() % COUNTER_SHARDS).to_string();
        Locks { makers, shard }
    }
}

/// The usage counters' shards (`wormhole_sync_shard` in migration 3).
const COUNTER_SHARDS: u32 = 16;

/// What a transaction wrote, for the caps and budgets it must check.
#[derive(Default)]
pub(super) struct Written {
    /// Mailboxes made (the app ids they were made in, one entry each).
    pub(super) made: Vec<String>,
    /// Messages stored: their app ids and posters (whose budgets to check).
    pub(super) stored: Vec<(String, Option<String>)>,
    /// The clients that made channels (whose caps to check).
    pub(super) makers: Vec<String>,
}

/// A statement and its parameters.
pub(super) type Statement<'a> = (String, Vec<&'a (dyn ToSql + Sync)>);

/// What the writes answered: the instance numbers of the mailboxes
/// inserted, and the row of the statement run after them, if any.
pub(super) struct Answers {
    pub(super) instances: HashMap<Key, u64>,
    pub(super) after: Option<tokio_postgres::Row>,
    /// The news was announced, behind the commit.
    pub(super) notified: bool,
}

/// The rows to write, one list per statement.
#[derive(Default)]
pub(super) struct Plan<'a> {
    /// Only soft state: the commit need not wait for the log's flush.
    soft: bool,
    delete: Vec<&'a Key>,
    insert: Vec<(MailboxSnapshot, Option<&'a str>)>,
    update: Vec<MailboxSnapshot>,
    /// Messages after this seq go (a tombstone keeps no log).
    truncate: Vec<(&'a Key, i64)>,
    messages: Vec<(&'a Key, Message, Option<&'a str>)>,
}

/// The writes of the net change of `changed` (the core's state in `core`,
/// against the rows `loaded`), and what they will have written; a stamp
/// that moved less than `stamp_step` alone is not written.
pub(super) fn plan<'a>(
    core: &Rendezvous,
    changed: &'a Changed,
    loaded: &HashMap<Key, Loaded>,
    stamp_step: std::time::Duration,
) -> (Plan<'a>, Written) {
    let mut plan = Plan { soft: changed.soft, ..Plan::default() };
    let mut written = Written::default();
    for (key, touched) in &changed.touched {
        let now = core.mailbox_snapshot(&key.0, &key.1);
        let was = loaded.get(key);
        if was.is_some() && (touched.deleted || now.is_none()) {
            plan.delete.push(key);
        }
        let Some(now) = now else { continue };
        let fresh = was.is_none() || touched.deleted;
        let after = if fresh { 0 } else { was.map_or(0, |w| w.max_seq) };
        for message in now.messages.iter().filter(|m| m.seq > after) {
            let poster = touched.posters.get(&message.seq).and_then(Option::as_deref);
            plan.messages.push((key, message.clone(), poster));
            written.stored.push((key.0.clone(), poster.map(str::to_string)));
        }
        match was {
            _ if fresh => {
                let maker = touched.made.as_ref().and_then(|(_, maker)| maker.as_deref());
                written.made.push(key.0.clone());
                written.makers.extend(maker.map(str::to_string));
                plan.insert.push((now, maker));
            }
            Some(was) => {
                let last = now.messages.last().map_or(0, |m| m.seq);
                if last < was.max_seq {
                    plan.truncate.push((key, i64::try_from(last).unwrap_or(i64::MAX)));
                }
                // A message appended is its own row: the mailbox's needs
                // writing only for more than a stamp that moved a little.
                let moved = now.last_activity.saturating_since(was.last_activity) >= stamp_step;
                if touched.reshaped || moved {
                    plan.update.push(now);
                }
            }
            None => {}
        }
    }
    (plan, written)
}

/// A mailbox row's columns, as arrays of one statement's parameters.
#[derive(Default)]
struct Columns<'a> {
    appid: Vec<&'a str>,
    mailbox: Vec<&'a str>,
    nameplate: Vec<Option<i32>>,
    holds_nameplate: Vec<bool>,
    allocator: Vec<Option<&'a str>>,
    members: Vec<String>,
    burned: Vec<bool>,
    tombstone: Vec<bool>,
    last_activity: Vec<i64>,
}

impl<'a> Columns<'a> {
    fn of(snapshots: impl Iterator<Item = &'a MailboxSnapshot>) -> Columns<'a> {
        let mut c = Columns::default();
        for s in snapshots {
            c.appid.push(&s.appid);
            c.mailbox.push(s.mailbox.as_str());
            c.nameplate.push(s.nameplate.map(rows::nameplate_column));
            c.holds_nameplate.push(s.holds_nameplate);
            c.allocator.push(rows::allocator(s));
            c.members.push(serde_json::to_string(&s.members).expect("members serialize"));
            c.burned.push(s.burned);
            c.tombstone.push(s.is_tombstone());
            c.last_activity.push(rows::millis(s.last_activity));
        }
        c
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 9] {
        [
            &self.appid,
            &self.mailbox,
            &self.nameplate,
            &self.holds_nameplate,
            &self.allocator,
            &self.members,
            &self.burned,
            &self.tombstone,
            &self.last_activity,
        ]
    }
}

/// The statements of a plan, run as one pipeline: sent together, in order,
/// without waiting for each answer (the first to fail fails the rest).
#[derive(Default)]
pub(super) struct Pipeline<'a> {
    statements: Vec<Statement<'a>>,
}

impl<'a> Pipeline<'a> {
    pub(super) fn push(&mut self, sql: impl Into<String>, params: Vec<&'a (dyn ToSql + Sync)>) -> usize {
        self.statements.push((sql.into(), params));
        self.statements.len() - 1
    }

    /// Runs the statements; returns each one's rows.
    pub(super) async fn run(&self, tx: &impl GenericClient) -> Result<Vec<Vec<tokio_postgres::Row>>, Box<Fail>> {
        let (rows, _) = self.run_then(tx, None).await?;
        Ok(rows)
    }

    /// Runs the statements, then `tail` in the same pipeline, whose failure
    /// fails only it (returned beside the rows).
    async fn run_then(
        &self,
        tx: &impl GenericClient,
        tail: Option<&Statement<'a>>,
    ) -> Result<(Vec<Vec<tokio_postgres::Row>>, Option<Result<(), tokio_postgres::Error>>), Box<Fail>> {
        // Prepared first (cached: no round trip after the first time), so the
        // pipeline's order is the statements' order.
        let mut prepared = Vec::with_capacity(self.statements.len());
        for (sql, _) in self.statements.iter().chain(tail) {
            prepared.push(tx.prepare_cached(sql.as_str()).await?);
        }
        let tail = tail.zip(prepared.get(self.statements.len()));
        let queries = prepared.iter().zip(&self.statements).map(|(statement, (_, params))| tx.query(statement, params));
        let tail = async {
            match tail {
                Some(((_, params), statement)) => Some(tx.query(statement, params).await.map(drop)),
                None => None,
            }
        };
        // Polled in order, so sent in order.
        let (rows, tail) = futures_util::future::join(futures_util::future::try_join_all(queries), tail).await;
        Ok((rows?, tail))
    }
}

impl<'p> Plan<'p> {
    /// Runs the plan's statements after the locks they need, in an order
    /// the foreign key and a mailbox made anew under its id need, then
    /// `then` (which sees what they wrote), and then, if `commit` (with the
    /// notifications of news to send once committed), the transaction's
    /// `COMMIT` and those notifications, all in one pipeline. A statement
    /// that fails fails the transaction, and the `COMMIT` behind it rolls it
    /// back.
    pub(super) async fn execute<'a>(
        self,
        tx: &impl GenericClient,
        locks: &'a Locks,
        then: Option<Statement<'a>>,
        commit: Option<&'a Vec<String>>,
    ) -> Result<Answers, Box<Fail>> {
        let mut pipeline = Pipeline::default();
        if self.soft {
            // Soft state only (as with SQLite): row locks, activity stamps, a
            // release a side repeats. Losing the last few to a crash only lets
            // a mailbox expire a little early, so the commit does not wait for
            // the log to reach the disk.
            pipeline.push("SET LOCAL synchronous_commit TO OFF", Vec::new());
        }
        if !locks.makers.is_empty() {
            let sql = "SELECT pg_advisory_xact_lock(hashtextextended(m, 0)) FROM unnest($1::TEXT[]) m";
            pipeline.push(sql, vec![&locks.makers]);
        }
        pipeline.push("SELECT set_config('wormhole_sync.shard', $1, true)", vec![&locks.shard]);
        let deleted = pairs(self.delete.iter().copied());
        if !self.delete.is_empty() {
            let sql = "DELETE FROM mailboxes WHERE (appid, mailbox) IN (SELECT * FROM unnest($1::TEXT[], $2::TEXT[]))";
            pipeline.push(sql, vec![&deleted.0, &deleted.1]);
        }
        let inserted = Columns::of(self.insert.iter().map(|(snapshot, _)| snapshot));
        let makers: Vec<Option<&str>> = self.insert.iter().map(|(_, maker)| *maker).collect();
        let mut inserts = None;
        if !self.insert.is_empty() {
            let sql = "INSERT INTO mailboxes (appid, mailbox, nameplate, holds_nameplate, allocator, members, burned,
                                              tombstone, last_activity, maker)
                       SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::INT[], $4::BOOL[], $5::TEXT[], $6::TEXT[],
                                            $7::BOOL[], $8::BOOL[], $9::BIGINT[], $10::TEXT[])
                       RETURNING appid, mailbox, instance";
            let mut params = inserted.params().to_vec();
            params.push(&makers);
            inserts = Some(pipeline.push(sql, params));
        }
        let updated = Columns::of(self.update.iter());
        if !self.update.is_empty() {
            let sql = "UPDATE mailboxes b SET nameplate = v.nameplate, holds_nameplate = v.holds_nameplate,
                           allocator = v.allocator, members = v.members, burned = v.burned, tombstone = v.tombstone,
                           last_activity = GREATEST(b.last_activity, v.last_activity)
                       FROM unnest($1::TEXT[], $2::TEXT[], $3::INT[], $4::BOOL[], $5::TEXT[], $6::TEXT[],
                                   $7::BOOL[], $8::BOOL[], $9::BIGINT[])
                           AS v(appid, mailbox, nameplate, holds_nameplate, allocator, members, burned, tombstone,
                                last_activity)
                       WHERE b.appid = v.appid AND b.mailbox = v.mailbox";
            pipeline.push(sql, updated.params().to_vec());
        }
        let truncated = pairs(self.truncate.iter().map(|(key, _)| *key));
        let after: Vec<i64> = self.truncate.iter().map(|(_, after)| *after).collect();
        if !self.truncate.is_empty() {
            let sql = "DELETE FROM mailbox_messages m USING unnest($1::TEXT[], $2::TEXT[], $3::BIGINT[]) AS v(a, b, s)
                       WHERE m.appid = v.a AND m.mailbox = v.b AND m.seq > v.s";
            pipeline.push(sql, vec![&truncated.0, &truncated.1, &after]);
        }
        let messages = Messages::of(&self.messages);
        if !self.messages.is_empty() {
            let sql =
                "INSERT INTO mailbox_messages (appid, mailbox, seq, side, phase, body, server_rx, client_id, poster)
                       SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::TEXT[], $5::TEXT[], $6::TEXT[],
                                            $7::BIGINT[], $8::TEXT[], $9::TEXT[])";
            pipeline.push(sql, messages.params());
        }
        let then = then.map(|(sql, params)| pipeline.push(sql, params));
        if commit.is_some() {
            pipeline.push("COMMIT", Vec::new());
        }
        // The notifications leave in a transaction of their own right after
        // the commit, with no round trip between: in the committing one,
        // PostgreSQL would hold its notification queue's lock through the
        // log's flush, and every instance's commits would queue behind each
        // other's. This one writes nothing but its commit record, which
        // PostgreSQL does not wait to flush (500 of them, one flush). Behind
        // a commit that failed it only wakes waiters who then find no news.
        let notify = commit.filter(|payloads| !payloads.is_empty()).map(|payloads| {
            let sql = "SELECT pg_notify($1, n) FROM unnest($2::TEXT[]) n";
            (sql.to_string(), vec![&super::CHANNEL as &(dyn ToSql + Sync), payloads])
        });
        let (mut answers, notified) = pipeline.run_then(tx, notify.as_ref()).await?;
        let notified = match notified {
            Some(Err(e)) => {
                tracing::warn!(error = %super::describe(&e), "cannot tell other instances of news in the commit's pipeline");
                false
            }
            Some(Ok(())) => true,
            None => false,
        };
        let mut instances = HashMap::new();
        for row in inserts.map_or(&[][..], |i| &answers[i]) {
            let Some(mailbox) = MailboxId::new(row.get::<_, String>(1)) else { continue };
            let instance = u64::try_from(row.get::<_, i64>(2)).unwrap_or(0);
            instances.insert((row.get(0), mailbox), instance);
        }
        let after = then.and_then(|i| std::mem::take(&mut answers[i]).into_iter().next());
        Ok(Answers { instances, after, notified })
    }
}

/// Messages' columns, as arrays of one statement's parameters.
struct Messages<'a> {
    appid: Vec<&'a str>,
    mailbox: Vec<&'a str>,
    seq: Vec<i64>,
    side: Vec<&'a str>,
    phase: Vec<&'a str>,
    body: Vec<&'a str>,
    server_rx: Vec<Option<i64>>,
    client_id: Vec<Option<&'a str>>,
    poster: Vec<Option<&'a str>>,
}

impl<'a> Messages<'a> {
    fn of(messages: &'a [(&'a Key, Message, Option<&'a str>)]) -> Messages<'a> {
        let (appid, mailbox) = pairs(messages.iter().map(|(key, ..)| *key));
        let m = || messages.iter().map(|(_, message, _)| message);
        Messages {
            appid,
            mailbox,
            seq: m().map(|m| i64::try_from(m.seq).unwrap_or(i64::MAX)).collect(),
            side: m().map(|m| m.side.as_str()).collect(),
            phase: m().map(|m| m.phase.as_str()).collect(),
            body: m().map(|m| m.body.as_str()).collect(),
            server_rx: m().map(|m| m.server_rx.map(rows::millis)).collect(),
            client_id: m().map(|m| m.id.as_deref()).collect(),
            poster: messages.iter().map(|(.., poster)| *poster).collect(),
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.appid,
            &self.mailbox,
            &self.seq,
            &self.side,
            &self.phase,
            &self.body,
            &self.server_rx,
            &self.client_id,
            &self.poster,
        ]
    }
}

fn pairs<'a>(keys: impl Iterator<Item = &'a Key>) -> (Vec<&'a str>, Vec<&'a str>) {
    keys.map(|(appid, mailbox)| (appid.as_str(), mailbox.as_str())).unzip()
}

/// Whether a read changed anything worth writing: more than activity
/// stamps that moved less than `stamp_step`.
pub(super) fn writes(
    changes: &[MailboxChange],
    loaded: &HashMap<Key, Loaded>,
    stamp_step: std::time::Duration,
) -> bool {
    changes.iter().any(|change| match (&change.persist, loaded.get(&(change.appid.clone(), change.mailbox.clone()))) {
        (Persist::Activity { last_activity }, Some(was)) if change.appended.is_empty() => {
            last_activity.saturating_since(was.last_activity) >= stamp_step
        }
        _ => true,
    })
}
