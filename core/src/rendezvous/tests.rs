use super::*;
use crate::code::ChannelId;
use crate::time::Timestamp;
use crate::wire::{
    AllocateRequest, CloseRequest, CloseResponse, ErrorCode, FetchRequest, JoinRequest, MailboxId, Mood, PostRequest,
    Request, Response,
};

#[test]
fn the_last_close_finishes_the_exchange_once() {
    let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    let at = Timestamp::EPOCH;
    let channel = server.allocate_nameplate(at, "app", "s1").unwrap();
    let mailbox = server.claim(at, "app", channel, "s1").unwrap();
    server.claim(at, "app", channel, "s2").unwrap();
    server.close(at, "app", &mailbox, "s1", Mood::Happy).unwrap();
    assert!(server.finished().is_empty(), "one side is still there");
    server.close(at, "app", &mailbox, "s2", Mood::Scary).unwrap();
    let finished = server.finished().to_vec();
    assert_eq!(finished.len(), 1);
    assert_eq!((finished[0].appid.as_str(), &finished[0].moods[..]), ("app", &[Mood::Happy, Mood::Scary][..]));
    // Told once: the next operation starts afresh.
    server.close(at, "app", &mailbox, "s2", Mood::Scary).unwrap();
    assert!(server.finished().is_empty());
}

const APP: &str = "app";

