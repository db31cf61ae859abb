//! The server over real HTTP on 127.0.0.1: every route, long-polls,
//! crowding, expiry, bad input, keep-alive.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{get, metric, post, raw, raw_cut_short, read_reply, request, Reply, TestServer};
use wormhole_sync_core::Timestamp;
use wormhole_sync_server::{Clock, ServerConfig};

fn quiet_config() -> ServerConfig {
    ServerConfig::default().without_rate_limits()
}

/// Sides `s1` (creating it) and `s2` join channel 1 of app `app`.
fn join_both_sides(a: SocketAddr) {
    post(a, "/v1/join", &json!({"appid": "app", "side": "s1", "channel": 1, "create": true}));
    post(a, "/v1/join", &json!({"appid": "app", "side": "s2", "channel": 1}));
}

/// Sends a request on its own thread; joining gives its reply and how long it took.
fn timed_post(a: SocketAddr, path: &'static str, body: Value) -> std::thread::JoinHandle<(Reply, Duration)> {
    std::thread::spawn(move || {
        let started = Instant::now();
        let reply = post(a, path, &body);
        (reply, started.elapsed())
    })
}

/// A person who opens the server's address in a browser learns what it is
/// and how to point the clients at it.
#[test]
fn the_front_page_says_how_to_use_the_server() {
    let server = TestServer::memory(ServerConfig::default());
    let reply = raw(server.addr, &request("GET", "/", None, b"")).unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.headers.to_ascii_lowercase().contains("content-type: text/plain"), "{}", reply.headers);
    let page = String::from_utf8(reply.body).unwrap();
    for line in ["wormhole-sync send --rendezvous", "wormhole --relay-url", "/health"] {
        assert!(page.contains(line), "{page}");
    }
}

#[test]
fn every_route_works() {
    let server = TestServer::memory(quiet_config());
    let a = server.addr;
    let allocated = post(a, "/v1/allocate", &json!({"appid": "app", "side": "s1"}));
    assert_eq!(allocated.status, 200);
    let ch = allocated.json()["channel"].as_u64().unwrap();
    assert!((1..=9).contains(&ch), "a quiet app gets a one-digit channel: {ch}");
    let mailbox = allocated.json()["mailbox"].clone();
    assert!(mailbox.as_str().is_some_and(|m| m.len() == 13), "{mailbox}");
    let joined = post(a, "/v1/join", &json!({"appid": "app", "side": "s2", "channel": ch}));
    let empty_log = json!({"messages": [], "closed": []});
    assert_eq!((joined.status, joined.json()), (200, json!({"sides": 2, "mailbox": mailbox, "log": empty_log})));
    let posted =
        post(a, "/v1/post", &json!({"appid": "app", "side": "s1", "channel": ch, "phase": "pake", "body": "QUJD"}));
    assert_eq!((posted.status, posted.json()), (200, json!({"seq": 1})));
    let fetched = post(a, "/v1/fetch", &json!({"appid": "app", "side": "s2", "channel": ch, "after": 0}));
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.json()["messages"][0], json!({"seq": 1, "side": "s1", "phase": "pake", "body": "QUJD"}));
    assert!(fetched.headers.to_ascii_lowercase().contains("content-type: application/json"));
    let closed = post(a, "/v1/close", &json!({"appid": "app", "side": "s1", "channel": ch, "mood": "happy"}));
    assert_eq!((closed.status, closed.json()), (200, json!({"deleted": false})));
    let closed = post(a, "/v1/close", &json!({"appid": "app", "side": "s2", "channel": ch, "mood": "happy"}));
    // Two sides used the code: the channel is emptied and kept for the retention.
    assert_eq!((closed.status, closed.json()), (200, json!({"deleted": false})));

    let health = get(a, "/health");
    assert_eq!((health.status, health.json()), (200, json!({"status": "ok"})));
    let metrics = String::from_utf8(get(a, "/metrics").body).unwrap();
    for line in [
        "wormhole_channels_open 0",
        "wormhole_channels_retained 1",
        "wormhole_longpolls_waiting 0",
        r#"wormhole_requests_total{route="allocate",code="ok"} 1"#,
        r#"wormhole_requests_total{route="close",code="ok"} 2"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }
}

