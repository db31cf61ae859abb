//! SQLite durability: a graceful restart in the middle of an exchange, a
//! `kill -9` under load, and SIGTERM answering long-polls.

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{drive, post, seed, try_post, TestServer};
use wormhole_sync_core::{Config, Exchange, Progress};
use wormhole_sync_server::ServerConfig;

fn quiet_config() -> ServerConfig {
    ServerConfig::default().without_rate_limits()
}

#[test]
fn an_exchange_survives_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rendezvous.sqlite3");
    let server = TestServer::sqlite(quiet_config(), &db, "127.0.0.1:0");
    let addr = server.addr;

    // The initiator holds its data until its verifier is confirmed, which
    // gives the test a fixed point in the middle of the exchange.
    let confirm = Config::new("example.com/restart").unwrap().with_verifier_confirmation(true);
    let mut initiator = Exchange::initiator(confirm, b"initiator's data".to_vec(), seed()).unwrap();
    initiator.start(support::now());
    let mut news = Progress::default();
    drive(&mut initiator, &mut news, addr, |n| n.code().is_some());
    let code = news.code().unwrap().clone();
    let receiver_config = Config::new("example.com/restart").unwrap();
    let mut receiver = Exchange::receiver(receiver_config, code, b"receiver's data".to_vec(), seed()).unwrap();
    receiver.start(support::now());
    let receiver = std::thread::spawn(move || {
        let mut news = Progress::default();
        drive(&mut receiver, &mut news, addr, |_| false);
        news
    });
    drive(&mut initiator, &mut news, addr, |n| n.verifier().is_some());

    // Restart on the same port and database while both sides wait.
    server.stop();
    std::thread::sleep(Duration::from_millis(300));
    let restarted = TestServer::sqlite(quiet_config(), &db, &addr.to_string());
    assert!(initiator.confirm_verifier(support::now(), true));
    drive(&mut initiator, &mut news, restarted.addr, |_| false);
    let receiver_news = receiver.join().unwrap();
    assert_eq!(news.outcome(), Some(Ok(&b"receiver's data"[..])));
    assert_eq!(receiver_news.outcome(), Some(Ok(&b"initiator's data"[..])));
    assert_eq!(support::metric(restarted.addr, "wormhole_channels_open"), 0.0);
}

#[test]
fn a_burned_channel_stays_burned_across_a_restart_and_its_messages_leave_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rendezvous.sqlite3");
    let server = TestServer::sqlite(quiet_config(), &db, "127.0.0.1:0");
    let a = server.addr;
    let ch = post(a, "/v1/allocate", &json!({"appid": "app", "side": "s1"})).json()["channel"].clone();
    post(a, "/v1/join", &json!({"appid": "app", "side": "guess", "channel": ch}));
    let secret = "c2VjcmV0LXBha2UtNDI=";
    post(a, "/v1/post", &json!({"appid": "app", "side": "s1", "channel": ch, "phase": "pake", "body": secret}));
    post(a, "/v1/close", &json!({"appid": "app", "side": "s1", "channel": ch, "mood": "scary"}));
    let last = post(a, "/v1/close", &json!({"appid": "app", "side": "guess", "channel": ch, "mood": "lonely"}));
    assert_eq!(last.json(), json!({"deleted": false}), "a burned channel is kept for its retention");
    server.stop();

    let connection = rusqlite::Connection::open(&db).unwrap();
    let messages: i64 = connection.query_row("SELECT count(*) FROM mailbox_messages", [], |row| row.get(0)).unwrap();
    assert_eq!(messages, 0, "the burned channel's log is gone from disk");
    drop(connection);
    let restarted = TestServer::sqlite(quiet_config(), &db, "127.0.0.1:0");
    let late = post(restarted.addr, "/v1/join", &json!({"appid": "app", "side": "honest", "channel": ch}));
    assert_eq!((late.status, late.error_code().as_str()), (410, "burned"));
}

/// The server binary on an OS-chosen port; returns it, its address, and
/// every log line it prints.
fn spawn_logged(db: &std::path::Path, log_level: &str) -> (Child, SocketAddr, Arc<Mutex<Vec<String>>>) {
    support::spawn_server(&["--db".as_ref(), db.as_os_str()], log_level)
}

fn spawn_binary(db: &std::path::Path) -> (Child, SocketAddr) {
    let (child, addr, _) = spawn_logged(db, "info");
    (child, addr)
}

