//! Group commit: the operations that arrive while a transaction runs wait
//! in a queue, and the next transaction runs them together, in arrival
//! order, with one commit (one flush of the log) for all of them, as the
//! SQLite writer does. A database's cost is per transaction and per
//! statement far more than per row, so under load a batch costs it about
//! what one operation did.
//!
//! One batch at a time over the whole deployment: a batch's transaction
//! first takes its turn (an advisory lock held to its commit), so each
//! instance's operations gather while another instance's batch runs. Two
//! instances' batches side by side were three times as many, each a
//! quarter the size, a quarter of their operations left for later because
//! the other instance's batch held their mailbox; they cost the database
//! twice as much per exchange as taking turns does. The turn is
//! waited for [`TURN_WAIT`] at most: past it (an instance stuck in its
//! transaction, a database far behind) the batch runs beside the one that
//! has it, as every batch did before turns.
//!
//! A batch skips the mailboxes another transaction holds and leaves the
//! operations that name them to the next batch; an operation left twice
//! waits for its mailbox in a transaction of its own, beside the batches
//! and without a turn.
//!
//! A batch that fails (a conflict with another instance, a cap or budget
//! passed, a row it cannot read) is run again one operation per
//! transaction, so one operation's trouble is never another's answer.

use std::net::IpAddr;
use std::sync::{Arc, Weak};

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use wormhole_sync_core::rendezvous::Op;
use wormhole_sync_core::wire::WireError;

use super::operation::{self, is_conflict, is_nameplate_taken, Charged, Ending, Fail, Lock};
use super::{describe, unavailable, Postgres, BATCH_TURN_LOCK, LOCK_CLASS, OPERATION_TIMEOUT};
use crate::change::Ran;
use crate::ServerConfig;

/// Most operations in one transaction.
const MAX_BATCH: usize = 256;

/// Operations waiting for a transaction.
const QUEUE: usize = 4096;

/// The longest a batch waits for its turn. A batch takes milliseconds, so
/// only a transaction that is stuck (its instance gone without closing its
/// connection, say) or a database far behind holds the turn this long.
const TURN_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Whether a transaction waits for the batches' turn before it runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Turn {
    /// Waits for it (a batch).
    Wait,
    /// Runs beside whichever batch has it (an operation alone, or a batch
    /// whose turn did not come within [`TURN_WAIT`]).
    Beside,
}

impl Turn {
    /// The statements that begin a transaction that waits this way.
    fn begin(self) -> String {
        match self {
            Turn::Beside => "BEGIN".to_string(),
            // The bounded wait ends with the turn: waits for rows later are
            // as the session says.
            Turn::Wait => format!(
                "BEGIN; SET LOCAL lock_timeout = {}; SELECT pg_advisory_xact_lock({LOCK_CLASS}, {BATCH_TURN_LOCK}); \
                 SET LOCAL lock_timeout TO DEFAULT",
                TURN_WAIT.as_millis()
            ),
        }
    }
}

/// Whether a transaction failed because its turn did not come in time.
fn turn_missed(fail: &Fail) -> bool {
    matches!(fail, Fail::Database(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE))
}

/// An operation waiting for its batch, and where its answer goes.
pub(super) struct Job {
    op: Op,
    client: Option<IpAddr>,
    answer: oneshot::Sender<Result<Ran, WireError>>,
    /// How many batches left it for the next.
    left: u32,
}

impl Postgres {
    /// Runs `op` for `client` (charged with the messages it stores and the
    /// channels it makes), refused past the caps and budgets that span the
    /// deployment, and returns once what it changed is committed. A read
    /// that changes nothing worth writing runs without a transaction.
    /// Answers `storage-unavailable` if the database cannot be reached or
    /// fails.
    pub(crate) async fn run(
        self: &Arc<Self>,
        config: &ServerConfig,
        op: &Op,
        client: Option<IpAddr>,
    ) -> Result<Ran, WireError> {
        if op.scope().reads {
            if let Some(read) = self.read_unlocked(config, op).await {
                return read;
            }
        }
        let queue = self.queue.get_or_init(|| start_committer(Arc::downgrade(self), config.clone()));
        let (answer, answered) = oneshot::channel();
        let job = Job { op: op.clone(), client, answer, left: 0 };
        let waited = tokio::time::timeout(OPERATION_TIMEOUT, async {
            queue.send(job).await.ok()?;
            answered.await.ok()
        });
        match waited.await {
            Ok(Some(answer)) => answer,
            Ok(None) => Err(unavailable("an operation", "the server is stopping")),
            Err(_) => Err(unavailable("an operation", "timed out")),
        }
    }

