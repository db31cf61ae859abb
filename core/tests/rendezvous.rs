//! The rendezvous state machine: allocation, membership, messages, closing,
//! expiry, limits and snapshots.

use std::time::Duration;

use wormhole_sync_core::rendezvous::{Rendezvous, RendezvousConfig, RendezvousSnapshot};
use wormhole_sync_core::wire::{
    AllocateRequest, CloseRequest, ErrorCode, FetchRequest, JoinRequest, Mood, PostRequest, Request, Response,
};
use wormhole_sync_core::{ChannelId, Timestamp};

const T0: Timestamp = Timestamp::from_millis(1_000_000);

fn ch(id: u32) -> ChannelId {
    ChannelId::new(id).unwrap()
}

fn allocate(appid: &str, side: &str) -> Request {
    Request::Allocate(AllocateRequest::new(appid, side))
}

fn join(appid: &str, id: u32, side: &str, create: bool) -> Request {
    Request::Join(JoinRequest::new(appid, side, ch(id), create))
}

fn post(appid: &str, id: u32, side: &str, phase: &str, body: &str) -> Request {
    Request::Post(PostRequest::new(appid, side, ch(id), phase, body))
}

fn fetch(appid: &str, id: u32, side: &str, after: u64) -> Request {
    Request::Fetch(FetchRequest::new(appid, side, ch(id), after, 0))
}

fn close(appid: &str, id: u32, side: &str, mood: Mood) -> Request {
    Request::Close(CloseRequest::new(appid, side, ch(id), mood))
}

/// A rendezvous that forgets a closed channel's id as soon as it expires it
/// (no retention), for tests of how ids are drawn.
fn without_retention(seed: u8) -> Rendezvous {
    Rendezvous::new(RendezvousConfig { burned_retention: Duration::ZERO, ..Default::default() }, [seed; 32])
}

/// Its only side closes the channel, and its id is freed.
fn end_alone(server: &mut Rendezvous, appid: &str, id: u32, side: &str) {
    server.handle(T0, &close(appid, id, side, Mood::Lonely)).unwrap();
    server.expire(T0);
    assert!(!server.contains(appid, ch(id)));
}

fn allocated(server: &mut Rendezvous, appid: &str, side: &str) -> u32 {
    match server.handle(T0, &allocate(appid, side)) {
        Ok(Response::Allocated(a)) => a.channel.get(),
        other => panic!("{other:?}"),
    }
}

fn code_of(result: Result<Response, wormhole_sync_core::wire::WireError>) -> ErrorCode {
    result.unwrap_err().code
}

#[test]
fn ids_are_drawn_from_the_shortest_free_length_per_app() {
    let mut server = without_retention(5);
    let ids: Vec<u32> = (1..=1_000).map(|i| allocated(&mut server, "busy.example", &format!("s{i}"))).collect();
    let sorted = |range: &[u32]| {
        let mut v = range.to_vec();
        v.sort_unstable();
        v
    };
    // Every one-digit id before any two-digit one, then every two-digit id, ...
    assert_eq!(sorted(&ids[..9]), (1..=9).collect::<Vec<_>>());
    assert_eq!(sorted(&ids[9..99]), (10..=99).collect::<Vec<_>>());
    assert_eq!(sorted(&ids[99..999]), (100..=999).collect::<Vec<_>>());
    assert!((1_000..=9_999).contains(&ids[999]));
    assert_ne!(&ids[..9], &[1, 2, 3, 4, 5, 6, 7, 8, 9], "not in order");
    // A quiet app still gets one-digit ids, whatever other apps hold.
    assert!((1..=9).contains(&allocated(&mut server, "quiet.example", "q1")));
    // Freeing a one-digit id in the busy app makes it the only short id to give.
    let freed = ids[4];
    end_alone(&mut server, "busy.example", freed, "s5");
    assert_eq!(allocated(&mut server, "busy.example", "new"), freed);
}

