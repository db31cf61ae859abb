//! The client state machine shared by initiator and receiver.
//!
//! It keeps only *facts* (what the server acknowledged, what the peer sent)
//! and derives everything else from them and its seed: the PAKE state, the
//! keys, the next request, the events. That is what makes it safe to
//! serialize at any moment and to feed it duplicated or reordered input.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::code::{ChannelId, Code};
use crate::config::Config;
use crate::crypto::{Pake, Seed, SessionKeys, Verifier, PAKE_MESSAGE_LEN, TAG_LEN};
use crate::time::{millis, Timestamp};
use crate::wire::{
    parse_error_body, printable, validate_side, AllocateRequest, CloseRequest, ErrorCode, FetchRequest, JoinRequest,
    Log, Mood, PostRequest, Request, Response, Route, MAX_SEQ,
};
use crate::{Error, Role};

mod saved;

/// Largest data one side may send.
pub const MAX_DATA_LEN: usize = 32 * 1024;
/// Largest serialized exchange [`Exchange::from_serialized`] reads.
pub const MAX_SERIALIZED_LEN: usize = 256 * 1024;
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
const PHASE_PAKE: &str = "pake";
const PHASE_DATA: &str = "data";

/// Identifies one request handed out by [`Exchange::poll_transmit`], so its
/// answer can be matched to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u64);

/// A request the caller must send to the rendezvous server.
#[derive(Clone, Debug)]
pub struct Transmit {
    id: RequestId,
    request: Request,
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

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        self.request.to_json()
    }

    /// How long the caller should wait for an answer before giving up on the
    /// connection (long-poll wait plus the request timeout). The exchange also
    /// forgets the request itself after this long and retries.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// Something the application should know.
#[derive(Clone, PartialEq, Eq)]
pub enum Event {
    /// The invitation code is known (initiator: allocated; receiver: given).
    Code(Code),
    /// The keys are agreed; show this to the person if the application
    /// confirms verifiers.
    Verifier(Verifier),
    /// The exchange completed: the peer's data, exactly as it sent it.
    Data(Vec<u8>),
    /// The exchange failed.
    Failed(Error),
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Code(code) => f.debug_tuple("Code").field(code).finish(),
            Event::Verifier(v) => f.debug_tuple("Verifier").field(v).finish(),
            Event::Data(data) => write!(f, "Data(<{} bytes>)", data.len()),
            Event::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
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
}

#[derive(Debug)]
struct InFlight {
    id: RequestId,
    kind: Kind,
    sent_at: Timestamp,
    /// The long-poll wait asked for (zero unless a fetch, or a post that waits).
    wait: Duration,
    deadline: Timestamp,
}

/// The server's last "retry later" answer (429 or 5xx) to each kind of
/// request, cleared by the next answer that is not one: what a timeout
/// reports when the server kept refusing.
#[derive(Default, Debug)]
struct Refusals {
    control: Option<(String, String)>,
    fetch: Option<(String, String)>,
}

impl Refusals {
    fn slot(&mut self, kind: Kind) -> &mut Option<(String, String)> {
        if kind == Kind::Fetch {
            &mut self.fetch
        } else {
            &mut self.control
        }
    }
}

/// Which events have been handed out since this object was created.
#[derive(Default, Debug)]
struct Announced {
    code: bool,
    verifier: bool,
    outcome: bool,
}

