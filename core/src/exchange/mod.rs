//! The client state machine shared by initiator and receiver.
//!
//! It keeps only *facts* ([`facts`]: what it was given, what the server
//! acknowledged, what the peer sent) and derives everything else from them
//! and its seed: the PAKE state and keys ([`keys`]), the next request
//! ([`requests`]), the events ([`events`]). That is what makes it safe to
//! serialize at any moment ([`saved`]) and to feed it duplicated or
//! reordered input.
//!
//! This file is the machine's face: constructors, inputs, outputs, queries.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use crate::code::{ChannelId, Code};
use crate::config::Config;
use crate::crypto::{Pake, Seed, SessionKeys};
use crate::error::TransportError;
use crate::time::Timestamp;
use crate::{Error, Role};

mod events;
mod facts;
mod keys;
mod requests;
mod saved;

use events::Announced;
pub use events::{Event, Progress};
use facts::Facts;
use requests::{InFlight, Kind, Refusals};
pub use requests::{RequestId, Transmit};

/// Largest data one side may send.
pub const MAX_DATA_LEN: usize = 32 * 1024;
/// Largest serialized exchange [`Exchange::from_serialized`] reads.
pub const MAX_SERIALIZED_LEN: usize = 256 * 1024;
/// How long an exchange with an outcome keeps trying to close its channel
/// before [`Exchange::is_finished`] gives up (the server's expiry then
/// frees it).
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// One side of a transcribe-mode exchange, as a sans-IO state machine.
///
/// - Inputs: [`start`](Self::start), [`handle_response`](Self::handle_response),
///   [`handle_transport_error`](Self::handle_transport_error),
///   [`handle_timeout`](Self::handle_timeout); commands
///   [`confirm_verifier`](Self::confirm_verifier), [`cancel`](Self::cancel).
/// - Outputs: [`poll_transmit`](Self::poll_transmit) (requests),
///   [`poll_event`](Self::poll_event) (news: the code, the verifier, the
///   outcome), [`poll_timeout`](Self::poll_timeout) (the next wake-up).
/// - Queries: [`is_finished`](Self::is_finished),
///   [`awaits_confirmation`](Self::awaits_confirmation), [`role`](Self::role), ...
///
/// See the crate docs for the driving loop. `Debug` shows progress, never
/// the code, keys or data.
pub struct Exchange {
    facts: Facts,
    /// Our side id, derived from the exchange's secret seed.
    side: String,
    now: Timestamp,
    // Derived from the facts, rebuilt after a restore.
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
    /// When the outcome became known here (the close grace counts from it).
    ended_at: Option<Timestamp>,
    close_attempts: u32,
    last_problem: TransportError,
    /// When requests began failing, if the server has not answered since.
    trouble_since: Option<Timestamp>,
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
        Ok(Exchange::new(Role::Initiator, config, data, seed, Some(code))?.create_channel_if_missing())
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
        self.facts.create_channel = self.facts.code.is_some();
        self
    }

    fn new(role: Role, config: Config, data: Vec<u8>, seed: [u8; 32], code: Option<Code>) -> Result<Exchange, Error> {
        if data.len() > MAX_DATA_LEN {
            return Err(Error::DataTooLarge { len: data.len(), max: MAX_DATA_LEN });
        }
        config.validate()?;
        Ok(Exchange::from_facts(Facts::new(role, config, data, Seed::new(seed), code)))
    }

    /// An exchange that knows `facts` and has sent nothing yet; what the facts
    /// imply (keys, plaintext, the outcome) is derived at once.
    fn from_facts(facts: Facts) -> Exchange {
        let mut exchange = Exchange {
            side: facts.seed.side(),
            facts,
            now: Timestamp::EPOCH,
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
            ended_at: None,
            close_attempts: 0,
            last_problem: TransportError::from_message("no request was answered"),
            trouble_since: None,
            refusals: Refusals::default(),
            events: VecDeque::new(),
            announced: Announced::default(),
        };
        exchange.progress();
        // A restored outcome's close grace counts from the first clock given.
        exchange.ended_at = None;
        exchange
    }

    // ----- inputs -----

    /// Starts the exchange; the schedule and timeout count from the first
    /// start. Later calls (also on a restored exchange) change nothing.
    pub fn start(&mut self, now: Timestamp) {
        if self.facts.started_at.is_none() {
            self.facts.started_at = Some(now);
        }
        self.advance(now);
        self.progress();
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
    /// DNS failure, ...): it is retried per the schedule, unless the cause
    /// is [permanent](TransportError::permanent), which fails the exchange
    /// at once. The cause is kept for [`Error::ServerUnreachable`] if the
    /// server is never reached.
    pub fn handle_transport_error(&mut self, now: Timestamp, id: RequestId, cause: TransportError) {
        self.set_clock(now);
        if let Some(request) = self.take_in_flight(id) {
            *self.refusals.slot(request.kind) = None;
            if cause.is_permanent() {
                self.fail(Error::ServerUnreachable { cause });
            } else {
                self.retry_later(request.kind, cause);
            }
        }
        self.advance(now);
        self.progress();
    }

    /// Records the person's verdict on the verifier (with
    /// [`Config::with_verifier_confirmation`]). `accept = false` closes the
    /// channel and both sides fail with a "declined" error. Returns false,
    /// changing nothing, if the verifier is not known yet or a verdict was
    /// already given.
    pub fn confirm_verifier(&mut self, now: Timestamp, accept: bool) -> bool {
        self.advance(now);
        if self.keys.is_none() || self.facts.decision.is_some() || self.is_terminal() {
            return false;
        }
        self.facts.decision = Some(accept);
        self.control_at = self.now;
        self.progress();
        true
    }

    /// Gives up at once (the application stopped the exchange): fails with
    /// [`Error::Cancelled`] and closes the channel, so the peer fails with
    /// [`Error::PeerClosed`] instead of waiting for its timeout. No effect
    /// once there is an outcome.
    pub fn cancel(&mut self, now: Timestamp) {
        self.advance(now);
        self.fail(Error::Cancelled);
    }

    // ----- outputs -----

    /// The next request to send, if one is due at `now`. Call until `None`.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<Transmit> {
        self.advance(now);
        self.facts.started_at?;
        if self.is_finished() {
            // Given up (or done): a late answer must not start a new round.
            return None;
        }
        if !self.control_busy() && self.now >= self.control_at {
            if let Some(kind) = self.next_control() {
                return Some(self.send(kind));
            }
        }
        if self.wants_fetch() && self.now >= self.fetch_at {
            return Some(self.send(Kind::Fetch));
        }
        None
    }

    /// The next piece of news for the application: the code, the verifier,
    /// the outcome, each once.
    ///
    /// A restored exchange announces again what it knows.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) (and then
    /// [`poll_transmit`](Self::poll_transmit)) if nothing else happens first.
    /// `None`: nothing to wait for (not started, or finished).
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let started = self.facts.started_at?;
        if self.is_finished() {
            return None;
        }
        let mut wake = self.in_flight.iter().map(|r| r.deadline).min();
        let mut consider = |t: Timestamp| wake = Some(wake.map_or(t, |w| w.min(t)));
        if self.is_terminal() {
            consider(self.ended_at.unwrap_or(self.now) + CLOSE_GRACE);
        } else {
            consider(self.facts.config.give_up_at(started, self.facts.reached_server));
        }
        if !self.control_busy() && self.next_control().is_some() {
            consider(self.control_at.max(self.now));
        }
        if self.wants_fetch() {
            consider(self.fetch_at.max(self.now));
        }
        wake
    }

    // ----- queries -----

    /// Whether [`start`](Self::start) was ever called (before a restore too).
    pub fn is_started(&self) -> bool {
        self.facts.started_at.is_some()
    }

    /// Whether the server ever answered this exchange (before a restore
    /// too): if not, nothing was made or stored there.
    pub fn server_reached(&self) -> bool {
        self.facts.reached_server
    }

    /// This side's role.
    pub fn role(&self) -> Role {
        self.facts.role
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.facts.config
    }

    /// Gives the exchange another hard timeout, still counted from the first
    /// start: a restored invitation saved with a short one can be given
    /// days. Once there is an outcome it changes nothing. A timeout already
    /// past ends the exchange at the next [`handle_timeout`](Self::handle_timeout).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] over [`MAX_TIMEOUT`](crate::MAX_TIMEOUT).
    ///
    /// ```
    /// use std::time::Duration;
    /// use wormhole_sync_core::{Config, Exchange, Timestamp};
    ///
    /// let config = Config::new("example.com/app")?.with_timeout(Duration::from_secs(60));
    /// let mut initiator = Exchange::initiator(config, b"data".to_vec(), [7; 32])?;
    /// initiator.start(Timestamp::from_millis(0));
    /// initiator.set_timeout(Duration::from_secs(3 * 24 * 3600))?;
    /// assert_eq!(initiator.deadline(), Some(Timestamp::from_millis(3 * 24 * 3600 * 1000)));
    /// # Ok::<(), wormhole_sync_core::Error>(())
    /// ```
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), Error> {
        self.facts.config = crate::config::with_valid_timeout(&self.facts.config, timeout)?;
        Ok(())
    }

    /// Why the server has not answered lately: `Some` from the first failed
    /// request (refused connection, no answer in time, the server's
    /// `429`/`5xx`) until the server answers again; `None` once there is an
    /// outcome. The exchange keeps retrying meanwhile, until its timeout (or
    /// [connect timeout](crate::Config::with_connect_timeout)).
    ///
    /// ```
    /// use wormhole_sync_core::{Config, Exchange, Timestamp, TransportError};
    ///
    /// let mut initiator = Exchange::initiator(Config::new("example.com/app")?, b"data".to_vec(), [7; 32])?;
    /// let start = Timestamp::from_millis(0);
    /// initiator.start(start);
    /// let allocate = initiator.poll_transmit(start).expect("an allocate");
    /// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    /// initiator.handle_transport_error(Timestamp::from_millis(5), allocate.id(), TransportError::new(refused));
    /// let trouble = initiator.server_trouble().expect("a failure");
    /// assert_eq!((trouble.since, trouble.server_reached), (Timestamp::from_millis(5), false));
    /// # Ok::<(), wormhole_sync_core::Error>(())
    /// ```
    pub fn server_trouble(&self) -> Option<crate::ServerTrouble> {
        crate::ServerTrouble::report(
            self.trouble_since,
            self.is_terminal(),
            &self.last_problem,
            self.facts.reached_server,
        )
    }

    /// When the hard timeout fires (the first start plus the timeout), once started.
    pub fn deadline(&self) -> Option<Timestamp> {
        self.facts.started_at.map(|s| s + self.facts.config.timeout())
    }

    /// Whether the exchange waits for [`confirm_verifier`](Self::confirm_verifier):
    /// the verifier is known, confirmation is configured, and no verdict was given.
    pub fn awaits_confirmation(&self) -> bool {
        self.facts.config.confirms_verifier()
            && self.keys.is_some()
            && self.facts.decision.is_none()
            && !self.is_terminal()
    }

    /// Whether the answer to request `id` is still wanted: it was handed
    /// out by [`poll_transmit`](Self::poll_transmit) and is neither answered
    /// nor given up (past its timeout, or dropped by a restore). A driver may
    /// drop the connection of a request that is not.
    ///
    /// ```
    /// use wormhole_sync_core::{Config, Exchange, Timestamp};
    ///
    /// let mut exchange = Exchange::initiator(Config::new("app")?, b"hi".to_vec(), [1; 32])?;
    /// let now = Timestamp::from_millis(1_000);
    /// exchange.start(now);
    /// let allocate = exchange.poll_transmit(now).expect("an allocate");
    /// assert!(exchange.awaits_answer(allocate.id()));
    /// exchange.handle_response(now, allocate.id(), 200, br#"{"channel":4}"#);
    /// assert!(!exchange.awaits_answer(allocate.id()));
    /// # Ok::<(), wormhole_sync_core::Error>(())
    /// ```
    pub fn awaits_answer(&self, id: RequestId) -> bool {
        self.is_in_flight(id)
    }

    /// Whether the outcome is known (it was, or is about to be, announced
    /// as [`Event::Outcome`]); the channel may still be closing.
    pub fn has_outcome(&self) -> bool {
        self.is_terminal()
    }

    /// Whether nothing remains to do: there is an outcome and the channel
    /// has been closed, or closing it was given up (after a few attempts,
    /// or [`CLOSE_GRACE`] after the outcome).
    pub fn is_finished(&self) -> bool {
        if !self.is_terminal() {
            return false;
        }
        let closed = self.next_control().is_none() && self.in_flight.is_empty();
        closed || self.ended_at.is_some_and(|ended| self.now >= ended + CLOSE_GRACE)
    }

    // ----- shared internals -----

    fn is_terminal(&self) -> bool {
        self.facts.failure.is_some() || self.succeeded
    }

    fn channel(&self) -> Option<ChannelId> {
        self.facts.code.as_ref().map(Code::channel)
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
            self.trouble_since = self.trouble_since.map(|t| t.saturating_sub(back));
            self.ended_at = self.ended_at.map(|t| t.saturating_sub(back));
            for request in &mut self.in_flight {
                request.sent_at = request.sent_at.saturating_sub(back);
                request.deadline = request.deadline.saturating_sub(back);
            }
        }
        self.now = now;
        if self.facts.started_at.is_some_and(|started| started > now) {
            self.facts.started_at = Some(now);
        }
    }

    fn advance(&mut self, now: Timestamp) {
        self.set_clock(now);
        let Some(started) = self.facts.started_at else { return };
        self.forget_lost_requests();
        if !self.is_terminal() && self.now >= self.facts.config.give_up_at(started, self.facts.reached_server) {
            let error = self.timeout_error();
            self.fail(error);
        }
        if self.is_terminal() && self.ended_at.is_none() {
            self.ended_at = Some(self.now);
        }
    }

    fn fail(&mut self, error: Error) {
        if self.is_terminal() {
            return;
        }
        self.facts.failure = Some(error);
        self.end();
        self.announce();
    }

    /// The outcome is known: close the channel now, and stop waiting for
    /// long-polls, whose answers no longer matter.
    fn end(&mut self) {
        self.control_at = self.now;
        self.ended_at = Some(self.now);
        self.forget_long_polls();
    }

    /// Derives what follows from the facts, then announces it.
    fn progress(&mut self) {
        if !self.is_terminal() {
            self.derive();
        }
        self.announce();
    }
}

impl fmt::Debug for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange")
            .field("role", &self.facts.role)
            .field("appid", &self.facts.config.appid())
            .field("channel", &self.channel())
            .field("joined", &self.facts.joined)
            .field("pake_posted", &self.facts.pake_posted)
            .field("data_posted", &self.facts.data_posted)
            .field("keys_agreed", &self.keys.is_some())
            .field("failure", &self.facts.failure)
            .field("succeeded", &self.succeeded)
            .finish_non_exhaustive()
    }
}
