//! The client-server protocol (PROTOCOL.md, "HTTP API"): JSON bodies POSTed
//! to `/v1/<operation>`, answered with JSON, errors with a stable code.
//!
//! The same types serve both ends: clients build [`Request`]s and parse
//! responses; the server parses requests with [`Request::parse`] and encodes
//! [`Response`]s. Parsing untrusted bytes never panics and refuses anything
//! larger than the limits here.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::code::ChannelId;
use crate::time::Timestamp;

/// Largest request body the protocol allows (a base64 message plus its envelope).
pub const MAX_REQUEST_BYTES: usize = 128 * 1024;
/// Largest response body a client reads (a channel's whole message log).
pub const MAX_RESPONSE_BYTES: usize = 2 * 1024 * 1024;
/// Largest message sequence number; a client treats a larger one as a
/// server protocol error.
pub const MAX_SEQ: u64 = u32::MAX as u64;
/// Longest application id, in bytes.
pub const MAX_APPID_LEN: usize = 256;
/// Longest side id.
pub const MAX_SIDE_LEN: usize = 64;
/// Longest phase name.
pub const MAX_PHASE_LEN: usize = 32;
/// Longest mailbox id.
pub const MAX_MAILBOX_LEN: usize = 64;

/// A mailbox's id: the long, random name of the place a channel's messages
/// are kept (1 to 64 ASCII letters and digits; this server draws 13
/// lowercase base32 characters, 64 random bits). The short channel id
/// (the nameplate) only leads to it, and is released for reuse once both
/// sides know the mailbox.
///
/// ```
/// use wormhole_sync_core::wire::MailboxId;
///
/// let id = MailboxId::new("hx4qbn2wzsmjo").unwrap();
/// assert_eq!(id.as_str(), "hx4qbn2wzsmjo");
/// assert!(MailboxId::new("no spaces").is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MailboxId(String);

impl MailboxId {
    /// A mailbox id, if `id` is 1 to 64 ASCII letters and digits.
    pub fn new(id: impl Into<String>) -> Option<MailboxId> {
        let id = id.into();
        let valid = !id.is_empty() && id.len() <= MAX_MAILBOX_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric());
        valid.then_some(MailboxId(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MailboxId {
    type Error = String;

    fn try_from(id: String) -> Result<MailboxId, String> {
        MailboxId::new(id).ok_or_else(|| "a mailbox id is 1 to 64 ASCII letters and digits".to_string())
    }
}

impl From<MailboxId> for String {
    fn from(id: MailboxId) -> String {
        id.0
    }
}

impl fmt::Display for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a side ended its part in a channel, reported when it closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mood {
    /// The exchange completed.
    Happy,
    /// Gave up waiting (timeout).
    Lonely,
    /// Detected a wrong code or tampering: the server burns the channel.
    Scary,
    /// Failed for another reason.
    Errory,
    /// A person declined the verifier.
    Declined,
}

impl fmt::Display for Mood {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mood::Happy => "happy",
            Mood::Lonely => "lonely",
            Mood::Scary => "scary",
            Mood::Errory => "errory",
            Mood::Declined => "declined",
        })
    }
}

/// `POST /v1/allocate`: allocate a free channel id (short, drawn at random) and join it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AllocateRequest {
    /// Application id; channels are scoped to it.
    pub appid: String,
    /// The caller's side id.
    pub side: String,
}

/// `POST /v1/join`: join (claim) a channel by id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JoinRequest {
    /// Application id.
    pub appid: String,
    /// The caller's side id.
    pub side: String,
    /// The channel to join.
    pub channel: ChannelId,
    /// Create the channel if it does not exist (codes both sides typed).
    #[serde(default)]
    pub create: bool,
}