/// One side of a transcribe-mode exchange, as a sans-IO state machine.
///
/// Inputs: [`start`](Self::start), [`handle_response`](Self::handle_response),
/// [`handle_transport_error`](Self::handle_transport_error),
/// [`handle_timeout`](Self::handle_timeout), [`confirm_verifier`](Self::confirm_verifier).
/// Outputs: [`poll_transmit`](Self::poll_transmit), [`poll_timeout`](Self::poll_timeout),
/// [`poll_event`](Self::poll_event). See the crate docs for the driving loop.
///
/// `Debug` shows progress, never the code, keys or data.
pub struct Exchange {
    role: Role,
    config: Config,
    seed: Seed,
    side: String,
    data: Vec<u8>,
    code: Option<Code>,
    create_channel: bool,
    started_at: Option<Timestamp>,
    now: Timestamp,
    // Facts acknowledged by the server.
    joined: bool,
    pake_posted: bool,
    data_posted: bool,
    close_acked: bool,
    reached_server: bool,
    // Facts learned from the peer.
    cursor: u64,
    peer_side: Option<String>,
    peer_pake: Option<Vec<u8>>,
    peer_data: Option<Vec<u8>>,
    peer_mood: Option<Mood>,
    // Local decisions.
    decision: Option<bool>,
    failure: Option<Error>,
    // Derived, rebuilt after a restore.
    pake: Option<Pake>,
    /// Our PAKE message, kept after the PAKE state is consumed so a retried
    /// post resends the same bytes.
    own_pake: Vec<u8>,
    keys: Option<SessionKeys>,
    peer_plain: Option<Vec<u8>>,
    succeeded: bool,
    // Driving state, not persisted: a restored exchange resends what was in flight.
    in_flight: Vec<InFlight>,
    next_id: u64,
    control_at: Timestamp,
    fetch_at: Timestamp,
    /// When an answer last brought something new from the peer.
    peer_heard_at: Option<Timestamp>,
    close_attempts: u32,
    last_problem: String,
    refusals: Refusals,
    events: VecDeque<Event>,
    announced: Announced,
}

impl Exchange {
    /// An initiator: allocates a channel, then shows the code.
    ///
    /// `seed` is 32 bytes from a cryptographically secure generator; every
    /// secret of the exchange derives from it.
    pub fn initiator(config: Config, data: Vec<u8>, seed: [u8; 32]) -> Result<Exchange, Error> {
        Exchange::new(Role::Initiator, config, data, seed, None)
    }

    /// An initiator with a code the application chose (the receiver types the
    /// same code): it joins that channel, creating it if needed.
    pub fn initiator_with_code(config: Config, code: Code, data: Vec<u8>, seed: [u8; 32]) -> Result<Exchange, Error> {
        let mut exchange = Exchange::new(Role::Initiator, config, data, seed, Some(code))?;
        exchange.create_channel = true;
        Ok(exchange)
    }

    /// A receiver for a code the initiator showed.
    pub fn receiver(config: Config, code: Code, data: Vec<u8>, seed: [u8; 32]) -> Result<Exchange, Error> {
        Exchange::new(Role::Receiver, config, data, seed, Some(code))
    }

    /// Lets a receiver create its channel if it does not exist yet (for codes
    /// both sides typed, when the receiver may start first). Without it, a
    /// code naming a missing channel fails at once with
    /// [`Error::UnknownChannel`].
    pub fn create_channel_if_missing(mut self) -> Exchange {
        self.create_channel = true;
        self
    }

    /// Changes the configuration of an exchange that has not started, so a
    /// transport can offer options after construction.
    ///
    /// ```
    /// use std::time::Duration;
    /// use wormhole_sync_core::{Config, Exchange};
    ///
    /// let exchange = Exchange::initiator(Config::new("app")?, b"hi".to_vec(), [1; 32])?
    ///     .with_config(|c| Ok(c.with_timeout(Duration::from_secs(60))))?;
    /// assert_eq!(exchange.config().timeout(), Duration::from_secs(60));
    /// # Ok::<(), wormhole_sync_core::Error>(())
    /// ```
    pub fn with_config(self, change: impl FnOnce(Config) -> Result<Config, Error>) -> Result<Exchange, Error> {
        self.rebuild(|config, _| Ok((change(config)?, None)))
    }

