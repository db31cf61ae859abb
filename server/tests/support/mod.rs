//! Test support: a server on 127.0.0.1 with an OS-chosen port, a raw
//! HTTP/1.1 client (so malformed requests can be sent too), and a blocking
//! driver that runs a core `Exchange` against the server.

#![allow(dead_code)]

pub mod postgres;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use wormhole_sync_core::rendezvous::RendezvousSnapshot;
use wormhole_sync_core::{Exchange, Progress, Timestamp, TransportError};
use wormhole_sync_server::{BackgroundServer, ServerConfig, Storage};

/// A server on 127.0.0.1 with its own runtime.
pub struct TestServer {
    server: BackgroundServer,
    pub addr: SocketAddr,
    /// Dropped after the server: the database of a PostgreSQL-backed one.
    database: Option<postgres::Database>,
}

impl TestServer {
    /// A server whose state does not survive it: in memory, or, with
    /// `WORMHOLE_SYNC_TEST_STORAGE=postgres`, in a fresh PostgreSQL
    /// database (so the same tests check both).
    pub fn memory(config: ServerConfig) -> TestServer {
        if std::env::var("WORMHOLE_SYNC_TEST_STORAGE").is_ok_and(|s| s == "postgres") {
            let database = postgres::Database::create().expect("WORMHOLE_SYNC_TEST_POSTGRES names a cluster");
            let mut server = TestServer::postgres(config, &database.url);
            server.database = Some(database);
            return server;
        }
        TestServer::start(config, Storage::memory(), RendezvousSnapshot::new(Vec::new()), "127.0.0.1:0")
    }

    /// A server on a PostgreSQL database (which others may share).
    pub fn postgres(config: ServerConfig, url: &str) -> TestServer {
        let server = BackgroundServer::postgres("127.0.0.1:0".parse().unwrap(), config, url).expect("server starts");
        let addr = server.addr();
        TestServer { server, addr, database: None }
    }

    pub fn sqlite(config: ServerConfig, path: &std::path::Path, addr: &str) -> TestServer {
        let (storage, saved) = Storage::sqlite(path).expect("database opens");
        TestServer::start(config, storage, saved, addr)
    }

    fn start(config: ServerConfig, storage: Storage, saved: RendezvousSnapshot, addr: &str) -> TestServer {
        let server = BackgroundServer::start(addr.parse().unwrap(), config, storage, saved).expect("server starts");
        let addr = server.addr();
        TestServer { server, addr, database: None }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Graceful stop: waits until storage is flushed.
    pub fn stop(self) {
        self.server.stop();
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The stable error code of an error answer.
    pub fn error_code(&self) -> String {
        self.json()["error"].as_str().unwrap_or("<none>").to_string()
    }
}

/// Reads one response from a stream (Content-Length bodies only, as the server sends).
pub fn read_reply(stream: &mut TcpStream) -> std::io::Result<Reply> {
    let mut buffer = Vec::new();
    let mut byte = [0u8; 1];
    while !buffer.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        buffer.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buffer).to_string();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok(Reply { status, headers: head, body })
}

/// Sends raw bytes on a new connection and reads one response.
pub fn raw(addr: SocketAddr, request: &[u8]) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(90)))?;
    stream.write_all(request)?;
    read_reply(&mut stream)
}

/// Sends a request the server may answer before reading all of it (headers
/// over its limit): written from another thread, where a write the server's
/// close cuts short is no failure, while the reply is read here.
pub fn raw_cut_short(addr: SocketAddr, request: Vec<u8>) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(90)))?;
    let mut writer = stream.try_clone()?;
    let writing = std::thread::spawn(move || {
        let _ = writer.write_all(&request);
    });
    let reply = read_reply(&mut stream);
    let _ = writing.join();
    reply
}