/// Once two sides used a code, its number stays with their channel, and
/// for the retention after they close: a third side is told `crowded`,
/// even with `create`, and allocate never hands it out.
#[test]
fn a_code_two_sides_used_is_spent() {
    let server = TestServer::memory(quiet_config());
    let a = server.addr;
    let allocated = post(a, "/v1/allocate", &json!({"appid": "app", "side": "s1"})).json();
    let (ch, mailbox) = (allocated["channel"].clone(), allocated["mailbox"].clone());
    post(a, "/v1/join", &json!({"appid": "app", "side": "s2", "channel": ch}));
    for side in ["s1", "s2"] {
        let body =
            json!({"appid": "app", "side": side, "channel": ch, "mailbox": mailbox, "phase": "pake", "body": side});
        assert_eq!(post(a, "/v1/post", &body).status, 200);
    }
    assert_eq!(metric(a, "wormhole_nameplates_claimed"), 1.0);
    let by_number = post(a, "/v1/fetch", &json!({"appid": "app", "side": "s1", "channel": ch}));
    assert_eq!(by_number.json()["messages"].as_array().map(Vec::len), Some(2));
    for create in [false, true] {
        let stranger = post(a, "/v1/join", &json!({"appid": "app", "side": "s3", "channel": ch, "create": create}));
        assert_eq!((stranger.status, stranger.error_code().as_str()), (409, "crowded"));
    }
    for side in ["s1", "s2"] {
        let close = json!({"appid": "app", "side": side, "channel": ch, "mailbox": mailbox, "mood": "happy"});
        assert_eq!(post(a, "/v1/close", &close).json()["deleted"], false, "kept, emptied, for the retention");
    }
    let late = post(a, "/v1/join", &json!({"appid": "app", "side": "s3", "channel": ch, "create": true}));
    assert_eq!(late.error_code(), "crowded");
    let bad = post(a, "/v1/fetch", &json!({"appid": "app", "side": "s1", "channel": ch, "mailbox": "no/such"}));
    assert_eq!(bad.error_code(), "bad-request");
}

/// A code whose only side left (Ctrl-C, or it gave up) tells whoever
/// types it later that the other side stopped waiting, for the retention;
/// a join that may create the channel (a chosen code tried again) starts
/// it afresh.
#[test]
fn a_code_whose_only_side_left_says_so_and_a_chosen_one_starts_again() {
    let server = TestServer::memory(quiet_config());
    let a = server.addr;
    let allocated = post(a, "/v1/allocate", &json!({"appid": "app", "side": "s1"})).json();
    let ch = allocated["channel"].clone();
    let pake = json!({"appid": "app", "side": "s1", "channel": ch, "phase": "pake", "body": "s1"});
    assert_eq!(post(a, "/v1/post", &pake).status, 200);
    let close = json!({"appid": "app", "side": "s1", "channel": ch, "mood": "lonely"});
    assert_eq!(post(a, "/v1/close", &close).json()["deleted"], false, "kept, emptied, for the retention");
    assert_eq!(metric(a, "wormhole_channels_retained"), 1.0);
    let late = post(a, "/v1/join", &json!({"appid": "app", "side": "s2", "channel": ch}));
    assert_eq!((late.status, late.error_code().as_str()), (410, "abandoned"));

    // `send --code 42-...`, stopped, then run again: the second run gets a fresh channel.
    let first = json!({"appid": "app", "side": "c1", "channel": 42, "create": true});
    assert_eq!(post(a, "/v1/join", &first).status, 200);
    post(a, "/v1/close", &json!({"appid": "app", "side": "c1", "channel": 42, "mood": "lonely"}));
    let again = post(a, "/v1/join", &json!({"appid": "app", "side": "c2", "channel": 42, "create": true}));
    assert_eq!((again.status, again.json()["sides"].clone()), (200, json!(1)), "{:?}", again.json());
    let receiver = post(a, "/v1/join", &json!({"appid": "app", "side": "r", "channel": 42}));
    assert_eq!((receiver.status, receiver.json()["sides"].clone()), (200, json!(2)));
    assert_eq!(metric(a, "wormhole_channels_retained"), 1.0, "the first try's channel was replaced");
}

#[test]
fn a_long_poll_wakes_when_a_message_is_stored() {
    let server = TestServer::memory(quiet_config());
    let a = server.addr;
    join_both_sides(a);
    let waiting =
        timed_post(a, "/v1/fetch", json!({"appid": "app", "side": "s2", "channel": 1, "after": 0, "wait_ms": 30_000}));
    support::await_long_poll(a);
    post(a, "/v1/post", &json!({"appid": "app", "side": "s1", "channel": 1, "phase": "pake", "body": "AAAA"}));
    let (reply, elapsed) = waiting.join().unwrap();
    assert_eq!(reply.json()["messages"][0]["body"], "AAAA");
    // Woken by the post, not by the end of its 30 s wait.
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    assert_eq!(metric(a, "wormhole_longpolls_waiting"), 0.0);
}

