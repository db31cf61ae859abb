//! A deterministic simulation of a whole exchange: an initiator, a receiver
//! and the rendezvous state machine over a simulated network in virtual
//! time, with seeded delays, drops, duplicates, reorders and client restarts
//! through [`Exchange::serialize`]/[`Exchange::from_serialized`].
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

use crate::code::Code;
use crate::config::{Config, Schedule};
use crate::exchange::{Event, Exchange, RequestId};
use crate::rendezvous::{Rendezvous, RendezvousConfig};
use crate::time::Timestamp;
use crate::wire::{Request, Response, Route, WireError};
use crate::{Error, Mood};

/// A small, fast, seeded generator for the simulation's choices (SplitMix64).
/// Not for secrets: exchange seeds are drawn from it only to make runs replayable.
#[derive(Clone, Debug)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> SimRng {
        SimRng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.range(0, 99) < percent
    }

    /// 32 random bytes.
    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        out
    }
}

/// What the network and the clients do wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Faults {
    /// Shortest one-way delay.
    pub min_delay_ms: u64,
    /// Longest one-way delay (different delays reorder packets).
    pub max_delay_ms: u64,
    /// Chance that a packet is lost.
    pub drop_percent: u64,
    /// Chance that a packet is delivered twice.
    pub duplicate_percent: u64,
    /// Chance, at each simulation step, that a client restarts from its
    /// serialized state, losing whatever was in flight.
    pub restart_percent: u64,
    /// Most restarts per client.
    pub max_restarts: u32,
    /// Largest step back of a client's clock at a restart (the state moves
    /// to a machine whose clock is behind, or the clock was set back).
    pub restart_clock_back_ms: u64,
    /// Largest step forward of a client's clock at a restart.
    pub restart_clock_forward_ms: u64,
}

impl Faults {
    /// A perfect network.
    pub fn none() -> Faults {
        Faults {
            min_delay_ms: 1,
            max_delay_ms: 1,
            drop_percent: 0,
            duplicate_percent: 0,
            restart_percent: 0,
            max_restarts: 0,
            restart_clock_back_ms: 0,
            restart_clock_forward_ms: 0,
        }
    }
}

/// One simulated run, fully determined by its fields.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Seed of every random choice in the run.
    pub seed: u64,
    /// Network and restart faults.
    pub faults: Faults,
    /// Whether faults may outlast the timeout (then a timeout is acceptable).
    pub severe: bool,
    /// Whether the receiver types a code with a wrong word.
    pub wrong_code: bool,
    /// Both sides' configuration.
    pub config: Config,
    /// The rendezvous's limits.
    pub server: RendezvousConfig,
    /// The initiator's data.
    pub initiator_data: Vec<u8>,
    /// The receiver's data.
    pub receiver_data: Vec<u8>,
    /// Longest time the person takes to type the code.
    pub typing_delay_ms: u64,
    /// How far each client's clock (initiator, receiver) is ahead of the
    /// server's (negative: behind).
    pub clock_offsets_ms: [i64; 2],
}

impl Scenario {
    /// A scenario with a perfect network and the default configuration.
    pub fn simple(seed: u64) -> Scenario {
        Scenario {
            seed,
            faults: Faults::none(),
            severe: false,
            wrong_code: false,
            config: Config::new("example.com/sim").expect("valid appid"),
            server: RendezvousConfig::default(),
            initiator_data: b"initiator's data".to_vec(),
            receiver_data: b"receiver's data".to_vec(),
            typing_delay_ms: 3_000,
            clock_offsets_ms: [0, 0],
        }
    }