/// `POST /v1/post`: store one message in a channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PostRequest {
    /// Application id.
    pub appid: String,
    /// The caller's side id.
    pub side: String,
    /// The channel.
    pub channel: ChannelId,
    /// The channel's mailbox, once the caller knows it (from allocate or
    /// join): the server then finds the channel by it, not by `channel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<MailboxId>,
    /// Message kind, e.g. `pake` or `data`; one message per side and phase.
    pub phase: String,
    /// Opaque message body (this client sends base64).
    pub body: String,
    /// With a cursor, the answer also carries the channel's [`Log`] after
    /// it, so no fetch is needed to learn what the peer posted meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// With a cursor, hold the answer up to this many milliseconds until the
    /// log holds news for this side (see [`Log::has_news_for`]), as a fetch
    /// does. The message is stored first either way.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub wait_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `POST /v1/fetch`: read the channel's messages after a cursor, optionally
/// waiting (long-poll) until there is one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FetchRequest {
    /// Application id.
    pub appid: String,
    /// The caller's side id.
    pub side: String,
    /// The channel.
    pub channel: ChannelId,
    /// The channel's mailbox, once the caller knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<MailboxId>,
    /// Return messages with `seq` greater than this.
    #[serde(default)]
    pub after: u64,
    /// Wait up to this many milliseconds for a message (the server caps it).
    #[serde(default)]
    pub wait_ms: u64,
}

impl AllocateRequest {
    /// An allocate for `side` in `appid`.
    pub fn new(appid: impl Into<String>, side: impl Into<String>) -> AllocateRequest {
        AllocateRequest { appid: appid.into(), side: side.into() }
    }
}

impl JoinRequest {
    /// A join of `channel`, creating it if `create`.
    pub fn new(appid: impl Into<String>, side: impl Into<String>, channel: ChannelId, create: bool) -> JoinRequest {
        JoinRequest { appid: appid.into(), side: side.into(), channel, create }
    }
}

impl PostRequest {
    /// A post of `body` in `phase`, without a cursor (set `after` and
    /// `wait_ms` afterwards to have the log in the answer).
    pub fn new(
        appid: impl Into<String>,
        side: impl Into<String>,
        channel: ChannelId,
        phase: impl Into<String>,
        body: impl Into<String>,
    ) -> PostRequest {
        let (appid, side, phase, body) = (appid.into(), side.into(), phase.into(), body.into());
        PostRequest { appid, side, channel, mailbox: None, phase, body, after: None, wait_ms: 0 }
    }
}

impl CloseRequest {
    /// A close of `channel` with `mood`.
    pub fn new(appid: impl Into<String>, side: impl Into<String>, channel: ChannelId, mood: Mood) -> CloseRequest {
        CloseRequest { appid: appid.into(), side: side.into(), channel, mailbox: None, mood }
    }
}

impl FetchRequest {
    /// A fetch of `channel`'s log after `after`, held up to `wait_ms` for news.
    pub fn new(
        appid: impl Into<String>,
        side: impl Into<String>,
        channel: ChannelId,
        after: u64,
        wait_ms: u64,
    ) -> FetchRequest {
        FetchRequest { appid: appid.into(), side: side.into(), channel, mailbox: None, after, wait_ms }
    }
}

/// `POST /v1/close`: leave a channel with an outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CloseRequest {
    /// Application id.
    pub appid: String,
    /// The caller's side id.
    pub side: String,
    /// The channel.
    pub channel: ChannelId,
    /// The channel's mailbox, once the caller knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<MailboxId>,
    /// How it ended for this side.
    pub mood: Mood,
}

/// One client-to-server request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// See [`AllocateRequest`].
    Allocate(AllocateRequest),
    /// See [`JoinRequest`].
    Join(JoinRequest),
    /// See [`PostRequest`].
    Post(PostRequest),
    /// See [`FetchRequest`].
    Fetch(FetchRequest),
    /// See [`CloseRequest`].
    Close(CloseRequest),
}

/// The operations, one per path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// `/v1/allocate`
    Allocate,
    /// `/v1/join`
    Join,
    /// `/v1/post`
    Post,
    /// `/v1/fetch`
    Fetch,
    /// `/v1/close`
    Close,
}

impl Route {
    /// Every route, in protocol order.
    pub const ALL: [Route; 5] = [Route::Allocate, Route::Join, Route::Post, Route::Fetch, Route::Close];