#[test]
fn free_ids_are_drawn_uniformly() {
    let mut server = without_retention(6);
    let mut counts = [0u32; 10];
    for i in 0..9_000 {
        let side = format!("s{i}");
        let id = allocated(&mut server, "app", &side);
        counts[id as usize] += 1;
        end_alone(&mut server, "app", id, &side);
    }
    assert_eq!(counts[0], 0);
    // 1,000 expected per id; a fair draw stays well within ±15 %.
    assert!(counts[1..].iter().all(|&n| (850..=1_150).contains(&n)), "{counts:?}");
}

/// How often a code kept after its exchange ended names a channel that a
/// new, unrelated exchange holds by the time it is typed: `active` exchanges
/// run at once on one app; each round one ends, a new one allocates, and
/// the old code is tried. `allocate` picks the new id given the ids in use.
fn stale_code_hit_rate(active: usize, rounds: usize, mut allocate: impl FnMut(&[u32]) -> u32) -> f64 {
    let mut in_use: Vec<u32> = Vec::new();
    for _ in 0..active {
        let id = allocate(&in_use);
        in_use.push(id);
    }
    let mut hits = 0;
    for round in 0..rounds {
        let ended = in_use.remove(round % in_use.len());
        let id = allocate(&in_use);
        in_use.push(id);
        hits += usize::from(in_use.contains(&ended));
    }
    hits as f64 / rounds as f64
}

#[test]
fn a_stale_code_rarely_reaches_a_new_exchange() {
    // Before: the smallest free id, so the id that just ended is the next one given.
    let smallest_first = |in_use: &[u32]| (1..).find(|id| !in_use.contains(id)).unwrap();
    for active in [1, 3, 5] {
        let before = stale_code_hit_rate(active, 2_000, smallest_first);
        let mut server = without_retention(active as u8);
        let mut sides: Vec<(String, u32)> = Vec::new();
        let after = stale_code_hit_rate(active, 2_000, |in_use| {
            // Mirror the harness's ids on the real state machine: close what it ended.
            for (side, id) in std::mem::take(&mut sides) {
                if !in_use.contains(&id) {
                    end_alone(&mut server, "app", id, &side);
                } else {
                    sides.push((side, id));
                }
            }
            let side = format!("s{}", rand_side());
            let id = allocated(&mut server, "app", &side);
            sides.push((side, id));
            id
        });
        println!(
            "{active} active exchanges: a stale code hits a new exchange {:.0} % before, {:.1} % after",
            before * 100.0,
            after * 100.0
        );
        assert_eq!(before, 1.0);
        // The ended id is one of 10 - active free one-digit ids, drawn uniformly.
        let expected = 1.0 / (10 - active) as f64;
        assert!((after - expected).abs() < 0.04, "{active} active: {after} vs {expected}");
    }
}

/// A fresh side name each call (allocate is idempotent per side).
fn rand_side() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn a_burned_id_stays_out_of_allocation_for_its_retention() {
    let retention = Duration::from_secs(300);
    let config = RendezvousConfig { burned_retention: retention, ..Default::default() };
    let mut server = Rendezvous::new(config, [9; 32]);
    let burned = allocated(&mut server, "app", "a");
    server.handle(T0, &join("app", burned, "guesser", false)).unwrap();
    server.handle(T0, &post("app", burned, "a", "pake", "x")).unwrap();
    server.handle(T0, &close("app", burned, "a", Mood::Scary)).unwrap();
    let Ok(Response::Closed(closed)) = server.handle(T0, &close("app", burned, "guesser", Mood::Lonely)) else {
        panic!()
    };
    assert!(!closed.deleted, "a burned channel is kept");
    assert_eq!(server.stats().messages, 0, "but its log is dropped");
    // Every other one-digit id is handed out before the burned one comes back.
    let others: Vec<u32> = (0..8).map(|i| allocated(&mut server, "app", &format!("o{i}"))).collect();
    assert!(!others.contains(&burned));
    assert!(allocated(&mut server, "app", "next") >= 10);
    // A late join with the old code learns why.
    assert_eq!(code_of(server.handle(T0, &join("app", burned, "honest", false))), ErrorCode::Burned);
    assert_eq!(server.next_expiry(), Some(T0 + retention));
    assert!(server.expire((T0 + retention).saturating_sub(Duration::from_millis(1))).is_empty());
    let mailbox = server.mailbox_of("app", ch(burned)).cloned().unwrap();
    assert_eq!(server.expire(T0 + retention), [("app".to_string(), mailbox)]);
    assert_eq!(
        code_of(server.handle(T0 + retention, &join("app", burned, "honest", false))),
        ErrorCode::UnknownChannel
    );
}

