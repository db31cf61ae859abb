//! magic-wormhole's mailbox protocol: the WebSocket front end on `/v1`, so
//! an unmodified `wormhole` command (and the other clients of that
//! ecosystem) can use this server as its mailbox server.
//!
//! Each connection is one [`Session`]: what it bound, claimed, opened and
//! closed (the reference server allows one of each per connection), over
//! the rendezvous state the HTTP API shares, so nameplates never collide
//! between the two and budgets, burning, expiry and durability apply to
//! both. Messages are pushed: a session that opened a mailbox waits on the
//! mailbox's notifier and sends what was added as soon as it is durable.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message as Frame, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::Extension;
use serde_json::Value;
use wormhole_sync_core::mailbox_wire::{ClientFrame, ClientMessage, FrameError, ServerMessage, MAX_FRAME_BYTES};
use wormhole_sync_core::rendezvous::Rendezvous;
use wormhole_sync_core::wire::{ErrorCode, MailboxId, Message, Mood, WireError};
use wormhole_sync_core::{ChannelId, Timestamp};

use crate::app::App;
use crate::client_address::Client;
use crate::connections::Admitted;
use crate::postgres::Scope;
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

fn seconds(at: Timestamp) -> f64 {
    at.as_millis() as f64 / 1000.0
}

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

/// Longest nameplates `list` names every number of (9, 90 and 900 of them).
const LISTED_DIGITS: usize = 3;

/// What `list` answers. With `--allow-list`, the nameplates in use. Without,
/// every number of each length in use, up to three digits: a client that
/// asks whether its nameplate exists before claiming it (magic-wormhole.rs
/// does) finds it, and nobody learns which of them are in use, only how
/// long they are (which every code shows anyway). A claim of a listed
/// number nobody uses creates it, as a claim does.
fn listed_nameplates(in_use: &[ChannelId], allow_list: bool) -> Vec<String> {
    if allow_list {
        return in_use.iter().map(ToString::to_string).collect();
    }
    let mut lengths: Vec<usize> = in_use.iter().map(|n| n.to_string().len()).filter(|&d| d <= LISTED_DIGITS).collect();
    lengths.sort_unstable();
    lengths.dedup();
    lengths
        .into_iter()
        .flat_map(|digits| (10u32.pow(digits as u32 - 1).max(1)..10u32.pow(digits as u32)).map(|n| n.to_string()))
        .collect()
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
    let mut session = Session::new(app.clone(), client);
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
                let mut replies = session.on_frame(&bytes).await;
                if subscription.is_none() {
                    if let Some((appid, mailbox)) = session.opened() {
                        subscription = Some(Subscription::new(&app, appid, mailbox));
                    }
                }
                if session.closed {
                    subscription = None;
                    unread = Unread::default();
                }
                if subscription.is_some() {
                    replies.extend(unread.note(session.news().await));
                }
                replies
            }
            Event::Woken => {
                if let Some(subscription) = subscription.as_mut() {
                    subscription.renew();
                }
                unread.note(session.news().await)
            }
            Event::Ping => {
                if last_heard.elapsed() >= idle_timeout {
                    tracing::debug!("closing a silent mailbox connection");
                    break;
                }
                // A client still connected to its mailbox keeps it from expiring.
                session.keep_open().await;
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
}

