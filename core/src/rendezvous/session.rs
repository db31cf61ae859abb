//! One mailbox-protocol connection's rules on the server, sans-IO: frames
//! in, operations to run and frames to send out. The server's WebSocket
//! front end and the simulation both run this very code.

use serde_json::Value;

use crate::code::{ChannelId, MAX_CHANNEL_ID};
use crate::mailbox_wire::{ClientMessage, FrameError, ServerMessage};
use crate::wire::{validate_side, ErrorCode, MailboxId, Message, Mood, WireError};
use crate::Timestamp;

use super::op::{Answer, Op, Outcome};
use super::Rendezvous;

/// Longest nameplates `list` names every number of (9, 90 and 900 of them).
const LISTED_DIGITS: usize = 3;

/// One connection's place in the mailbox protocol: what it bound, claimed,
/// opened and closed (the reference server allows one of each per
/// connection), and which messages of its open mailbox it was sent.
///
/// A frame goes to [`on_frame`](Self::on_frame). Its answer is either
/// ready ([`Step::Reply`]) or needs an operation on the state
/// ([`Step::Run`]): the host runs it (checking its rate limits, caps and
/// budgets) and gives the outcome to [`on_outcome`](Self::on_outcome).
/// While a mailbox is open, [`listening`](Self::listening) says which
/// messages to read, and [`on_news`](Self::on_news) turns them into frames.
///
/// ```
/// use wormhole_sync_core::rendezvous::{
///     MailboxSession, Rendezvous, RendezvousConfig, Step,
/// };
/// use wormhole_sync_core::mailbox_wire::ServerMessage;
/// use wormhole_sync_core::Timestamp;
///
/// let mut state = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
/// let mut session = MailboxSession::new(false);
/// let mut send = |session: &mut MailboxSession, frame: &str| match session.on_frame(frame.as_bytes()) {
///     Step::Reply(replies) => replies,
///     Step::Run(op) => session.on_outcome(state.apply(Timestamp::EPOCH, &op)),
/// };
/// send(&mut session, r#"{"type": "bind", "appid": "app", "side": "s1"}"#);
/// let replies = send(&mut session, r#"{"type": "allocate", "id": 7}"#);
/// assert!(matches!(&replies[..], [ServerMessage::Ack { .. }, ServerMessage::Allocated { .. }]));
/// ```
#[derive(Clone, Debug, Default)]
pub struct MailboxSession {
    allow_list: bool,
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
    /// The frame whose operation runs: its `ack` and what to quote if refused.
    pending: Option<Pending>,
    /// The last frame's metrics label.
    label: Option<&'static str>,
}

#[derive(Clone, Debug)]
struct Pending {
    ack: ServerMessage,
    orig: Value,
    kind: Kind,
}

/// What a pending operation does to the session once it succeeds.
#[derive(Clone, Debug)]
enum Kind {
    List,
    Allocate,
    Claim,
    Release,
    Open(MailboxId),
    Add,
    Close,
}

/// What the host does with a frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Send these frames; nothing to run.
    Reply(Vec<ServerMessage>),
    /// Run this operation on the state, then give its outcome to
    /// [`MailboxSession::on_outcome`].
    Run(Op),
}

/// What a session listens to: the messages of this mailbox after `after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listening<'a> {
    /// The application id.
    pub appid: &'a str,
    /// The open mailbox.
    pub mailbox: &'a MailboxId,
    /// The instance it opened: messages of another are not its.
    pub instance: u64,
    /// The last sequence number sent.
    pub after: u64,
}

/// A refusal in the words the client shows its person: the reference
/// server's for those clients recognise.
pub fn refusal(e: &WireError) -> String {
    match e.code {
        ErrorCode::Crowded => "crowded".into(),
        ErrorCode::Reclaimed => "reclaimed".into(),
        _ => format!("{}: {}", e.code, e.message),
    }
}

/// A typed nameplate as this server's: digits without leading zeros, within
/// the range of channel ids.
fn nameplate(text: &str) -> Result<ChannelId, String> {
    let parsed = text.parse::<u32>().ok().and_then(ChannelId::new).filter(|id| id.to_string() == text);
    parsed.ok_or_else(|| format!("this server's nameplates are numbers from 1 to {MAX_CHANNEL_ID}"))
}

/// The mailbox protocol's mood words: anything but `happy`, `lonely` and
/// `scary` is an error.
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