#[test]
fn every_operation_is_idempotent() {
    let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    let id = allocated(&mut server, "app", "a");
    assert_eq!(allocated(&mut server, "app", "a"), id, "a retried allocate returns the same channel");
    let other = allocated(&mut server, "app", "closer");
    server.handle(T0, &join("app", other, "peer", false)).unwrap();
    server.handle(T0, &close("app", other, "closer", Mood::Happy)).unwrap();
    let again = allocated(&mut server, "app", "closer");
    assert_ne!(again, other, "after closing, allocate gives a new channel");
    server.handle(T0, &close("app", again, "closer", Mood::Lonely)).unwrap();
    server.handle(T0, &close("app", other, "peer", Mood::Happy)).unwrap();
    // `other` had two sides, `again` one that left: both kept, emptied, for the retention.
    assert_eq!((server.stats().channels, server.stats().tombstones), (1, 2));
    assert_eq!(code_of(server.handle(T0, &join("app", other, "late", false))), ErrorCode::Crowded);
    assert_eq!(code_of(server.handle(T0, &join("app", again, "late", false))), ErrorCode::Abandoned);
    for _ in 0..2 {
        assert!(matches!(server.handle(T0, &join("app", id, "b", false)), Ok(Response::Joined(j)) if j.sides == 2));
    }
    for _ in 0..2 {
        assert!(
            matches!(server.handle(T0, &post("app", id, "a", "pake", "AAA")), Ok(Response::Posted(p)) if p.seq == 1)
        );
    }
    assert_eq!(code_of(server.handle(T0, &post("app", id, "a", "pake", "BBB"))), ErrorCode::Conflict);
    assert!(matches!(server.handle(T0, &post("app", id, "b", "pake", "CCC")), Ok(Response::Posted(p)) if p.seq == 2));
    assert_eq!(server.stats().messages, 2);
    for _ in 0..2 {
        assert!(
            matches!(server.handle(T0, &close("app", id, "a", Mood::Happy)), Ok(Response::Closed(c)) if !c.deleted)
        );
    }
    // The last close empties the channel, kept for the retention (the same answer again).
    for _ in 0..2 {
        assert!(
            matches!(server.handle(T0, &close("app", id, "b", Mood::Happy)), Ok(Response::Closed(c)) if !c.deleted)
        );
    }
    server.expire(T0 + server.config().burned_retention);
    // Closing a channel that is already gone still succeeds.
    assert!(matches!(server.handle(T0, &close("app", id, "b", Mood::Happy)), Ok(Response::Closed(c)) if c.deleted));
    assert_eq!(server.stats(), Default::default());
}

#[test]
fn fetch_returns_messages_after_the_cursor_in_order_with_closes() {
    let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    let id = allocated(&mut server, "app", "a");
    server.handle(T0, &join("app", id, "b", false)).unwrap();
    server.handle(T0, &post("app", id, "a", "pake", "1")).unwrap();
    server.handle(T0, &post("app", id, "b", "pake", "2")).unwrap();
    server.handle(T0, &post("app", id, "b", "data", "3")).unwrap();
    server.handle(T0, &close("app", id, "b", Mood::Happy)).unwrap();
    let Ok(Response::Fetched(all)) = server.handle(T0, &fetch("app", id, "a", 0)) else { panic!() };
    let bodies: Vec<&str> = all.messages.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["1", "2", "3"]);
    assert_eq!(all.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(all.closed.len(), 1);
    assert_eq!((all.closed[0].side.as_str(), all.closed[0].mood), ("b", Mood::Happy));
    let Ok(Response::Fetched(rest)) = server.handle(T0, &fetch("app", id, "a", 2)) else { panic!() };
    assert_eq!(rest.messages.len(), 1);
    let Ok(Response::Fetched(none)) = server.handle(T0, &fetch("app", id, "a", u64::MAX)) else { panic!() };
    assert!(none.messages.is_empty());
}