    /// Makes an initiator that has not started join a code the application
    /// chose instead of allocating one.
    pub fn with_chosen_code(self, code: Code) -> Result<Exchange, Error> {
        if self.role != Role::Initiator {
            return Err(Error::InvalidConfig("only an initiator can choose its code".into()));
        }
        self.rebuild(|config, _| Ok((config, Some(code))))
    }

    fn rebuild(
        self,
        change: impl FnOnce(Config, Option<Code>) -> Result<(Config, Option<Code>), Error>,
    ) -> Result<Exchange, Error> {
        if self.started_at.is_some() {
            return Err(Error::InvalidConfig("options must be set before the exchange starts".into()));
        }
        let (config, new_code) = change(self.config.clone(), self.code.clone())?;
        let create = self.create_channel || new_code.is_some();
        let mut rebuilt =
            Exchange::new(self.role, config, self.data.clone(), *self.seed.0, new_code.or(self.code.clone()))?;
        rebuilt.create_channel = create;
        Ok(rebuilt)
    }

    /// Gives up at once (the application stopped the exchange): fails with
    /// [`Error::Cancelled`] and closes the channel, so the peer fails with
    /// [`Error::PeerClosed`] instead of waiting for its timeout. No effect
    /// once there is an outcome.
    pub fn cancel(&mut self, now: Timestamp) {
        self.advance(now);
        self.fail(Error::Cancelled);
    }

    fn new(role: Role, config: Config, data: Vec<u8>, seed: [u8; 32], code: Option<Code>) -> Result<Exchange, Error> {
        if data.len() > MAX_DATA_LEN {
            return Err(Error::DataTooLarge { len: data.len(), max: MAX_DATA_LEN });
        }
        let seed = Seed::new(seed);
        Ok(Exchange {
            role,
            config,
            side: seed.side(),
            seed,
            data,
            code,
            create_channel: false,
            started_at: None,
            now: Timestamp::EPOCH,
            joined: false,
            pake_posted: false,
            data_posted: false,
            close_acked: false,
            reached_server: false,
            cursor: 0,
            peer_side: None,
            peer_pake: None,
            peer_data: None,
            peer_mood: None,
            decision: None,
            failure: None,
            pake: None,
            own_pake: Vec::new(),
            keys: None,
            peer_plain: None,
            succeeded: false,
            in_flight: Vec::new(),
            next_id: 0,
            control_at: Timestamp::EPOCH,
            fetch_at: Timestamp::EPOCH,
            peer_heard_at: None,
            close_attempts: 0,
            last_problem: "no request was answered".into(),
            refusals: Refusals::default(),
            events: VecDeque::new(),
            announced: Announced::default(),
        })
    }

    /// Starts the exchange; the schedule and timeout count from the first
    /// start. Later calls (also on a restored exchange) change nothing.
    pub fn start(&mut self, now: Timestamp) {
        if self.started_at.is_none() {
            self.started_at = Some(now);
        }
        self.advance(now);
        self.progress();
    }

    /// Whether [`start`](Self::start) was ever called (before a restore too).
    pub fn is_started(&self) -> bool {
        self.started_at.is_some()
    }

    /// This side's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The invitation code, once known.
    pub fn code(&self) -> Option<&Code> {
        self.code.as_ref()
    }

    /// The verifier, once the keys are agreed.
    pub fn verifier(&self) -> Option<&Verifier> {
        self.keys.as_ref().map(SessionKeys::verifier)
    }

    /// The result, once there is one: the peer's data or the error.
    pub fn outcome(&self) -> Option<Result<&[u8], &Error>> {
        if let Some(error) = &self.failure {
            return Some(Err(error));
        }
        self.succeeded.then(|| Ok(self.peer_plain.as_deref().unwrap_or_default()))
    }

    /// When the hard timeout fires (the first start plus the timeout), once started.
    pub fn deadline(&self) -> Option<Timestamp> {
        self.started_at.map(|s| s + self.config.timeout())
    }

