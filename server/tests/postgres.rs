//! Several instances on one PostgreSQL database: exchanges that start on
//! one instance and finish on another (HTTP and the mailbox protocol),
//! allocation under concurrency, wake-ups across instances, expiry under
//! its lock, caps and budgets over the deployment, and an instance killed
//! with `kill -9` in the middle of an exchange.
//!
//! Each test makes its own database in the cluster `WORMHOLE_SYNC_TEST_POSTGRES`
//! names; without one they skip loudly (and fail under CI).

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::postgres::Database;
use support::{get, post, read_reply, request, seed, TestServer};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};
use wormhole_sync_core::rendezvous::{MailboxSnapshot, MemberSnapshot};
use wormhole_sync_core::wire::{MailboxId, Message as WireMessage};
use wormhole_sync_core::{ChannelId, Config, Exchange, Progress, TransportError};
use wormhole_sync_server::ServerConfig;

fn quiet_config() -> ServerConfig {
    ServerConfig::default().without_rate_limits()
}

/// `count` instances on one fresh database (`None`: skipped).
fn instances(count: usize, config: ServerConfig) -> Option<(Database, Vec<TestServer>)> {
    let database = Database::create()?;
    let servers = (0..count).map(|_| TestServer::postgres(config.clone(), &database.url)).collect();
    Some((database, servers))
}

#[test]
fn an_exchange_started_on_one_instance_finishes_on_another() {
    let Some((_database, servers)) = instances(2, quiet_config()) else { return };
    let (a, b) = (servers[0].addr, servers[1].addr);
    support::an_exchange(a, b);
    assert_eq!(support::metric(b, "wormhole_channels_open"), 0.0, "both closed: the channel is gone");
}

struct Ws {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
}

impl Ws {
    fn bound(addr: SocketAddr, side: &str) -> Ws {
        let (ws, _) = tungstenite::connect(format!("ws://{addr}/v1")).expect("the WebSocket handshake succeeds");
        if let MaybeTlsStream::Plain(stream) = ws.get_ref() {
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        }
        let mut client = Ws { ws };
        assert_eq!(client.recv()["type"], "welcome");
        assert_eq!(client.ask(json!({"type": "bind", "appid": "app", "side": side})), Value::Null);
        client
    }

