//! An initiator and a receiver whose every request passes through the
//! fuzzer, which plays the network and a hostile server: it delivers
//! honestly, loses requests or answers, forges answers, flips bytes in real
//! answers, slips invented messages into real logs, moves time, restarts
//! either side from its saved state, confirms, declines and cancels.
//! Checked after every step:
//!
//! - a side reports data only if it is exactly what its peer sent (nothing
//!   that failed to decrypt and authenticate ever gets out), and never with
//!   a wrong code;
//! - a side never posts two different bodies in one phase, across restarts;
//! - a finished side sends no request and asks for no wake-up;
//! - an outcome, once announced, never changes, also after a restore;
//! - a saved state restores and saves back to the same bytes.

use std::collections::BTreeMap;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};

use crate::code::Code;
use crate::config::Config;
use crate::error::TransportError;
use crate::exchange::{Event, Exchange, Transmit};
use crate::rendezvous::Rendezvous;
use crate::rendezvous::RendezvousConfig;
use crate::time::Timestamp;
use crate::wire::{Log, Message, Request, Response};
use crate::Error;

const DATA: [&[u8]; 2] = [b"initiator's data", b"receiver's data"];

#[derive(Arbitrary, Debug)]
enum Op {
    /// The server handles the request and its answer arrives.
    Deliver {
        side: bool,
        pick: u8,
    },
    /// The request is lost (`handled`: after the server handled it); the
    /// client learns of a broken connection.
    Lose {
        side: bool,
        pick: u8,
        handled: bool,
    },
    /// An answer the server never gave.
    Forge {
        side: bool,
        pick: u8,
        status: u16,
        body: Vec<u8>,
    },
    /// The server's real answer with one byte changed.
    Flip {
        side: bool,
        pick: u8,
        at: u16,
        mask: u8,
    },
    /// The server's real answer with an invented message in its log.
    Inject {
        side: bool,
        pick: u8,
        from_peer: bool,
        phase: u8,
        body: String,
    },
    /// Time passes to the side's next wake-up, or by `millis`.
    Wake {
        side: bool,
    },
    Advance {
        millis: u32,
    },
    /// The side saves its state, stops, and starts again from it.
    Restart {
        side: bool,
    },
    Confirm {
        side: bool,
        accept: bool,
    },
    Cancel {
        side: bool,
    },
}

struct Side {
    exchange: Exchange,
    pending: Vec<Transmit>,
    outcome: Option<Result<Vec<u8>, Error>>,
    /// Every body this side ever posted, by phase.
    posted: BTreeMap<String, String>,
}

impl Side {
    fn new(exchange: Exchange) -> Side {
        Side { exchange, pending: Vec::new(), outcome: None, posted: BTreeMap::new() }
    }
}

struct World {
    server: Rendezvous,
    now: Timestamp,
    sides: Vec<Side>,
    wrong_code: bool,
    receiver_seed: [u8; 32],
}

/// Runs one fuzzer-chosen sequence, panicking with the broken invariant if any.
pub fn run(data: &[u8]) {
    let mut input = Unstructured::new(data);
    let (Ok(wrong_code), Ok(confirms)) = (bool::arbitrary(&mut input), bool::arbitrary(&mut input)) else { return };
    let Ok(ops) = Vec::<Op>::arbitrary_take_rest(input) else { return };
    let config = Config::new("fuzz.example/exchange")
        .expect("valid appid")
        .with_verifier_confirmation(confirms)
        .with_timeout(Duration::from_secs(600));
    let initiator = Exchange::initiator(config, DATA[0].to_vec(), [1; 32]).expect("small data");
    let mut world = World {
        server: Rendezvous::new(RendezvousConfig::default(), [7; 32]),
        now: Timestamp::from_millis(1_700_000_000_000),
        sides: vec![Side::new(initiator)],
        wrong_code,
        receiver_seed: [2; 32],
    };
    world.sides[0].exchange.start(world.now);
    world.collect();
    let trace = super::tracing();
    for op in ops.iter().take(300) {
        if trace {
            eprintln!("{op:?}");
        }
        world.step(op);
        world.collect();
    }
}

impl World {
    /// Takes every due request and event from both sides, checking them.
    fn collect(&mut self) {
        for who in 0..self.sides.len() {
            let now = self.now;
            let side = &mut self.sides[who];
            let finished = side.exchange.is_finished();
            while let Some(transmit) = side.exchange.poll_transmit(now) {
                assert!(!finished, "side {who} sent {:?} after finishing", transmit.request());
                if let Request::Post(post) = transmit.request() {
                    let earlier = side.posted.entry(post.phase.clone()).or_insert_with(|| post.body.clone());
                    assert_eq!(*earlier, post.body, "side {who} posted two bodies in phase {}", post.phase);
                }
                side.pending.push(transmit);
            }
            if finished {
                assert_eq!(side.exchange.poll_timeout(), None, "side {who} asks to wake after finishing");
            }
            let mut code = None;
            while let Some(event) = side.exchange.poll_event() {
                match event {
                    Event::Outcome(outcome) => {
                        if let Ok(data) = &outcome {
                            assert!(!self.wrong_code, "side {who} got data with a wrong code");
                            assert_eq!(data.as_slice(), DATA[1 - who], "side {who} got data its peer never sent");
                        }
                        if let Some(earlier) = &side.outcome {
                            assert_eq!(*earlier, outcome, "side {who}'s outcome changed");
                        }
                        side.outcome = Some(outcome);
                    }
                    Event::Code(c) => code = Some(c),
                    _ => {}
                }
            }
            if let (0, Some(code), 1) = (who, code, self.sides.len()) {
                self.start_receiver(code);
            }
        }
    }

