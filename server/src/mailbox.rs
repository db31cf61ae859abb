//! magic-wormhole's mailbox protocol: the WebSocket front end on `/v1`, so
//! an unmodified `wormhole` command (and the other clients of that
//! ecosystem) can use this server as its mailbox server.
//!
//! Each connection is one [`MailboxSession`], the core's rules of the
//! protocol (what it bound, claimed, opened and closed), whose operations
//! run on the rendezvous state the HTTP API shares, so nameplates never
//! collide between the two and rate limits, caps, budgets, burning, expiry
//! and durability apply to both. This module is the adapter: frames in and
//! out, rate limits, pings, and pushes: a session that opened a mailbox
//! waits on the mailbox's notifier and sends what was added as soon as it
//! is durable.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message as Frame, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::Extension;
use wormhole_sync_core::mailbox_wire::{ServerMessage, MAX_FRAME_BYTES};
use wormhole_sync_core::rendezvous::{seconds, Limit, MailboxSession, Op, Outcome, Step};
use wormhole_sync_core::wire::{ErrorCode, MailboxId, WireError};

use crate::app::App;
use crate::change::Committed;
use crate::client_address::Client;
use crate::connections::Admitted;
use crate::Clock;

/// How often the server pings an open connection (as the reference does).
const PING_INTERVAL: Duration = Duration::from_secs(60);
/// After news could not be read (the database or the journal failing),
/// the first wait before reading again; it doubles up to [`NEWS_RETRY_MAX`]
/// while the reads keep failing. A wake-up is not sent again, so without
/// this a waiting peer would learn of the message only at its next frame.
const NEWS_RETRY: Duration = Duration::from_millis(250);
const NEWS_RETRY_MAX: Duration = Duration::from_secs(8);
/// Bytes each connection's reader buffers: frames are small, and an idle
/// client should cost little (the default, 128 KiB, would cost 1.3 GB for
/// 10,000 waiting clients).
const READ_BUFFER: usize = 4 * 1024;

/// `GET /v1` with an upgrade: a mailbox protocol connection.
pub(crate) async fn upgrade(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    admitted: Option<Extension<Arc<Admitted>>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> HttpResponse {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            let e = WireError::new(
                ErrorCode::BadRequest,
                format!("/v1 speaks the mailbox protocol over WebSocket: {rejection}"),
            );
            return crate::net::json(e.http_status(), e.to_json());
        }
    };
    let client = app.clients.of(peer.ip(), &headers);
    upgrade
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move {
            let _admitted = admitted;
            serve(app, socket, client).await;
        })
        .into_response()
}