    /// The HTTP path, e.g. `/v1/post`.
    pub fn path(self) -> &'static str {
        match self {
            Route::Allocate => "/v1/allocate",
            Route::Join => "/v1/join",
            Route::Post => "/v1/post",
            Route::Fetch => "/v1/fetch",
            Route::Close => "/v1/close",
        }
    }

    /// The route for an HTTP path, if it is one.
    ///
    /// ```
    /// use wormhole_sync_core::wire::Route;
    /// assert_eq!(Route::from_path("/v1/fetch"), Some(Route::Fetch));
    /// assert_eq!(Route::from_path("/v2/fetch"), None);
    /// ```
    pub fn from_path(path: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|r| r.path() == path)
    }

    /// A short name for logs and metrics, e.g. `post`.
    pub fn name(self) -> &'static str {
        &self.path()[4..]
    }
}

impl Request {
    /// The route (and so the path) of this request.
    pub fn route(&self) -> Route {
        match self {
            Request::Allocate(_) => Route::Allocate,
            Request::Join(_) => Route::Join,
            Request::Post(_) => Route::Post,
            Request::Fetch(_) => Route::Fetch,
            Request::Close(_) => Route::Close,
        }
    }

    /// The HTTP method: always `POST`.
    pub fn method(&self) -> &'static str {
        "POST"
    }

    /// The HTTP path.
    pub fn path(&self) -> &'static str {
        self.route().path()
    }

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        let encoded = match self {
            Request::Allocate(r) => serde_json::to_vec(r),
            Request::Join(r) => serde_json::to_vec(r),
            Request::Post(r) => serde_json::to_vec(r),
            Request::Fetch(r) => serde_json::to_vec(r),
            Request::Close(r) => serde_json::to_vec(r),
        };
        encoded.expect("request types always serialize")
    }

    /// Parses and validates an untrusted request body for `route`.
    ///
    /// ```
    /// use wormhole_sync_core::wire::{ErrorCode, Request, Route};
    ///
    /// let req = Request::parse(Route::Allocate, br#"{"appid":"example.com/app1","side":"a1"}"#).unwrap();
    /// assert_eq!(req.route(), Route::Allocate);
    /// let err = Request::parse(Route::Allocate, b"{not json").unwrap_err();
    /// assert_eq!(err.code, ErrorCode::BadRequest);
    /// ```
    pub fn parse(route: Route, body: &[u8]) -> Result<Request, WireError> {
        if body.len() > MAX_REQUEST_BYTES {
            return Err(WireError::new(ErrorCode::BodyTooLarge, "request body is too large"));
        }
        fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
            serde_json::from_slice(body)
                .map_err(|e| WireError::new(ErrorCode::BadRequest, format!("malformed request: {e}")))
        }
        let request = match route {
            Route::Allocate => Request::Allocate(json(body)?),
            Route::Join => Request::Join(json(body)?),
            Route::Post => Request::Post(json(body)?),
            Route::Fetch => Request::Fetch(json(body)?),
            Route::Close => Request::Close(json(body)?),
        };
        request.validate()?;
        Ok(request)
    }

    /// The application id the request is for.
    pub fn appid(&self) -> &str {
        match self {
            Request::Allocate(r) => &r.appid,
            Request::Join(r) => &r.appid,
            Request::Post(r) => &r.appid,
            Request::Fetch(r) => &r.appid,
            Request::Close(r) => &r.appid,
        }
    }

    /// The caller's side id.
    pub fn side(&self) -> &str {
        match self {
            Request::Allocate(r) => &r.side,
            Request::Join(r) => &r.side,
            Request::Post(r) => &r.side,
            Request::Fetch(r) => &r.side,
            Request::Close(r) => &r.side,
        }
    }

    /// The channel named by the request (none for allocate).
    pub fn channel(&self) -> Option<ChannelId> {
        match self {
            Request::Allocate(_) => None,
            Request::Join(r) => Some(r.channel),
            Request::Post(r) => Some(r.channel),
            Request::Fetch(r) => Some(r.channel),
            Request::Close(r) => Some(r.channel),
        }
    }

    /// The mailbox named by the request, if it names one.
    pub fn mailbox(&self) -> Option<&MailboxId> {
        match self {
            Request::Allocate(_) | Request::Join(_) => None,
            Request::Post(r) => r.mailbox.as_ref(),
            Request::Fetch(r) => r.mailbox.as_ref(),
            Request::Close(r) => r.mailbox.as_ref(),
        }
    }

    /// The same request naming `mailbox` (allocate and join name none).
    pub fn with_mailbox(mut self, mailbox: Option<MailboxId>) -> Request {
        match &mut self {
            Request::Allocate(_) | Request::Join(_) => {}
            Request::Post(r) => r.mailbox = mailbox,
            Request::Fetch(r) => r.mailbox = mailbox,
            Request::Close(r) => r.mailbox = mailbox,
        }
        self
    }

    /// How long the caller asked the server to hold the answer for news
    /// (before the server's cap): a fetch's `wait_ms`, or a post's when it
    /// gave a cursor; zero for everything else.
    pub fn wait_ms(&self) -> u64 {
        match self {
            Request::Fetch(r) => r.wait_ms,
            Request::Post(r) if r.after.is_some() => r.wait_ms,
            _ => 0,
        }
    }

    /// Checks the fields every request shares.
    pub fn validate(&self) -> Result<(), WireError> {
        validate_appid(self.appid())?;
        validate_side(self.side())?;
        if let Request::Post(post) = self {
            validate_phase(&post.phase)?;
        }
        Ok(())
    }
}