    /// Whether the exchange waits for [`confirm_verifier`](Self::confirm_verifier):
    /// the verifier is known, confirmation is configured, and no verdict was given.
    pub fn awaits_confirmation(&self) -> bool {
        self.config.confirms_verifier() && self.keys.is_some() && self.decision.is_none() && !self.is_terminal()
    }

    /// Whether nothing remains to do: there is an outcome and the channel
    /// has been closed (or the close was given up).
    pub fn is_finished(&self) -> bool {
        self.is_terminal() && self.next_control().is_none() && self.in_flight.is_empty()
    }

    /// Records the person's verdict on the verifier (with
    /// [`Config::with_verifier_confirmation`]). `accept = false` closes the
    /// channel and both sides fail with a "declined" error. Returns false,
    /// changing nothing, if the verifier is not known yet or a verdict was
    /// already given.
    pub fn confirm_verifier(&mut self, now: Timestamp, accept: bool) -> bool {
        self.advance(now);
        if self.keys.is_none() || self.decision.is_some() || self.is_terminal() {
            return false;
        }
        self.decision = Some(accept);
        self.control_at = self.now;
        self.progress();
        true
    }

    /// The next request to send, if one is due at `now`. Call until `None`.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<Transmit> {
        self.advance(now);
        self.started_at?;
        let control_busy = self.in_flight.iter().any(|r| r.kind != Kind::Fetch);
        if !control_busy && self.now >= self.control_at {
            if let Some(kind) = self.next_control() {
                return Some(self.send(kind));
            }
        }
        if self.wants_fetch() && self.now >= self.fetch_at {
            return Some(self.send(Kind::Fetch));
        }
        None
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) (and then
    /// [`poll_transmit`](Self::poll_transmit)) if nothing else happens first.
    /// `None`: nothing to wait for (not started, or finished).
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let started = self.started_at?;
        let mut wake = self.in_flight.iter().map(|r| r.deadline).min();
        let mut consider = |t: Timestamp| wake = Some(wake.map_or(t, |w| w.min(t)));
        if !self.is_terminal() {
            consider(started + self.config.timeout());
        }
        let control_busy = self.in_flight.iter().any(|r| r.kind != Kind::Fetch);
        if !control_busy && self.next_control().is_some() {
            consider(self.control_at.max(self.now));
        }
        if self.wants_fetch() {
            consider(self.fetch_at.max(self.now));
        }
        wake
    }

    /// Time has passed: fires the hard timeout and forgets lost requests.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.advance(now);
    }

    /// The server answered request `id` with an HTTP status and body.
    /// Answers to unknown or forgotten requests are ignored.
    pub fn handle_response(&mut self, now: Timestamp, id: RequestId, status: u16, body: &[u8]) {
        self.set_clock(now);
        if let Some(request) = self.take_in_flight(id) {
            self.on_response(request, status, body);
        }
        self.advance(now);
        self.progress();
    }

    /// Request `id` failed without an answer (connection refused or lost,
    /// DNS failure, ...): it is retried per the schedule. `detail` is kept for
    /// the error shown if the server is never reached.
    pub fn handle_transport_error(&mut self, now: Timestamp, id: RequestId, detail: &str) {
        self.set_clock(now);
        if let Some(request) = self.take_in_flight(id) {
            *self.refusals.slot(request.kind) = None;
            self.retry_later(request.kind, detail);
        }
        self.advance(now);
    }

    /// The next event for the application.
    ///
    /// A restored exchange announces again what it knows: the code, the
    /// verifier and the outcome.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ----- internals -----

    fn is_terminal(&self) -> bool {
        self.failure.is_some() || self.succeeded
    }

    fn released(&self) -> bool {
        !self.config.confirms_verifier() || self.decision == Some(true)
    }

    fn channel(&self) -> Option<ChannelId> {
        self.code.as_ref().map(Code::channel)
    }

    fn interval(&self) -> Duration {
        let elapsed = self.started_at.map_or(Duration::ZERO, |s| self.now.saturating_since(s));
        self.config.schedule().interval_at(elapsed)
    }

    /// A fetch is only for waiting: while a join or post is due or in
    /// flight, its answer brings the log instead.
    fn wants_fetch(&self) -> bool {
        !self.is_terminal() && self.joined && self.in_flight.is_empty() && self.next_control().is_none()
    }

    /// The control request (anything but fetch) the state calls for now.
    fn next_control(&self) -> Option<Kind> {
        if self.is_terminal() {
            let close = self.joined && !self.close_acked && self.close_attempts < MAX_CLOSE_ATTEMPTS;
            return close.then_some(Kind::Close);
        }
        if !self.joined {
            return Some(if self.code.is_some() { Kind::Join } else { Kind::Allocate });
        }
        if !self.pake_posted {
            return Some(Kind::PostPake);
        }
        (self.keys.is_some() && self.released() && !self.data_posted).then_some(Kind::PostData)
    }

    fn mood(&self) -> Mood {
        match &self.failure {
            None => Mood::Happy,
            Some(Error::Timeout | Error::ServerUnreachable { .. } | Error::ServerBusy { .. } | Error::Cancelled) => {
                Mood::Lonely
            }
            // Scary burns the channel: for evidence of a wrong code or an attack. A peer
            // that merely breaks the protocol is told `errory`, so it does not report a
            // wrong code to its person.
            Some(Error::WrongCode | Error::Reflection) => Mood::Scary,
            Some(Error::Declined | Error::PeerDeclined) => Mood::Declined,
            Some(_) => Mood::Errory,
        }
    }

    fn send(&mut self, kind: Kind) -> Transmit {
        let appid = self.config.appid().to_string();
        let side = self.side.clone();
        let channel = self.channel();
        let in_channel = || channel.expect("requests after allocation always have a channel");
        let mut wait = Duration::ZERO;
        let request = match kind {
            Kind::Allocate => Request::Allocate(AllocateRequest { appid, side }),
            Kind::Join => {
                Request::Join(JoinRequest { appid, side, channel: in_channel(), create: self.create_channel })
            }
            Kind::PostPake | Kind::PostData => {
                let (phase, body) = if kind == Kind::PostPake {
                    (PHASE_PAKE, self.pake_message())
                } else {
                    (PHASE_DATA, self.sealed_data())
                };
                let body = BASE64.encode(body);
                // Nothing to post after this one until the peer answers: the post
                // doubles as the long-poll for that answer.
                let awaits_peer =
                    if kind == Kind::PostPake { self.peer_pake.is_none() } else { self.peer_data.is_none() };
                if awaits_peer {
                    wait = self.long_poll_wait();
                }
                let (after, wait_ms) = (Some(self.cursor), millis(wait));
                Request::Post(PostRequest {
                    appid,
                    side,
                    channel: in_channel(),
                    phase: phase.into(),
                    body,
                    after,
                    wait_ms,
                })
            }
            Kind::Fetch => {
                wait = self.long_poll_wait();
                let wait_ms = millis(wait);
                Request::Fetch(FetchRequest { appid, side, channel: in_channel(), after: self.cursor, wait_ms })
            }
            Kind::Close => {
                self.close_attempts += 1;
                Request::Close(CloseRequest { appid, side, channel: in_channel(), mood: self.mood() })
            }
        };
        let id = RequestId(self.next_id);
        self.next_id += 1;
        let timeout = wait + self.config.request_timeout();
        self.in_flight.push(InFlight { id, kind, sent_at: self.now, wait, deadline: self.now + timeout });
        Transmit { id, request, timeout }
    }

    /// How long the next long-poll asks the server to hold it: the whole
    /// `long_poll` while the peer has not been heard from (it may be hours
    /// away), and otherwise the time since it was, at least
    /// [`ACTIVE_PEER_WAIT`]: short while the peer is busy answering, so a
    /// lost request costs little, and growing back to `long_poll` as it
    /// falls quiet.
    fn long_poll_wait(&self) -> Duration {
        let longest = self.config.long_poll();
        match self.peer_heard_at {
            None => longest,
            Some(heard) => self.now.saturating_since(heard).clamp(ACTIVE_PEER_WAIT.min(longest), longest),
        }
    }

    fn pake_message(&mut self) -> Vec<u8> {
        self.ensure_pake();
        self.own_pake.clone()
    }

    /// Starts SPAKE2 from our seed unless it ran already (the same seed and
    /// code always give the same message).
    fn ensure_pake(&mut self) -> Option<&Pake> {
        if self.pake.is_none() && self.keys.is_none() {
            let code = self.code.as_ref()?;
            let pake = Pake::start(&self.seed, self.config.appid(), self.role, code);
            self.own_pake = pake.outbound().to_vec();
            self.pake = Some(pake);
        }
        self.pake.as_ref()
    }

    fn sealed_data(&self) -> Vec<u8> {
        match (&self.keys, self.channel()) {
            (Some(keys), Some(channel)) => keys.seal(self.role, self.config.appid(), channel, &self.data),
            _ => unreachable!("data is only posted once keys are agreed"),
        }
    }

    fn take_in_flight(&mut self, id: RequestId) -> Option<InFlight> {
        let index = self.in_flight.iter().position(|r| r.id == id)?;
        Some(self.in_flight.swap_remove(index))
    }

    /// Takes the caller's clock as it is. Time running backwards (a clock
    /// stepped back, or state restored on a machine whose clock is behind
    /// the one that saved it) moves every pending wake-up back by as much,
    /// so waits keep their length instead of turning into a stall; a first
    /// start that would lie in the future moves to now.
    fn set_clock(&mut self, now: Timestamp) {
        if now < self.now {
            let back = self.now.saturating_since(now);
            self.control_at = self.control_at.saturating_sub(back);
            self.fetch_at = self.fetch_at.saturating_sub(back);
            self.peer_heard_at = self.peer_heard_at.map(|t| t.saturating_sub(back));
            for request in &mut self.in_flight {
                request.sent_at = request.sent_at.saturating_sub(back);
                request.deadline = request.deadline.saturating_sub(back);
            }
        }
        self.now = now;
        if self.started_at.is_some_and(|started| started > now) {
            self.started_at = Some(now);
        }
    }

    fn advance(&mut self, now: Timestamp) {
        self.set_clock(now);
        let Some(started) = self.started_at else { return };
        while let Some(index) = self.in_flight.iter().position(|r| r.deadline <= self.now) {
            let lost = self.in_flight.swap_remove(index);
            *self.refusals.slot(lost.kind) = None;
            self.retry_later(lost.kind, "no answer in time");
        }
        if !self.is_terminal() && self.now >= started + self.config.timeout() {
            let refusal = self.refusals.control.clone().or_else(|| self.refusals.fetch.clone());
            let error = match refusal {
                Some((code, message)) => Error::ServerBusy { code, message },
                None if self.reached_server => Error::Timeout,
                None => Error::ServerUnreachable { detail: self.last_problem.clone() },
            };
            self.fail(error);
        }
    }

    fn retry_later(&mut self, kind: Kind, detail: &str) {
        self.last_problem = printable(detail, 256);
        let at = self.now + self.interval();
        if kind == Kind::Fetch {
            self.fetch_at = at;
        } else {
            self.control_at = at;
        }
    }

    fn on_response(&mut self, request: InFlight, status: u16, body: &[u8]) {
        let route = match request.kind {
            Kind::Allocate => Route::Allocate,
            Kind::Join => Route::Join,
            Kind::PostPake | Kind::PostData => Route::Post,
            Kind::Fetch => Route::Fetch,
            Kind::Close => Route::Close,
        };
        if (100..=599).contains(&status) {
            self.reached_server = true;
        }
        let refused = matches!(status, 429 | 500..=599);
        *self.refusals.slot(request.kind) = None;
        match status {
            200..=299 => match Response::parse(route, body) {
                Ok(response) => self.on_success(&request, response),
                Err(detail) if request.kind == Kind::Close => {
                    self.close_acked = true;
                    self.last_problem = detail;
                }
                Err(detail) => self.fail(Error::ServerProtocol { detail }),
            },
            _ if refused => {
                let (code, message) = error_body(status, body);
                self.retry_later(request.kind, &format!("the server answered HTTP {status} ({code})"));
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
                if self.code.is_none() {
                    self.code = Some(self.seed.code_for(allocated.channel, self.config.code_words()));
                }
                self.joined = true;
            }
            (Kind::Join, Response::Joined(joined)) => {
                self.joined = true;
                if let Some(log) = joined.log {
                    self.on_log(request, log);
                }
            }
            (Kind::PostPake | Kind::PostData, Response::Posted(posted)) => {
                if request.kind == Kind::PostPake {
                    self.pake_posted = true;
                } else {
                    self.data_posted = true;
                }
                if let Some(log) = posted.log {
                    self.on_log(request, log);
                }
            }
            (Kind::Close, Response::Closed(_)) => self.close_acked = true,
            (Kind::Fetch, Response::Fetched(log)) => self.on_log(request, log),
            _ => unreachable!("responses are parsed by the request's route"),
        }
    }

    fn on_rejected(&mut self, kind: Kind, code: String, message: String) {
        if kind == Kind::Close {
            // Nothing left to close (already gone, or closed before a restore).
            self.close_acked = true;
            return;
        }
        let error = match (kind, ErrorCode::from_name(&code)) {
            (_, Some(ErrorCode::Crowded)) => Error::Crowded,
            // The channel we were in is gone: expired, or the server lost it.
            (_, Some(ErrorCode::UnknownChannel)) if self.joined => Error::ChannelExpired,
            (_, Some(ErrorCode::UnknownChannel)) => Error::UnknownChannel,
            (Kind::Join, Some(ErrorCode::Burned)) if !self.joined => Error::ChannelBurned,
            // The peer found a wrong code and closed the channel for good.
            (_, Some(ErrorCode::Burned)) => Error::WrongCode,
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
        let cursor = self.cursor;
        self.on_fetched(log);
        let held =
            !request.wait.is_zero() && self.now.saturating_since(request.sent_at) >= request.wait.min(LONG_POLL_HELD);
        let next_poll = request.sent_at + self.interval();
        self.fetch_at = if self.cursor > cursor || held { self.now } else { next_poll.max(self.now) };
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
            self.cursor = self.cursor.max(message.seq);
            if message.side == self.side || !self.is_peer(&message.side) {
                continue;
            }
            let (slot, max) = match message.phase.as_str() {
                PHASE_PAKE => (&mut self.peer_pake, PAKE_MESSAGE_LEN),
                PHASE_DATA => (&mut self.peer_data, MAX_DATA_LEN + TAG_LEN),
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
            if closed.side != self.side && self.is_peer(&closed.side) && self.peer_mood.is_none() {
                self.peer_mood = Some(closed.mood);
                self.peer_heard_at = Some(self.now);
            }
        }
    }

    /// Whether `side` is our peer: the first other side we hear from.
    fn is_peer(&mut self, side: &str) -> bool {
        if validate_side(side).is_err() {
            return false;
        }
        self.peer_side.get_or_insert_with(|| side.to_string()) == side
    }

    fn fail(&mut self, error: Error) {
        if self.is_terminal() {
            return;
        }
        self.failure = Some(error);
        self.control_at = self.now;
        self.forget_long_polls();
        self.announce();
    }

    /// Once the outcome is known, a pending long-poll's answer (a fetch's, or
    /// a post's held for news) no longer matters, and the close must not wait
    /// for it.
    fn forget_long_polls(&mut self) {
        self.in_flight.retain(|r| r.kind != Kind::Fetch && !r.kind.is_post());
    }

    /// Derives what follows from the facts, then announces it.
    fn progress(&mut self) {
        if !self.is_terminal() {
            self.derive();
        }
        self.announce();
    }

    fn derive(&mut self) {
        let (Some(channel), Some(peer_pake)) = (self.channel(), self.peer_pake.clone()) else {
            return self.check_peer_mood();
        };
        if self.keys.is_none() {
            let Some(pake) = self.ensure_pake() else { return };
            if pake.outbound() == peer_pake.as_slice() {
                return self.fail(Error::Reflection);
            }
            let pake = self.pake.take().expect("ensured above");
            match pake.finish(self.role, &peer_pake) {
                Ok(keys) => self.keys = Some(keys),
                Err(_) => {
                    let detail = "the PAKE message is not a valid SPAKE2 message for our role".into();
                    return self.fail(Error::PeerProtocol { detail });
                }
            }
        }
        let keys = self.keys.as_ref().expect("agreed above");
        if let (None, Some(sealed)) = (&self.peer_plain, &self.peer_data) {
            let appid = self.config.appid();
            match keys.open(self.role, appid, channel, sealed) {
                Some(plain) => self.peer_plain = Some(plain),
                None if keys.is_reflection(self.role, appid, channel, sealed) => return self.fail(Error::Reflection),
                None => return self.fail(Error::WrongCode),
            }
        }
        if self.decision == Some(false) {
            return self.fail(Error::Declined);
        }
        if self.peer_plain.is_some() && self.data_posted && self.released() {
            self.succeeded = true;
            self.control_at = self.now;
            self.forget_long_polls();
            return;
        }
        self.check_peer_mood();
    }

    fn check_peer_mood(&mut self) {
        match self.peer_mood {
            Some(Mood::Scary) => self.fail(Error::WrongCode),
            Some(Mood::Declined) => self.fail(Error::PeerDeclined),
            Some(mood @ (Mood::Lonely | Mood::Errory)) => self.fail(Error::PeerClosed { mood }),
            // A peer closes happily only after our data reached it; its own
            // data is then in the log, so there is nothing to do but fetch it.
            Some(Mood::Happy) | None => {}
        }
    }

    fn announce(&mut self) {
        if !self.announced.code {
            if let Some(code) = &self.code {
                if self.started_at.is_some() {
                    self.announced.code = true;
                    self.events.push_back(Event::Code(code.clone()));
                }
            }
        }
        if !self.announced.verifier {
            if let Some(keys) = &self.keys {
                self.announced.verifier = true;
                self.events.push_back(Event::Verifier(keys.verifier().clone()));
            }
        }
        if !self.announced.outcome {
            let event = match (&self.failure, &self.peer_plain) {
                (Some(error), _) => Some(Event::Failed(error.clone())),
                (None, Some(plain)) if self.succeeded => Some(Event::Data(plain.clone())),
                _ => None,
            };
            if let Some(event) = event {
                self.announced.outcome = true;
                self.events.push_back(event);
            }
        }
    }
}

impl fmt::Debug for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange")
            .field("role", &self.role)
            .field("appid", &self.config.appid())
            .field("channel", &self.channel())
            .field("joined", &self.joined)
            .field("pake_posted", &self.pake_posted)
            .field("data_posted", &self.data_posted)
            .field("keys_agreed", &self.keys.is_some())
            .field("failure", &self.failure)
            .field("succeeded", &self.succeeded)
            .finish_non_exhaustive()
    }
}

/// The stable code and message of an error answer, or `http-<status>` when
/// the body is not an error object.
fn error_body(status: u16, body: &[u8]) -> (String, String) {
    parse_error_body(body).unwrap_or_else(|| (format!("http-{status}"), "the error body is not JSON".into()))
}
