//! The requests an exchange derives from its facts (which one is due, when,
//! how long the server may hold it) and what their answers teach it.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::{Exchange, CLOSE_GRACE, MAX_DATA_LEN};
use crate::config::DEFAULT_RENDEZVOUS_URL;
use crate::crypto::{PAKE_MESSAGE_LEN, TAG_LEN};
use crate::error::{ServerErrorCode, TransportError};
use crate::time::millis;
use crate::wire::{
    parse_error_body, validate_side, AllocateRequest, CloseRequest, ErrorCode, FetchRequest, JoinRequest, Log, Mood,
    PostRequest, Request, Response, Route, MAX_SEQ,
};
use crate::{Error, Timestamp};

/// An answer without news that took at least this long (or its whole wait,
/// if shorter) was held by the server: a long-poll, followed at once by the
/// next. It also bounds an online client to one long-poll per this long.
const LONG_POLL_HELD: Duration = Duration::from_secs(1);
/// The shortest long-poll wait once the peer has been heard from: it is
/// online and answers within round trips, so a long wait would only delay
/// noticing a request lost on the way.
const ACTIVE_PEER_WAIT: Duration = Duration::from_secs(5);
/// How often a close is attempted before it is left to the server's expiry.
const MAX_CLOSE_ATTEMPTS: u32 = 3;
/// Shortest time given to a request, even right at the hard deadline.
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_millis(200);
pub(super) const PHASE_PAKE: &str = "pake";
pub(super) const PHASE_DATA: &str = "data";

/// Identifies one request handed out by [`Exchange::poll_transmit`], so its
/// answer can be matched to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u64);

impl RequestId {
    /// The id as a number, for a host that keeps it outside Rust (a
    /// binding for another language); [`from_u64`](Self::from_u64) turns it
    /// back.
    ///
    /// ```
    /// use wormhole_sync_core::RequestId;
    ///
    /// assert_eq!(RequestId::from_u64(7).as_u64(), 7);
    /// ```
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The id [`as_u64`](Self::as_u64) gave. An id the exchange never
    /// handed out is harmless: its answer is ignored.
    pub const fn from_u64(id: u64) -> RequestId {
        RequestId(id)
    }
}

/// A request the caller must send: `POST` [`body`](Self::body) to
/// [`url`](Self::url), give up after [`timeout`](Self::timeout), and report
/// the answer with [`Exchange::handle_response`] or the failure with
/// [`Exchange::handle_transport_error`].
#[derive(Clone, Debug)]
pub struct Transmit {
    id: RequestId,
    request: Request,
    url: String,
    timeout: Duration,
}

impl Transmit {
    /// Pass this back with the answer.
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// The typed request.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The HTTP method (`POST`).
    pub fn method(&self) -> &'static str {
        self.request.method()
    }

    /// The path below the server's base URL, e.g. `/v1/post`.
    pub fn path(&self) -> &'static str {
        self.request.path()
    }

    /// The whole URL: the configured rendezvous server (or
    /// [`DEFAULT_RENDEZVOUS_URL`]) joined with [`path`](Self::path).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        self.request.to_json()
    }

    /// How long to wait for an answer before giving up on the connection:
    /// the long-poll wait plus the request timeout, cut short by the hard
    /// deadline (or, once there is an outcome, by the close grace). The
    /// exchange also forgets the request itself after this long and retries.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Allocate,
    Join,
    PostPake,
    PostData,
    Fetch,
    Close,
}

impl Kind {
    fn is_post(self) -> bool {
        matches!(self, Kind::PostPake | Kind::PostData)
    }

    fn route(self) -> Route {
        match self {
            Kind::Allocate => Route::Allocate,
            Kind::Join => Route::Join,
            Kind::PostPake | Kind::PostData => Route::Post,
            Kind::Fetch => Route::Fetch,
            Kind::Close => Route::Close,
        }
    }
}

#[derive(Debug)]
pub(super) struct InFlight {
    id: RequestId,
    pub(super) kind: Kind,
    pub(super) sent_at: Timestamp,
    /// The long-poll wait asked for (zero unless a fetch, or a post that waits).
    wait: Duration,
    pub(super) deadline: Timestamp,
}

/// The server's last "retry later" answer (429 or 5xx) to each kind of
/// request, cleared by the next answer that is not one: what a timeout
/// reports when the server kept refusing.
#[derive(Default, Debug)]
pub(super) struct Refusals {
    control: Option<(ServerErrorCode, String)>,
    fetch: Option<(ServerErrorCode, String)>,
}

impl Refusals {
    pub(super) fn slot(&mut self, kind: Kind) -> &mut Option<(ServerErrorCode, String)> {
        if kind == Kind::Fetch {
            &mut self.fetch
        } else {
            &mut self.control
        }
    }
}

