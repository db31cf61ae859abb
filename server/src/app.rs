//! The state every front end shares, and what they do through it that
//! does not depend on the front end: running one operation on the engine
//! (see [`crate::engine`]), waking waiters, logging finished exchanges,
//! sweeping, stopping.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use wormhole_sync_core::rendezvous::{Limit, Listening, Op, Outcome};
use wormhole_sync_core::wire::{MailboxId, Message, Request, WireError};

use crate::change::MailboxNews;
use crate::client_address::ClientAddresses;
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::waiters::Waiters;
use crate::ServerConfig;

/// Everything the handlers share.
pub(crate) struct App {
    pub(crate) engine: Engine,
    pub(crate) waiters: Arc<Waiters>,
    pub(crate) metrics: Metrics,
    pub(crate) limiter: RateLimiter,
    pub(crate) message_limiter: RateLimiter,
    pub(crate) clients: ClientAddresses,
    pub(crate) connections: Arc<crate::connections::Connections>,
    pub(crate) config: ServerConfig,
    pub(crate) stopping: AtomicBool,
    /// Open mailbox protocol connections.
    pub(crate) websockets: std::sync::atomic::AtomicUsize,
    /// Tells mailbox protocol connections the server is stopping.
    pub(crate) shutdown: tokio::sync::Notify,
}

impl App {
    /// Wakes whoever waits on these mailboxes (long-polls, WebSockets).
    pub(crate) fn wake(&self, news: &[MailboxNews]) {
        for news in news {
            self.waiters.wake(&news.appid, &news.mailbox, news.committed.as_ref());
        }
    }

    /// Runs `op` for `client` on the engine (past the caps and budgets that
    /// apply to it), then, once what it changed is durable, wakes the
    /// waiters of the mailboxes with news and logs the exchanges it
    /// finished.
    pub(crate) async fn execute(&self, op: &Op, client: Option<IpAddr>) -> Result<Outcome, WireError> {
        let ran = self.engine.execute(&self.config, op, client).await?;
        self.wake(&ran.news);
        log_finished(&ran.finished);
        ran.result
    }

    /// The rate limiter of `limit`.
    pub(crate) fn limiter(&self, limit: Limit) -> &RateLimiter {
        match limit {
            Limit::Channels => &self.limiter,
            Limit::Messages => &self.message_limiter,
        }
    }

    /// The messages a session listens to, once durable (see
    /// [`Engine::messages_after`]).
    pub(crate) async fn messages_after(&self, listening: Listening<'_>) -> Result<Vec<Message>, WireError> {
        self.engine.messages_after(listening).await
    }

    /// The mailbox a request reaches now, if any.
    pub(crate) async fn mailbox_for(&self, request: &Request) -> Result<Option<MailboxId>, WireError> {
        self.engine.mailbox_for(request).await
    }

    /// Deletes idle mailboxes (waking their waiters) and forgets idle
    /// clients and waiters.
    pub(crate) async fn sweep(&self) -> usize {
        let total = self.engine.sweep(&self.config, |news| self.wake(news)).await;
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
