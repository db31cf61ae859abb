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
//!   request exactly as the original does;
//! - no nameplate leads to two mailboxes, and the nameplate count matches.
//!
//! Requests name a channel by its nameplate or, once an answer told it, by
//! its mailbox; the mailbox protocol's operations (claim, release, open,
//! add, close) run on the same state.

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};

use crate::code::ChannelId;
use crate::rendezvous::{Rendezvous, RendezvousConfig, RendezvousSnapshot, SweepCursor};
use crate::time::Timestamp;
use crate::wire::{
    AllocateRequest, CloseRequest, FetchRequest, JoinRequest, Log, MailboxId, Mood, PostRequest, Request, Response,
    WireError,
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
        by_mailbox: bool,
    },
    Fetch {
        app: u8,
        side: u8,
        channel: u8,
        after: u8,
        by_mailbox: bool,
    },
    Close {
        app: u8,
        side: u8,
        channel: u8,
        mood: u8,
        by_mailbox: bool,
    },
    /// The mailbox protocol's operations.
    Mailbox(MailboxOp),
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

#[derive(Arbitrary, Debug, Clone, Copy)]
enum MailboxOp {
    Allocate { app: u8, side: u8 },
    Claim { app: u8, side: u8, channel: u8 },
    Release { app: u8, side: u8, channel: u8 },
    Open { app: u8, side: u8, channel: u8 },
    Add { app: u8, side: u8, channel: u8, phase: u8, body: u8 },
    Close { app: u8, side: u8, channel: u8, mood: u8 },
}

/// The mailboxes answers named, by app and nameplate: requests and mailbox
/// operations name them (also after the nameplate was released).
type Known = std::collections::HashMap<(u8, ChannelId), MailboxId>;

fn mailbox_op(server: &mut Rendezvous, now: Timestamp, known: &Known, op: MailboxOp) -> Result<String, WireError> {
    let mailbox = |app: u8, c: u8| {
        known.get(&(app % 2, channel(c))).cloned().unwrap_or_else(|| MailboxId::new("nowhere").unwrap())
    };
    match op {
        MailboxOp::Allocate { app, side } => {
            server.allocate_nameplate(now, pick(&APPS, app), pick(&SIDES, side)).map(|c| c.to_string())
        }
        MailboxOp::Claim { app, side, channel: c } => {
            server.claim(now, pick(&APPS, app), channel(c), pick(&SIDES, side)).map(|m| m.to_string())
        }
        MailboxOp::Release { app, side, channel: c } => {
            server.release(now, pick(&APPS, app), channel(c), pick(&SIDES, side)).map(|()| String::new())
        }
        MailboxOp::Open { app, side, channel: c } => {
            let messages = server.open(now, pick(&APPS, app), &mailbox(app, c), pick(&SIDES, side))?;
            check_log(&Log::new(messages.clone(), Vec::new()), 0);
            Ok(format!("{messages:?}"))
        }
        MailboxOp::Add { app, side, channel: c, phase, body: b } => server
            .add(now, pick(&APPS, app), &mailbox(app, c), pick(&SIDES, side), pick(&PHASES, phase), &body(b), None)
            .map(|seq| seq.to_string()),
        MailboxOp::Close { app, side, channel: c, mood: m } => {
            server.close(now, pick(&APPS, app), &mailbox(app, c), pick(&SIDES, side), mood(m)).map(|()| String::new())
        }
    }
}

