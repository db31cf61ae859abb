//! Attacks on the promise "one guess per code", played through the real
//! server: an attacker who learns the sender's channel id (it is the short
//! number anyone can read over a shoulder, or find among the few in use)
//! races the receiver to the second seat.

mod support;

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};
use support::{drive, post, TestServer};
use wormhole_sync_core::{Config, Error, Exchange, Progress};
use wormhole_sync_server::ServerConfig;

const APPID: &str = "example.com/attacks";

fn config(timeout: Duration) -> Config {
    Config::new(APPID).unwrap().with_timeout(timeout)
}

/// The messages of the sender's mailbox, as the attacker (a member) reads them.
fn messages(server: &TestServer, side: &str, channel: &Value, mailbox: &Value) -> Vec<Value> {
    let fetch = json!({"appid": APPID, "side": side, "channel": channel, "mailbox": mailbox, "after": 0});
    post(server.addr, "/v1/fetch", &fetch).json()["messages"].as_array().cloned().unwrap_or_default()
}

/// The attack of the security review, step by step:
/// 1. the attacker learns the sender's channel id;
/// 2. it joins first and posts a PAKE message for its guess of the code; the
///    sender seals its data under the key of that guess (guess 1, tested
///    offline); the attacker never posts data, so nothing burns;
/// 3. it re-creates the same number (`join` with `create: true`) to wait
///    there as an initiator;
/// 4. the receiver types the code, lands in the attacker's channel and
///    seals its data for it (guess 2).
///
/// Now step 3 fails (the code is spent: `crowded`), the receiver is told
/// someone else may have used its code, and the sender ends with
/// `PeerVanished` and burns the channel: one guess, and both people know.
#[test]
fn a_racing_guesser_gets_one_guess_and_both_people_learn_of_it() {
    let server = TestServer::memory(ServerConfig::default().without_rate_limits());
    let addr = server.addr;
    // The sender runs on its own, as a person's machine would.
    let (code_tx, code_rx) = std::sync::mpsc::channel();
    let sending = std::thread::spawn(move || {
        let config = config(Duration::from_secs(4));
        let mut sender = Exchange::initiator(config, b"sender's secret".to_vec(), [1; 32]).unwrap();
        let mut news = Progress::default();
        sender.start(support::now());
        drive(&mut sender, &mut news, addr, |news| news.code().is_some());
        code_tx.send(news.code().unwrap().clone()).unwrap();
        drive(&mut sender, &mut news, addr, |_| false);
        news.outcome().map(|o| o.map(<[u8]>::to_vec).map_err(Error::clone))
    });
    let code = code_rx.recv().unwrap();
    let channel = json!(code.channel().get());

    // 1-2. The attacker takes the second seat and answers with a PAKE message
    // of the right form (a point of the group, for the receiver's role).
    let joined = post(addr, "/v1/join", &json!({"appid": APPID, "side": "a77ac4e5", "channel": channel})).json();
    let mailbox = joined["mailbox"].clone();
    let phase_seen = |phase: &str| {
        for _ in 0..100 {
            let seen = messages(&server, "a77ac4e5", &channel, &mailbox);
            if let Some(message) = seen.iter().find(|m| m["phase"] == phase && m["side"] != "a77ac4e5") {
                return message["body"].as_str().unwrap().to_string();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the sender never posted its {phase}");
    };
    let mut element = BASE64.decode(phase_seen("pake")).unwrap();
    element[0] = b'B';
    let attacker_pake = json!({"appid": APPID, "side": "a77ac4e5", "channel": channel, "mailbox": mailbox,
        "phase": "pake", "body": BASE64.encode(&element)});
    assert_eq!(post(addr, "/v1/post", &attacker_pake).status, 200);
    // Guess 1: the sender's data, sealed under the key of the attacker's guess.
    phase_seen("data");

    // 3. The number cannot be taken again, by any route.
    for create in [false, true] {
        let again = json!({"appid": APPID, "side": "b0b0b0b0", "channel": channel, "create": create});
        let refused = post(addr, "/v1/join", &again);
        assert_eq!((refused.status, refused.error_code().as_str()), (409, "crowded"), "create: {create}");
    }

    // 4. The receiver types the code: told at once, and seals nothing.
    let receiver = Exchange::receiver(config(Duration::from_secs(10)), code, b"receiver's secret".to_vec(), [2; 32]);
    let mut receiver = receiver.unwrap();
    let mut receiver_news = Progress::default();
    receiver.start(support::now());
    drive(&mut receiver, &mut receiver_news, addr, |_| false);
    assert_eq!(receiver_news.outcome(), Some(Err(&Error::Crowded)));
    assert!(Error::Crowded.to_string().contains("someone else may have used your code"));
    let posts = messages(&server, "a77ac4e5", &channel, &mailbox);
    assert_eq!(posts.len(), 3, "only the sender's two messages and the attacker's: {posts:?}");

    // The sender: someone used the code and never completed; the channel is burned.
    assert_eq!(sending.join().unwrap(), Some(Err(Error::PeerVanished)));
    let late = post(addr, "/v1/join", &json!({"appid": APPID, "side": "c0c0c0c0", "channel": channel}));
    assert_eq!(late.error_code(), "burned");
    let attacker_post = json!({"appid": APPID, "side": "a77ac4e5", "channel": channel, "mailbox": mailbox,
        "phase": "data", "body": "AAAA"});
    assert_eq!(post(addr, "/v1/post", &attacker_post).error_code(), "burned");
}