#[test]
fn join_and_post_answers_carry_the_log() {
    let server = TestServer::memory(quiet_config());
    let a = server.addr;
    post(a, "/v1/join", &json!({"appid": "app", "side": "s1", "channel": 1, "create": true}));
    post(a, "/v1/post", &json!({"appid": "app", "side": "s1", "channel": 1, "phase": "pake", "body": "AAAA"}));
    let joined = post(a, "/v1/join", &json!({"appid": "app", "side": "s2", "channel": 1}));
    let pake = json!({"seq": 1, "side": "s1", "phase": "pake", "body": "AAAA"});
    let mailbox = joined.json()["mailbox"].clone();
    assert_eq!(joined.json(), json!({"sides": 2, "mailbox": mailbox, "log": {"messages": [pake], "closed": []}}));
    // With a cursor, a post's answer holds the log after it, its own message included.
    let posted = post(
        a,
        "/v1/post",
        &json!({"appid": "app", "side": "s2", "channel": 1, "phase": "pake", "body": "BBBB", "after": 1}),
    );
    let own = json!({"seq": 2, "side": "s2", "phase": "pake", "body": "BBBB"});
    assert_eq!(posted.json(), json!({"seq": 2, "log": {"messages": [own], "closed": []}}));
    // Without one, the answer is as before.
    let again =
        post(a, "/v1/post", &json!({"appid": "app", "side": "s2", "channel": 1, "phase": "pake", "body": "BBBB"}));
    assert_eq!(again.json(), json!({"seq": 2}));
}

#[test]
fn a_waiting_post_is_stored_at_once_and_answered_on_the_peers_news() {
    let server = TestServer::memory(quiet_config());
    let a = server.addr;
    join_both_sides(a);
    let body = json!({"appid": "app", "side": "s1", "channel": 1, "phase": "pake", "body": "AAAA",
        "after": 0, "wait_ms": 30_000});
    let waiting = timed_post(a, "/v1/post", body);
    support::await_long_poll(a);
    // Stored before the wait: the peer sees it, and the poster's own message did not end the wait.
    let peer_view = post(a, "/v1/fetch", &json!({"appid": "app", "side": "s2", "channel": 1, "after": 0}));
    assert_eq!(peer_view.json()["messages"][0]["body"], "AAAA");
    // A fetch of the poster's own side with a wait is not woken by its own message either.
    let own_fetch = std::thread::spawn(move || {
        let body = json!({"appid": "app", "side": "s1", "channel": 1, "after": 0, "wait_ms": 30_000});
        post(a, "/v1/fetch", &body)
    });
    support::await_long_polls(a, 2);
    post(a, "/v1/post", &json!({"appid": "app", "side": "s2", "channel": 1, "phase": "pake", "body": "BBBB"}));
    let (reply, elapsed) = waiting.join().unwrap();
    assert!(elapsed < Duration::from_secs(20), "woken by the peer's post, not the wait: {elapsed:?}");
    let reply = reply.json();
    assert_eq!(reply["seq"], 1);
    let sides: Vec<&str> =
        reply["log"]["messages"].as_array().unwrap().iter().map(|m| m["side"].as_str().unwrap()).collect();
    assert_eq!(sides, ["s1", "s2"]);
    assert_eq!(own_fetch.join().unwrap().json()["messages"].as_array().unwrap().len(), 2);
    assert_eq!(metric(a, "wormhole_longpolls_waiting"), 0.0);
}

#[test]
fn a_long_poll_also_wakes_on_close_and_ends_empty_at_its_wait() {
    let mut config = quiet_config();
    config.rendezvous.max_wait = Duration::from_millis(300);
    let server = TestServer::memory(config);
    let a = server.addr;
    join_both_sides(a);
    // The server caps the wait: a 60 s request returns empty after 300 ms.
    let started = Instant::now();
    let reply = post(a, "/v1/fetch", &json!({"appid": "app", "side": "s2", "channel": 1, "wait_ms": 60_000}));
    assert_eq!(reply.json(), json!({"messages": [], "closed": []}));
    assert!(started.elapsed() >= Duration::from_millis(300) && started.elapsed() < Duration::from_secs(30));

    let mut config = quiet_config();
    config.rendezvous.max_wait = Duration::from_secs(30);
    let server = TestServer::memory(config);
    let a = server.addr;
    join_both_sides(a);
    let waiting = std::thread::spawn(move || {
        post(a, "/v1/fetch", &json!({"appid": "app", "side": "s2", "channel": 1, "wait_ms": 30_000}))
    });
    support::await_long_poll(a);
    post(a, "/v1/close", &json!({"appid": "app", "side": "s1", "channel": 1, "mood": "lonely"}));
    assert_eq!(waiting.join().unwrap().json()["closed"], json!([{"side": "s1", "mood": "lonely"}]));
}