/// Application ids: 1 to 256 bytes of UTF-8 without control characters.
pub fn validate_appid(appid: &str) -> Result<(), WireError> {
    // Format characters too (bidirectional overrides, zero-width ones): an
    // app id is shown to people and must read as it compares.
    let ok = !appid.is_empty() && appid.len() <= MAX_APPID_LEN && is_printable_text(appid);
    ok.then_some(()).ok_or_else(|| {
        WireError::new(
            ErrorCode::InvalidAppid,
            "appid must be 1 to 256 bytes without control, format (bidirectional, zero-width) or separator characters",
        )
    })
}

fn is_token(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Side ids: 1 to 64 characters of `a-z 0-9 - _`.
pub fn validate_side(side: &str) -> Result<(), WireError> {
    is_token(side, MAX_SIDE_LEN)
        .then_some(())
        .ok_or_else(|| WireError::new(ErrorCode::InvalidSide, "side must be 1 to 64 characters of a-z, 0-9, - and _"))
}

/// Phase names: 1 to 32 characters of `a-z 0-9 - _`.
pub fn validate_phase(phase: &str) -> Result<(), WireError> {
    is_token(phase, MAX_PHASE_LEN)
        .then_some(())
        .ok_or_else(|| WireError::new(ErrorCode::InvalidPhase, "phase must be 1 to 32 characters of a-z, 0-9, - and _"))
}

/// Answer to allocate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AllocateResponse {
    /// The allocated channel, already joined by the caller.
    pub channel: ChannelId,
    /// Its mailbox, to name in later requests. Absent from servers that
    /// predate mailboxes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<MailboxId>,
}

/// Answer to join.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JoinResponse {
    /// How many sides hold the channel now (1 or 2).
    pub sides: u8,
    /// The channel's mailbox, to name in later requests. Absent from
    /// servers that predate mailboxes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<MailboxId>,
    /// The whole log, so a receiver learns the initiator's first message
    /// without a fetch. Absent from servers that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<Log>,
}

/// Answer to post.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PostResponse {
    /// The message's sequence number in the channel (the first is 1).
    pub seq: u64,
    /// The log after the request's `after`, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<Log>,
}