fn at(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

#[test]
fn mailbox_ids_are_base32_of_eight_random_bytes() {
    assert_eq!(base32([0; 8]), "aaaaaaaaaaaaa");
    assert_eq!(base32([0xff; 8]), "7777777777776");
    // As Python's base64.b32encode(bytes(range(8))).lower().strip("=").
    assert_eq!(base32([0, 1, 2, 3, 4, 5, 6, 7]), "aaaqeayeaudao");
}

/// Allocates for "a" and joins as "b": the nameplate and its mailbox.
fn paired(server: &mut Rendezvous) -> (ChannelId, MailboxId) {
    let Ok(Response::Allocated(a)) = server.handle(at(0), &Request::Allocate(AllocateRequest::new(APP, "a"))) else {
        panic!()
    };
    let join = Request::Join(JoinRequest::new(APP, "b", a.channel, false));
    let Ok(Response::Joined(joined)) = server.handle(at(1), &join) else { panic!() };
    assert_eq!(joined.mailbox, a.mailbox);
    (a.channel, a.mailbox.unwrap())
}

/// A code used by two sides is spent: its number leads to its mailbox
/// while the mailbox lives and for the retention after, so whoever took
/// the second seat cannot re-create it and wait there for the real
/// receiver (a second guess at the same code).
#[test]
fn a_nameplate_two_sides_used_stays_with_its_mailbox() {
    let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    let (channel, mailbox) = paired(&mut server);
    let post = |side: &str| {
        let mut post = PostRequest::new(APP, side, channel, "pake", "x");
        post.mailbox = Some(mailbox.clone());
        Request::Post(post)
    };
    server.handle(at(2), &post("a")).unwrap();
    server.handle(at(3), &post("b")).unwrap();
    assert_eq!(server.effects()[0].kind, EffectKind::Released);
    assert_eq!(server.mailbox_of(APP, channel), Some(&mailbox), "both know the mailbox; the number stays");
    let third = |create| Request::Join(JoinRequest::new(APP, "c", channel, create));
    assert_eq!(server.handle(at(4), &third(false)).unwrap_err().code, ErrorCode::Crowded);
    assert_eq!(server.handle(at(4), &third(true)).unwrap_err().code, ErrorCode::Crowded);
    assert_eq!(server.claim(at(4), APP, channel, "c").unwrap_err().code, ErrorCode::Crowded);
    let others: Vec<ChannelId> = (1..=9).filter(|n| *n != channel.get()).filter_map(ChannelId::new).collect();
    server.reserve_nameplates(APP, others);
    let next = server.allocate_nameplate(at(4), APP, "d").unwrap();
    assert!(next.get() >= 10, "the spent number was handed out again");
    // Both close: the mailbox is emptied and kept for the retention.
    for side in ["a", "b"] {
        let close = CloseRequest { appid: APP.into(), side: side.into(), channel, mailbox: None, mood: Mood::Happy };
        let close = Request::Close(close).with_mailbox(Some(mailbox.clone()));
        assert_eq!(server.handle(at(5), &close), Ok(Response::Closed(CloseResponse { deleted: false })));
    }
    assert_eq!(server.effects().last().map(|e| e.kind), Some(EffectKind::LogDropped));
    assert!(server.messages_after(APP, &mailbox, 0).is_empty());
    assert!(server.mailbox_snapshot(APP, &mailbox).unwrap().is_tombstone());
    assert_eq!(server.handle(at(6), &third(true)).unwrap_err().code, ErrorCode::Crowded);
    let retention = server.config().burned_retention.as_millis() as u64;
    assert_eq!(server.expire(at(5 + retention - 1)), Vec::new());
    assert_eq!(server.expire(at(5 + retention)), vec![(APP.to_string(), mailbox)]);
    assert!(!server.contains(APP, channel), "after the retention the number is free");
}

#[test]
fn finished_exchanges_kept_for_the_retention_leave_the_apps_cap_free() {
    let config = RendezvousConfig { max_channels_per_app: 2, ..RendezvousConfig::default() };
    let mut server = Rendezvous::new(config, [7; 32]);
    // Three whole exchanges, one after the other: each leaves a spent
    // channel behind, and the next still gets a channel.
    for round in 0..3u64 {
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        let allocate = Request::Allocate(AllocateRequest::new(APP, &a));
        let Ok(Response::Allocated(allocated)) = server.handle(at(round), &allocate) else {
            panic!("round {round}: no channel")
        };
        let channel = allocated.channel;
        server.handle(at(round), &Request::Join(JoinRequest::new(APP, &b, channel, false))).unwrap();
        for side in [&a, &b] {
            let close =
                CloseRequest { appid: APP.into(), side: side.clone(), channel, mailbox: None, mood: Mood::Happy };
            server.handle(at(round), &Request::Close(close)).unwrap();
        }
    }
    assert_eq!(server.stats().tombstones, 3);
    // Two open channels fill the cap, tombstones or not.
    let Ok(Response::Allocated(c)) = server.handle(at(9), &Request::Allocate(AllocateRequest::new(APP, "c"))) else {
        panic!("no channel for c")
    };
    server.handle(at(9), &Request::Allocate(AllocateRequest::new(APP, "d"))).unwrap();
    let refused = server.handle(at(9), &Request::Allocate(AllocateRequest::new(APP, "e"))).unwrap_err();
    assert_eq!(refused.code, ErrorCode::TooManyChannels);
    // Restored from a snapshot, the tombstones are told apart again.
    let mut restored = Rendezvous::restore(server.config().clone(), server.snapshot(), [0; 32]).unwrap();
    let refused = restored.handle(at(9), &Request::Allocate(AllocateRequest::new(APP, "e"))).unwrap_err();
    assert_eq!(refused.code, ErrorCode::TooManyChannels);
    let close =
        CloseRequest { appid: APP.into(), side: "c".into(), channel: c.channel, mailbox: None, mood: Mood::Lonely };
    restored.handle(at(9), &Request::Close(close)).unwrap();
    restored.handle(at(9), &Request::Allocate(AllocateRequest::new(APP, "e"))).unwrap();
}

#[test]
fn a_lone_initiator_naming_its_mailbox_keeps_the_nameplate() {
    let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    let Ok(Response::Allocated(a)) = server.handle(at(0), &Request::Allocate(AllocateRequest::new(APP, "a"))) else {
        panic!()
    };
    let fetch = Request::Fetch(FetchRequest::new(APP, "a", a.channel, 0, 0)).with_mailbox(a.mailbox.clone());
    server.handle(at(1), &fetch).unwrap();
    assert!(server.contains(APP, a.channel), "the receiver has yet to use the code");
}

/// A side alone in its mailbox released the number (the mailbox
/// protocol allows it), and its peer came in by the mailbox id.
fn released_alone_then_opened(server: &mut Rendezvous) -> (ChannelId, MailboxId) {
    let channel = server.allocate_nameplate(at(0), APP, "a").unwrap();
    let mailbox = server.claim(at(0), APP, channel, "a").unwrap();
    server.release(at(1), APP, channel, "a").unwrap();
    assert!(!server.contains(APP, channel), "one side, released: the number is free");
    server.open(at(2), APP, &mailbox, "b").unwrap();
    (channel, mailbox)
}

#[test]
fn a_burn_after_release_puts_the_nameplate_back_if_free() {
    let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    let (channel, mailbox) = released_alone_then_opened(&mut server);
    server.close(at(3), APP, &mailbox, "a", Mood::Scary).unwrap();
    assert!(server.contains(APP, channel));
    let late = Request::Join(JoinRequest::new(APP, "c", channel, false));
    assert_eq!(server.handle(at(4), &late).unwrap_err().code, ErrorCode::Burned);
}

#[test]
fn reserved_nameplates_are_never_allocated_nor_taken_back_by_a_burn() {
    let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    let (channel, mailbox) = released_alone_then_opened(&mut server);
    // Another mailbox, not held by this partial view, took the number since.
    server.reserve_nameplates(APP, [channel]);
    server.close(at(3), APP, &mailbox, "a", Mood::Scary).unwrap();
    assert!(!server.contains(APP, channel), "the burn took a reserved number back");
    let all_but_two: Vec<ChannelId> = (1..=99).filter(|n| *n != 5 && *n != 77).filter_map(ChannelId::new).collect();
    server.reserve_nameplates(APP, all_but_two);
    let mut given: Vec<u32> =
        ["x", "y"].iter().map(|side| server.allocate_nameplate(at(4), APP, side).unwrap().get()).collect();
    given.sort_unstable();
    assert_eq!(given, [5, 77]);
    let next = server.allocate_nameplate(at(4), APP, "z").unwrap().get();
    assert!((100..=999).contains(&next), "{next}");
}

#[test]
fn a_view_told_the_counts_asks_about_a_burned_mailboxs_number_and_says_when_it_ran_out() {
    // The burned mailbox's number: asked about, and taken back only if free.
    for taken_elsewhere in [false, true] {
        let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
        let (channel, mailbox) = released_alone_then_opened(&mut server);
        let mut in_use = NameplatesInUse::default();
        in_use.add(1, i64::from(taken_elsewhere));
        let asked = server.nameplates_to_check(APP, &in_use, 1);
        assert!(asked.contains(&channel), "{asked:?}");
        if taken_elsewhere {
            server.reserve_nameplates(APP, [channel]);
        }
        server.close(at(3), APP, &mailbox, "a", Mood::Scary).unwrap();
        assert_eq!(server.contains(APP, channel), !taken_elsewhere);
    }
    // Counts that say the two-digit numbers are free when every one asked
    // about is in use: the allocation is refused, and the view says why.
    let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    let mut in_use = NameplatesInUse::default();
    in_use.add(1, 9);
    let asked = server.nameplates_to_check(APP, &in_use, 1);
    assert!(asked.iter().all(|n| (10..=99).contains(&n.get())), "{asked:?}");
    server.reserve_nameplates(APP, asked);
    assert!(!server.needs_every_nameplate());
    let refused = server.allocate_nameplate(at(4), APP, "x").unwrap_err();
    assert_eq!(refused.code, ErrorCode::TooManyChannels);
    assert!(server.needs_every_nameplate());
}

#[test]
fn mailbox_protocol_refusals() {
    let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    let nameplate = server.allocate_nameplate(at(0), APP, "a").unwrap();
    let mailbox = server.claim(at(0), APP, nameplate, "a").unwrap();
    server.claim(at(1), APP, nameplate, "b").unwrap();
    assert_eq!(server.claim(at(1), APP, nameplate, "c").unwrap_err().code, ErrorCode::Crowded);
    assert_eq!(server.open(at(1), APP, &mailbox, "c").unwrap_err().code, ErrorCode::Crowded);
    server.release(at(2), APP, nameplate, "b").unwrap();
    assert_eq!(server.claim(at(2), APP, nameplate, "b").unwrap_err().code, ErrorCode::Reclaimed);
    // Every listener, the sender included, sees each message; a repeat is not stored twice.
    assert_eq!(server.add(at(3), APP, &mailbox, "a", "pake", "aa", Some("1".into())), Ok(1));
    assert_eq!(server.add(at(3), APP, &mailbox, "a", "pake", "aa", Some("1".into())), Ok(1));
    let replay = server.open(at(4), APP, &mailbox, "b").unwrap();
    assert_eq!(replay.len(), 1);
    assert_eq!((replay[0].server_rx, replay[0].id.as_deref()), (Some(at(3)), Some("1")));
    server.close(at(5), APP, &mailbox, "a", Mood::Happy).unwrap();
    server.close(at(5), APP, &mailbox, "b", Mood::Happy).unwrap();
    // Kept, emptied, for the retention: the code was used.
    assert_eq!(server.claim(at(6), APP, nameplate, "c").unwrap_err().code, ErrorCode::Crowded);
    assert_eq!(server.stats().messages, 0);
    server.expire(at(5) + server.config().burned_retention);
    assert!(!server.contains_mailbox(APP, &mailbox));
    assert_eq!(server.effects().last().map(|e| e.kind), Some(EffectKind::Deleted));
    assert_eq!(server.stats(), RendezvousStats::default());
}

#[test]
fn both_front_ends_share_nameplates() {
    let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    let mut taken = std::collections::BTreeSet::new();
    for i in 0..9 {
        let number = if i % 2 == 0 {
            server.allocate_nameplate(at(0), APP, &format!("w{i}")).unwrap()
        } else {
            let allocate = Request::Allocate(AllocateRequest::new(APP, format!("h{i}")));
            let Ok(Response::Allocated(a)) = server.handle(at(0), &allocate) else { panic!() };
            a.channel
        };
        assert!(taken.insert(number.get()), "nameplate {number} handed out twice");
    }
    assert_eq!(taken, (1..=9).collect());
    let tenth = server.allocate_nameplate(at(0), APP, "w10").unwrap();
    assert!(tenth.get() >= 10, "one-digit nameplates are all in use");
}

#[test]
fn version_one_snapshots_restore_as_mailboxes_holding_their_nameplates() {
    let channel = ChannelId::new(7).unwrap();
    let v1 = r#"{"format":"wormhole-sync/rendezvous","version":1,"channels":[{"appid":"app","channel":7,
        "members":[{"side":"a","allocated":true,"closed":null}],
        "messages":[{"seq":1,"side":"a","phase":"pake","body":"x"}],"burned":false,"last_activity":5}]}"#;
    let snapshot = RendezvousSnapshot::from_json(v1.as_bytes()).unwrap();
    let mut server = Rendezvous::restore(RendezvousConfig::default(), snapshot, [0; 32]).unwrap();
    assert!(server.contains(APP, channel));
    let join = Request::Join(JoinRequest::new(APP, "b", channel, false));
    let Ok(Response::Joined(joined)) = server.handle(at(6), &join) else { panic!() };
    assert_eq!(joined.mailbox.as_ref().map(MailboxId::as_str), Some("c7"));
    assert_eq!(joined.log.unwrap().messages.len(), 1);
    let again = Rendezvous::restore(RendezvousConfig::default(), server.snapshot(), [0; 32]).unwrap();
    assert_eq!(again.snapshot(), server.snapshot());
}

