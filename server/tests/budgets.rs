//! Budgets: one client cannot pin more stored bytes than its budget, and an
//! honest exchange completes while it tries; application ids are capped.

mod support;

use std::net::SocketAddr;

use serde_json::{json, Value};
use support::{drive, metric, raw, request, seed, Reply, TestServer};
use wormhole_sync_core::{Config, Exchange, Progress};
use wormhole_sync_server::ServerConfig;

/// POSTs JSON as a reverse proxy forwards it for `client`.
fn post_as(addr: SocketAddr, client: &str, path: &str, body: &Value) -> Reply {
    let body = serde_json::to_vec(body).unwrap();
    let mut bytes = request("POST", path, Some("application/json"), &body);
    let head_end = bytes.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    bytes.splice(head_end..head_end, format!("X-Forwarded-For: {client}\r\n").into_bytes());
    raw(addr, &bytes).unwrap()
}

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