#[test]
fn membership_rules() {
    let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    let id = allocated(&mut server, "app", "a");
    assert_eq!(code_of(server.handle(T0, &join("app", 99, "b", false))), ErrorCode::UnknownChannel);
    assert_eq!(code_of(server.handle(T0, &join("other-app", id, "b", false))), ErrorCode::UnknownChannel);
    assert_eq!(code_of(server.handle(T0, &post("app", id, "b", "pake", "x"))), ErrorCode::NotJoined);
    assert_eq!(code_of(server.handle(T0, &fetch("app", id, "b", 0))), ErrorCode::NotJoined);
    server.handle(T0, &join("app", id, "b", false)).unwrap();
    assert_eq!(code_of(server.handle(T0, &join("app", id, "c", false))), ErrorCode::Crowded);
    // A stranger's close changes nothing and reads as a close of a free id.
    let stranger = server.handle(T0, &close("app", id, "c", Mood::Scary));
    assert_eq!(stranger, server.handle(T0, &close("app", 98, "c", Mood::Happy)));
    assert!(matches!(stranger, Ok(Response::Closed(c)) if c.deleted));
    assert_eq!(code_of(server.handle(T0, &join("app", id, "c", false))), ErrorCode::Crowded, "not burned");
    server.handle(T0, &close("app", id, "a", Mood::Lonely)).unwrap();
    assert_eq!(code_of(server.handle(T0, &post("app", id, "a", "pake", "x"))), ErrorCode::SideClosed);
    assert_eq!(code_of(server.handle(T0, &join("app", id, "a", false))), ErrorCode::SideClosed);
    // A closed side may still read (its peer may still be finishing).
    assert!(server.handle(T0, &fetch("app", id, "a", 0)).is_ok());
    // Join with create makes a channel at a chosen id.
    assert!(matches!(server.handle(T0, &join("app", 77, "x", true)), Ok(Response::Joined(j)) if j.sides == 1));
}

#[test]
fn a_scary_close_burns_the_channel() {
    let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    let id = allocated(&mut server, "app", "a");
    server.handle(T0, &join("app", id, "b", false)).unwrap();
    server.handle(T0, &close("app", id, "a", Mood::Scary)).unwrap();
    assert_eq!(code_of(server.handle(T0, &post("app", id, "b", "data", "x"))), ErrorCode::Burned);
    // The peer learns why from the close list.
    let Ok(Response::Fetched(f)) = server.handle(T0, &fetch("app", id, "b", 0)) else { panic!() };
    assert_eq!(f.closed[0].mood, Mood::Scary);

    let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    let id = allocated(&mut server, "app", "a");
    server.handle(T0, &close("app", id, "a", Mood::Scary)).unwrap();
    assert_eq!(server.stats().tombstones, 1, "a burned channel is kept for its retention");
    assert_eq!(code_of(server.handle(T0, &join("app", id, "late", false))), ErrorCode::Burned);
    let id = allocated(&mut server, "app", "a2");
    server.handle(T0, &join("app", id, "mallory", false)).unwrap();
    server.handle(T0, &close("app", id, "a2", Mood::Scary)).unwrap();
    assert_eq!(code_of(server.handle(T0, &join("app", id, "honest", false))), ErrorCode::Burned);
}

