//! `wormhole-sync-mailbox-load`: a load generator speaking magic-wormhole's
//! mailbox protocol over WebSocket, to measure a mailbox server on
//! 127.0.0.1 (the reference one, which it can start itself, or any other).
//!
//! For each mailbox pair, two clients connect, bind, and go through the
//! protocol's happy path: one allocates and claims a nameplate, the other
//! claims it, both open the mailbox and add a message, each waits for the
//! other's, both release and close. It reports:
//!
//! - pairs per second with C pairs in flight, and the server's CPU per pair;
//! - the latency from one side's `add` to the other side's `message`, with
//!   one pair at a time and under that load;
//! - the server's memory per idle connected (bound) client, at each count
//!   asked for.
//!
//! ```sh
//! cargo run --release -p wormhole-sync-bench --bin wormhole-sync-mailbox-load -- --reference-venv /tmp/mw
//! cargo run --release -p wormhole-sync-bench --bin wormhole-sync-mailbox-load -- --ours target/release/wormhole-sync-server
//! ```

#[allow(dead_code)]
#[path = "proc.rs"]
mod proc;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser, Debug)]
#[command(version, about = "Load generator for magic-wormhole mailbox servers (WebSocket)")]
struct Args {
    /// The server's WebSocket URL, e.g. ws://127.0.0.1:4000/v1.
    #[arg(long, conflicts_with = "reference_venv")]
    url: Option<String>,
    /// Its process id, for CPU and memory figures.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Start magic-wormhole's reference mailbox server from this virtualenv.
    #[arg(long, conflicts_with = "ours")]
    reference_venv: Option<String>,
    /// Start this wormhole-sync-server binary (SQLite in a temporary
    /// directory, per-address limits off: every client is on 127.0.0.1).
    #[arg(long)]
    ours: Option<String>,
    /// Pairs run one at a time first, for the unloaded latency.
    #[arg(long, default_value_t = 200)]
    sequential: u64,
    /// Mailbox pairs to run.
    #[arg(long, default_value_t = 2_000)]
    pairs: u64,
    /// Pairs in flight at once.
    #[arg(long, default_value_t = 50)]
    in_flight: u64,
    /// Idle connected clients to measure memory with (repeat for several counts).
    #[arg(long, default_values_t = [1_000, 10_000])]
    idle: Vec<usize>,
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One client connection: sends frames with ids, reads frames by type.
struct Client {
    socket: Socket,
    next_id: u64,
}

impl Client {
    async fn connect(url: &str, side: &str) -> Result<Client, String> {
        let (socket, _) = tokio_tungstenite::connect_async(url).await.map_err(|e| format!("connect: {e}"))?;
        let mut client = Client { socket, next_id: 0 };
        client.expect("welcome").await?;
        client.send(json!({"type": "bind", "appid": "example.com/mailbox-load", "side": side})).await?;
        Ok(client)
    }

    async fn send(&mut self, mut frame: Value) -> Result<(), String> {
        self.next_id += 1;
        frame["id"] = json!(format!("{:04x}", self.next_id));
        self.socket.send(Message::text(frame.to_string())).await.map_err(|e| format!("send: {e}"))
    }

    /// The next frame of `kind`, skipping acks and others.
    async fn expect(&mut self, kind: &str) -> Result<Value, String> {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), self.socket.next())
                .await
                .map_err(|_| format!("no {kind} within 30 s"))?
                .ok_or_else(|| format!("closed before {kind}"))?
                .map_err(|e| format!("read: {e}"))?;
            let Message::Text(text) = frame else { continue };
            let value: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
            match value["type"].as_str() {
                Some(t) if t == kind => return Ok(value),
                Some("error") => return Err(format!("server error: {}", value["error"])),
                _ => {}
            }
        }
    }

    /// The next message added by another side.
    async fn peer_message(&mut self, me: &str) -> Result<Value, String> {
        loop {
            let message = self.expect("message").await?;
            if message["side"] != me {
                return Ok(message);
            }
        }
    }
}

/// Runs one pair; returns the latency from the second side's `add` to the
/// first side's `message`.
async fn pair(url: String, n: u64) -> Result<Duration, String> {
    let (a_side, b_side) = (format!("a{n:x}"), format!("b{n:x}"));
    let mut a = Client::connect(&url, &a_side).await?;
    a.send(json!({"type": "allocate"})).await?;
    let nameplate = a.expect("allocated").await?["nameplate"].clone();
    a.send(json!({"type": "claim", "nameplate": nameplate})).await?;
    let mailbox = a.expect("claimed").await?["mailbox"].clone();
    a.send(json!({"type": "open", "mailbox": mailbox})).await?;
    a.send(json!({"type": "add", "phase": "pake", "body": "aa".repeat(40)})).await?;
    let mut b = Client::connect(&url, &b_side).await?;
    b.send(json!({"type": "claim", "nameplate": nameplate})).await?;
    let mailbox_b = b.expect("claimed").await?["mailbox"].clone();
    b.send(json!({"type": "open", "mailbox": mailbox_b})).await?;
    let added = Instant::now();
    b.send(json!({"type": "add", "phase": "pake", "body": "bb".repeat(40)})).await?;
    a.peer_message(&a_side).await?;
    let latency = added.elapsed();
    b.peer_message(&b_side).await?;
    for (client, mailbox) in [(&mut a, &mailbox), (&mut b, &mailbox_b)] {
        client.send(json!({"type": "release", "nameplate": nameplate})).await?;
        client.expect("released").await?;
        client.send(json!({"type": "close", "mailbox": mailbox, "mood": "happy"})).await?;
        client.expect("closed").await?;
        let _ = client.socket.close(None).await;
    }
    Ok(latency)
}