/// Seconds since the epoch, as the mailbox protocol stamps times.
pub fn seconds(at: Timestamp) -> f64 {
    at.as_millis() as f64 / 1000.0
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

/// What `list` answers. With `allow_list`, the nameplates in use. Without,
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

/// The metrics label of a frame.
fn frame_label(message: &ClientMessage) -> &'static str {
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
    }
}

impl MailboxSession {
    /// A new connection's session. `allow_list`: `list` names the
    /// nameplates in use (otherwise every number of the lengths in use).
    pub fn new(allow_list: bool) -> MailboxSession {
        MailboxSession { allow_list, ..MailboxSession::default() }
    }

    /// Takes one frame. Every frame that is a typed JSON object is
    /// acknowledged first; a refusal is an `error` frame quoting it.
    ///
    /// # Panics
    ///
    /// If the previous frame's operation has no outcome yet.
    pub fn on_frame(&mut self, raw: &[u8]) -> Step {
        assert!(self.pending.is_none(), "a frame came before the last operation's outcome");
        self.label = None;
        let frame = match ClientMessage::parse(raw) {
            Ok(frame) => frame,
            Err(e) => {
                let mut replies = Vec::new();
                if !matches!(e, FrameError::TooLarge | FrameError::NotJson | FrameError::MissingType) {
                    replies.push(ServerMessage::Ack { id: id_of(raw) });
                }
                replies.push(ServerMessage::refusal(raw, &e));
                return Step::Reply(replies);
            }
        };
        self.label = Some(frame_label(&frame.message));
        let ack = ServerMessage::Ack { id: frame.id.clone() };
        let client_id = frame.id.as_ref().map(|id| id.as_str().map_or_else(|| id.to_string(), str::to_string));
        match self.operation(&frame.message, client_id) {
            Ok(Ok(answer)) => Step::Reply([ack].into_iter().chain(answer).collect()),
            Ok(Err((op, kind))) => {
                let orig = serde_json::from_slice(raw).unwrap_or(Value::Null);
                self.pending = Some(Pending { ack, orig, kind });
                Step::Run(op)
            }
            Err(error) => {
                let orig = serde_json::from_slice(raw).unwrap_or(Value::Null);
                Step::Reply(vec![ack, ServerMessage::Error { error, orig }])
            }
        }
    }

    /// Takes the outcome of the operation [`on_frame`](Self::on_frame)
    /// asked for, and returns the frame's `ack` and its answer (or its
    /// refusal).
    ///
    /// # Panics
    ///
    /// If no operation was asked for.
    pub fn on_outcome(&mut self, outcome: Result<Outcome, WireError>) -> Vec<ServerMessage> {
        let Pending { ack, orig, kind } = self.pending.take().expect("an outcome of no operation");
        let answer = match outcome {
            Ok(Outcome { answer, instance }) => self.succeeded(kind, answer, instance),
            Err(e) => Some(ServerMessage::Error { error: refusal(&e), orig }),
        };
        [ack].into_iter().chain(answer).collect()
    }