#[test]
fn idle_channels_expire_and_free_their_ids() {
    let config = RendezvousConfig { channel_expiry: Duration::from_secs(60), ..Default::default() };
    let mut server = Rendezvous::new(config, [0; 32]);
    let first = allocated(&mut server, "app", "a");
    let later = T0 + Duration::from_secs(30);
    let Ok(Response::Allocated(second)) = server.handle(later, &allocate("app", "b")) else { panic!() };
    assert_eq!(server.next_expiry(), Some(T0 + Duration::from_secs(60)));
    // Activity keeps a channel alive.
    server.handle(T0 + Duration::from_secs(59), &fetch("app", first, "a", 0)).unwrap();
    assert!(server.expire(T0 + Duration::from_secs(60)).is_empty());
    assert_eq!(server.expire(T0 + Duration::from_secs(90)), [("app".to_string(), second.mailbox.unwrap())]);
    assert_eq!(server.stats().channels, 1);
    // A request to an idle channel finds it gone even before a sweep.
    let much_later = T0 + Duration::from_secs(3600);
    assert_eq!(code_of(server.handle(much_later, &fetch("app", first, "a", 0))), ErrorCode::UnknownChannel);
    assert_eq!(server.stats().channels, 0);
    assert!((1..=9).contains(&allocated(&mut server, "app", "c")));
}

#[test]
fn limits_are_enforced() {
    let config = RendezvousConfig {
        max_message_bytes: 10,
        max_messages_per_channel: 2,
        max_channels_per_app: 2,
        max_channels: 3,
        ..Default::default()
    };
    let mut server = Rendezvous::new(config, [0; 32]);
    let id = allocated(&mut server, "app", "a");
    assert_eq!(code_of(server.handle(T0, &post("app", id, "a", "p1", &"x".repeat(11)))), ErrorCode::MessageTooLarge);
    server.handle(T0, &post("app", id, "a", "p1", &"x".repeat(10))).unwrap();
    server.handle(T0, &post("app", id, "a", "p2", "x")).unwrap();
    assert_eq!(code_of(server.handle(T0, &post("app", id, "a", "p3", "x"))), ErrorCode::TooManyMessages);
    let other = allocated(&mut server, "app", "b");
    assert_eq!(code_of(server.handle(T0, &allocate("app", "c"))), ErrorCode::TooManyChannels);
    let unused = (1..=9).find(|n| ![id, other].contains(n)).unwrap();
    assert_eq!(code_of(server.handle(T0, &join("app", unused, "c", true))), ErrorCode::TooManyChannels);
    allocated(&mut server, "app2", "a");
    assert_eq!(code_of(server.handle(T0, &allocate("app3", "a"))), ErrorCode::ServerFull);
    assert_eq!(server.stats().apps, 2, "refused requests leave no empty app behind");
}

#[test]
fn invalid_fields_are_refused_even_without_parsing() {
    let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    assert_eq!(code_of(server.handle(T0, &allocate("", "a"))), ErrorCode::InvalidAppid);
    assert_eq!(code_of(server.handle(T0, &allocate("app", "UPPER"))), ErrorCode::InvalidSide);
    let id = allocated(&mut server, "app", "a");
    assert_eq!(code_of(server.handle(T0, &post("app", id, "a", "bad phase", "x"))), ErrorCode::InvalidPhase);
}

#[test]
fn snapshots_restore_the_same_state() {
    let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    let id = allocated(&mut server, "app", "a");
    server.handle(T0, &join("app", id, "b", false)).unwrap();
    server.handle(T0, &post("app", id, "a", "pake", "one")).unwrap();
    server.handle(T0, &close("app", id, "b", Mood::Scary)).unwrap();
    let c = allocated(&mut server, "app", "c");
    allocated(&mut server, "other", "d");
    let snapshot = server.snapshot();
    let bytes = snapshot.to_json();
    let mut restored =
        Rendezvous::restore(Default::default(), RendezvousSnapshot::from_json(&bytes).unwrap(), [0; 32]).unwrap();
    assert_eq!(restored.snapshot(), snapshot);
    let mailbox = restored.mailbox_of("app", ch(id)).cloned().unwrap();
    let one = restored.mailbox_snapshot("app", &mailbox).unwrap();
    assert_eq!(Some(&one), snapshot.mailboxes.iter().find(|m| m.appid == "app" && m.nameplate == Some(ch(id))));
    assert_eq!(restored.mailbox_of("app", ch(99)), None);
    assert_eq!(restored.stats(), server.stats());
    // Behaviour carries over: idempotent allocate, burned channel, next free id.
    assert_eq!(allocated(&mut restored, "app", "c"), c);
    assert_eq!(code_of(restored.handle(T0, &post("app", id, "a", "data", "x"))), ErrorCode::Burned);
    let e = allocated(&mut restored, "app", "e");
    assert!(e != id && e != c && e <= 9, "{e}");
}

