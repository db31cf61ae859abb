//! Behaviour of one exchange against an in-memory rendezvous.

mod common;

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use common::{config, events, restored, started_initiator, Net, Side, START};
use proptest::prelude::*;
use wormhole_sync_core::wire::{Log, Message, Request};
use wormhole_sync_core::{
    Code, Config, Error, Event, Exchange, Mood, Schedule, ServerErrorCode, TransportError, MAX_DATA_LEN,
};

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn happy_path_exchanges_data_both_ways() {
    let mut net = Net::new();
    let (mut initiator, code) = started_initiator(&mut net, b"initiator's data", 1);
    assert!((1..=9).contains(&code.channel().get()), "a quiet app gets a one-digit channel");
    assert_eq!(code.words().len(), 2);
    let mut receiver =
        Side::from(Exchange::receiver(config(), code.clone(), b"receiver's data".to_vec(), [2; 32]).unwrap());
    receiver.start(net.now);
    net.run(&mut [&mut initiator, &mut receiver], MINUTE);

    // Each piece of news comes once, in order (the initiator's code was read already).
    let (i_events, r_events) = (events(&mut initiator), events(&mut receiver));
    let verifier = initiator.verifier().unwrap().clone();
    assert_eq!(i_events, [Event::Verifier(verifier.clone()), Event::Outcome(Ok(b"receiver's data".to_vec()))]);
    assert_eq!(
        r_events,
        [Event::Code(code), Event::Verifier(verifier), Event::Outcome(Ok(b"initiator's data".to_vec()))]
    );
    assert_eq!(initiator.outcome(), Some(Ok(&b"receiver's data"[..])));
    assert_eq!(receiver.outcome(), Some(Ok(&b"initiator's data"[..])));
    assert!(initiator.is_finished() && receiver.is_finished());
    // Both closed: the log is gone; the mailbox is kept, empty, for the
    // retention, so its spent code cannot be used again.
    assert_eq!(net.server.stats().messages, 0, "both closed, so the log is gone");
    net.server.expire(net.now + net.server.config().burned_retention);
    assert_eq!(net.server.stats().channels, 0, "after the retention the channel is gone");
}

/// A post waits (long-polls) exactly when its side has nothing to send
/// until the peer answers; request counts are checked in the simulation,
/// whose server holds long-polls as a real one does.
#[test]
fn a_post_waits_only_when_nothing_follows_it_until_the_peer_answers() {
    let mut net = Net::new();
    let (mut initiator, code) = started_initiator(&mut net, b"i", 1);
    let mut receiver = Side::from(Exchange::receiver(config(), code, b"r".to_vec(), [2; 32]).unwrap());
    receiver.start(net.now);
    net.run(&mut [&mut initiator, &mut receiver], MINUTE);
    assert_eq!(receiver.outcome(), Some(Ok(&b"i"[..])));
    let posts: Vec<(&str, Option<u64>, u64)> = net
        .requests
        .iter()
        .filter_map(|r| if let Request::Post(p) = r { Some((p.phase.as_str(), p.after, p.wait_ms)) } else { None })
        .collect();
    // The initiator's pake waits for the receiver's, the whole long-poll: it has
    // not heard from the receiver. The receiver learnt the initiator's pake from
    // its join, so its own pake post goes on to the data post, which waits 5 s
    // (the initiator is active); the initiator's data post finds the
    // receiver's data already there.
    assert_eq!(
        posts,
        [("pake", Some(0), 30_000), ("pake", Some(1), 0), ("data", Some(2), 5_000), ("data", Some(3), 0)]
    );
}