    /// A scenario drawn from `seed`: mostly recoverable faults, some wrong
    /// codes, some faults severe enough to time out, varied schedules (some
    /// with intervals of minutes to an hour and a timeout of days),
    /// long-polling on or off, verifier confirmation on or off, clocks that
    /// disagree and step at restarts.
    pub fn from_seed(seed: u64) -> Scenario {
        let mut rng = SimRng::new(seed ^ 0x5eed_5eed_5eed_5eed);
        let mut scenario = Scenario::simple(seed);
        let severe = rng.chance(10);
        let max_delay_ms = rng.range(1, if severe { 20_000 } else { 2_000 });
        scenario.faults = Faults {
            min_delay_ms: rng.range(0, max_delay_ms),
            max_delay_ms,
            drop_percent: if severe { rng.range(40, 95) } else { rng.range(0, 10) },
            duplicate_percent: rng.range(0, 10),
            restart_percent: rng.range(0, 5),
            max_restarts: 5,
            restart_clock_back_ms: if rng.chance(30) { rng.range(0, 120_000) } else { 0 },
            restart_clock_forward_ms: if rng.chance(30) { rng.range(0, 10_000) } else { 0 },
        };
        let max_delay = scenario.faults.max_delay_ms;
        scenario.faults.min_delay_ms = scenario.faults.min_delay_ms.min(max_delay);
        scenario.severe = severe;
        scenario.wrong_code = rng.chance(20);
        let long_intervals = rng.chance(10);
        let interval = if long_intervals {
            Duration::from_millis(rng.range(20_000, 3_600_000))
        } else {
            Duration::from_millis(rng.range(100, 2_000))
        };
        let mut config = Config::new("example.com/sim")
            .expect("valid appid")
            .with_schedule(Schedule::every(interval).expect("valid interval"))
            .with_long_poll(if rng.chance(80) { Duration::from_secs(30) } else { Duration::ZERO })
            .with_verifier_confirmation(rng.chance(20))
            .with_code_words(rng.range(1, 4) as usize)
            .expect("valid word count");
        if severe {
            config = config.with_timeout(Duration::from_secs(rng.range(20, 120)));
        } else if long_intervals {
            config = config.with_timeout(Duration::from_secs(3 * 24 * 3600));
        }
        scenario.config = config;
        let len = rng.range(0, 2_000) as usize;
        scenario.initiator_data = (0..len).map(|_| rng.next_u64() as u8).collect();
        let len = rng.range(0, 2_000) as usize;
        scenario.receiver_data = (0..len).map(|_| rng.next_u64() as u8).collect();
        scenario.typing_delay_ms = rng.range(0, 30_000);
        if rng.chance(30) {
            let mut offset = || i64::try_from(rng.range(0, 240_000)).unwrap_or(0) - 120_000;
            scenario.clock_offsets_ms = [offset(), offset()];
        }
        scenario
    }
}

/// How a run ended.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The initiator's outcome (`None`: it never finished).
    pub initiator: Option<Result<Vec<u8>, Error>>,
    /// The receiver's outcome (`None`: never created or never finished).
    pub receiver: Option<Result<Vec<u8>, Error>>,
    /// Invariant breaks seen during the run (an event contradicting an
    /// earlier one, a stall).
    pub violations: Vec<String>,
    /// Virtual time the run took.
    pub elapsed: Duration,
    /// When the initiator learned its outcome, after the start.
    pub initiator_done: Option<Duration>,
    /// When the receiver started, after the initiator's start.
    pub receiver_started: Option<Duration>,
    /// When the receiver learned its outcome, after the initiator's start.
    pub receiver_done: Option<Duration>,
    /// Requests the server handled.
    pub requests: u64,
    /// Client restarts.
    pub restarts: u32,
    /// Channels left open at the end.
    pub channels_left: usize,
    /// Whether a close from the initiator, and from the receiver, ever
    /// reached the server (all of a side's attempts can be lost).
    pub close_delivered: [bool; 2],
    /// Packets to or from the initiator, and the receiver, that the
    /// network lost.
    pub dropped: [u32; 2],
}

const INITIATOR: usize = 0;
const RECEIVER: usize = 1;
const START: Timestamp = Timestamp::from_millis(1_700_000_000_000);
const MAX_STEPS: usize = 200_000;

#[derive(Debug)]
enum Packet {
    ToServer { from: usize, incarnation: u32, id: RequestId, path: &'static str, body: Vec<u8> },
    ToClient { to: usize, incarnation: u32, id: RequestId, status: u16, body: Vec<u8> },
}

#[derive(Debug)]
struct Waiter {
    from: usize,
    incarnation: u32,
    id: RequestId,
    request: Request,
    deadline: Timestamp,
}

#[derive(Default)]
struct Node {
    /// How far this client's clock is ahead of the server's.
    clock_offset_ms: i64,
    exchange: Option<Exchange>,
    incarnation: u32,
    restarts: u32,
    outcome: Option<Result<Vec<u8>, Error>>,
    code: Option<Code>,
    confirm_at: Option<Timestamp>,
}

struct Sim<'a> {
    scenario: &'a Scenario,
    rng: SimRng,
    now: Timestamp,
    server: Rendezvous,
    nodes: [Node; 2],
    packets: BTreeMap<(Timestamp, u64), Packet>,
    packet_seq: u64,
    waiters: Vec<Waiter>,
    receiver_at: Option<(Timestamp, Code)>,
    report: Report,
}