impl Exchange {
    fn interval(&self) -> Duration {
        let elapsed = self.facts.started_at.map_or(Duration::ZERO, |s| self.now.saturating_since(s));
        self.facts.config.schedule().interval_at(elapsed)
    }

    pub(super) fn control_busy(&self) -> bool {
        self.in_flight.iter().any(|r| r.kind != Kind::Fetch)
    }

    /// A fetch is only for waiting: while a join or post is due or in
    /// flight, its answer brings the log instead.
    pub(super) fn wants_fetch(&self) -> bool {
        !self.is_terminal() && self.facts.joined && self.in_flight.is_empty() && self.next_control().is_none()
    }

    /// The control request (anything but fetch) the state calls for now.
    pub(super) fn next_control(&self) -> Option<Kind> {
        let facts = &self.facts;
        if self.is_terminal() {
            let close = facts.joined && !facts.close_acked && self.close_attempts < MAX_CLOSE_ATTEMPTS;
            return close.then_some(Kind::Close);
        }
        if !facts.joined {
            return Some(if facts.code.is_some() { Kind::Join } else { Kind::Allocate });
        }
        if !facts.pake_posted {
            return Some(Kind::PostPake);
        }
        (self.keys.is_some() && facts.released() && !facts.data_posted).then_some(Kind::PostData)
    }

    fn mood(&self) -> Mood {
        match &self.facts.failure {
            None => Mood::Happy,
            Some(Error::Timeout | Error::ServerUnreachable { .. } | Error::ServerBusy { .. } | Error::Cancelled) => {
                Mood::Lonely
            }
            // Scary burns the channel: for evidence of a wrong code or an attack. A peer
            // that merely breaks the protocol is told `errory`, so it does not report a
            // wrong code to its person.
            // So is a peer that agreed keys and then went silent: it may have been an
            // interceptor testing a guess offline, so the code must not be tried again.
            Some(Error::WrongCode | Error::Reflection | Error::PeerVanished) => Mood::Scary,
            Some(Error::Declined | Error::PeerDeclined) => Mood::Declined,
            Some(_) => Mood::Errory,
        }
    }

    pub(super) fn send(&mut self, kind: Kind) -> Transmit {
        let appid = self.facts.config.appid().to_string();
        let side = self.side.clone();
        let channel = self.channel();
        let in_channel = || channel.expect("requests after allocation always have a channel");
        // Named once known: the server then finds the channel by it, and can
        // give the short id to the next code.
        let mailbox = self.facts.mailbox.clone();
        let mut wait = Duration::ZERO;
        let request = match kind {
            Kind::Allocate => Request::Allocate(AllocateRequest { appid, side }),
            Kind::Join => {
                Request::Join(JoinRequest { appid, side, channel: in_channel(), create: self.facts.create_channel })
            }
            Kind::PostPake | Kind::PostData => {
                let (phase, body, awaits_peer) = if kind == Kind::PostPake {
                    (PHASE_PAKE, self.pake_message(), self.facts.peer_pake.is_none())
                } else {
                    (PHASE_DATA, self.sealed_data(), self.facts.peer_data.is_none())
                };
                // Nothing to post after this one until the peer answers: the post
                // doubles as the long-poll for that answer.
                if awaits_peer {
                    wait = self.long_poll_wait();
                }
                Request::Post(PostRequest {
                    appid,
                    side,
                    channel: in_channel(),
                    mailbox,
                    phase: phase.into(),
                    body: BASE64.encode(body),
                    after: Some(self.facts.cursor),
                    wait_ms: millis(wait),
                })
            }
            Kind::Fetch => {
                wait = self.long_poll_wait();
                let (after, wait_ms) = (self.facts.cursor, millis(wait));
                Request::Fetch(FetchRequest { appid, side, channel: in_channel(), mailbox, after, wait_ms })
            }
            Kind::Close => {
                self.close_attempts += 1;
                Request::Close(CloseRequest { appid, side, channel: in_channel(), mailbox, mood: self.mood() })
            }
        };
        let id = RequestId(self.next_id);
        self.next_id += 1;
        let timeout = self.clamp_to_deadline(wait + self.facts.config.request_timeout());
        self.in_flight.push(InFlight { id, kind, sent_at: self.now, wait, deadline: self.now + timeout });
        let base = self.facts.config.rendezvous().unwrap_or(DEFAULT_RENDEZVOUS_URL).trim_end_matches('/');
        let url = format!("{base}{}", request.path());
        Transmit { id, request, url, timeout }
    }

    /// A request never outlives the hard deadline (or, once there is an
    /// outcome, the close grace), though it always gets a moment.
    fn clamp_to_deadline(&self, timeout: Duration) -> Duration {
        let end = match self.ended_at {
            Some(ended) => Some(ended + CLOSE_GRACE),
            None => self.deadline(),
        };
        match end {
            Some(end) => timeout.min(end.saturating_since(self.now).max(MIN_REQUEST_TIMEOUT)),
            None => timeout,
        }
    }

