//! Simulation of the magic-wormhole flavour: two
//! [`MailboxExchange`]s and a mailbox server (the rendezvous state machine
//! behind the mailbox protocol's connection rules) over simulated
//! WebSockets in virtual time. Faults are seeded: delays, dropped
//! connections (with what was in flight), server restarts from its
//! snapshot, client restarts from their saved state, a wrong code.
//!
//! ```
//! use wormhole_sync_core::sim::mailbox::{run, MailboxScenario};
//!
//! let report = run(&MailboxScenario::from_seed(7));
//! assert!(report.outcomes.iter().all(|o| o.is_some()));
//! ```

use std::collections::VecDeque;
use std::time::Duration;

use super::scenario::SimRng;
use crate::exchange::Event;
use crate::magic_wormhole::{MailboxExchange, Transmit};
use crate::mailbox_wire::ServerMessage;
use crate::rendezvous::{seconds, MailboxSession, Rendezvous, RendezvousConfig};
use crate::time::Timestamp;
use crate::{Config, Error, Schedule, TransportError};

const START: Timestamp = Timestamp::from_millis(1_700_000_000_000);
const MAX_STEPS: usize = 200_000;
const APPID: &str = "lothar.com/wormhole/text-or-file-xfer";

/// A mailbox server over [`Rendezvous`]: the real server's connection
/// rules ([`MailboxSession`]) and operations ([`Rendezvous::apply`]),
/// without limits or storage.
pub struct MailboxServer {
    /// The state behind it.
    pub rendezvous: Rendezvous,
}

impl MailboxServer {
    /// Answers one frame of a connection, then pushes what its open
    /// mailbox has new, as the server does once a frame is answered.
    pub(crate) fn on_frame(&mut self, session: &mut MailboxSession, now: Timestamp, frame: &str) -> Vec<String> {
        let replies = session.answer_locally(&mut self.rendezvous, now, frame.as_bytes());
        replies.iter().map(|m| m.to_json(seconds(now))).collect()
    }

    /// Messages of the connection's open mailbox it was not sent yet.
    pub(crate) fn news(&self, session: &mut MailboxSession, now: Timestamp) -> Vec<String> {
        session.news_locally(&self.rendezvous).iter().map(|m| m.to_json(seconds(now))).collect()
    }
}

/// What a run varies.
#[derive(Clone, Debug)]
pub struct MailboxScenario {
    /// Seeds the faults and both sides' secrets.
    pub seed: u64,
    /// The receiver types a code with another word.
    pub wrong_code: bool,
    /// Per-step chance, in percent, that a client's connection drops.
    pub drop_percent: u64,
    /// Chance, in percent per step, that the server restarts.
    pub restart_percent: u64,
    /// Chance, in percent per step, that a client restarts from its saved state.
    pub client_restart_percent: u64,
}

impl MailboxScenario {
    /// Faults drawn from `seed`: about one run in four has none, one in
    /// eight a wrong code.
    pub fn from_seed(seed: u64) -> MailboxScenario {
        let mut rng = SimRng::new(seed ^ 0x006d_6169_6c62_6f78);
        let calm = rng.chance(25);
        MailboxScenario {
            seed,
            wrong_code: rng.chance(12),
            drop_percent: if calm { 0 } else { rng.range(0, 4) },
            restart_percent: if calm { 0 } else { rng.range(0, 2) },
            client_restart_percent: if calm { 0 } else { rng.range(0, 3) },
        }
    }
}

/// How a run ended.
#[derive(Debug)]
pub struct MailboxReport {
    /// Each side's outcome (initiator, receiver), if it had one.
    pub outcomes: [Option<Result<Vec<u8>, Error>>; 2],
    /// The verifier each side announced, if any.
    pub verifiers: [Option<[u8; 32]>; 2],
    /// Whether each side finished (closed its mailbox or gave up closing).
    pub finished: [bool; 2],
    /// The data each side was given.
    pub data: [Vec<u8>; 2],
    /// Faults that happened: dropped connections, server restarts, client restarts.
    pub faults: [usize; 3],
}

struct Side {
    exchange: Option<MailboxExchange>,
    connection: Option<Link>,
    outcome: Option<Result<Vec<u8>, Error>>,
    verifier: Option<[u8; 32]>,
}

