//! A deterministic simulation of whole exchanges: an initiator, a receiver,
//! sometimes a guesser, and the rendezvous state machine, over a simulated
//! network in virtual time. Faults are seeded: delays, losses, duplicates
//! and reorders; client restarts through [`Exchange::serialize`] /
//! [`Exchange::from_serialized`]; clock jumps; machines that sleep past the
//! timeout; and server crashes that lose what was not committed.
//!
//! Test support (feature `sim`): the same seed always replays the same run.
//!
//! ```
//! use wormhole_sync_core::sim::{check, run, Scenario};
//!
//! let scenario = Scenario::from_seed(42);
//! let report = run(&scenario);
//! check(&scenario, &report).unwrap();
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use crate::code::ChannelId;
use crate::code::Code;
use crate::exchange::{Event, Exchange, RequestId};
use crate::rendezvous::{Held as Hold, LongPoll, Rendezvous, RendezvousSnapshot};
use crate::time::Timestamp;
use crate::wire::{Request, Response, Route, WireError};
use crate::{Error, Mood, TransportError};

mod check;
pub mod mailbox;
mod scenario;

pub use check::{check, Report};
pub use scenario::{Faults, Plot, Scenario, SimRng};

/// The parties, as indexes into per-party arrays.
const INITIATOR: usize = 0;
const RECEIVER: usize = 1;
const GUESSER: usize = 2;
const PARTIES: usize = 3;
const START: Timestamp = Timestamp::from_millis(1_700_000_000_000);
const MAX_STEPS: usize = 400_000;

#[derive(Debug)]
enum Packet {
    ToServer {
        from: usize,
        incarnation: u32,
        id: RequestId,
        path: &'static str,
        body: Vec<u8>,
    },
    ToClient {
        to: usize,
        incarnation: u32,
        id: RequestId,
        status: u16,
        body: Vec<u8>,
    },
    /// The connection broke: refused by a server that is down, or reset by
    /// one that was killed.
    Reset {
        to: usize,
        incarnation: u32,
        id: RequestId,
    },
}

/// A held request (a long-poll), run by the server's own rules
/// ([`LongPoll`]).
#[derive(Debug)]
struct Waiter {
    from: usize,
    incarnation: u32,
    id: RequestId,
    poll: LongPoll,
}

/// An answer the server holds until the change it reports is committed.
struct Held {
    to: usize,
    incarnation: u32,
    id: RequestId,
    status: u16,
    body: Vec<u8>,
}

#[derive(Default)]
struct Node {
    /// How far this client's clock is ahead of the server's.
    clock_offset_ms: i64,
    exchange: Option<Exchange>,
    incarnation: u32,
    restarts: u32,
    clock_jumps: u32,
    outcome: Option<Result<Vec<u8>, Error>>,
    code: Option<Code>,
    confirm_at: Option<Timestamp>,
    /// When the driver's timer fires, in server time: set from
    /// `poll_timeout` after each input, as a driver sleeping on a monotonic
    /// timer does, so a clock jump does not move it.
    wake_at: Option<Timestamp>,
    /// The exchange got input since `wake_at` was set.
    dirty: bool,
    /// The machine sleeps until then: it runs nothing and its connections die.
    asleep_until: Option<Timestamp>,
    /// Fall asleep once the server first answers.
    sleep_when_answered: bool,
    /// Fall asleep once the server acknowledges a post (a racing guesser's
    /// PAKE message).
    sleep_when_posted: bool,
    /// This side's id, as its requests name it.
    side: Option<String>,
}

/// The server process: the live state, what is committed, and what waits
/// for the next commit.
struct ServerProcess {
    live: Rendezvous,
    committed: RendezvousSnapshot,
    held: Vec<Held>,
    commit_at: Option<Timestamp>,
    down_until: Option<Timestamp>,
    /// Closes applied but not committed yet, by party.
    closes_pending: [bool; PARTIES],
}

