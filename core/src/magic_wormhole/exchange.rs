//! One side of an exchange with a magic-wormhole peer, as a sans-IO state
//! machine over a WebSocket to a mailbox server.
//!
//! Like [`Exchange`](crate::Exchange), it keeps only facts ([`Facts`]) and
//! derives the rest from them and its seed, so it can be serialized at any
//! point and restored in another process; what belongs to one connection
//! (which frames were sent on it) is not kept, since a new connection
//! sends them again.

use std::collections::VecDeque;
use std::fmt;

use serde_json::Value;

use super::crypto::{self, phase_key, verifier, Pake, SharedKey};
use super::facts::{Facts, MAX_PEER_DATA, MAX_PEER_PAKE, MAX_PEER_VERSION};
use crate::code::{ChannelId, Code};
use crate::config::Config;
use crate::crypto::{Seed, Verifier};
use crate::error::{ServerErrorCode, TransportError};
use crate::exchange::{Event, CLOSE_GRACE};
use crate::mailbox_wire::{ClientMessage, FrameError, ServerMessage};
use crate::time::Timestamp;
use crate::wire::{ErrorCode, Mood};
use crate::{saved_fields, Error, Role, MAX_DATA_LEN};

/// The phases this flavour adds, in order: SPAKE2, key confirmation, then
/// the one application message (magic-wormhole numbers them from 0).
const PHASES: [&str; 3] = ["pake", "version", "0"];
const PAKE: usize = 0;
const VERSION: usize = 1;
const DATA: usize = 2;
/// What our `version` message says: no application versions, no abilities
/// (no file transfer, no dilation).
const OUR_VERSION: &[u8] = br#"{"app_versions":{}}"#;
/// The saved form's format name and version.
const FORMAT: &str = "wormhole-sync/magic-wormhole-exchange";
const FORMAT_VERSION: u64 = 1;
/// Largest serialized state [`MailboxExchange::from_serialized`] reads.
pub const MAX_SERIALIZED_LEN: usize = 4 * MAX_DATA_LEN + MAX_PEER_VERSION;

/// What the machine asks its transport to do, from
/// [`MailboxExchange::poll_transmit`].
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transmit {
    /// Open a WebSocket to the mailbox server at `url` (the configured
    /// [`rendezvous`](Config::rendezvous), else
    /// [`PUBLIC_MAILBOX_URL`](super::PUBLIC_MAILBOX_URL)), giving up after
    /// `timeout`; then report
    /// [`handle_connected`](MailboxExchange::handle_connected) or
    /// [`handle_disconnected`](MailboxExchange::handle_disconnected).
    Connect {
        /// The server's WebSocket URL.
        url: String,
        /// How long the connection (TCP, TLS and the WebSocket handshake)
        /// may take: the configured request timeout.
        timeout: std::time::Duration,
    },
    /// Send this text frame on the open WebSocket.
    Frame(String),
    /// Close the WebSocket (nothing more to say, or the server stopped
    /// answering); then report `handle_disconnected`.
    Disconnect,
}

impl fmt::Debug for Transmit {
    // Frames carry ciphertext and the nameplate only, but stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transmit::Connect { url, timeout } => write!(f, "Connect({url}, {timeout:?})"),
            Transmit::Frame(frame) => write!(f, "Frame(<{} bytes>)", frame.len()),
            Transmit::Disconnect => f.write_str("Disconnect"),
        }
    }
}

/// The WebSocket, as the machine knows it. Not saved: a restored machine
/// connects again.
#[derive(Debug)]
enum Link {
    Down {
        retry_at: Timestamp,
    },
    Connecting,
    Up(Connection),
    /// Asked the transport to close it.
    Closing,
}

/// What was sent on the current connection (the server forgets a
/// connection's bind, claim and open when it drops).
#[derive(Debug)]
struct Connection {
    bound: bool,
    allocate_sent: bool,
    claim_sent: bool,
    release_sent: bool,
    open_sent: bool,
    added: [bool; 3],
    close_sent: bool,
    last_heard: Timestamp,
    ping_sent_at: Option<Timestamp>,
    pings: u64,
    /// The server asked to retry later: this connection is given up, and
    /// the next one sends again.
    hang_up: bool,
}

