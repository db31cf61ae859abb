//! What each way of failing tells the application and the person: a busy
//! server, an expired channel, a used-up code, a peer that breaks the
//! protocol, and text from the server that must not reach a terminal raw.

mod common;

use std::time::Duration;

use common::{config, started_initiator, Net, Side, START};
use wormhole_sync_core::wire::Request;
use wormhole_sync_core::{Code, Error, Exchange, Mood, Timestamp, TransportError};

const MINUTE: Duration = Duration::from_secs(60);

/// Answers every request of `side` with `status` and `body` until it has an outcome.
fn answer_everything(side: &mut Side, status: u16, body: &[u8]) -> Timestamp {
    let mut now = START;
    while side.outcome().is_none() {
        while let Some(t) = side.poll_transmit(now) {
            side.handle_response(now, t.id(), status, body);
        }
        now = side.poll_timeout().unwrap().max(now);
        side.handle_timeout(now);
    }
    now
}

#[test]
fn a_server_that_keeps_refusing_is_reported_busy_with_its_code() {
    let cases: [(u16, &[u8], &str); 4] = [
        (429, br#"{"error":"rate-limited","message":"too many requests"}"#, "rate-limited"),
        (429, br#"{"error":"too-many-channels","message":"app is full"}"#, "too-many-channels"),
        (503, br#"{"error":"server-full","message":"full"}"#, "server-full"),
        (502, b"<html>bad gateway</html>", "http-502"),
    ];
    for (status, body, code) in cases {
        let mut initiator =
            Side::from(Exchange::initiator(config().with_timeout(MINUTE), b"i".to_vec(), [1; 32]).unwrap());
        initiator.start(START);
        let ended = answer_everything(&mut initiator, status, body);
        assert_eq!(ended, START + MINUTE, "retried until the timeout");
        let Some(Err(error @ Error::ServerBusy { code: got, .. })) = initiator.outcome() else {
            panic!("HTTP {status}: {:?}", initiator.outcome())
        };
        assert_eq!(got.to_string(), code);
        let text = error.to_string();
        assert!(text.contains("reached") && text.contains(code), "{text}");
        assert!(!text.contains("could not reach"), "{text}");
    }
}

#[test]
fn refusals_after_joining_are_reported_busy_too() {
    // Allocation works, then the server cannot store anything until the timeout.
    let mut net = Net::new();
    let mut initiator = Side::from(Exchange::initiator(config().with_timeout(MINUTE), b"i".to_vec(), [1; 32]).unwrap());
    initiator.start(net.now);
    let allocate = initiator.poll_transmit(net.now).unwrap();
    net.answer(&mut initiator, &allocate);
    answer_everything(&mut initiator, 503, br#"{"error":"storage-unavailable","message":"disk"}"#);
    assert!(
        matches!(initiator.outcome(), Some(Err(Error::ServerBusy { code, .. })) if code.to_string() == "storage-unavailable"),
        "{:?}",
        initiator.outcome()
    );
    // A server that answers again in time is not blamed: the peer simply never came.
    let mut net = Net::new();
    let mut initiator = Side::from(Exchange::initiator(config().with_timeout(MINUTE), b"i".to_vec(), [2; 32]).unwrap());
    initiator.start(net.now);
    let t = initiator.poll_transmit(net.now).unwrap();
    initiator.handle_response(net.now, t.id(), 503, b"busy");
    net.run(&mut [&mut initiator], 2 * MINUTE);
    assert_eq!(initiator.outcome(), Some(Err(&Error::Timeout)));
}

fn assert_printable(text: &str) {
    assert!(!text.chars().any(|c| c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c)), "{text:?}");
}

#[test]
fn text_from_the_server_reaches_errors_printable_only() {
    let hostile = "\u{1b}[2J\u{1b}]0;pwned\u{7}\r\nfake prompt$ \u{202e}txt.exe\u{85}\u{7f}";
    let body = serde_json::json!({ "error": format!("odd{hostile}"), "message": hostile }).to_string();
    let mut initiator = Side::from(Exchange::initiator(config(), b"i".to_vec(), [1; 32]).unwrap());
    initiator.start(START);
    let t = initiator.poll_transmit(START).unwrap();
    initiator.handle_response(START, t.id(), 400, body.as_bytes());
    let Some(Err(error @ Error::ServerRejected { message, .. })) = initiator.outcome() else { panic!() };
    assert!(message.contains("fake prompt"), "the readable part stays: {message}");
    assert_printable(&error.to_string());

    // A malformed success body: serde's message quotes the server's string.
    let mut initiator = Side::from(Exchange::initiator(config(), b"i".to_vec(), [1; 32]).unwrap());
    initiator.start(START);
    let t = initiator.poll_transmit(START).unwrap();
    let body = serde_json::json!({ "channel": hostile }).to_string();
    initiator.handle_response(START, t.id(), 200, body.as_bytes());
    let Some(Err(error @ Error::ServerProtocol { .. })) = initiator.outcome() else { panic!() };
    assert_printable(&error.to_string());

    // A busy server's explanation, and a transport's description.
    let body = serde_json::json!({ "error": "rate-limited", "message": hostile }).to_string();
    let mut initiator = Side::from(Exchange::initiator(config().with_timeout(MINUTE), b"i".to_vec(), [1; 32]).unwrap());
    initiator.start(START);
    answer_everything(&mut initiator, 429, body.as_bytes());
    assert_printable(&initiator.outcome().unwrap().unwrap_err().to_string());
    let mut initiator = Side::from(Exchange::initiator(config().with_timeout(MINUTE), b"i".to_vec(), [1; 32]).unwrap());
    initiator.start(START);
    let mut now = START;
    while initiator.outcome().is_none() {
        while let Some(t) = initiator.poll_transmit(now) {
            initiator.handle_transport_error(now, t.id(), TransportError::from_message(hostile));
        }
        now = initiator.poll_timeout().unwrap();
        initiator.handle_timeout(now);
    }
    let Some(Err(Error::ServerUnreachable { cause })) = initiator.outcome() else { panic!() };
    assert_printable(&cause.chain());
}

#[test]
fn an_expired_channel_is_not_blamed_on_a_code_nobody_typed() {
    let mut net = Net::new();
    let (mut initiator, _) = started_initiator(&mut net, b"i", 1);
    // The initiator's process stopped; its state comes back after the server's expiry.
    let blob = initiator.serialize();
    net.now = START + Duration::from_secs(4 * 24 * 3600);
    net.server.expire(net.now);
    initiator = Side::from(Exchange::from_serialized(&blob).unwrap());
    net.run(&mut [&mut initiator], MINUTE);
    let Some(Err(error)) = initiator.outcome() else { panic!("{initiator:?}") };
    // The default 5-minute timeout passed long ago: a restored exchange reports that first.
    assert_eq!(error, &Error::Timeout);

    let mut net = Net::new();
    let days = config().with_timeout(Duration::from_secs(5 * 24 * 3600));
    let mut initiator = Side::from(Exchange::initiator(days, b"i".to_vec(), [1; 32]).unwrap());
    initiator.start(net.now);
    net.pump(&mut initiator);
    let blob = initiator.serialize();
    net.now = START + Duration::from_secs(4 * 24 * 3600);
    assert_eq!(net.server.expire(net.now).len(), 1);
    let mut initiator = Side::from(Exchange::from_serialized(&blob).unwrap());
    net.run(&mut [&mut initiator], MINUTE);
    let Some(Err(error)) = initiator.outcome() else { panic!("{initiator:?}") };
    assert_eq!(error, &Error::ChannelExpired);
    assert!(!error.to_string().contains("check the number"), "{error}");

    // A receiver typing a number that does not exist is told to check it, or ask again.
    let typo: Code = "42-guitarist-revenge".parse().unwrap();
    let mut receiver = Side::from(Exchange::receiver(config(), typo, b"r".to_vec(), [2; 32]).unwrap());
    receiver.start(net.now);
    net.pump(&mut receiver);
    let Some(Err(error)) = receiver.outcome() else { panic!() };
    assert_eq!(error, &Error::UnknownChannel);
    let text = error.to_string();
    assert!(text.contains("check the number") && text.contains("ask for a new one"), "{text}");
}

#[test]
fn a_peer_that_breaks_the_protocol_is_not_reported_as_a_wrong_code() {
    let mut net = Net::new();
    let (mut initiator, code) = started_initiator(&mut net, b"i", 1);
    net.pump(&mut initiator);
    // The other side joins and posts an unpadded PAKE message: not base64 as specified.
    let mut receiver = Side::from(Exchange::receiver(config(), code.clone(), b"r".to_vec(), [2; 32]).unwrap());
    receiver.start(net.now);
    let join = receiver.poll_transmit(net.now).unwrap();
    net.answer(&mut receiver, &join);
    let post = receiver.poll_transmit(net.now).unwrap();
    let Request::Post(mut pake) = post.request().clone() else { panic!() };
    // 32 bytes without the `=` that RFC 4648 requires.
    pake.body = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY".to_string();
    net.server.handle(net.now, &Request::Post(pake.clone())).unwrap();
    net.run(&mut [&mut initiator], MINUTE);
    assert!(matches!(initiator.outcome(), Some(Err(Error::PeerProtocol { .. }))), "{initiator:?}");
    // It closes `errory`, not `scary`: the other side hears of an error, not a wrong code.
    let closes: Vec<Mood> =
        net.requests.iter().filter_map(|r| if let Request::Close(c) = r { Some(c.mood) } else { None }).collect();
    assert_eq!(closes, [Mood::Errory]);
    let fetched = net
        .server
        .handle(
            net.now,
            // By its mailbox: both sides named it, so the short id is free already.
            &Request::Fetch(wormhole_sync_core::wire::FetchRequest::new(
                "example.com/app1",
                &pake.side,
                code.channel(),
                0,
                0,
            ))
            .with_mailbox(pake.mailbox.clone()),
        )
        .unwrap();
    let wormhole_sync_core::wire::Response::Fetched(f) = fetched else { panic!() };
    assert_eq!(f.closed.iter().map(|c| c.mood).collect::<Vec<_>>(), [Mood::Errory]);
    let peer_view = Error::PeerClosed { mood: Mood::Errory }.to_string();
    assert!(peer_view.contains("error") && !peer_view.contains("code"), "{peer_view}");
}
