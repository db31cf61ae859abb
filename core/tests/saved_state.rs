//! Saved state: every blob a real exchange writes matches the published
//! JSON Schema and is printable ASCII; impossible states are refused on
//! load with an error that never repeats a value from the blob.

mod common;

use std::time::Duration;

use common::{config, started_initiator, Net, Side, START};
use serde_json::{json, Value};
use wormhole_sync_core::{Code, Config, Error, ErrorCode, Exchange, TransportError};

const MINUTE: Duration = Duration::from_secs(60);

fn schema() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(include_str!("../saved-state.schema.json")).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn assert_valid(validator: &jsonschema::Validator, blob: &[u8], what: &str) {
    assert!(blob.iter().all(|b| (b' '..=b'~').contains(b)), "{what}: not printable ASCII");
    let value: Value = serde_json::from_slice(blob).unwrap();
    let errors: Vec<String> =
        validator.iter_errors(&value).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{what}: {errors:?}\n{value:#}");
}

/// Blobs from every step of a happy exchange, of failures, and of a
/// non-ASCII application id.
fn real_blobs() -> Vec<(String, Vec<u8>)> {
    let mut blobs = Vec::new();
    let mut net = Net::new();
    let appid = "exemple.fr/échange 交換 \u{1f600}";
    let config = Config::new(appid).unwrap().with_verifier_confirmation(true);
    let mut initiator = Side::from(Exchange::initiator(config.clone(), b"i".to_vec(), [1; 32]).unwrap());
    blobs.push(("unstarted".into(), initiator.serialize()));
    initiator.start(net.now);
    net.pump(&mut initiator);
    let code = initiator.code().unwrap().clone();
    let mut receiver = Side::from(Exchange::receiver(config, code, b"r".to_vec(), [2; 32]).unwrap());
    receiver.start(net.now);
    for step in 0..40 {
        blobs.push((format!("initiator step {step}"), initiator.serialize()));
        blobs.push((format!("receiver step {step}"), receiver.serialize()));
        net.pump(&mut initiator);
        net.pump(&mut receiver);
        if initiator.awaits_confirmation() {
            initiator.confirm_verifier(net.now, true);
        }
        if receiver.awaits_confirmation() {
            receiver.confirm_verifier(net.now, true);
        }
        net.now = net.now + Duration::from_millis(500);
        initiator.handle_timeout(net.now);
        receiver.handle_timeout(net.now);
    }
    assert!(initiator.is_finished() && receiver.is_finished(), "the exchange completed");
    blobs.push(("initiator finished".into(), initiator.serialize()));

    // Failures with texts: an unreachable server, a busy one.
    let mut lonely =
        Side::from(Exchange::initiator(common::config().with_timeout(MINUTE), b"i".to_vec(), [3; 32]).unwrap());
    lonely.start(START);
    let t = lonely.poll_transmit(START).unwrap();
    lonely.handle_transport_error(START, t.id(), TransportError::from_message("connection refused"));
    lonely.handle_timeout(START + MINUTE);
    blobs.push(("unreachable".into(), lonely.serialize()));
    let mut busy =
        Side::from(Exchange::initiator(common::config().with_timeout(MINUTE), b"i".to_vec(), [4; 32]).unwrap());
    busy.start(START);
    let t = busy.poll_transmit(START).unwrap();
    busy.handle_response(START, t.id(), 429, br#"{"error":"rate-limited","message":"slow down"}"#);
    busy.handle_timeout(START + MINUTE);
    assert!(matches!(busy.outcome(), Some(Err(Error::ServerBusy { .. }))));
    blobs.push(("busy".into(), busy.serialize()));
    // A wrong code.
    let mut net = Net::new();
    let (mut initiator, code) = started_initiator(&mut net, b"i", 5);
    let wrong = Code::new(code.channel(), &["wrong"]).unwrap();
    let mut receiver = Side::from(Exchange::receiver(common::config(), wrong, b"r".to_vec(), [6; 32]).unwrap());
    receiver.start(net.now);
    net.run(&mut [&mut initiator, &mut receiver], MINUTE);
    blobs.push(("wrong code".into(), initiator.serialize()));
    blobs
}

#[test]
fn every_real_blob_matches_the_published_schema_and_restores() {
    let validator = schema();
    for (what, blob) in real_blobs() {
        assert_valid(&validator, &blob, &what);
        let restored = Exchange::from_serialized(&blob).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(restored.serialize(), blob, "{what}: a restore changes nothing");
    }
}

#[test]
fn the_schema_is_not_vacuous() {
    let validator = schema();
    let (_, blob) = real_blobs().pop().unwrap();
    let good: Value = serde_json::from_slice(&blob).unwrap();
    let broken = [
        ("unknown field", json!({"surprise": 1})),
        ("bad role", json!({"role": "observer"})),
        ("unpadded base64", json!({"data": "aQ"})),
        ("non-canonical code", json!({"code": "07-Words"})),
        ("huge cursor", json!({"cursor": u64::MAX})),
        ("unknown failure", json!({"failure": {"kind": "gremlins"}})),
    ];
    for (what, change) in broken {
        let mut value = good.clone();
        for (k, v) in change.as_object().unwrap() {
            value[k] = v.clone();
        }
        assert!(!validator.is_valid(&value), "the schema accepts a blob with {what}");
        // The loader refuses it too.
        assert!(Exchange::from_serialized(&serde_json::to_vec(&value).unwrap()).is_err(), "{what}");
    }
}

/// A mid-exchange initiator (joined, PAKE posted, code known) as JSON.
fn mid_exchange() -> (Value, Code, String) {
    let mut net = Net::new();
    let (mut initiator, code) = started_initiator(&mut net, b"i", 1);
    net.pump(&mut initiator);
    let value: Value = serde_json::from_slice(&initiator.serialize()).unwrap();
    assert_eq!(value["pake_posted"], true);
    let side = net
        .requests
        .iter()
        .find_map(|r| if let wormhole_sync_core::wire::Request::Allocate(a) = r { Some(a.side.clone()) } else { None })
        .unwrap();
    (value, code, side)
}

#[test]
fn impossible_states_are_refused_without_echoing_values() {
    let (good, code, own_side) = mid_exchange();
    assert!(Exchange::from_serialized(&serde_json::to_vec(&good).unwrap()).is_ok());
    let cases: Vec<(&str, Value)> = vec![
        ("cursor beyond any sequence number", json!({"cursor": u64::MAX})),
        ("data posted before the PAKE message", json!({"pake_posted": false, "data_posted": true})),
        ("data posted without the peer's PAKE message", json!({"data_posted": true})),
        ("our own side as the peer", json!({"peer_side": own_side})),
        ("a start beyond the year 9999", json!({"started_at": 300_000_000_000_000u64})),
        ("joined without a start", json!({"started_at": null})),
        ("a receiver without a code", json!({"role": "receiver", "code": null, "joined": false, "pake_posted": false})),
        ("peer messages without a peer", json!({"peer_pake": "QUJD"})),
        ("a verdict without a verifier", json!({"decision": true})),
        ("a closed channel without an outcome", json!({"close_acked": true})),
        ("a code in another form", json!({"code": code.to_string().to_uppercase()})),
        ("a failure with a terminal escape", json!({"failure": {"kind": "peer-protocol", "detail": "\u{1b}[2J"}})),
        ("a code of the wrong type", json!({"code": 12345})),
        ("an unknown field in the config", json!({"config": {"surprise": code.to_string()}})),
        // Found by an outside client's fault campaign.
        ("an unknown field in a failure without fields", json!({"failure": {"kind": "timeout", "extra": 1}})),
        ("a timeout no exchange can have", json!({"config": {"timeout_ms": u64::MAX}})),
        ("an app id with a bidirectional override", json!({"config": {"appid": "app\u{202e}"}})),
        ("an app id with a zero-width space", json!({"config": {"appid": "a\u{200b}pp"}})),
    ];
    for (what, change) in cases {
        let mut value = good.clone();
        for (k, v) in change.as_object().unwrap() {
            if let (Some(object), Value::Object(inner)) = (value[k].as_object_mut(), v) {
                object.extend(inner.clone());
            } else {
                value[k] = v.clone();
            }
        }
        let err = Exchange::from_serialized(&serde_json::to_vec(&value).unwrap()).unwrap_err();
        let Error::BadSerializedState(text) = &err else { panic!("{what}: {err:?}") };
        for word in code.words() {
            assert!(!text.contains(word.as_str()), "{what}: {text}");
        }
        assert!(!text.contains("12345") && !text.contains("surprise"), "{what}: {text}");
    }
}

#[test]
fn state_restored_on_a_clock_behind_its_start_runs_at_once() {
    // Saved on a machine whose clock ran a minute ahead of this one.
    let ahead = START + MINUTE;
    let mut initiator =
        Side::from(Exchange::initiator(config().with_timeout(5 * MINUTE), b"i".to_vec(), [1; 32]).unwrap());
    initiator.start(ahead);
    let t = initiator.poll_transmit(ahead).unwrap();
    initiator.handle_response(ahead, t.id(), 200, br#"{"channel":4}"#);
    let blob = initiator.serialize();

    let mut restored = Exchange::from_serialized(&blob).unwrap();
    let due: Vec<_> = std::iter::from_fn(|| restored.poll_transmit(START)).collect();
    let paths: Vec<&str> = due.iter().map(|t| t.path()).collect();
    // At once, not a minute later; the post carries the log, so no fetch goes with it.
    assert_eq!(paths, ["/v1/post"]);
    // Failed requests are retried one interval later on this clock.
    for t in &due {
        restored.handle_transport_error(START, t.id(), TransportError::from_message("connection reset"));
    }
    assert_eq!(restored.poll_timeout(), Some(START + Duration::from_millis(500)));
    // The timeout still counts from the start, which cannot lie in the future.
    assert_eq!(restored.deadline(), Some(START + 5 * MINUTE));

    // A clock stepped back while running keeps waits at their length.
    let mut running = Side::from(Exchange::initiator(config(), b"i".to_vec(), [2; 32]).unwrap());
    running.start(START);
    let t = running.poll_transmit(START).unwrap();
    running.handle_transport_error(START, t.id(), TransportError::from_message("refused"));
    assert_eq!(running.poll_timeout(), Some(START + Duration::from_millis(500)));
    let stepped_back = START.saturating_sub(Duration::from_secs(3600));
    running.handle_timeout(stepped_back);
    assert_eq!(running.poll_timeout(), Some(stepped_back + Duration::from_millis(500)));
}

/// States saved by version 0.1.0 (before the saved failure had names of its
/// own, and before the facts became one type) restore with the same outcome,
/// and are written back byte for byte as they were.
#[test]
fn states_saved_by_0_1_0_restore_and_are_written_back_unchanged() {
    let saved = include_str!("data/saved-by-0.1.0.tsv");
    let mut seen = 0;
    for line in saved.lines() {
        let (what, blob) = line.split_once('\t').unwrap();
        let mut side = Side::from(Exchange::from_serialized(blob.as_bytes()).unwrap());
        assert_eq!(side.serialize(), blob.as_bytes(), "{what}: written back differently");
        let outcome = side.outcome().map(|o| o.map(<[u8]>::to_vec).map_err(Clone::clone));
        match what {
            "server-unreachable" => {
                let Some(Err(Error::ServerUnreachable { cause })) = outcome else { panic!("{what}: {outcome:?}") };
                assert_eq!(cause.to_string(), "connection refused");
            }
            "server-rejected" => assert!(
                matches!(&outcome, Some(Err(Error::ServerRejected { code, .. })) if *code == ErrorCode::InvalidAppid),
                "{what}: {outcome:?}"
            ),
            "server-busy" => assert!(
                matches!(&outcome, Some(Err(Error::ServerBusy { code, .. })) if *code == ErrorCode::ServerFull),
                "{what}: {outcome:?}"
            ),
            "waiting" => {
                assert_eq!(outcome, None);
                assert_eq!(side.code().unwrap().to_string(), "7-alkali-atlas");
            }
            other => panic!("unexpected fixture {other}"),
        }
        seen += 1;
    }
    assert_eq!(seen, 4);
}

/// A state saved by 0.1.0 knows its channel id but no mailbox: restored
/// against a server whose state was kept from then (a version 1
/// snapshot), it completes with a current peer, naming the channel by its
/// id alone; the short id then stays held until the channel closes.
#[test]
fn a_state_saved_by_0_1_0_completes_by_its_channel_id_alone() {
    use wormhole_sync_core::rendezvous::{Rendezvous, RendezvousSnapshot};

    let saved = include_str!("data/saved-by-0.1.0.tsv");
    let blob = saved.lines().find_map(|line| line.strip_prefix("waiting\t")).unwrap();
    let mut initiator = Side::from(Exchange::from_serialized(blob.as_bytes()).unwrap());
    let mut net = Net::new();
    let first = initiator.poll_transmit(net.now).expect("the restored initiator posts its PAKE message");
    let side = first.request().side().to_string();
    let v1 = format!(
        r#"{{"format":"wormhole-sync/rendezvous","version":1,"channels":[{{"appid":"example.com/app1","channel":7,
            "members":[{{"side":"{side}","allocated":true,"closed":null}}],"messages":[],"burned":false,
            "last_activity":{}}}]}}"#,
        START.as_millis()
    );
    let snapshot = RendezvousSnapshot::from_json(v1.as_bytes()).unwrap();
    net.server = Rendezvous::restore(Default::default(), snapshot, [0; 32]).unwrap();
    net.answer(&mut initiator, &first);
    let code: Code = "7-alkali-atlas".parse().unwrap();
    let mut receiver = Side::from(Exchange::receiver(config(), code, b"r".to_vec(), [9; 32]).unwrap());
    receiver.start(net.now);
    net.run(&mut [&mut initiator, &mut receiver], Duration::from_millis(900));
    assert_eq!(initiator.outcome(), Some(Ok(&b"r"[..])));
    assert_eq!(receiver.outcome(), Some(Ok(&b"i"[..])));
    let by_initiator = net.requests.iter().filter(|r| r.side() == side);
    assert!(by_initiator.clone().count() >= 2 && by_initiator.clone().all(|r| r.mailbox().is_none()));
    assert!(net.requests.iter().any(|r| r.side() != side && r.mailbox().is_some()), "the new receiver names it");
}