#[test]
fn invalid_snapshots_are_refused() {
    let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    let id = allocated(&mut server, "app", "a");
    server.handle(T0, &post("app", id, "a", "pake", "one")).unwrap();
    let good = server.snapshot();

    let mut dup = good.clone();
    dup.mailboxes.push(dup.mailboxes[0].clone());
    let mut two_ways_in = good.clone();
    let mut other = two_ways_in.mailboxes[0].clone();
    other.mailbox = wormhole_sync_core::wire::MailboxId::new("other").unwrap();
    two_ways_in.mailboxes.push(other);
    let mut crowded = good.clone();
    for side in ["b", "c"] {
        let mut m = crowded.mailboxes[0].members[0].clone();
        m.side = side.into();
        crowded.mailboxes[0].members.push(m);
    }
    let mut gap = good.clone();
    gap.mailboxes[0].messages[0].seq = 5;
    let mut stranger = good.clone();
    stranger.mailboxes[0].messages[0].side = "z".into();
    let mut empty = good.clone();
    empty.mailboxes[0].members.clear();
    for (name, bad) in [
        ("duplicate", dup),
        ("one nameplate, two mailboxes", two_ways_in),
        ("crowded", crowded),
        ("gap", gap),
        ("stranger", stranger),
        ("empty", empty),
    ] {
        assert!(Rendezvous::restore(Default::default(), bad, [0; 32]).is_err(), "{name}");
    }
    assert!(RendezvousSnapshot::from_json(b"{\"format\":1}").is_err());
    let foreign = String::from_utf8(good.to_json()).unwrap().replace("wormhole-sync/rendezvous", "other");
    let foreign = RendezvousSnapshot::from_json(foreign.as_bytes()).unwrap();
    assert!(Rendezvous::restore(Default::default(), foreign, [0; 32]).is_err());
}

#[test]
fn a_sweep_in_small_steps_expires_what_one_sweep_does() {
    use wormhole_sync_core::rendezvous::SweepCursor;
    let build = || {
        let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
        for app in ["a", "b", "c"] {
            for n in 0..7 {
                allocated(&mut server, app, &format!("side{n}"));
            }
        }
        server
    };
    let later = Timestamp::from_millis(T0.as_millis() + 10 * 24 * 3600 * 1000);
    let mut whole = build();
    let mut expected = whole.expire(later);
    expected.sort();
    let mut stepped = build();
    let mut cursor = SweepCursor::default();
    let mut got = Vec::new();
    let mut steps = 0;
    loop {
        let (expired, done) = stepped.expire_step(later, &mut cursor, 4);
        got.extend(expired);
        steps += 1;
        if done {
            break;
        }
    }
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(got.len(), 21);
    assert!(steps >= 5, "{steps} steps of at most 4 channels");
    assert_eq!(stepped.stats().channels, 0);
}

#[test]
fn a_code_whose_only_side_left_tells_a_late_receiver_so_for_the_retention() {
    let retention = Duration::from_secs(300);
    let config = RendezvousConfig { burned_retention: retention, ..Default::default() };
    let mut server = Rendezvous::new(config, [3; 32]);
    let id = allocated(&mut server, "app", "initiator");
    server.handle(T0, &post("app", id, "initiator", "pake", "P")).unwrap();
    // Its person pressed Ctrl-C (or it gave up) before anyone typed the code.
    let Ok(Response::Closed(closed)) = server.handle(T0, &close("app", id, "initiator", Mood::Lonely)) else {
        panic!()
    };
    assert!(!closed.deleted, "kept, emptied, for the retention");
    assert_eq!((server.stats().channels, server.stats().tombstones, server.stats().messages), (0, 1, 0));
    // The receiver who types the code learns that the other side left.
    assert_eq!(code_of(server.handle(T0, &join("app", id, "receiver", false))), ErrorCode::Abandoned);
    // The side that left cannot come back, and its id is not handed out meanwhile.
    assert_eq!(code_of(server.handle(T0, &join("app", id, "initiator", false))), ErrorCode::SideClosed);
    let others: Vec<u32> = (0..8).map(|i| allocated(&mut server, "app", &format!("o{i}"))).collect();
    assert!(!others.contains(&id));
    // After the retention the code names nothing, like any expired code.
    assert_eq!(server.expire(T0 + retention).len(), 1);
    assert_eq!(code_of(server.handle(T0 + retention, &join("app", id, "receiver", false))), ErrorCode::UnknownChannel);
}

