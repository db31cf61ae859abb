//! The HTTP binding: routes, body limits, error bodies, long-polls.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, Request as HttpRequest, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{any, get};
use axum::Router;
use wormhole_sync_core::rendezvous::{Answer, Held, Limit, LongPoll, Op, Outcome};
use wormhole_sync_core::wire::{ErrorCode, Request, Response, Route, WireError};

use crate::app::App;
use crate::change::Committed;
use crate::metrics::Snapshot;
use crate::net::json;
use crate::waiters::Waiter;

pub(crate) fn router(app: Arc<App>) -> Router {
    let cors = crate::cors::Allowed::new(&app.config.cors_origins);
    let router = Router::new()
        .route("/", get(front_page).fallback(method_not_allowed))
        .route("/page/{name}", get(crate::page::asset).fallback(method_not_allowed))
        .route("/health", get(health).fallback(method_not_allowed))
        .route("/metrics", get(metrics).fallback(method_not_allowed))
        .route("/v1", any(crate::mailbox::upgrade))
        .route("/v1/{operation}", any(operation))
        .fallback(not_found)
        .with_state(app);
    match cors {
        Some(allowed) => router.layer(axum::middleware::from_fn_with_state(allowed, crate::cors::middleware)),
        None => router,
    }
}

/// 200 while the server can serve; 503 with the reason when it cannot
/// (storage failed, or shutting down), so a load balancer stops sending.
async fn health(State(app): State<Arc<App>>) -> HttpResponse {
    if !app.engine.healthy().await {
        json(503, br#"{"status":"storage-failed"}"#.to_vec())
    } else if app.stopping.load(Ordering::Relaxed) {
        json(503, br#"{"status":"stopping"}"#.to_vec())
    } else {
        json(200, br#"{"status":"ok"}"#.to_vec())
    }
}

async fn metrics(State(app): State<Arc<App>>) -> HttpResponse {
    let (stats, stored_bytes, storing_clients) = app.engine.usage().await;
    let text = app.metrics.render(Snapshot {
        stats,
        waiting: app.waiters.waiting(),
        websockets: app.websockets.load(Ordering::Relaxed),
        connections: app.connections.open(),
        stored_bytes,
        storing_clients,
        storage_healthy: app.engine.storage_healthy(),
        split_batches: app.engine.split_batches(),
        missed_turns: app.engine.missed_turns(),
    });
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

async fn method_not_allowed() -> HttpResponse {
    let e = WireError::new(ErrorCode::MethodNotAllowed, "this path does not take this method");
    json(e.http_status(), e.to_json())
}

/// What a person who opens the server's address in a browser reads: what
/// this is and how to point the clients at it.
async fn front_page(State(app): State<Arc<App>>, request: HeaderMap) -> HttpResponse {
    if app.config.page && crate::page::wants_page(&request) {
        return crate::page::index(&request);
    }
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
    let e = WireError::new(ErrorCode::NotFound, "no such path; the API is under /v1/");
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
        None => Err(WireError::new(ErrorCode::NotFound, "no such operation")),
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

/// The response a request's outcome carries.
fn response(outcome: Outcome) -> Response {
    match outcome {
        Outcome { answer: Answer::Response(response), .. } => response,
        Outcome { answer, .. } => unreachable!("a request answered {answer:?}"),
    }
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
            return Err(WireError::new(ErrorCode::MethodNotAllowed, "operations take POST"));
        }
        if !is_json(request.headers()) {
            return Err(WireError::new(ErrorCode::UnsupportedMediaType, "the body must be application/json"));
        }
        let client = self.clients.of(peer.ip(), request.headers());
        if !self.limiter(Limit::of_route(route)).allow(client) {
            return Err(WireError::new(ErrorCode::RateLimited, "too many requests of this kind from this address"));
        }
        let limit = self.config.max_body_bytes;
        let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(WireError::new(ErrorCode::BodyTooLarge, "the request body is larger than this server reads"));
        }
        let body: Body = request.into_body();
        let bytes = match tokio::time::timeout(self.config.body_timeout, to_bytes(body, limit)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(_)) => {
                return Err(WireError::new(
                    ErrorCode::BodyTooLarge,
                    "the request body is larger than this server reads",
                ))
            }
            Err(_) => return Err(WireError::new(ErrorCode::BadRequest, "the request body did not arrive in time")),
        };
        let request = Request::parse(route, &bytes)?;
        match LongPoll::new(request, self.config.clock.now(), self.config.rendezvous.max_wait) {
            Ok(poll) => self.long_poll(poll, client.address).await,
            Err(request) => self.apply(request, client.address).await,
        }
    }

    /// Applies a request to the state and answers once its change is durable.
    async fn apply(&self, request: Request, client: IpAddr) -> Result<Response, WireError> {
        self.execute(&Op::Request(request), Some(client)).await.map(response)
    }

    /// A request held for news by the core's rules ([`LongPoll`]): the post
    /// first, then reads, each registered for wake-ups before it looks, so
    /// news landing in between still wakes it, until its log has news for
    /// its side, its wait ends, or the server stops. A read woken by a commit
    /// to a shared database runs on the state that commit announced when the
    /// core's rule allows ([`LongPoll::may_answer_from`]) and it is of the
    /// mailbox the last read saw, sparing the database a read.
    async fn long_poll(&self, mut poll: LongPoll, client: IpAddr) -> Result<Response, WireError> {
        // Its own clock runs from the server's at the start, monotonic from there,
        // so a step of the system clock neither ends the wait early nor stretches it.
        let (started_at, started) = (self.config.clock.now(), tokio::time::Instant::now());
        let now = || started_at + started.elapsed();
        // The instance of the mailbox the last read saw, and the state the
        // wake-up after it brought.
        let (mut seen_instance, mut committed) = (None, None);
        loop {
            let waiter = match poll.reads() {
                true => self.mailbox_for(poll.next()).await?.map(|m| self.waiters.register(poll.next().appid(), &m)),
                false => None,
            };
            let woken = waiter.as_ref().map(|waiter| waiter.notified());
            let announced = committed
                .take()
                .filter(|c: &Arc<Committed>| seen_instance == Some(c.instance) && poll.may_answer_from(&c.snapshot));
            let op = Op::Request(poll.next().clone());
            let outcome = match announced.and_then(|c| self.engine.read_from(&self.config, &op, &c)) {
                Some(outcome) => {
                    self.metrics.announced_read();
                    Ok(outcome)
                }
                None => self.execute(&op, Some(client)).await,
            };
            if poll.reads() {
                seen_instance = outcome.as_ref().ok().and_then(|outcome| outcome.instance);
            }
            let can_wait = woken.is_some() && !self.stopping.load(Ordering::Relaxed);
            match poll.on_answer(now(), outcome.map(response), can_wait) {
                Held::Answer(answer) => return answer,
                Held::Run => continue,
                Held::Wait { until } => {
                    let wait = until.saturating_since(now());
                    tokio::select! {
                        _ = woken.expect("it can wait") => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                    committed = waiter.as_ref().and_then(Waiter::committed);
                }
            }
        }
    }
}