/// One stored message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Message {
    /// Position in the channel's log, from 1, without gaps.
    pub seq: u64,
    /// The side that posted it.
    pub side: String,
    /// Its phase.
    pub phase: String,
    /// Its body, as posted.
    pub body: String,
    /// When the server received it: kept for messages added through the
    /// mailbox (WebSocket) front end, whose clients are told it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_rx: Option<Timestamp>,
    /// The id its sender gave it (mailbox front end only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl Message {
    /// A message as stored at `seq`.
    pub fn new(seq: u64, side: impl Into<String>, phase: impl Into<String>, body: impl Into<String>) -> Message {
        Message { seq, side: side.into(), phase: phase.into(), body: body.into(), server_rx: None, id: None }
    }

    /// The same message, received at `server_rx` under the sender's `id`.
    pub fn received(mut self, server_rx: Option<Timestamp>, id: Option<String>) -> Message {
        self.server_rx = server_rx;
        self.id = id;
        self
    }
}

/// A side that has closed the channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClosedSide {
    /// The side.
    pub side: String,
    /// Its outcome.
    pub mood: Mood,
}

impl ClosedSide {
    /// `side` closed with `mood`.
    pub fn new(side: impl Into<String>, mood: Mood) -> ClosedSide {
        ClosedSide { side: side.into(), mood }
    }
}

/// A channel's log after a cursor: the answer to fetch, also carried by
/// the answers to join and post.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Log {
    /// Messages after the cursor, in order (the caller's own included).
    pub messages: Vec<Message>,
    /// Sides that have closed, with their moods.
    #[serde(default)]
    pub closed: Vec<ClosedSide>,
}

impl Log {
    /// A log of these messages and closes.
    pub fn new(messages: Vec<Message>, closed: Vec<ClosedSide>) -> Log {
        Log { messages, closed }
    }

    /// Whether this log tells `side` anything it waits for: a message from
    /// another side, or another side's close. A long-poll is held until it
    /// does; the caller's own messages do not end the wait.
    ///
    /// ```
    /// use wormhole_sync_core::wire::{ClosedSide, Log, Message, Mood};
    ///
    /// let own = Message::new(1, "me", "pake", "AA==");
    /// let mut log = Log::new(vec![own], vec![]);
    /// assert!(!log.has_news_for("me"));
    /// log.closed.push(ClosedSide::new("peer", Mood::Lonely));
    /// assert!(log.has_news_for("me"));
    /// ```
    pub fn has_news_for(&self, side: &str) -> bool {
        self.messages.iter().any(|m| m.side != side) || self.closed.iter().any(|c| c.side != side)
    }
}

/// Answer to close.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CloseResponse {
    /// Whether the channel is now gone (every side closed).
    pub deleted: bool,
}

/// A successful answer from the rendezvous logic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// Answer to allocate.
    Allocated(AllocateResponse),
    /// Answer to join.
    Joined(JoinResponse),
    /// Answer to post.
    Posted(PostResponse),
    /// Answer to fetch.
    Fetched(Log),
    /// Answer to close.
    Closed(CloseResponse),
}

impl Response {
    /// The log this answer carries: a fetch's, or a join's or post's when the
    /// server sent one.
    pub fn log(&self) -> Option<&Log> {
        match self {
            Response::Fetched(log) => Some(log),
            Response::Joined(r) => r.log.as_ref(),
            Response::Posted(r) => r.log.as_ref(),
            Response::Allocated(_) | Response::Closed(_) => None,
        }
    }

    /// Whether a long-poll for `side` must be held: the answer carries a log
    /// with no news for it (see [`Log::has_news_for`]).
    pub fn waits_for_news(&self, side: &str) -> bool {
        self.log().is_some_and(|log| !log.has_news_for(side))
    }

    /// The JSON body (sent with HTTP status 200).
    pub fn to_json(&self) -> Vec<u8> {
        let encoded = match self {
            Response::Allocated(r) => serde_json::to_vec(r),
            Response::Joined(r) => serde_json::to_vec(r),
            Response::Posted(r) => serde_json::to_vec(r),
            Response::Fetched(r) => serde_json::to_vec(r),
            Response::Closed(r) => serde_json::to_vec(r),
        };
        encoded.expect("response types always serialize")
    }

