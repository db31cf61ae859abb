//! The mailbox protocol (magic-wormhole's WebSocket front end on `/v1`):
//! every frame acknowledged, the reference server's refusals word for word,
//! messages pushed to every listener, replays on reopen, and one state
//! shared with the HTTP API (nameplates, burning, budgets, durability).

mod support;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{metric, post, TestServer};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};
use wormhole_sync_server::ServerConfig;

const APP: &str = "lothar.com/wormhole/text-or-file-xfer";

fn quiet_config() -> ServerConfig {
    ServerConfig { motd: Some("be kind".into()), ..ServerConfig::default().without_rate_limits() }
}

struct Client {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Connects and returns the `welcome` frame too.
    fn connect(server: &TestServer) -> (Client, Value) {
        let url = format!("ws://{}/v1", server.addr);
        let (ws, _) = tungstenite::connect(url).expect("the WebSocket handshake succeeds");
        if let MaybeTlsStream::Plain(stream) = ws.get_ref() {
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        }
        let mut client = Client { ws };
        let welcome = client.recv();
        (client, welcome)
    }

    /// Connected and bound as `side`.
    fn bound(server: &TestServer, side: &str) -> Client {
        let (mut client, _) = Client::connect(server);
        client.send(json!({"type": "bind", "appid": APP, "side": side, "client_version": ["python", "0.24.0"]}));
        assert_eq!(client.recv()["type"], "ack");
        client
    }

    fn send(&mut self, frame: Value) {
        self.ws.send(Message::text(frame.to_string())).unwrap();
    }

    fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::text(text)).unwrap();
    }

    /// The next text frame, as JSON.
    fn recv(&mut self) -> Value {
        loop {
            match self.ws.read().expect("a frame arrives in time") {
                Message::Text(text) => return serde_json::from_str(&text).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// Sends a frame, checks its `ack`, and returns the frame after it.
    fn ask(&mut self, frame: Value) -> Value {
        self.send(frame);
        let ack = self.recv();
        assert_eq!(ack["type"], "ack", "{ack}");
        self.recv()
    }

    /// Sends a frame and returns the `error` after its `ack`.
    fn refused(&mut self, frame: Value) -> String {
        let answer = self.ask(frame.clone());
        assert_eq!(answer["type"], "error", "{answer}");
        assert_eq!(answer["orig"], frame);
        answer["error"].as_str().unwrap().to_string()
    }

    /// Allocates and claims a nameplate: it and its mailbox.
    fn allocate_and_claim(&mut self) -> (String, String) {
        let allocated = self.ask(json!({"type": "allocate"}));
        let nameplate = allocated["nameplate"].as_str().unwrap().to_string();
        let claimed = self.ask(json!({"type": "claim", "nameplate": nameplate}));
        (nameplate, claimed["mailbox"].as_str().unwrap().to_string())
    }

    /// Claims and opens a nameplate: its mailbox.
    fn claim_and_open(&mut self, nameplate: &str) -> String {
        let claimed = self.ask(json!({"type": "claim", "nameplate": nameplate}));
        assert_eq!(claimed["type"], "claimed", "{claimed}");
        let mailbox = claimed["mailbox"].as_str().unwrap().to_string();
        self.open(&mailbox);
        mailbox
    }

    fn open(&mut self, mailbox: &str) {
        self.send(json!({"type": "open", "mailbox": mailbox}));
        assert_eq!(self.recv()["type"], "ack");
    }

    fn add(&mut self, phase: &str, body: &str, id: &str) {
        self.send(json!({"type": "add", "phase": phase, "body": body, "id": id}));
        assert_eq!(self.recv()["type"], "ack");
    }

    fn message(&mut self) -> Value {
        let message = self.recv();
        assert_eq!(message["type"], "message", "{message}");
        message
    }
}

#[test]
fn every_frame_is_acknowledged_with_its_id_and_stamped() {
    let server = TestServer::memory(quiet_config());
    let (mut client, welcome) = Client::connect(&server);
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["welcome"], json!({"motd": "be kind"}));
    assert!(welcome["server_tx"].as_f64().is_some_and(|t| t > 1.6e9), "{welcome}");
    client.send(json!({"type": "ping", "ping": 7, "id": "abc"}));
    assert_eq!(client.recv()["id"], "abc");
    let pong = client.recv();
    assert_eq!((pong["type"].as_str(), pong["pong"].as_u64()), (Some("pong"), Some(7)));
    client.send(json!({"type": "ping", "ping": 8, "id": 12}));
    assert_eq!(client.recv()["id"], 12, "integer ids echo as integers");
    assert_eq!(metric(server.addr, "wormhole_websockets_open"), 1.0);
}

#[test]
fn refusals_read_as_the_reference_servers() {
    let server = TestServer::memory(quiet_config());
    let (mut client, _) = Client::connect(&server);
    // No `type`: an error and no ack, as the reference server does.
    client.send(json!({"id": "x"}));
    let answer = client.recv();
    assert_eq!((answer["type"].as_str(), answer["error"].as_str()), (Some("error"), Some("missing 'type'")));
    client.send_raw("not json");
    assert_eq!(client.recv()["error"], "message is not a JSON object");
    assert_eq!(client.refused(json!({"type": "allocate"})), "must bind first");
    assert_eq!(client.refused(json!({"type": "frobnicate"})), "unknown type");
    assert_eq!(client.refused(json!({"type": "bind", "appid": APP})), "bind requires 'side'");
    client.send(json!({"type": "bind", "appid": APP, "side": "aaaa"}));
    assert_eq!(client.recv()["type"], "ack");
    assert_eq!(client.refused(json!({"type": "bind", "appid": APP, "side": "bbbb"})), "already bound");
    assert_eq!(client.refused(json!({"type": "claim"})), "claim requires 'nameplate'");
    assert_eq!(client.refused(json!({"type": "release"})), "release without nameplate must follow claim");
    assert_eq!(client.refused(json!({"type": "close"})), "close without mailbox must follow open");
    assert_eq!(
        client.refused(json!({"type": "add", "phase": "pake", "body": "00"})),
        "must open mailbox before adding"
    );
    let (nameplate, mailbox) = client.allocate_and_claim();
    assert_eq!(client.refused(json!({"type": "allocate"})), "you already allocated one, don't be greedy");
    assert_eq!(client.refused(json!({"type": "claim", "nameplate": nameplate})), "only one claim per connection");
    let other = if nameplate == "1" { "2" } else { "1" };
    assert_eq!(
        client.refused(json!({"type": "release", "nameplate": other})),
        "release and claim must use same nameplate"
    );
    assert_eq!(client.ask(json!({"type": "release"}))["type"], "released");
    assert_eq!(client.refused(json!({"type": "release"})), "only one release per connection");
    client.open(&mailbox);
    assert_eq!(client.refused(json!({"type": "open", "mailbox": mailbox})), "only one open per connection");
    assert_eq!(
        client.refused(json!({"type": "close", "mailbox": "someotherbox"})),
        "open and close must use same mailbox"
    );
    assert_eq!(client.ask(json!({"type": "close", "mood": "happy"}))["type"], "closed");
    assert_eq!(client.refused(json!({"type": "close", "mood": "happy"})), "only one close per connection");
    // Nameplates this server cannot hold are refused, not taken for another.
    let mut typist = Client::bound(&server, "cccc");
    let refusal = typist.refused(json!({"type": "claim", "nameplate": "007"}));
    assert!(refusal.contains("numbers from 1 to"), "{refusal}");
}

#[test]
fn messages_are_pushed_to_every_listener_and_replayed_on_reopen() {
    let server = TestServer::memory(quiet_config());
    let mut sender = Client::bound(&server, "aaaa");
    let (nameplate, mailbox) = sender.allocate_and_claim();
    sender.open(&mailbox);
    sender.add("pake", "0a0b", "m1");
    // The sender hears its own message, with the reference server's fields.
    let echo = sender.message();
    assert_eq!(
        (echo["side"].as_str(), echo["phase"].as_str(), echo["body"].as_str()),
        (Some("aaaa"), Some("pake"), Some("0a0b"))
    );
    assert_eq!(echo["id"], "m1");
    let server_rx = echo["server_rx"].as_f64().unwrap();
    assert!(server_rx > 1.6e9 && server_rx <= echo["server_tx"].as_f64().unwrap(), "{echo}");

    // The receiver gets what was there when it opened, then each new message as it is added.
    let mut receiver = Client::bound(&server, "bbbb");
    assert_eq!(receiver.claim_and_open(&nameplate), mailbox);
    assert_eq!(receiver.message()["body"], "0a0b");
    assert_eq!(metric(server.addr, "wormhole_longpolls_waiting"), 0.0, "listeners are not long-polls");
    receiver.add("pake", "0c0d", "m2");
    assert_eq!(receiver.message()["side"], "bbbb");
    let pushed = sender.message();
    assert_eq!((pushed["side"].as_str(), pushed["body"].as_str()), (Some("bbbb"), Some("0c0d")));
    for side in [&mut sender, &mut receiver] {
        assert_eq!(side.ask(json!({"type": "release", "nameplate": nameplate}))["type"], "released");
    }
    assert_eq!(metric(server.addr, "wormhole_nameplates_claimed"), 1.0, "two sides used it: the number stays");

    // A reconnecting side reopens and gets everything again, in order.
    drop(receiver);
    let mut again = Client::bound(&server, "bbbb");
    again.open(&mailbox);
    let replayed: Vec<Value> = (0..2).map(|_| again.message()["body"].clone()).collect();
    assert_eq!(replayed, [json!("0a0b"), json!("0c0d")]);
    for side in [&mut sender, &mut again] {
        assert_eq!(side.ask(json!({"type": "close", "mailbox": mailbox, "mood": "happy"}))["type"], "closed");
    }
    assert_eq!(metric(server.addr, "wormhole_channels_open"), 0.0, "both closed: the mailbox is gone");
}

#[test]
fn a_third_side_is_crowded_out_and_a_released_claim_cannot_come_back() {
    let server = TestServer::memory(quiet_config());
    let mut first = Client::bound(&server, "aaaa");
    let (nameplate, mailbox) = first.allocate_and_claim();
    let mut second = Client::bound(&server, "bbbb");
    second.claim_and_open(&nameplate);
    let mut third = Client::bound(&server, "cccc");
    assert_eq!(third.refused(json!({"type": "claim", "nameplate": nameplate})), "crowded");
    let mut fourth = Client::bound(&server, "dddd");
    assert_eq!(fourth.refused(json!({"type": "open", "mailbox": mailbox})), "crowded");
    assert_eq!(second.ask(json!({"type": "release"}))["type"], "released");
    let mut second_again = Client::bound(&server, "bbbb");
    assert_eq!(second_again.refused(json!({"type": "claim", "nameplate": nameplate})), "reclaimed");
    // Both released: the nameplate two sides used is spent, not free for a new claim
    // (whoever took the second seat could otherwise wait there for the real receiver).
    assert_eq!(first.ask(json!({"type": "release"}))["type"], "released");
    let mut fifth = Client::bound(&server, "eeee");
    assert_eq!(fifth.refused(json!({"type": "claim", "nameplate": nameplate})), "crowded");
    let allocated = fifth.ask(json!({"type": "allocate"}));
    assert_ne!(allocated["nameplate"], json!(nameplate), "a spent nameplate was allocated again");
}

#[test]
fn listing_tells_nothing_of_which_nameplates_are_used_unless_allowed() {
    let server = TestServer::memory(quiet_config());
    let mut client = Client::bound(&server, "aaaa");
    assert_eq!(client.ask(json!({"type": "list"}))["nameplates"], json!([]), "nothing in use");
    let (nameplate, _) = client.allocate_and_claim();
    // Every one-digit number: a client that checks its nameplate is listed finds it,
    // and nobody learns which one is in use.
    let ids = |answer: Value| -> Vec<String> {
        answer["nameplates"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap().to_string()).collect()
    };
    let listed = ids(client.ask(json!({"type": "list"})));
    assert_eq!(listed, (1..=9).map(|n| n.to_string()).collect::<Vec<_>>());
    assert!(listed.contains(&nameplate));
    let mut other = Client::bound(&server, "bbbb");
    assert_eq!(other.ask(json!({"type": "claim", "nameplate": "77"}))["type"], "claimed");
    let listed = ids(client.ask(json!({"type": "list"})));
    assert_eq!(listed.len(), 9 + 90, "every one- and two-digit number");
    let open = TestServer::memory(ServerConfig { allow_list: true, ..quiet_config() });
    let mut client = Client::bound(&open, "aaaa");
    let (nameplate_here, _) = client.allocate_and_claim();
    assert_eq!(client.ask(json!({"type": "list"}))["nameplates"], json!([{"id": nameplate_here}]));
}

#[test]
fn both_front_ends_share_nameplates_and_a_wrong_code_burns_for_both() {
    let server = TestServer::memory(quiet_config());
    let a = server.addr;
    let mut numbers = std::collections::BTreeSet::new();
    // Each WebSocket client keeps its claim while its connection is open.
    let mut holders = Vec::new();
    for i in 0..4 {
        let allocated = post(a, "/v1/allocate", &json!({"appid": APP, "side": format!("h{i}")}));
        numbers.insert(allocated.json()["channel"].to_string().trim_matches('"').to_string());
        let mut client = Client::bound(&server, &format!("w{i}"));
        let allocated = client.ask(json!({"type": "allocate"}));
        assert!(numbers.insert(allocated["nameplate"].as_str().unwrap().to_string()), "a nameplate handed out twice");
        holders.push(client);
    }
    assert_eq!(numbers.len(), 8);

    // A scary close over WebSocket burns the nameplate for an HTTP join too.
    let mut initiator = Client::bound(&server, "good");
    let (nameplate, mailbox) = initiator.allocate_and_claim();
    let mut guesser = Client::bound(&server, "evil");
    guesser.claim_and_open(&nameplate);
    assert_eq!(initiator.ask(json!({"type": "close", "mailbox": mailbox, "mood": "scary"}))["type"], "closed");
    let late =
        post(a, "/v1/join", &json!({"appid": APP, "side": "honest", "channel": nameplate.parse::<u32>().unwrap()}));
    assert_eq!((late.status, late.error_code().as_str()), (410, "burned"));
    let mut late_ws = Client::bound(&server, "honest2");
    let refusal = late_ws.refused(json!({"type": "claim", "nameplate": nameplate}));
    assert!(refusal.starts_with("burned"), "{refusal}");
}

#[test]
fn messages_over_budget_are_refused() {
    let config = ServerConfig { max_bytes_per_app: 10, ..quiet_config() };
    let server = TestServer::memory(config);
    let mut client = Client::bound(&server, "aaaa");
    let (_, mailbox) = client.allocate_and_claim();
    client.open(&mailbox);
    client.add("pake", "00112233", "m1");
    assert_eq!(client.message()["body"], "00112233");
    let refusal = client.refused(json!({"type": "add", "phase": "version", "body": "0011223344"}));
    assert!(refusal.starts_with("over-budget"), "{refusal}");
    // The refusal charged nothing: only the first message's 8 bytes are held.
    assert_eq!(metric(server.addr, "wormhole_stored_bytes"), 8.0);
}

#[test]
fn what_was_added_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mailbox.sqlite3");
    let server = TestServer::sqlite(quiet_config(), &db, "127.0.0.1:0");
    let mut sender = Client::bound(&server, "aaaa");
    let (nameplate, mailbox) = sender.allocate_and_claim();
    sender.open(&mailbox);
    sender.add("pake", "abcd", "m1");
    assert_eq!(sender.message()["body"], "abcd");
    server.stop();
    let restarted = TestServer::sqlite(quiet_config(), &db, "127.0.0.1:0");
    let mut receiver = Client::bound(&restarted, "bbbb");
    assert_eq!(receiver.claim_and_open(&nameplate), mailbox);
    let message = receiver.message();
    assert_eq!(
        (message["side"].as_str(), message["body"].as_str(), message["id"].as_str()),
        (Some("aaaa"), Some("abcd"), Some("m1"))
    );
}

