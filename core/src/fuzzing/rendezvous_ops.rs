//! The rendezvous machine fed sequences of requests from three sides of two
//! application ids, with the clock moving both ways, sweeps, retries and
//! restarts from a snapshot. Checked after every step:
//!
//! - no channel ever has three members, and a join never reports more than two;
//! - message sequence numbers run 1, 2, 3, ... in every channel and every log
//!   answer, without gaps;
//! - a burned channel, or a side that closed, takes no new message;
//! - the counters behind metrics match the channels and messages held;
//! - a retried request gets the same answer and changes nothing;
//! - after a snapshot and a restore, the restored machine answers every later
//!   request exactly as the original does.

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};

use crate::code::ChannelId;
use crate::rendezvous::{Rendezvous, RendezvousConfig, RendezvousSnapshot, SweepCursor};
use crate::time::Timestamp;
use crate::wire::{
    AllocateRequest, CloseRequest, FetchRequest, JoinRequest, Log, Mood, PostRequest, Request, Response, WireError,
};

const APPS: [&str; 2] = ["app-a", "app-b"];
const SIDES: [&str; 3] = ["side-a", "side-b", "side-c"];
const PHASES: [&str; 3] = ["pake", "data", "extra"];

#[derive(Arbitrary, Debug)]
enum Op {
    Allocate {
        app: u8,
        side: u8,
    },
    Join {
        app: u8,
        side: u8,
        channel: u8,
        create: bool,
    },
    Post {
        app: u8,
        side: u8,
        channel: u8,
        phase: u8,
        body: u8,
        after: Option<u8>,
    },
    Fetch {
        app: u8,
        side: u8,
        channel: u8,
        after: u8,
    },
    Close {
        app: u8,
        side: u8,
        channel: u8,
        mood: u8,
    },
    /// Sends the previous request again, as a client whose answer was lost.
    Retry,
    /// The server's clock moves forward (up to a few days) ...
    Forward {
        seconds: u32,
    },
    /// ... or back (a clock corrected by NTP).
    Back {
        seconds: u16,
    },
    Expire,
    ExpireStep {
        limit: u8,
    },
    /// Persist, restart, restore: from here on a restored twin runs beside
    /// the original and must answer identically.
    Restart {
        seed: u8,
    },
}

/// Small limits, so the fuzzer reaches every one of them.
fn config() -> RendezvousConfig {
    RendezvousConfig {
        channel_expiry: Duration::from_secs(3_600),
        max_message_bytes: 8,
        max_messages_per_channel: 4,
        max_channels_per_app: 6,
        max_channels: 10,
        max_wait: Duration::from_secs(60),
        burned_retention: Duration::from_secs(300),
    }
}

fn pick<T: Copy>(items: &[T], n: u8) -> T {
    items[usize::from(n) % items.len()]
}

/// Channel ids 1 to 12: the one-digit ids allocation hands out and a few
/// beyond, so joins meet allocated channels and miss them.
fn channel(n: u8) -> ChannelId {
    ChannelId::new(u32::from(n % 12) + 1).expect("1..=12 are valid ids")
}

fn body(n: u8) -> String {
    // Mostly short bodies, some over the 8-byte limit; few distinct ones so
    // repeated posts collide.
    "x".repeat(usize::from(n % 11))
}

fn mood(n: u8) -> Mood {
    pick(&[Mood::Happy, Mood::Lonely, Mood::Scary, Mood::Errory], n)
}

fn request(op: &Op) -> Option<Request> {
    Some(match *op {
        Op::Allocate { app, side } => Request::Allocate(AllocateRequest::new(pick(&APPS, app), pick(&SIDES, side))),
        Op::Join { app, side, channel: c, create } => {
            Request::Join(JoinRequest::new(pick(&APPS, app), pick(&SIDES, side), channel(c), create))
        }
        Op::Post { app, side, channel: c, phase, body: b, after } => {
            let mut post =
                PostRequest::new(pick(&APPS, app), pick(&SIDES, side), channel(c), pick(&PHASES, phase), body(b));
            post.after = after.map(|a| u64::from(a % 6));
            Request::Post(post)
        }
        Op::Fetch { app, side, channel: c, after } => {
            Request::Fetch(FetchRequest::new(pick(&APPS, app), pick(&SIDES, side), channel(c), u64::from(after % 6), 0))
        }
        Op::Close { app, side, channel: c, mood: m } => {
            Request::Close(CloseRequest::new(pick(&APPS, app), pick(&SIDES, side), channel(c), mood(m)))
        }
        _ => return None,
    })
}