#[test]
fn long_poll_waits_are_short_while_the_peer_is_active_and_grow_as_it_falls_quiet() {
    let (mut net, mut initiator, log) = initiator_and_receiver_messages();
    let peer_pake = log.iter().find(|m| m.phase == "pake" && m.seq != 1).unwrap().clone();
    answer_fetch(&mut net, &mut initiator, vec![peer_pake]);
    // Every long-poll from now on runs out empty (the receiver went quiet).
    let mut waits = Vec::new();
    while waits.len() < 6 {
        let t = initiator.poll_transmit(net.now).expect("a long-poll is due at once after a held one");
        let (wait_ms, body) = match t.request() {
            Request::Post(p) => (p.wait_ms, br#"{"seq": 3, "log": {"messages": [], "closed": []}}"#.to_vec()),
            Request::Fetch(f) => (f.wait_ms, br#"{"messages": [], "closed": []}"#.to_vec()),
            other => panic!("{other:?}"),
        };
        waits.push(wait_ms);
        net.now = net.now + Duration::from_millis(wait_ms);
        initiator.handle_response(net.now, t.id(), 200, &body);
    }
    assert_eq!(waits, [5_000, 5_000, 10_000, 20_000, 30_000, 30_000]);
}

#[test]
fn a_server_without_logs_in_its_answers_still_works_by_fetching() {
    let mut net = Net::new();
    net.without_logs = true;
    let (mut initiator, code) = started_initiator(&mut net, b"i", 1);
    let mut receiver = Side::from(Exchange::receiver(config(), code, b"r".to_vec(), [2; 32]).unwrap());
    receiver.start(net.now);
    net.run(&mut [&mut initiator, &mut receiver], MINUTE);
    assert_eq!(initiator.outcome(), Some(Ok(&b"r"[..])));
    assert_eq!(receiver.outcome(), Some(Ok(&b"i"[..])));
    assert!(net.requests.iter().any(|r| matches!(r, Request::Fetch(_))));
}

#[test]
fn channel_ids_stay_short_and_are_freed_after_the_retention() {
    let mut net = Net::new();
    let (mut first, code) = started_initiator(&mut net, b"a", 1);
    let (_second, second_code) = started_initiator(&mut net, b"b", 2);
    assert_ne!(code.channel(), second_code.channel());
    assert!(code.channel().get() <= 9 && second_code.channel().get() <= 9);
    let mut receiver = Side::from(Exchange::receiver(config(), code.clone(), b"r".to_vec(), [3; 32]).unwrap());
    receiver.start(net.now);
    net.run(&mut [&mut first, &mut receiver], MINUTE);
    assert!(net.server.contains("example.com/app1", code.channel()), "a used code is spent until the retention");
    net.server.expire(net.now + net.server.config().burned_retention);
    assert!(!net.server.contains("example.com/app1", code.channel()), "then its id is free");
    assert!(net.server.contains("example.com/app1", second_code.channel()));
}

#[test]
fn wrong_code_fails_on_both_sides_and_burns_the_code() {
    let mut net = Net::new();
    let (mut initiator, code) = started_initiator(&mut net, b"secret", 1);
    let wrong = Code::new(code.channel(), &["wrong", "words"]).unwrap();
    let mut receiver = Side::from(Exchange::receiver(config(), wrong, b"theirs".to_vec(), [2; 32]).unwrap());
    receiver.start(net.now);
    net.run(&mut [&mut initiator, &mut receiver], MINUTE);
    assert_eq!(initiator.outcome(), Some(Err(&Error::WrongCode)));
    assert_eq!(receiver.outcome(), Some(Err(&Error::WrongCode)));
    assert_ne!(initiator.verifier(), receiver.verifier());
    // Both closed "scary": the channel is burned, so the right code no longer
    // works, and its holder is told the code was used up, not that it is mistyped.
    let mut late = Side::from(Exchange::receiver(config(), code.clone(), b"late".to_vec(), [3; 32]).unwrap());
    late.start(net.now);
    net.run(&mut [&mut late], MINUTE);
    assert_eq!(late.outcome(), Some(Err(&Error::ChannelBurned)));
    assert!(late.outcome().unwrap().unwrap_err().to_string().contains("ask for a new one"));
    // Once the burned channel's retention has passed, the id is free again.
    let retention = net.server.config().burned_retention;
    net.server.expire(net.now + retention);
    assert!(!net.server.contains("example.com/app1", code.channel()));
}

#[test]
fn an_attacker_gets_one_guess_even_if_it_never_closes() {
    let mut net = Net::new();
    let (mut initiator, code) = started_initiator(&mut net, b"secret", 1);
    let guess = Code::new(code.channel(), &["lucky", "guess"]).unwrap();
    let mut attacker = Side::from(Exchange::receiver(config(), guess, b"x".to_vec(), [2; 32]).unwrap());
    attacker.start(net.now);
    // The attacker posts its PAKE message and data, then vanishes without closing.
    for _ in 0..3 {
        net.pump(&mut attacker);
        net.pump(&mut initiator);
    }
    net.run(&mut [&mut initiator], MINUTE);
    assert_eq!(initiator.outcome(), Some(Err(&Error::WrongCode)));
    // The channel is burned: the right code is refused, the initiator's data never leaves.
    let mut honest = Side::from(Exchange::receiver(config(), code, b"r".to_vec(), [3; 32]).unwrap());
    honest.start(net.now);
    net.run(&mut [&mut honest], MINUTE);
    assert_eq!(honest.outcome(), Some(Err(&Error::ChannelBurned)));
}

#[test]
fn a_third_side_gets_crowded() {
    let mut net = Net::new();
    let (mut initiator, code) = started_initiator(&mut net, b"i", 1);
    let mut receiver = Side::from(Exchange::receiver(config(), code.clone(), b"r".to_vec(), [2; 32]).unwrap());
    receiver.start(net.now);
    net.pump(&mut receiver);
    let mut third = Side::from(Exchange::receiver(config(), code, b"t".to_vec(), [3; 32]).unwrap());
    third.start(net.now);
    net.pump(&mut third);
    assert_eq!(third.outcome(), Some(Err(&Error::Crowded)));
    assert!(third.is_finished());
    // The two rightful sides are unaffected.
    net.run(&mut [&mut initiator, &mut receiver], MINUTE);
    assert_eq!(initiator.outcome(), Some(Ok(&b"r"[..])));
}

#[test]
fn unknown_channel_fails_at_once() {
    let mut net = Net::new();
    let code: Code = "42-guitarist-revenge".parse().unwrap();
    let mut receiver = Side::from(Exchange::receiver(config(), code, b"r".to_vec(), [2; 32]).unwrap());
    receiver.start(net.now);
    net.pump(&mut receiver);
    assert_eq!(receiver.outcome(), Some(Err(&Error::UnknownChannel)));
    assert_eq!(net.now, START);
}

#[test]
fn chosen_codes_work_whichever_side_starts_first() {
    let code: Code = "4242-purple-sausages".parse().unwrap();
    for receiver_first in [false, true] {
        let mut net = Net::new();
        let mut initiator =
            Side::from(Exchange::initiator_with_code(config(), code.clone(), b"i".to_vec(), [1; 32]).unwrap());
        let mut receiver = Side::from(
            Exchange::receiver(config(), code.clone(), b"r".to_vec(), [2; 32]).unwrap().create_channel_if_missing(),
        );
        if receiver_first {
            receiver.start(net.now);
            net.pump(&mut receiver);
        }
        initiator.start(net.now);
        receiver.start(net.now);
        net.run(&mut [&mut initiator, &mut receiver], MINUTE);
        assert_eq!(initiator.outcome(), Some(Ok(&b"r"[..])), "receiver first: {receiver_first}");
        assert_eq!(receiver.outcome(), Some(Ok(&b"i"[..])));
    }
}

#[test]
fn timeout_fires_at_the_deadline_and_closes_lonely() {
    let mut net = Net::new();
    let timeout = Duration::from_secs(90);
    let mut initiator =
        Side::from(Exchange::initiator(config().with_timeout(timeout), b"i".to_vec(), [1; 32]).unwrap());
    initiator.start(net.now);
    net.run(&mut [&mut initiator], Duration::from_secs(600));
    assert_eq!(initiator.outcome(), Some(Err(&Error::Timeout)));
    let failed_at = net.now;
    assert!(failed_at >= START + timeout && failed_at <= START + timeout + Duration::from_millis(500));
    let closes: Vec<_> =
        net.requests.iter().filter_map(|r| if let Request::Close(c) = r { Some(c.mood) } else { None }).collect();
    assert_eq!(closes, [Mood::Lonely]);
    assert_eq!(net.server.stats().channels, 0);
    assert_eq!(initiator.poll_timeout(), None);
}

#[test]
fn an_unreachable_server_is_reported_as_such() {
    let mut initiator = Side::from(Exchange::initiator(config().with_timeout(MINUTE), b"i".to_vec(), [1; 32]).unwrap());
    initiator.start(START);
    let mut now = START;
    let mut attempts = 0;
    while initiator.outcome().is_none() {
        while let Some(t) = initiator.poll_transmit(now) {
            attempts += 1;
            initiator.handle_transport_error(now, t.id(), TransportError::from_message("connection refused"));
        }
        now = initiator.poll_timeout().unwrap();
        initiator.handle_timeout(now);
    }
    let Some(Err(Error::ServerUnreachable { cause })) = initiator.outcome() else { panic!("{initiator:?}") };
    assert_eq!(cause.to_string(), "connection refused");
    // Retried every 0.5 s (the default schedule) for the whole minute.
    assert!((115..=125).contains(&attempts), "{attempts} attempts");
    assert_eq!(now, START + MINUTE);
}

#[test]
fn a_connect_timeout_gives_up_early_on_a_server_never_reached_and_says_why_meanwhile() {
    let config = config().with_timeout(60 * MINUTE).with_connect_timeout(MINUTE).unwrap();
    let mut initiator = Side::from(Exchange::initiator(config, b"i".to_vec(), [1; 32]).unwrap());
    initiator.start(START);
    assert_eq!(initiator.server_trouble(), None, "nothing failed yet");
    let mut now = START;
    while initiator.outcome().is_none() {
        while let Some(t) = initiator.poll_transmit(now) {
            initiator.handle_transport_error(now, t.id(), TransportError::from_message("connection refused"));
            let trouble = initiator.server_trouble().expect("trouble while retrying");
            assert_eq!((trouble.since, trouble.server_reached), (START, false));
            assert_eq!(trouble.cause.to_string(), "connection refused");
        }
        now = initiator.poll_timeout().unwrap();
        initiator.handle_timeout(now);
    }
    assert!(matches!(initiator.outcome(), Some(Err(Error::ServerUnreachable { .. }))), "{initiator:?}");
    assert_eq!(now, START + MINUTE, "the connect timeout, not the hour");
    assert_eq!(initiator.server_trouble(), None, "no trouble to report once there is an outcome");
}

#[test]
fn a_connect_timeout_no_longer_counts_once_the_server_answered() {
    let mut net = Net::new();
    let config = config().with_timeout(10 * MINUTE).with_connect_timeout(MINUTE).unwrap();
    let mut initiator = Side::from(Exchange::initiator(config, b"i".to_vec(), [1; 32]).unwrap());
    initiator.start(net.now);
    net.run(&mut [&mut initiator], 5 * MINUTE);
    assert_eq!(initiator.outcome(), None, "waits for the other side past the connect timeout");
    assert_eq!(initiator.server_trouble(), None, "every request was answered");
    // The server goes away: trouble is reported from the first failure, and
    // the hard timeout still ends it.
    let mut now = net.now;
    let went_away = now;
    while initiator.outcome().is_none() {
        while let Some(t) = initiator.poll_transmit(now) {
            initiator.handle_transport_error(now, t.id(), TransportError::from_message("connection reset"));
        }
        if let Some(trouble) = initiator.server_trouble() {
            assert!(trouble.server_reached && trouble.since >= went_away, "{trouble:?}");
        }
        now = initiator.poll_timeout().unwrap();
        initiator.handle_timeout(now);
    }
    assert_eq!(initiator.outcome(), Some(Err(&Error::Timeout)));
    assert!(now >= START + 10 * MINUTE);
}

#[test]
fn a_connect_timeout_over_a_year_is_refused() {
    assert!(matches!(
        config().with_connect_timeout(Duration::from_secs(367 * 24 * 3600)),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn idle_polling_follows_the_schedule() {
    let schedule = Schedule::from_secs(&[(0.0, 1.0), (10.0, 5.0)]).unwrap();
    let mut net = Net::new();
    let config = config().with_schedule(schedule).with_timeout(Duration::from_secs(60));
    let mut initiator = Side::from(Exchange::initiator(config, b"i".to_vec(), [1; 32]).unwrap());
    initiator.start(net.now);
    net.run(&mut [&mut initiator], Duration::from_secs(59));
    let fetches = net.requests.iter().filter(|r| matches!(r, Request::Fetch(_))).count();
    // Every second for 10 s, then every 5 s for 49 s: 10 + 10 (±1 at the edges).
    assert!((19..=21).contains(&fetches), "{fetches} fetches");
    let waits: Vec<u64> =
        net.requests.iter().filter_map(|r| if let Request::Fetch(f) = r { Some(f.wait_ms) } else { None }).collect();
    // Every fetch asks to be held for the long-poll window; this server answers at
    // once (it holds nothing), so the schedule sets the pace.
    assert!(waits.iter().all(|&w| w == 30_000), "{waits:?}");
}

/// A server that holds every fetch with nothing new for its whole wait (a
/// long-poll that runs out), in virtual time: returns how many fetches an
/// idle initiator sends in `span`.
fn fetches_while_idle(schedule: Schedule, span: Duration) -> usize {
    let mut net = Net::new();
    let config = config().with_schedule(schedule).with_timeout(Duration::from_secs(3 * 24 * 3600));
    let mut initiator = Side::from(Exchange::initiator(config, b"i".to_vec(), [1; 32]).unwrap());
    initiator.start(net.now);
    let end = net.now + span;
    let mut fetches = 0;
    while net.now < end {
        while let Some(t) = initiator.poll_transmit(net.now).filter(|_| net.now < end) {
            if let Request::Fetch(f) = t.request() {
                fetches += 1;
                if f.after > 0 {
                    // Nothing new: the server holds it until its wait runs out.
                    net.now = net.now + Duration::from_millis(f.wait_ms);
                }
            }
            net.answer(&mut initiator, &t);
        }
        let wake = initiator.poll_timeout().unwrap_or_else(|| panic!("{:?}", initiator.outcome()));
        net.now = wake.max(net.now);
        initiator.handle_timeout(net.now);
    }
    fetches
}

#[test]
fn an_idle_client_holds_one_long_poll_at_a_time_whatever_the_schedule() {
    let ten_minutes = Duration::from_secs(600);
    // One fetch per 30 s window (plus the first, answered with our own message):
    // neither a short interval nor a long one changes that.
    for schedule in [Schedule::default(), Schedule::from_secs(&[(0.0, 60.0), (300.0, 3600.0)]).unwrap()] {
        let fetches = fetches_while_idle(schedule.clone(), ten_minutes);
        assert!((20..=22).contains(&fetches), "{fetches} fetches in 10 minutes with {schedule:?}");
    }
}

#[test]
fn serialize_and_restore_after_every_input_still_completes() {
    let mut net = Net::new();
    let mut initiator = Side::from(Exchange::initiator(config(), b"initiator's data".to_vec(), [1; 32]).unwrap());
    initiator.start(net.now);
    let mut receiver: Option<Side> = None;
    for _ in 0..200 {
        // One request at a time, restoring both sides before and after each answer.
        initiator = restored(&initiator);
        if let Some(t) = initiator.poll_transmit(net.now) {
            net.answer(&mut initiator, &t);
        }
        if receiver.is_none() {
            if let Some(code) = initiator.code() {
                let mut r = Side::from(
                    Exchange::receiver(config(), code.clone(), b"receiver's data".to_vec(), [2; 32]).unwrap(),
                );
                r.start(net.now);
                receiver = Some(r);
            }
        }
        if let Some(r) = receiver.as_mut() {
            *r = restored(r);
            if let Some(t) = r.poll_transmit(net.now) {
                net.answer(r, &t);
            }
        }
        if initiator.is_finished() && receiver.as_ref().is_some_and(|r| r.is_finished()) {
            break;
        }
        net.now = net.now + Duration::from_millis(100);
    }
    let mut receiver = receiver.unwrap();
    assert_eq!(initiator.outcome(), Some(Ok(&b"receiver's data"[..])));
    assert_eq!(receiver.outcome(), Some(Ok(&b"initiator's data"[..])));
    assert!(initiator.is_finished() && receiver.is_finished());
}

#[test]
fn restored_exchanges_announce_what_they_know_and_keep_the_deadline() {
    let mut net = Net::new();
    let timeout = Duration::from_secs(30);
    let mut initiator =
        Side::from(Exchange::initiator(config().with_timeout(timeout), b"i".to_vec(), [1; 32]).unwrap());
    initiator.start(net.now);
    net.pump(&mut initiator);
    let code = initiator.code().unwrap().clone();
    let mut again = restored(&initiator);
    assert_eq!(events(&mut again), [Event::Code(code)]);
    // Restored much later, in "another process": the deadline still counts from the first start.
    net.now = START + Duration::from_secs(3600);
    again.start(net.now);
    net.pump(&mut again);
    assert_eq!(again.outcome(), Some(Err(&Error::Timeout)));
}

#[test]
fn verifier_confirmation_holds_data_until_accepted() {
    let mut net = Net::new();
    let confirm = config().with_verifier_confirmation(true);
    let mut initiator = Side::from(Exchange::initiator(confirm.clone(), b"i".to_vec(), [1; 32]).unwrap());
    initiator.start(net.now);
    net.pump(&mut initiator);
    let code = initiator.code().unwrap().clone();
    let mut receiver = Side::from(Exchange::receiver(config(), code, b"r".to_vec(), [2; 32]).unwrap());
    receiver.start(net.now);
    net.run(&mut [&mut initiator, &mut receiver], Duration::from_secs(20));
    // The initiator knows the verifier but has released nothing.
    assert!(initiator.verifier().is_some());
    assert_eq!(initiator.outcome(), None);
    assert_eq!(receiver.outcome(), None);
    assert!(!net
        .requests
        .iter()
        .any(|r| matches!(r, Request::Post(p) if p.phase == "data" && initiator_side(&net, p))));
    assert!(initiator.confirm_verifier(net.now, true));
    assert!(!initiator.confirm_verifier(net.now, false), "a verdict is final");
    net.run(&mut [&mut initiator, &mut receiver], MINUTE);
    assert_eq!(initiator.outcome(), Some(Ok(&b"r"[..])));
    assert_eq!(receiver.outcome(), Some(Ok(&b"i"[..])));
}

fn initiator_side(net: &Net, post: &wormhole_sync_core::wire::PostRequest) -> bool {
    net.requests.iter().any(|r| matches!(r, Request::Allocate(a) if a.side == post.side))
}

#[test]
fn declining_the_verifier_fails_both_sides_clearly() {
    let mut net = Net::new();
    let confirm = config().with_verifier_confirmation(true);
    let mut initiator = Side::from(Exchange::initiator(confirm.clone(), b"i".to_vec(), [1; 32]).unwrap());
    initiator.start(net.now);
    net.pump(&mut initiator);
    let code = initiator.code().unwrap().clone();
    let mut receiver = Side::from(Exchange::receiver(confirm, code, b"r".to_vec(), [2; 32]).unwrap());
    receiver.start(net.now);
    net.run(&mut [&mut initiator, &mut receiver], Duration::from_secs(5));
    assert!(receiver.confirm_verifier(net.now, false));
    net.run(&mut [&mut initiator, &mut receiver], MINUTE);
    assert_eq!(receiver.outcome(), Some(Err(&Error::Declined)));
    assert_eq!(initiator.outcome(), Some(Err(&Error::PeerDeclined)));
    assert!(net.server.snapshot().mailboxes.iter().all(|m| m.is_tombstone()), "both closed");
}

#[test]
fn data_at_the_limit_passes_and_one_byte_more_is_refused() {
    let too_big = vec![7u8; MAX_DATA_LEN + 1];
    assert_eq!(
        Exchange::initiator(config(), too_big, [1; 32]).unwrap_err(),
        Error::DataTooLarge { len: MAX_DATA_LEN + 1, max: MAX_DATA_LEN }
    );
    let mut net = Net::new();
    let big: Vec<u8> = (0..MAX_DATA_LEN).map(|i| i as u8).collect();
    let (mut initiator, code) = started_initiator(&mut net, &big, 1);
    let mut receiver = Side::from(Exchange::receiver(config(), code, big.clone(), [2; 32]).unwrap());
    receiver.start(net.now);
    net.run(&mut [&mut initiator, &mut receiver], MINUTE);
    assert_eq!(receiver.outcome(), Some(Ok(&big[..])));
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let mut net = Net::new();
    let (mut initiator, code) = started_initiator(&mut net, b"top-secret-data", 1);
    let mut receiver =
        Side::from(Exchange::receiver(config(), code.clone(), b"other-secret".to_vec(), [2; 32]).unwrap());
    receiver.start(net.now);
    net.run(&mut [&mut initiator, &mut receiver], MINUTE);
    let mut shown = format!("{initiator:?} {receiver:?} {code:?}");
    for event in events(&mut initiator).into_iter().chain(events(&mut receiver)) {
        shown += &format!(" {event:?}");
    }
    for word in code.words() {
        assert!(!shown.contains(word.as_str()), "{shown}");
    }
    assert!(!shown.contains("secret"), "{shown}");
    // The serialized form does hold them (and is documented to).
    assert!(String::from_utf8(initiator.serialize()).unwrap().contains(&code.to_string()));
}

/// Answers `side`'s next fetch with `messages` (a fake server), advancing
/// virtual time until a fetch is due and letting the real server answer
/// anything else.
fn answer_fetch(net: &mut Net, side: &mut Exchange, messages: Vec<Message>) {
    for _ in 0..100 {
        while let Some(t) = side.poll_transmit(net.now) {
            if matches!(t.request(), Request::Fetch(_)) {
                let body = serde_json::to_vec(&Log::new(messages, vec![])).unwrap();
                side.handle_response(net.now, t.id(), 200, &body);
                return;
            }
            net.answer(side, &t);
        }
        net.now = side.poll_timeout().expect("the exchange is still running").max(net.now);
    }
    panic!("no fetch came");
}

/// An initiator that has allocated and posted its PAKE message, and the
/// messages an honest receiver posts for it.
fn initiator_and_receiver_messages() -> (Net, Side, Vec<Message>) {
    let mut net = Net::new();
    let (initiator, code) = started_initiator(&mut net, b"initiator's data", 1);
    let mut receiver =
        Side::from(Exchange::receiver(config(), code.clone(), b"receiver's data".to_vec(), [2; 32]).unwrap());
    receiver.start(net.now);
    for _ in 0..3 {
        net.pump(&mut receiver);
    }
    let Ok(wormhole_sync_core::wire::Response::Fetched(log)) = net.server.handle(
        net.now,
        &Request::Fetch(wormhole_sync_core::wire::FetchRequest::new(
            "example.com/app1",
            net.requests.iter().find_map(|r| if let Request::Allocate(a) = r { Some(&a.side) } else { None }).unwrap(),
            code.channel(),
            0,
            0,
        )),
    ) else {
        panic!("fetch failed")
    };
    (net, initiator, log.messages)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_order_or_duplication_of_inbound_messages_gives_the_same_result(
        picks in proptest::collection::vec(0usize..8, 0..12),
        split in 0usize..12,
    ) {
        let (mut net, mut initiator, log) = initiator_and_receiver_messages();
        let peer = log.iter().find(|m| m.phase == "pake" && log[0].side != m.side).unwrap().side.clone();
        let mut pool = log.clone();
        pool.push(Message::new(90, peer.clone(), "future-phase", "???"));
        pool.push(Message::new(91, peer, "pake", "replayed-later"));
        // Arbitrary picks (duplicates included), then the real log so every fact arrives.
        let mut sequence: Vec<Message> = picks.iter().map(|&i| pool[i % pool.len()].clone()).collect();
        sequence.extend(log.iter().cloned());
        let split = split.min(sequence.len());
        let second = sequence.split_off(split);
        // Skip messages a real server would not repeat for the "replayed-later" body to be a replay.
        for batch in [sequence, second] {
            if initiator.outcome().is_some() { break; }
            let batch: Vec<Message> = batch.into_iter().filter(|m| m.body != "replayed-later" || initiator.verifier().is_some()).collect();
            answer_fetch(&mut net, &mut initiator, batch);
            net.pump(&mut initiator);
        }
        net.run(&mut [&mut initiator], MINUTE);
        prop_assert_eq!(initiator.outcome(), Some(Ok(&b"receiver's data"[..])));
    }

    #[test]
    fn corrupt_serialized_state_is_an_error_not_a_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut net = Net::new();
        let (initiator, _) = started_initiator(&mut net, b"data", 1);
        let mut blob = initiator.serialize();
        for (at, byte) in flips {
            let i = at % blob.len();
            blob[i] = byte;
        }
        if let Err(e) = Exchange::from_serialized(&blob) {
            prop_assert!(matches!(e, Error::BadSerializedState(_) | Error::InvalidConfig(_)), "{e:?}");
        }
    }

    #[test]
    fn arbitrary_server_answers_never_panic(status in 100u16..600, body in proptest::collection::vec(any::<u8>(), 0..256), json in "\\{.{0,64}\\}") {
        let mut net = Net::new();
        let (mut initiator, _) = started_initiator(&mut net, b"data", 1);
        for payload in [body.as_slice(), json.as_bytes()] {
            if let Some(t) = initiator.poll_transmit(net.now) {
                initiator.handle_response(net.now, t.id(), status, payload);
            }
        }
        let _ = initiator.poll_timeout();
        while initiator.poll_event().is_some() {}
        // Whatever the server said, the state reached is one that restores.
        let restored = Exchange::from_serialized(&initiator.serialize());
        prop_assert!(restored.is_ok(), "{:?}", restored.err());
    }
}

#[test]
fn reflected_messages_are_rejected() {
    // Our own PAKE message, relabelled as the peer's.
    let (mut net, mut initiator, log) = initiator_and_receiver_messages();
    let own = log.iter().find(|m| m.phase == "pake" && m.seq == 1).unwrap().clone();
    let reflected = Message::new(own.seq, "mallory", own.phase, own.body);
    answer_fetch(&mut net, &mut initiator, vec![reflected]);
    assert_eq!(initiator.outcome(), Some(Err(&Error::Reflection)));

    // Our own sealed data, relabelled as the peer's.
    let (mut net, mut initiator, log) = initiator_and_receiver_messages();
    let peer_pake = log.iter().find(|m| m.phase == "pake" && m.seq != 1).unwrap().clone();
    answer_fetch(&mut net, &mut initiator, vec![peer_pake.clone()]);
    let post = initiator.poll_transmit(net.now).unwrap();
    let Request::Post(data_post) = post.request() else { panic!("expected the data post, got {post:?}") };
    assert_eq!(data_post.phase, "data");
    let own_data = data_post.body.clone();
    // Acknowledged without a log (as a server that sends none would), so the
    // receiver's real data does not reach the initiator first.
    initiator.handle_response(net.now, post.id(), 200, br#"{"seq": 8}"#);
    let reflected = Message::new(9, peer_pake.side.clone(), "data", own_data);
    answer_fetch(&mut net, &mut initiator, vec![reflected]);
    assert_eq!(initiator.outcome(), Some(Err(&Error::Reflection)));
}

#[test]
fn malformed_peer_messages_are_protocol_errors() {
    // Not base64; too short; a curve point outside SPAKE2's prime-order
    // subgroup (PROTOCOL.md 4.2, the `refused_receiver_pake` vector).
    let outside_the_group = BASE64.encode([&[0x42][..], &[0x01; 32]].concat());
    for body in ["not base64!", "QUJD", &outside_the_group] {
        let (mut net, mut initiator, log) = initiator_and_receiver_messages();
        let peer = log.iter().find(|m| m.seq != 1).unwrap().side.clone();
        answer_fetch(&mut net, &mut initiator, vec![Message::new(5, peer.clone(), "pake", body)]);
        assert!(matches!(initiator.outcome(), Some(Err(Error::PeerProtocol { .. }))), "{body}: {initiator:?}");
        // Refused at once: nothing of ours was sealed for it.
        let mut closes = Vec::new();
        while let Some(t) = initiator.poll_transmit(net.now) {
            closes.push(t.request().clone());
        }
        assert!(closes.iter().all(|r| matches!(r, Request::Close(c) if c.mood == Mood::Errory)), "{closes:?}");
        assert!(!net.requests.iter().any(|r| matches!(r, Request::Post(p) if p.phase == "data" && p.side != peer)));
    }
}

/// A peer that sent its PAKE message and then never its data may have been
/// an interceptor testing a guess: not a plain timeout, and the channel burns.
#[test]
fn a_peer_silent_after_its_pake_message_is_peer_vanished_and_burns_the_channel() {
    let (mut net, mut initiator, log) = initiator_and_receiver_messages();
    let pake = log.iter().find(|m| m.seq != 1 && m.phase == "pake").unwrap().clone();
    answer_fetch(&mut net, &mut initiator, vec![pake]);
    assert_eq!(initiator.outcome(), None);
    net.now = initiator.deadline().unwrap();
    initiator.handle_timeout(net.now);
    assert_eq!(initiator.outcome(), Some(Err(&Error::PeerVanished)));
    let close = initiator.poll_transmit(net.now).expect("a close");
    assert!(matches!(close.request(), Request::Close(c) if c.mood == Mood::Scary), "{:?}", close.request());
    // Nobody came at all: a plain timeout.
    let (mut net, mut alone) = {
        let mut net = Net::new();
        let (alone, _) = started_initiator(&mut net, b"i", 3);
        (net, alone)
    };
    net.now = alone.deadline().unwrap();
    alone.handle_timeout(net.now);
    assert_eq!(alone.outcome(), Some(Err(&Error::Timeout)));
}

#[test]
fn bad_server_answers_get_typed_errors_or_retries() {
    let cases: [(u16, &[u8], Option<Error>); 5] = [
        (200, b"<html>", Some(Error::ServerProtocol { detail: String::new() })),
        (
            404,
            b"<html>not found</html>",
            Some(Error::ServerRejected { code: ServerErrorCode::HttpStatus(404), message: String::new() }),
        ),
        (
            400,
            br#"{"error":"something-new","message":"hm"}"#,
            Some(Error::ServerRejected { code: ServerErrorCode::from_name("something-new"), message: "hm".into() }),
        ),
        (503, b"busy", None),
        (302, b"", Some(Error::ServerProtocol { detail: String::new() })),
    ];
    for (status, body, expected) in cases {
        let mut initiator = Side::from(Exchange::initiator(config(), b"i".to_vec(), [1; 32]).unwrap());
        initiator.start(START);
        let t = initiator.poll_transmit(START).unwrap();
        initiator.handle_response(START, t.id(), status, body);
        let got = initiator.outcome().map(|o| o.unwrap_err().clone());
        let same_kind = match (&got, &expected) {
            (Some(Error::ServerRejected { code: a, .. }), Some(Error::ServerRejected { code: b, .. })) => a == b,
            (Some(a), Some(b)) => std::mem::discriminant(a) == std::mem::discriminant(b),
            (None, None) => true,
            _ => false,
        };
        assert!(same_kind, "HTTP {status}: got {got:?}, expected {expected:?}");
        if expected.is_none() {
            // Transient: retried after one interval, not before.
            assert!(initiator.poll_transmit(START).is_none());
            assert!(initiator.poll_transmit(START + Duration::from_millis(500)).is_some());
        }
    }
}

#[test]
fn answers_to_unknown_requests_are_ignored_and_lost_requests_retried() {
    let mut net = Net::new();
    let mut initiator = Side::from(Exchange::initiator(config(), b"i".to_vec(), [1; 32]).unwrap());
    initiator.start(net.now);
    let lost = initiator.poll_transmit(net.now).unwrap();
    assert!(initiator.poll_transmit(net.now).is_none(), "one control request at a time");
    // Its answer never comes: after its timeout it is retried.
    let retry_at = net.now + lost.timeout();
    assert_eq!(initiator.poll_timeout(), Some(retry_at));
    net.now = retry_at;
    initiator.handle_timeout(net.now);
    net.now = initiator.poll_timeout().unwrap();
    let retry = initiator.poll_transmit(net.now).unwrap();
    assert_eq!(retry.body(), lost.body(), "a retry is the same request");
    // A late answer to the lost request changes nothing.
    initiator.handle_response(net.now, lost.id(), 200, br#"{"channel":5}"#);
    assert!(initiator.code().is_none());
    net.answer(&mut initiator, &retry);
    let channel = initiator.code().unwrap().channel();
    assert!(net.server.contains("example.com/app1", channel), "the code names the channel the server allocated");
}

#[test]
fn config_rejects_nonsense() {
    assert!(Config::new("").is_err());
    assert!(Config::new(&"x".repeat(300)).is_err());
    assert!(config().with_code_words(0).is_err());
    assert!(config().with_code_words(17).is_err());
    assert!(Schedule::from_secs(&[]).is_err());
    assert!(Schedule::from_secs(&[(0.0, 0.0)]).is_err());
    assert!(Schedule::from_secs(&[(0.0, f64::NAN)]).is_err());
    assert!(Schedule::from_secs(&[(-1.0, 1.0)]).is_err());
}

#[test]
fn a_chosen_code_is_used_and_cancel_closes_for_the_peer() {
    let mut net = Net::new();
    let chosen: Code = "77-chosen-words".parse().unwrap();
    let mut initiator =
        Side::from(Exchange::initiator_with_code(config(), chosen.clone(), b"i".to_vec(), [1; 32]).unwrap());
    initiator.start(net.now);
    net.pump(&mut initiator);
    assert_eq!(initiator.code(), Some(&chosen));
    let mut receiver = Side::from(Exchange::receiver(config(), chosen, b"r".to_vec(), [2; 32]).unwrap());
    receiver.start(net.now);
    net.pump(&mut receiver);
    initiator.cancel(net.now);
    net.run(&mut [&mut initiator, &mut receiver], MINUTE);
    assert_eq!(initiator.outcome(), Some(Err(&Error::Cancelled)));
    assert_eq!(receiver.outcome(), Some(Err(&Error::PeerClosed { mood: Mood::Lonely })));
}

/// Found by the `exchange_ops` fuzz target: an exchange that had given up
/// closing (its close grace over) sent a new close when a late answer to an
/// old request arrived, after reporting itself finished.
#[test]
fn a_finished_exchange_sends_nothing_after_a_late_answer() {
    let mut initiator = Side::from(Exchange::initiator(config(), b"i".to_vec(), [1; 32]).unwrap());
    initiator.start(START);
    let allocate = initiator.poll_transmit(START).expect("an allocate");
    initiator.cancel(START);
    // Every close attempt is lost until the grace is over.
    let mut now = START;
    while !initiator.is_finished() {
        while let Some(t) = initiator.poll_transmit(now) {
            initiator.handle_transport_error(now, t.id(), TransportError::from_message("lost"));
        }
        now = initiator.poll_timeout().expect("a wake-up while closing");
        initiator.handle_timeout(now);
    }
    // The answer to the very first request arrives now.
    initiator.handle_response(now, allocate.id(), 200, br#"{"channel":3}"#);
    assert!(initiator.is_finished());
    assert!(initiator.poll_transmit(now).is_none(), "a finished exchange sent a request");
    assert_eq!(initiator.poll_timeout(), None);
}
