//! Two magic-wormhole flavour exchanges whose WebSocket frames pass through
//! the fuzzer, which plays the network and a hostile mailbox server: it
//! delivers frames each way in order, drops connections (with what was in
//! flight), forges frames (from the protocol's vocabulary or raw bytes),
//! flips bytes in real ones, restarts the server and either side from its
//! saved state, moves time and cancels. Checked after every step:
//!
//! - a side reports data only if it is exactly what its peer sent, and
//!   never with a wrong code;
//! - a side never adds two different bodies in one phase, across restarts;
//! - a finished side neither connects nor sends, and asks for no wake-up;
//! - an outcome, once announced, never changes, also after a restore;
//! - a saved state restores and saves back to the same bytes;
//! - `Debug` never shows the data.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};

use crate::config::Config;
use crate::error::TransportError;
use crate::exchange::Event;
use crate::magic_wormhole::{MailboxExchange, Transmit};
use crate::mailbox_wire::{ClientMessage, ServerMessage};
use crate::rendezvous::MailboxSession;
use crate::rendezvous::{Rendezvous, RendezvousConfig};
use crate::sim::mailbox::MailboxServer;
use crate::time::Timestamp;
use crate::wire::MailboxId;
use crate::Error;

const DATA: [&[u8]; 2] = [b"initiator's data", b"receiver's data"];

#[derive(Arbitrary, Debug)]
enum Op {
    /// The side's oldest frame reaches the server, which answers.
    ToServer {
        side: bool,
    },
    /// The oldest frame for the side reaches it.
    ToClient {
        side: bool,
    },
    /// The server pushes what other connections added.
    News {
        side: bool,
    },
    /// The connection breaks; frames in flight are lost.
    Drop {
        side: bool,
    },
    /// A frame the server never sent.
    Forge {
        side: bool,
        frame: Forged,
    },
    /// The oldest frame for the side, with one byte changed.
    Flip {
        side: bool,
        at: u16,
        mask: u8,
    },
    Advance {
        millis: u32,
    },
    /// Time passes to the side's next wake-up.
    Wake {
        side: bool,
    },
    /// The side saves its state, stops, and starts again from it.
    Restart {
        side: bool,
    },
    /// The server restarts from its state; every connection breaks.
    ServerRestart,
    Cancel {
        side: bool,
    },
}

#[derive(Arbitrary, Debug)]
enum Forged {
    Raw(Vec<u8>),
    Welcome { error: bool },
    Allocated { nameplate: u32 },
    Claimed { mailbox: u8 },
    Released,
    Closed,
    Message { from_peer: bool, phase: u8, body: Vec<u8> },
    Error { error: u8, orig: u8 },
}

fn forged_json(frame: &Forged, peer: &str) -> Vec<u8> {
    let message = match frame {
        Forged::Raw(bytes) => return bytes.clone(),
        Forged::Welcome { error } => {
            ServerMessage::Welcome { motd: None, error: error.then(|| "closed for maintenance".to_string()) }
        }
        Forged::Allocated { nameplate } => ServerMessage::Allocated { nameplate: nameplate.to_string() },
        Forged::Claimed { mailbox } => {
            ServerMessage::Claimed { mailbox: MailboxId::new(format!("m{mailbox}")).expect("a valid id") }
        }
        Forged::Released => ServerMessage::Released,
        Forged::Closed => ServerMessage::Closed,
        Forged::Message { from_peer, phase, body } => ServerMessage::Message {
            side: if *from_peer { peer.to_string() } else { "stranger".to_string() },
            phase: ["pake", "version", "0", "1"][usize::from(*phase) % 4].to_string(),
            body: crate::magic_wormhole::crypto::hex(body),
            server_rx: 0.0,
            id: None,
        },
        Forged::Error { error, orig } => {
            let error =
                ["crowded", "reclaimed", "burned: gone", "unknown-channel: no", "nonsense"][usize::from(*error) % 5];
            let refused = ["claim", "add", "open", "close", "release"][usize::from(*orig) % 5];
            ServerMessage::Error { error: error.to_string(), orig: serde_json::json!({ "type": refused }) }
        }
    };
    message.to_json(0.0).into_bytes()
}