/// Remembers the mailbox an answer names.
fn learn(known: &mut Known, op: &Op, answer: &Result<Response, WireError>) {
    match (op, answer) {
        (Op::Allocate { app, .. }, Ok(Response::Allocated(a))) => {
            if let Some(mailbox) = &a.mailbox {
                known.insert((app % 2, a.channel), mailbox.clone());
            }
        }
        (Op::Join { app, channel: c, .. }, Ok(Response::Joined(j))) => {
            if let Some(mailbox) = &j.mailbox {
                known.insert((app % 2, channel(*c)), mailbox.clone());
            }
        }
        _ => {}
    }
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

fn request(op: &Op, known: &Known) -> Option<Request> {
    let by_mailbox = |app: u8, c: u8, yes: bool| if yes { known.get(&(app % 2, channel(c))).cloned() } else { None };
    Some(match *op {
        Op::Allocate { app, side } => Request::Allocate(AllocateRequest::new(pick(&APPS, app), pick(&SIDES, side))),
        Op::Join { app, side, channel: c, create } => {
            Request::Join(JoinRequest::new(pick(&APPS, app), pick(&SIDES, side), channel(c), create))
        }
        Op::Post { app, side, channel: c, phase, body: b, after, by_mailbox: yes } => {
            let mut post =
                PostRequest::new(pick(&APPS, app), pick(&SIDES, side), channel(c), pick(&PHASES, phase), body(b));
            post.after = after.map(|a| u64::from(a % 6));
            Request::Post(post).with_mailbox(by_mailbox(app, c, yes))
        }
        Op::Fetch { app, side, channel: c, after, by_mailbox: yes } => {
            let fetch = FetchRequest::new(pick(&APPS, app), pick(&SIDES, side), channel(c), u64::from(after % 6), 0);
            Request::Fetch(fetch).with_mailbox(by_mailbox(app, c, yes))
        }
        Op::Close { app, side, channel: c, mood: m, by_mailbox: yes } => {
            let close = CloseRequest::new(pick(&APPS, app), pick(&SIDES, side), channel(c), mood(m));
            Request::Close(close).with_mailbox(by_mailbox(app, c, yes))
        }
        _ => return None,
    })
}

/// Runs one sequence of operations from fuzzer bytes, panicking with the
/// broken invariant if any.
pub fn run(data: &[u8]) {
    let Ok(ops) = Vec::<Op>::arbitrary_take_rest(Unstructured::new(data)) else { return };
    let mut original = Rendezvous::new(config(), [0; 32]);
    let mut twin: Option<Rendezvous> = None;
    let mut now = Timestamp::from_millis(1_700_000_000_000);
    let mut last: Option<Request> = None;
    let mut cursors = (SweepCursor::default(), SweepCursor::default());
    let mut known = Known::new();
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
                twin = Some(Rendezvous::restore(config(), snapshot, [seed; 32]).expect("own snapshot restores"));
                original.reseed([seed; 32]);
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
            Op::Mailbox(op) => {
                let answer = mailbox_op(&mut original, now, &known, op);
                if let Some(twin) = twin.as_mut() {
                    assert_eq!(mailbox_op(twin, now, &known, op), answer, "the twin answered {op:?} differently");
                }
                if let (MailboxOp::Claim { app, channel: c, .. }, Ok(mailbox)) = (op, &answer) {
                    known.insert((app % 2, channel(c)), MailboxId::new(mailbox.as_str()).expect("a mailbox id"));
                }
            }
            _ => {
                let request = request(op, &known).expect("request ops make requests");
                let before = original.snapshot();
                let answer = original.handle(now, &request);
                check_answer(&before, now, &request, &answer);
                learn(&mut known, op, &answer);
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

/// Panics unless the rendezvous's state holds its invariants: one or two
/// members per mailbox, logs numbered 1, 2, 3, ..., no nameplate leading to
/// two mailboxes, and counters (mailboxes, nameplates, messages, apps, each
/// app's channels) that
/// match the state. Other fuzz drivers over the same state use it too.
pub fn check_state(rendezvous: &Rendezvous) {
    let snapshot = rendezvous.snapshot();
    let mut messages = 0;
    let mut nameplates = std::collections::BTreeSet::new();
    for mailbox in &snapshot.mailboxes {
        assert!(
            (1..=2).contains(&mailbox.members.len()),
            "mailbox {} has {} members",
            mailbox.mailbox,
            mailbox.members.len()
        );
        for (i, message) in mailbox.messages.iter().enumerate() {
            assert_eq!(message.seq, i as u64 + 1, "a gap in mailbox {}'s log", mailbox.mailbox);
        }
        messages += mailbox.messages.len();
        if mailbox.holds_nameplate {
            let number = mailbox.nameplate.expect("a held nameplate is named");
            assert!(nameplates.insert((mailbox.appid.clone(), number)), "nameplate {number} leads to two mailboxes");
        }
    }
    let stats = rendezvous.stats();
    let tombstones = snapshot.mailboxes.iter().filter(|m| m.is_tombstone()).count();
    assert_eq!(stats.tombstones, tombstones, "the tombstone count drifted");
    assert_eq!(stats.channels, snapshot.mailboxes.len() - tombstones, "the mailbox count drifted");
    for mailbox in snapshot.mailboxes.iter().filter(|m| m.is_tombstone()) {
        assert!(mailbox.messages.is_empty(), "tombstone {} keeps a log", mailbox.mailbox);
    }
    assert_eq!(stats.nameplates, nameplates.len(), "the nameplate count drifted");
    assert_eq!(stats.messages, messages, "the message count drifted");
    let apps = snapshot.mailboxes.iter().map(|c| c.appid.as_str()).collect::<std::collections::BTreeSet<_>>();
    assert_eq!(stats.apps, apps.len(), "the app count drifted");
    for app in apps {
        let open = snapshot.mailboxes.iter().filter(|m| m.appid == app && !m.is_tombstone()).count();
        assert_eq!(rendezvous.channels_in(app), open, "the channels {app}'s cap counts drifted");
    }
}

fn check_log(log: &Log, after: u64) {
    for (i, message) in log.messages.iter().enumerate() {
        assert_eq!(message.seq, after + i as u64 + 1, "a log answer skips or repeats a message");
    }
}

fn check_answer(before: &RendezvousSnapshot, now: Timestamp, request: &Request, answer: &Result<Response, WireError>) {
    // A channel idle past its expiry is gone for the request (it is deleted
    // on access, before a sweep gets to it): a join may make a new one.
    let live = |m: &crate::rendezvous::MailboxSnapshot| {
        let keep = if m.is_tombstone() { config().burned_retention } else { config().channel_expiry };
        m.last_activity + keep > now
    };
    let channel = before.mailboxes.iter().find(|m| {
        m.appid == request.appid()
            && live(m)
            && match request.mailbox() {
                Some(id) => m.mailbox == *id,
                None => m.holds_nameplate && m.nameplate == request.channel(),
            }
    });
    match (request, answer) {
        (Request::Join(join), Ok(Response::Joined(joined))) => {
            assert!((1..=2).contains(&joined.sides), "a join reported {} sides", joined.sides);
            if let Some(channel) = channel {
                let stranger = channel.members.iter().all(|m| m.side != join.side);
                assert!(!(stranger && channel.members.len() == 2), "a third side entered a spent channel");
            }
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