#[test]
fn a_disconnected_long_poll_is_dropped() {
    let server = TestServer::memory(quiet_config());
    let a = server.addr;
    post(a, "/v1/join", &json!({"appid": "app", "side": "s1", "channel": 1, "create": true}));
    let body = serde_json::to_vec(&json!({"appid": "app", "side": "s1", "channel": 1, "wait_ms": 60_000})).unwrap();
    let mut stream = TcpStream::connect(a).unwrap();
    stream.write_all(&request("POST", "/v1/fetch", Some("application/json"), &body)).unwrap();
    support::await_long_poll(a);
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(a, "wormhole_longpolls_waiting") > 0.0 {
        assert!(Instant::now() < deadline, "the waiter outlived its client");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A close by a side that is not a member answers as a close of a free id,
/// so closes cannot list the ids in use; and closes are rate-limited.
#[test]
fn a_strangers_close_tells_nothing_and_closes_are_rate_limited() {
    let mut config = quiet_config();
    config.message_rate_limit_per_minute = 30;
    let server = TestServer::memory(config);
    let a = server.addr;
    let used = post(a, "/v1/allocate", &json!({"appid": "app", "side": "s1"})).json()["channel"].as_u64().unwrap();
    let free = (1..=9).find(|n| *n != used).unwrap();
    let probe = |channel| {
        let reply = post(a, "/v1/close", &json!({"appid": "app", "side": "zz", "channel": channel, "mood": "scary"}));
        (reply.status, reply.body)
    };
    assert_eq!(probe(used), probe(free));
    assert_eq!(probe(used).0, 200);
    let join = post(a, "/v1/join", &json!({"appid": "app", "side": "s2", "channel": used}));
    assert_eq!(join.status, 200, "the stranger's scary close burned nothing");
    let statuses: Vec<u16> = (0..40).map(|_| probe(free).0).collect();
    assert!(statuses.contains(&429), "closes are not rate-limited: {statuses:?}");
}

#[test]
fn a_third_side_is_crowded_out() {
    let server = TestServer::memory(quiet_config());
    let a = server.addr;
    join_both_sides(a);
    let third = post(a, "/v1/join", &json!({"appid": "app", "side": "s3", "channel": 1}));
    assert_eq!((third.status, third.error_code().as_str()), (409, "crowded"));
}

#[test]
fn idle_channels_expire_and_their_ids_are_reused() {
    let mut config = quiet_config();
    config.rendezvous.channel_expiry = Duration::from_millis(300);
    config.sweep_interval = Duration::from_millis(50);
    let server = TestServer::memory(config);
    let a = server.addr;
    post(a, "/v1/join", &json!({"appid": "app", "side": "s1", "channel": 1, "create": true}));
    let second = post(a, "/v1/allocate", &json!({"appid": "app", "side": "s2"})).json()["channel"].clone();
    assert_eq!(metric(a, "wormhole_channels_open"), 2.0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(a, "wormhole_channels_open") > 0.0 {
        assert!(Instant::now() < deadline, "channels never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
    let gone = post(a, "/v1/join", &json!({"appid": "app", "side": "s3", "channel": second}));
    assert_eq!(gone.error_code(), "unknown-channel");
    let reused = post(a, "/v1/allocate", &json!({"appid": "app", "side": "s4"})).json()["channel"].as_u64().unwrap();
    assert!((1..=9).contains(&reused), "freed ids are given again: {reused}");
}

/// The server reads its time from the configured clock: a test moves it
/// past the three days' expiry and the retention instead of waiting.
#[test]
fn expiry_and_retention_follow_the_servers_clock() {
    let clock = Clock::manual(Timestamp::from_millis(1_000_000));
    let mut config = quiet_config();
    config.sweep_interval = Duration::from_millis(50);
    config.clock = clock.clone();
    let server = TestServer::memory(config);
    let a = server.addr;
    let idle = post(a, "/v1/allocate", &json!({"appid": "app", "side": "s1"})).json()["channel"].clone();
    let left = post(a, "/v1/allocate", &json!({"appid": "app", "side": "s2"})).json()["channel"].clone();
    post(a, "/v1/close", &json!({"appid": "app", "side": "s2", "channel": left, "mood": "lonely"}));
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // Nothing expires while the clock stands still, however long the test waits.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!((metric(a, "wormhole_channels_open"), metric(a, "wormhole_channels_retained")), (1.0, 1.0));
    clock.advance(Duration::from_secs(5 * 60));
    wait_for("the retention never ended", &|| metric(a, "wormhole_channels_retained") == 0.0);
    assert_eq!(metric(a, "wormhole_channels_open"), 1.0, "three days have not passed");
    clock.advance(Duration::from_secs(3 * 24 * 3600));
    wait_for("the idle channel never expired", &|| metric(a, "wormhole_channels_open") == 0.0);
    let gone = post(a, "/v1/join", &json!({"appid": "app", "side": "s3", "channel": idle}));
    assert_eq!(gone.error_code(), "unknown-channel");
}

#[test]
fn connections_are_kept_alive() {
    let server = TestServer::memory(quiet_config());
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for side in ["k1", "k2", "k3"] {
        let body = serde_json::to_vec(&json!({"appid": "app", "side": side})).unwrap();
        let head = format!(
            "POST /v1/allocate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&body).unwrap();
        assert_eq!(read_reply(&mut stream).unwrap().status, 200);
    }
}

#[test]
fn allocations_are_rate_limited_per_address() {
    let config = ServerConfig { rate_limit_per_minute: 3, ..ServerConfig::default() };
    let server = TestServer::memory(config);
    let replies: Vec<_> =
        (0..5).map(|i| post(server.addr, "/v1/allocate", &json!({"appid": "app", "side": format!("s{i}")}))).collect();
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let first = replies[0].json()["channel"].clone();
    let limited = post(server.addr, "/v1/join", &json!({"appid": "app", "side": "x", "channel": 1}));
    assert_eq!(limited.error_code(), "rate-limited");
    // Posts and fetches have a budget of their own.
    let fetched = post(server.addr, "/v1/fetch", &json!({"appid": "app", "side": "s0", "channel": first}));
    assert_eq!(fetched.status, 200);

    let config = ServerConfig { message_rate_limit_per_minute: 2, ..ServerConfig::default() };
    let server = TestServer::memory(config);
    let channel = post(server.addr, "/v1/allocate", &json!({"appid": "app", "side": "s0"})).json()["channel"].clone();
    let fetch = json!({"appid": "app", "side": "s0", "channel": channel});
    let statuses: Vec<u16> = (0..3).map(|_| post(server.addr, "/v1/fetch", &fetch).status).collect();
    assert_eq!(statuses, [200, 200, 429]);
    let posted = post(
        server.addr,
        "/v1/post",
        &json!({"appid": "app", "side": "s0", "channel": channel, "phase": "p", "body": "x"}),
    );
    assert_eq!(posted.error_code(), "rate-limited");
}

/// POSTs an allocate as a reverse proxy would forward it for `client`.
fn allocate_forwarded_for(addr: std::net::SocketAddr, client: &str, side: &str) -> u16 {
    let body = serde_json::to_vec(&json!({"appid": "app", "side": side})).unwrap();
    let mut bytes = request("POST", "/v1/allocate", Some("application/json"), &body);
    let head_end = bytes.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    let header = format!("X-Forwarded-For: {client}\r\n");
    bytes.splice(head_end..head_end, header.into_bytes());
    raw(addr, &bytes).unwrap().status
}

#[test]
fn behind_a_trusted_proxy_each_client_has_its_own_limit() {
    let trusted = ServerConfig {
        rate_limit_per_minute: 2,
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        ..ServerConfig::default()
    };
    let server = TestServer::memory(trusted);
    let first: Vec<u16> =
        (0..3).map(|i| allocate_forwarded_for(server.addr, "203.0.113.1", &format!("a{i}"))).collect();
    assert_eq!(first, [200, 200, 429]);
    let second: Vec<u16> =
        (0..2).map(|i| allocate_forwarded_for(server.addr, "203.0.113.2", &format!("b{i}"))).collect();
    assert_eq!(second, [200, 200], "another client behind the same proxy is not limited by the first");

    // Without trusting the proxy, the header is anyone's to forge: ignored, and
    // every request counts against the connection's own address (loopback too).
    let untrusted = ServerConfig { rate_limit_per_minute: 2, ..ServerConfig::default() };
    let server = TestServer::memory(untrusted);
    let statuses: Vec<u16> =
        (0..3).map(|i| allocate_forwarded_for(server.addr, &format!("203.0.113.{i}"), &format!("c{i}"))).collect();
    assert_eq!(statuses, [200, 200, 429]);
}

/// (what, raw request, expected status, expected error code)
fn bad_requests() -> Vec<(&'static str, Vec<u8>, u16, &'static str)> {
    let j = Some("application/json");
    let p = |path: &'static str, body: &str| request("POST", path, j, body.as_bytes());
    let big = format!(r#"{{"appid":"app","side":"s1","channel":1,"phase":"x","body":"{}"}}"#, "A".repeat(200_000));
    let long_message =
        format!(r#"{{"appid":"app","side":"s1","channel":1,"phase":"big","body":"{}"}}"#, "A".repeat(70_000));
    vec![
        ("not json", p("/v1/allocate", "hello"), 400, "bad-request"),
        ("empty body", p("/v1/allocate", ""), 400, "bad-request"),
        ("json array", p("/v1/allocate", "[1,2]"), 400, "bad-request"),
        ("json null", p("/v1/allocate", "null"), 400, "bad-request"),
        ("truncated json", p("/v1/allocate", r#"{"appid":"app","#), 400, "bad-request"),
        ("missing side", p("/v1/allocate", r#"{"appid":"app"}"#), 400, "bad-request"),
        ("appid number", p("/v1/allocate", r#"{"appid":5,"side":"s"}"#), 400, "bad-request"),
        ("empty appid", p("/v1/allocate", r#"{"appid":"","side":"s"}"#), 400, "invalid-appid"),
        ("control char appid", p("/v1/allocate", r#"{"appid":"a\u0007","side":"s"}"#), 400, "invalid-appid"),
        ("long appid", p("/v1/allocate", &format!(r#"{{"appid":"{}","side":"s"}}"#, "a".repeat(300))), 400, "invalid-appid"),
        ("uppercase side", p("/v1/allocate", r#"{"appid":"app","side":"S1"}"#), 400, "invalid-side"),
        ("long side", p("/v1/allocate", &format!(r#"{{"appid":"app","side":"{}"}}"#, "s".repeat(65))), 400, "invalid-side"),
        ("channel zero", p("/v1/join", r#"{"appid":"app","side":"s2","channel":0}"#), 400, "bad-request"),
        ("channel negative", p("/v1/join", r#"{"appid":"app","side":"s2","channel":-3}"#), 400, "bad-request"),
        ("channel string", p("/v1/join", r#"{"appid":"app","side":"s2","channel":"1"}"#), 400, "bad-request"),
        ("channel huge", p("/v1/join", r#"{"appid":"app","side":"s2","channel":1e99}"#), 400, "bad-request"),
        ("create not bool", p("/v1/join", r#"{"appid":"app","side":"s2","channel":1,"create":"yes"}"#), 400, "bad-request"),
        ("unknown channel", p("/v1/join", r#"{"appid":"app","side":"s2","channel":999}"#), 404, "unknown-channel"),
        ("other app's channel", p("/v1/join", r#"{"appid":"other","side":"s2","channel":1}"#), 404, "unknown-channel"),
        ("bad phase", p("/v1/post", r#"{"appid":"app","side":"s1","channel":1,"phase":"A B","body":""}"#), 400, "invalid-phase"),
        ("body not string", p("/v1/post", r#"{"appid":"app","side":"s1","channel":1,"phase":"x","body":[]}"#), 400, "bad-request"),
        ("post by stranger", p("/v1/post", r#"{"appid":"app","side":"zz","channel":1,"phase":"x","body":""}"#), 403, "not-joined"),
        ("fetch by stranger", p("/v1/fetch", r#"{"appid":"app","side":"zz","channel":1}"#), 403, "not-joined"),
        ("after negative", p("/v1/fetch", r#"{"appid":"app","side":"s1","channel":1,"after":-1}"#), 400, "bad-request"),
        ("bad mood", p("/v1/close", r#"{"appid":"app","side":"s1","channel":1,"mood":"meh"}"#), 400, "bad-request"),
        ("message over limit", p("/v1/post", &long_message), 413, "message-too-large"),
        ("body over limit", p("/v1/post", &big), 413, "body-too-large"),
        (
            "declared length over limit",
            b"POST /v1/post HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\n\r\n".to_vec(),
            413,
            "body-too-large",
        ),
        ("no content type", request("POST", "/v1/allocate", None, br#"{"appid":"app","side":"s"}"#), 415, "unsupported-media-type"),
        ("text content type", request("POST", "/v1/allocate", Some("text/plain"), br#"{"appid":"app","side":"s"}"#), 415, "unsupported-media-type"),
        ("form content type", request("POST", "/v1/allocate", Some("application/x-www-form-urlencoded"), b"appid=app"), 415, "unsupported-media-type"),
        ("GET an operation", request("GET", "/v1/allocate", None, b""), 405, "method-not-allowed"),
        ("PUT an operation", request("PUT", "/v1/post", j, b"{}"), 405, "method-not-allowed"),
        ("DELETE an operation", request("DELETE", "/v1/close", None, b""), 405, "method-not-allowed"),
        ("POST health", request("POST", "/health", j, b"{}"), 405, "method-not-allowed"),
        ("unknown operation", p("/v1/destroy", "{}"), 404, "not-found"),
        ("old version", p("/v0/allocate", "{}"), 404, "not-found"),
        ("post to the front page", request("POST", "/", j, b"{}"), 405, "method-not-allowed"),
        ("nested path", p("/v1/allocate/extra", "{}"), 404, "not-found"),
        ("query string on an unknown path", request("GET", "/nothing?x=1", None, b""), 404, "not-found"),
        ("wrong code conflict", p("/v1/post", r#"{"appid":"app","side":"s1","channel":1,"phase":"pake","body":"different"}"#), 409, "conflict"),
    ]
}

#[test]
fn bad_requests_get_4xx_with_a_stable_code_and_the_server_keeps_serving() {
    let server = TestServer::memory(quiet_config());
    let a = server.addr;
    post(a, "/v1/join", &json!({"appid": "app", "side": "s1", "channel": 1, "create": true}));
    post(a, "/v1/post", &json!({"appid": "app", "side": "s1", "channel": 1, "phase": "pake", "body": "first"}));
    let cases = bad_requests();
    assert!(cases.len() >= 30);
    for (what, bytes, status, code) in cases {
        let reply = raw(a, &bytes).unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
        assert_eq!(
            (reply.status, reply.error_code().as_str()),
            (status, code),
            "{what}: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    // Garbage that is not even HTTP gets a 4xx from the HTTP layer, or a closed connection; never a hang.
    let mut stream = TcpStream::connect(a).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(b"\x00\x01garbage\r\n\r\n").unwrap();
    if let Ok(reply) = read_reply(&mut stream) {
        assert!((400..500).contains(&reply.status), "{reply:?}");
    }
    // Still serving, and counted no 5xx.
    let next = post(a, "/v1/allocate", &json!({"appid": "app", "side": "s9"})).json()["channel"].as_u64().unwrap();
    assert!((2..=9).contains(&next), "{next}");
    let metrics = String::from_utf8(get(a, "/metrics").body).unwrap();
    assert!(!metrics.contains("code=\"internal\""), "{metrics}");
}

#[test]
fn silent_and_idle_connections_are_closed() {
    use std::io::Read;
    let config = ServerConfig { header_timeout: Duration::from_millis(500), ..quiet_config() };
    let server = TestServer::memory(config);
    // Connects and never sends a byte.
    let mut silent = TcpStream::connect(server.addr).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest); // ends when the server closes (a 408 may come first)
    assert!(started.elapsed() < Duration::from_secs(15), "the silent connection was held open");
    // Sends one request, then idles on the kept-alive connection.
    let mut idle = TcpStream::connect(server.addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let body = serde_json::to_vec(&json!({"appid": "app", "side": "idle"})).unwrap();
    let head = format!(
        "POST /v1/allocate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    idle.write_all(head.as_bytes()).unwrap();
    idle.write_all(&body).unwrap();
    assert_eq!(read_reply(&mut idle).unwrap().status, 200);
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = idle.read_to_end(&mut rest);
    assert!(started.elapsed() < Duration::from_secs(15), "the idle connection was held open");
}

#[test]
fn requests_hyper_cannot_parse_get_json_errors_too() {
    let server = TestServer::memory(quiet_config());
    let malformed = raw(server.addr, b"GARBAGE / HTTP/9.9\r\n\r\n").unwrap();
    assert_eq!((malformed.status, malformed.error_code().as_str()), (400, "bad-request"));
    let huge = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(600 * 1024));
    let too_large = raw_cut_short(server.addr, huge.into_bytes()).unwrap();
    assert_eq!((too_large.status, too_large.error_code().as_str()), (431, "headers-too-large"));
    // Headers are read up to 16 KiB by default, not hyper's 400 KB.
    let over = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(200 * 1024));
    let too_large = raw_cut_short(server.addr, over.into_bytes()).unwrap();
    assert_eq!((too_large.status, too_large.error_code().as_str()), (431, "headers-too-large"));
    let within = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(15 * 1024));
    assert_eq!(raw(server.addr, within.as_bytes()).unwrap().status, 200);
    let mut small = quiet_config();
    small.max_header_bytes = 9 * 1024;
    let strict = TestServer::memory(small);
    // hyper checks its buffer between reads, so the bound is the limit plus at most one read.
    let refused = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(40 * 1024));
    let reply = raw_cut_short(strict.addr, refused.into_bytes()).unwrap();
    assert_eq!(reply.error_code(), "headers-too-large", "{reply:?}");
    // Ordinary answers are untouched.
    assert_eq!(get(server.addr, "/health").status, 200);
    let missing = get(server.addr, "/nowhere");
    assert_eq!((missing.status, missing.error_code().as_str()), (404, "not-found"));
}

#[test]
fn metrics_have_latency_histograms_per_route_and_the_budget_gauges() {
    let server = TestServer::memory(quiet_config());
    let allocated = post(server.addr, "/v1/allocate", &json!({"appid": "app", "side": "s1"}));
    let channel = allocated.json()["channel"].clone();
    post(
        server.addr,
        "/v1/post",
        &json!({"appid": "app", "side": "s1", "channel": channel, "phase": "p", "body": "12345"}),
    );
    let text = String::from_utf8(get(server.addr, "/metrics").body).unwrap();
    assert!(text.contains(r#"wormhole_request_duration_seconds_count{route="allocate"} 1"#), "{text}");
    assert!(text.contains(r#"wormhole_request_duration_seconds_bucket{le="60.0",route="post"} 1"#), "{text}");
    assert_eq!(metric(server.addr, "wormhole_stored_bytes"), 5.0);
    assert_eq!(metric(server.addr, "wormhole_storing_clients"), 1.0);
    assert!(text.trim_end().ends_with("# EOF"), "OpenMetrics text ends with # EOF");
}

/// Sends `method path` with an `Origin` (and, for a preflight, what the
/// browser asks to send).
fn from_origin(a: SocketAddr, method: &str, origin: &str) -> Reply {
    let body = br#"{"appid": "app", "side": "s1"}"#;
    let head = match method {
        "OPTIONS" => "Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n".into(),
        _ => format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()),
    };
    let request = format!(
        "{method} /v1/allocate HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nOrigin: {origin}\r\n{head}\r\n"
    );
    let mut bytes = request.into_bytes();
    if method == "POST" {
        bytes.extend_from_slice(body);
    }
    raw(a, &bytes).unwrap()
}

/// Web pages on the origins an operator allows may call the API from a
/// browser: preflights are answered and answers name the origin. Other
/// origins, and every origin by default, get no CORS headers, so browsers
/// keep the answers from their scripts.
#[test]
fn cross_origin_calls_follow_the_allow_list() {
    let allowed = |reply: &Reply, origin: &str| {
        reply.headers.to_ascii_lowercase().contains(&format!("access-control-allow-origin: {origin}"))
    };
    let mut config = quiet_config();
    config.cors_origins = vec!["https://app.example".parse().unwrap(), "http://localhost:8080".parse().unwrap()];
    let server = TestServer::memory(config);
    let preflight = from_origin(server.addr, "OPTIONS", "https://app.example");
    assert_eq!(preflight.status, 200);
    let headers = preflight.headers.to_ascii_lowercase();
    assert!(allowed(&preflight, "https://app.example"), "{headers}");
    for expected in
        ["access-control-allow-methods: post", "access-control-allow-headers: content-type", "max-age: 3600"]
    {
        assert!(headers.contains(expected), "{expected}: {headers}");
    }
    let answer = from_origin(server.addr, "POST", "http://localhost:8080");
    assert_eq!(answer.status, 200);
    assert!(allowed(&answer, "http://localhost:8080"), "{}", answer.headers);
    for method in ["OPTIONS", "POST"] {
        let stranger = from_origin(server.addr, method, "https://elsewhere.example");
        assert!(!stranger.headers.to_ascii_lowercase().contains("access-control-allow-origin"), "{method}");
    }

    let by_default = TestServer::memory(quiet_config());
    for method in ["OPTIONS", "POST"] {
        let reply = from_origin(by_default.addr, method, "https://app.example");
        assert!(!reply.headers.to_ascii_lowercase().contains("access-control-"), "{method}: {}", reply.headers);
    }

    let mut config = quiet_config();
    config.cors_origins = vec!["*".parse().unwrap()];
    let open = TestServer::memory(config);
    assert!(allowed(&from_origin(open.addr, "OPTIONS", "https://anyone.example"), "*"));
    assert!(allowed(&from_origin(open.addr, "POST", "https://anyone.example"), "*"));
}

#[test]
fn cors_origins_are_checked_when_given() {
    use wormhole_sync_server::CorsOrigin;
    for bad in ["app.example", "https://app.example/", "https://app.example/path", "ftp://app.example", "https://", ""]
    {
        assert!(bad.parse::<CorsOrigin>().is_err(), "{bad:?}");
    }
    assert_eq!("HTTPS://App.Example".parse::<CorsOrigin>().unwrap().to_string(), "https://app.example");
}