    /// How long the next long-poll asks the server to hold it: the whole
    /// `long_poll` while the peer has not been heard from (it may be hours
    /// away), and otherwise the time since it was, at least
    /// [`ACTIVE_PEER_WAIT`]: short while the peer is busy answering, so a
    /// lost request costs little, and growing back to `long_poll` as it
    /// falls quiet.
    fn long_poll_wait(&self) -> Duration {
        let longest = self.facts.config.long_poll();
        match self.peer_heard_at {
            None => longest,
            Some(heard) => self.now.saturating_since(heard).clamp(ACTIVE_PEER_WAIT.min(longest), longest),
        }
    }

    pub(super) fn is_in_flight(&self, id: RequestId) -> bool {
        self.in_flight.iter().any(|r| r.id == id)
    }

    pub(super) fn take_in_flight(&mut self, id: RequestId) -> Option<InFlight> {
        let index = self.in_flight.iter().position(|r| r.id == id)?;
        Some(self.in_flight.swap_remove(index))
    }

    /// Requests past their deadline are lost: retried per the schedule.
    pub(super) fn forget_lost_requests(&mut self) {
        while let Some(index) = self.in_flight.iter().position(|r| r.deadline <= self.now) {
            let lost = self.in_flight.swap_remove(index);
            *self.refusals.slot(lost.kind) = None;
            self.retry_later(lost.kind, TransportError::from_message("the server did not answer in time"));
        }
    }

    /// Once the outcome is known, a pending long-poll's answer (a fetch's, or
    /// a post's held for news) no longer matters, and the close must not wait
    /// for it.
    pub(super) fn forget_long_polls(&mut self) {
        self.in_flight.retain(|r| r.kind != Kind::Fetch && !r.kind.is_post());
    }

    /// What the hard timeout reports: the server's last refusal, if it kept
    /// refusing; a plain timeout if it was reached; else why it was not.
    pub(super) fn timeout_error(&self) -> Error {
        let refusal = self.refusals.control.clone().or_else(|| self.refusals.fetch.clone());
        match refusal {
            // Someone used the code and never sent valid data: our data may
            // have gone to an interceptor, sealed under a key it can test a
            // guess against.
            _ if self.facts.peer_pake.is_some() && self.facts.peer_data.is_none() => Error::PeerVanished,
            Some((code, message)) => Error::ServerBusy { code, message },
            None if self.facts.reached_server => Error::Timeout,
            None => Error::ServerUnreachable { cause: self.last_problem.clone() },
        }
    }

    pub(super) fn retry_later(&mut self, kind: Kind, cause: TransportError) {
        self.last_problem = cause;
        self.trouble_since.get_or_insert(self.now);
        let at = self.now + self.interval();
        if kind == Kind::Fetch {
            self.fetch_at = at;
        } else {
            self.control_at = at;
        }
    }

    pub(super) fn on_response(&mut self, request: InFlight, status: u16, body: &[u8]) {
        if (100..=599).contains(&status) {
            self.facts.reached_server = true;
        }
        let refused = matches!(status, 429 | 500..=599);
        if !refused {
            self.trouble_since = None;
        }
        *self.refusals.slot(request.kind) = None;
        match status {
            200..=299 => match Response::parse(request.kind.route(), body) {
                Ok(response) => self.on_success(&request, response),
                Err(_) if request.kind == Kind::Close => self.facts.close_acked = true,
                Err(detail) => self.fail(Error::ServerProtocol { detail }),
            },
            _ if refused => {
                let (code, message) = error_body(status, body);
                let why = format!("the server answered HTTP {status} ({code})");
                self.retry_later(request.kind, TransportError::from_message(&why));
                *self.refusals.slot(request.kind) = Some((code, message));
            }
            400..=499 => {
                let (code, message) = error_body(status, body);
                self.on_rejected(request.kind, code, message);
            }
            _ => self.fail(Error::ServerProtocol { detail: format!("unexpected HTTP status {status}") }),
        }
    }

    fn on_success(&mut self, request: &InFlight, response: Response) {
        if request.kind != Kind::Fetch {
            self.control_at = self.now;
        }
        match (request.kind, response) {
            (Kind::Allocate, Response::Allocated(allocated)) => {
                if self.facts.code.is_none() {
                    self.facts.code = Some(self.facts.seed.code_for(allocated.channel, self.facts.config.code_words()));
                }
                self.facts.joined = true;
                self.facts.mailbox = allocated.mailbox;
            }
            (Kind::Join, Response::Joined(joined)) => {
                self.facts.joined = true;
                self.facts.mailbox = joined.mailbox;
                if let Some(log) = joined.log {
                    self.on_log(request, log);
                }
            }
            (Kind::PostPake | Kind::PostData, Response::Posted(posted)) => {
                if request.kind == Kind::PostPake {
                    self.facts.pake_posted = true;
                } else {
                    self.facts.data_posted = true;
                }
                if let Some(log) = posted.log {
                    self.on_log(request, log);
                }
            }
            (Kind::Close, Response::Closed(_)) => self.facts.close_acked = true,
            (Kind::Fetch, Response::Fetched(log)) => self.on_log(request, log),
            _ => unreachable!("responses are parsed by the request's route"),
        }
    }