impl<'a> Subscription<'a> {
    fn new(app: &'a App, appid: &str, mailbox: &MailboxId) -> Subscription<'a> {
        let waiter = app.waiters.subscribe(appid, mailbox);
        let woken = waiter.owned_notified();
        Subscription { woken, waiter }
    }

    /// Arms the next wake-up (before looking for news, so none is missed).
    fn renew(&mut self) {
        self.woken = self.waiter.owned_notified();
    }
}

/// One connection's place in the protocol.
pub(crate) struct Session {
    app: Arc<App>,
    client: Client,
    bound: Option<(String, String)>,
    allocated: bool,
    did_claim: bool,
    claimed: Option<ChannelId>,
    released: bool,
    opened: Option<MailboxId>,
    /// Which mailbox under that id it opened: one deleted and made again
    /// under the same id (by another connection's `open`) is not this
    /// session's, and its messages are not sent here.
    instance: Option<u64>,
    closed: bool,
    /// Messages of the open mailbox already sent.
    pushed: u64,
}

/// A refusal, in the words the client shows its person.
type Refusal = String;

fn refusal(e: WireError) -> Refusal {
    match e.code {
        // The reference server's words, which clients recognise.
        ErrorCode::Crowded => "crowded".into(),
        ErrorCode::Reclaimed => "reclaimed".into(),
        _ => format!("{}: {}", e.code, e.message),
    }
}

/// A typed nameplate as this server's: digits without leading zeros, within
/// the range of channel ids.
fn nameplate(text: &str) -> Result<ChannelId, Refusal> {
    let parsed = text.parse::<u32>().ok().and_then(ChannelId::new).filter(|id| id.to_string() == text);
    parsed
        .ok_or_else(|| format!("this server's nameplates are numbers from 1 to {}", wormhole_sync_core::MAX_CHANNEL_ID))
}

/// The mailbox protocol's mood words as this server's moods: anything but
/// `happy`, `lonely` and `scary` is an error.
fn mood(word: Option<&str>) -> Mood {
    match word {
        Some("happy") => Mood::Happy,
        Some("lonely") => Mood::Lonely,
        Some("scary") => Mood::Scary,
        _ => Mood::Errory,
    }
}

/// The `id` field of a frame that failed to parse, to acknowledge it.
fn id_of(raw: &[u8]) -> Option<Value> {
    let parsed: Value = serde_json::from_slice(raw).ok()?;
    parsed.get("id").filter(|id| id.is_string() || id.is_i64() || id.is_u64()).cloned()
}

fn message_frame(message: &Message) -> ServerMessage {
    ServerMessage::Message {
        side: message.side.clone(),
        phase: message.phase.clone(),
        body: message.body.clone(),
        server_rx: message.server_rx.map_or(0.0, seconds),
        id: message.id.clone(),
    }
}

impl Session {
    pub(crate) fn new(app: Arc<App>, client: Client) -> Session {
        Session {
            app,
            client,
            bound: None,
            allocated: false,
            did_claim: false,
            claimed: None,
            released: false,
            opened: None,
            instance: None,
            closed: false,
            pushed: 0,
        }
    }

    /// The mailbox this session listens to, once opened (until closed).
    fn opened(&self) -> Option<(&str, &MailboxId)> {
        let (appid, _) = self.bound.as_ref()?;
        self.opened.as_ref().filter(|_| !self.closed).map(|m| (appid.as_str(), m))
    }

    /// Answers one frame: an `ack` first (unless it is not a typed JSON
    /// object), then the answer or an `error` quoting it.
    pub(crate) async fn on_frame(&mut self, raw: &[u8]) -> Vec<ServerMessage> {
        let frame = match ClientMessage::parse(raw) {
            Ok(frame) => frame,
            Err(e) => {
                let mut replies = Vec::new();
                if !matches!(e, FrameError::TooLarge | FrameError::NotJson | FrameError::MissingType) {
                    replies.push(ServerMessage::Ack { id: id_of(raw) });
                }
                replies.push(ServerMessage::refusal(raw, &e));
                return replies;
            }
        };
        let started = Instant::now();
        let name = frame_name(&frame.message);
        let mut replies = vec![ServerMessage::Ack { id: frame.id.clone() }];
        match self.answer(&frame).await {
            Ok(answer) => {
                replies.extend(answer);
                self.app.metrics.observe(name, "ok", started.elapsed().as_secs_f64());
            }
            Err(error) => {
                let orig = serde_json::from_slice(raw).unwrap_or(Value::Null);
                replies.push(ServerMessage::Error { error, orig });
                self.app.metrics.observe(name, "refused", started.elapsed().as_secs_f64());
            }
        }
        replies
    }

