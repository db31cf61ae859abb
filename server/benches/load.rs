//! Load generator: long-poll wake-up latency and message throughput of the
//! server on 127.0.0.1, with in-memory and SQLite storage.
//!
//! `cargo bench -p wormhole-sync-server --bench load` (set `LOAD_SECONDS`
//! to change each throughput run's length, default 5). Client and server
//! share the machine, so throughput figures include the client's own cost.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wormhole_sync_core::rendezvous::RendezvousSnapshot;
use wormhole_sync_server::{RunningServer, ServerConfig, Storage};

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    stream: TcpStream,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("server listens");
        stream.set_nodelay(true).unwrap();
        Conn { stream }
    }

    fn post(&mut self, path: &str, body: &str) -> (u16, String) {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.stream.write_all(head.as_bytes()).unwrap();
        self.stream.write_all(body.as_bytes()).unwrap();
        let mut buffer = Vec::with_capacity(512);
        let mut byte = [0u8; 1];
        while !buffer.ends_with(b"\r\n\r\n") {
            assert_eq!(self.stream.read(&mut byte).unwrap(), 1, "server closed the connection");
            buffer.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buffer).to_ascii_lowercase();
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let length = head.lines().find_map(|l| l.strip_prefix("content-length:")?.trim().parse().ok()).unwrap_or(0);
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn channel_of(answer: &str) -> u64 {
    let value: serde_json::Value = serde_json::from_str(answer).expect("json");
    value["channel"].as_u64().expect("allocated")
}

/// Time from sending a post to the waiting long-poll's answer arriving.
fn wake_up_latency(addr: SocketAddr, rounds: usize) {
    let mut wakes = Vec::with_capacity(rounds);
    let mut posts = Vec::with_capacity(rounds);
    let mut poster = Conn::open(addr);
    for round in 0..rounds {
        let (_, answer) = poster.post("/v1/allocate", &format!(r#"{{"appid":"wake","side":"p{round}"}}"#));
        let channel = channel_of(&answer);
        poster.post("/v1/join", &format!(r#"{{"appid":"wake","side":"w{round}","channel":{channel}}}"#));
        let waiter = std::thread::spawn(move || {
            let mut conn = Conn::open(addr);
            let body = format!(r#"{{"appid":"wake","side":"w{round}","channel":{channel},"wait_ms":10000}}"#);
            conn.post("/v1/fetch", &body);
            Instant::now()
        });
        std::thread::sleep(Duration::from_millis(5)); // let the fetch start waiting
        let sent = Instant::now();
        let body = format!(r#"{{"appid":"wake","side":"p{round}","channel":{channel},"phase":"x","body":"AAAA"}}"#);
        poster.post("/v1/post", &body);
        posts.push(sent.elapsed());
        wakes.push(waiter.join().unwrap().duration_since(sent));
        poster
            .post("/v1/close", &format!(r#"{{"appid":"wake","side":"p{round}","channel":{channel},"mood":"happy"}}"#));
    }
    wakes.sort();
    posts.sort();
    println!(
        "  long-poll wake-up after a post ({rounds} rounds): p50 {} p90 {} p99 {} max {}",
        micros(percentile(&wakes, 0.5)),
        micros(percentile(&wakes, 0.9)),
        micros(percentile(&wakes, 0.99)),
        micros(percentile(&wakes, 1.0))
    );
    println!(
        "  the post's own round trip, for comparison:      p50 {} p90 {} p99 {}",
        micros(percentile(&posts, 0.5)),
        micros(percentile(&posts, 0.9)),
        micros(percentile(&posts, 0.99))
    );
}

/// Clients each allocate a channel, post 10 messages and close it, in a loop.
fn throughput(addr: SocketAddr, clients: usize, seconds: u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let messages = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (stop, messages, requests) = (stop.clone(), messages.clone(), requests.clone());
            std::thread::spawn(move || {
                let mut conn = Conn::open(addr);
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let side = format!("c{c}r{round}");
                    let (_, answer) = conn.post("/v1/allocate", &format!(r#"{{"appid":"load","side":"{side}"}}"#));
                    let channel = channel_of(&answer);
                    for phase in 0..10 {
                        let body = format!(
                            r#"{{"appid":"load","side":"{side}","channel":{channel},"phase":"p{phase}","body":"{}"}}"#,
                            "A".repeat(64)
                        );
                        let (status, _) = conn.post("/v1/post", &body);
                        assert_eq!(status, 200);
                    }
                    conn.post(
                        "/v1/close",
                        &format!(r#"{{"appid":"load","side":"{side}","channel":{channel},"mood":"happy"}}"#),
                    );
                    messages.fetch_add(10, Ordering::Relaxed);
                    requests.fetch_add(12, Ordering::Relaxed);
                    round += 1;
                }
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "  {clients:>3} clients: {:>8.0} messages/s stored, {:>8.0} requests/s",
        messages.load(Ordering::Relaxed) as f64 / elapsed,
        requests.load(Ordering::Relaxed) as f64 / elapsed
    );
}

fn main() {
    let seconds = std::env::var("LOAD_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig::default().without_rate_limits();
    for kind in ["memory", "sqlite"] {
        let (storage, saved) = match kind {
            "memory" => (Storage::memory(), RendezvousSnapshot::new(Vec::new())),
            _ => Storage::sqlite(&dir.path().join("bench.sqlite3")).unwrap(),
        };
        let server = runtime
            .block_on(RunningServer::start("127.0.0.1:0".parse().unwrap(), config.clone(), storage, saved))
            .unwrap();
        println!("storage: {kind}");
        wake_up_latency(server.addr(), 300);
        for clients in [1, 8, 64] {
            throughput(server.addr(), clients, seconds);
        }
        runtime.block_on(server.stop());
    }
}
