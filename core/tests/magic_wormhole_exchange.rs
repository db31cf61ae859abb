//! The magic-wormhole flavour's client machine: whole exchanges in the
//! simulation (with dropped connections, server and client restarts, wrong
//! codes), and its handling of hostile frames and saved states.

use wormhole_sync_core::magic_wormhole::{MailboxExchange, Transmit};
use wormhole_sync_core::sim::mailbox::{check, run, MailboxScenario};
use wormhole_sync_core::sim::seed_count;
use wormhole_sync_core::{Config, Error, Event, Timestamp};

const APPID: &str = "lothar.com/wormhole/text-or-file-xfer";

#[test]
fn exchanges_complete_through_faults_and_wrong_codes_fail_on_both_sides() {
    let (mut faults, mut wrong) = ([0; 3], 0);
    for seed in 0..seed_count(300) {
        let scenario = MailboxScenario::from_seed(seed);
        let report = run(&scenario);
        check(&scenario, &report).unwrap_or_else(|e| panic!("seed {seed} ({scenario:?}): {e}"));
        for (total, n) in faults.iter_mut().zip(report.faults) {
            *total += n;
        }
        wrong += usize::from(scenario.wrong_code);
    }
    // The suite exercises what it claims to.
    assert!(faults.iter().all(|n| *n > 0), "faults seen: {faults:?}");
    assert!(wrong > 0);
}

#[test]
fn a_calm_exchange_closes_happily_and_agrees_on_the_verifier() {
    let scenario =
        MailboxScenario { seed: 1, wrong_code: false, drop_percent: 0, restart_percent: 0, client_restart_percent: 0 };
    let report = run(&scenario);
    check(&scenario, &report).unwrap();
    assert_eq!(report.faults, [0, 0, 0]);
}

