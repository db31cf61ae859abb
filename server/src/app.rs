//! The state every front end shares, and the operations on it that do not
//! depend on the front end: running one operation on the storage model in
//! use (in memory and journaled, or a PostgreSQL transaction), making its
//! change durable, charging budgets, waking waiters, sweeping.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use wormhole_sync_core::rendezvous::{
    Answer, EffectKind, Limit, Listening, Op, Outcome, Rendezvous, Scope, SweepCursor, Target,
};
use wormhole_sync_core::wire::{ErrorCode, MailboxId, Message, Request, WireError};
use wormhole_sync_core::Timestamp;

use crate::change::Change;
use crate::client_address::ClientAddresses;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::storage::Storage;
use crate::waiters::Waiters;
use crate::ServerConfig;

/// Everything the handlers share.
pub(crate) struct App {
    pub(crate) core: Mutex<Rendezvous>,
    pub(crate) storage: Storage,
    pub(crate) waiters: Arc<Waiters>,
    pub(crate) metrics: Metrics,
    pub(crate) limiter: RateLimiter,
    pub(crate) message_limiter: RateLimiter,
    pub(crate) clients: ClientAddresses,
    pub(crate) connections: Arc<crate::connections::Connections>,
    pub(crate) budgets: crate::budgets::Budgets,
    pub(crate) config: ServerConfig,
    pub(crate) stopping: AtomicBool,
    /// Open mailbox protocol connections.
    pub(crate) websockets: std::sync::atomic::AtomicUsize,
    /// Tells mailbox protocol connections the server is stopping.
    pub(crate) shutdown: tokio::sync::Notify,
}

/// Mailboxes a sweep looks at while holding the state.
const SWEEP_STEP: usize = 1_000;

/// Mailboxes with news for their waiters (see `EffectKind::is_news`).
pub(crate) type News = Vec<(String, MailboxId)>;

impl App {
    pub(crate) async fn durable(&self, barrier: u64) -> Result<(), WireError> {
        self.storage.committed(barrier).await.map_err(|e| {
            tracing::error!(error = %crate::Chain(&e), "answering storage-unavailable");
            WireError::new(ErrorCode::StorageUnavailable, "the server cannot store anything right now")
        })
    }

    /// Wakes whoever waits on these mailboxes (long-polls, WebSockets).
    pub(crate) fn wake(&self, mailboxes: &[(String, MailboxId)]) {
        for (appid, mailbox) in mailboxes {
            self.waiters.wake(appid, mailbox);
        }
    }

    /// Runs `op` for `client` on the storage model in use (see
    /// [`run`](Self::run)), refused first past the caps and budgets that
    /// apply to it.
    pub(crate) async fn execute(&self, op: &Op, client: Option<IpAddr>) -> Result<Outcome, WireError> {
        if let (Op::List { appid }, Some(postgres)) = (op, self.storage.shared()) {
            let answer = Answer::Nameplates(postgres.nameplates(appid).await?);
            return Ok(Outcome { answer, instance: None });
        }
        let (mut outcome, instance) = self
            .run(op.scope(), client, |core, at| {
                self.within_caps(core, op, client)?;
                core.apply(at, op)
            })
            .await?;
        outcome.instance = instance;
        Ok(outcome)
    }

    /// The rate limiter of `limit`.
    pub(crate) fn limiter(&self, limit: Limit) -> &RateLimiter {
        match limit {
            Limit::Channels => &self.limiter,
            Limit::Messages => &self.message_limiter,
        }
    }

    /// The messages a session listens to (see [`Listening`]), once they are
    /// durable; none if the mailbox under its id is not the one it opened.
    pub(crate) async fn messages_after(&self, listening: Listening<'_>) -> Result<Vec<Message>, WireError> {
        let Listening { appid, mailbox, instance, after } = listening;
        if let Some(postgres) = self.storage.shared() {
            return postgres.messages_after(appid, mailbox, instance, after).await;
        }
        let (messages, seen) = {
            let core = self.core.lock();
            if core.mailbox_instance(appid, mailbox) != Some(instance) {
                return Ok(Vec::new());
            }
            (core.messages_after(appid, mailbox, after).to_vec(), self.storage.last_recorded())
        };
        if !messages.is_empty() {
            self.durable(seen).await?;
        }
        Ok(messages)
    }