    /// Batches whose turn did not come within [`TURN_WAIT`], since the start.
    pub(crate) fn missed_turns(&self) -> u64 {
        self.missed_turns.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Batches that did not commit together and ran one operation per
    /// transaction, since the start.
    pub(crate) fn split_batches(&self) -> u64 {
        self.split_batches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A read without locks; `None` if it must run with them.
    async fn read_unlocked(&self, config: &ServerConfig, op: &Op) -> Option<Result<Ran, WireError>> {
        let read = async {
            let client = match self.client().await {
                Ok(client) => client,
                Err(e) => return Some(Err(e)),
            };
            match operation::run_unlocked(&client, config, op).await {
                Ok(ran) => Some(Ok(ran)),
                Err(fail) => match *fail {
                    Fail::NeedsLock => None,
                    fail => Some(Err(self.failed(fail))),
                },
            }
        };
        let read = tokio::time::timeout(OPERATION_TIMEOUT, read).await;
        let read = read.unwrap_or_else(|_| Some(Err(unavailable("a read", "timed out"))));
        if let Some(Ok(_)) = read {
            self.mark(true);
        }
        read
    }

    /// Runs a batch and sends each operation its answer; returns those left
    /// for a later transaction (see [`Lock::Skip`]).
    async fn commit_batch(&self, config: &ServerConfig, jobs: Vec<Job>) -> Vec<Job> {
        let deadline = Instant::now() + OPERATION_TIMEOUT;
        let ops: Vec<Charged<'_>> = jobs.iter().map(|job| (&job.op, job.client)).collect();
        let mut turn = Turn::Wait;
        let mut together = tokio::time::timeout_at(deadline, self.transaction(config, &ops, Lock::Skip, turn)).await;
        if matches!(&together, Ok(Err(fail)) if turn_missed(fail)) {
            tracing::debug!(operations = ops.len(), "a batch's turn did not come in time; running beside");
            self.missed_turns.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            turn = Turn::Beside;
            together = tokio::time::timeout_at(deadline, self.transaction(config, &ops, Lock::Skip, turn)).await;
        }
        // A number an operation alone (or a batch beside) drew too: drawn
        // anew, as a batch.
        for _ in 0..NAMEPLATE_RETRIES {
            if !matches!(&together, Ok(Err(fail)) if matches!(&**fail, Fail::Database(e) if is_nameplate_taken(e))) {
                break;
            }
            together = tokio::time::timeout_at(deadline, self.transaction(config, &ops, Lock::Skip, turn)).await;
        }
        let answers: Vec<Option<Result<Ran, WireError>>> = match together {
            Ok(Ok(rans)) => rans.into_iter().map(|ran| ran.map(Ok)).collect(),
            failed => {
                let why = match &failed {
                    Ok(Err(fail)) => fail.to_string(),
                    _ => "timed out".to_string(),
                };
                tracing::debug!(operations = ops.len(), why, "a batch did not commit; running each alone");
                self.split_batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut answers = Vec::with_capacity(ops.len());
                for op in &ops {
                    answers.push(Some(self.alone(config, *op, deadline).await));
                }
                answers
            }
        };
        let mut left = Vec::new();
        for (mut job, answer) in jobs.into_iter().zip(answers) {
            match answer {
                // An answer nobody waits for any more (the client left) is dropped.
                Some(answer) => drop(job.answer.send(answer)),
                None => {
                    job.left += 1;
                    left.push(job);
                }
            }
        }
        left
    }

    /// Runs one operation in a transaction of its own, again after each
    /// conflict with another instance (which it then sees) until `deadline`.
    async fn alone(&self, config: &ServerConfig, op: Charged<'_>, deadline: Instant) -> Result<Ran, WireError> {
        loop {
            let ran =
                tokio::time::timeout_at(deadline, self.transaction(config, &[op], Lock::Wait, Turn::Beside)).await;
            let Ok(ran) = ran else {
                return Err(unavailable("an operation", "timed out"));
            };
            match ran {
                Ok(mut rans) => return rans.pop().flatten().ok_or_else(|| unavailable("an operation", "no outcome")),
                // Contention, not an outage: the storage stays healthy.
                Err(fail) if conflict(&fail) => continue,
                Err(fail) => return Err(self.failed(*fail)),
            }
        }
    }

    /// Runs `ops` in one transaction; commits unless a lone operation was
    /// refused past a cap. `None` for an operation left for a later one.
    async fn transaction(
        &self,
        config: &ServerConfig,
        ops: &[Charged<'_>],
        lock: Lock,
        turn: Turn,
    ) -> Result<Vec<Option<Ran>>, Box<Fail>> {
        let started = std::time::Instant::now();
        let connection = self.client().await.map_err(|answer| Box::new(Fail::Unavailable(answer)))?;
        let connected = started.elapsed();
        let open = Open { connection: Some(connection) };
        // `BEGIN` (and the turn) goes out with the first statement, not a
        // round trip before it.
        let begin = turn.begin();
        let (begun, ran) = futures_util::future::join(
            open.client().batch_execute(&begin),
            operation::run_locked(open.client(), config, ops, lock),
        )
        .await;
        if let Err(e) = begun {
            // The turn not come, most often: the connection stays pooled.
            open.finish(Ending::Rollback).await?;
            return Err(Box::new(Fail::Database(e)));
        }
        let (rans, ending) = match ran {
            Ok(ran) => ran,
            Err(fail) => {
                // Rolled back already if its COMMIT went out (a warning, then).
                open.finish(Ending::Rollback).await?;
                return Err(fail);
            }
        };
        let ran = started.elapsed();
        open.finish(ending).await?;
        let commit = ending != Ending::Rollback;
        if matches!(ending, Ending::Commit | Ending::Committed { notified: false }) {
            self.notifier.notify(rans.iter().flatten().flat_map(|ran| &ran.news));
        }
        self.mark(true);
        // Where a transaction's time goes (RUST_LOG=wormhole_sync_server::postgres=debug).
        let micros = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        tracing::debug!(
            operations = ops.len(),
            left = rans.iter().filter(|ran| ran.is_none()).count(),
            connect_us = micros(connected),
            run_us = micros(ran - connected),
            commit_us = micros(started.elapsed() - ran),
            committed = commit,
            "a transaction"
        );
        Ok(rans)
    }

    /// The answer to a failure, marking the storage unreachable when the
    /// database failed.
    fn failed(&self, fail: Fail) -> WireError {
        match fail {
            Fail::Database(e) => {
                self.mark(false);
                unavailable("an operation failed", describe(&e))
            }
            Fail::Unavailable(answer) => answer,
            Fail::Unreadable(why) => unavailable("a stored mailbox cannot be read", why),
            Fail::NeedsLock | Fail::OverCaps => unavailable("an operation", "ran in the wrong mode"),
        }
    }
}

/// A transaction begun on a pooled connection. Dropped before
/// [`finish`](Self::finish) (an operation that timed out, say), it takes its
/// connection out of the pool and closes it, which rolls the transaction
/// back: no connection goes back to the pool inside a transaction.
struct Open {
    connection: Option<deadpool_postgres::Object>,
}

impl Open {
    fn client(&self) -> &deadpool_postgres::Object {
        self.connection.as_ref().expect("open until finished")
    }

    /// Commits (or rolls back) unless committed already, and gives the
    /// connection back to the pool.
    async fn finish(mut self, ending: Ending) -> Result<(), tokio_postgres::Error> {
        match ending {
            Ending::Commit => self.client().batch_execute("COMMIT").await?,
            Ending::Rollback => self.client().batch_execute("ROLLBACK").await?,
            Ending::Committed { .. } => {}
        }
        self.connection.take();
        Ok(())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            drop(deadpool_postgres::Object::take(connection));
        }
    }
}

fn conflict(fail: &Fail) -> bool {
    matches!(fail, Fail::Database(e) if is_conflict(e))
}

/// Times a batch runs again, as a batch, after a nameplate number it drew
/// was taken by another instance's, before its operations run one by one.
const NAMEPLATE_RETRIES: usize = 3;

/// Batches that may leave an operation for the next before it waits for
/// its mailbox's lock in a transaction of its own, beside the batches.
const MAX_LEFT: u32 = 2;

/// Starts the committer of `postgres`; returns its queue. It stops once
/// the queue is dropped.
fn start_committer(postgres: Weak<Postgres>, config: ServerConfig) -> mpsc::Sender<Job> {
    let (queue, mut jobs) = mpsc::channel(QUEUE);
    let config = Arc::new(config);
    tokio::spawn(async move {
        let mut left: Vec<Job> = Vec::new();
        loop {
            // Operations left by the last batch go first; new ones are
            // waited for only when none are.
            let mut batch = std::mem::take(&mut left);
            if batch.is_empty() {
                if jobs.recv_many(&mut batch, MAX_BATCH).await == 0 {
                    return;
                }
            } else {
                while batch.len() < MAX_BATCH {
                    match jobs.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
            }
            let Some(postgres) = postgres.upgrade() else { return };
            let (stubborn, again): (Vec<Job>, Vec<Job>) =
                postgres.commit_batch(&config, batch).await.into_iter().partition(|job| job.left >= MAX_LEFT);
            left = again;
            if !stubborn.is_empty() {
                // Held long by another transaction: these wait for it on their
                // own, so the batches behind them do not.
                let config = config.clone();
                tokio::spawn(async move {
                    let deadline = Instant::now() + OPERATION_TIMEOUT;
                    for job in stubborn {
                        let answer = postgres.alone(&config, (&job.op, job.client), deadline).await;
                        drop(job.answer.send(answer));
                    }
                });
            }
        }
    });
    queue
}