/// A connection as the fuzzer holds it.
struct Wire {
    server: MailboxSession,
    to_server: VecDeque<String>,
    to_client: VecDeque<Vec<u8>>,
}

struct Side {
    exchange: MailboxExchange,
    wire: Option<Wire>,
    outcome: Option<Result<Vec<u8>, Error>>,
    /// Every body this side ever added, by phase.
    added: BTreeMap<String, String>,
    side_id: Option<String>,
}

struct World {
    server: MailboxServer,
    now: Timestamp,
    sides: Vec<Side>,
    wrong_code: bool,
}

/// Runs one fuzzer-chosen sequence, panicking with the broken invariant if any.
pub fn run(data: &[u8]) {
    let mut input = Unstructured::new(data);
    let Ok(wrong_code) = bool::arbitrary(&mut input) else { return };
    let Ok(ops) = Vec::<Op>::arbitrary_take_rest(input) else { return };
    let config = Config::new("lothar.com/wormhole/text-or-file-xfer")
        .expect("valid appid")
        .with_timeout(Duration::from_secs(600));
    let initiator = MailboxExchange::initiator(config, DATA[0].to_vec(), [1; 32]).expect("small data");
    let mut world = World {
        server: MailboxServer { rendezvous: Rendezvous::new(RendezvousConfig::default(), [7; 32]) },
        now: Timestamp::from_millis(1_700_000_000_000),
        sides: vec![Side { exchange: initiator, wire: None, outcome: None, added: BTreeMap::new(), side_id: None }],
        wrong_code,
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
    /// Takes every due transmit and event from both sides, checking them.
    fn collect(&mut self) {
        for who in 0..self.sides.len() {
            let now = self.now;
            let side = &mut self.sides[who];
            let finished = side.exchange.is_finished();
            while let Some(transmit) = side.exchange.poll_transmit(now) {
                match transmit {
                    Transmit::Connect { .. } => {
                        assert!(!finished, "side {who} connects after finishing");
                        side.wire = Some(Wire {
                            server: MailboxSession::new(false),
                            to_server: VecDeque::new(),
                            to_client: VecDeque::new(),
                        });
                        side.exchange.handle_connected(now);
                    }
                    Transmit::Frame(frame) => {
                        assert!(!finished, "side {who} sends after finishing");
                        if let Ok(parsed) = ClientMessage::parse(frame.as_bytes()) {
                            match parsed.message {
                                ClientMessage::Add { phase, body } => {
                                    let earlier = side.added.entry(phase.clone()).or_insert_with(|| body.clone());
                                    assert_eq!(*earlier, body, "side {who} added two bodies in phase {phase}");
                                }
                                ClientMessage::Bind { side: id, .. } => side.side_id = Some(id),
                                _ => {}
                            }
                        }
                        let wire = side.wire.as_mut().expect("frames only on an open connection");
                        wire.to_server.push_back(frame);
                    }
                    Transmit::Disconnect => {
                        side.wire = None;
                        side.exchange.handle_disconnected(now, TransportError::from_message("closed"));
                    }
                }
            }
            if side.exchange.is_finished() {
                assert_eq!(side.exchange.poll_timeout(), None, "side {who} asks to wake after finishing");
            }
            let debug = format!("{:?}", side.exchange);
            for data in DATA {
                assert!(!debug.contains(std::str::from_utf8(data).expect("text")), "side {who}'s Debug shows data");
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
                let code = if self.wrong_code { crate::sim::mistype(&code) } else { code };
                let config = self.sides[0].exchange.config().clone();
                let mut receiver = MailboxExchange::receiver(config, code, DATA[1].to_vec(), [2; 32]).expect("small");
                receiver.start(self.now);
                let side =
                    Side { exchange: receiver, wire: None, outcome: None, added: BTreeMap::new(), side_id: None };
                self.sides.push(side);
            }
        }
    }

    fn step(&mut self, op: &Op) {
        let now = self.now;
        match op {
            Op::ToServer { side } => {
                let Some(s) = self.sides.get_mut(usize::from(*side)) else { return };
                let Some(wire) = s.wire.as_mut() else { return };
                let Some(frame) = wire.to_server.pop_front() else { return };
                let answers = self.server.on_frame(&mut wire.server, now, &frame);
                wire.to_client.extend(answers.into_iter().map(String::into_bytes));
            }
            Op::ToClient { side } => {
                let Some(s) = self.sides.get_mut(usize::from(*side)) else { return };
                let Some(frame) = s.wire.as_mut().and_then(|w| w.to_client.pop_front()) else { return };
                s.exchange.handle_frame(now, &frame);
            }
            Op::News { side } => {
                let Some(s) = self.sides.get_mut(usize::from(*side)) else { return };
                let Some(wire) = s.wire.as_mut() else { return };
                let news = self.server.news(&mut wire.server, now);
                wire.to_client.extend(news.into_iter().map(String::into_bytes));
            }
            Op::Drop { side } => {
                let Some(s) = self.sides.get_mut(usize::from(*side)) else { return };
                if s.wire.take().is_some() {
                    s.exchange.handle_disconnected(now, TransportError::from_message("connection reset"));
                }
            }
            Op::Forge { side, frame } => {
                let who = usize::from(*side);
                let peer = self.sides.get(1 - who).and_then(|s| s.side_id.clone()).unwrap_or_default();
                let Some(s) = self.sides.get_mut(who) else { return };
                s.exchange.handle_frame(now, &forged_json(frame, &peer));
            }
            Op::Flip { side, at, mask } => {
                let Some(s) = self.sides.get_mut(usize::from(*side)) else { return };
                let Some(mut frame) = s.wire.as_mut().and_then(|w| w.to_client.pop_front()) else { return };
                if !frame.is_empty() {
                    let at = usize::from(*at) % frame.len();
                    frame[at] ^= mask;
                }
                s.exchange.handle_frame(now, &frame);
            }
            Op::Advance { millis } => {
                self.now = self.now + Duration::from_millis(u64::from(millis % 600_000));
                self.tick();
            }
            Op::Wake { side } => {
                let Some(at) = self.sides.get(usize::from(*side)).and_then(|s| s.exchange.poll_timeout()) else {
                    return;
                };
                self.now = self.now.max(at);
                self.tick();
            }
            Op::Restart { side } => {
                let who = usize::from(*side);
                let Some(s) = self.sides.get_mut(who) else { return };
                let saved = s.exchange.serialize();
                let mut restored = MailboxExchange::from_serialized(&saved).expect("own state restores");
                assert_eq!(restored.serialize(), saved, "side {who}'s state saved back differently");
                restored.start(now);
                s.exchange = restored;
                s.wire = None;
            }
            Op::ServerRestart => {
                let snapshot = self.server.rendezvous.snapshot();
                let restored = Rendezvous::restore(RendezvousConfig::default(), snapshot, [8; 32]);
                self.server.rendezvous = restored.expect("a snapshot restores");
                for s in &mut self.sides {
                    if s.wire.take().is_some() {
                        s.exchange.handle_disconnected(now, TransportError::from_message("server restarted"));
                    }
                }
            }
            Op::Cancel { side } => {
                if let Some(s) = self.sides.get_mut(usize::from(*side)) {
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
}

#[cfg(test)]
mod tests {
    #[test]
    fn empty_and_short_inputs_run() {
        super::run(&[]);
        super::run(&[1, 0, 0, 0, 0, 0, 1, 1, 1, 1]);
    }
}