    /// Parses a successful (2xx) response body for `route`.
    pub fn parse(route: Route, body: &[u8]) -> Result<Response, String> {
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(format!("response body exceeds {MAX_RESPONSE_BYTES} bytes"));
        }
        fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
            // serde's message may quote the server's strings: keep it printable.
            serde_json::from_slice(body).map_err(|e| printable(&format!("malformed response: {e}"), 256))
        }
        Ok(match route {
            Route::Allocate => Response::Allocated(json(body)?),
            Route::Join => Response::Joined(json(body)?),
            Route::Post => Response::Posted(json(body)?),
            Route::Fetch => Response::Fetched(json(body)?),
            Route::Close => Response::Closed(json(body)?),
        })
    }
}

/// Stable, machine-readable error codes, sent as `{"error": code, "message": text}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Malformed JSON or wrong field types.
    BadRequest,
    /// The application id is empty, too long, or has control characters.
    InvalidAppid,
    /// The side id is not a short token.
    InvalidSide,
    /// The phase is not a short token.
    InvalidPhase,
    /// No channel with this id exists for this application.
    UnknownChannel,
    /// The side has not joined this channel.
    NotJoined,
    /// Two other sides hold the channel.
    Crowded,
    /// Mailbox front end: this side already released the nameplate it claims again.
    Reclaimed,
    /// The channel was closed after a wrong code; it takes no more joins or posts.
    Burned,
    /// The channel's only side closed it before anyone else joined (it was
    /// stopped, or gave up waiting): its code is no longer in use.
    Abandoned,
    /// This side already closed the channel.
    SideClosed,
    /// This side already posted a different body in this phase.
    Conflict,
    /// The message body is larger than the server allows.
    MessageTooLarge,
    /// The channel holds as many messages as the server allows.
    TooManyMessages,
    /// The application holds as many channels as the server allows (retry later).
    TooManyChannels,
    /// The client's address (IPv6: its /64) holds as many channels as the
    /// server allows one client (retry later, or finish some).
    TooManyClientChannels,
    /// The server holds as many channels as it allows (retry later).
    ServerFull,
    /// The server cannot store anything right now (retry later).
    StorageUnavailable,
    /// HTTP: no such path.
    NotFound,
    /// HTTP: the path exists but not with this method.
    MethodNotAllowed,
    /// HTTP: the request body is larger than the server reads.
    BodyTooLarge,
    /// HTTP: the body is not `application/json`.
    UnsupportedMediaType,
    /// HTTP: the request's headers (or path) are larger than the server reads.
    HeadersTooLarge,
    /// HTTP: too many requests from this address (retry later).
    RateLimited,
    /// The client, its application id or the server stores as many bytes
    /// as the server allows (retry later: closing channels frees them).
    OverBudget,
    /// A fault on the server (a bug: never expected).
    Internal,
}

impl ErrorCode {
    /// Every code, for tables and tests.
    pub const ALL: [ErrorCode; 26] = [
        ErrorCode::BadRequest,
        ErrorCode::InvalidAppid,
        ErrorCode::InvalidSide,
        ErrorCode::InvalidPhase,
        ErrorCode::UnknownChannel,
        ErrorCode::NotJoined,
        ErrorCode::Crowded,
        ErrorCode::Reclaimed,
        ErrorCode::Burned,
        ErrorCode::Abandoned,
        ErrorCode::SideClosed,
        ErrorCode::Conflict,
        ErrorCode::MessageTooLarge,
        ErrorCode::TooManyMessages,
        ErrorCode::TooManyChannels,
        ErrorCode::TooManyClientChannels,
        ErrorCode::ServerFull,
        ErrorCode::StorageUnavailable,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::BodyTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::HeadersTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::OverBudget,
        ErrorCode::Internal,
    ];