    /// Runs an operation on the state for `client` (charged with the
    /// messages it stores and the channels it makes), makes what it changed
    /// durable, then wakes the mailboxes' waiters.
    /// Returns its answer and the instance of the mailbox `scope` names,
    /// if that exists afterwards. On a shared database (PostgreSQL) the
    /// operation runs on the rows `scope` names, in a transaction;
    /// otherwise on the state in memory, journaled.
    pub(crate) async fn run<T>(
        &self,
        scope: Scope<'_>,
        client: Option<IpAddr>,
        operation: impl Fn(&mut Rendezvous, Timestamp) -> Result<T, WireError>,
    ) -> Result<(T, Option<u64>), WireError> {
        if let Some(postgres) = self.storage.shared() {
            let outcome = postgres.run(&self.config, scope, client, operation).await?;
            self.wake(&outcome.news);
            log_finished(&outcome.finished);
            return outcome.result.map(|answer| (answer, outcome.instance));
        }
        let (result, instance, barrier, news, finished) = {
            let mut core = self.core.lock();
            core.clear_effects();
            let at = self.config.clock.now();
            let result = operation(&mut core, at);
            let instance = match scope.target {
                Target::Mailbox(mailbox) => core.mailbox_instance(scope.appid, mailbox),
                _ => None,
            };
            let (barrier, news) = self.record_effects(&core, at, client);
            (result, instance, barrier, news, core.finished().to_vec())
        };
        self.durable(barrier).await?;
        self.wake(&news);
        log_finished(&finished);
        result.map(|answer| (answer, instance))
    }

    /// The mailbox a request reaches now, if any.
    pub(crate) async fn mailbox_for(&self, request: &Request) -> Result<Option<MailboxId>, WireError> {
        match (self.storage.shared(), request.mailbox()) {
            // Named: waiting on it costs no query (if it is gone, the fetch says so).
            (Some(_), Some(mailbox)) => Ok(Some(mailbox.clone())),
            (Some(postgres), None) => match request.channel() {
                Some(nameplate) => postgres.mailbox_of(request.appid(), nameplate).await,
                None => Ok(None),
            },
            (None, _) => Ok(self.core.lock().mailbox_for(request)),
        }
    }

    /// Journals what the state machine's last operation changed, mailbox by
    /// mailbox, and charges or frees their bytes and channels: a new message
    /// or channel is charged to `client`, a dropped log or a deleted channel
    /// is given back. Returns the journal
    /// position an answer must wait for (reads wait only for what they
    /// saw, not for their own activity stamp) and the mailboxes whose
    /// waiters have news.
    pub(crate) fn record_effects(&self, core: &Rendezvous, at: Timestamp, client: Option<IpAddr>) -> (u64, News) {
        let mut barrier = self.storage.last_recorded();
        let mut with_news = News::new();
        let effects = core.effects();
        let mut order: Vec<(&str, &MailboxId)> = Vec::new();
        for effect in effects {
            if !order.iter().any(|(a, m)| *a == effect.appid && **m == effect.mailbox) {
                order.push((&effect.appid, &effect.mailbox));
            }
        }
        for (appid, mailbox) in order {
            let kinds: Vec<EffectKind> =
                effects.iter().filter(|e| e.appid == appid && e.mailbox == *mailbox).map(|e| e.kind).collect();
            let has = |kind: EffectKind| kinds.contains(&kind);
            let exists = core.contains_mailbox(appid, mailbox);
            if has(EffectKind::Deleted) || has(EffectKind::LogDropped) {
                // Deleted, or finished and kept only for the retention: its bytes
                // and its place under its maker's cap are free.
                self.budgets.release(appid, mailbox);
                self.budgets.channel_gone(appid, mailbox);
            } else if let (true, Some(client)) = (has(EffectKind::Created), client) {
                self.budgets.channel_made(appid, mailbox, client);
            }
            if has(EffectKind::Deleted) {
                barrier = self.storage.record(Change::Delete { appid: appid.into(), mailbox: mailbox.clone() });
            }
            let appended =
                kinds.iter().filter_map(|k| if let EffectKind::Appended(seq) = k { Some(*seq) } else { None });
            let news = kinds.iter().any(|kind| kind.is_news());
            for seq in appended {
                let Some(message) = core.message(appid, mailbox, seq) else { continue };
                if let Some(client) = client {
                    self.budgets.charge(appid, mailbox, client, message.body.len() as u64);
                }
                if exists && !has(EffectKind::Changed) {
                    let (appid, mailbox, message) = (appid.into(), mailbox.clone(), message.clone());
                    barrier = self.storage.record(Change::Message { appid, mailbox, message, at });
                }
            }
            if exists && (has(EffectKind::Changed) || has(EffectKind::Deleted)) {
                if let Some(snapshot) = core.mailbox_snapshot(appid, mailbox) {
                    barrier = self.storage.record(Change::Mailbox(snapshot));
                }
            } else if exists && has(EffectKind::Released) {
                // Not waited for: see `Change::Released`.
                if let Some((holds_nameplate, members)) = core.members_snapshot(appid, mailbox) {
                    let (appid, mailbox) = (appid.to_string(), mailbox.clone());
                    self.storage.record(Change::Released { appid, mailbox, holds_nameplate, members, at });
                }
            } else if exists && !news && has(EffectKind::Touched) {
                self.storage.record(Change::Touch { appid: appid.into(), mailbox: mailbox.clone(), at });
            }
            if news {
                with_news.push((appid.to_string(), mailbox.clone()));
            }
        }
        (barrier, with_news)
    }