/// Runs `scenario` to the end (both sides finished, or nothing left to happen).
pub fn run(scenario: &Scenario) -> Report {
    let mut rng = SimRng::new(scenario.seed);
    let initiator = Exchange::initiator(scenario.config.clone(), scenario.initiator_data.clone(), rng.bytes32())
        .expect("valid data");
    let mut sim = Sim {
        scenario,
        rng,
        now: START,
        server: Rendezvous::new(scenario.server.clone()),
        nodes: [Node::default(), Node::default()],
        packets: BTreeMap::new(),
        packet_seq: 0,
        waiters: Vec::new(),
        receiver_at: None,
        report: Report::default(),
    };
    sim.nodes[INITIATOR].clock_offset_ms = scenario.clock_offsets_ms[INITIATOR];
    sim.nodes[RECEIVER].clock_offset_ms = scenario.clock_offsets_ms[RECEIVER];
    let start = sim.clock(INITIATOR);
    sim.nodes[INITIATOR].exchange = Some(initiator);
    sim.nodes[INITIATOR].exchange.as_mut().expect("just set").start(start);
    sim.run();
    sim.report.elapsed = sim.now.saturating_since(START);
    sim.report.initiator = sim.nodes[INITIATOR].outcome.clone();
    sim.report.receiver = sim.nodes[RECEIVER].outcome.clone();
    sim.report.channels_left = sim.server.stats().channels;
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

    fn run(&mut self) {
        for _ in 0..MAX_STEPS {
            self.drain_clients();
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
        }
        self.report.violations.push(format!("no end after {MAX_STEPS} steps"));
    }

    fn done(&self) -> bool {
        let finished = |n: &Node| n.exchange.as_ref().is_none_or(Exchange::is_finished);
        finished(&self.nodes[INITIATOR]) && finished(&self.nodes[RECEIVER]) && self.receiver_at.is_none()
    }

    fn next_time(&self) -> Option<Timestamp> {
        let nodes = self.nodes.iter();
        let packet = self.packets.keys().next().map(|k| k.0);
        // A client's wake-up time is on its own clock.
        let timeouts =
            nodes.clone().filter_map(|n| Some(shifted(n.exchange.as_ref()?.poll_timeout()?, -n.clock_offset_ms)));
        let confirms = nodes.filter_map(|n| n.confirm_at);
        let waiters = self.waiters.iter().map(|w| w.deadline);
        let receiver = self.receiver_at.as_ref().map(|r| r.0);
        packet.into_iter().chain(timeouts).chain(confirms).chain(waiters).chain(receiver).min()
    }

    fn delay(&mut self) -> Duration {
        let f = &self.scenario.faults;
        Duration::from_millis(self.rng.range(f.min_delay_ms, f.max_delay_ms))
    }

    /// Puts a packet on the wire, subject to loss, delay and duplication.
    fn send(&mut self, make: impl Fn() -> Packet) {
        if self.rng.chance(self.scenario.faults.drop_percent) {
            let (Packet::ToServer { from: who, .. } | Packet::ToClient { to: who, .. }) = make();
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
        for who in [INITIATOR, RECEIVER] {
            let now = self.clock(who);
            let Some(exchange) = self.nodes[who].exchange.as_mut() else { continue };
            let mut outgoing = Vec::new();
            while let Some(t) = exchange.poll_transmit(now) {
                outgoing.push((t.id(), t.path(), t.body()));
            }
            let mut events = Vec::new();
            while let Some(event) = exchange.poll_event() {
                events.push(event);
            }
            let incarnation = self.nodes[who].incarnation;
            for (id, path, body) in outgoing {
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
                    self.report.violations.push(format!("side {who} announced a different code after a restart"));
                }
                node.code = Some(code.clone());
                if who == INITIATOR && self.receiver_at.is_none() && self.nodes[RECEIVER].exchange.is_none() {
                    let typing = Duration::from_millis(self.rng.range(0, self.scenario.typing_delay_ms));
                    let typed = if self.scenario.wrong_code { mistype(&code) } else { code };
                    self.receiver_at = Some((self.now + typing, typed));
                }
            }
            Event::Verifier(_) => {
                if self.scenario.config.confirms_verifier() && node.confirm_at.is_none() {
                    node.confirm_at = Some(self.now + Duration::from_millis(self.rng.range(0, 10_000)));
                }
            }
            Event::Outcome(outcome) => self.record_outcome(who, outcome),
        }
    }

    fn record_outcome(&mut self, who: usize, outcome: Result<Vec<u8>, Error>) {
        let at = Some(self.now.saturating_since(START));
        let done = if who == INITIATOR { &mut self.report.initiator_done } else { &mut self.report.receiver_done };
        *done = done.or(at);
        let node = &mut self.nodes[who];
        match &node.outcome {
            Some(earlier) if *earlier != outcome => {
                self.report.violations.push(format!("side {who} changed its outcome from {earlier:?} to {outcome:?}"));
            }
            _ => node.outcome = Some(outcome),
        }
    }

    fn deliver_due(&mut self) {
        while let Some(entry) = self.packets.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            match entry.remove() {
                Packet::ToServer { from, incarnation, id, path, body } => {
                    self.server_receive(from, incarnation, id, path, &body)
                }
                Packet::ToClient { to, incarnation, id, status, body } => {
                    let now = self.clock(to);
                    let node = &mut self.nodes[to];
                    if node.incarnation == incarnation {
                        if let Some(exchange) = node.exchange.as_mut() {
                            exchange.handle_response(now, id, status, &body);
                        }
                    }
                }
            }
        }
        let (due, waiting): (Vec<Waiter>, Vec<Waiter>) =
            std::mem::take(&mut self.waiters).into_iter().partition(|w| w.deadline <= self.now);
        self.waiters = waiting;
        for waiter in due {
            self.answer(waiter.from, waiter.incarnation, waiter.id, &waiter.request);
        }
        if let Some((at, code)) = self.receiver_at.clone() {
            if at <= self.now {
                self.receiver_at = None;
                self.start_receiver(code);
            }
        }
        for who in [INITIATOR, RECEIVER] {
            let now = self.clock(who);
            let node = &mut self.nodes[who];
            let Some(exchange) = node.exchange.as_mut() else { continue };
            if node.confirm_at.is_some_and(|t| t <= self.now) {
                node.confirm_at = None;
                exchange.confirm_verifier(now, true);
            }
            exchange.handle_timeout(now);
        }
    }

    fn start_receiver(&mut self, code: Code) {
        let seed = self.rng.bytes32();
        let data = self.scenario.receiver_data.clone();
        let mut receiver = Exchange::receiver(self.scenario.config.clone(), code, data, seed).expect("valid data");
        receiver.start(self.clock(RECEIVER));
        self.nodes[RECEIVER].exchange = Some(receiver);
        self.report.receiver_started = Some(self.now.saturating_since(START));
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
        if matches!(request, Request::Close(_)) {
            self.report.close_delivered[from] = true;
        }
        // As the real server does: apply the request, wake the channel's other
        // long-polls, then hold this one while its log has no news for its side.
        let result = self.server.handle(self.now, &request);
        if result.is_ok() && request.wakes_waiters() {
            self.wake(&request);
        }
        let wait = Duration::from_millis(request.wait_ms()).min(self.server.config().max_wait);
        if !wait.is_zero() && result.as_ref().is_ok_and(|r| r.waits_for_news(request.side())) {
            let deadline = self.now + wait;
            self.waiters.push(Waiter { from, incarnation, id, request, deadline });
            return;
        }
        self.answer_with(from, incarnation, id, result);
    }

    /// Re-runs the long-polls of the channel that `request` just changed and
    /// answers those that now have news.
    fn wake(&mut self, request: &Request) {
        let (appid, channel) = (request.appid().to_string(), request.channel());
        let (woken, mut waiting): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| w.request.appid() == appid && w.request.channel() == channel);
        for waiter in woken {
            let result = self.server.handle(self.now, &waiter.request);
            if result.as_ref().is_ok_and(|r| r.waits_for_news(waiter.request.side())) {
                waiting.push(waiter);
            } else {
                self.answer_with(waiter.from, waiter.incarnation, waiter.id, result);
            }
        }
        self.waiters = waiting;
    }

    fn answer(&mut self, from: usize, incarnation: u32, id: RequestId, request: &Request) {
        let result = self.server.handle(self.now, request);
        self.answer_with(from, incarnation, id, result);
    }

    fn answer_with(&mut self, from: usize, incarnation: u32, id: RequestId, result: Result<Response, WireError>) {
        let (status, body) = match result {
            Ok(response) => (200, response.to_json()),
            Err(e) => (e.http_status(), e.to_json()),
        };
        self.reply(from, incarnation, id, status, body);
    }

    fn reply(&mut self, to: usize, incarnation: u32, id: RequestId, status: u16, body: Vec<u8>) {
        self.send(|| Packet::ToClient { to, incarnation, id, status, body: body.clone() });
    }

    fn maybe_restart(&mut self) {
        for who in [INITIATOR, RECEIVER] {
            let faults = &self.scenario.faults;
            let node = &self.nodes[who];
            if node.exchange.is_none()
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
                    node.clock_offset_ms += if self.rng.chance(50) { forward } else { -back };
                    self.report.restarts += 1;
                }
                Err(e) => self.report.violations.push(format!("side {who} could not restore its own state: {e}")),
            }
        }
    }
}