    async fn answer(&mut self, frame: &ClientFrame) -> Result<Option<ServerMessage>, Refusal> {
        match &frame.message {
            ClientMessage::Ping { ping } => return Ok(Some(ServerMessage::Pong { pong: *ping })),
            ClientMessage::Bind { appid, side } => {
                if self.bound.is_some() {
                    return Err("already bound".into());
                }
                wormhole_sync_core::wire::validate_side(side).map_err(refusal)?;
                self.bound = Some((appid.clone(), side.clone()));
                return Ok(None);
            }
            _ => {}
        }
        let (appid, side) = self.bound.clone().ok_or("must bind first")?;
        if !self.app.message_limiter.allow(self.client) {
            return Err(refusal(WireError::new(ErrorCode::RateLimited, "too many messages from this address")));
        }
        match &frame.message {
            ClientMessage::List => {
                let in_use = self.app.nameplates(&appid).await.map_err(refusal)?;
                let nameplates = listed_nameplates(&in_use, self.app.config.allow_list);
                Ok(Some(ServerMessage::Nameplates { nameplates }))
            }
            ClientMessage::Allocate => {
                if self.allocated {
                    return Err("you already allocated one, don't be greedy".into());
                }
                self.limit_channels()?;
                let scope = Scope::allocate(&appid, &side);
                let (nameplate, _) = self
                    .run(scope, |core, at| {
                        // A connection allocates once, so this always makes a channel.
                        self.app.may_make_channel(core, &appid, self.client.address, true)?;
                        core.allocate_nameplate(at, &appid, &side)
                    })
                    .await?;
                self.allocated = true;
                Ok(Some(ServerMessage::Allocated { nameplate: nameplate.to_string() }))
            }
            ClientMessage::Claim { nameplate: text } => {
                if self.did_claim {
                    return Err("only one claim per connection".into());
                }
                self.did_claim = true;
                let number = nameplate(text)?;
                self.claimed = Some(number);
                self.limit_channels()?;
                let scope = Scope::nameplate(&appid, number);
                let (mailbox, _) = self
                    .run(scope, |core, at| {
                        let creates = !core.contains(&appid, number);
                        self.app.may_make_channel(core, &appid, self.client.address, creates)?;
                        core.claim(at, &appid, number, &side)
                    })
                    .await?;
                Ok(Some(ServerMessage::Claimed { mailbox }))
            }
            ClientMessage::Release { nameplate: named } => {
                if self.released {
                    return Err("only one release per connection".into());
                }
                let number = match (named, self.claimed) {
                    (Some(text), Some(claimed)) if text != &claimed.to_string() => {
                        return Err("release and claim must use same nameplate".into())
                    }
                    (Some(text), _) => nameplate(text)?,
                    (None, Some(claimed)) => claimed,
                    (None, None) => return Err("release without nameplate must follow claim".into()),
                };
                self.released = true;
                let scope = Scope::nameplate(&appid, number);
                self.run(scope, |core, at| core.release(at, &appid, number, &side)).await?;
                Ok(Some(ServerMessage::Released))
            }
            ClientMessage::Open { mailbox } => {
                if self.opened.is_some() {
                    return Err("only one open per connection".into());
                }
                self.limit_channels()?;
                let scope = Scope::mailbox(&appid, mailbox);
                let (_, instance) = self
                    .run(scope, |core, at| {
                        let creates = !core.contains_mailbox(&appid, mailbox);
                        self.app.may_make_channel(core, &appid, self.client.address, creates)?;
                        core.open(at, &appid, mailbox, &side)
                    })
                    .await?;
                self.opened = Some(mailbox.clone());
                self.instance = instance;
                self.pushed = 0;
                Ok(None)
            }
            ClientMessage::Add { phase, body } => {
                let mailbox = self.opened.clone().filter(|_| !self.closed).ok_or("must open mailbox before adding")?;
                let client_id = frame.id.as_ref().map(|id| id.as_str().map_or_else(|| id.to_string(), str::to_string));
                let budgets = &self.app.budgets;
                let client = self.client.address;
                self.run(Scope::mailbox(&appid, &mailbox), |core, at| {
                    if !core.has_posted(&appid, &mailbox, &side, phase) {
                        budgets.check(&appid, client, body.len() as u64)?;
                    }
                    core.add(at, &appid, &mailbox, &side, phase, body, client_id.clone())
                })
                .await?;
                Ok(None)
            }
            ClientMessage::Close { mailbox: named, mood: word } => {
                if self.closed {
                    return Err("only one close per connection".into());
                }
                let mailbox = match (named, &self.opened) {
                    (Some(named), Some(opened)) if named != opened => {
                        return Err("open and close must use same mailbox".into())
                    }
                    (Some(named), _) => named.clone(),
                    (None, Some(opened)) => opened.clone(),
                    (None, None) => return Err("close without mailbox must follow open".into()),
                };
                let mood = mood(word.as_deref());
                let reopen = self.opened.is_none();
                self.run(Scope::close(&appid, &mailbox, mood), |core, at| {
                    // As the reference server: a close on a connection that did not
                    // open the mailbox opens it first (a client that reconnected to
                    // repeat its close).
                    if reopen && core.contains_mailbox(&appid, &mailbox) {
                        core.open(at, &appid, &mailbox, &side)?;
                    }
                    core.close(at, &appid, &mailbox, &side, mood)
                })
                .await?;
                self.closed = true;
                Ok(Some(ServerMessage::Closed))
            }
            ClientMessage::Ping { .. } | ClientMessage::Bind { .. } => unreachable!("answered above"),
            _ => Err("unknown type".into()),
        }
    }

    /// Refuses allocations, claims and opens past the client's rate limit.
    /// (The caps on app ids and on a client's channels are checked in the
    /// operation itself, under the state's lock, so concurrent claims cannot
    /// pass them together.)
    fn limit_channels(&self) -> Result<(), Refusal> {
        if !self.app.limiter.allow(self.client) {
            return Err(refusal(WireError::new(ErrorCode::RateLimited, "too many claims from this address")));
        }
        Ok(())
    }