/// A simulated WebSocket: frames each way, in order, each with the time it arrives.
struct Link {
    server: MailboxSession,
    to_server: VecDeque<(Timestamp, String)>,
    to_client: VecDeque<(Timestamp, String)>,
    /// The connection is being opened; it is up at this time.
    opens_at: Option<Timestamp>,
}

/// Runs one scenario to its end (both sides finished, or the step limit).
pub fn run(scenario: &MailboxScenario) -> MailboxReport {
    let mut rng = SimRng::new(scenario.seed);
    let rendezvous_config = RendezvousConfig::default();
    let mut server = MailboxServer { rendezvous: Rendezvous::new(rendezvous_config.clone(), rng.bytes32()) };
    let config = Config::new(APPID)
        .expect("a valid app id")
        .with_schedule(Schedule::every(Duration::from_millis(500)).expect("a valid schedule"))
        .with_timeout(Duration::from_secs(600));
    let data = [b"from the initiator".to_vec(), b"from the receiver".to_vec()];
    let receiver_seed = rng.bytes32();
    let mut sides = [
        Side {
            exchange: Some(MailboxExchange::initiator(config.clone(), data[0].clone(), rng.bytes32()).expect("valid")),
            connection: None,
            outcome: None,
            verifier: None,
        },
        Side { exchange: None, connection: None, outcome: None, verifier: None },
    ];
    let mut now = START;
    let mut faults = [0; 3];
    sides[0].exchange.as_mut().expect("made").start(now);
    for _ in 0..MAX_STEPS {
        // Each side: events, then what it wants sent.
        let mut shown_code = None;
        for (i, side) in sides.iter_mut().enumerate() {
            let Some(exchange) = side.exchange.as_mut() else { continue };
            while let Some(event) = exchange.poll_event() {
                match event {
                    Event::Code(code) if i == 0 => shown_code = Some(code),
                    Event::Verifier(v) => side.verifier = Some(*v.as_bytes()),
                    Event::Outcome(outcome) => side.outcome = Some(outcome),
                    _ => {}
                }
            }
        }
        if let (Some(code), None) = (shown_code, &sides[1].exchange) {
            let typed = if scenario.wrong_code { super::mistype(&code) } else { code };
            let mut receiver =
                MailboxExchange::receiver(config.clone(), typed, data[1].clone(), receiver_seed).expect("valid");
            receiver.start(now);
            sides[1].exchange = Some(receiver);
        }
        for side in &mut sides {
            let Some(exchange) = side.exchange.as_mut() else { continue };
            while let Some(transmit) = exchange.poll_transmit(now) {
                match transmit {
                    Transmit::Connect { .. } => {
                        let delay = Duration::from_millis(rng.range(1, 50));
                        side.connection = Some(Link {
                            server: MailboxSession::new(false),
                            to_server: VecDeque::new(),
                            to_client: VecDeque::new(),
                            opens_at: Some(now + delay),
                        });
                    }
                    Transmit::Frame(frame) => {
                        let link = side.connection.as_mut().expect("frames only on an open connection");
                        let at = link.to_server.back().map_or(now, |(t, _)| *t).max(now);
                        link.to_server.push_back((at + Duration::from_millis(rng.range(1, 40)), frame));
                    }
                    Transmit::Disconnect => {
                        side.connection = None;
                        exchange.handle_disconnected(now, TransportError::from_message("closed by the client"));
                    }
                }
            }
        }
        let finished = sides.iter().all(|s| s.exchange.as_ref().is_some_and(MailboxExchange::is_finished));
        if finished {
            break;
        }
        // Faults.
        for side in &mut sides {
            let (Some(exchange), Some(_)) = (side.exchange.as_mut(), side.connection.as_ref()) else { continue };
            if rng.chance(scenario.drop_percent) {
                side.connection = None;
                faults[0] += 1;
                exchange.handle_disconnected(now, TransportError::from_message("connection reset"));
            }
        }
        if rng.chance(scenario.restart_percent) {
            faults[1] += 1;
            let snapshot = server.rendezvous.snapshot();
            server.rendezvous =
                Rendezvous::restore(rendezvous_config.clone(), snapshot, rng.bytes32()).expect("a snapshot restores");
            for side in &mut sides {
                if let (Some(exchange), Some(_)) = (side.exchange.as_mut(), side.connection.take()) {
                    exchange.handle_disconnected(now, TransportError::from_message("server restarted"));
                }
            }
        }
        for side in &mut sides {
            let Some(exchange) = side.exchange.as_ref() else { continue };
            if rng.chance(scenario.client_restart_percent) {
                faults[2] += 1;
                let saved = exchange.serialize();
                let mut restored = MailboxExchange::from_serialized(&saved).expect("a saved state restores");
                restored.start(now);
                side.exchange = Some(restored);
                side.connection = None;
            }
        }
        // The next thing to happen: a frame, a connection opening, a wake-up.
        let mut next: Option<Timestamp> = None;
        let mut consider = |t: Timestamp| next = Some(next.map_or(t, |n: Timestamp| n.min(t)));
        for side in &sides {
            if let Some(exchange) = &side.exchange {
                if let Some(t) = exchange.poll_timeout() {
                    consider(t);
                }
            }
            if let Some(link) = &side.connection {
                link.opens_at.into_iter().for_each(&mut consider);
                link.to_server.front().into_iter().for_each(|(t, _)| consider(*t));
                link.to_client.front().into_iter().for_each(|(t, _)| consider(*t));
            }
        }
        let Some(next) = next else { break };
        now = now.max(next);
        for side in &mut sides {
            let (Some(exchange), Some(link)) = (side.exchange.as_mut(), side.connection.as_mut()) else { continue };
            if link.opens_at.is_some_and(|t| t <= now) {
                link.opens_at = None;
                exchange.handle_connected(now);
                let welcome = ServerMessage::Welcome { motd: None, error: None }.to_json(0.0);
                link.to_client.push_back((now + Duration::from_millis(1), welcome));
            }
            while link.to_server.front().is_some_and(|(t, _)| *t <= now) {
                let (_, frame) = link.to_server.pop_front().expect("checked");
                for answer in server.on_frame(&mut link.server, now, &frame) {
                    let at = link.to_client.back().map_or(now, |(t, _)| *t).max(now);
                    link.to_client.push_back((at + Duration::from_millis(rng.range(1, 40)), answer));
                }
            }
            // Messages other connections added.
            for push in server.news(&mut link.server, now) {
                let at = link.to_client.back().map_or(now, |(t, _)| *t).max(now);
                link.to_client.push_back((at + Duration::from_millis(rng.range(1, 40)), push));
            }
            while link.to_client.front().is_some_and(|(t, _)| *t <= now) {
                let (_, frame) = link.to_client.pop_front().expect("checked");
                exchange.handle_frame(now, frame.as_bytes());
            }
        }
        for side in &mut sides {
            if let Some(exchange) = side.exchange.as_mut() {
                exchange.handle_timeout(now);
            }
        }
    }
    MailboxReport {
        finished: [0, 1].map(|i| sides[i].exchange.as_ref().is_some_and(MailboxExchange::is_finished)),
        outcomes: sides.each_mut().map(|s| s.outcome.take()),
        verifiers: [sides[0].verifier, sides[1].verifier],
        data,
        faults,
    }
}