    /// The code as sent on the wire, e.g. `crowded`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::InvalidAppid => "invalid-appid",
            ErrorCode::InvalidSide => "invalid-side",
            ErrorCode::InvalidPhase => "invalid-phase",
            ErrorCode::UnknownChannel => "unknown-channel",
            ErrorCode::NotJoined => "not-joined",
            ErrorCode::Crowded => "crowded",
            ErrorCode::Reclaimed => "reclaimed",
            ErrorCode::Burned => "burned",
            ErrorCode::Abandoned => "abandoned",
            ErrorCode::SideClosed => "side-closed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::MessageTooLarge => "message-too-large",
            ErrorCode::TooManyMessages => "too-many-messages",
            ErrorCode::TooManyChannels => "too-many-channels",
            ErrorCode::TooManyClientChannels => "too-many-client-channels",
            ErrorCode::ServerFull => "server-full",
            ErrorCode::StorageUnavailable => "storage-unavailable",
            ErrorCode::NotFound => "not-found",
            ErrorCode::MethodNotAllowed => "method-not-allowed",
            ErrorCode::BodyTooLarge => "body-too-large",
            ErrorCode::UnsupportedMediaType => "unsupported-media-type",
            ErrorCode::HeadersTooLarge => "headers-too-large",
            ErrorCode::RateLimited => "rate-limited",
            ErrorCode::OverBudget => "over-budget",
            ErrorCode::Internal => "internal",
        }
    }

    /// The code for its wire name.
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The HTTP status the server sends with this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::InvalidAppid | ErrorCode::InvalidSide | ErrorCode::InvalidPhase => 400,
            ErrorCode::NotJoined => 403,
            ErrorCode::UnknownChannel | ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Crowded
            | ErrorCode::Reclaimed
            | ErrorCode::SideClosed
            | ErrorCode::Conflict
            | ErrorCode::TooManyMessages => 409,
            ErrorCode::Burned | ErrorCode::Abandoned => 410,
            ErrorCode::MessageTooLarge | ErrorCode::BodyTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::HeadersTooLarge => 431,
            ErrorCode::TooManyChannels
            | ErrorCode::TooManyClientChannels
            | ErrorCode::RateLimited
            | ErrorCode::OverBudget => 429,
            ErrorCode::Internal => 500,
            ErrorCode::ServerFull | ErrorCode::StorageUnavailable => 503,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answer: a stable code plus a human explanation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct WireError {
    /// The stable code.
    pub code: ErrorCode,
    /// For people; may change between versions.
    pub message: String,
}

#[derive(Serialize, Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    message: String,
}

impl WireError {
    /// An error with a code and explanation.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> WireError {
        WireError { code, message: message.into() }
    }

    /// The HTTP status for this error.
    pub fn http_status(&self) -> u16 {
        self.code.http_status()
    }

    /// The JSON body: `{"error": "crowded", "message": "..."}`.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&ErrorBody { error: self.code.as_str().to_string(), message: self.message.clone() })
            .expect("error bodies always serialize")
    }
}

/// Reads an error body: `(code, message)`, made [`printable`], if it is one.
pub(crate) fn parse_error_body(body: &[u8]) -> Option<(String, String)> {
    if body.len() > MAX_RESPONSE_BYTES {
        return None;
    }
    let parsed: ErrorBody = serde_json::from_slice(body).ok()?;
    Some((printable(&parsed.error, 64), printable(&parsed.message, 256)))
}

/// Text from outside (a server's error message, a transport's description)
/// made safe to show on a terminal: at most `max_chars` characters, each
/// control, format (bidirectional overrides, zero-width characters) or line
/// separator character replaced by U+FFFD, so no escape sequence, carriage
/// return or line break reaches the person reading the error.
///
/// ```
/// use wormhole_sync_core::wire::printable;
/// assert_eq!(printable("busy\x1b[2J\r\nnow", 64), "busy\u{fffd}[2J\u{fffd}\u{fffd}now");
/// assert_eq!(printable("abcdef", 3), "abc");
/// ```
pub fn printable(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).map(|c| if is_printable(c) { c } else { '\u{fffd}' }).collect()
}

/// Whether `text` is unchanged by [`printable`] (ignoring its length): it
/// has no control, format (bidirectional, zero-width) or separator character.
///
/// ```
/// use wormhole_sync_core::wire::is_printable_text;
///
/// assert!(is_printable_text("café ☕"));
/// assert!(!is_printable_text("\x1b[2J") && !is_printable_text("left\u{202e}right"));
/// ```
pub fn is_printable_text(text: &str) -> bool {
    text.chars().all(is_printable)
}

