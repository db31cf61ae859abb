//! The mailbox protocol's sessions in process: fuzzer-built frames (well
//! formed ones from a small vocabulary, and raw bytes) from four
//! connections sharing one server state, with reconnects, reads of news
//! and expiry sweeps. Checked after every step:
//!
//! - every frame is answered, first with an `ack` (unless it is not a typed
//!   JSON object), and every answer is a JSON object with a `type`;
//! - an `error` quotes the frame it refuses;
//! - a connection never receives a mailbox message twice (even when its
//!   mailbox is deleted and another connection makes one under its id);
//! - the server's counters match its state, and no nameplate leads to two
//!   mailboxes.

use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use serde_json::{json, Value};
use wormhole_sync_core::mailbox_wire::ServerMessage;
use wormhole_sync_core::rendezvous::RendezvousSnapshot;

use crate::mailbox::Session;
use crate::{ServerConfig, Storage};

#[derive(Arbitrary, Debug)]
enum Op {
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
    Sweep,
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
    session: Session,
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

/// Runs one sequence of operations; panics with the broken rule.
pub fn run(data: &[u8]) {
    let Ok(ops) = Vec::<Op>::arbitrary_take_rest(Unstructured::new(data)) else { return };
    let mut config = ServerConfig::default().without_rate_limits();
    config.rendezvous.max_message_bytes = 16;
    config.rendezvous.max_messages_per_channel = 4;
    config.rendezvous.max_channels_per_app = 6;
    config.max_bytes_per_app = 40;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let app = crate::shared_state_seeded(config, Storage::memory(), RendezvousSnapshot::new(Vec::new()), [3; 32])
        .expect("an empty state loads");
    let client = crate::client_address::Client { address: "192.0.2.7".parse().expect("an address"), local: false };
    let connect = || Connection { session: Session::new(Arc::clone(&app), client), seen: Vec::new() };
    let mut connections: Vec<Connection> = (0..4).map(|_| connect()).collect();
    let mut mailboxes: Vec<String> = Vec::new();
    runtime.block_on(async {
        for op in ops.iter().take(200) {
            match op {
                Op::Frame { connection, frame, id } => {
                    let connection = &mut connections[usize::from(*connection) % 4];
                    let bytes = frame_json(frame, *id, &mailboxes).to_string().into_bytes();
                    let replies = connection.session.on_frame(&bytes).await;
                    check_replies(&bytes, &replies, true, &mut mailboxes);
                    check_pushed(connection, &replies);
                }
                Op::Raw { connection, bytes } => {
                    let connection = &mut connections[usize::from(*connection) % 4];
                    let replies = connection.session.on_frame(bytes).await;
                    check_replies(bytes, &replies, false, &mut mailboxes);
                    check_pushed(connection, &replies);
                }
                Op::News { connection } => {
                    let connection = &mut connections[usize::from(*connection) % 4];
                    let replies = connection.session.news().await.expect("news in memory is always readable");
                    check_pushed(connection, &replies);
                }
                Op::Reconnect { connection } => connections[usize::from(*connection) % 4] = connect(),
                Op::Sweep => {
                    app.sweep().await;
                }
            }
            wormhole_sync_core::fuzzing::rendezvous_ops::check_state(&app.core.lock());
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn empty_and_short_inputs_run() {
        super::run(&[]);
        super::run(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }
}