impl Connection {
    fn new(now: Timestamp) -> Connection {
        Connection {
            bound: false,
            allocate_sent: false,
            claim_sent: false,
            release_sent: false,
            open_sent: false,
            added: [false; 3],
            close_sent: false,
            last_heard: now,
            ping_sent_at: None,
            pings: 0,
            hang_up: false,
        }
    }
}

/// One side of an exchange with a magic-wormhole client (the `wormhole`
/// command, or an application on magic-wormhole's library), over a
/// WebSocket to a mailbox server.
///
/// It runs magic-wormhole's client protocol: bind, allocate and claim a
/// nameplate (or claim the typed one), open the mailbox, add a `pake`
/// message (SPAKE2 in its symmetric mode), then a `version` message sealed
/// with the agreed key, release the nameplate once the peer is heard, and
/// send the one application message (phase `0`) only after the peer's
/// `version` opened, so nothing is sealed for someone with a wrong code.
/// It ends when the peer's message opened and the server stored ours, and
/// closes the mailbox with a mood (`scary` after a wrong code).
///
/// - Inputs: [`start`](Self::start), [`handle_connected`](Self::handle_connected),
///   [`handle_frame`](Self::handle_frame),
///   [`handle_disconnected`](Self::handle_disconnected),
///   [`handle_timeout`](Self::handle_timeout), [`cancel`](Self::cancel).
/// - Outputs: [`poll_transmit`](Self::poll_transmit) (connect, frames,
///   disconnect), [`poll_event`](Self::poll_event) (the code, the
///   verifier, the outcome), [`poll_timeout`](Self::poll_timeout).
///
/// A dropped connection is opened again after the schedule's interval; the
/// new connection claims the nameplate again (until released), opens the
/// mailbox, which replays its messages, and adds again what the server had
/// not sent back, with the same bytes, so nothing is lost or repeated.
///
/// ```
/// use wormhole_sync_core::magic_wormhole::{MailboxExchange, Transmit};
/// use wormhole_sync_core::{Config, Timestamp};
///
/// let config = Config::new("lothar.com/wormhole/text-or-file-xfer")?;
/// let mut sender = MailboxExchange::initiator(config, b"hello".to_vec(), [1; 32])?;
/// let now = Timestamp::from_millis(1_000);
/// sender.start(now);
/// let Some(Transmit::Connect { url, .. }) = sender.poll_transmit(now) else { panic!("a connect") };
/// assert_eq!(url, wormhole_sync_core::magic_wormhole::PUBLIC_MAILBOX_URL);
/// sender.handle_connected(now);
/// let Some(Transmit::Frame(bind)) = sender.poll_transmit(now) else { panic!("a bind") };
/// assert!(bind.contains(r#""type":"bind""#));
/// # Ok::<(), wormhole_sync_core::Error>(())
/// ```
pub struct MailboxExchange {
    facts: Facts,
    side: String,
    now: Timestamp,
    link: Link,
    // Derived from the facts, again after a restore.
    pake: Option<Pake>,
    own_pake: Vec<u8>,
    key: Option<SharedKey>,
    confirmed: bool,
    peer_plain: Option<Vec<u8>>,
    ended_at: Option<Timestamp>,
    last_problem: TransportError,
    /// When connecting began failing, if no connection opened since.
    trouble_since: Option<Timestamp>,
    /// The server's last "retry later" refusal, for the timeout's error.
    busy: Option<(ServerErrorCode, String)>,
    events: VecDeque<Event>,
    announced: [bool; 3],
}

impl MailboxExchange {
    /// The side that allocates a nameplate and shows the code.
    ///
    /// `seed` is 32 bytes from a cryptographically secure generator; every
    /// secret and every random choice of the exchange derives from it.
    pub fn initiator(config: Config, data: Vec<u8>, seed: [u8; 32]) -> Result<MailboxExchange, Error> {
        MailboxExchange::new(Role::Initiator, config, data, seed, None)
    }

    /// An initiator with a code the application chose (the other side types
    /// the same code, as with `wormhole send --code`): it claims that
    /// nameplate instead of allocating one.
    pub fn initiator_with_code(
        config: Config,
        code: Code,
        data: Vec<u8>,
        seed: [u8; 32],
    ) -> Result<MailboxExchange, Error> {
        MailboxExchange::new(Role::Initiator, config, data, seed, Some(code))
    }