    /// Runs an operation for this connection's client on the shared state
    /// (see [`App::run`]), with the refusal in the words the client shows.
    async fn run<T>(
        &self,
        scope: Scope<'_>,
        operation: impl Fn(&mut Rendezvous, Timestamp) -> Result<T, WireError>,
    ) -> Result<(T, Option<u64>), Refusal> {
        self.app.run(scope, Some(self.client.address), operation).await.map_err(refusal)
    }

    /// Marks the open mailbox as active (see [`Rendezvous::touch`]).
    async fn keep_open(&self) {
        let Some((appid, mailbox)) = self.opened() else { return };
        let touched = self.run(Scope::mailbox(appid, mailbox), |core, at| {
            core.touch(at, appid, mailbox);
            Ok(())
        });
        let _ = touched.await;
    }

    /// The open mailbox's messages not yet sent, once they are durable;
    /// an error if they could not be read (read again later: nothing is
    /// marked sent).
    pub(crate) async fn news(&mut self) -> Result<Vec<ServerMessage>, WireError> {
        let Some((appid, mailbox)) = self.opened() else { return Ok(Vec::new()) };
        let Some(instance) = self.instance else { return Ok(Vec::new()) };
        let messages = if let Some(postgres) = self.app.storage.shared() {
            postgres.messages_after(appid, mailbox, instance, self.pushed).await?
        } else {
            let (messages, seen) = {
                let core = self.app.core.lock();
                if core.mailbox_instance(appid, mailbox) != Some(instance) {
                    return Ok(Vec::new());
                }
                (core.messages_after(appid, mailbox, self.pushed).to_vec(), self.app.storage.last_recorded())
            };
            if messages.is_empty() {
                return Ok(Vec::new());
            }
            self.app.durable(seen).await?;
            messages
        };
        self.pushed = messages.last().map_or(self.pushed, |m| m.seq);
        Ok(messages.iter().map(message_frame).collect())
    }
}

/// The metrics label of a frame.
fn frame_name(message: &ClientMessage) -> &'static str {
    match message {
        ClientMessage::Bind { .. } => "ws-bind",
        ClientMessage::List => "ws-list",
        ClientMessage::Allocate => "ws-allocate",
        ClientMessage::Claim { .. } => "ws-claim",
        ClientMessage::Release { .. } => "ws-release",
        ClientMessage::Open { .. } => "ws-open",
        ClientMessage::Add { .. } => "ws-add",
        ClientMessage::Close { .. } => "ws-close",
        ClientMessage::Ping { .. } => "ws-ping",
        _ => "ws-unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ServerConfig, Storage};
    use wormhole_sync_core::rendezvous::RendezvousSnapshot;

    async fn send(session: &mut Session, frame: Value) -> Vec<Value> {
        let replies = session.on_frame(frame.to_string().as_bytes()).await;
        replies.iter().map(|r| serde_json::from_str(&r.to_json(0.0)).expect("JSON")).collect()
    }

    #[tokio::test]
    async fn a_session_gets_nothing_from_a_mailbox_made_again_under_its_id() {
        let state = RendezvousSnapshot::new(Vec::new());
        let app = crate::shared_state_seeded(ServerConfig::default(), Storage::memory(), state, [1; 32]).unwrap();
        let client = Client { address: "192.0.2.1".parse().unwrap(), local: false };
        let mut sessions: Vec<Session> = (0..3).map(|_| Session::new(app.clone(), client)).collect();
        for session in &mut sessions {
            send(session, serde_json::json!({"type": "bind", "appid": "app", "side": "aaaa"})).await;
        }
        let [first, second, third] = &mut sessions[..] else { unreachable!() };
        send(first, serde_json::json!({"type": "open", "mailbox": "box"})).await;
        send(first, serde_json::json!({"type": "add", "phase": "version", "body": "aa"})).await;
        assert_eq!(first.news().await.unwrap().len(), 1);
        // The same side, reconnected, closes: the mailbox is deleted.
        let closed = send(second, serde_json::json!({"type": "close", "mailbox": "box", "mood": "happy"})).await;
        assert_eq!(closed[1]["type"], "closed");
        assert!(!app.core.lock().contains_mailbox("app", &MailboxId::new("box").unwrap()));
        // Another connection makes a mailbox under the same id.
        send(third, serde_json::json!({"type": "open", "mailbox": "box"})).await;
        send(third, serde_json::json!({"type": "add", "phase": "pake", "body": "aa"})).await;
        send(third, serde_json::json!({"type": "add", "phase": "version", "body": "aa"})).await;
        assert_eq!(third.news().await.unwrap().len(), 2);
        assert!(first.news().await.unwrap().is_empty(), "the first session was sent the new mailbox's messages");
    }
}
