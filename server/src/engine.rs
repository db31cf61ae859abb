//! The engines, one per storage model, behind one type: the only place that
//! asks which storage model is in use.
//!
//! - **Local**: the state in memory is the truth. Each operation runs on it
//!   under its lock, past caps and budgets kept in memory; what it changed
//!   is journaled (to nothing, or to SQLite: [`Storage`]) and the answer
//!   waits until that is durable.
//! - **Shared**: a PostgreSQL database several instances share is the
//!   truth. The operations that arrive together run in one transaction
//!   over the rows they name, caps and budgets are counted there, and after
//!   the commit every instance hears of the mailboxes with news
//!   ([`crate::postgres`]).

use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use wormhole_sync_core::rendezvous::{
    Answer, Listening, MailboxChange, Op, Outcome, Persist, Rendezvous, RendezvousSnapshot, RendezvousStats,
    SweepCursor,
};
use wormhole_sync_core::wire::{ErrorCode, MailboxId, Message, Request, WireError};
use wormhole_sync_core::Timestamp;

use crate::budgets::{Budgets, Limits};
use crate::change::{Change, Committed, MailboxNews, News, Ran};
use crate::postgres::Postgres;
use crate::storage::Storage;
use crate::waiters::Waiters;
use crate::ServerConfig;

/// Mailboxes a sweep looks at while holding the state.
const SWEEP_STEP: usize = 1_000;

/// The storage model in use, with what it needs.
pub(crate) struct Engine {
    storage: Storage,
    model: Model,
}

// One per server: the size of the local state does not matter.
#[allow(clippy::large_enum_variant)]
enum Model {
    Local { core: Mutex<Rendezvous>, budgets: Budgets },
    Shared(Arc<Postgres>),
}

/// The answer when storage fails (the cause goes to the log).
fn unavailable(e: &crate::StorageError) -> WireError {
    tracing::error!(error = %crate::Chain(e), "answering storage-unavailable");
    WireError::new(ErrorCode::StorageUnavailable, "the server cannot store anything right now")
}

impl Engine {
    /// The engine of `storage`, with the state `saved` (local engines) and
    /// mailbox ids drawn from `seed`.
    pub(crate) fn new(
        config: &ServerConfig,
        storage: Storage,
        saved: RendezvousSnapshot,
        seed: [u8; 32],
    ) -> std::io::Result<Engine> {
        let model = match storage.shared() {
            Some(postgres) => Model::Shared(postgres.clone()),
            None => {
                let limits = Limits {
                    per_app: config.max_bytes_per_app,
                    per_client: config.max_bytes_per_address,
                    total: config.max_bytes,
                    channels_per_client: config.max_channels_per_address,
                };
                let budgets = Budgets::new(limits, &saved);
                let core = Rendezvous::restore(config.rendezvous.clone(), saved, seed)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                Model::Local { core: Mutex::new(core), budgets }
            }
        };
        Ok(Engine { storage, model })
    }

    /// Runs `op` for `client` (charged with the messages it stores and the
    /// channels it makes), refused first past the caps and budgets that
    /// apply, and returns once what it changed is durable.
    pub(crate) async fn execute(
        &self,
        config: &ServerConfig,
        op: &Op,
        client: Option<IpAddr>,
    ) -> Result<Ran, WireError> {
        let (core, budgets) = match &self.model {
            Model::Shared(postgres) => {
                if let Op::List { appid } = op {
                    let answer = Answer::Nameplates(postgres.nameplates(appid).await?);
                    return Ok(Ran::answered(Outcome { answer, instance: None }));
                }
                return postgres.run(config, op, client).await;
            }
            Model::Local { core, budgets } => (core, budgets),
        };
        let (ran, barrier) = {
            let mut core = core.lock();
            let at = config.clock.now();
            let admitted = budgets.admit(&core, op, client, config.max_apps);
            let result = admitted.and_then(|()| core.apply(at, op));
            let changes = core.take_changes();
            let (barrier, news) = record(&self.storage, budgets, changes.mailboxes, at, client);
            (Ran { result, news, finished: changes.finished }, barrier)
        };
        self.storage.committed(barrier).await.map_err(|e| unavailable(&e))?;
        Ok(ran)
    }