/// Counts an open connection for metrics while it lives.
struct Open(Arc<App>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.websockets.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs one connection until the client leaves, falls silent past the idle
/// timeout, or the server stops.
async fn serve(app: Arc<App>, mut socket: WebSocket, client: Client) {
    app.websockets.fetch_add(1, Ordering::Relaxed);
    let _open = Open(app.clone());
    let stop = app.shutdown.notified();
    let mut stop = std::pin::pin!(stop);
    stop.as_mut().enable();
    if app.stopping.load(Ordering::Relaxed) {
        return;
    }
    let mut session = MailboxSession::new(app.config.allow_list);
    let welcome = ServerMessage::Welcome { motd: app.config.motd.clone(), error: None };
    if send(&mut socket, &app.config.clock, &[welcome]).await.is_err() {
        return;
    }
    let idle_timeout = app.config.websocket_idle_timeout;
    let mut last_heard = Instant::now();
    // At least two pings per idle timeout, so a live client's pongs keep it open.
    let every = PING_INTERVAL.min(idle_timeout / 2).max(Duration::from_millis(10));
    let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut subscription: Option<Subscription<'_>> = None;
    let mut unread = Unread::default();
    loop {
        let event = tokio::select! {
            frame = socket.recv() => Event::Frame(frame),
            () = woken(&mut subscription) => Event::Woken,
            () = unread.retry() => Event::Woken,
            _ = pings.tick() => Event::Ping,
            () = &mut stop => break,
        };
        let replies = match event {
            Event::Frame(frame) => {
                last_heard = Instant::now();
                let bytes = match frame {
                    Some(Ok(Frame::Text(text))) => text.as_bytes().to_vec(),
                    Some(Ok(Frame::Binary(bytes))) => bytes.to_vec(),
                    Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => continue,
                    Some(Ok(Frame::Close(_)) | Err(_)) | None => break,
                };
                let mut replies = on_frame(&app, &mut session, client, &bytes).await;
                match (session.listening(), &subscription) {
                    (Some(listening), None) => {
                        subscription = Some(Subscription::new(&app, listening.appid, listening.mailbox));
                    }
                    (None, Some(_)) => {
                        // Closed.
                        subscription = None;
                        unread = Unread::default();
                    }
                    _ => {}
                }
                if let Some(subscription) = subscription.as_mut() {
                    let (_, bare_wakes) = subscription.waiter.announced();
                    let news = news(&app, &mut session, None).await;
                    subscription.read(&news, bare_wakes);
                    replies.extend(unread.note(news));
                }
                replies
            }
            Event::Woken => match subscription.as_mut() {
                Some(subscription) => {
                    let (announced, bare_wakes) = subscription.renew();
                    let news = news(&app, &mut session, announced).await;
                    subscription.read(&news, bare_wakes);
                    unread.note(news)
                }
                None => unread.note(news(&app, &mut session, None).await),
            },
            Event::Ping => {
                if last_heard.elapsed() >= idle_timeout {
                    tracing::debug!("closing a silent mailbox connection");
                    break;
                }
                // A client still connected to its mailbox keeps it from expiring.
                if let Some(touch) = session.keep_open() {
                    let _ = app.execute(&touch, Some(client.address)).await;
                }
                if socket.send(Frame::Ping(Default::default())).await.is_err() {
                    break;
                }
                continue;
            }
        };
        if send(&mut socket, &app.config.clock, &replies).await.is_err() {
            break;
        }
    }
    let _ = socket.send(Frame::Close(None)).await;
}

/// News that could not be read, and when to read it again.
#[derive(Default)]
struct Unread {
    retry_at: Option<tokio::time::Instant>,
    wait: Duration,
}

impl Unread {
    /// Takes a read's outcome: its news, or nothing and a retry.
    fn note(&mut self, news: Result<Vec<ServerMessage>, WireError>) -> Vec<ServerMessage> {
        match news {
            Ok(news) => {
                *self = Unread::default();
                news
            }
            Err(e) => {
                self.wait = (self.wait * 2).clamp(NEWS_RETRY, NEWS_RETRY_MAX);
                tracing::debug!(error = %e, retry_in = ?self.wait, "cannot read a mailbox's news");
                self.retry_at = Some(tokio::time::Instant::now() + self.wait);
                Vec::new()
            }
        }
    }

    /// Completes when news that could not be read should be read again.
    async fn retry(&self) {
        match self.retry_at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}

/// What woke a connection.
enum Event {
    Frame(Option<Result<Frame, axum::Error>>),
    Woken,
    Ping,
}

/// Completes at the open mailbox's next wake-up; never without one.
async fn woken(subscription: &mut Option<Subscription<'_>>) {
    match subscription {
        Some(subscription) => subscription.woken.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Sends `frames`, stamped with the server's time as the reference server does.
async fn send(socket: &mut WebSocket, clock: &Clock, frames: &[ServerMessage]) -> Result<(), axum::Error> {
    for frame in frames {
        let text = frame.to_json(seconds(clock.now()));
        socket.send(Frame::Text(text.into())).await?;
    }
    Ok(())
}

/// A session's registration on its open mailbox's notifier, with the
/// next wake-up already armed.
struct Subscription<'a> {
    // Dropped first: it holds the notifier, which the waiter forgets on drop
    // only when nobody else holds it.
    woken: std::pin::Pin<Box<tokio::sync::futures::OwnedNotified>>,
    waiter: crate::waiters::Waiter<'a>,
    /// The mailbox's wake-ups without a state counted when the last read
    /// that worked began (none yet: `None`).
    read_at: Option<u64>,
}

impl<'a> Subscription<'a> {
    fn new(app: &'a App, appid: &str, mailbox: &MailboxId) -> Subscription<'a> {
        let waiter = app.waiters.subscribe(appid, mailbox);
        let woken = waiter.owned_notified();
        Subscription { woken, waiter, read_at: None }
    }

    /// Arms the next wake-up (before looking for news, so none is missed);
    /// returns the state kept, if every message announced since the last
    /// read is in it (every wake-up since brought a state: see
    /// [`Waiter::announced`](crate::waiters::Waiter::announced)), and the
    /// count to give [`read`](Self::read).
    fn renew(&mut self) -> (Option<Arc<Committed>>, u64) {
        self.woken = self.waiter.owned_notified();
        let (committed, bare_wakes) = self.waiter.announced();
        (committed.filter(|_| self.read_at == Some(bare_wakes)), bare_wakes)
    }

    /// Notes a read of the news that began when `bare_wakes` wake-ups
    /// without a state had come; one that failed changes nothing, so the
    /// next reads the storage.
    fn read<T>(&mut self, news: &Result<T, WireError>, bare_wakes: u64) {
        if news.is_ok() {
            self.read_at = Some(bare_wakes);
        }
    }
}

/// Answers one frame: runs the operation the session asks for, if any,
/// past the rate limits it counts against.
pub(crate) async fn on_frame(
    app: &App,
    session: &mut MailboxSession,
    client: Client,
    raw: &[u8],
) -> Vec<ServerMessage> {
    let started = Instant::now();
    let replies = match session.on_frame(raw) {
        Step::Reply(replies) => replies,
        Step::Run(op) => {
            let outcome = execute(app, &op, client).await;
            session.on_outcome(outcome)
        }
    };
    if let Some(label) = session.label() {
        let refused = replies.iter().any(|reply| matches!(reply, ServerMessage::Error { .. }));
        app.metrics.observe(label, if refused { "refused" } else { "ok" }, started.elapsed().as_secs_f64());
    }
    replies
}

/// Runs a session's operation for `client`, refused past a rate limit.
async fn execute(app: &App, op: &Op, client: Client) -> Result<Outcome, WireError> {
    for &limit in op.limits() {
        if !app.limiter(limit).allow(client) {
            let message = match limit {
                Limit::Messages => "too many messages from this address",
                Limit::Channels => "too many claims from this address",
            };
            return Err(WireError::new(ErrorCode::RateLimited, message));
        }
    }
    app.execute(op, Some(client.address)).await
}

/// The open mailbox's messages not yet sent, once they are durable: from
/// `announced` (a state a commit announced, holding every message
/// announced since the last read) when it is of the mailbox the session
/// opened, else read; an error if they could not be read (read again
/// later: nothing is marked sent).
pub(crate) async fn news(
    app: &App,
    session: &mut MailboxSession,
    announced: Option<Arc<Committed>>,
) -> Result<Vec<ServerMessage>, WireError> {
    let Some(listening) = session.listening() else { return Ok(Vec::new()) };
    let messages = match announced.and_then(|committed| app.engine.messages_from(listening, &committed)) {
        Some(messages) => {
            app.metrics.announced_news();
            messages
        }
        None => app.messages_after(listening).await?,
    };
    Ok(session.on_news(&messages))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ServerConfig, Storage};
    use wormhole_sync_core::rendezvous::RendezvousSnapshot;

    use serde_json::Value;

    const CLIENT: Client =
        Client { address: std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)), local: false };

    async fn send(app: &App, session: &mut MailboxSession, frame: Value) -> Vec<Value> {
        let replies = on_frame(app, session, CLIENT, frame.to_string().as_bytes()).await;
        replies.iter().map(|r| serde_json::from_str(&r.to_json(0.0)).expect("JSON")).collect()
    }

    #[tokio::test]
    async fn a_session_gets_nothing_from_a_mailbox_made_again_under_its_id() {
        let state = RendezvousSnapshot::new(Vec::new());
        let app = crate::shared_state_seeded(ServerConfig::default(), Storage::memory(), state, [1; 32]).unwrap();
        let mut sessions: Vec<MailboxSession> = (0..3).map(|_| MailboxSession::new(false)).collect();
        for session in &mut sessions {
            send(&app, session, serde_json::json!({"type": "bind", "appid": "app", "side": "aaaa"})).await;
        }
        let [first, second, third] = &mut sessions[..] else { unreachable!() };
        send(&app, first, serde_json::json!({"type": "open", "mailbox": "box"})).await;
        send(&app, first, serde_json::json!({"type": "add", "phase": "version", "body": "aa"})).await;
        assert_eq!(news(&app, first, None).await.unwrap().len(), 1);
        // The same side, reconnected, closes: the mailbox is deleted.
        let closed = send(&app, second, serde_json::json!({"type": "close", "mailbox": "box", "mood": "happy"})).await;
        assert_eq!(closed[1]["type"], "closed");
        assert!(!app.engine.core().lock().contains_mailbox("app", &MailboxId::new("box").unwrap()));
        // Another connection makes a mailbox under the same id.
        send(&app, third, serde_json::json!({"type": "open", "mailbox": "box"})).await;
        send(&app, third, serde_json::json!({"type": "add", "phase": "pake", "body": "aa"})).await;
        send(&app, third, serde_json::json!({"type": "add", "phase": "version", "body": "aa"})).await;
        assert_eq!(news(&app, third, None).await.unwrap().len(), 2);
        assert!(
            news(&app, first, None).await.unwrap().is_empty(),
            "the first session was sent the new mailbox's messages"
        );
    }
}
