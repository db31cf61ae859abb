//! The mailbox protocol's sessions: fuzzer-built frames (well formed ones
//! from a small vocabulary, and raw bytes) from four connections
//! ([`MailboxSession`], the server's own rules) sharing one rendezvous
//! state, with reconnects, reads of news, the passing of time and expiry
//! sweeps. No I/O and no runtime: the host is this loop. Checked after
//! every step:
//!
//! - every frame is answered, first with an `ack` (unless it is not a typed
//!   JSON object), and every answer is a JSON object with a `type`;
//! - an `error` quotes the frame it refuses;
//! - a connection never receives a mailbox message twice (even when its
//!   mailbox is deleted and another connection makes one under its id);
//! - the server's counters match its state, and no nameplate leads to two
//!   mailboxes.

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use serde_json::{json, Value};

use crate::mailbox_wire::ServerMessage;
use crate::rendezvous::{MailboxSession, Rendezvous, RendezvousConfig};
use crate::Timestamp;

#[derive(Arbitrary, Debug)]
enum Action {
    Frame {
        connection: u8,
        frame: Frame,
        id: Option<u8>,
    },
    Raw {
        connection: u8,
        bytes: Vec<u8>,
    },
    News {
        connection: u8,
    },
    /// The connection drops; the client connects again.
    Reconnect {
        connection: u8,
    },
    /// Time passes (minutes), then expired mailboxes are swept.
    Sweep {
        minutes: u8,
    },
}

#[derive(Arbitrary, Debug)]
enum Frame {
    Bind { app: u8, side: u8 },
    List,
    Allocate,
    Claim { nameplate: u8 },
    Release { nameplate: Option<u8> },
    Open { mailbox: u8 },
    Add { phase: u8, body: u8 },
    Close { mailbox: Option<u8>, mood: u8 },
    Ping { ping: u64 },
}

const APPS: [&str; 2] = ["lothar.com/wormhole/text-or-file-xfer", "example.com/other"];
const SIDES: [&str; 4] = ["aaaa", "bbbb", "cccc", "dddd"];
const PHASES: [&str; 4] = ["pake", "version", "0", "1"];
const MOODS: [&str; 5] = ["happy", "lonely", "scary", "errory", "unwelcome"];
/// Mostly nameplates this server hands out, and a few it refuses.
const NAMEPLATES: [&str; 12] = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "007", "0"];

fn pick<'a>(items: &[&'a str], n: u8) -> &'a str {
    items[usize::from(n) % items.len()]
}

/// The frame as a client sends it; mailboxes are picked among those the
/// server named so far (or an unknown one).
fn frame_json(frame: &Frame, id: Option<u8>, mailboxes: &[String]) -> Value {
    let mailbox = |n: u8| mailboxes.get(usize::from(n)).cloned().unwrap_or_else(|| "unknownbox".to_string());
    let mut value = match frame {
        Frame::Bind { app, side } => json!({"type": "bind", "appid": pick(&APPS, *app), "side": pick(&SIDES, *side)}),
        Frame::List => json!({"type": "list"}),
        Frame::Allocate => json!({"type": "allocate"}),
        Frame::Claim { nameplate } => json!({"type": "claim", "nameplate": pick(&NAMEPLATES, *nameplate)}),
        Frame::Release { nameplate: Some(n) } => json!({"type": "release", "nameplate": pick(&NAMEPLATES, *n)}),
        Frame::Release { nameplate: None } => json!({"type": "release"}),
        Frame::Open { mailbox: n } => json!({"type": "open", "mailbox": mailbox(*n)}),
        Frame::Add { phase, body } => {
            // Few distinct bodies, so repeats and conflicts happen; some over the limit.
            let body = "ab".repeat(usize::from(*body % 12));
            json!({"type": "add", "phase": pick(&PHASES, *phase), "body": body})
        }
        Frame::Close { mailbox: Some(n), mood } => {
            json!({"type": "close", "mailbox": mailbox(*n), "mood": pick(&MOODS, *mood)})
        }
        Frame::Close { mailbox: None, mood } => json!({"type": "close", "mood": pick(&MOODS, *mood)}),
        Frame::Ping { ping } => json!({"type": "ping", "ping": ping}),
    };
    if let Some(id) = id {
        value["id"] = json!(format!("i{id}"));
    }
    value
}