/// "p50 1.2 ms, p99 3.4 ms, max 5.6 ms".
fn percentiles(latencies: &mut [Duration]) -> String {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    format!("p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms", at(0.5), at(0.99), at(1.0))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(4000)
}

/// A mailbox server this tool started, in a temporary directory.
struct Started {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Started {
    /// magic-wormhole's reference mailbox server from a virtualenv.
    fn reference(venv: &str) -> Result<(Started, String), String> {
        Started::spawn(|dir, port| {
            let mut command = Command::new(format!("{venv}/bin/twist"));
            command
                .args(["wormhole-mailbox", &format!("--port=tcp:{port}:interface=127.0.0.1")])
                .arg(format!("--channel-db={}", dir.join("channels.sqlite").display()));
            command
        })
    }

    /// This project's server binary, on SQLite.
    fn ours(binary: &str) -> Result<(Started, String), String> {
        // It runs in the temporary directory: a relative path must not change meaning.
        let binary = std::fs::canonicalize(binary).map_err(|e| format!("{binary}: {e}"))?;
        Started::spawn(|dir, port| {
            let mut command = Command::new(binary);
            command
                .args(["--listen", &format!("127.0.0.1:{port}"), "--db"])
                .arg(dir.join("rendezvous.sqlite3"))
                .args(["--rate-limit", "0", "--rate-limit-messages", "0", "--max-connections-per-address", "0"])
                .args(["--max-channels-per-address", "0"])
                .args(["--max-bytes-per-address", "0"]);
            command
        })
    }

    fn spawn(command: impl FnOnce(&std::path::Path, u16) -> Command) -> Result<(Started, String), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let child = command(dir.path(), port)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the server: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("the server did not listen within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok((Started { child, _dir: dir }, format!("ws://127.0.0.1:{port}/v1")))
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let started = match (&args.reference_venv, &args.ours) {
        (Some(venv), _) => Some(Started::reference(venv)),
        (None, Some(binary)) => Some(Started::ours(binary)),
        (None, None) => None,
    };
    let (reference, url, pid) = match (started, &args.url) {
        (Some(Ok((started, url))), _) => {
            let pid = started.child.id();
            (Some(started), url, Some(pid))
        }
        (Some(Err(e)), _) => {
            eprintln!("wormhole-sync-mailbox-load: {e}");
            return std::process::ExitCode::FAILURE;
        }
        (None, Some(url)) => (None, url.clone(), args.server_pid),
        (None, None) => {
            eprintln!("wormhole-sync-mailbox-load: give --url, --ours or --reference-venv");
            return std::process::ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    let result = runtime.block_on(measure(&args, &url, pid));
    drop(reference);
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wormhole-sync-mailbox-load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn measure(args: &Args, url: &str, pid: Option<u32>) -> Result<(), String> {
    println!("wormhole-sync-mailbox-load against {url}");
    for n in 0..20 {
        pair(url.to_string(), 1_000_000 + n).await?; // warm-up
    }
    let mut alone = Vec::new();
    for n in 0..args.sequential {
        alone.push(pair(url.to_string(), 2_000_000 + n).await?);
    }
    if !alone.is_empty() {
        println!("add -> message latency, one pair at a time: {}", percentiles(&mut alone));
    }
    let cpu = pid.map(proc::cpu_time);
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..args.in_flight)
        .map(|_| {
            let (next, failed, url, pairs) = (next.clone(), failed.clone(), url.to_string(), args.pairs);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= pairs {
                        return latencies;
                    }
                    match pair(url.clone(), n).await {
                        Ok(latency) => latencies.push(latency),
                        Err(e) => {
                            if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("pair {n}: {e}");
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let mut loaded = Vec::new();
    for worker in workers {
        loaded.extend(worker.await.map_err(|e| e.to_string())?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let failed = failed.load(Ordering::Relaxed);
    print!(
        "throughput, {} in flight: {:.0} mailbox pairs/s ({} pairs in {elapsed:.1} s, {failed} failed)",
        args.in_flight,
        args.pairs as f64 / elapsed,
        args.pairs
    );
    match (pid, cpu) {
        (Some(pid), Some(before)) => {
            let per = (proc::cpu_time(pid) - before).as_secs_f64() * 1e3 / args.pairs as f64;
            println!("; server CPU {per:.2} ms per pair");
        }
        _ => println!(),
    }
    if !loaded.is_empty() {
        println!("add -> message latency, {} in flight: {}", args.in_flight, percentiles(&mut loaded));
    }
    if failed > 0 {
        return Err(format!("{failed} of {} pairs failed", args.pairs));
    }
    let Some(pid) = pid else { return Ok(()) };
    for &count in &args.idle {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = proc::rss_bytes(pid);
        let mut clients = Vec::with_capacity(count);
        for n in 0..count {
            clients.push(Client::connect(url, &format!("idle{n:x}")).await?);
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let during = proc::rss_bytes(pid);
        println!(
            "idle, {count} bound clients: server memory {:.1} KiB per client (RSS {:.1} MiB before, {:.1} MiB with them)",
            during.saturating_sub(before) as f64 / count as f64 / 1024.0,
            before as f64 / f64::from(1 << 20),
            during as f64 / f64::from(1 << 20),
        );
        drop(clients);
    }
    Ok(())
}