#[test]
fn silent_connections_are_closed_and_a_stopping_server_closes_the_rest() {
    let config = ServerConfig { websocket_idle_timeout: Duration::from_millis(600), ..quiet_config() };
    let server = TestServer::memory(config);
    // A client that reads nothing never answers a ping: it is closed.
    let (mut silent, _) = Client::connect(&server);
    std::thread::sleep(Duration::from_millis(1_500));
    let closed = loop {
        match silent.ws.read() {
            Ok(Message::Close(_)) | Err(_) => break true,
            Ok(_) => continue,
        }
    };
    assert!(closed);
    let (mut waiting, _) = Client::connect(&server);
    let started = Instant::now();
    let stopper = std::thread::spawn(move || server.stop());
    let closed = loop {
        match waiting.ws.read() {
            Ok(Message::Close(_)) | Err(_) => break true,
            Ok(_) => continue,
        }
    };
    assert!(closed && started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    stopper.join().unwrap();
}

#[test]
fn a_plain_get_of_the_endpoint_explains_itself() {
    let server = TestServer::memory(quiet_config());
    let reply = support::get(server.addr, "/v1");
    assert_eq!((reply.status, reply.error_code().as_str()), (400, "bad-request"));
    assert!(reply.json()["message"].as_str().unwrap().contains("WebSocket"));
}

#[test]
fn a_websocket_keeps_its_place_under_the_connection_caps() {
    let mut config = quiet_config();
    config.max_connections_per_address = 2;
    let server = TestServer::memory(config);
    let first = Client::bound(&server, "aaaa");
    let second = Client::bound(&server, "bbbb");
    // Both upgraded connections still count: a third connection is turned away.
    let refused = support::get(server.addr, "/health");
    assert_eq!((refused.status, refused.error_code().as_str()), (429, "rate-limited"));
    drop((first, second));
    let deadline = Instant::now() + Duration::from_secs(5);
    while support::get(server.addr, "/health").status != 200 {
        assert!(Instant::now() < deadline, "closing the WebSockets gave their places back");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_mailbox_does_not_expire_while_a_client_listens_to_it() {
    let mut config = ServerConfig { websocket_idle_timeout: Duration::from_millis(400), ..quiet_config() };
    config.rendezvous.channel_expiry = Duration::from_millis(1_000);
    config.sweep_interval = Duration::from_millis(100);
    let server = TestServer::memory(config);
    let mut listener = Client::bound(&server, "aaaa");
    let (_, mailbox) = listener.allocate_and_claim();
    listener.open(&mailbox);
    // Reading answers the server's pings (every 200 ms here), which keep the mailbox.
    if let MaybeTlsStream::Plain(stream) = listener.ws.get_ref() {
        stream.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    }
    let until = Instant::now() + Duration::from_millis(2_500);
    while Instant::now() < until {
        let _ = listener.ws.read();
    }
    assert_eq!(metric(server.addr, "wormhole_channels_open"), 1.0, "kept while its client listens");
    drop(listener);
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(server.addr, "wormhole_channels_open") != 0.0 {
        assert!(Instant::now() < deadline, "expired once nobody listens");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The cap on one client's channels holds for claims and opens that make
/// channels, and not for entering channels others made.
#[test]
fn claims_that_make_channels_count_against_the_clients_cap() {
    let server = TestServer::memory(ServerConfig { max_channels_per_address: 2, ..quiet_config() });
    let mut first = Client::bound(&server, "aaaa");
    let (nameplate, _) = first.allocate_and_claim();
    let mut second = Client::bound(&server, "bbbb");
    second.claim_and_open("42");
    let mut third = Client::bound(&server, "cccc");
    assert!(third.refused(json!({"type": "claim", "nameplate": "43"})).starts_with("too-many-client-channels"));
    let mut fourth = Client::bound(&server, "dddd");
    assert!(fourth.refused(json!({"type": "open", "mailbox": "newmailbox"})).starts_with("too-many-client-channels"));
    let mut fifth = Client::bound(&server, "eeee");
    fifth.claim_and_open(&nameplate); // Another's channel: nothing new is made.
}

/// The cap on application ids is checked with the operation it guards, so
/// claims racing on many connections cannot pass it together.
#[test]
fn concurrent_claims_cannot_pass_the_application_id_cap_together() {
    let server = TestServer::memory(ServerConfig { max_apps: 1, ..quiet_config() });
    let addr = server.addr;
    let claims: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let url = format!("ws://{addr}/v1");
                let (mut ws, _) = tungstenite::connect(url).unwrap();
                let recv = |ws: &mut WebSocket<MaybeTlsStream<TcpStream>>| loop {
                    if let Message::Text(text) = ws.read().unwrap() {
                        let frame: Value = serde_json::from_str(&text).unwrap();
                        if frame["type"] != "ack" {
                            return frame;
                        }
                    }
                };
                recv(&mut ws); // welcome
                let bind = json!({"type": "bind", "appid": format!("app{i}"), "side": format!("s{i}")});
                ws.send(Message::text(bind.to_string())).unwrap();
                ws.send(Message::text(json!({"type": "claim", "nameplate": "1"}).to_string())).unwrap();
                recv(&mut ws)["type"] == "claimed"
            })
        })
        .collect();
    let claimed = claims.into_iter().filter_map(|c| c.join().ok()).filter(|claimed| *claimed).count();
    assert_eq!(claimed, 1, "{claimed} application ids were made, past a cap of 1");
}