struct Sim<'a> {
    scenario: &'a Scenario,
    rng: SimRng,
    now: Timestamp,
    server: ServerProcess,
    nodes: [Node; PARTIES],
    packets: BTreeMap<(Timestamp, u64), Packet>,
    packet_seq: u64,
    waiters: Vec<Waiter>,
    /// Channels whose held requests have news.
    news: Vec<(String, Option<ChannelId>)>,
    /// Parties about to start, with the code they type.
    starts: [Option<(Timestamp, Code)>; PARTIES],
    report: Report,
    /// Print every delivery (`WORMHOLE_SIM_TRACE=1`), to read a failing run.
    trace: bool,
}

/// Runs `scenario` to the end (every party finished, or nothing left to happen).
pub fn run(scenario: &Scenario) -> Report {
    let mut rng = SimRng::new(scenario.seed);
    let initiator = Exchange::initiator(scenario.config.clone(), scenario.initiator_data.clone(), rng.bytes32())
        .expect("valid data");
    // The server's ids differ from run to run, as a real server's do, derived
    // from the scenario's number rather than drawn from `rng`, so every other
    // draw of a run stays as it was.
    let mut server_seed = [0x5e; 32];
    server_seed[..8].copy_from_slice(&scenario.seed.to_le_bytes());
    let live = Rendezvous::new(scenario.server.clone(), server_seed);
    let committed = live.snapshot();
    let mut sim = Sim {
        scenario,
        rng,
        now: START,
        server: ServerProcess {
            live,
            committed,
            held: Vec::new(),
            commit_at: None,
            down_until: None,
            closes_pending: [false; PARTIES],
        },
        nodes: Default::default(),
        packets: BTreeMap::new(),
        packet_seq: 0,
        waiters: Vec::new(),
        news: Vec::new(),
        starts: Default::default(),
        report: Report::default(),
        trace: std::env::var_os("WORMHOLE_SIM_TRACE").is_some(),
    };
    sim.nodes[INITIATOR].clock_offset_ms = scenario.clock_offsets_ms[INITIATOR];
    sim.nodes[RECEIVER].clock_offset_ms = scenario.clock_offsets_ms[RECEIVER];
    let start = sim.clock(INITIATOR);
    let node = &mut sim.nodes[INITIATOR];
    node.exchange = Some(initiator);
    node.exchange.as_mut().expect("just set").start(start);
    node.dirty = true;
    sim.report.started[INITIATOR] = Some(Duration::ZERO);
    sim.run();
    sim.report.elapsed = sim.now.saturating_since(START);
    sim.report.initiator = sim.nodes[INITIATOR].outcome.clone();
    sim.report.receiver = sim.nodes[RECEIVER].outcome.clone();
    sim.report.guesser = sim.nodes[GUESSER].outcome.clone();
    let stats = sim.server.live.stats();
    sim.report.channels_left = stats.channels + stats.tombstones;
    sim.report
}

/// `t` moved by `offset_ms` (either way), within the representable range.
fn shifted(t: Timestamp, offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(t.as_millis().saturating_add_signed(offset_ms))
}

