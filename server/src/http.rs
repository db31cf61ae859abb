//! The HTTP binding: routes, body limits, error bodies, long-polls.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant, SystemTime};

use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, Request as HttpRequest, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{any, get};
use axum::Router;
use wormhole_sync_core::rendezvous::{Rendezvous, SweepCursor};
use wormhole_sync_core::wire::{ErrorCode, FetchRequest, Message, Request, Response, Route, WireError};
use wormhole_sync_core::Timestamp;

use crate::client_address::ClientAddresses;
use crate::metrics::{Metrics, Snapshot};
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
}

/// Channels a sweep looks at while holding the state.
const SWEEP_STEP: usize = 1_000;

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

fn json(status: u16, body: Vec<u8>) -> HttpResponse {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error(code: ErrorCode, message: &str) -> WireError {
    WireError::new(code, message)
}

pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/health", get(health).fallback(method_not_allowed))
        .route("/metrics", get(metrics).fallback(method_not_allowed))
        .route("/v1/{operation}", any(operation))
        .fallback(not_found)
        .with_state(app)
}

/// 200 while the server can serve; 503 with the reason when it cannot
/// (storage failed, or shutting down), so a load balancer stops sending.
async fn health(State(app): State<Arc<App>>) -> HttpResponse {
    if !app.storage.healthy() {
        json(503, br#"{"status":"storage-failed"}"#.to_vec())
    } else if app.stopping.load(Ordering::Relaxed) {
        json(503, br#"{"status":"stopping"}"#.to_vec())
    } else {
        json(200, br#"{"status":"ok"}"#.to_vec())
    }
}

/// The answer to a request whose handler panicked: that request fails,
/// nothing else does (no lock is poisoned).
pub(crate) fn internal_error() -> HttpResponse {
    let e = error(ErrorCode::Internal, "the server failed on this request");
    json(e.http_status(), e.to_json())
}

async fn metrics(State(app): State<Arc<App>>) -> HttpResponse {
    let stats = app.core.lock().stats();
    let (stored_bytes, storing_clients) = app.budgets.usage();
    let text = app.metrics.render(Snapshot {
        stats,
        waiting: app.waiters.waiting(),
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
            Route::Post | Route::Fetch => !self.message_limiter.allow(client),
            Route::Close => false,
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
            request if request.wait_ms() > 0 => self.long_poll(request, client).await,
            request => self.apply(&request, client).await,
        }
    }

    /// Applies a request to the state, queues its change, and answers once
    /// the change is durable.
    async fn apply(&self, request: &Request, client: IpAddr) -> Result<Response, WireError> {
        let (result, barrier) = self.handle_and_record(request, client);
        self.durable(barrier).await?;
        if let (Ok(_), true, Some(channel)) = (&result, request.wakes_waiters(), request.channel()) {
            self.waiters.wake(request.appid(), channel);
        }
        result
    }

    async fn durable(&self, barrier: u64) -> Result<(), WireError> {
        self.storage.committed(barrier).await.map_err(|e| {
            tracing::error!(error = %e, "answering storage-unavailable");
            error(ErrorCode::StorageUnavailable, "the server cannot store anything right now")
        })
    }

    /// Runs the request on the state machine and queues what changed.
    /// Returns the answer and the journal position that must be durable
    /// before it is sent.
    fn handle_and_record(&self, request: &Request, client: IpAddr) -> (Result<Response, WireError>, u64) {
        let mut core = self.core.lock();
        let existed = request.channel().is_some_and(|c| core.contains(request.appid(), c));
        if let Err(refused) = self.within_budgets(&core, request, client) {
            return (Err(refused), self.storage.last_recorded());
        }
        let messages_before = core.stats().messages;
        let at = now();
        let result = core.handle(at, request);
        if let (Request::Post(post), Ok(_)) = (request, &result) {
            if core.stats().messages > messages_before {
                self.budgets.charge(&post.appid, post.channel, client, post.body.len() as u64);
            }
        }
        let channel = match (request.channel(), &result) {
            (Some(channel), _) => channel,
            (None, Ok(Response::Allocated(allocated))) => allocated.channel,
            _ => return (result, self.storage.last_recorded()),
        };
        let appid = request.appid().to_string();
        let log_dropped = !core.contains(&appid, channel)
            || (matches!(request, Request::Close(_)) && core.stored_bytes(&appid, channel) == 0);
        if log_dropped {
            // Its log is gone (deleted, or burned by a close after a wrong code): its bytes are free again.
            self.budgets.release(&appid, channel);
        }
        if !core.contains(&appid, channel) {
            // Deleted by this request (a final close, or found idle): forget it on disk too.
            let barrier = if existed {
                self.storage.record(Change::Delete { appid, channel })
            } else {
                self.storage.last_recorded()
            };
            return (result, barrier);
        }
        // A successful request stamps the channel's activity with `at`. Fetches and
        // posts are journalled from what the request holds; only membership changes
        // (allocate, join, close) copy the channel, whose log may be large.
        let barrier = match (request, &result) {
            (_, Err(_)) => self.storage.last_recorded(),
            (Request::Fetch(_), Ok(_)) => {
                // Reads wait for what they saw, not for their own activity stamp.
                let seen = self.storage.last_recorded();
                self.storage.record(Change::Touch { appid, channel, at });
                seen
            }
            (Request::Post(post), Ok(Response::Posted(posted))) => {
                // A repeated post returns the original seq, and its body is identical.
                let message = Message::new(posted.seq, post.side.clone(), post.phase.clone(), post.body.clone());
                self.storage.record(Change::Message { appid, channel, message, at })
            }
            (_, Ok(_)) => match core.channel_snapshot(&appid, channel) {
                Some(snapshot) => self.storage.record(Change::Channel(snapshot)),
                None => self.storage.last_recorded(),
            },
        };
        (result, barrier)
    }

    /// Refuses what would store more than a budget allows: a new message
    /// past the client's, the app's or the server's byte budget, or a
    /// channel for an application id past the cap on them.
    fn within_budgets(&self, core: &Rendezvous, request: &Request, client: IpAddr) -> Result<(), WireError> {
        match request {
            Request::Post(post) if !core.has_posted(&post.appid, post.channel, &post.side, &post.phase) => {
                self.budgets.check(&post.appid, client, post.body.len() as u64)
            }
            Request::Allocate(_) | Request::Join(_) => {
                let max = self.config.max_apps;
                if max > 0 && !core.has_app(request.appid()) && core.stats().apps >= max {
                    return Err(error(ErrorCode::ServerFull, "the server holds as many application ids as it allows"));
                }
                Ok(())
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
        let read = Request::Fetch(FetchRequest::new(appid, side, channel, after, 0));
        loop {
            // Register before looking, so a post landing in between still wakes us.
            let waiter = self.waiters.register(appid, channel);
            let woken = waiter.notified();
            let (result, barrier) = self.handle_and_record(&read, client);
            self.durable(barrier).await?;
            let log = match result? {
                Response::Fetched(log) => log,
                _ => unreachable!("a fetch answers with a log"),
            };
            let done = log.has_news_for(side)
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
                _ = woken => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Deletes idle channels and journals their deletion, a step of
    /// [`SWEEP_STEP`] channels at a time, so requests are served between
    /// steps however many channels there are.
    pub(crate) async fn sweep(&self) -> usize {
        let mut cursor = SweepCursor::default();
        let mut total = 0;
        loop {
            let (expired, done) = {
                let mut core = self.core.lock();
                let (expired, done) = core.expire_step(now(), &mut cursor, SWEEP_STEP);
                for (appid, channel) in &expired {
                    self.storage.record(Change::Delete { appid: appid.clone(), channel: *channel });
                    self.budgets.release(appid, *channel);
                }
                (expired, done)
            };
            for (appid, channel) in &expired {
                self.waiters.wake(appid, *channel);
            }
            total += expired.len();
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
    }
}