    /// The messages a session listens to (see [`Listening`]), once they are
    /// durable; none if the mailbox under its id is not the one it opened.
    pub(crate) async fn messages_after(&self, listening: Listening<'_>) -> Result<Vec<Message>, WireError> {
        let Listening { appid, mailbox, instance, after } = listening;
        let core = match &self.model {
            Model::Shared(postgres) => return postgres.messages_after(appid, mailbox, instance, after).await,
            Model::Local { core, .. } => core,
        };
        let (messages, seen) = {
            let core = core.lock();
            (core.messages_for(listening).to_vec(), self.storage.last_recorded())
        };
        if !messages.is_empty() {
            self.storage.committed(seen).await.map_err(|e| unavailable(&e))?;
        }
        Ok(messages)
    }

    /// The mailbox a request reaches now, if any.
    pub(crate) async fn mailbox_for(&self, request: &Request) -> Result<Option<MailboxId>, WireError> {
        match (&self.model, request.mailbox()) {
            // Named: waiting on it costs no query (if it is gone, the fetch says so).
            (Model::Shared(_), Some(mailbox)) => Ok(Some(mailbox.clone())),
            (Model::Shared(postgres), None) => match request.channel() {
                Some(nameplate) => postgres.mailbox_of(request.appid(), nameplate).await,
                None => Ok(None),
            },
            (Model::Local { core, .. }, _) => Ok(core.lock().mailbox_for(request)),
        }
    }

    /// Whether the engine can serve now (a shared database answers a query).
    pub(crate) async fn healthy(&self) -> bool {
        match &self.model {
            Model::Shared(postgres) => postgres.check().await,
            Model::Local { .. } => self.storage.healthy(),
        }
    }

    /// Runs a long-poll's read on the state a commit announced with its
    /// wake-up, without a round trip to the storage: its outcome, or `None`
    /// when it must run as any request does (a local state is at hand
    /// already; the announced state is not of the mailbox it names; it
    /// would write).
    pub(crate) fn read_from(&self, config: &ServerConfig, op: &Op, committed: &Committed) -> Option<Outcome> {
        match &self.model {
            Model::Shared(_) => crate::postgres::read_committed(config, op, committed),
            Model::Local { .. } => None,
        }
    }

    /// The messages a session listens to, from the state a commit
    /// announced, without a round trip to the storage; `None` when they
    /// must be read as [`messages_after`](Self::messages_after) does (a
    /// local state is at hand already; the state is of another mailbox, or
    /// of another made under its id).
    pub(crate) fn messages_from(&self, listening: Listening<'_>, committed: &Committed) -> Option<Vec<Message>> {
        let snapshot = &committed.snapshot;
        let its = snapshot.appid == listening.appid
            && snapshot.mailbox == *listening.mailbox
            && committed.instance == listening.instance;
        match &self.model {
            Model::Shared(_) if its => {
                Some(snapshot.messages.iter().filter(|message| message.seq > listening.after).cloned().collect())
            }
            _ => None,
        }
    }

    /// Batches of operations that ran again one operation per transaction
    /// (a shared database's; a local state's writer never splits one).
    pub(crate) fn split_batches(&self) -> u64 {
        match &self.model {
            Model::Shared(postgres) => postgres.split_batches(),
            Model::Local { .. } => 0,
        }
    }

    /// Batches whose turn over the deployment did not come in time (a shared
    /// database's; a local state has no turns).
    pub(crate) fn missed_turns(&self) -> u64 {
        match &self.model {
            Model::Shared(postgres) => postgres.missed_turns(),
            Model::Local { .. } => 0,
        }
    }

    /// Whether storage accepted the last writes (no query).
    pub(crate) fn storage_healthy(&self) -> bool {
        self.storage.healthy()
    }

    /// The state's counts, the bytes stored and the clients storing them.
    pub(crate) async fn usage(&self) -> (RendezvousStats, u64, usize) {
        match &self.model {
            Model::Shared(postgres) => postgres.stats().await.unwrap_or_default(),
            Model::Local { core, budgets } => {
                let (stored_bytes, storing_clients) = budgets.usage();
                (core.lock().stats(), stored_bytes, storing_clients)
            }
        }
    }