fn is_printable(c: char) -> bool {
    let format = matches!(
        c,
        '\u{00ad}'
            | '\u{061c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{e0000}'..='\u{e007f}'
    );
    !c.is_control() && !format
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_round_trip_and_are_4xx_unless_transient() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_name(code.as_str()), Some(code));
            let status = code.http_status();
            let expected_5xx =
                matches!(code, ErrorCode::Internal | ErrorCode::ServerFull | ErrorCode::StorageUnavailable);
            assert_eq!(status >= 500, expected_5xx, "{code}");
            assert!((400..600).contains(&status));
        }
    }

    #[test]
    fn requests_round_trip_through_json() {
        let channel = ChannelId::new(12).unwrap();
        let requests = [
            Request::Allocate(AllocateRequest { appid: "a".into(), side: "s1".into() }),
            Request::Join(JoinRequest { appid: "a".into(), side: "s1".into(), channel, create: true }),
            Request::Post(PostRequest {
                appid: "a".into(),
                side: "s1".into(),
                channel,
                mailbox: None,
                phase: "pake".into(),
                body: "AAAA".into(),
                after: None,
                wait_ms: 0,
            }),
            Request::Post(PostRequest {
                appid: "a".into(),
                side: "s1".into(),
                channel,
                mailbox: MailboxId::new("abc123"),
                phase: "data".into(),
                body: "AAAA".into(),
                after: Some(2),
                wait_ms: 30_000,
            }),
            Request::Fetch(FetchRequest {
                appid: "a".into(),
                side: "s1".into(),
                channel,
                mailbox: MailboxId::new("abc123"),
                after: 3,
                wait_ms: 500,
            }),
            Request::Close(CloseRequest {
                appid: "a".into(),
                side: "s1".into(),
                channel,
                mailbox: None,
                mood: Mood::Scary,
            }),
        ];
        for request in requests {
            let parsed = Request::parse(Route::from_path(request.path()).unwrap(), &request.to_json()).unwrap();
            assert_eq!(parsed, request);
        }
    }

    #[test]
    fn parse_rejects_bad_fields_with_their_codes() {
        let cases: [(Route, &[u8], ErrorCode); 10] = [
            (Route::Allocate, b"", ErrorCode::BadRequest),
            (Route::Allocate, b"[]", ErrorCode::BadRequest),
            (Route::Allocate, br#"{"appid":1,"side":"a"}"#, ErrorCode::BadRequest),
            (Route::Allocate, br#"{"appid":"","side":"a"}"#, ErrorCode::InvalidAppid),
            (Route::Allocate, br#"{"appid":"x\u0000","side":"a"}"#, ErrorCode::InvalidAppid),
            (Route::Allocate, br#"{"appid":"x","side":"A B"}"#, ErrorCode::InvalidSide),
            (Route::Join, br#"{"appid":"x","side":"a","channel":0}"#, ErrorCode::BadRequest),
            (Route::Join, br#"{"appid":"x","side":"a","channel":-1}"#, ErrorCode::BadRequest),
            (Route::Post, br#"{"appid":"x","side":"a","channel":1,"phase":"","body":""}"#, ErrorCode::InvalidPhase),
            (Route::Close, br#"{"appid":"x","side":"a","channel":1,"mood":"sad"}"#, ErrorCode::BadRequest),
        ];
        for (route, body, code) in cases {
            let err = Request::parse(route, body).unwrap_err();
            assert_eq!(err.code, code, "{:?}", String::from_utf8_lossy(body));
        }
        let huge = vec![b' '; MAX_REQUEST_BYTES + 1];
        assert_eq!(Request::parse(Route::Fetch, &huge).unwrap_err().code, ErrorCode::BodyTooLarge);
    }

    #[test]
    fn error_bodies_round_trip() {
        let err = WireError::new(ErrorCode::Crowded, "two sides already");
        assert_eq!(parse_error_body(&err.to_json()), Some(("crowded".into(), "two sides already".into())));
        assert_eq!(parse_error_body(b"<html>"), None);
    }
}