/// A state is written with the lowest format version that holds it:
/// version 1 until the server named a mailbox, 2 after; a version 1 state
/// with a mailbox is refused.
#[test]
fn the_format_version_says_whether_the_state_holds_a_mailbox() {
    let mut net = Net::new();
    let mut initiator = Side::from(Exchange::initiator(config(), b"i".to_vec(), [1; 32]).unwrap());
    assert!(String::from_utf8(initiator.serialize()).unwrap().contains(r#""version":1,"#));
    initiator.start(net.now);
    net.pump(&mut initiator);
    let blob = String::from_utf8(initiator.serialize()).unwrap();
    assert!(blob.contains(r#""version":2,"#) && blob.contains(r#""mailbox":""#), "{blob}");
    let downgraded = blob.replace(r#""version":2,"#, r#""version":1,"#);
    let refused = Exchange::from_serialized(downgraded.as_bytes()).unwrap_err();
    assert_eq!(refused, Error::BadSerializedState("a version 1 state has no mailbox".into()));
    let future = blob.replace(r#""version":2,"#, r#""version":3,"#);
    assert!(Exchange::from_serialized(future.as_bytes()).is_err());
    // Version 2 without its mailbox (found by an outside client).
    let mut value: Value = serde_json::from_str(&blob).unwrap();
    value.as_object_mut().unwrap().remove("mailbox");
    let refused = Exchange::from_serialized(&serde_json::to_vec(&value).unwrap()).unwrap_err();
    assert_eq!(refused, Error::BadSerializedState("a version 2 state has a mailbox".into()));
}

/// Two readers of a state with a key twice could disagree on what it says
/// (serde_json keeps the last): refused, at any depth.
#[test]
fn a_state_naming_a_key_twice_is_refused() {
    let (good, _, _) = mid_exchange();
    let blob = String::from_utf8(serde_json::to_vec(&good).unwrap()).unwrap();
    assert!(Exchange::from_serialized(blob.as_bytes()).is_ok());
    let top = blob.replacen(r#""joined":true"#, r#""joined":false,"joined":true"#, 1);
    let nested = blob.replacen(r#""code_words":2"#, r#""code_words":2,"code_words":3"#, 1);
    for twice in [top, nested] {
        assert_ne!(twice, blob);
        let refused = Exchange::from_serialized(twice.as_bytes()).unwrap_err();
        assert_eq!(refused, Error::BadSerializedState("an object names a key twice".into()), "{twice}");
    }
}