#[test]
fn a_chosen_code_tried_again_replaces_the_channel_its_only_side_left() {
    let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    // `send --code 42-our-secret`, stopped before the receiver came, then run again.
    server.handle(T0, &join("app", 42, "first-try", true)).unwrap();
    server.handle(T0, &close("app", 42, "first-try", Mood::Lonely)).unwrap();
    let Ok(Response::Joined(joined)) = server.handle(T0, &join("app", 42, "second-try", true)) else { panic!() };
    assert_eq!(joined.sides, 1, "a fresh channel: the side that left is not in it");
    assert!(joined.log.is_some_and(|log| log.closed.is_empty()));
    assert_eq!((server.stats().channels, server.stats().tombstones), (1, 0));
    // The receiver who types the code now meets the second try.
    let Ok(Response::Joined(joined)) = server.handle(T0, &join("app", 42, "receiver", false)) else { panic!() };
    assert_eq!(joined.sides, 2);
}

#[test]
fn a_lone_channel_that_released_its_id_is_still_deleted_at_once() {
    // The mailbox protocol: a lone side lets go of the nameplate and closes
    // (in either order), and the number is free at once, as on the
    // reference server; so a magic-wormhole receiver that claims it later
    // waits for a new sender rather than being refused.
    for release_first in [true, false] {
        let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
        let nameplate = server.allocate_nameplate(T0, "app", "a").unwrap();
        let mailbox = server.claim(T0, "app", nameplate, "a").unwrap();
        server.open(T0, "app", &mailbox, "a").unwrap();
        if release_first {
            server.release(T0, "app", nameplate, "a").unwrap();
        }
        server.close(T0, "app", &mailbox, "a", Mood::Lonely).unwrap();
        if !release_first {
            assert_eq!(server.stats().tombstones, 1, "closed while holding the nameplate");
            server.release(T0, "app", nameplate, "a").unwrap();
        }
        assert_eq!(server.stats(), Default::default(), "release first: {release_first}");
    }
    // A claim (which may always create) replaces a channel whose lone side
    // closed without releasing.
    let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    let nameplate = server.allocate_nameplate(T0, "app", "a").unwrap();
    let mailbox = server.claim(T0, "app", nameplate, "a").unwrap();
    server.close(T0, "app", &mailbox, "a", Mood::Lonely).unwrap();
    let fresh = server.claim(T0, "app", nameplate, "b").unwrap();
    assert_ne!(fresh, mailbox);
    assert_eq!((server.stats().channels, server.stats().tombstones), (1, 0));
}

#[test]
fn a_restored_rendezvous_keeps_a_left_channel_for_its_retention() {
    let mut server = Rendezvous::new(RendezvousConfig::default(), [4; 32]);
    let id = allocated(&mut server, "app", "initiator");
    server.handle(T0, &close("app", id, "initiator", Mood::Lonely)).unwrap();
    let snapshot = server.snapshot();
    assert!(snapshot.mailboxes.iter().all(|m| m.is_tombstone()));
    let mut restored = Rendezvous::restore(server.config().clone(), snapshot, [0; 32]).unwrap();
    assert_eq!(restored.stats(), server.stats());
    assert_eq!(code_of(restored.handle(T0, &join("app", id, "receiver", false))), ErrorCode::Abandoned);
}