    /// Deletes idle mailboxes, and wakes their waiters with `wake`. A local
    /// engine journals their deletion a step of [`SWEEP_STEP`] mailboxes at
    /// a time, so requests are served between steps however many there
    /// are; a shared one's notifications wake the waiters, here as on the
    /// other instances.
    pub(crate) async fn sweep(&self, config: &ServerConfig, wake: impl Fn(&News)) -> usize {
        let (core, budgets) = match &self.model {
            Model::Shared(postgres) => {
                return postgres.sweep(config.clock.now(), &config.rendezvous).await.unwrap_or(0)
            }
            Model::Local { core, budgets } => (core, budgets),
        };
        let mut cursor = SweepCursor::default();
        let mut total = 0;
        loop {
            let (expired, news, done) = {
                let mut core = core.lock();
                let at = config.clock.now();
                let (expired, done) = core.expire_step(at, &mut cursor, SWEEP_STEP);
                let (_, news) = record(&self.storage, budgets, core.take_changes().mailboxes, at, None);
                (expired.len(), news, done)
            };
            wake(&news);
            total += expired;
            if done {
                break;
            }
            tokio::task::yield_now().await;
        }
        core.lock().shrink_indexes();
        total
    }

    /// A shared database's listener, which wakes this instance's waiters
    /// on the other instances' news.
    pub(crate) fn listen(&self, waiters: Arc<Waiters>) -> Option<tokio::task::JoinHandle<()>> {
        match &self.model {
            Model::Shared(postgres) => Some(tokio::spawn(crate::postgres::listen(waiters, postgres.connector()))),
            Model::Local { .. } => None,
        }
    }

    /// Where the state is kept, for logs.
    pub(crate) fn describe(&self) -> String {
        self.storage.describe()
    }

    /// Commits everything queued and stops the journal's writer.
    pub(crate) fn close(&self) {
        self.storage.close();
    }

    /// The state in memory of a local engine (tests).
    #[cfg(test)]
    pub(crate) fn core(&self) -> &Mutex<Rendezvous> {
        match &self.model {
            Model::Local { core, .. } => core,
            Model::Shared(_) => panic!("a shared engine keeps no state in memory"),
        }
    }
}

/// Journals what an operation changed, mailbox by mailbox, and charges or
/// frees their bytes and channels: a new message or channel is charged to
/// `client`, a dropped log or a deleted channel is given back. Returns the
/// journal position an answer must wait for (soft changes are not waited
/// for: see [`MailboxChange::is_soft`]) and the mailboxes whose waiters
/// have news.
fn record(
    storage: &Storage,
    budgets: &Budgets,
    changes: Vec<MailboxChange>,
    at: Timestamp,
    client: Option<IpAddr>,
) -> (u64, News) {
    let mut barrier = storage.last_recorded();
    let mut news = News::new();
    for change in changes {
        let (appid, mailbox) = (&change.appid, &change.mailbox);
        if change.frees_budgets() {
            budgets.release(appid, mailbox);
            budgets.channel_gone(appid, mailbox);
        } else if let (true, Some(client)) = (change.created, client) {
            budgets.channel_made(appid, mailbox, client);
        }
        if let Some(client) = client {
            for message in &change.appended {
                budgets.charge(appid, mailbox, client, message.body.len() as u64);
            }
        }
        if change.deleted {
            barrier = storage.record(Change::Delete { appid: appid.clone(), mailbox: mailbox.clone() });
        }
        let soft = change.is_soft();
        let recorded = match change.persist {
            Persist::Gone => None,
            Persist::Whole(snapshot) => Some(storage.record(Change::Mailbox(snapshot))),
            Persist::Released(snapshot) => {
                let (holds_nameplate, members) = (snapshot.holds_nameplate, snapshot.members);
                let (appid, mailbox) = (appid.clone(), mailbox.clone());
                let released = storage.record(Change::Released { appid, mailbox, holds_nameplate, members, at });
                let appended = record_appended(storage, &change.appid, &change.mailbox, change.appended, at);
                appended.or(Some(released))
            }
            Persist::Activity { .. } if change.appended.is_empty() => {
                Some(storage.record(Change::Touch { appid: appid.clone(), mailbox: mailbox.clone(), at }))
            }
            Persist::Activity { .. } => record_appended(storage, &change.appid, &change.mailbox, change.appended, at),
        };
        if let (Some(recorded), false) = (recorded, soft) {
            barrier = recorded;
        }
        if change.news {
            news.push(MailboxNews::of(change.appid, change.mailbox));
        }
    }
    (barrier, news)
}

/// Journals appended messages; returns the last one's position.
fn record_appended(
    storage: &Storage,
    appid: &str,
    mailbox: &MailboxId,
    appended: Vec<Message>,
    at: Timestamp,
) -> Option<u64> {
    let mut last = None;
    for message in appended {
        let (appid, mailbox) = (appid.to_string(), mailbox.clone());
        last = Some(storage.record(Change::Message { appid, mailbox, message, at }));
    }
    last
}
