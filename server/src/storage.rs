//! Durable storage behind the in-memory rendezvous state, or, with
//! PostgreSQL, the state itself (see [`crate::postgres`]).
//!
//! The state machine in memory is the source of truth while the server
//! runs; storage is a journal of its changes. Every change is queued in the
//! order it was applied (under the state lock), a writer thread commits
//! queued changes in batches (group commit), and a request is answered only
//! once everything it saw is committed. A restart loads the journal back.
//! Activity stamps (fetches) are soft state: a batch of nothing else is
//! committed without an fsync and made durable by the next synced commit.

use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::watch;
use wormhole_sync_core::rendezvous::RendezvousSnapshot;

use crate::change::Change;
use crate::error::{Chain, StorageError};
use crate::postgres::Postgres;
use crate::sqlite;

/// How far the writer got.
#[derive(Clone, Debug, Default)]
struct Progress {
    committed: u64,
    failure: Option<String>,
}

/// Where the rendezvous state is kept.
pub struct Storage {
    inner: Inner,
}

enum Inner {
    Memory,
    Sqlite(Journal),
    Postgres(Arc<Postgres>),
}

struct Journal {
    path: PathBuf,
    queue: Mutex<Option<mpsc::Sender<(u64, Change)>>>,
    next: Mutex<u64>,
    progress: watch::Receiver<Progress>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Storage {
    /// Nothing survives a restart (tests, ephemeral servers).
    pub fn memory() -> Storage {
        Storage { inner: Inner::Memory }
    }

    /// An SQLite database at `path` (created if missing), and the state it
    /// holds. A file that is not an SQLite database, or one that fails
    /// SQLite's structural check or holds messages of no mailbox, is
    /// refused with the reason, never loaded in part or started over.
    pub fn sqlite(path: &Path) -> Result<(Storage, RendezvousSnapshot), StorageError> {
        let mut connection = sqlite::open(path)?;
        let snapshot = sqlite::load(&connection)?;
        let (queue, incoming) = mpsc::channel();
        let (report, progress) = watch::channel(Progress::default());
        let writer = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_batches(&mut connection, &incoming, &report))
            .map_err(|e| StorageError::caused("cannot start the writer thread", e))?;
        let journal = Journal {
            path: path.to_path_buf(),
            queue: Mutex::new(Some(queue)),
            next: Mutex::new(0),
            progress,
            writer: Mutex::new(Some(writer)),
        };
        Ok((Storage { inner: Inner::Sqlite(journal) }, snapshot))
    }

    /// A PostgreSQL database (`postgres://user@host:port/database`, or
    /// the key-value form `host=... dbname=...`) that any number of server
    /// instances share: the operations that arrive together run in one
    /// transaction there, and the instances wake each other's waiters
    /// through `LISTEN`/`NOTIFY`. At most [`DEFAULT_POSTGRES_POOL`]
    /// connections (see [`postgres_with_pool`](Self::postgres_with_pool)). The
    /// schema is created, or migrated, at start-up. Nothing is loaded into
    /// memory, so the state returned is empty.
    ///
    /// With `sslmode=require` (or `verify-ca`, `verify-full`) in the URL,
    /// every connection uses TLS and the database's certificate is verified
    /// against the built-in roots, or only those in the PEM file
    /// `sslrootcert` names; `prefer` and `allow` are refused. Without
    /// `sslmode`, connections are plain TCP.
    ///
    /// ```no_run
    /// use wormhole_sync_server::{RunningServer, ServerConfig, Storage};
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let (storage, saved) = Storage::postgres("postgres://wormhole@127.0.0.1/wormhole").await?;
    /// let server = RunningServer::start("127.0.0.1:0".parse()?, ServerConfig::default(), storage, saved).await?;
    /// # Ok(()) }
    /// ```
    pub async fn postgres(url: &str) -> Result<(Storage, RendezvousSnapshot), StorageError> {
        Storage::postgres_with_pool(url, DEFAULT_POSTGRES_POOL as usize).await
    }

    /// [`postgres`](Self::postgres) with at most `pool_size` connections
    /// (at least 2) besides the one that listens for other instances'
    /// notifications. A batch of operations takes one connection, a read
    /// one, so a few cover a busy instance; the sum over the instances must
    /// fit the database's `max_connections`.
    ///
    /// ```no_run
    /// use wormhole_sync_server::Storage;
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let (storage, saved) = Storage::postgres_with_pool("postgres://wormhole@127.0.0.1/wormhole", 8).await?;
    /// # Ok(()) }
    /// ```
    pub async fn postgres_with_pool(
        url: &str,
        pool_size: usize,
    ) -> Result<(Storage, RendezvousSnapshot), StorageError> {
        let postgres = Postgres::connect(url, pool_size).await?;
        Ok((Storage { inner: Inner::Postgres(Arc::new(postgres)) }, RendezvousSnapshot::new(Vec::new())))
    }

