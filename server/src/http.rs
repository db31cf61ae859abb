//! The HTTP binding: routes, body limits, error bodies, long-polls.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, Request as HttpRequest, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{any, get};
use axum::Router;
use wormhole_sync_core::rendezvous::{EffectKind, Rendezvous, SweepCursor};
use wormhole_sync_core::wire::{ErrorCode, FetchRequest, MailboxId, PostRequest, Request, Response, Route, WireError};
use wormhole_sync_core::Timestamp;

use crate::client_address::ClientAddresses;
use crate::metrics::{Metrics, Snapshot};
use crate::postgres::{Scope, Target};
use crate::rate_limit::RateLimiter;
use crate::storage::{Change, Storage};
use crate::waiters::Waiters;
use crate::ServerConfig;

/// Everything the handlers share.
pub(crate) struct App {
    pub(crate) core: Mutex<Rendezvous>,
    pub(crate) storage: Storage,
    pub(crate) waiters: Waiters,
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

pub(crate) fn json(status: u16, body: Vec<u8>) -> HttpResponse {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error(code: ErrorCode, message: &str) -> WireError {
    WireError::new(code, message)
}

pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(front_page).fallback(method_not_allowed))
        .route("/health", get(health).fallback(method_not_allowed))
        .route("/metrics", get(metrics).fallback(method_not_allowed))
        .route("/v1", any(crate::mailbox::upgrade))
        .route("/v1/{operation}", any(operation))
        .fallback(not_found)
        .with_state(app)
}