    fn on_rejected(&mut self, kind: Kind, code: ServerErrorCode, message: String) {
        if kind == Kind::Close {
            // Nothing left to close (already gone, or closed before a restore).
            self.facts.close_acked = true;
            return;
        }
        let joined = self.facts.joined;
        let known = match &code {
            ServerErrorCode::Known(known) => Some(*known),
            _ => None,
        };
        let error = match (kind, known) {
            (_, Some(ErrorCode::Crowded)) => Error::Crowded,
            // The channel we were in is gone: expired, or the server lost it.
            (_, Some(ErrorCode::UnknownChannel)) if joined => Error::ChannelExpired,
            (_, Some(ErrorCode::UnknownChannel)) => Error::UnknownChannel,
            (Kind::Join, Some(ErrorCode::Burned)) if !joined => Error::ChannelBurned,
            // The peer found a wrong code and closed the channel for good.
            (_, Some(ErrorCode::Burned)) => Error::WrongCode,
            // Its only side closed before we joined: the person who showed the code stopped waiting.
            (_, Some(ErrorCode::Abandoned)) => Error::PeerClosed { mood: Mood::Lonely },
            _ => Error::ServerRejected { code, message },
        };
        self.fail(error);
    }

    /// Takes in a log from any answer and decides when the next fetch may go.
    fn on_log(&mut self, request: &InFlight, log: Log) {
        // An answer that moved the cursor (our own echo included) is followed at
        // once by a long-poll after it, so the next message arrives within one
        // round trip; so is an empty answer the server held (a long-poll that
        // ran out), so an online client always has one open. An empty answer
        // that came back early (no long-polls there) waits for the next interval.
        let cursor = self.facts.cursor;
        self.on_fetched(log);
        let held =
            !request.wait.is_zero() && self.now.saturating_since(request.sent_at) >= request.wait.min(LONG_POLL_HELD);
        let next_poll = request.sent_at + self.interval();
        self.fetch_at = if self.facts.cursor > cursor || held { self.now } else { next_poll.max(self.now) };
    }

    fn on_fetched(&mut self, fetched: Log) {
        if self.is_terminal() {
            return;
        }
        if fetched.messages.iter().any(|m| m.seq == 0 || m.seq > MAX_SEQ) {
            let detail = format!("a message's sequence number is not between 1 and {MAX_SEQ}");
            return self.fail(Error::ServerProtocol { detail });
        }
        for message in fetched.messages {
            self.facts.cursor = self.facts.cursor.max(message.seq);
            if message.side == self.side || !self.is_peer(&message.side) {
                continue;
            }
            let (slot, max) = match message.phase.as_str() {
                PHASE_PAKE => (&mut self.facts.peer_pake, PAKE_MESSAGE_LEN),
                PHASE_DATA => (&mut self.facts.peer_data, MAX_DATA_LEN + TAG_LEN),
                _ => continue, // Unknown phases are for newer versions: ignored.
            };
            if slot.is_some() {
                continue; // First message per phase wins; repeats are replays.
            }
            self.peer_heard_at = Some(self.now);
            match BASE64.decode(&message.body).ok().filter(|b| b.len() <= max) {
                Some(bytes) => *slot = Some(bytes),
                None => {
                    let detail = format!("the {} message is not valid base64 of the right size", message.phase);
                    return self.fail(Error::PeerProtocol { detail });
                }
            }
        }
        for closed in fetched.closed {
            if closed.side != self.side && self.is_peer(&closed.side) && self.facts.peer_mood.is_none() {
                self.facts.peer_mood = Some(closed.mood);
                self.peer_heard_at = Some(self.now);
            }
        }
    }

    /// Whether `side` is our peer: the first other side we hear from.
    fn is_peer(&mut self, side: &str) -> bool {
        if validate_side(side).is_err() {
            return false;
        }
        self.facts.peer_side.get_or_insert_with(|| side.to_string()) == side
    }
}

/// The error code and message of an error answer, or the bare HTTP status
/// when the body is not an error object.
fn error_body(status: u16, body: &[u8]) -> (ServerErrorCode, String) {
    match parse_error_body(body) {
        Some((code, message)) => (ServerErrorCode::from_name(&code), message),
        None => (ServerErrorCode::HttpStatus(status), "the error body is not JSON".into()),
    }
}