    /// The side that types the code the initiator showed. (A code is read
    /// as this crate reads codes: letter case and separators are
    /// normalized, which matches the codes magic-wormhole generates.)
    pub fn receiver(config: Config, code: Code, data: Vec<u8>, seed: [u8; 32]) -> Result<MailboxExchange, Error> {
        MailboxExchange::new(Role::Receiver, config, data, seed, Some(code))
    }

    /// Makes a receiver answer as `wormhole receive` does, instead of
    /// sending its `data`: an ack ([`text::ack`](super::text::ack)) to a
    /// text offer, and to anything else (a file or directory offer, which
    /// `wormhole send FILE` announces with its transit hints) a refusal the
    /// `wormhole` command shows ("remote error, transfer abandoned:
    /// wormhole-sync receives text messages only..."). The answer goes
    /// once the sender's message opened. Initiators are refused.
    ///
    /// ```
    /// use wormhole_sync_core::magic_wormhole::{MailboxExchange, TEXT_APPID};
    /// use wormhole_sync_core::Config;
    ///
    /// let receiver = MailboxExchange::receiver(Config::new(TEXT_APPID)?, "4-purple-sausages".parse()?, vec![], [3; 32])?
    ///     .answering_text_offers()?;
    /// # Ok::<(), wormhole_sync_core::Error>(())
    /// ```
    pub fn answering_text_offers(mut self) -> Result<MailboxExchange, Error> {
        if self.facts.role != Role::Receiver || self.facts.started_at.is_some() {
            return Err(Error::InvalidConfig("only a receiver not started yet answers text offers".into()));
        }
        self.facts.answers_offer = true;
        Ok(self)
    }

    fn new(
        role: Role,
        config: Config,
        data: Vec<u8>,
        seed: [u8; 32],
        code: Option<Code>,
    ) -> Result<MailboxExchange, Error> {
        if data.len() > MAX_DATA_LEN {
            return Err(Error::DataTooLarge { len: data.len(), max: MAX_DATA_LEN });
        }
        Ok(MailboxExchange::from_facts(Facts::new(role, config, data, Seed::new(seed), code)))
    }

    fn from_facts(facts: Facts) -> MailboxExchange {
        let mut exchange = MailboxExchange {
            side: facts.seed.side(),
            facts,
            now: Timestamp::EPOCH,
            link: Link::Down { retry_at: Timestamp::EPOCH },
            pake: None,
            own_pake: Vec::new(),
            key: None,
            confirmed: false,
            peer_plain: None,
            ended_at: None,
            last_problem: TransportError::from_message("the mailbox server was never reached"),
            trouble_since: None,
            busy: None,
            events: VecDeque::new(),
            announced: [false; 3],
        };
        exchange.progress();
        exchange.ended_at = None;
        exchange
    }

    // ----- inputs -----

    /// Starts the exchange; the schedule and timeout count from the first
    /// start. Later calls (also on a restored exchange) change nothing.
    pub fn start(&mut self, now: Timestamp) {
        self.facts.started_at.get_or_insert(now);
        self.advance(now);
        self.progress();
    }