    fn recv(&mut self) -> Value {
        loop {
            match self.ws.read().expect("a frame arrives in time") {
                Message::Text(text) => return serde_json::from_str(&text).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// Sends a frame; returns the answer after its `ack` (`Null` for
    /// frames with no answer).
    fn ask(&mut self, frame: Value) -> Value {
        let answers = matches!(frame["type"].as_str(), Some("allocate" | "claim" | "release" | "close" | "list"));
        self.ws.send(Message::text(frame.to_string())).unwrap();
        assert_eq!(self.recv()["type"], "ack");
        if answers {
            self.recv()
        } else {
            Value::Null
        }
    }

    /// The next message frame's (side, phase, body).
    fn message(&mut self) -> (String, String, String) {
        let m = self.recv();
        assert_eq!(m["type"], "message", "{m}");
        let text = |key: &str| m[key].as_str().unwrap().to_string();
        (text("side"), text("phase"), text("body"))
    }
}

#[test]
fn mailbox_protocol_sides_on_two_instances_hear_each_other() {
    let Some((_database, servers)) = instances(2, quiet_config()) else { return };
    let mut a = Ws::bound(servers[0].addr, "aaaa");
    let mut b = Ws::bound(servers[1].addr, "bbbb");
    let nameplate = a.ask(json!({"type": "allocate"}))["nameplate"].as_str().unwrap().to_string();
    let mailbox = a.ask(json!({"type": "claim", "nameplate": nameplate}))["mailbox"].clone();
    a.ask(json!({"type": "open", "mailbox": mailbox}));
    a.ask(json!({"type": "add", "phase": "pake", "body": "aa01"}));
    assert_eq!(a.message(), ("aaaa".into(), "pake".into(), "aa01".into()));

    let claimed = b.ask(json!({"type": "claim", "nameplate": nameplate}));
    assert_eq!(claimed["mailbox"], mailbox, "the nameplate leads to the same mailbox on the other instance");
    b.ask(json!({"type": "open", "mailbox": mailbox}));
    assert_eq!(b.message(), ("aaaa".into(), "pake".into(), "aa01".into()), "replayed on open");
    b.ask(json!({"type": "add", "phase": "pake", "body": "bb02"}));
    assert_eq!(b.message(), ("bbbb".into(), "pake".into(), "bb02".into()));
    // Pushed to the first instance's client by the other instance's notification.
    assert_eq!(a.message(), ("bbbb".into(), "pake".into(), "bb02".into()));

    // A third side is crowded out, whichever instance it asks.
    let mut c = Ws::bound(servers[0].addr, "cccc");
    let refused = c.ask(json!({"type": "claim", "nameplate": nameplate}));
    assert_eq!((refused["type"].as_str(), refused["error"].as_str()), (Some("error"), Some("crowded")));
    for (client, mood) in [(&mut a, "happy"), (&mut b, "happy")] {
        client.ask(json!({"type": "release"}));
        assert_eq!(client.ask(json!({"type": "close", "mood": mood}))["type"], "closed");
    }
    assert_eq!(support::metric(servers[0].addr, "wormhole_channels_open"), 0.0);
}

#[test]
fn a_woken_mailbox_connection_reads_the_announced_state_unless_news_came_without_one() {
    let Some((database, servers)) = instances(2, quiet_config()) else { return };
    let mut a = Ws::bound(servers[0].addr, "aaaa");
    let mut b = Ws::bound(servers[1].addr, "bbbb");
    let nameplate = a.ask(json!({"type": "allocate"}))["nameplate"].as_str().unwrap().to_string();
    let mailbox = a.ask(json!({"type": "claim", "nameplate": nameplate}))["mailbox"].as_str().unwrap().to_string();
    a.ask(json!({"type": "open", "mailbox": mailbox}));
    b.ask(json!({"type": "claim", "nameplate": nameplate}));
    b.ask(json!({"type": "open", "mailbox": mailbox}));
    let announced = || support::metric(servers[0].addr, "wormhole_websocket_announced_reads_total");
    let mut add = |body: &str| {
        b.ask(json!({"type": "add", "phase": body, "body": body}));
        assert_eq!(b.message(), ("bbbb".into(), body.into(), body.into()));
    };
    // The wake-ups of b's claim and open come and go first.
    std::thread::sleep(Duration::from_millis(300));
    let before = announced();
    add("b1");
    assert_eq!(a.message(), ("bbbb".into(), "b1".into(), "b1".into()));
    let after_state = announced();
    assert!(after_state > before, "the post's state was not read ({before} then {after_state})");

    // News without a state (a sweep's, or a state too long to send): the
    // state kept may lack its messages, so the connection reads the database.
    database.execute(&format!("SELECT pg_notify('wormhole_sync', '[\"app\", \"{mailbox}\"]')"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(announced(), after_state, "news without a state was answered from the state kept");
    add("b2");
    assert_eq!(a.message(), ("bbbb".into(), "b2".into(), "b2".into()));
    assert!(announced() > after_state, "once read, the next state is read again");
}

/// A wake-up whose news cannot be read at once (the database busy past the
/// operation timeout) is not lost: the connection reads again, and the
/// message reaches the waiting client without any frame from it.
#[test]
fn news_that_cannot_be_read_after_a_wake_up_is_read_again() {
    let Some((database, servers)) = instances(1, quiet_config()) else { return };
    let mut a = Ws::bound(servers[0].addr, "aaaa");
    let nameplate = a.ask(json!({"type": "allocate"}))["nameplate"].as_str().unwrap().to_string();
    let mailbox = a.ask(json!({"type": "claim", "nameplate": nameplate}))["mailbox"].as_str().unwrap().to_string();
    a.ask(json!({"type": "open", "mailbox": mailbox}));
    a.ask(json!({"type": "add", "phase": "pake", "body": "aa01"}));
    assert_eq!(a.message(), ("aaaa".into(), "pake".into(), "aa01".into()));

    // Another instance's message, stored; then its notification arrives
    // while nothing can read the mailboxes for longer than a read may take.
    database.execute(&format!(
        "INSERT INTO mailbox_messages (appid, mailbox, seq, side, phase, body) VALUES ('app', '{mailbox}', 2, 'bbbb', \
         'pake', 'bb02')"
    ));
    let held = Database::hold_lock(&database.url, "BEGIN; LOCK TABLE mailboxes IN ACCESS EXCLUSIVE MODE");
    database.execute(&format!("SELECT pg_notify('wormhole_sync', '[\"app\", \"{mailbox}\"]')"));
    std::thread::sleep(Duration::from_secs(11)); // the server's read times out after 10 s
    drop(held);
    assert_eq!(a.message(), ("bbbb".into(), "pake".into(), "bb02".into()));
}

#[test]
fn concurrent_allocations_on_three_instances_take_the_shortest_free_numbers_once_each() {
    let Some((_database, servers)) = instances(3, quiet_config()) else { return };
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    // 30 allocating clients at once, spread over the instances: 9 one-digit
    // numbers exist, so 9 get one and 21 get two digits, and none is shared.
    let clients: Vec<_> = (0..30)
        .map(|i| {
            let addr = addrs[i % addrs.len()];
            std::thread::spawn(move || {
                let reply = post(addr, "/v1/allocate", &json!({"appid": "app", "side": format!("side{i}")}));
                assert_eq!(reply.status, 200, "{:?}", reply.json());
                reply.json()["channel"].as_u64().unwrap()
            })
        })
        .collect();
    let numbers: Vec<u64> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let distinct: BTreeSet<u64> = numbers.iter().copied().collect();
    assert_eq!(distinct.len(), numbers.len(), "a number went to two initiators: {numbers:?}");
    assert_eq!(distinct.iter().filter(|n| **n <= 9).count(), 9, "not the shortest free: {numbers:?}");
    assert!(distinct.iter().all(|n| *n <= 99), "{numbers:?}");
    // The WebSocket front end allocates from the same numbers.
    let mut ws = Ws::bound(addrs[1], "wsside");
    let nameplate: u64 = ws.ask(json!({"type": "allocate"}))["nameplate"].as_str().unwrap().parse().unwrap();
    assert!((10..=99).contains(&nameplate) && !distinct.contains(&nameplate), "{nameplate}");
}

/// An app id that holds every number up to four digits and a third of the
/// five-digit ones (spent codes kept for the retention, as a busy app
/// does): allocations take free five-digit numbers, having checked a few
/// drawn numbers rather than read the 40,000 in use; and when the counts
/// say free four-digit numbers remain that do not, every number in use is
/// read instead and the answer is as right.
#[test]
fn allocations_beside_many_numbers_held_take_free_ones_of_the_shortest_length_even_with_counts_off() {
    let Some((database, servers)) = instances(1, quiet_config()) else { return };
    database.execute(
        "INSERT INTO mailboxes (appid, mailbox, nameplate, holds_nameplate, allocator, members, burned, tombstone,
                                last_activity)
         SELECT 'busy', 'held' || n, n, true, NULL, '[]', false, true, (extract(epoch FROM now()) * 1000)::BIGINT
         FROM generate_series(1, 99999) n WHERE n < 10000 OR n % 3 = 0",
    );
    assert_eq!(database.query_text("SELECT sum(nameplates) FROM wormhole_sync_usage WHERE key = '5:busy'"), "30000");
    let addr = servers[0].addr;
    let allocate = move |side: String| {
        let reply = post(addr, "/v1/allocate", &json!({"appid": "busy", "side": side}));
        assert_eq!(reply.status, 200, "{:?}", reply.json());
        reply.json()["channel"].as_u64().unwrap()
    };
    // Twenty at once, so batches hold several.
    let clients: Vec<_> = (0..20).map(|i| std::thread::spawn(move || allocate(format!("side{i}")))).collect();
    let mut given: BTreeSet<u64> = clients.into_iter().map(|client| client.join().unwrap()).collect();
    // The counts say no four-digit number is in use.
    database.execute("UPDATE wormhole_sync_usage SET nameplates = 0 WHERE scope = 'length' AND key = '4:busy'");
    for i in 0..5 {
        given.insert(allocate(format!("late{i}")));
    }
    assert_eq!(given.len(), 25, "a number went to two initiators: {given:?}");
    assert!(given.iter().all(|n| (10_000..=99_999).contains(n) && n % 3 != 0), "{given:?}");
}

#[test]
fn allocations_racing_on_one_and_two_instances_are_never_answered_storage_unavailable() {
    // Allocations of one app id racing each other used to pick the same free
    // number and fail on the unique index; after eight in a row the answer
    // was storage-unavailable, and /health turned 503. They now share
    // transactions, and a batch that lost a number to another runs again
    // and draws anew, so every one gets a number.
    let Some((_database, servers)) = instances(2, quiet_config()) else { return };
    for addrs in [vec![servers[0].addr], vec![servers[0].addr, servers[1].addr]] {
        let tag = addrs.len();
        let clients: Vec<_> = (0..40)
            .map(|i| {
                let addr = addrs[i % addrs.len()];
                std::thread::spawn(move || {
                    let sides = (0..25).map(|round| format!("side{tag}-{i}-{round}"));
                    let replies = sides.map(|side| post(addr, "/v1/allocate", &json!({"appid": "race", "side": side})));
                    replies.map(|reply| (reply.status, reply.json())).collect::<Vec<_>>()
                })
            })
            .collect();
        let replies: Vec<_> = clients.into_iter().flat_map(|client| client.join().unwrap()).collect();
        let refused: Vec<_> = replies.iter().filter(|(status, _)| *status != 200).collect();
        assert!(refused.is_empty(), "{} of {} allocations refused: {:?}", refused.len(), replies.len(), refused[0]);
        let numbers: BTreeSet<u64> = replies.iter().map(|(_, json)| json["channel"].as_u64().unwrap()).collect();
        assert_eq!(numbers.len(), replies.len(), "a number went to two initiators");
        for addr in &addrs {
            assert_eq!(get(*addr, "/health").status, 200, "contention is not an outage");
        }
    }
}

#[test]
fn a_mailbox_another_transaction_holds_delays_only_the_requests_that_name_it() {
    // An instance's batches skip the mailboxes another transaction holds
    // (another instance's batch, most often) and leave the requests that
    // name them for later, so the others are answered meanwhile.
    let Some((database, servers)) = instances(1, quiet_config()) else { return };
    let a = servers[0].addr;
    let channel = |appid: &str| {
        let channel = post(a, "/v1/allocate", &json!({"appid": appid, "side": "s1"})).json()["channel"].clone();
        assert_eq!(post(a, "/v1/join", &json!({"appid": appid, "side": "s2", "channel": channel})).status, 200);
        channel
    };
    let (held, free) = (channel("held"), channel("free"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let holder = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&database.url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client.batch_execute("BEGIN; SELECT 1 FROM mailboxes WHERE appid = 'held' FOR UPDATE").await.unwrap();
        client
    });
    let waiting = std::thread::spawn(move || {
        let body = json!({"appid": "held", "side": "s1", "channel": held, "phase": "p", "body": "late"});
        (post(a, "/v1/post", &body).status, Instant::now())
    });
    std::thread::sleep(Duration::from_millis(300));
    for phase in ["p1", "p2", "p3"] {
        let started = Instant::now();
        let body = json!({"appid": "free", "side": "s1", "channel": free, "phase": phase, "body": "on time"});
        assert_eq!(post(a, "/v1/post", &body).status, 200);
        assert!(started.elapsed() < Duration::from_secs(2), "a free mailbox waited {:?}", started.elapsed());
    }
    assert!(!waiting.is_finished(), "the held mailbox was written while another transaction held it");
    let released = Instant::now();
    runtime.block_on(holder.batch_execute("COMMIT")).unwrap();
    let (status, answered) = waiting.join().unwrap();
    assert_eq!(status, 200, "the held mailbox's request is answered once it is free");
    assert!(answered >= released);
}

#[test]
fn requests_on_one_mailbox_from_both_instances_commit_in_batches_without_conflicts() {
    // Both sides of an exchange write one mailbox at once, from two
    // instances: each instance's batch names the mailbox more than once, and
    // meets the other instance's commits on it. Every batch should commit
    // whole (a batch that fails runs one operation per transaction: right
    // answers, at many times the cost), and every message be there once.
    let (threads, posts) = (16, 8);
    let mut config = quiet_config();
    config.rendezvous.max_messages_per_channel = threads * posts;
    let Some((_database, servers)) = instances(2, config) else { return };
    let addrs: Vec<SocketAddr> = servers.iter().map(|server| server.addr).collect();
    let allocated = post(addrs[0], "/v1/allocate", &json!({"appid": "app", "side": "s1"})).json();
    let (channel, mailbox) = (allocated["channel"].clone(), allocated["mailbox"].clone());
    assert_eq!(post(addrs[1], "/v1/join", &json!({"appid": "app", "side": "s2", "channel": channel})).status, 200);
    let split = || {
        addrs
            .iter()
            .map(|&addr| {
                let text = String::from_utf8(get(addr, "/metrics").body).unwrap();
                assert!(text.contains("\nwormhole_storage_split_batches_total "), "no such metric in:\n{text}");
                support::metric(addr, "wormhole_storage_split_batches_total")
            })
            .sum::<f64>()
    };
    let before = split();
    let writers: Vec<_> = (0..threads)
        .map(|t| {
            let (addr, mailbox, channel) = (addrs[t % 2], mailbox.clone(), channel.clone());
            std::thread::spawn(move || {
                for i in 0..posts {
                    let side = if t % 4 < 2 { "s1" } else { "s2" };
                    let mut body = json!({"appid": "app", "side": side, "channel": channel, "phase": format!("{t}-{i}"), "body": "b"});
                    // Named by its channel, or by its mailbox too.
                    if i % 2 == 0 {
                        body["mailbox"] = mailbox.clone();
                    }
                    let reply = post(addr, "/v1/post", &body);
                    assert_eq!(reply.status, 200, "{:?}", reply.json());
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    assert_eq!(split() - before, 0.0, "batches ran again one operation at a time");
    let fetch = json!({"appid": "app", "side": "s1", "channel": channel, "mailbox": mailbox});
    let fetched = post(addrs[0], "/v1/fetch", &fetch).json();
    let messages = fetched["messages"].as_array().unwrap_or_else(|| panic!("{fetched}")).clone();
    let phases: BTreeSet<&str> = messages.iter().map(|m| m["phase"].as_str().unwrap()).collect();
    assert_eq!((messages.len(), phases.len()), (threads * posts, threads * posts), "each message once");
}

#[test]
fn a_long_poll_on_one_instance_is_woken_by_a_post_on_another() {
    let Some((_database, servers)) = instances(2, quiet_config()) else { return };
    let (a, b) = (servers[0].addr, servers[1].addr);
    let channel = post(a, "/v1/allocate", &json!({"appid": "app", "side": "s1"})).json()["channel"].clone();
    post(b, "/v1/join", &json!({"appid": "app", "side": "s2", "channel": channel}));
    let waiting = std::thread::spawn({
        let channel = channel.clone();
        move || {
            let fetch = json!({"appid": "app", "side": "s1", "channel": channel, "wait_ms": 30_000});
            let reply = post(a, "/v1/fetch", &fetch);
            (reply, Instant::now())
        }
    });
    support::await_long_poll(a);
    let posted = Instant::now();
    post(b, "/v1/post", &json!({"appid": "app", "side": "s2", "channel": channel, "phase": "p", "body": "news"}));
    let (reply, answered) = waiting.join().unwrap();
    assert_eq!(reply.json()["messages"][0]["body"], "news", "{:?}", reply.json());
    let latency = answered.duration_since(posted);
    assert!(latency < Duration::from_secs(5), "woken only after {latency:?}: by its wait, not the notification");
}

/// A long-poll woken by another instance's post answers from the state the
/// post's commit announced, without reading the database again; a state
/// it cannot trust (here of a mailbox made anew under the id, another
/// instance of it, holding a message this one does not) is not used: the
/// woken read goes to the database, finds no news, and waits on.
#[test]
fn a_woken_long_poll_answers_from_the_announced_state_only_when_it_is_of_the_mailbox_it_saw() {
    let Some((database, servers)) = instances(2, quiet_config()) else { return };
    let (a, b) = (servers[0].addr, servers[1].addr);
    let allocated = post(a, "/v1/allocate", &json!({"appid": "app", "side": "s1"})).json();
    let (channel, mailbox) = (allocated["channel"].clone(), allocated["mailbox"].as_str().unwrap().to_string());
    post(b, "/v1/join", &json!({"appid": "app", "side": "s2", "channel": channel}));
    let waiting = std::thread::spawn({
        let (channel, mailbox) = (channel.clone(), mailbox.clone());
        move || {
            let fetch =
                json!({"appid": "app", "side": "s1", "channel": channel, "mailbox": mailbox, "wait_ms": 30_000});
            post(a, "/v1/fetch", &fetch)
        }
    });
    support::await_long_poll(a);

    let instance: u64 =
        database.query_text(&format!("SELECT instance FROM mailboxes WHERE mailbox = '{mailbox}'")).parse().unwrap();
    let mut s1 = MemberSnapshot::new("s1", true, None);
    s1.released = true;
    let forged = MailboxSnapshot {
        appid: "app".into(),
        mailbox: MailboxId::new(mailbox.clone()).unwrap(),
        nameplate: ChannelId::new(channel.as_u64().unwrap() as u32),
        holds_nameplate: true,
        members: vec![s1, MemberSnapshot::new("s2", false, None)],
        messages: vec![WireMessage::new(1, "s2", "p", "forged")],
        burned: false,
        last_activity: support::now(),
    };
    let payload = serde_json::to_string(&("app", &mailbox, instance + 1, &forged)).unwrap();
    database.execute(&format!("SELECT pg_notify('wormhole_sync', '{}')", payload.replace('\'', "''")));
    std::thread::sleep(Duration::from_millis(500));
    assert!(!waiting.is_finished(), "answered from a state of another instance of the mailbox");

    post(b, "/v1/post", &json!({"appid": "app", "side": "s2", "channel": channel, "phase": "p", "body": "news"}));
    let reply = waiting.join().unwrap();
    assert_eq!(reply.json()["messages"][0]["body"], "news", "{:?}", reply.json());
    assert_eq!(support::metric(a, "wormhole_longpoll_announced_reads_total"), 1.0, "the post's state answered");
}

#[test]
fn a_batch_waits_for_its_turn_only_so_long_then_runs_beside_the_one_that_has_it() {
    // Batches take turns over the deployment on an advisory lock. One that
    // holds it and never ends (here this test; in life an instance stuck in
    // its transaction) delays other batches by the bounded wait, not more.
    let Some((database, servers)) = instances(2, quiet_config()) else { return };
    let held = Database::hold_lock(&database.url, "SELECT pg_advisory_lock(1465080142, 4)");
    for (i, server) in servers.iter().enumerate() {
        let started = Instant::now();
        let reply = post(server.addr, "/v1/allocate", &json!({"appid": "app", "side": format!("s{i}")}));
        assert_eq!(reply.status, 200, "{:?}", reply.json());
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(100), "answered in {waited:?}: the batch did not wait for its turn");
    }
    drop(held);
    assert_eq!(database.query_text("SELECT count(*) FROM mailboxes"), "2", "both batches committed");
    assert_eq!(post(servers[0].addr, "/v1/allocate", &json!({"appid": "app", "side": "later"})).status, 200);
    for server in &servers {
        assert_eq!(support::metric(server.addr, "wormhole_storage_missed_turns_total"), 1.0, "one turn missed each");
    }
}

#[test]
fn expiry_waits_for_the_sweep_lock_and_concurrent_sweeps_are_safe() {
    let mut config = quiet_config();
    config.rendezvous.channel_expiry = Duration::from_millis(200);
    config.sweep_interval = Duration::from_millis(100);
    let Some((database, servers)) = instances(2, config) else { return };
    // Another instance (this test) holds the sweep lock: nobody else sweeps.
    let held = Database::hold_lock(&database.url, "SELECT pg_advisory_lock(1465080142, 2)");
    for i in 0..5 {
        post(servers[i % 2].addr, "/v1/allocate", &json!({"appid": "app", "side": format!("s{i}")}));
    }
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(database.query_text("SELECT count(*) FROM mailboxes"), "5", "swept without the lock");
    drop(held);
    let started = Instant::now();
    while database.query_text("SELECT count(*) FROM mailboxes") != "0" {
        assert!(started.elapsed() < Duration::from_secs(10), "idle mailboxes were never swept");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Both instances kept sweeping every 100 ms meanwhile, and still serve.
    for server in &servers {
        assert_eq!(post(server.addr, "/v1/allocate", &json!({"appid": "app", "side": "later"})).status, 200);
    }
}

#[test]
fn caps_and_budgets_hold_over_the_deployment() {
    let mut config = quiet_config();
    config.rendezvous.max_channels_per_app = 2;
    config.max_bytes_per_app = 100;
    let Some((_database, servers)) = instances(2, config) else { return };
    let (a, b) = (servers[0].addr, servers[1].addr);
    let allocate = |addr, side: &str| post(addr, "/v1/allocate", &json!({"appid": "app", "side": side}));
    let first = allocate(a, "s1").json()["channel"].clone();
    let second = allocate(b, "s2").json()["channel"].clone();
    let third = allocate(a, "s3");
    assert_eq!((third.status, third.error_code().as_str()), (429, "too-many-channels"), "{:?}", third.json());
    let body = "x".repeat(60);
    let ok = post(a, "/v1/post", &json!({"appid": "app", "side": "s1", "channel": first, "phase": "p", "body": body}));
    assert_eq!(ok.status, 200);
    let over =
        post(b, "/v1/post", &json!({"appid": "app", "side": "s2", "channel": second, "phase": "p", "body": body}));
    assert_eq!(over.error_code(), "over-budget", "{:?}", over.json());
    // Refused means not stored: the other side of that channel sees nothing.
    let fetched = post(a, "/v1/fetch", &json!({"appid": "app", "side": "s2", "channel": second}));
    assert_eq!(fetched.json()["messages"], json!([]));
    // A finished exchange's channel, kept emptied for the retention (its code
    // is spent), no longer counts against the app's cap.
    assert_eq!(post(b, "/v1/join", &json!({"appid": "app", "side": "r1", "channel": first})).status, 200);
    for side in ["s1", "r1"] {
        let close = json!({"appid": "app", "side": side, "channel": first, "mood": "happy"});
        assert_eq!(post(a, "/v1/close", &close).json(), json!({"deleted": false}));
    }
    assert_eq!(allocate(b, "s4").status, 200);
    assert_eq!(allocate(a, "s5").error_code(), "too-many-channels");
}

/// When several caps refuse at once, the refusal is the one a single
/// server gives: a new app id past the cap on them comes first.
#[test]
fn a_new_app_id_past_its_cap_is_refused_before_the_other_caps() {
    let mut config = quiet_config();
    config.max_apps = 1;
    config.max_channels_per_address = 1;
    // The test's requests come through a "proxy" naming one client address.
    config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let Some((_database, servers)) = instances(2, config) else { return };
    let allocate = |addr, appid: &str, side: &str| {
        support::post_as(addr, "198.51.100.7", "/v1/allocate", &json!({"appid": appid, "side": side}))
    };
    assert_eq!(allocate(servers[0].addr, "first", "s1").status, 200);
    // This address holds its one channel too; the app id cap is named.
    let refused = allocate(servers[1].addr, "second", "s2");
    assert_eq!(refused.error_code(), "server-full", "{:?}", refused.json());
    assert!(refused.json()["message"].as_str().unwrap().contains("application ids"), "{:?}", refused.json());
    let refused = allocate(servers[1].addr, "first", "s3");
    assert_eq!(refused.error_code(), "too-many-client-channels", "{:?}", refused.json());
}

/// On PostgreSQL too, a finished exchange is one line of the instance that
/// ran its last close, once committed.
#[test]
fn a_finished_exchange_is_logged_once_by_the_instance_that_finished_it() {
    let Some(database) = Database::create() else { return };
    let (mut a, a_addr, a_log) = support::spawn_server(&["--postgres".as_ref(), database.url.as_ref()], "info");
    let (mut b, b_addr, b_log) = support::spawn_server(&["--postgres".as_ref(), database.url.as_ref()], "info");
    let channel = post(a_addr, "/v1/allocate", &json!({"appid": "app", "side": "s1"})).json()["channel"].clone();
    post(b_addr, "/v1/join", &json!({"appid": "app", "side": "s2", "channel": channel}));
    for (addr, side) in [(a_addr, "s1"), (b_addr, "s2")] {
        let close = json!({"appid": "app", "side": side, "channel": channel, "mood": "happy"});
        assert_eq!(post(addr, "/v1/close", &close).status, 200);
    }
    let finished = |log: &std::sync::Arc<std::sync::Mutex<Vec<String>>>| {
        log.lock().unwrap().iter().filter(|l| l.contains("exchange finished")).cloned().collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while finished(&b_log).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for child in [&mut a, &mut b] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert!(finished(&a_log).is_empty(), "{:?}", finished(&a_log));
    let lines = finished(&b_log);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("happy,happy") && lines[0].contains("messages=0"), "{}", lines[0]);
}

/// The server binary on a database, on an OS-chosen port, with a small
/// pool (`--postgres-pool`): the load of the tests that kill instances
/// shares three connections.
fn spawn_instance(url: &str) -> (Child, SocketAddr) {
    let args = ["--postgres".as_ref(), url.as_ref(), "--postgres-pool".as_ref(), "3".as_ref()];
    let (child, addr, _) = support::spawn_server(&args, "info");
    (child, addr)
}

#[test]
fn a_pool_too_small_for_a_batch_beside_a_read_is_refused_at_start() {
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_wormhole-sync-server"))
        .args(["--postgres", "postgres://nobody@127.0.0.1:1/none", "--postgres-pool", "1"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "a usage error");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("--postgres-pool") && said.contains("1 is not in 2.."), "{said}");
}

/// Sends the exchange's due requests as a load balancer would: to the
/// first instance that accepts the connection.
fn pump_any(exchange: &mut Exchange, instances: &[SocketAddr]) {
    let due: Vec<_> = std::iter::from_fn(|| exchange.poll_transmit(support::now())).collect();
    for t in due {
        let bytes = request(t.method(), t.path(), Some("application/json"), &t.body());
        let mut answer = Err(std::io::Error::other("no instance accepted the connection"));
        for addr in instances {
            let Ok(mut stream) = TcpStream::connect(addr) else { continue };
            answer = stream
                .set_read_timeout(Some(t.timeout()))
                .and_then(|()| stream.write_all(&bytes))
                .and_then(|()| read_reply(&mut stream));
            break;
        }
        match answer {
            Ok(reply) => exchange.handle_response(support::now(), t.id(), reply.status, &reply.body),
            Err(e) => exchange.handle_transport_error(support::now(), t.id(), TransportError::new(e)),
        }
    }
}

fn drive_any(
    exchange: &mut Exchange,
    news: &mut Progress,
    instances: &[SocketAddr],
    until: impl Fn(&Progress) -> bool,
) {
    let started = Instant::now();
    while !exchange.is_finished() && !until(news) {
        assert!(started.elapsed() < Duration::from_secs(60), "the exchange did not finish");
        pump_any(exchange, instances);
        news.drain(exchange);
        exchange.handle_timeout(support::now());
        if let Some(wake) = exchange.poll_timeout() {
            std::thread::sleep(wake.saturating_since(support::now()).min(Duration::from_millis(50)));
        }
    }
}

#[test]
fn an_instance_killed_mid_exchange_leaves_its_clients_to_another() {
    let Some(database) = Database::create() else { return };
    let (mut a, a_addr) = spawn_instance(&database.url);
    let (mut b, b_addr) = spawn_instance(&database.url);
    let config = Config::new("example.com/failover").unwrap().with_verifier_confirmation(true);
    let mut initiator = Exchange::initiator(config, b"initiator's data".to_vec(), seed()).unwrap();
    initiator.start(support::now());
    let mut news = Progress::default();
    // Both clients prefer instance A while it lives, as behind a load balancer.
    let both = [a_addr, b_addr];
    drive_any(&mut initiator, &mut news, &both, |n| n.code().is_some());
    let code = news.code().unwrap().clone();
    let receiver_config = Config::new("example.com/failover").unwrap();
    let mut receiver = Exchange::receiver(receiver_config, code, b"receiver's data".to_vec(), seed()).unwrap();
    receiver.start(support::now());
    let receiver = std::thread::spawn(move || {
        let mut news = Progress::default();
        drive_any(&mut receiver, &mut news, &both, |_| false);
        news
    });
    // The initiator waits for its person to confirm the verifier: A dies meanwhile,
    // with the receiver's long-poll on it.
    drive_any(&mut initiator, &mut news, &both, |n| n.verifier().is_some());
    a.kill().unwrap(); // SIGKILL
    a.wait().unwrap();
    assert!(initiator.confirm_verifier(support::now(), true));
    drive_any(&mut initiator, &mut news, &both, |_| false);
    let receiver_news = receiver.join().unwrap();
    assert_eq!(news.outcome(), Some(Ok(&b"receiver's data"[..])));
    assert_eq!(receiver_news.outcome(), Some(Ok(&b"initiator's data"[..])));
    b.kill().unwrap();
    b.wait().unwrap();
}

#[test]
fn kill_9_of_an_instance_under_load_loses_nothing_it_acknowledged() {
    let Some(database) = Database::create() else { return };
    let (mut a, a_addr) = spawn_instance(&database.url);
    let (mut b, b_addr) = spawn_instance(&database.url);
    // Four writers allocate channels and post on instance A as fast as they can,
    // remembering every acknowledged post, until A is killed under them.
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let acknowledged = acknowledged.clone();
            std::thread::spawn(move || {
                for i in 0.. {
                    let side = format!("w{w}-{i}");
                    let allocated = support::try_post(a_addr, "/v1/allocate", &json!({"appid": "load", "side": side}));
                    let Some(channel) = allocated.ok().and_then(|r| r.json()["channel"].as_u64()) else { break };
                    let body = format!("message-{w}-{i}");
                    let message =
                        json!({"appid": "load", "side": side, "channel": channel, "phase": "p", "body": body});
                    match support::try_post(a_addr, "/v1/post", &message) {
                        Ok(reply) if reply.status == 200 => acknowledged.lock().unwrap().push((side, channel, body)),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    while acknowledged.lock().unwrap().len() < 100 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    a.kill().unwrap(); // SIGKILL
    a.wait().unwrap();
    for writer in writers {
        writer.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 100, "only {} posts acknowledged", acknowledged.len());
    for (side, channel, body) in &acknowledged {
        let reply = post(b_addr, "/v1/fetch", &json!({"appid": "load", "side": side, "channel": channel}));
        assert_eq!(reply.status, 200, "{side} lost its channel {channel}");
        assert_eq!(reply.json()["messages"][0]["body"], json!(body), "{side} lost its message");
    }
    b.kill().unwrap();
    b.wait().unwrap();
}

/// Where the usage counters (what caps, budgets and metrics read) differ
/// from what the tables hold, one line each: empty when they agree.
const USAGE_MISMATCHES: &str = "
    WITH usage AS (SELECT scope, key, sum(mailboxes)::BIGINT AS mailboxes, sum(tombstones)::BIGINT AS tombstones,
                          sum(nameplates)::BIGINT AS nameplates, sum(messages)::BIGINT AS messages,
                          sum(bytes)::BIGINT AS bytes, sum(apps)::BIGINT AS apps, sum(posters)::BIGINT AS posters
                   FROM wormhole_sync_usage GROUP BY scope, key),
         server AS (SELECT sum(mailboxes) AS mailboxes, sum(tombstones) AS tombstones, sum(nameplates) AS nameplates,
                           sum(messages) AS messages, sum(bytes) AS bytes, sum(apps) AS apps, sum(posters) AS posters
                    FROM usage WHERE scope IN ('server', 'gone')),
         compared(what, counted, stored) AS (
             SELECT 'mailboxes', (SELECT mailboxes FROM server), (SELECT count(*) FROM mailboxes)
             UNION ALL SELECT 'tombstones', (SELECT tombstones FROM server),
                              (SELECT count(*) FROM mailboxes WHERE tombstone)
             UNION ALL SELECT 'nameplates', (SELECT nameplates FROM server),
                              (SELECT count(*) FROM mailboxes WHERE holds_nameplate)
             UNION ALL SELECT 'apps', (SELECT apps FROM server), (SELECT count(*) FROM wormhole_sync_apps)
             UNION ALL SELECT 'messages', (SELECT messages FROM server), (SELECT count(*) FROM mailbox_messages)
             UNION ALL SELECT 'bytes', (SELECT bytes FROM server),
                              (SELECT coalesce(sum(octet_length(body)), 0) FROM mailbox_messages)
             UNION ALL SELECT 'posters', (SELECT posters FROM server), (SELECT count(*) FROM wormhole_sync_posters)
             UNION ALL SELECT 'app ids without a row', 0,
                              (SELECT count(DISTINCT appid) FROM mailboxes
                               WHERE appid NOT IN (SELECT appid FROM wormhole_sync_apps))
             UNION ALL SELECT 'addresses without a row', 0,
                              (SELECT count(DISTINCT poster) FROM mailbox_messages
                               WHERE poster NOT IN (SELECT poster FROM wormhole_sync_posters))
             UNION ALL SELECT 'app ' || coalesce(u.key, s.appid), coalesce(u.mailboxes, 0), coalesce(s.n, 0)
                 FROM (SELECT * FROM usage WHERE scope = 'app') u
                 FULL JOIN (SELECT appid, count(*) AS n FROM mailboxes GROUP BY appid) s ON s.appid = u.key
             UNION ALL SELECT 'app tombstones ' || coalesce(u.key, s.appid), coalesce(u.tombstones, 0), coalesce(s.n, 0)
                 FROM (SELECT * FROM usage WHERE scope = 'app') u
                 FULL JOIN (SELECT appid, count(*) FILTER (WHERE tombstone) AS n FROM mailboxes GROUP BY appid) s
                 ON s.appid = u.key
             UNION ALL SELECT 'app bytes ' || coalesce(u.key, s.appid), coalesce(u.bytes, 0), coalesce(s.n, 0)
                 FROM (SELECT * FROM usage WHERE scope = 'app') u
                 FULL JOIN (SELECT appid, sum(octet_length(body)) AS n FROM mailbox_messages GROUP BY appid) s
                 ON s.appid = u.key
             UNION ALL SELECT 'poster ' || coalesce(u.key, s.poster), coalesce(u.bytes, 0), coalesce(s.n, 0)
                 FROM (SELECT * FROM usage WHERE scope = 'poster') u
                 FULL JOIN (SELECT poster, sum(octet_length(body)) AS n FROM mailbox_messages
                            WHERE poster IS NOT NULL GROUP BY poster) s ON s.poster = u.key
             UNION ALL SELECT 'maker ' || coalesce(u.key, s.maker), coalesce(u.mailboxes - u.tombstones, 0),
                              coalesce(s.n, 0)
                 FROM (SELECT * FROM usage WHERE scope = 'maker') u
                 FULL JOIN (SELECT maker, count(*) FILTER (WHERE NOT tombstone) AS n FROM mailboxes
                            WHERE maker IS NOT NULL GROUP BY maker) s ON s.maker = u.key
             UNION ALL SELECT 'length ' || coalesce(u.key, s.key), coalesce(u.nameplates, 0), coalesce(s.n, 0)
                 FROM (SELECT * FROM usage WHERE scope = 'length') u
                 FULL JOIN (SELECT length(nameplate::TEXT) || ':' || appid AS key, count(*) AS n FROM mailboxes
                            WHERE holds_nameplate GROUP BY 1) s ON s.key = u.key)
    SELECT coalesce(string_agg(what || ': counted ' || coalesce(counted::TEXT, 'nothing') || ', stored ' || stored,
                               '; ' ORDER BY what), '')
    FROM compared WHERE coalesce(counted, 0) <> stored";

/// A request from `client`, as a trusted proxy on loopback forwards it.
fn post_from(addr: SocketAddr, client: &str, path: &str, body: &Value) -> support::Reply {
    let body = serde_json::to_vec(body).unwrap();
    let mut bytes = request("POST", path, Some("application/json"), &body);
    let head_end = bytes.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    bytes.splice(head_end..head_end, format!("X-Forwarded-For: {client}\r\n").into_bytes());
    support::raw(addr, &bytes).unwrap()
}

#[test]
fn usage_counters_follow_every_change_and_the_sweep_clears_them() {
    let mut config = quiet_config();
    config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    config.rendezvous.channel_expiry = Duration::from_secs(3);
    config.rendezvous.burned_retention = Duration::from_secs(3);
    config.sweep_interval = Duration::from_millis(200);
    let Some((database, servers)) = instances(2, config) else { return };
    let at = |i: usize| servers[i % 2].addr;
    let client = |i: usize| format!("203.0.113.{}", i % 3);
    let mut channels = Vec::new();
    for i in 0..9 {
        let appid = ["app-a", "app-b", "app-c"][i % 3];
        let side = format!("i{i}");
        let allocated = post_from(at(i), &client(i), "/v1/allocate", &json!({"appid": appid, "side": side}));
        let channel = allocated.json()["channel"].clone();
        let message =
            json!({"appid": appid, "side": side, "channel": channel, "phase": "pake", "body": "ab".repeat(i + 1)});
        assert_eq!(post_from(at(i + 1), &client(i), "/v1/post", &message).status, 200);
        channels.push((appid, side, channel));
    }
    // Second sides in six channels; three of them end (both close), burn
    // (a scary close), or are left open.
    for (i, (appid, side, channel)) in channels.iter().enumerate().take(6) {
        let peer = format!("r{i}");
        let joined =
            post_from(at(i), &client(i + 1), "/v1/join", &json!({"appid": appid, "side": peer, "channel": channel}));
        assert_eq!(joined.status, 200, "{:?}", joined.json());
        let message =
            json!({"appid": appid, "side": peer, "channel": channel, "phase": "pake", "body": "cd".repeat(i + 2)});
        assert_eq!(post_from(at(i + 1), &client(i + 1), "/v1/post", &message).status, 200);
        let close = |side: &str, mood: &str| json!({"appid": appid, "side": side, "channel": channel, "mood": mood});
        match i % 3 {
            0 => {
                assert_eq!(post_from(at(i), &client(i), "/v1/close", &close(side, "happy")).status, 200);
                assert_eq!(post_from(at(i + 1), &client(i + 1), "/v1/close", &close(&peer, "happy")).status, 200);
            }
            1 => {
                assert_eq!(post_from(at(i), &client(i), "/v1/close", &close(side, "scary")).status, 200);
                assert_eq!(post_from(at(i), &client(i + 1), "/v1/close", &close(&peer, "lonely")).status, 200);
            }
            _ => {}
        }
    }
    // A whole exchange from loopback (charged to nobody) beside them.
    support::an_exchange(servers[0].addr, servers[1].addr);
    assert_eq!(database.query_text(USAGE_MISMATCHES), "");
    assert!(database.query_text("SELECT count(*) FROM mailboxes WHERE tombstone") != "0", "no tombstone was counted");
    assert!(support::metric(servers[0].addr, "wormhole_storing_clients") >= 1.0);
    let stored: f64 = database.query_text("SELECT sum(octet_length(body)) FROM mailbox_messages").parse().unwrap();
    assert_eq!(support::metric(servers[1].addr, "wormhole_stored_bytes"), stored, "metrics read the counters");

    // Everything expires: the counters return to zero, and the rows of app
    // ids and addresses that hold nothing are gone.
    let started = Instant::now();
    while database.query_text("SELECT count(*) FROM mailboxes") != "0" {
        assert!(started.elapsed() < Duration::from_secs(20), "idle mailboxes were never swept");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(database.query_text(USAGE_MISMATCHES), "");
    let unused = "SELECT (SELECT count(*) FROM wormhole_sync_usage WHERE scope NOT IN ('server', 'gone'))
                        + (SELECT count(*) FROM wormhole_sync_apps) + (SELECT count(*) FROM wormhole_sync_posters)";
    while database.query_text(unused) != "0" {
        assert!(started.elapsed() < Duration::from_secs(20), "counters of nothing were never deleted");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// However many addresses and counters hold nothing, each sweep looks at a
/// slice of them (so its cost does not grow with the database), and
/// sweeps in turn clear them all, leaving those still in use.
#[test]
fn sweeps_clear_unused_counters_a_slice_at_a_time_and_keep_those_in_use() {
    let mut config = quiet_config();
    config.sweep_interval = Duration::from_millis(100);
    let Some((database, _servers)) = instances(1, config) else { return };
    // 12,000 addresses whose counters sum to zero over two shards (more than
    // two slices), and one in their midst that still holds a message.
    database.execute(
        "INSERT INTO wormhole_sync_posters (poster)
             SELECT 'idle-' || lpad(i::TEXT, 5, '0') FROM generate_series(1, 12000) i;
         INSERT INTO wormhole_sync_usage (scope, key, shard, messages, bytes)
             SELECT 'poster', 'idle-' || lpad(i::TEXT, 5, '0'), s, 1 - 2 * s, 80 - 160 * s
             FROM generate_series(1, 12000) i, generate_series(0, 1) s;
         INSERT INTO wormhole_sync_posters (poster) VALUES ('idle-06000-in-use');
         INSERT INTO wormhole_sync_usage (scope, key, shard, messages, bytes)
             VALUES ('poster', 'idle-06000-in-use', 3, 1, 80), ('poster', 'idle-06000-in-use', 4, 1, 80)",
    );
    let idle = "SELECT (SELECT count(*) FROM wormhole_sync_usage WHERE key LIKE 'idle-_____')
                     + (SELECT count(*) FROM wormhole_sync_posters WHERE poster LIKE 'idle-_____')";
    let started = Instant::now();
    while database.query_text(idle) != "0" {
        assert!(started.elapsed() < Duration::from_secs(30), "unused counters were never all deleted");
        std::thread::sleep(Duration::from_millis(100));
    }
    let in_use = "SELECT (SELECT count(*) FROM wormhole_sync_usage WHERE key = 'idle-06000-in-use')
                       + (SELECT count(*) FROM wormhole_sync_posters WHERE poster = 'idle-06000-in-use')";
    assert_eq!(database.query_text(in_use), "3", "the address still holding messages keeps its rows");
}

#[test]
fn the_counters_migration_counts_what_an_older_version_stored() {
    let Some(database) = Database::create() else { return };
    database.execute(include_str!("../migrations/postgres/0001_mailboxes.sql"));
    database.execute(include_str!("../migrations/postgres/0002_mailbox_makers.sql"));
    database.execute(
        "CREATE TABLE wormhole_sync_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
         INSERT INTO wormhole_sync_migrations (version) VALUES (1), (2);
         INSERT INTO mailboxes (appid, mailbox, nameplate, holds_nameplate, allocator, members, burned, tombstone,
                                last_activity, maker)
         SELECT 'app' || (i % 4), 'm' || i, i, i % 3 <> 0, NULL, '[]', i % 5 = 0, i % 5 = 0,
                (extract(epoch FROM now()) * 1000)::BIGINT, CASE WHEN i % 2 = 0 THEN '198.51.100.' || (i % 7) END
         FROM generate_series(1, 60) i;
         INSERT INTO mailbox_messages (appid, mailbox, seq, side, phase, body, poster)
         SELECT 'app' || (i % 4), 'm' || i, s, 'side' || s, 'p' || s, repeat('ab', i + s),
                CASE WHEN s = 0 THEN '192.0.2.' || (i % 9) END
         FROM generate_series(1, 60) i, generate_series(0, 2) s WHERE i % 5 <> 0;",
    );
    let server = TestServer::postgres(quiet_config(), &database.url);
    assert_eq!(database.query_text("SELECT max(version) FROM wormhole_sync_migrations"), "6");
    assert_eq!(database.query_text("SELECT count(DISTINCT key) FROM wormhole_sync_usage WHERE scope = 'maker'"), "7");
    assert_eq!(database.query_text(USAGE_MISMATCHES), "");
    assert_eq!(support::metric(server.addr, "wormhole_channels_retained"), 12.0);
}