/// A well-formed request.
pub fn request(method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(ct) = content_type {
        head += &format!("Content-Type: {ct}\r\n");
    }
    head += &format!("Content-Length: {}\r\n\r\n", body.len());
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// POSTs JSON to `path`.
pub fn post(addr: SocketAddr, path: &str, body: &Value) -> Reply {
    try_post(addr, path, body).expect("server answers")
}

/// POSTs JSON to `path`; an error if the server does not answer.
pub fn try_post(addr: SocketAddr, path: &str, body: &Value) -> std::io::Result<Reply> {
    let body = serde_json::to_vec(body).unwrap();
    raw(addr, &request("POST", path, Some("application/json"), &body))
}

/// GETs `path`.
pub fn get(addr: SocketAddr, path: &str) -> Reply {
    raw(addr, &request("GET", path, None, b"")).expect("server answers")
}

/// The value of one metric line (without labels, or with the exact label set).
pub fn metric(addr: SocketAddr, name: &str) -> f64 {
    let text = String::from_utf8(get(addr, "/metrics").body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// Waits until a long-poll is waiting on the server; panics after 20 s
/// rather than hanging the suite.
pub fn await_long_poll(addr: SocketAddr) {
    await_long_polls(addr, 1);
}

/// Waits until `count` long-polls are waiting on the server; panics after
/// 20 s rather than hanging the suite.
pub fn await_long_polls(addr: SocketAddr, count: u32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while metric(addr, "wormhole_longpolls_waiting") < f64::from(count) {
        assert!(std::time::Instant::now() < deadline, "no long-poll started waiting");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

pub fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// Sends the requests of `exchange` that are due now to `addr` (blocking,
/// one after the other); connection failures are reported as transport
/// errors. Requests that fall due meanwhile wait for the next call.
pub fn pump(exchange: &mut Exchange, addr: SocketAddr) {
    let due: Vec<_> = std::iter::from_fn(|| exchange.poll_transmit(now())).collect();
    for t in due {
        let bytes = request(t.method(), t.path(), Some("application/json"), &t.body());
        let answer = TcpStream::connect(addr).and_then(|mut stream| {
            stream.set_read_timeout(Some(t.timeout()))?;
            stream.write_all(&bytes)?;
            read_reply(&mut stream)
        });
        match answer {
            Ok(reply) => exchange.handle_response(now(), t.id(), reply.status, &reply.body),
            Err(e) => exchange.handle_transport_error(now(), t.id(), TransportError::new(e)),
        }
    }
}

/// Drives `exchange` against `addr`, keeping its news in `news`, until it is
/// finished or `until` says stop.
pub fn drive(exchange: &mut Exchange, news: &mut Progress, addr: SocketAddr, mut until: impl FnMut(&Progress) -> bool) {
    while !exchange.is_finished() && !until(news) {
        pump(exchange, addr);
        news.drain(exchange);
        exchange.handle_timeout(now());
        if let Some(wake) = exchange.poll_timeout() {
            let wait = wake.saturating_since(now()).min(Duration::from_millis(50));
            std::thread::sleep(wait);
        }
    }
}

/// A fresh secret seed.
pub fn seed() -> [u8; 32] {
    use rand_core::{OsRng, RngCore};
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    seed
}

/// The server binary with these arguments (storage, say) on 127.0.0.1 with
/// an OS-chosen port and the rate limits off; returns it, its address, and
/// every log line it prints (kept read, so it never blocks on a full pipe).
pub fn spawn_server(
    args: &[&std::ffi::OsStr],
    log_level: &str,
) -> (std::process::Child, SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wormhole-sync-server"))
        .args(["--listen", "127.0.0.1:0", "--rate-limit", "0", "--rate-limit-messages", "0"])
        .args(["--max-channels-per-address", "0"])
        .args(args)
        .env("RUST_LOG", log_level)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("server binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let first = lines.by_ref().map_while(Result::ok).find(|line| line.contains("listening on http://"));
    let first = first.expect("the server logs its address");
    let addr = first.split("listening on http://").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let log = std::sync::Arc::new(std::sync::Mutex::new(vec![first]));
    let sink = log.clone();
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| sink.lock().unwrap().push(l)));
    (child, addr.parse().unwrap(), log)
}

/// POSTs JSON as a reverse proxy forwards it for `client`.
pub fn post_as(addr: SocketAddr, client: &str, path: &str, body: &Value) -> Reply {
    let body = serde_json::to_vec(body).unwrap();
    let mut bytes = request("POST", path, Some("application/json"), &body);
    let head_end = bytes.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    bytes.splice(head_end..head_end, format!("X-Forwarded-For: {client}\r\n").into_bytes());
    raw(addr, &bytes).unwrap()
}

/// A whole exchange, its initiator on `a` and its receiver on `b`.
pub fn an_exchange(a: SocketAddr, b: SocketAddr) {
    let config = wormhole_sync_core::Config::new("example.com/counted").unwrap();
    let mut initiator = Exchange::initiator(config.clone(), b"one".to_vec(), seed()).unwrap();
    initiator.start(now());
    let mut news = Progress::default();
    drive(&mut initiator, &mut news, a, |n| n.code().is_some());
    let mut receiver = Exchange::receiver(config, news.code().unwrap().clone(), b"two".to_vec(), seed()).unwrap();
    receiver.start(now());
    let receiver = std::thread::spawn(move || {
        let mut news = Progress::default();
        drive(&mut receiver, &mut news, b, |_| false);
        news
    });
    drive(&mut initiator, &mut news, a, |_| false);
    assert_eq!(news.outcome(), Some(Ok(&b"two"[..])));
    assert_eq!(receiver.join().unwrap().outcome(), Some(Ok(&b"one"[..])));
}
