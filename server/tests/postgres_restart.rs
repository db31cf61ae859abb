//! The database crashed (an immediate stop) and restarted under two instances: meanwhile they answer
//! `storage-unavailable` (and health checks fail), then recover by
//! themselves, with nothing acknowledged lost and wake-ups across
//! instances working again.
//!
//! This stops and starts the cluster `WORMHOLE_SYNC_TEST_POSTGRES_DIR`
//! names (made by `tools/postgres.sh start DIR`), so it is the only test
//! in its binary: cargo runs test binaries one at a time.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use support::postgres::Database;
use support::{get, post, try_post, TestServer};
use wormhole_sync_server::ServerConfig;

fn cluster_dir() -> Option<String> {
    match std::env::var("WORMHOLE_SYNC_TEST_POSTGRES_DIR") {
        Ok(dir) if !dir.is_empty() => Some(dir),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI must run the PostgreSQL restart test: set WORMHOLE_SYNC_TEST_POSTGRES_DIR (tools/postgres.sh)")
        }
        _ => {
            eprintln!(
                "SKIPPED: no restartable PostgreSQL cluster (WORMHOLE_SYNC_TEST_POSTGRES_DIR; see tools/postgres.sh)"
            );
            None
        }
    }
}

fn cluster(action: &str, dir: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/postgres.sh");
    let status = Command::new(script).args([action, dir]).stdout(std::process::Stdio::null()).status().unwrap();
    assert!(status.success(), "tools/postgres.sh {action} failed");
}

#[test]
fn instances_ride_out_a_database_restart_and_lose_nothing_acknowledged() {
    let Some(dir) = cluster_dir() else { return };
    let Some(database) = Database::create() else { return };
    let config = ServerConfig::default().without_rate_limits();
    let (a, b) = (TestServer::postgres(config.clone(), &database.url), TestServer::postgres(config, &database.url));
    let channel = post(a.addr, "/v1/allocate", &json!({"appid": "app", "side": "s1"})).json()["channel"].clone();
    post(b.addr, "/v1/join", &json!({"appid": "app", "side": "s2", "channel": channel}));
    let before = json!({"appid": "app", "side": "s1", "channel": channel, "phase": "one", "body": "acknowledged"});
    assert_eq!(post(a.addr, "/v1/post", &before).status, 200);

    // An immediate stop: the database recovers from its log at start, as after a crash.
    cluster("kill", &dir);
    for server in [&a, &b] {
        let fetch = json!({"appid": "app", "side": "s2", "channel": channel});
        let down = post(server.addr, "/v1/fetch", &fetch);
        assert_eq!((down.status, down.error_code().as_str()), (503, "storage-unavailable"), "{:?}", down.json());
        assert_eq!(get(server.addr, "/health").status, 503);
    }

    cluster("start", &dir);
    let started = Instant::now();
    let fetch = json!({"appid": "app", "side": "s2", "channel": channel});
    let recovered = loop {
        match try_post(b.addr, "/v1/fetch", &fetch) {
            Ok(reply) if reply.status == 200 => break reply,
            _ => {
                assert!(started.elapsed() < Duration::from_secs(20), "the instance did not recover");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    assert_eq!(recovered.json()["messages"][0]["body"], "acknowledged", "{:?}", recovered.json());
    assert_eq!(get(a.addr, "/health").status, 200);

    // Instance A listens for B's news again: its long-poll wakes on B's post.
    let waiting = std::thread::spawn({
        let (addr, channel) = (a.addr, channel.clone());
        move || {
            post(
                addr,
                "/v1/fetch",
                &json!({"appid": "app", "side": "s1", "channel": channel, "after": 1, "wait_ms": 20_000}),
            )
        }
    });
    support::await_long_poll(a.addr);
    // The listening connection comes back within its retry interval.
    std::thread::sleep(Duration::from_millis(1_500));
    let posted = Instant::now();
    let after = json!({"appid": "app", "side": "s2", "channel": channel, "phase": "two", "body": "after"});
    assert_eq!(post(b.addr, "/v1/post", &after).status, 200);
    let woken = waiting.join().unwrap();
    assert_eq!(woken.json()["messages"][0]["body"], "after", "{:?}", woken.json());
    assert!(posted.elapsed() < Duration::from_secs(5), "woken by its wait, not by the notification");
}