/// 200 while the server can serve; 503 with the reason when it cannot
/// (storage failed, or shutting down), so a load balancer stops sending.
async fn health(State(app): State<Arc<App>>) -> HttpResponse {
    let storage_healthy = match app.storage.shared() {
        Some(postgres) => postgres.check().await,
        None => app.storage.healthy(),
    };
    if !storage_healthy {
        json(503, br#"{"status":"storage-failed"}"#.to_vec())
    } else if app.stopping.load(Ordering::Relaxed) {
        json(503, br#"{"status":"stopping"}"#.to_vec())
    } else {
        json(200, br#"{"status":"ok"}"#.to_vec())
    }
}

async fn metrics(State(app): State<Arc<App>>) -> HttpResponse {
    let (stats, stored_bytes, storing_clients) = match app.storage.shared() {
        Some(postgres) => postgres.stats().await.unwrap_or_default(),
        None => {
            let (stored_bytes, storing_clients) = app.budgets.usage();
            (app.core.lock().stats(), stored_bytes, storing_clients)
        }
    };
    let text = app.metrics.render(Snapshot {
        stats,
        waiting: app.waiters.waiting(),
        websockets: app.websockets.load(Ordering::Relaxed),
        connections: app.connections.open(),
        stored_bytes,
        storing_clients,
        storage_healthy: app.storage.healthy(),
    });
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

async fn method_not_allowed() -> HttpResponse {
    let e = error(ErrorCode::MethodNotAllowed, "this path does not take this method");
    json(e.http_status(), e.to_json())
}

/// What a person who opens the server's address in a browser reads: what
/// this is and how to point the clients at it.
async fn front_page() -> HttpResponse {
    const PAGE: &str = "\
This is a wormhole-sync rendezvous server: it relays the encrypted messages
of two computers exchanging a small piece of data (a key, an address, an
invitation) with a short invitation code. It never sees the code or the data.

Use it with the wormhole-sync command, giving the address you opened this
page with (http://HOST:PORT, or https://... behind TLS):

    wormhole-sync send --rendezvous http://HOST:PORT 'the data'
    wormhole-sync receive --rendezvous http://HOST:PORT 7-guitarist-revenge

or set WORMHOLE_SYNC_RENDEZVOUS=http://HOST:PORT once. magic-wormhole's
`wormhole` command talks to it too:

    wormhole --relay-url ws://HOST:PORT/v1 send --text 'the data'

The HTTP API is under /v1/ (see PROTOCOL.md); /health answers whether the
server can serve, /metrics its counters.
";
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], PAGE).into_response()
}

async fn not_found() -> HttpResponse {
    let e = error(ErrorCode::NotFound, "no such path; the API is under /v1/");
    json(e.http_status(), e.to_json())
}

async fn operation(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: HttpRequest,
) -> HttpResponse {
    let started = Instant::now();
    let route = Route::from_path(request.uri().path());
    let label = route.map_or("unknown", Route::name);
    let result = match route {
        Some(route) => app.operation(route, peer, request).await,
        None => Err(error(ErrorCode::NotFound, "no such operation")),
    };
    let (status, body, code) = match result {
        Ok(response) => (200, response.to_json(), "ok"),
        Err(e) => (e.http_status(), e.to_json(), e.code.as_str()),
    };
    app.metrics.observe(label, code, started.elapsed().as_secs_f64());
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    tracing::debug!(route = label, status, code, micros, "request");
    json(status, body)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

impl App {
    async fn operation(&self, route: Route, peer: SocketAddr, request: HttpRequest) -> Result<Response, WireError> {
        if request.method() != Method::POST {
            return Err(error(ErrorCode::MethodNotAllowed, "operations take POST"));
        }
        if !is_json(request.headers()) {
            return Err(error(ErrorCode::UnsupportedMediaType, "the body must be application/json"));
        }
        let client = self.clients.of(peer.ip(), request.headers());
        let limited = match route {
            Route::Allocate | Route::Join => !self.limiter.allow(client),
            // Closes too: they were once an unlimited probe of which ids are in use.
            Route::Post | Route::Fetch | Route::Close => !self.message_limiter.allow(client),
        };
        if limited {
            return Err(error(ErrorCode::RateLimited, "too many requests of this kind from this address"));
        }
        let limit = self.config.max_body_bytes;
        let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(error(ErrorCode::BodyTooLarge, "the request body is larger than this server reads"));
        }
        let body: Body = request.into_body();
        let bytes = match tokio::time::timeout(self.config.body_timeout, to_bytes(body, limit)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(_)) => {
                return Err(error(ErrorCode::BodyTooLarge, "the request body is larger than this server reads"))
            }
            Err(_) => return Err(error(ErrorCode::BadRequest, "the request body did not arrive in time")),
        };
        match Request::parse(route, &bytes)? {
            request if request.wait_ms() > 0 => self.long_poll(request, client.address).await,
            request => self.apply(&request, client.address).await,
        }
    }

    /// Applies a request to the state and answers once its change is durable.
    async fn apply(&self, request: &Request, client: IpAddr) -> Result<Response, WireError> {
        let (response, _) = self
            .run(Scope::of(request), Some(client), |core, at| {
                self.within_budgets(core, request, client)?;
                core.handle(at, request)
            })
            .await?;
        Ok(response)
    }

    pub(crate) async fn durable(&self, barrier: u64) -> Result<(), WireError> {
        self.storage.committed(barrier).await.map_err(|e| {
            tracing::error!(error = %crate::Chain(&e), "answering storage-unavailable");
            error(ErrorCode::StorageUnavailable, "the server cannot store anything right now")
        })
    }

    /// Wakes whoever waits on these mailboxes (long-polls, WebSockets).
    pub(crate) fn wake(&self, mailboxes: &[(String, MailboxId)]) {
        for (appid, mailbox) in mailboxes {
            self.waiters.wake(appid, mailbox);
        }
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

    /// The nameplates of `appid` in use, in order.
    pub(crate) async fn nameplates(&self, appid: &str) -> Result<Vec<wormhole_sync_core::ChannelId>, WireError> {
        match self.storage.shared() {
            Some(postgres) => postgres.nameplates(appid).await,
            None => Ok(self.core.lock().nameplates(appid)),
        }
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

    /// Refuses, before an operation that may make a channel runs (both
    /// front ends, under the state's lock), a new application id past the
    /// cap on them, and a new channel (`creates`) past its client's cap.
    /// On a shared database the caps are checked in the operation's
    /// transaction instead, over every instance.
    pub(crate) fn may_make_channel(
        &self,
        core: &Rendezvous,
        appid: &str,
        client: IpAddr,
        creates: bool,
    ) -> Result<(), WireError> {
        if self.storage.shared().is_some() {
            return Ok(());
        }
        let max = self.config.max_apps;
        if max > 0 && !core.has_app(appid) && core.stats().apps >= max {
            return Err(error(ErrorCode::ServerFull, "the server holds as many application ids as it allows"));
        }
        if creates {
            self.budgets.check_channels(client)?;
        }
        Ok(())
    }

    /// Refuses what would store more than a budget allows: a new message
    /// past the client's, the app's or the server's byte budget, or a
    /// channel for an application id past the cap on them. (On a shared
    /// database, the operation's transaction checks them instead.)
    fn within_budgets(&self, core: &Rendezvous, request: &Request, client: IpAddr) -> Result<(), WireError> {
        if self.storage.shared().is_some() {
            return Ok(());
        }
        let posted_before = |post: &PostRequest| {
            core.mailbox_for(request).is_some_and(|m| core.has_posted(&post.appid, &m, &post.side, &post.phase))
        };
        match request {
            Request::Post(post) if !posted_before(post) => {
                self.budgets.check(&post.appid, client, post.body.len() as u64)
            }
            Request::Allocate(_) | Request::Join(_) => {
                self.may_make_channel(core, request.appid(), client, core.creates_channel(request))
            }
            _ => Ok(()),
        }
    }

    /// A request that asked to be held (a fetch with a wait, or a post with
    /// a cursor and a wait): applied at once, then, while its log has no
    /// news for its side, held until a post or close touches the channel,
    /// its wait ends, or the server stops.
    async fn long_poll(&self, request: Request, client: IpAddr) -> Result<Response, WireError> {
        let wait = Duration::from_millis(request.wait_ms()).min(self.config.rendezvous.max_wait);
        let deadline = tokio::time::Instant::now() + wait;
        let (appid, side) = (request.appid(), request.side());
        let channel = request.channel().expect("long-polls name a channel");
        let (first, after) = match &request {
            // A post is stored (and wakes the others) before it waits.
            Request::Post(post) => (Some(self.apply(&request, client).await?), post.after.unwrap_or(0)),
            Request::Fetch(fetch) => (None, fetch.after),
            _ => unreachable!("only fetches and posts wait"),
        };
        if first.as_ref().is_some_and(|answer| !answer.waits_for_news(side)) {
            return Ok(first.expect("checked above"));
        }
        let read =
            Request::Fetch(FetchRequest::new(appid, side, channel, after, 0)).with_mailbox(request.mailbox().cloned());
        loop {
            // Register before looking, so a post landing in between still wakes us.
            let mailbox = self.mailbox_for(&read).await?;
            let waiter = mailbox.as_ref().map(|mailbox| self.waiters.register(appid, mailbox));
            let woken = waiter.as_ref().map(|waiter| waiter.notified());
            let log = match self.apply(&read, client).await? {
                Response::Fetched(log) => log,
                _ => unreachable!("a fetch answers with a log"),
            };
            let done = log.has_news_for(side)
                || woken.is_none()
                || tokio::time::Instant::now() >= deadline
                || self.stopping.load(Ordering::Relaxed);
            if done {
                return Ok(match first {
                    Some(Response::Posted(mut posted)) => {
                        posted.log = Some(log);
                        Response::Posted(posted)
                    }
                    _ => Response::Fetched(log),
                });
            }
            tokio::select! {
                _ = woken.expect("checked above") => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
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