impl Sim<'_> {
    /// What client `who`'s clock reads now.
    fn clock(&self, who: usize) -> Timestamp {
        shifted(self.now, self.nodes[who].clock_offset_ms)
    }

    fn crashes_enabled(&self) -> bool {
        self.scenario.faults.server_crash_percent > 0
    }

    fn run(&mut self) {
        for _ in 0..MAX_STEPS {
            self.drain_clients();
            self.follow_plot();
            if self.done() {
                return;
            }
            let Some(next) = self.next_time() else {
                self.report
                    .violations
                    .push(format!("stalled at +{:?} with work left", self.now.saturating_since(START)));
                return;
            };
            self.now = self.now.max(next);
            self.deliver_due();
            self.maybe_restart();
            self.maybe_jump_clocks();
            self.maybe_crash_server();
        }
        self.report.violations.push(format!("no end after {MAX_STEPS} steps"));
    }

    fn done(&self) -> bool {
        let finished = |n: &Node| n.exchange.as_ref().is_none_or(Exchange::is_finished) && n.asleep_until.is_none();
        self.nodes.iter().all(finished) && self.starts.iter().all(Option::is_none)
    }

    fn next_time(&self) -> Option<Timestamp> {
        let packet = self.packets.keys().next().map(|k| k.0);
        let awake = self.nodes.iter().filter(|n| n.asleep_until.is_none());
        let wakes = awake.clone().filter(|n| n.exchange.is_some()).filter_map(|n| n.wake_at);
        let confirms = awake.filter_map(|n| n.confirm_at);
        let sleepers = self.nodes.iter().filter_map(|n| n.asleep_until);
        let waiters = self.waiters.iter().map(|w| w.poll.deadline());
        let starts = self.starts.iter().flatten().map(|s| s.0);
        let server = self.server.commit_at.into_iter().chain(self.server.down_until);
        packet.into_iter().chain(wakes).chain(confirms).chain(sleepers).chain(waiters).chain(starts).chain(server).min()
    }

    fn delay(&mut self) -> Duration {
        let f = &self.scenario.faults;
        Duration::from_millis(self.rng.range(f.min_delay_ms, f.max_delay_ms))
    }

    /// Puts a packet on the wire, subject to loss, delay and duplication.
    fn send(&mut self, make: impl Fn() -> Packet) {
        if self.rng.chance(self.scenario.faults.drop_percent) {
            let (Packet::ToServer { from: who, .. } | Packet::ToClient { to: who, .. } | Packet::Reset { to: who, .. }) =
                make();
            self.report.dropped[who] += 1;
            return;
        }
        let copies = if self.rng.chance(self.scenario.faults.duplicate_percent) { 2 } else { 1 };
        for _ in 0..copies {
            let at = self.now + self.delay();
            self.packet_seq += 1;
            self.packets.insert((at, self.packet_seq), make());
        }
    }

    fn drain_clients(&mut self) {
        for who in 0..PARTIES {
            if self.nodes[who].asleep_until.is_some() {
                continue;
            }
            let now = self.clock(who);
            let Some(exchange) = self.nodes[who].exchange.as_mut() else { continue };
            let mut outgoing = Vec::new();
            while let Some(t) = exchange.poll_transmit(now) {
                outgoing.push((t.id(), t.path(), t.body(), t.request().side().to_string()));
            }
            let mut events = Vec::new();
            while let Some(event) = exchange.poll_event() {
                events.push(event);
            }
            let node = &mut self.nodes[who];
            if node.dirty || !outgoing.is_empty() {
                // The driver sleeps for the time left, measured on its clock now.
                let timeout = node.exchange.as_ref().and_then(Exchange::poll_timeout);
                node.wake_at = timeout.map(|t| self.now + t.saturating_since(now));
                node.dirty = false;
            }
            let incarnation = node.incarnation;
            for (id, path, body, side) in outgoing {
                self.nodes[who].side = Some(side);
                self.send(|| Packet::ToServer { from: who, incarnation, id, path, body: body.clone() });
            }
            for event in events {
                self.on_event(who, event);
            }
        }
    }

    fn on_event(&mut self, who: usize, event: Event) {
        let node = &mut self.nodes[who];
        match event {
            Event::Code(code) => {
                if node.code.as_ref().is_some_and(|known| *known != code) {
                    self.report.violations.push(format!("party {who} announced a different code after a restart"));
                }
                node.code = Some(code.clone());
                if who == INITIATOR && self.nodes[RECEIVER].exchange.is_none() && self.starts[RECEIVER].is_none() {
                    self.on_code_shown(code);
                }
            }
            Event::Verifier(_) => {
                if self.scenario.config.confirms_verifier() && node.confirm_at.is_none() {
                    node.confirm_at = Some(self.now + Duration::from_millis(self.rng.range(0, 10_000)));
                }
                if who == RECEIVER && self.scenario.plot == Plot::GuesserLate && self.nodes[GUESSER].exchange.is_none()
                {
                    let code = self.nodes[RECEIVER].code.clone().expect("a receiver knows its code");
                    let at = self.now + Duration::from_millis(self.rng.range(0, 1_000));
                    self.starts[GUESSER].get_or_insert((at, mistype(&code)));
                }
            }
            Event::Outcome(outcome) => self.record_outcome(who, outcome),
        }
    }

    /// The initiator shows the code: the plot decides who types what, when.
    fn on_code_shown(&mut self, code: Code) {
        let typing = Duration::from_millis(self.rng.range(0, self.scenario.typing_delay_ms));
        match self.scenario.plot {
            Plot::Honest | Plot::GuesserLate | Plot::ReceiverVanishes => {
                self.starts[RECEIVER] = Some((self.now + typing, code));
            }
            Plot::WrongCode => self.starts[RECEIVER] = Some((self.now + typing, mistype(&code))),
            Plot::InitiatorVanishes => {
                self.starts[RECEIVER] = Some((self.now + typing, code));
                self.nodes[INITIATOR].asleep_until = Some(self.now + self.scenario.vanish_for());
            }
            Plot::GuesserFirst | Plot::RacingGuesser => {
                if self.nodes[GUESSER].exchange.is_none() {
                    let at = self.now + Duration::from_millis(self.rng.range(0, 1_000));
                    self.starts[GUESSER].get_or_insert((at, mistype(&code)));
                }
            }
        }
    }

    /// Starts the receiver once a first guesser has given up, or once a
    /// racing guesser has gone silent.
    fn follow_plot(&mut self) {
        let guesser_done = match self.scenario.plot {
            Plot::GuesserFirst => self.nodes[GUESSER].exchange.as_ref().is_some_and(Exchange::is_finished),
            Plot::RacingGuesser => self.nodes[GUESSER].asleep_until.is_some() || self.nodes[GUESSER].outcome.is_some(),
            _ => false,
        };
        if guesser_done && self.nodes[RECEIVER].exchange.is_none() && self.starts[RECEIVER].is_none() {
            let code = self.nodes[INITIATOR].code.clone().expect("the guesser started from the shown code");
            let typing = Duration::from_millis(self.rng.range(0, self.scenario.typing_delay_ms));
            self.starts[RECEIVER] = Some((self.now + typing, code));
        }
    }

    fn record_outcome(&mut self, who: usize, outcome: Result<Vec<u8>, Error>) {
        let at = Some(self.now.saturating_since(START));
        self.report.done[who] = self.report.done[who].or(at);
        let node = &mut self.nodes[who];
        match &node.outcome {
            Some(earlier) if *earlier != outcome => {
                self.report.violations.push(format!("party {who} changed its outcome from {earlier:?} to {outcome:?}"));
            }
            _ => node.outcome = Some(outcome),
        }
    }

    fn deliver_due(&mut self) {
        while let Some(entry) = self.packets.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let packet = entry.remove();
            if self.trace {
                self.print(&packet);
            }
            match packet {
                Packet::ToServer { from, incarnation, id, path, body } => {
                    if self.server.down_until.is_some() {
                        self.send(|| Packet::Reset { to: from, incarnation, id });
                    } else {
                        self.server_receive(from, incarnation, id, path, &body);
                    }
                }
                Packet::ToClient { to, incarnation, id, status, body } => {
                    self.client_receive(to, incarnation, id, Ok((status, &body)));
                }
                Packet::Reset { to, incarnation, id } => self.client_receive(to, incarnation, id, Err(())),
            }
        }
        let (due, waiting): (Vec<Waiter>, Vec<Waiter>) =
            std::mem::take(&mut self.waiters).into_iter().partition(|w| w.poll.deadline() <= self.now);
        self.waiters = waiting;
        for waiter in due {
            self.advance(waiter);
        }
        self.wake_news();
        if self.server.commit_at.is_some_and(|t| t <= self.now) {
            self.commit();
        }
        if self.server.down_until.is_some_and(|t| t <= self.now) {
            self.server.down_until = None;
        }
        for who in 0..PARTIES {
            if let Some((at, code)) = self.starts[who].clone() {
                if at <= self.now {
                    self.starts[who] = None;
                    self.start(who, code);
                }
            }
        }
        for who in 0..PARTIES {
            let now = self.clock(who);
            let node = &mut self.nodes[who];
            if node.asleep_until.is_some_and(|t| t <= self.now) {
                node.asleep_until = None;
                node.wake_at = Some(self.now);
            }
            if node.asleep_until.is_some() {
                continue;
            }
            let Some(exchange) = node.exchange.as_mut() else { continue };
            if node.confirm_at.is_some_and(|t| t <= self.now) {
                node.confirm_at = None;
                exchange.confirm_verifier(now, true);
                node.dirty = true;
            }
            if node.wake_at.is_some_and(|t| t <= self.now) {
                exchange.handle_timeout(now);
                node.dirty = true;
            }
        }
    }

    fn print(&self, packet: &Packet) {
        let at = self.now.saturating_since(START);
        let text = |body: &[u8]| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        match packet {
            Packet::ToServer { from, incarnation, path, body, .. } => {
                eprintln!("{at:?} party {from}.{incarnation} -> {path} {}", text(body));
            }
            Packet::ToClient { to, incarnation, status, body, .. } => {
                eprintln!("{at:?} party {to}.{incarnation} <- {status} {}", text(body));
            }
            Packet::Reset { to, incarnation, .. } => eprintln!("{at:?} party {to}.{incarnation} <- reset"),
        }
    }

    /// An answer (or a broken connection) reaches party `to`.
    fn client_receive(&mut self, to: usize, incarnation: u32, id: RequestId, answer: Result<(u16, &[u8]), ()>) {
        let now = self.clock(to);
        let node = &mut self.nodes[to];
        if node.incarnation != incarnation || node.asleep_until.is_some() {
            return; // Its process restarted, or its machine sleeps: nobody reads it.
        }
        let Some(exchange) = node.exchange.as_mut() else { return };
        // Only what the exchange reads (not late answers it gave up on) tells it something.
        let read = exchange.awaits_answer(id);
        if node.outcome.is_none() && read {
            self.report.record_answer(to, node.side.as_deref(), answer.ok());
        }
        match answer {
            Ok((status, body)) => exchange.handle_response(now, id, status, body),
            Err(()) => exchange.handle_transport_error(now, id, TransportError::from_message("connection reset")),
        }
        node.dirty = true;
        if node.sleep_when_answered && read && answer.is_ok() {
            // In the channel, then gone: the machine sleeps past both timeouts.
            node.sleep_when_answered = false;
            node.asleep_until = Some(self.now + self.scenario.vanish_for());
        }
        let posted = || {
            let Ok((200, body)) = answer else { return false };
            serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|json| json.get("seq").is_some())
        };
        if node.sleep_when_posted && read && posted() {
            // Its PAKE message is in: it goes silent, past both timeouts.
            node.sleep_when_posted = false;
            node.asleep_until = Some(self.now + self.scenario.vanish_for());
        }
    }

    fn start(&mut self, who: usize, code: Code) {
        let seed = self.rng.bytes32();
        let data = if who == RECEIVER { self.scenario.receiver_data.clone() } else { b"a guess".to_vec() };
        let mut exchange = Exchange::receiver(self.scenario.config.clone(), code, data, seed).expect("valid data");
        exchange.start(self.clock(who));
        let node = &mut self.nodes[who];
        node.exchange = Some(exchange);
        node.dirty = true;
        node.sleep_when_answered = who == RECEIVER && self.scenario.plot == Plot::ReceiverVanishes;
        node.sleep_when_posted = who == GUESSER && self.scenario.plot == Plot::RacingGuesser;
        self.report.started[who] = Some(self.now.saturating_since(START));
    }

    fn server_receive(&mut self, from: usize, incarnation: u32, id: RequestId, path: &str, body: &[u8]) {
        self.report.requests += 1;
        let route = Route::from_path(path).expect("clients only use protocol paths");
        let request = match Request::parse(route, body) {
            Ok(request) => request,
            Err(e) => {
                self.report.violations.push(format!("the server could not parse a client's request: {e}"));
                return self.reply(from, incarnation, id, e.http_status(), e.to_json());
            }
        };
        // As the real server does: a request that asks to wait is held by the
        // long-poll rules; any other is applied and answered. Either way, news
        // wakes the channel's held requests.
        let request = match LongPoll::new(request, self.now, self.server.live.config().max_wait) {
            Ok(poll) => {
                self.advance(Waiter { from, incarnation, id, poll });
                return self.wake_news();
            }
            Err(request) => request,
        };
        let result = self.handle(&request);
        if matches!(request, Request::Close(_)) && result.is_ok() {
            if self.crashes_enabled() {
                self.server.closes_pending[from] = true;
            } else {
                let at = self.now.saturating_since(START);
                self.report.close_delivered[from].get_or_insert(at);
            }
        }
        self.answer_with(from, incarnation, id, result);
        self.wake_news();
    }

    /// Applies a request, noting its channel if that has news.
    fn handle(&mut self, request: &Request) -> Result<Response, WireError> {
        let result = self.server.live.handle(self.now, request);
        if self.server.live.take_changes().has_news() {
            self.news.push((request.appid().to_string(), request.channel()));
        }
        result
    }

    /// Runs a held request's next step: answers it, or holds it again.
    fn advance(&mut self, mut waiter: Waiter) {
        loop {
            // As the server: a request can wait only on a mailbox that exists.
            let can_wait = self.server.live.mailbox_for(waiter.poll.next()).is_some();
            let request = waiter.poll.next().clone();
            let answer = self.handle(&request);
            match waiter.poll.on_answer(self.now, answer, can_wait) {
                Hold::Answer(result) => return self.answer_with(waiter.from, waiter.incarnation, waiter.id, result),
                Hold::Run => continue,
                Hold::Wait { .. } => return self.waiters.push(waiter),
            }
        }
    }

    /// Runs again the held requests of the channels with news.
    fn wake_news(&mut self) {
        while let Some((appid, channel)) = self.news.pop() {
            let (woken, waiting): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut self.waiters)
                .into_iter()
                .partition(|w| w.poll.next().appid() == appid && w.poll.next().channel() == channel);
            self.waiters = waiting;
            for waiter in woken {
                self.advance(waiter);
            }
        }
    }

    fn answer_with(&mut self, from: usize, incarnation: u32, id: RequestId, result: Result<Response, WireError>) {
        let (status, body) = match result {
            Ok(response) => (200, response.to_json()),
            Err(e) => (e.http_status(), e.to_json()),
        };
        self.reply(from, incarnation, id, status, body);
    }

    /// Sends an answer, or, with group commit, holds it until the next commit.
    fn reply(&mut self, to: usize, incarnation: u32, id: RequestId, status: u16, body: Vec<u8>) {
        if !self.crashes_enabled() {
            return self.send(|| Packet::ToClient { to, incarnation, id, status, body: body.clone() });
        }
        self.server.held.push(Held { to, incarnation, id, status, body });
        if self.server.commit_at.is_none() {
            let delay = Duration::from_millis(self.rng.range(0, self.scenario.faults.max_commit_delay_ms));
            self.server.commit_at = Some(self.now + delay);
        }
    }

    /// Everything handled so far is durable: the held answers may leave.
    fn commit(&mut self) {
        self.server.commit_at = None;
        self.server.committed = self.server.live.snapshot();
        let at = self.now.saturating_since(START);
        for (who, pending) in self.server.closes_pending.iter_mut().enumerate() {
            if std::mem::take(pending) {
                self.report.close_delivered[who].get_or_insert(at);
            }
        }
        for held in std::mem::take(&mut self.server.held) {
            let Held { to, incarnation, id, status, body } = held;
            self.send(|| Packet::ToClient { to, incarnation, id, status, body: body.clone() });
        }
    }

    /// `kill -9`: the state since the last commit is lost, every open
    /// connection is reset, and the server is down for a while, then
    /// restarts from what it committed.
    fn maybe_crash_server(&mut self) {
        let faults = &self.scenario.faults;
        if self.server.down_until.is_some()
            || self.report.server_crashes >= faults.max_server_crashes
            || !self.rng.chance(faults.server_crash_percent)
        {
            return;
        }
        self.report.server_crashes += 1;
        let restored =
            Rendezvous::restore(self.scenario.server.clone(), self.server.committed.clone(), self.rng.bytes32());
        match restored {
            Ok(restored) => self.server.live = restored,
            Err(e) => self.report.violations.push(format!("the server could not restore its committed state: {e}")),
        }
        self.server.commit_at = None;
        self.server.closes_pending = [false; PARTIES];
        let broken: Vec<(usize, u32, RequestId)> = std::mem::take(&mut self.server.held)
            .into_iter()
            .map(|h| (h.to, h.incarnation, h.id))
            .chain(std::mem::take(&mut self.waiters).into_iter().map(|w| (w.from, w.incarnation, w.id)))
            .collect();
        for (to, incarnation, id) in broken {
            self.send(|| Packet::Reset { to, incarnation, id });
        }
        let downtime = self.rng.range(0, self.scenario.faults.max_server_downtime_ms);
        self.server.down_until = Some(self.now + Duration::from_millis(downtime));
    }

    fn maybe_restart(&mut self) {
        for who in 0..PARTIES {
            let faults = &self.scenario.faults;
            let node = &self.nodes[who];
            if node.exchange.is_none()
                || node.asleep_until.is_some()
                || node.restarts >= faults.max_restarts
                || !self.rng.chance(faults.restart_percent)
            {
                continue;
            }
            // The restored state may run on a clock that is behind or ahead.
            let back = i64::try_from(self.rng.range(0, faults.restart_clock_back_ms)).unwrap_or(0);
            let forward = i64::try_from(self.rng.range(0, faults.restart_clock_forward_ms)).unwrap_or(0);
            let node = &mut self.nodes[who];
            let blob = node.exchange.as_ref().expect("checked above").serialize();
            match Exchange::from_serialized(&blob) {
                Ok(restored) => {
                    node.exchange = Some(restored);
                    node.incarnation += 1;
                    node.restarts += 1;
                    node.dirty = true;
                    let step = if self.rng.chance(50) { forward } else { -back };
                    node.clock_offset_ms += step;
                    self.report.clock_forward_ms[who] += u64::try_from(step).unwrap_or(0);
                    self.report.restarts += 1;
                }
                Err(e) => self.report.violations.push(format!("party {who} could not restore its own state: {e}")),
            }
        }
    }

    /// A running client's clock jumps: backwards by up to the scenario's
    /// largest jump, or forwards by up to a tenth of the timeout (a clock
    /// corrected by NTP; a larger jump forwards is time the client
    /// believes passed, and may rightly time it out).
    fn maybe_jump_clocks(&mut self) {
        for who in 0..PARTIES {
            let faults = &self.scenario.faults;
            let node = &self.nodes[who];
            if node.exchange.is_none()
                || node.clock_jumps >= faults.max_clock_jumps
                || !self.rng.chance(faults.clock_jump_percent)
            {
                continue;
            }
            let most_forward = u64::try_from(self.scenario.config.timeout().as_millis() / 10).unwrap_or(u64::MAX);
            let step = if self.rng.chance(50) {
                i64::try_from(self.rng.range(0, faults.max_clock_jump_ms.min(most_forward))).unwrap_or(0)
            } else {
                -i64::try_from(self.rng.range(0, faults.max_clock_jump_ms)).unwrap_or(0)
            };
            let node = &mut self.nodes[who];
            node.clock_jumps += 1;
            node.clock_offset_ms += step;
            self.report.clock_jumps += 1;
            self.report.clock_forward_ms[who] += u64::try_from(step).unwrap_or(0);
        }
    }
}

/// The code with its first word replaced by another word: what a person
/// who mistyped it (or a guesser) would send.
pub(crate) fn mistype(code: &Code) -> Code {
    let mut words: Vec<&str> = code.words().iter().map(String::as_str).collect();
    words[0] = if words[0] == "wrongword" { "otherword" } else { "wrongword" };
    Code::new(code.channel(), &words).expect("valid words")
}

/// A peer's close mood, as `Mood` parses from the wire.
fn parse_mood(text: &str) -> Option<Mood> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).ok()
}

/// How many seeds the simulation suite runs: `WORMHOLE_SIM_SEEDS`, or `default`.
pub fn seed_count(default: u64) -> u64 {
    std::env::var("WORMHOLE_SIM_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