/// Changes drained as values: what to persist, which are soft (need not be
/// durable before the answer), which free budgets, which are news.
#[test]
fn changes_carry_their_data_and_the_soft_and_news_rules() {
    let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    let (channel, mailbox) = paired(&mut server);
    server.take_changes();
    let named = |request: Request| request.with_mailbox(Some(mailbox.clone()));
    // A read that names the mailbox lets go of the nameplate: soft, no news.
    let fetch = named(Request::Fetch(FetchRequest::new(APP, "a", channel, 0, 0)));
    server.handle(at(2), &fetch).unwrap();
    let [released] = &server.take_changes().mailboxes[..] else { panic!("one mailbox changed") };
    assert!(matches!(released.persist, Persist::Released(_)) && released.is_soft() && !released.news);
    // A read again: only its activity time, soft.
    server.handle(at(3), &fetch).unwrap();
    let [read] = &server.take_changes().mailboxes[..] else { panic!("one mailbox changed") };
    assert_eq!(read.persist, Persist::Activity { last_activity: at(3) });
    assert!(read.is_soft() && !read.news);
    // A post: its message travels with the change, which is news and must be durable.
    server.handle(at(4), &named(Request::Post(PostRequest::new(APP, "b", channel, "pake", "ab")))).unwrap();
    let [posted] = &server.take_changes().mailboxes[..] else { panic!("one mailbox changed") };
    assert_eq!(posted.appended.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["ab"]);
    assert!(posted.news && !posted.is_soft());
    // The last close drops the log: all of it is persisted, and its budgets are free.
    for side in ["a", "b"] {
        server.handle(at(5), &named(Request::Close(CloseRequest::new(APP, side, channel, Mood::Happy)))).unwrap();
    }
    let changes = server.take_changes();
    let [closed] = &changes.mailboxes[..] else { panic!("one mailbox changed") };
    assert!(matches!(&closed.persist, Persist::Whole(s) if s.messages.is_empty()));
    assert!(closed.log_dropped && closed.frees_budgets() && closed.news);
    assert_eq!(changes.finished.len(), 1, "the exchange finished");
    assert!(server.take_changes().mailboxes.is_empty() && server.effects().is_empty(), "drained");
    // Expiry deletes it: gone.
    server.expire(at(5 + server.config().burned_retention.as_millis() as u64));
    let [gone] = &server.take_changes().mailboxes[..] else { panic!("one mailbox changed") };
    assert_eq!(gone.persist, Persist::Gone);
    assert!(gone.deleted && gone.frees_budgets());
}