/// The code with its first word replaced by another word: what a person
/// who mistyped it (or an attacker guessing) would send.
fn mistype(code: &Code) -> Code {
    let mut words: Vec<&str> = code.words().iter().map(String::as_str).collect();
    words[0] = if words[0] == "wrongword" { "otherword" } else { "wrongword" };
    Code::new(code.channel(), &words).expect("valid words")
}

/// Checks a run's invariants: never wrong data, never a contradiction, and
/// the expected ending for the scenario. Returns what went wrong.
pub fn check(scenario: &Scenario, report: &Report) -> Result<(), String> {
    if !report.violations.is_empty() {
        return Err(report.violations.join("; "));
    }
    // Each lost packet can cost a side up to a whole long-poll, the request
    // timeout and a retry interval. A side whose losses add up to the time it
    // had may time out through no fault of the protocol, and its peer may then
    // see it leave `lonely`. (Rare with mild loss rates, but the fuzzer finds
    // such runs.)
    let config = &scenario.config;
    let worst_loss = config.long_poll() + config.request_timeout() + config.schedule().interval_at(config.timeout());
    let had = config.timeout().saturating_sub(report.receiver_started.unwrap_or_default());
    let lost_the_time = |who: usize| u128::from(report.dropped[who]) * worst_loss.as_millis() >= had.as_millis();
    let sides = [
        ("initiator", &report.initiator, &scenario.receiver_data, INITIATOR, RECEIVER),
        ("receiver", &report.receiver, &scenario.initiator_data, RECEIVER, INITIATOR),
    ];
    for (name, outcome, peer_data, me, peer) in sides {
        // A wrong code reaches the side that did not detect it only through the
        // detecting side's `scary` close; if every attempt of that close was lost,
        // waiting out the timeout is all it can do.
        let close_lost = scenario.wrong_code && !report.close_delivered[peer];
        let tolerable = |e: &Error| {
            ((close_lost || lost_the_time(me)) && *e == Error::Timeout)
                || (lost_the_time(peer) && *e == Error::PeerClosed { mood: Mood::Lonely })
                || scenario.severe
                    && matches!(
                        e,
                        Error::Timeout
                            | Error::ServerUnreachable { .. }
                            | Error::PeerClosed { mood: Mood::Lonely }
                            | Error::UnknownChannel
                    )
        };
        match outcome {
            Some(Ok(_)) if scenario.wrong_code => return Err(format!("{name} completed despite a wrong code")),
            Some(Ok(data)) if data != peer_data => return Err(format!("{name} received wrong data")),
            Some(Ok(_)) => {}
            Some(Err(Error::WrongCode)) if scenario.wrong_code => {}
            Some(Err(e)) if tolerable(e) => {}
            Some(Err(e)) => return Err(format!("{name} failed with {e:?}")),
            None if scenario.severe && name == "receiver" => {} // The initiator never got a code.
            None => return Err(format!("{name} never finished")),
        }
    }
    Ok(())
}

/// How many seeds the simulation suite runs: `WORMHOLE_SIM_SEEDS`, or `default`.
pub fn seed_count(default: u64) -> u64 {
    std::env::var("WORMHOLE_SIM_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