/// A started initiator with an open connection, its bind already taken.
fn connected_initiator(data: &[u8]) -> (MailboxExchange, Timestamp) {
    let now = Timestamp::from_millis(1_000_000);
    let mut exchange = MailboxExchange::initiator(Config::new(APPID).unwrap(), data.to_vec(), [9; 32]).unwrap();
    exchange.start(now);
    assert!(matches!(exchange.poll_transmit(now), Some(Transmit::Connect { .. })));
    exchange.handle_connected(now);
    let frames: Vec<Transmit> = std::iter::from_fn(|| exchange.poll_transmit(now)).collect();
    let texts: Vec<String> = frames
        .iter()
        .map(|t| match t {
            Transmit::Frame(f) => f.clone(),
            other => panic!("a frame, not {other:?}"),
        })
        .collect();
    assert!(texts[0].contains(r#""type":"bind""#) && texts[1].contains(r#""type":"allocate""#), "{texts:?}");
    (exchange, now)
}

fn outcome(exchange: &mut MailboxExchange) -> Option<Result<Vec<u8>, Error>> {
    std::iter::from_fn(|| exchange.poll_event()).find_map(|e| match e {
        Event::Outcome(o) => Some(o),
        _ => None,
    })
}

#[test]
fn frames_of_unknown_types_are_ignored_and_malformed_ones_fail_loudly() {
    let (mut exchange, now) = connected_initiator(b"secret data");
    exchange.handle_frame(now, br#"{"type": "dilate-1", "stuff": 5}"#);
    assert!(!exchange.has_outcome());
    exchange.handle_frame(now, br#"{"type": "allocated", "nameplate": "not digits"}"#);
    match outcome(&mut exchange) {
        Some(Err(Error::ServerProtocol { detail })) => assert!(detail.contains("nameplate"), "{detail}"),
        other => panic!("{other:?}"),
    }
    let (mut exchange, now) = connected_initiator(b"secret data");
    exchange.handle_frame(now, b"\xff not json");
    assert!(matches!(outcome(&mut exchange), Some(Err(Error::ServerProtocol { .. }))));
}

#[test]
fn a_server_that_refuses_the_nameplate_or_the_welcome_fails_the_exchange_with_its_reason() {
    let (mut exchange, now) = connected_initiator(b"x");
    exchange.handle_frame(now, br#"{"type": "welcome", "welcome": {"error": "this server is closed"}}"#);
    match outcome(&mut exchange) {
        Some(Err(Error::ServerRejected { message, .. })) => assert_eq!(message, "this server is closed"),
        other => panic!("{other:?}"),
    }
    let now = Timestamp::from_millis(5_000);
    let code = "4-guitarist-revenge".parse().unwrap();
    let mut receiver = MailboxExchange::receiver(Config::new(APPID).unwrap(), code, b"x".to_vec(), [3; 32]).unwrap();
    receiver.start(now);
    assert!(matches!(receiver.poll_transmit(now), Some(Transmit::Connect { .. })));
    receiver.handle_connected(now);
    let frames: Vec<Transmit> = std::iter::from_fn(|| receiver.poll_transmit(now)).collect();
    assert!(matches!(&frames[1], Transmit::Frame(f) if f.contains(r#""nameplate":"4""#)), "{frames:?}");
    receiver
        .handle_frame(now, br#"{"type": "error", "error": "crowded", "orig": {"type": "claim", "nameplate": "4"}}"#);
    assert_eq!(outcome(&mut receiver), Some(Err(Error::Crowded)));
}

#[test]
fn a_silent_server_is_pinged_then_left_and_reached_again() {
    let (mut exchange, now) = connected_initiator(b"x");
    let config = Config::new(APPID).unwrap();
    let ping_at = now + config.long_poll();
    assert_eq!(exchange.poll_timeout(), Some(ping_at));
    let Some(Transmit::Frame(ping)) = exchange.poll_transmit(ping_at) else { panic!("a ping") };
    assert!(ping.contains(r#""type":"ping""#));
    let given_up = ping_at + config.request_timeout();
    assert_eq!(exchange.poll_timeout(), Some(given_up));
    assert_eq!(exchange.poll_transmit(given_up), Some(Transmit::Disconnect));
    exchange.handle_disconnected(given_up, wormhole_sync_core::TransportError::from_message("closed"));
    let retry = exchange.poll_timeout().expect("a reconnect");
    assert!(retry > given_up);
    assert!(matches!(exchange.poll_transmit(retry), Some(Transmit::Connect { .. })));
}

#[test]
fn saved_states_restore_and_damaged_ones_are_refused_without_quoting_them() {
    let (mut exchange, now) = connected_initiator(b"the secret data");
    exchange.handle_frame(now, br#"{"type": "allocated", "nameplate": "12"}"#);
    let code = std::iter::from_fn(|| exchange.poll_event())
        .find_map(|e| match e {
            Event::Code(code) => Some(code),
            _ => None,
        })
        .expect("a code");
    let saved = exchange.serialize();
    assert!(saved.iter().all(|b| b.is_ascii_graphic() || *b == b' '));
    let mut restored =
        MailboxExchange::from_serialized(&saved).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&saved)));
    assert_eq!(restored.poll_event(), Some(Event::Code(code.clone())), "a restore announces the code again");
    let debug = format!("{restored:?}");
    assert!(!debug.contains(&code.words()[0]) && !debug.contains("secret"), "{debug}");
    let text = String::from_utf8(saved.clone()).unwrap();
    let damaged = [
        text.replace(r#""version":1"#, r#""version":7"#),
        text.replace(r#""role":"initiator""#, r#""role":"bystander""#),
        text.replace(r#""released":false"#, r#""released":true"#),
        text[..text.len() / 2].to_string(),
        text.replace(r#""started_at":1000000"#, r#""started_at":null"#),
    ];
    for blob in damaged {
        let error = MailboxExchange::from_serialized(blob.as_bytes()).unwrap_err();
        assert!(matches!(error, Error::BadSerializedState(_)), "{error:?}");
        assert!(!error.to_string().contains(&code.words()[0]), "{error}");
    }
}

#[test]
fn a_server_that_says_retry_later_is_reconnected_to_and_named_at_the_timeout() {
    let (mut exchange, now) = connected_initiator(b"x");
    let refusal = br#"{"type": "error", "error": "rate-limited: too many claims", "orig": {"type": "allocate"}}"#;
    exchange.handle_frame(now, refusal);
    assert!(!exchange.has_outcome());
    assert_eq!(exchange.poll_transmit(now), Some(Transmit::Disconnect));
    exchange.handle_disconnected(now, wormhole_sync_core::TransportError::from_message("closed"));
    let retry = exchange.poll_timeout().unwrap();
    assert!(matches!(exchange.poll_transmit(retry), Some(Transmit::Connect { .. })));
    let deadline = now + Config::new(APPID).unwrap().timeout();
    exchange.handle_timeout(deadline);
    match outcome(&mut exchange) {
        Some(Err(Error::ServerBusy { code, message })) => {
            assert_eq!(code.to_string(), "rate-limited");
            assert_eq!(message, "too many claims");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_mailbox_server_never_reached_is_named_while_retrying_and_given_up_at_the_connect_timeout() {
    let minute = std::time::Duration::from_secs(60);
    let config = Config::new(APPID).unwrap().with_timeout(60 * minute).with_connect_timeout(minute).unwrap();
    let start = Timestamp::from_millis(1_000_000);
    let mut exchange = MailboxExchange::initiator(config, b"x".to_vec(), [9; 32]).unwrap();
    exchange.start(start);
    let mut now = start;
    while !exchange.has_outcome() {
        if matches!(exchange.poll_transmit(now), Some(Transmit::Connect { .. })) {
            exchange.handle_disconnected(now, wormhole_sync_core::TransportError::from_message("connection refused"));
            let trouble = exchange.server_trouble().expect("trouble while retrying");
            assert_eq!((trouble.since, trouble.server_reached), (start, false));
            assert_eq!(trouble.cause.to_string(), "connection refused");
        }
        now = exchange.poll_timeout().expect("a wake-up");
        exchange.handle_timeout(now);
    }
    assert!(matches!(outcome(&mut exchange), Some(Err(Error::ServerUnreachable { .. }))));
    assert_eq!(now, start + minute);

    // Reached once, the connect timeout no longer counts, and a connection
    // clears the trouble.
    let (mut exchange, now) = connected_initiator(b"x");
    assert_eq!(exchange.server_trouble(), None);
    exchange.handle_disconnected(now, wormhole_sync_core::TransportError::from_message("reset"));
    assert!(exchange.server_trouble().is_some_and(|t| t.server_reached && t.since == now));
    let retry = exchange.poll_timeout().unwrap();
    assert!(matches!(exchange.poll_transmit(retry), Some(Transmit::Connect { .. })));
    exchange.handle_connected(retry);
    assert_eq!(exchange.server_trouble(), None);
}

/// A peer's side is whatever printable text its `message` frames carry (the
/// reference server takes any): the saved state keeps it and restores.
/// (Found by the `mailbox_exchange_ops` fuzz target: a side with a capital
/// letter made the exchange's own state unrestorable.)
#[test]
fn a_peer_side_of_any_printable_text_survives_a_restore() {
    let (mut exchange, now) = connected_initiator(b"x");
    for frame in [
        r#"{"type": "allocated", "nameplate": "4"}"#,
        r#"{"type": "claimed", "mailbox": "mb1"}"#,
        r#"{"type": "message", "side": "Peer.Side!", "phase": "pake", "body": "00ff", "id": "i1", "server_rx": 0}"#,
    ] {
        exchange.handle_frame(now, frame.as_bytes());
        while exchange.poll_transmit(now).is_some() {}
    }
    let saved = exchange.serialize();
    assert!(String::from_utf8_lossy(&saved).contains("Peer.Side!"), "the peer was heard");
    let restored = MailboxExchange::from_serialized(&saved).expect("its own state restores");
    assert_eq!(restored.serialize(), saved);
}

/// The machine says where to connect and for how long: the configured
/// server, else magic-wormhole's public one.
#[test]
fn a_connect_names_the_server_and_the_time_it_may_take() {
    let now = Timestamp::from_millis(1_000_000);
    let config = Config::new(APPID).unwrap().with_rendezvous("ws://127.0.0.1:4000/v1").unwrap();
    let config = config.with_request_timeout(std::time::Duration::from_secs(7)).unwrap();
    let mut exchange = MailboxExchange::initiator(config, b"x".to_vec(), [9; 32]).unwrap();
    exchange.start(now);
    let Some(Transmit::Connect { url, timeout }) = exchange.poll_transmit(now) else { panic!("a connect") };
    assert_eq!((url.as_str(), timeout), ("ws://127.0.0.1:4000/v1", std::time::Duration::from_secs(7)));

    let mut public = MailboxExchange::initiator(Config::new(APPID).unwrap(), b"x".to_vec(), [9; 32]).unwrap();
    public.start(now);
    let Some(Transmit::Connect { url, .. }) = public.poll_transmit(now) else { panic!("a connect") };
    assert_eq!(url, wormhole_sync_core::magic_wormhole::PUBLIC_MAILBOX_URL);
}