    /// Time has passed: fires the hard timeout, a reconnect or a ping.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.advance(now);
    }

    /// The WebSocket asked for with [`Transmit::Connect`] is open.
    pub fn handle_connected(&mut self, now: Timestamp) {
        self.advance(now);
        if matches!(self.link, Link::Connecting) {
            self.link = Link::Up(Connection::new(now));
            self.facts.reached_server = true;
            self.trouble_since = None;
        }
    }

    /// The WebSocket closed, or could not be opened: connects again after
    /// the schedule's interval, unless `cause` is
    /// [permanent](TransportError::is_permanent) (an untrusted certificate,
    /// say), which fails the exchange at once.
    pub fn handle_disconnected(&mut self, now: Timestamp, cause: TransportError) {
        self.advance(now);
        if matches!(self.link, Link::Down { .. }) {
            return;
        }
        let started = self.facts.started_at.unwrap_or(now);
        let interval = self.facts.config.schedule().interval_at(now.saturating_since(started));
        self.link = Link::Down { retry_at: now + interval };
        if cause.is_permanent() && !self.is_terminal() {
            self.fail(Error::ServerUnreachable { cause: cause.clone() });
        }
        self.last_problem = cause;
        self.trouble_since.get_or_insert(now);
        self.progress();
    }

    /// A text (or binary) frame arrived on the open WebSocket. Frames of
    /// types this client does not know are ignored; a malformed one fails
    /// the exchange.
    pub fn handle_frame(&mut self, now: Timestamp, frame: &[u8]) {
        self.advance(now);
        let Link::Up(connection) = &mut self.link else { return };
        connection.last_heard = now;
        connection.ping_sent_at = None;
        match ServerMessage::parse(frame) {
            Ok(message) => self.on_message(message),
            Err(FrameError::UnknownType) => {}
            Err(e) => self.fail(Error::ServerProtocol { detail: format!("a malformed frame: {e}") }),
        }
        self.progress();
    }

    /// Gives up at once (the application stopped): fails with
    /// [`Error::Cancelled`] and closes the mailbox. No effect once there is
    /// an outcome.
    pub fn cancel(&mut self, now: Timestamp) {
        self.advance(now);
        self.fail(Error::Cancelled);
    }

    // ----- outputs -----

    /// What to do next, if anything is due at `now`. Call until `None`.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<Transmit> {
        self.advance(now);
        self.facts.started_at?;
        let finished = self.is_finished();
        match &mut self.link {
            Link::Down { retry_at } if !finished && *retry_at <= self.now => {
                self.link = Link::Connecting;
                let config = &self.facts.config;
                let url = config.rendezvous().unwrap_or(super::PUBLIC_MAILBOX_URL).to_string();
                Some(Transmit::Connect { url, timeout: config.request_timeout() })
            }
            Link::Up(_) if finished => {
                self.link = Link::Closing;
                Some(Transmit::Disconnect)
            }
            Link::Up(connection) => {
                if connection.hang_up {
                    self.link = Link::Closing;
                    return Some(Transmit::Disconnect);
                }
                if connection.ping_sent_at.is_some_and(|sent| sent + self.facts.config.request_timeout() <= now) {
                    self.last_problem = TransportError::from_message("the mailbox server stopped answering");
                    self.link = Link::Closing;
                    return Some(Transmit::Disconnect);
                }
                self.next_frame().map(|message| Transmit::Frame(message.to_json(None)))
            }
            _ => None,
        }
    }

    /// The next piece of news: the code, the verifier (once the peer
    /// proved it used the same code), the outcome, each once. A restored
    /// exchange announces again what it knows.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) if nothing
    /// else happens first; `None` when not started or finished.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let started = self.facts.started_at?;
        if self.is_finished() {
            return None;
        }
        let mut wake = if self.is_terminal() {
            self.ended_at.unwrap_or(self.now) + CLOSE_GRACE
        } else {
            self.facts.config.give_up_at(started, self.facts.reached_server)
        };
        match &self.link {
            Link::Down { retry_at } => wake = wake.min(*retry_at),
            Link::Up(connection) => {
                let ping = match connection.ping_sent_at {
                    Some(sent) => sent + self.facts.config.request_timeout(),
                    None => connection.last_heard + self.facts.config.long_poll(),
                };
                wake = wake.min(ping);
            }
            Link::Connecting | Link::Closing => {}
        }
        Some(wake.max(self.now))
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
    /// start (see [`Exchange::set_timeout`](crate::Exchange::set_timeout)).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] over [`MAX_TIMEOUT`](crate::MAX_TIMEOUT).
    pub fn set_timeout(&mut self, timeout: std::time::Duration) -> Result<(), Error> {
        self.facts.config = crate::config::with_valid_timeout(&self.facts.config, timeout)?;
        Ok(())
    }

    /// Why the mailbox server has not been reachable lately: `Some` from
    /// the first failed connection (or one that dropped) until a connection
    /// opens again; `None` once there is an outcome (see
    /// [`Exchange::server_trouble`](crate::Exchange::server_trouble)).
    pub fn server_trouble(&self) -> Option<crate::ServerTrouble> {
        crate::ServerTrouble::report(
            self.trouble_since,
            self.is_terminal(),
            &self.last_problem,
            self.facts.reached_server,
        )
    }

    /// Whether the outcome is known (the mailbox may still be closing).
    pub fn has_outcome(&self) -> bool {
        self.is_terminal()
    }

    /// Whether nothing remains to do: there is an outcome and the mailbox
    /// is closed (or there was none to close, or closing was given up
    /// [`CLOSE_GRACE`] after the outcome).
    pub fn is_finished(&self) -> bool {
        if !self.is_terminal() {
            return false;
        }
        let closed = self.facts.closed || self.facts.mailbox.is_none();
        closed || self.ended_at.is_some_and(|ended| self.now >= ended + CLOSE_GRACE)
    }

    /// The whole state as JSON of printable ASCII, restorable with
    /// [`from_serialized`](Self::from_serialized) at any point.
    ///
    /// **The result contains secrets** (our seed, the code, our data and
    /// the peer's sealed messages): store it as carefully as the data.
    pub fn serialize(&self) -> Vec<u8> {
        saved_fields::write_state(FORMAT, FORMAT_VERSION, &self.facts)
    }

    /// Restores what [`serialize`](Self::serialize) wrote: it connects
    /// again at once, and the schedule and timeout continue from the first
    /// start. A corrupt, foreign or impossible state gives
    /// [`Error::BadSerializedState`], whose text never repeats a value from
    /// the blob.
    ///
    /// ```
    /// use wormhole_sync_core::magic_wormhole::MailboxExchange;
    /// use wormhole_sync_core::{Config, Timestamp};
    ///
    /// let mut before = MailboxExchange::initiator(Config::new("app")?, b"hi".to_vec(), [7; 32])?;
    /// before.start(Timestamp::from_millis(1_000));
    /// let restored = MailboxExchange::from_serialized(&before.serialize())?;
    /// assert!(restored.is_started());
    /// assert!(MailboxExchange::from_serialized(br#"{"format":"other"}"#).is_err());
    /// # Ok::<(), wormhole_sync_core::Error>(())
    /// ```
    pub fn from_serialized(bytes: &[u8]) -> Result<MailboxExchange, Error> {
        let versions = FORMAT_VERSION..=FORMAT_VERSION;
        let (_, fields) = saved_fields::read_state(bytes, MAX_SERIALIZED_LEN, FORMAT, versions, "exchange")?;
        let facts: Facts = saved_fields::read_facts(fields)?;
        facts.validate()?;
        let exchange = MailboxExchange::from_facts(facts);
        if exchange.facts.closed && !exchange.is_terminal() {
            let why = "the mailbox is closed but the exchange has no outcome";
            return Err(Error::BadSerializedState(why.into()));
        }
        Ok(exchange)
    }

    // ----- internals -----

    fn is_terminal(&self) -> bool {
        self.facts.failure.is_some() || self.succeeded()
    }

    fn succeeded(&self) -> bool {
        self.peer_plain.is_some() && self.facts.echoed[DATA]
    }

    fn nameplate(&self) -> Option<ChannelId> {
        self.facts.code.as_ref().map(Code::channel)
    }

    fn advance(&mut self, now: Timestamp) {
        // Time running backwards (a clock stepped back, or a restore on a
        // machine whose clock is behind) moves pending wake-ups back too.
        if now < self.now {
            let back = self.now.saturating_since(now);
            self.ended_at = self.ended_at.map(|t| t.saturating_sub(back));
            self.trouble_since = self.trouble_since.map(|t| t.saturating_sub(back));
            match &mut self.link {
                Link::Down { retry_at } => *retry_at = retry_at.saturating_sub(back),
                Link::Up(connection) => {
                    connection.last_heard = connection.last_heard.saturating_sub(back);
                    connection.ping_sent_at = connection.ping_sent_at.map(|t| t.saturating_sub(back));
                }
                Link::Connecting | Link::Closing => {}
            }
        }
        self.now = now;
        let Some(started) = self.facts.started_at else { return };
        if started > now {
            self.facts.started_at = Some(now);
        }
        if !self.is_terminal() && now >= self.facts.config.give_up_at(started, self.facts.reached_server) {
            let error = match (&self.busy, self.facts.reached_server) {
                // Someone used the code, and we sealed our version message under
                // a key it can test a guess against, but it never confirmed the key.
                _ if self.facts.peer_pake.is_some() && !self.confirmed => Error::PeerVanished,
                (Some((code, message)), _) => Error::ServerBusy { code: code.clone(), message: message.clone() },
                (None, true) => Error::Timeout,
                (None, false) => Error::ServerUnreachable { cause: self.last_problem.clone() },
            };
            self.fail(error);
        }
        if self.is_terminal() && self.ended_at.is_none() {
            self.ended_at = Some(now);
        }
    }

    fn fail(&mut self, error: Error) {
        if self.is_terminal() {
            return;
        }
        self.facts.failure = Some(error);
        self.ended_at = Some(self.now);
        self.announce();
    }

    /// Derives what the facts imply, then announces it.
    fn progress(&mut self) {
        // Also after the outcome: the key still seals our `version` for a
        // peer that has not seen it (after a wrong code, say).
        if let Err(error) = self.derive() {
            self.fail(error);
        }
        if self.is_terminal() && self.ended_at.is_none() {
            self.ended_at = Some(self.now);
        }
        self.announce();
    }

    fn derive(&mut self) -> Result<(), Error> {
        let appid = self.facts.config.appid().to_string();
        if let (None, None, Some(code)) = (&self.key, &self.pake, &self.facts.code) {
            let scalar_seed = self.facts.seed.pake_key(&appid, code);
            let (pake, body) = Pake::start(&code.to_string(), &appid, *scalar_seed);
            self.pake = Some(pake);
            self.own_pake = body;
        }
        if let (Some(peer_pake), Some(_)) = (&self.facts.peer_pake, &self.pake) {
            let pake = self.pake.take().expect("checked above");
            let key = pake.finish(peer_pake).map_err(|e| Error::PeerProtocol { detail: e.to_string() })?;
            self.key = Some(key);
        }
        let (Some(key), Some(peer_side)) = (&self.key, &self.facts.peer_side) else { return Ok(()) };
        if let (false, Some(sealed)) = (self.confirmed, &self.facts.peer_version) {
            let plain = crypto::open(&phase_key(key, peer_side, "version"), sealed).map_err(|_| Error::WrongCode)?;
            if !serde_json::from_slice::<Value>(&plain).is_ok_and(|v| v.is_object()) {
                return Err(Error::PeerProtocol { detail: "its version message is not a JSON object".into() });
            }
            self.confirmed = true;
        }
        if let (true, None, Some(sealed)) = (self.confirmed, &self.peer_plain, &self.facts.peer_data) {
            let plain = crypto::open(&phase_key(key, peer_side, "0"), sealed)
                .map_err(|_| Error::PeerProtocol { detail: "its message did not open under the agreed key".into() })?;
            self.peer_plain = Some(plain);
        }
        Ok(())
    }

    fn announce(&mut self) {
        if !self.announced[0] && self.facts.started_at.is_some() {
            if let Some(code) = &self.facts.code {
                self.announced[0] = true;
                self.events.push_back(Event::Code(code.clone()));
            }
        }
        if !self.announced[1] && self.confirmed {
            if let Some(key) = &self.key {
                self.announced[1] = true;
                self.events.push_back(Event::Verifier(Verifier::new(verifier(key))));
            }
        }
        if !self.announced[2] {
            let outcome = match (&self.facts.failure, &self.peer_plain) {
                (Some(error), _) => Some(Err(error.clone())),
                (None, Some(plain)) if self.succeeded() => Some(Ok(plain.clone())),
                _ => None,
            };
            if let Some(outcome) = outcome {
                self.announced[2] = true;
                self.events.push_back(Event::Outcome(outcome));
            }
        }
    }

    /// The sealed body of our message in phase `index`, once it can be sent.
    fn body(&self, index: usize) -> Option<String> {
        match index {
            PAKE => (!self.own_pake.is_empty()).then(|| crypto::hex(&self.own_pake)),
            VERSION => {
                let key = phase_key(self.key.as_ref()?, &self.side, PHASES[VERSION]);
                Some(crypto::hex(&crypto::seal(&key, self.facts.seed.nonce(PHASES[VERSION]), OUR_VERSION)))
            }
            _ => {
                // Only to a peer that proved it has the same code.
                if !self.confirmed {
                    return None;
                }
                let key = phase_key(self.key.as_ref()?, &self.side, PHASES[DATA]);
                let answer;
                let data = if self.facts.answers_offer {
                    answer = super::text::answer(self.peer_plain.as_ref()?);
                    &answer
                } else {
                    &self.facts.data
                };
                Some(crypto::hex(&crypto::seal(&key, self.facts.seed.nonce(PHASES[DATA]), data)))
            }
        }
    }

    /// How this side closes the mailbox.
    fn mood(&self) -> Mood {
        match &self.facts.failure {
            None => Mood::Happy,
            Some(Error::WrongCode | Error::PeerVanished) => Mood::Scary,
            Some(Error::Timeout | Error::Cancelled) if self.facts.peer_side.is_none() => Mood::Lonely,
            Some(_) => Mood::Errory,
        }
    }

    /// The next frame due on the open connection, marked as sent.
    fn next_frame(&mut self) -> Option<ClientMessage> {
        let terminal = self.is_terminal();
        let nameplate = self.nameplate();
        let mailbox = self.facts.mailbox.clone();
        // Sealed only when due. After a failure, our `pake` and `version`
        // still go out (so a peer with a wrong code learns it at once),
        // never our data.
        let due = match &self.link {
            Link::Up(c) => [0, 1, 2].map(|i| !(self.facts.echoed[i] || c.added[i] || (terminal && i == DATA))),
            _ => [false; 3],
        };
        let bodies = [0, 1, 2].map(|i| if due[i] { self.body(i) } else { None });
        let mood = self.mood();
        let (released, heard) = (self.facts.released, self.facts.peer_side.is_some());
        let appid = self.facts.config.appid().to_string();
        let side = self.side.clone();
        let now = self.now;
        let long_poll = self.facts.config.long_poll();
        let Link::Up(c) = &mut self.link else { return None };
        if !c.bound {
            c.bound = true;
            return Some(ClientMessage::Bind { appid, side });
        }
        if terminal {
            if let (Some(mailbox), false) = (&mailbox, c.open_sent) {
                c.open_sent = true;
                return Some(ClientMessage::Open { mailbox: mailbox.clone() });
            }
            for (i, body) in bodies.iter().enumerate() {
                if let Some(body) = body {
                    c.added[i] = true;
                    return Some(ClientMessage::Add { phase: PHASES[i].to_string(), body: body.clone() });
                }
            }
            // Release the nameplate (if still held) and close the mailbox.
            if let (Some(_), Some(number), false, false) = (&mailbox, nameplate, released, c.release_sent) {
                c.release_sent = true;
                return Some(ClientMessage::Release { nameplate: Some(number.to_string()) });
            }
            if let (Some(mailbox), false) = (mailbox, c.close_sent) {
                c.close_sent = true;
                return Some(ClientMessage::Close { mailbox: Some(mailbox), mood: Some(mood.to_string()) });
            }
            return None;
        }
        if c.ping_sent_at.is_none() && now >= c.last_heard + long_poll {
            c.ping_sent_at = Some(now);
            c.pings += 1;
            return Some(ClientMessage::Ping { ping: c.pings });
        }
        match nameplate {
            None if !c.allocate_sent => {
                c.allocate_sent = true;
                return Some(ClientMessage::Allocate);
            }
            // Claimed again on each connection until the peer is heard; then
            // released instead (a claim after a release whose answer was lost
            // would make a new mailbox once both sides let the nameplate go).
            Some(number) if !heard && !c.claim_sent => {
                c.claim_sent = true;
                return Some(ClientMessage::Claim { nameplate: number.to_string() });
            }
            _ => {}
        }
        let mailbox = mailbox?;
        if !c.open_sent {
            c.open_sent = true;
            return Some(ClientMessage::Open { mailbox });
        }
        for (i, body) in bodies.into_iter().enumerate() {
            if let Some(body) = body {
                c.added[i] = true;
                return Some(ClientMessage::Add { phase: PHASES[i].to_string(), body });
            }
        }
        if heard && !released && !c.release_sent {
            c.release_sent = true;
            return Some(ClientMessage::Release { nameplate: nameplate.map(|n| n.to_string()) });
        }
        None
    }

    fn on_message(&mut self, message: ServerMessage) {
        match message {
            ServerMessage::Welcome { error: Some(error), .. } => self.fail(Error::ServerRejected {
                code: ServerErrorCode::from_name("welcome"),
                message: printable(&error),
            }),
            ServerMessage::Allocated { nameplate } if self.facts.code.is_none() => {
                match nameplate.parse().ok().and_then(ChannelId::new) {
                    Some(channel) if channel.to_string() == nameplate => {
                        self.facts.code = Some(self.facts.seed.code_for(channel, self.facts.config.code_words()));
                    }
                    _ => self.fail(Error::ServerProtocol {
                        detail: "it allocated a nameplate that is not a number from 1 to 999999999".into(),
                    }),
                }
            }
            ServerMessage::Claimed { mailbox } if self.facts.code.is_some() => match &self.facts.mailbox {
                None => self.facts.mailbox = Some(mailbox),
                Some(known) if *known == mailbox => {}
                Some(_) => {
                    self.fail(Error::ServerProtocol { detail: "the nameplate now leads to another mailbox".into() })
                }
            },
            ServerMessage::Released if self.facts.mailbox.is_some() => self.facts.released = true,
            ServerMessage::Closed if self.facts.mailbox.is_some() && self.is_terminal() => self.facts.closed = true,
            ServerMessage::Message { side, phase, body, .. } if self.facts.mailbox.is_some() => {
                self.on_mailbox_message(side, &phase, &body)
            }
            ServerMessage::Error { error, orig } => self.on_refusal(&error, &orig),
            _ => {}
        }
    }

    fn on_mailbox_message(&mut self, side: String, phase: &str, body: &str) {
        let Some(index) = PHASES.iter().position(|p| *p == phase) else { return };
        if side == self.side {
            self.facts.echoed[index] = true;
            return;
        }
        if self.facts.peer_side.as_ref().is_some_and(|peer| *peer != side) {
            return; // A third side; the server should have refused it.
        }
        let Some(bytes) = crypto::unhex(body) else { return };
        let (slot, max) = match index {
            PAKE => (&mut self.facts.peer_pake, MAX_PEER_PAKE),
            VERSION => (&mut self.facts.peer_version, MAX_PEER_VERSION),
            _ => (&mut self.facts.peer_data, MAX_PEER_DATA),
        };
        if slot.is_some() {
            return; // Sent again after a reconnect, or replayed by `open`.
        }
        if bytes.len() > max {
            let detail = format!("its {phase} message is larger than this client accepts");
            self.fail(Error::PeerProtocol { detail });
            return;
        }
        *slot = Some(bytes);
        self.facts.peer_side = Some(side);
    }

    fn on_refusal(&mut self, error: &str, orig: &Value) {
        let refused = orig.get("type").and_then(Value::as_str).unwrap_or("");
        let (code, message) = match error.split_once(": ") {
            Some((code, message)) if !code.contains(' ') => (code, message),
            _ => (error, ""),
        };
        let retry_later = ErrorCode::from_name(code).filter(|c| matches!(c.http_status(), 429 | 503));
        match (refused, code) {
            (_, "crowded") => self.fail(Error::Crowded),
            // Our earlier release took effect though its answer was lost.
            ("claim", "reclaimed") if self.facts.mailbox.is_some() => self.facts.released = true,
            (_, "burned") => self.fail(Error::ChannelBurned),
            ("close", _) if self.is_terminal() => self.facts.closed = true,
            ("release", _) if self.facts.mailbox.is_some() => self.facts.released = true,
            (_, "unknown-channel") => self.fail(Error::ChannelExpired),
            _ if retry_later.is_some() => {
                // Rate-limited, full or without storage for now: connect
                // again after the schedule's interval and send again.
                self.busy = retry_later.map(|c| (ServerErrorCode::Known(c), printable(message)));
                if let Link::Up(connection) = &mut self.link {
                    connection.hang_up = true;
                }
            }
            _ => {
                self.fail(Error::ServerRejected { code: ServerErrorCode::from_name(code), message: printable(message) })
            }
        }
    }
}

/// A server's text as it may be shown (and saved): as the HTTP client keeps
/// a refusal's message.
fn printable(text: &str) -> String {
    crate::wire::printable(text, 256)
}

impl fmt::Debug for MailboxExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailboxExchange")
            .field("role", &self.facts.role)
            .field("appid", &self.facts.config.appid())
            .field("nameplate", &self.nameplate())
            .field("has_mailbox", &self.facts.mailbox.is_some())
            .field("released", &self.facts.released)
            .field("echoed", &self.facts.echoed)
            .field("peer_heard", &self.facts.peer_side.is_some())
            .field("confirmed", &self.confirmed)
            .field("failure", &self.facts.failure)
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}