/// Checks a run against what its scenario promises: with the right code,
/// each side gets the other's data and the same verifier; with a wrong
/// one, neither gets data, and both fail loudly (a wrong code, or the
/// mailbox burned by the other's wrong code).
pub fn check(scenario: &MailboxScenario, report: &MailboxReport) -> Result<(), String> {
    let [Some(first), Some(second)] = &report.outcomes else {
        return Err(format!("a side has no outcome: {report:?}"));
    };
    if scenario.wrong_code {
        let loud = |o: &Result<Vec<u8>, Error>| matches!(o, Err(Error::WrongCode | Error::ChannelBurned));
        if !(loud(first) && loud(second)) || [first, second].iter().all(|o| !matches!(o, Err(Error::WrongCode))) {
            return Err(format!("a wrong code was not reported on both sides: {report:?}"));
        }
        if report.verifiers.iter().any(Option::is_some) {
            return Err("a verifier was announced with a wrong code".into());
        }
    } else {
        if first.as_ref().ok() != Some(&report.data[1]) || second.as_ref().ok() != Some(&report.data[0]) {
            return Err(format!("the data did not arrive: {report:?}"));
        }
        if report.verifiers[0].is_none() || report.verifiers[0] != report.verifiers[1] {
            return Err("the verifiers differ".into());
        }
    }
    if !report.finished.iter().all(|f| *f) {
        return Err(format!("a side did not finish: {report:?}"));
    }
    Ok(())
}
