//! Budgets: one client cannot pin more stored bytes than its budget, and an
//! honest exchange completes while it tries; application ids are capped.

mod support;

use serde_json::{json, Value};
use support::{drive, metric, post_as, seed, TestServer};
use wormhole_sync_core::{Config, Exchange, Progress};
use wormhole_sync_server::ServerConfig;

#[test]
fn one_address_cannot_pin_more_than_its_budget_while_an_honest_exchange_completes() {
    const BUDGET: u64 = 200 * 1024;
    let config = ServerConfig {
        max_bytes_per_address: BUDGET,
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        ..ServerConfig::default().without_rate_limits()
    };
    let server = TestServer::memory(config);
    let attacker = "203.0.113.66";
    let big = "A".repeat(48 * 1024);
    let mut refused = 0;
    for n in 0..20 {
        let allocated =
            post_as(server.addr, attacker, "/v1/allocate", &json!({"appid": "app", "side": format!("x{n}")}));
        assert_eq!(allocated.status, 200);
        let channel = allocated.json()["channel"].clone();
        let post = json!({"appid": "app", "side": format!("x{n}"), "channel": channel, "phase": "p", "body": big});
        let posted = post_as(server.addr, attacker, "/v1/post", &post);
        if posted.status == 429 {
            assert_eq!(posted.error_code(), "over-budget");
            refused += 1;
        }
    }
    assert!(refused >= 15, "only {refused} of 20 posts were refused");
    let stored = metric(server.addr, "wormhole_stored_bytes") as u64;
    assert!(stored <= BUDGET, "the attacker pinned {stored} bytes, more than its budget of {BUDGET}");

    // An honest exchange (another address: the proxy's own) still completes.
    let config = Config::new("example.com/honest").unwrap();
    let mut initiator = Exchange::initiator(config.clone(), b"initiator's data".to_vec(), seed()).unwrap();
    let mut news = Progress::default();
    initiator.start(support::now());
    drive(&mut initiator, &mut news, server.addr, |n| n.code().is_some());
    let code = news.code().unwrap().clone();
    let addr = server.addr;
    let receiving = std::thread::spawn(move || {
        let mut receiver = Exchange::receiver(config, code, b"receiver's data".to_vec(), seed()).unwrap();
        let mut news = Progress::default();
        receiver.start(support::now());
        drive(&mut receiver, &mut news, addr, |_| false);
        news
    });
    drive(&mut initiator, &mut news, server.addr, |_| false);
    assert_eq!(news.outcome(), Some(Ok(&b"receiver's data"[..])));
    assert_eq!(receiving.join().unwrap().outcome(), Some(Ok(&b"initiator's data"[..])));
    // Its closed channel gave its bytes back.
    assert!(metric(server.addr, "wormhole_stored_bytes") as u64 <= stored);
}

#[test]
fn application_ids_are_capped() {
    let server = TestServer::memory(ServerConfig { max_apps: 2, ..ServerConfig::default().without_rate_limits() });
    for app in ["one", "two"] {
        assert_eq!(support::post(server.addr, "/v1/allocate", &json!({"appid": app, "side": "s"})).status, 200);
    }
    let third = support::post(server.addr, "/v1/allocate", &json!({"appid": "three", "side": "s"}));
    assert_eq!((third.status, third.error_code().as_str()), (503, "server-full"));
    let again = support::post(server.addr, "/v1/allocate", &json!({"appid": "one", "side": "t"}));
    assert_eq!(again.status, 200, "an app that has channels is not refused");
}

/// Each client address (IPv6: its /64) holds at most its share of channels,
/// whatever they hold, until they are deleted. Here 100 channels per app
/// id and 20 per address: 5 addresses fill an app id, and one address never
/// does. (With the defaults, 10,000 and 20, it takes 500 addresses; before
/// the cap, 84 addresses filled an app id in one burst of their rate limit,
/// and one address in about 82 minutes.)
#[test]
fn a_client_address_holds_at_most_its_share_of_channels() {
    let mut config = ServerConfig {
        max_channels_per_address: 20,
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        ..ServerConfig::default().without_rate_limits()
    };
    config.rendezvous.max_channels_per_app = 100;
    let server = TestServer::memory(config);
    let allocate = |client: &str, side: String| {
        let reply = post_as(server.addr, client, "/v1/allocate", &json!({"appid": "app", "side": side}));
        (reply.status, reply.error_code(), reply.json()["channel"].clone())
    };
    let mut first = Vec::new();
    for address in 1..=5 {
        let client = format!("198.51.100.{address}");
        for n in 0..20 {
            let (status, code, channel) = allocate(&client, format!("a{address}n{n}"));
            assert_eq!(status, 200, "address {address}, channel {n}: {code}");
            if address == 1 {
                first.push(channel);
            }
        }
        let (status, code, _) = allocate(&client, format!("a{address}over"));
        assert_eq!((status, code.as_str()), (429, "too-many-client-channels"), "address {address}");
    }
    // A /64 is one client.
    let (_, code, _) = allocate("2001:db8:1:2::1", "v6a".into());
    assert_eq!(code, "too-many-channels", "the app id is full: 5 addresses filled it");
    // Joining a channel someone else made costs nothing; making one with `create` does.
    let join = |client: &str, channel: &Value, create: bool| {
        let body = json!({"appid": "app", "side": "joiner", "channel": channel, "create": create});
        post_as(server.addr, client, "/v1/join", &body)
    };
    assert_eq!(join("198.51.100.2", &first[0], false).status, 200);
    // A channel its only side left (kept, emptied, for the retention) is given back to its maker.
    let close = json!({"appid": "app", "side": "a1n1", "channel": first[1], "mood": "lonely"});
    assert_eq!(post_as(server.addr, "198.51.100.1", "/v1/close", &close).json()["deleted"], false);
    let (status, code, _) = allocate("198.51.100.1", "a1again".into());
    assert_eq!(status, 200, "{code}");
    let body = json!({"appid": "app", "side": "a1b", "channel": 99_999, "create": true});
    let refused = post_as(server.addr, "198.51.100.1", "/v1/join", &body);
    assert_eq!(refused.error_code(), "too-many-client-channels", "a join that makes a channel counts");
}

/// Finished channels (every side closed) are not counted: one address may
/// run any number of exchanges one after the other.
#[test]
fn finished_channels_do_not_count_against_the_cap() {
    let config = ServerConfig { max_channels_per_address: 2, ..ServerConfig::default().without_rate_limits() };
    let server = TestServer::memory(config);
    let a = server.addr;
    for n in 0..6 {
        let (s1, s2) = (format!("x{n}"), format!("y{n}"));
        let allocated = support::post(a, "/v1/allocate", &json!({"appid": "app", "side": s1}));
        assert_eq!(allocated.status, 200, "exchange {n}: {}", allocated.error_code());
        let channel = allocated.json()["channel"].clone();
        assert_eq!(support::post(a, "/v1/join", &json!({"appid": "app", "side": s2, "channel": channel})).status, 200);
        for side in [&s1, &s2] {
            let close = json!({"appid": "app", "side": side, "channel": channel, "mood": "happy"});
            assert_eq!(support::post(a, "/v1/close", &close).status, 200);
        }
    }
}