    /// The metrics label of the last frame (`ws-claim`, ...), if it could
    /// be read.
    pub fn label(&self) -> Option<&'static str> {
        self.label
    }

    /// Whether an operation's outcome is awaited.
    pub fn is_running(&self) -> bool {
        self.pending.is_some()
    }

    fn succeeded(&mut self, kind: Kind, answer: Answer, instance: Option<u64>) -> Option<ServerMessage> {
        match (kind, answer) {
            (Kind::List, Answer::Nameplates(in_use)) => {
                Some(ServerMessage::Nameplates { nameplates: listed_nameplates(&in_use, self.allow_list) })
            }
            (Kind::Allocate, Answer::Allocated(nameplate)) => {
                self.allocated = true;
                Some(ServerMessage::Allocated { nameplate: nameplate.to_string() })
            }
            (Kind::Claim, Answer::Claimed(mailbox)) => Some(ServerMessage::Claimed { mailbox }),
            (Kind::Release, _) => Some(ServerMessage::Released),
            (Kind::Open(mailbox), _) => {
                self.opened = Some(mailbox);
                self.instance = instance;
                self.pushed = 0;
                None
            }
            (Kind::Close, _) => {
                self.closed = true;
                Some(ServerMessage::Closed)
            }
            (Kind::Add, _) => None,
            (kind, answer) => unreachable!("{kind:?} answered {answer:?}"),
        }
    }

    /// A frame's immediate answer (`Ok(Ok(..))`), the operation it needs
    /// (`Ok(Err(..))`), or its refusal.
    #[allow(clippy::type_complexity)]
    fn operation(
        &mut self,
        message: &ClientMessage,
        client_id: Option<String>,
    ) -> Result<Result<Option<ServerMessage>, (Op, Kind)>, String> {
        match message {
            ClientMessage::Ping { ping } => return Ok(Ok(Some(ServerMessage::Pong { pong: *ping }))),
            ClientMessage::Bind { appid, side } => {
                if self.bound.is_some() {
                    return Err("already bound".into());
                }
                validate_side(side).map_err(|e| refusal(&e))?;
                self.bound = Some((appid.clone(), side.clone()));
                return Ok(Ok(None));
            }
            _ => {}
        }
        let (appid, side) = self.bound.clone().ok_or("must bind first")?;
        let run = |op, kind| Ok(Err((op, kind)));
        match message {
            ClientMessage::List => run(Op::List { appid }, Kind::List),
            ClientMessage::Allocate => {
                if self.allocated {
                    return Err("you already allocated one, don't be greedy".into());
                }
                run(Op::Allocate { appid, side }, Kind::Allocate)
            }
            ClientMessage::Claim { nameplate: text } => {
                if self.did_claim {
                    return Err("only one claim per connection".into());
                }
                self.did_claim = true;
                let number = nameplate(text)?;
                self.claimed = Some(number);
                run(Op::Claim { appid, nameplate: number, side }, Kind::Claim)
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
                run(Op::Release { appid, nameplate: number, side }, Kind::Release)
            }
            ClientMessage::Open { mailbox } => {
                if self.opened.is_some() {
                    return Err("only one open per connection".into());
                }
                run(Op::Open { appid, mailbox: mailbox.clone(), side }, Kind::Open(mailbox.clone()))
            }
            ClientMessage::Add { phase, body } => {
                let mailbox = self.opened.clone().filter(|_| !self.closed).ok_or("must open mailbox before adding")?;
                let (phase, body) = (phase.clone(), body.clone());
                run(Op::Add { appid, mailbox, side, phase, body, client_id }, Kind::Add)
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
                let (mood, reopen) = (mood(word.as_deref()), self.opened.is_none());
                run(Op::Close { appid, mailbox, side, mood, reopen }, Kind::Close)
            }
            // Answered above.
            ClientMessage::Ping { .. } | ClientMessage::Bind { .. } => Err("unknown type".into()),
        }
    }

    /// The mailbox this session listens to, once opened (until closed).
    pub fn listening(&self) -> Option<Listening<'_>> {
        let (appid, _) = self.bound.as_ref()?;
        let mailbox = self.opened.as_ref().filter(|_| !self.closed)?;
        Some(Listening { appid, mailbox, instance: self.instance?, after: self.pushed })
    }

    /// Takes the open mailbox's messages after [`Listening::after`], read
    /// (and durable) after a wake-up, and returns the frames to push.
    /// Messages already sent are skipped.
    pub fn on_news(&mut self, messages: &[Message]) -> Vec<ServerMessage> {
        if self.listening().is_none() {
            return Vec::new();
        }
        let new: Vec<ServerMessage> = messages.iter().filter(|m| m.seq > self.pushed).map(message_frame).collect();
        self.pushed = messages.last().map_or(self.pushed, |m| m.seq.max(self.pushed));
        new
    }

    /// Answers one frame against `state` in this process (a host without
    /// storage: the simulation, the fuzzer, tests): runs the operation the
    /// frame asks for, then adds what the open mailbox has new.
    pub fn answer_locally(&mut self, state: &mut Rendezvous, now: Timestamp, raw: &[u8]) -> Vec<ServerMessage> {
        let mut replies = match self.on_frame(raw) {
            Step::Reply(replies) => replies,
            Step::Run(op) => {
                let outcome = state.apply(now, &op);
                self.on_outcome(outcome)
            }
        };
        replies.extend(self.news_locally(state));
        replies
    }

    /// The frames of what the open mailbox has new in `state`.
    pub fn news_locally(&mut self, state: &Rendezvous) -> Vec<ServerMessage> {
        let messages = match self.listening() {
            Some(listening) => state.messages_for(listening).to_vec(),
            None => return Vec::new(),
        };
        self.on_news(&messages)
    }

    /// The operation that marks the open mailbox as active while the
    /// connection lives (see [`Op::Touch`]).
    pub fn keep_open(&self) -> Option<Op> {
        let listening = self.listening()?;
        Some(Op::Touch { appid: listening.appid.to_string(), mailbox: listening.mailbox.clone() })
    }
}