    fn start_receiver(&mut self, code: Code) {
        let code = if self.wrong_code { crate::sim::mistype(&code) } else { code };
        let config = self.sides[0].exchange.config().clone();
        let mut receiver = Exchange::receiver(config, code, DATA[1].to_vec(), self.receiver_seed).expect("small data");
        receiver.start(self.now);
        self.sides.push(Side::new(receiver));
    }

    fn take(&mut self, side: bool, pick: u8) -> Option<(usize, Transmit)> {
        let who = usize::from(side);
        let pending = &mut self.sides.get_mut(who)?.pending;
        if pending.is_empty() {
            return None;
        }
        let index = usize::from(pick) % pending.len();
        Some((who, pending.remove(index)))
    }

    /// What the honest server answers: status and body.
    fn serve(&mut self, transmit: &Transmit) -> (u16, Result<Response, Vec<u8>>) {
        match self.server.handle(self.now, transmit.request()) {
            Ok(response) => (200, Ok(response)),
            Err(e) => (e.http_status(), Err(e.to_json())),
        }
    }

    fn step(&mut self, op: &Op) {
        let now = self.now;
        match *op {
            Op::Deliver { side, pick } => {
                let Some((who, t)) = self.take(side, pick) else { return };
                let (status, answer) = self.serve(&t);
                let body = answer.map_or_else(|e| e, |r| r.to_json());
                self.sides[who].exchange.handle_response(now, t.id(), status, &body);
            }
            Op::Lose { side, pick, handled } => {
                let Some((who, t)) = self.take(side, pick) else { return };
                if handled {
                    let _ = self.serve(&t);
                }
                let lost = TransportError::from_message("connection reset");
                self.sides[who].exchange.handle_transport_error(now, t.id(), lost);
            }
            Op::Forge { side, pick, status, ref body } => {
                let Some((who, t)) = self.take(side, pick) else { return };
                self.sides[who].exchange.handle_response(now, t.id(), status % 600, body);
            }
            Op::Flip { side, pick, at, mask } => {
                let Some((who, t)) = self.take(side, pick) else { return };
                let (status, answer) = self.serve(&t);
                let mut body = answer.map_or_else(|e| e, |r| r.to_json());
                if !body.is_empty() {
                    let at = usize::from(at) % body.len();
                    body[at] ^= mask;
                }
                self.sides[who].exchange.handle_response(now, t.id(), status, &body);
            }
            Op::Inject { side, pick, from_peer, phase, ref body } => {
                let Some((who, t)) = self.take(side, pick) else { return };
                let (status, answer) = self.serve(&t);
                let body = match answer {
                    Ok(mut response) => {
                        let sender = if from_peer { self.peer_side(who) } else { "stranger".to_string() };
                        let phase = ["pake", "data", "other"][usize::from(phase) % 3];
                        if let Some(log) = log_of(&mut response) {
                            let seq = log.messages.last().map_or(1, |m| m.seq + 1);
                            log.messages.push(Message::new(seq, sender, phase, body.clone()));
                        }
                        response.to_json()
                    }
                    Err(e) => e,
                };
                self.sides[who].exchange.handle_response(now, t.id(), status, &body);
            }
            Op::Wake { side } => {
                let who = usize::from(side);
                let Some(at) = self.sides.get(who).and_then(|s| s.exchange.poll_timeout()) else { return };
                self.now = self.now.max(at);
                self.tick();
            }
            Op::Advance { millis } => {
                self.now = self.now + Duration::from_millis(u64::from(millis % 600_000));
                self.tick();
            }
            Op::Restart { side } => {
                let who = usize::from(side);
                let Some(s) = self.sides.get_mut(who) else { return };
                let saved = s.exchange.serialize();
                let restored = Exchange::from_serialized(&saved).expect("own state restores");
                assert_eq!(restored.serialize(), saved, "side {who}'s state saved back differently");
                s.exchange = restored;
                // What was in flight died with the process.
                s.pending.clear();
            }
            Op::Confirm { side, accept } => {
                if let Some(s) = self.sides.get_mut(usize::from(side)) {
                    s.exchange.confirm_verifier(now, accept);
                }
            }
            Op::Cancel { side } => {
                if let Some(s) = self.sides.get_mut(usize::from(side)) {
                    s.exchange.cancel(now);
                }
            }
        }
    }

    fn tick(&mut self) {
        for side in &mut self.sides {
            side.exchange.handle_timeout(self.now);
        }
    }

    /// The peer's side id as the server knows it (the allocating side is
    /// the channel's first member), or a made-up one before it joined.
    fn peer_side(&self, who: usize) -> String {
        let snapshot = self.server.snapshot();
        let member = snapshot.mailboxes.first().and_then(|c| c.members.get(1 - who));
        member.map_or_else(|| "peer".to_string(), |m| m.side.clone())
    }
}

fn log_of(response: &mut Response) -> Option<&mut Log> {
    match response {
        Response::Joined(j) => j.log.as_mut(),
        Response::Posted(p) => p.log.as_mut(),
        Response::Fetched(log) => Some(log),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn empty_and_short_inputs_run() {
        super::run(&[]);
        super::run(&[1, 0, 0, 0, 0, 0, 1, 1, 1, 1]);
    }
}