    /// The shared database, when the state lives there rather than in
    /// this process.
    pub(crate) fn shared(&self) -> Option<&Arc<Postgres>> {
        match &self.inner {
            Inner::Postgres(postgres) => Some(postgres),
            _ => None,
        }
    }

    /// A short description for logs.
    pub fn describe(&self) -> String {
        match &self.inner {
            Inner::Memory => "memory (nothing survives a restart)".into(),
            Inner::Sqlite(j) => format!("sqlite at {}", j.path.display()),
            Inner::Postgres(postgres) => postgres.describe(),
        }
    }

    /// Queues a change; returns its sequence number. Call with the state lock
    /// held so the journal's order is the state's order.
    pub(crate) fn record(&self, change: Change) -> u64 {
        let Inner::Sqlite(journal) = &self.inner else { return 0 };
        let mut next = journal.next.lock();
        *next += 1;
        if let Some(queue) = journal.queue.lock().as_ref() {
            // A send fails only after shutdown; the waiter then reports the failure.
            let _ = queue.send((*next, change));
        }
        *next
    }

    /// The sequence number of the last queued change.
    pub(crate) fn last_recorded(&self) -> u64 {
        match &self.inner {
            Inner::Memory | Inner::Postgres(_) => 0,
            Inner::Sqlite(journal) => *journal.next.lock(),
        }
    }

    /// Waits until change `seq` and all before it are committed.
    pub(crate) async fn committed(&self, seq: u64) -> Result<(), StorageError> {
        let Inner::Sqlite(journal) = &self.inner else { return Ok(()) };
        let mut progress = journal.progress.clone();
        let reached = progress.wait_for(|p| p.committed >= seq || p.failure.is_some()).await;
        match reached {
            Ok(p) if p.committed >= seq => Ok(()),
            Ok(p) => Err(StorageError::new(p.failure.clone().unwrap_or_default())),
            Err(_) => Err(StorageError::new("the writer stopped")),
        }
    }

    /// Whether storage still accepts writes.
    pub fn healthy(&self) -> bool {
        match &self.inner {
            Inner::Memory => true,
            Inner::Sqlite(journal) => journal.progress.borrow().failure.is_none(),
            Inner::Postgres(postgres) => postgres.reachable(),
        }
    }

    /// Commits everything queued and stops the writer.
    pub fn close(&self) {
        let Inner::Sqlite(journal) = &self.inner else { return };
        journal.queue.lock().take();
        if let Some(writer) = journal.writer.lock().take() {
            let _ = writer.join();
        }
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        self.close();
    }
}

/// The most connections an instance keeps to PostgreSQL unless told
/// otherwise (`--postgres-pool`, [`Storage::postgres_with_pool`]).
///
/// ```
/// assert!(wormhole_sync_server::DEFAULT_POSTGRES_POOL >= 2);
/// ```
pub const DEFAULT_POSTGRES_POOL: u16 = 32;

/// Most changes committed in one transaction.
const MAX_BATCH: usize = 4096;

fn write_batches(
    connection: &mut rusqlite::Connection,
    incoming: &mpsc::Receiver<(u64, Change)>,
    report: &watch::Sender<Progress>,
) {
    while let Ok(first) = incoming.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match incoming.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let last = batch.last().map_or(0, |(seq, _)| *seq);
        // Activity stamps alone are soft state: nobody waits for them, and losing the
        // last few to a crash only lets a mailbox expire a little early. They are
        // committed without an fsync and become durable with the next real change.
        let durability = if batch.iter().all(|(_, change)| matches!(change, Change::Touch { .. })) {
            sqlite::Durability::Soft
        } else {
            sqlite::Durability::Synced
        };
        match sqlite::apply(connection, durability, batch.iter().map(|(_, change)| change)) {
            Ok(()) => report.send_modify(|p| p.committed = last),
            Err(e) => {
                let failure = Chain(&e).to_string();
                tracing::error!(error = %failure, "storage write failed; refusing further writes");
                report.send_modify(|p| p.failure = Some(failure));
                return;
            }
        }
    }
}