    /// Refuses `op` before it runs (under the state's lock, so concurrent
    /// operations cannot pass a cap together) if what it would add is past
    /// a cap or budget of `client`'s: a new application id past the cap on
    /// them, a new channel past the client's, a new message past the
    /// client's, the app's or the server's bytes. On a shared database the
    /// operation's transaction checks them instead, over every instance.
    fn within_caps(&self, core: &Rendezvous, op: &Op, client: Option<IpAddr>) -> Result<(), WireError> {
        let (None, Some(client)) = (self.storage.shared(), client) else { return Ok(()) };
        let demands = core.demands(op);
        let max_apps = self.config.max_apps;
        if demands.new_app && max_apps > 0 && core.stats().apps >= max_apps {
            let message = "the server holds as many application ids as it allows";
            return Err(WireError::new(ErrorCode::ServerFull, message));
        }
        if demands.new_channel {
            self.budgets.check_channels(client)?;
        }
        if demands.stored_bytes > 0 {
            self.budgets.check(op.appid(), client, demands.stored_bytes)?;
        }
        Ok(())
    }

    /// Deletes idle mailboxes and journals their deletion, a step of
    /// [`SWEEP_STEP`] mailboxes at a time, so requests are served between
    /// steps however many there are.
    pub(crate) async fn sweep(&self) -> usize {
        if let Some(postgres) = self.storage.shared() {
            self.limiter.forget_idle();
            self.message_limiter.forget_idle();
            self.waiters.shrink();
            // Its notifications wake the waiters, here as on the other instances.
            return postgres.sweep(self.config.clock.now(), &self.config.rendezvous).await.unwrap_or(0);
        }
        let mut cursor = SweepCursor::default();
        let mut total = 0;
        loop {
            let (expired, news, done) = {
                let mut core = self.core.lock();
                let at = self.config.clock.now();
                let (expired, done) = core.expire_step(at, &mut cursor, SWEEP_STEP);
                let (_, news) = self.record_effects(&core, at, None);
                (expired.len(), news, done)
            };
            self.wake(&news);
            total += expired;
            if done {
                break;
            }
            tokio::task::yield_now().await;
        }
        self.core.lock().shrink_indexes();
        self.waiters.shrink();
        self.limiter.forget_idle();
        self.message_limiter.forget_idle();
        total
    }

    /// Answers every waiting long-poll and refuses new waits.
    pub(crate) fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.waiters.wake_all();
        self.shutdown.notify_waiters();
    }
}

/// One line per finished exchange (its last side closed), at the default
/// level: the app id, each side's mood and how many messages it held;
/// never codes, sides or bodies. Once durable, so a line means it happened.
fn log_finished(finished: &[wormhole_sync_core::rendezvous::Finished]) {
    for exchange in finished {
        let moods: Vec<String> = exchange.moods.iter().map(ToString::to_string).collect();
        tracing::info!(
            appid = %exchange.appid,
            moods = %moods.join(","),
            messages = exchange.messages,
            "exchange finished"
        );
    }
}
