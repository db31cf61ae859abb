//! The HTTP binding: routes, body limits, error bodies, long-polls.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, Request as HttpRequest, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{any, get};
use axum::Router;
use wormhole_sync_core::rendezvous::Rendezvous;
use wormhole_sync_core::wire::{ErrorCode, FetchRequest, PostRequest, Request, Response, Route, WireError};

use crate::app::App;
use crate::metrics::Snapshot;
use crate::net::json;
use crate::postgres::Scope;

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
}