/// Runs one sequence of operations from fuzzer bytes, panicking with the
/// broken invariant if any.
pub fn run(data: &[u8]) {
    let Ok(ops) = Vec::<Op>::arbitrary_take_rest(Unstructured::new(data)) else { return };
    let mut original = Rendezvous::new(config());
    let mut twin: Option<Rendezvous> = None;
    let mut now = Timestamp::from_millis(1_700_000_000_000);
    let mut last: Option<Request> = None;
    let mut cursors = (SweepCursor::default(), SweepCursor::default());
    let trace = super::tracing();
    for op in ops.iter().take(400) {
        if trace {
            eprintln!("{op:?}");
        }
        match *op {
            Op::Forward { seconds } => now = now + Duration::from_secs(u64::from(seconds % 300_000)),
            Op::Back { seconds } => {
                now = Timestamp::from_millis(now.as_millis().saturating_sub(u64::from(seconds) * 1_000))
            }
            Op::Expire => {
                let expired = original.expire(now);
                if let Some(twin) = twin.as_mut() {
                    assert_eq!(twin.expire(now), expired, "the restored twin expired other channels");
                }
            }
            Op::ExpireStep { limit } => {
                let limit = usize::from(limit % 5) + 1;
                let step = original.expire_step(now, &mut cursors.0, limit);
                if let Some(twin) = twin.as_mut() {
                    assert_eq!(twin.expire_step(now, &mut cursors.1, limit), step, "the twin swept differently");
                }
            }
            Op::Restart { seed } => {
                // What storage holds is the snapshot's JSON; a restarted server
                // draws ids from a fresh seed, so both get the same one here.
                let json = original.snapshot().to_json();
                let snapshot = RendezvousSnapshot::from_json(&json).expect("own snapshot parses");
                let restored = Rendezvous::restore(config(), snapshot).expect("own snapshot restores");
                original = std::mem::take(&mut original).with_seed([seed; 32]);
                twin = Some(restored.with_seed([seed; 32]));
                cursors.1 = cursors.0.clone();
            }
            Op::Retry => {
                // Things may have changed since the request was last sent; but
                // sending it twice in a row must answer the same and change
                // nothing the second time.
                let Some(request) = last.clone() else { continue };
                let first = original.handle(now, &request);
                let state = original.snapshot();
                let again = original.handle(now, &request);
                assert_eq!(first, again, "a retried {request:?} got another answer");
                assert_eq!(original.snapshot(), state, "a retry changed the state");
                if let Some(twin) = twin.as_mut() {
                    assert_eq!(twin.handle(now, &request), first, "the twin answered the retry differently");
                    assert_eq!(twin.handle(now, &request), first);
                }
            }
            _ => {
                let request = request(op).expect("request ops make requests");
                let before = original.snapshot();
                let answer = original.handle(now, &request);
                check_answer(&before, &request, &answer);
                if let Some(twin) = twin.as_mut() {
                    assert_eq!(
                        twin.handle(now, &request),
                        answer,
                        "the restored twin answered {request:?} differently"
                    );
                }
                last = Some(request);
            }
        }
        check_state(&original);
        if let Some(twin) = &twin {
            assert_eq!(twin.snapshot(), original.snapshot(), "the twin's state drifted");
        }
    }
}

fn check_state(rendezvous: &Rendezvous) {
    let snapshot = rendezvous.snapshot();
    let mut messages = 0;
    for channel in &snapshot.channels {
        assert!(
            (1..=2).contains(&channel.members.len()),
            "channel {} has {} members",
            channel.channel,
            channel.members.len()
        );
        for (i, message) in channel.messages.iter().enumerate() {
            assert_eq!(message.seq, i as u64 + 1, "a gap in channel {}'s log", channel.channel);
        }
        messages += channel.messages.len();
    }
    let stats = rendezvous.stats();
    assert_eq!(stats.channels, snapshot.channels.len(), "the channel count drifted");
    assert_eq!(stats.messages, messages, "the message count drifted");
    let apps = snapshot.channels.iter().map(|c| c.appid.as_str()).collect::<std::collections::BTreeSet<_>>();
    assert_eq!(stats.apps, apps.len(), "the app count drifted");
}

fn check_log(log: &Log, after: u64) {
    for (i, message) in log.messages.iter().enumerate() {
        assert_eq!(message.seq, after + i as u64 + 1, "a log answer skips or repeats a message");
    }
}

fn check_answer(before: &RendezvousSnapshot, request: &Request, answer: &Result<Response, WireError>) {
    let channel =
        request.channel().and_then(|id| before.channels.iter().find(|c| c.appid == request.appid() && c.channel == id));
    match (request, answer) {
        (Request::Join(_), Ok(Response::Joined(joined))) => {
            assert!((1..=2).contains(&joined.sides), "a join reported {} sides", joined.sides);
            if let Some(log) = &joined.log {
                check_log(log, 0);
            }
        }
        (Request::Fetch(fetch), Ok(Response::Fetched(log))) => check_log(log, fetch.after),
        (Request::Post(post), Ok(Response::Posted(posted))) => {
            if let Some(channel) = channel {
                let member = channel.members.iter().find(|m| m.side == post.side);
                let repeat = channel.messages.iter().any(|m| m.side == post.side && m.phase == post.phase);
                assert!(!channel.burned || repeat, "a burned channel took a new message");
                assert!(member.is_some_and(|m| m.closed.is_none()), "a closed side or a stranger posted");
            }
            if let (Some(log), Some(after)) = (&posted.log, post.after) {
                check_log(log, after);
            }
            assert!(posted.seq >= 1, "seq 0 handed out");
        }
        _ => {}
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