/// One connection as its client sees it.
struct Connection {
    session: MailboxSession,
    /// The (side, phase) pairs of the messages it was sent.
    seen: Vec<(String, String)>,
}

fn check_replies(frame: &[u8], replies: &[ServerMessage], typed: bool, mailboxes: &mut Vec<String>) {
    assert!(!replies.is_empty(), "a frame went unanswered");
    let values: Vec<Value> =
        replies.iter().map(|reply| serde_json::from_str(&reply.to_json(1.0)).expect("an answer is JSON")).collect();
    for value in &values {
        assert!(value["type"].is_string(), "an answer without a type: {value}");
    }
    if typed {
        assert_eq!(values[0]["type"], "ack", "a frame's first answer is not its ack");
    }
    for value in &values {
        match value["type"].as_str() {
            Some("error") => {
                let quoted = serde_json::from_slice::<Value>(frame).unwrap_or(Value::Null);
                assert_eq!(value["orig"], quoted, "an error does not quote its frame");
            }
            Some("claimed") => {
                let mailbox = value["mailbox"].as_str().expect("claimed names a mailbox").to_string();
                if !mailboxes.contains(&mailbox) {
                    mailboxes.push(mailbox);
                }
            }
            _ => {}
        }
    }
}

/// Records the messages pushed to a connection; panics on a repeat.
fn check_pushed(connection: &mut Connection, replies: &[ServerMessage]) {
    for reply in replies {
        if let ServerMessage::Message { side, phase, .. } = reply {
            let key = (side.clone(), phase.clone());
            assert!(!connection.seen.contains(&key), "message {side}/{phase} sent twice on one connection");
            connection.seen.push(key);
        }
    }
}

/// Runs one sequence of actions; panics with the broken rule.
pub fn run(data: &[u8]) {
    let Ok(actions) = Vec::<Action>::arbitrary_take_rest(Unstructured::new(data)) else { return };
    let config = RendezvousConfig {
        max_message_bytes: 16,
        max_messages_per_channel: 4,
        max_channels_per_app: 6,
        ..RendezvousConfig::default()
    };
    let mut state = Rendezvous::new(config, [3; 32]);
    let mut now = Timestamp::from_millis(1_700_000_000_000);
    let connect = || Connection { session: MailboxSession::new(false), seen: Vec::new() };
    let mut connections: Vec<Connection> = (0..4).map(|_| connect()).collect();
    let mut mailboxes: Vec<String> = Vec::new();
    for action in actions.iter().take(200) {
        now = now + Duration::from_millis(100);
        if super::tracing() {
            eprintln!("{action:?}");
        }
        match action {
            Action::Frame { connection, frame, id } => {
                let connection = &mut connections[usize::from(*connection) % 4];
                let bytes = frame_json(frame, *id, &mailboxes).to_string().into_bytes();
                let replies = connection.session.answer_locally(&mut state, now, &bytes);
                check_replies(&bytes, &replies, true, &mut mailboxes);
                check_pushed(connection, &replies);
            }
            Action::Raw { connection, bytes } => {
                let connection = &mut connections[usize::from(*connection) % 4];
                let replies = connection.session.answer_locally(&mut state, now, bytes);
                check_replies(bytes, &replies, false, &mut mailboxes);
                check_pushed(connection, &replies);
            }
            Action::News { connection } => {
                let connection = &mut connections[usize::from(*connection) % 4];
                let replies = connection.session.news_locally(&state);
                check_pushed(connection, &replies);
            }
            Action::Reconnect { connection } => connections[usize::from(*connection) % 4] = connect(),
            Action::Sweep { minutes } => {
                now = now + Duration::from_secs(60 * u64::from(*minutes));
                state.expire(now);
            }
        }
        assert!(connections.iter().all(|c| !c.session.is_running()), "a session waits for an outcome it was given");
        super::rendezvous_ops::check_state(&state);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn empty_and_short_inputs_run() {
        super::run(&[]);
        super::run(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }
}