#[test]
fn logs_never_contain_message_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr, log) = spawn_logged(&dir.path().join("rendezvous.sqlite3"), "trace");
    post(addr, "/v1/join", &json!({"appid": "app", "side": "s1", "channel": 1, "create": true}));
    let secret = "c2VjcmV0LWJvZHktOTE3Mw";
    post(addr, "/v1/post", &json!({"appid": "app", "side": "s1", "channel": 1, "phase": "data", "body": secret}));
    post(addr, "/v1/fetch", &json!({"appid": "app", "side": "s1", "channel": 1}));
    post(addr, "/v1/post", &json!({"appid": "app", "side": "s1", "channel": 1, "phase": "bad phase", "body": secret}));
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    let log = log.lock().unwrap();
    assert!(
        log.iter().any(|l| l.contains("route=\"post\"") || l.contains("route=post")),
        "requests are logged:\n{}",
        log.join("\n")
    );
    assert!(!log.iter().any(|l| l.contains(secret)), "a message body reached the log");
}

/// At the default level, one line per finished exchange (its last side
/// closed): the app id, the moods and the messages it held, never the sides
/// or a body; nothing while a side is still there.
#[test]
fn each_finished_exchange_logs_one_line_at_the_default_level() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr, log) = spawn_logged(&dir.path().join("rendezvous.sqlite3"), "info");
    let secret = "c2VjcmV0LWJvZHktNDIx";
    let channel = post(addr, "/v1/allocate", &json!({"appid": "example.com/log", "side": "sender-side"})).json()
        ["channel"]
        .clone();
    post(addr, "/v1/join", &json!({"appid": "example.com/log", "side": "receiver-side", "channel": channel}));
    let message =
        json!({"appid": "example.com/log", "side": "sender-side", "channel": channel, "phase": "0", "body": secret});
    assert_eq!(post(addr, "/v1/post", &message).status, 200);
    let close = |side: &str, mood: &str| {
        let body = json!({"appid": "example.com/log", "side": side, "channel": channel, "mood": mood});
        assert_eq!(post(addr, "/v1/close", &body).status, 200);
    };
    close("sender-side", "happy");
    let finished = |log: &Arc<Mutex<Vec<String>>>| {
        log.lock().unwrap().iter().filter(|l| l.contains("exchange finished")).cloned().collect::<Vec<_>>()
    };
    std::thread::sleep(Duration::from_millis(200));
    assert!(finished(&log).is_empty(), "one side is still there");
    close("receiver-side", "lonely");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while finished(&log).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let lines = finished(&log);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert!(line.contains("example.com/log") && line.contains("happy,lonely") && line.contains("messages=1"), "{line}");
    assert!(!line.contains(secret) && !line.contains("sender-side") && !line.contains("receiver-side"), "{line}");
}

#[test]
fn kill_9_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rendezvous.sqlite3");
    let (mut child, addr) = spawn_binary(&db);

    // Four writers allocate channels and post messages as fast as they can,
    // remembering every acknowledged post.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let side = format!("w{w}-{i}");
                    let allocated = try_post(addr, "/v1/allocate", &json!({"appid": "load", "side": side}));
                    let Some(channel) = allocated.ok().and_then(|r| r.json()["channel"].as_u64()) else {
                        break; // The server is gone.
                    };
                    let body = format!("message-{w}-{i}");
                    let message =
                        json!({"appid": "load", "side": side, "channel": channel, "phase": "data", "body": body});
                    if try_post(addr, "/v1/post", &message).is_ok_and(|r| r.status == 200) {
                        acknowledged.lock().unwrap().push((side, channel, body));
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let started = Instant::now();
    while acknowledged.lock().unwrap().len() < 200 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        let _ = writer.join();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 200, "only {} posts acknowledged", acknowledged.len());

    // The database is intact, opens, and holds every acknowledged message.
    let connection = rusqlite::Connection::open(&db).unwrap();
    let integrity: String = connection.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    drop(connection);
    let (mut child, addr) = spawn_binary(&db);
    for (side, channel, body) in &acknowledged {
        let reply = post(addr, "/v1/fetch", &json!({"appid": "load", "side": side, "channel": channel}));
        assert_eq!(reply.status, 200, "{side} lost its channel {channel}");
        assert_eq!(reply.json()["messages"][0]["body"], json!(body), "{side} lost its message");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn sigterm_answers_long_polls_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = spawn_binary(&dir.path().join("rendezvous.sqlite3"));
    post(addr, "/v1/join", &json!({"appid": "app", "side": "s1", "channel": 1, "create": true}));
    let waiting = std::thread::spawn(move || {
        let started = Instant::now();
        let reply = post(addr, "/v1/fetch", &json!({"appid": "app", "side": "s1", "channel": 1, "wait_ms": 60_000}));
        (reply, started.elapsed())
    });
    support::await_long_poll(addr);
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let (reply, elapsed) = waiting.join().unwrap();
    assert_eq!((reply.status, reply.json()["messages"].clone()), (200, json!([])));
    assert!(elapsed < Duration::from_secs(30), "the long-poll was not answered at shutdown: {elapsed:?}");
    let exit = wait_with_timeout(child, Duration::from_secs(30));
    assert_eq!(exit.map(|s| s.code()), Some(Some(0)));
}

