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
//! - the server's memory per idle connected (bound) client, at each count
//!   asked for.
//!
//! ```sh
//! cargo run --release -p wormhole-sync-bench --bin wormhole-sync-mailbox-load -- --reference-venv /tmp/mw
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
    #[arg(long)]
    reference_venv: Option<String>,
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

async fn pair(url: String, n: u64) -> Result<(), String> {
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
    b.send(json!({"type": "add", "phase": "pake", "body": "bb".repeat(40)})).await?;
    b.peer_message(&b_side).await?;
    a.peer_message(&a_side).await?;
    for (client, mailbox) in [(&mut a, &mailbox), (&mut b, &mailbox_b)] {
        client.send(json!({"type": "release", "nameplate": nameplate})).await?;
        client.expect("released").await?;
        client.send(json!({"type": "close", "mailbox": mailbox, "mood": "happy"})).await?;
        client.expect("closed").await?;
        let _ = client.socket.close(None).await;
    }
    Ok(())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(4000)
}

/// magic-wormhole's mailbox server, in a temporary directory.
struct Reference {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Reference {
    fn start(venv: &str) -> Result<(Reference, String), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let child = Command::new(format!("{venv}/bin/twist"))
            .args(["wormhole-mailbox", &format!("--port=tcp:{port}:interface=127.0.0.1")])
            .arg(format!("--channel-db={}", dir.path().join("channels.sqlite").display()))
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the reference server: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("the reference server did not listen within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok((Reference { child, _dir: dir }, format!("ws://127.0.0.1:{port}/v1")))
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let (reference, url, pid) = match (&args.reference_venv, &args.url) {
        (Some(venv), _) => match Reference::start(venv) {
            Ok((reference, url)) => {
                let pid = reference.child.id();
                (Some(reference), url, Some(pid))
            }
            Err(e) => {
                eprintln!("wormhole-sync-mailbox-load: {e}");
                return std::process::ExitCode::FAILURE;
            }
        },
        (None, Some(url)) => (None, url.clone(), args.server_pid),
        (None, None) => {
            eprintln!("wormhole-sync-mailbox-load: give --url or --reference-venv");
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
    let cpu = pid.map(proc::cpu_time);
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..args.in_flight)
        .map(|_| {
            let (next, failed, url, pairs) = (next.clone(), failed.clone(), url.to_string(), args.pairs);
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= pairs {
                        return;
                    }
                    if let Err(e) = pair(url.clone(), n).await {
                        if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("pair {n}: {e}");
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.map_err(|e| e.to_string())?;
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