fn wait_with_timeout(mut child: Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

/// Found by the `sqlite_file` fuzz target: a database cut to fewer bytes
/// than SQLite's header was taken for a new, empty one and would have been
/// written over. A cut or damaged database is refused with the reason.
#[test]
fn a_cut_or_damaged_database_is_refused_not_emptied() {
    use wormhole_sync_server::Storage;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rendezvous.sqlite3");
    let server = TestServer::sqlite(quiet_config(), &db, "127.0.0.1:0");
    let allocated = post(server.addr, "/v1/allocate", &json!({"appid": "example.com/cut", "side": "s1"}));
    assert_eq!(allocated.status, 200, "{:?}", allocated.json());
    server.stop();
    let whole = std::fs::read(&db).unwrap();
    assert!(whole.len() > 4096, "the database holds a page of data");

    std::fs::write(&db, &whole[..50]).unwrap();
    let refused = Storage::sqlite(&db).err().expect("a database cut to 50 bytes is refused");
    assert!(refused.to_string().contains("not an SQLite database"), "{refused}");
    assert_eq!(std::fs::read(&db).unwrap().len(), 50, "the cut file was left as it was");

    // The last page cut off: SQLite finds it (opening it, or checking it).
    std::fs::write(&db, &whole[..whole.len() - 4096]).unwrap();
    let refused = Storage::sqlite(&db).err().expect("a database missing a page is refused");
    let refused = wormhole_sync_server::Chain(&refused).to_string();
    assert!(refused.contains("damaged") || refused.contains("malformed"), "{refused}");

    std::fs::write(&db, &whole).unwrap();
    let (_storage, saved) = Storage::sqlite(&db).expect("the whole database loads");
    assert_eq!(saved.mailboxes.len(), 1);
}

/// A database that cannot be reached is named with the reason at the
/// bottom of the chain (the refused connection), not only the client
/// library's "error connecting to server".
#[test]
fn an_unreachable_database_is_refused_with_the_cause_at_the_bottom() {
    use wormhole_sync_server::{Chain, Storage};
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = format!("postgres://nobody@{closed}/nothing");
    let refused = runtime.block_on(Storage::postgres(&url)).err().expect("no database there");
    let message = Chain(&refused).to_string();
    assert!(message.starts_with("storage failed: cannot connect: "), "{message}");
    assert!(message.to_lowercase().contains("refused"), "{message}");
    assert_eq!(message.matches("refused").count(), 1, "each cause once: {message}");
    assert!(std::error::Error::source(&refused).is_some(), "the database client's error is kept as the source");
}

#[test]
fn a_spent_channel_id_stays_with_its_mailbox_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rendezvous.sqlite3");
    let server = TestServer::sqlite(quiet_config(), &db, "127.0.0.1:0");
    let a = server.addr;
    let allocated = post(a, "/v1/allocate", &json!({"appid": "app", "side": "s1"})).json();
    let (ch, mailbox) = (allocated["channel"].clone(), allocated["mailbox"].clone());
    post(a, "/v1/join", &json!({"appid": "app", "side": "s2", "channel": ch}));
    for side in ["s1", "s2"] {
        let body =
            json!({"appid": "app", "side": side, "channel": ch, "mailbox": mailbox, "phase": "pake", "body": side});
        assert_eq!(post(a, "/v1/post", &body).status, 200);
    }
    server.stop();
    let restarted = TestServer::sqlite(quiet_config(), &db, "127.0.0.1:0");
    let a = restarted.addr;
    assert_eq!(support::metric(a, "wormhole_nameplates_claimed"), 1.0, "the code stays spent");
    let stranger = post(a, "/v1/join", &json!({"appid": "app", "side": "s3", "channel": ch, "create": true}));
    assert_eq!(stranger.error_code(), "crowded");
    let by_mailbox = post(a, "/v1/fetch", &json!({"appid": "app", "side": "s1", "channel": ch, "mailbox": mailbox}));
    assert_eq!(by_mailbox.json()["messages"].as_array().map(Vec::len), Some(2));
    // Both close: kept, emptied, for the retention, across another restart.
    for side in ["s1", "s2"] {
        let close = json!({"appid": "app", "side": side, "channel": ch, "mailbox": mailbox, "mood": "happy"});
        assert_eq!(post(a, "/v1/close", &close).status, 200);
    }
    restarted.stop();
    let again = TestServer::sqlite(quiet_config(), &db, "127.0.0.1:0");
    let a = again.addr;
    assert_eq!(support::metric(a, "wormhole_channels_retained"), 1.0);
    assert_eq!(support::metric(a, "wormhole_messages_stored"), 0.0, "its log was dropped");
    let stranger = post(a, "/v1/join", &json!({"appid": "app", "side": "s3", "channel": ch, "create": true}));
    assert_eq!(stranger.error_code(), "crowded");
}
