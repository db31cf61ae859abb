//! `wormhole-sync-instances-load`: exchanges per second and wake-up latency
//! with 1, 2, 3... server instances sharing one PostgreSQL database, next to
//! one instance on SQLite.
//!
//! Each instance is the server binary in a process of its own on 127.0.0.1.
//! Exchange k's initiator talks to instance k mod N and its receiver to
//! instance k+1 mod N, so with two or more instances every exchange crosses
//! instances (as behind a load balancer that spreads clients). The wake-up
//! latency is the time from sending a post to one instance until a long-poll
//! waiting on another (the same one, with a single instance) is answered
//! with it. CPU is read from `/proc`: the instances', and the database's
//! (every process of the `postgres` user).
//!
//! ```sh
//! eval "$(tools/postgres.sh start /tmp/pg | sed 's/^/export /')"
//! cargo build --release -p wormhole-sync-server -p wormhole-sync-bench
//! target/release/wormhole-sync-instances-load --server target/release/wormhole-sync-server \
//!     --postgres "$WORMHOLE_SYNC_TEST_POSTGRES" --instances 1,2,3 --sqlite
//! ```

#[allow(dead_code)]
#[path = "proc.rs"]
mod proc;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};
use wormhole_sync_tokio::transcribe::{Initiator, Receiver};

const APPID: &str = "bench.example/instances";

#[derive(Parser, Debug)]
#[command(version, about = "Exchanges per second and wake-up latency over several instances on one PostgreSQL")]
struct Args {
    /// The server binary.
    #[arg(long, default_value = "target/release/wormhole-sync-server")]
    server: PathBuf,
    /// A database of the PostgreSQL cluster to use (each run makes a
    /// database of its own there, and drops it).
    #[arg(long)]
    postgres: Option<String>,
    /// Instance counts to measure on PostgreSQL.
    #[arg(long, value_delimiter = ',', default_values = ["1", "2", "3"])]
    instances: Vec<usize>,
    /// Also measure one instance on SQLite.
    #[arg(long)]
    sqlite: bool,
    /// Exchanges in flight in the throughput run.
    #[arg(long, default_value_t = 100)]
    in_flight: usize,
    /// Length of the throughput run, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Wake-ups measured, one after the other.
    #[arg(long, default_value_t = 200)]
    wakeups: usize,
    /// Messages stored in the PostgreSQL database before the run (two per
    /// channel of another app id, 80 bytes each, charged to 62,500 client
    /// addresses), to show what the cost of an operation owes to what is
    /// stored.
    #[arg(long, default_value_t = 0)]
    stored: u64,
    /// Allocations, posts and `/metrics` requests timed one by one, after
    /// the wake-ups.
    #[arg(long, default_value_t = 200)]
    timed: usize,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    println!(
        "wormhole-sync-instances-load on {} cores; {} in flight for {} s; {} wake-ups; {} messages stored beforehand",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        args.in_flight,
        args.seconds,
        args.wakeups,
        args.stored
    );
    let mut runs: Vec<Storage> = Vec::new();
    if args.sqlite {
        runs.push(Storage::Sqlite);
    }
    if let Some(url) = &args.postgres {
        runs.extend(args.instances.iter().map(|&n| Storage::Postgres { cluster: url.clone(), instances: n }));
    } else if !args.instances.is_empty() && !args.sqlite {
        eprintln!("wormhole-sync-instances-load: --postgres URL is needed (or --sqlite alone)");
        return std::process::ExitCode::FAILURE;
    }
    println!(
        "\n| storage | instances | exchanges/s | failed / storage-unavailable | instances' CPU per exchange | database CPU per exchange \
         | wake-up p50 / p99 / max | allocation p50 / p99 | post p50 / p99 | `/metrics` p50 / p99 |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for storage in runs {
        if let Err(e) = measure(&args, &storage) {
            eprintln!("wormhole-sync-instances-load: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    std::process::ExitCode::SUCCESS
}

enum Storage {
    Sqlite,
    Postgres { cluster: String, instances: usize },
}

/// Server processes, stopped when dropped.
struct Instances {
    children: Vec<Child>,
    addrs: Vec<SocketAddr>,
    _dir: tempfile::TempDir,
    /// `storage-unavailable` answers the instances logged.
    unavailable: Arc<AtomicU64>,
}

impl Drop for Instances {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts an instance; counts the `storage-unavailable` answers its log
/// reports in `unavailable`.
fn spawn(
    server: &PathBuf,
    storage: &[&str],
    dir: tempfile::TempDir,
    unavailable: &Arc<AtomicU64>,
) -> Result<(Child, SocketAddr, tempfile::TempDir), String> {
    let mut child = Command::new(server)
        .args(["--listen", "127.0.0.1:0", "--rate-limit", "0", "--rate-limit-messages", "0"])
        .args(["--max-channels-per-address", "0"])
        .args(["--max-connections-per-address", "0", "--max-bytes-per-address", "0"])
        .args(storage)
        .env("RUST_LOG", "warn,wormhole_sync_server::cli=info")
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", server.display()))?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let line = lines.by_ref().map_while(Result::ok).find(|l| l.contains("listening on http://"));
    let line = line.ok_or("the server did not start")?;
    let addr = line.split("listening on http://").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or("");
    let addr = addr.parse().map_err(|e| format!("{addr:?}: {e}"))?;
    let unavailable = unavailable.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if line.contains("answering storage-unavailable") {
                unavailable.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    Ok((child, addr, dir))
}

fn admin(cluster: &str, sql: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let (client, connection) =
            tokio_postgres::connect(cluster, tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
        let driver = tokio::spawn(connection);
        let done = client.batch_execute(sql).await.map_err(|e| format!("{sql}: {e:?}"));
        drop(client);
        let _ = driver.await;
        done
    })
}

fn database_url(cluster: &str, name: &str) -> String {
    let scheme_end = cluster.find("://").map_or(0, |i| i + 3);
    let base = match cluster[scheme_end..].find('/') {
        Some(slash) => &cluster[..scheme_end + slash],
        None => cluster,
    };
    format!("{base}/{name}")
}

fn start(args: &Args, storage: &Storage) -> Result<Instances, String> {
    let mut children = Vec::new();
    let mut addrs = Vec::new();
    let unavailable = Arc::new(AtomicU64::new(0));
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    match storage {
        Storage::Sqlite => {
            let db = dir.path().join("bench.sqlite3");
            let db = db.to_string_lossy().to_string();
            let (child, addr, dir) = spawn(&args.server, &["--db", &db], dir, &unavailable)?;
            return Ok(Instances { children: vec![child], addrs: vec![addr], _dir: dir, unavailable });
        }
        Storage::Postgres { cluster, instances } => {
            let name = format!("bench_{}", std::process::id());
            // Two statements: neither may run inside the transaction a batch would be.
            admin(cluster, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
            admin(cluster, &format!("CREATE DATABASE {name}"))?;
            let url = database_url(cluster, &name);
            for _ in 0..*instances {
                let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
                let (child, addr, _) = spawn(&args.server, &["--postgres", &url], scratch, &unavailable)?;
                children.push(child);
                addrs.push(addr);
            }
            // The first instance made the tables.
            store(&url, args.stored)?;
        }
    }
    Ok(Instances { children, addrs, _dir: dir, unavailable })
}

/// Stores `messages` messages straight into the database, in statements
/// of 10,000 (each its own transaction), as clients would have left them:
/// two per channel of another app id, recently active (so not expired).
fn store(url: &str, messages: u64) -> Result<(), String> {
    if messages == 0 {
        return Ok(());
    }
    let started = Instant::now();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?;
    let now = now.as_millis();
    let channels = messages.div_ceil(2);
    for first in (0..channels).step_by(5_000) {
        let last = (first + 5_000).min(channels) - 1;
        admin(
            url,
            &format!(
                "INSERT INTO mailboxes (appid, mailbox, nameplate, holds_nameplate, allocator, members, burned,
                                        tombstone, last_activity, maker)
                 SELECT 'bench.example/stored', 'stored' || i, NULL, false, NULL, '[]', false, false, {now},
                        '10.0.' || (i % 250) || '.' || (i / 250 % 250)
                 FROM generate_series({first}, {last}) i;
                 INSERT INTO mailbox_messages (appid, mailbox, seq, side, phase, body, server_rx, client_id, poster)
                 SELECT 'bench.example/stored', 'stored' || i, s, 'side' || s, 'pake', repeat('ab', 40), {now}, NULL,
                        '10.' || (1 + s) || '.' || (i % 250) || '.' || (i / 250 % 250)
                 FROM generate_series({first}, {last}) i, generate_series(0, 1) s"
            ),
        )?;
    }
    // Statistics for the planner, and the bulk load's dirty pages written
    // out now rather than by a checkpoint during the measurement.
    admin(url, "VACUUM ANALYZE")?;
    admin(url, "CHECKPOINT")?;
    eprintln!("stored {messages} messages in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// CPU time of every process of the `postgres` user (the cluster).
fn database_cpu() -> Duration {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Duration::ZERO };
    let postgres_uid = std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("postgres:").and_then(|rest| rest.split(':').nth(1)?.parse::<u32>().ok()));
    let Some(uid) = postgres_uid else { return Duration::ZERO };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
                == Some(uid)
        })
        .map(proc::cpu_time)
        .sum()
}

fn measure(args: &Args, storage: &Storage) -> Result<(), String> {
    let instances = start(args, storage)?;
    let urls: Vec<String> = instances.addrs.iter().map(|a| format!("http://{a}")).collect();
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    // Warm-up: connections, caches, and the first allocations.
    runtime.block_on(run_exchanges(&urls, 10, Duration::from_secs(1)));
    let pids: Vec<u32> = instances.children.iter().map(Child::id).collect();
    let cpu = || pids.iter().map(|&pid| proc::cpu_time(pid)).sum::<Duration>();
    let (servers_before, database_before) = (cpu(), database_cpu());
    let started = Instant::now();
    let (completed, failed) = runtime.block_on(run_exchanges(&urls, args.in_flight, Duration::from_secs(args.seconds)));
    let elapsed = started.elapsed().as_secs_f64();
    let per = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0 / completed.max(1) as f64);
    let servers_cpu = per(cpu().saturating_sub(servers_before));
    let database = match storage {
        Storage::Sqlite => "-".to_string(),
        Storage::Postgres { .. } => per(database_cpu().saturating_sub(database_before)),
    };
    std::thread::sleep(Duration::from_millis(500));
    let mut wakeups = wake_ups(&instances.addrs, args.wakeups)?;
    wakeups.sort_unstable();
    let (allocations, posts) = timed_posts(instances.addrs[0], args.timed)?;
    let metrics = timed_metrics(instances.addrs[0], args.timed)?;
    let at = |p: f64| wakeups[((wakeups.len() - 1) as f64 * p).round() as usize];
    let (name, n) = match storage {
        Storage::Sqlite => ("SQLite", 1),
        Storage::Postgres { instances, .. } => ("PostgreSQL", *instances),
    };
    let unavailable = instances.unavailable.load(Ordering::Relaxed);
    println!(
        "| {name} | {n} | {:.0} | {failed} / {unavailable} | {servers_cpu} | {database} | {} / {} / {} | {} / {} | {} / {} | {} / {} |",
        completed as f64 / elapsed,
        ms(at(0.5)),
        ms(at(0.99)),
        ms(at(1.0)),
        ms(percentile(&allocations, 0.5)),
        ms(percentile(&allocations, 0.99)),
        ms(percentile(&posts, 0.5)),
        ms(percentile(&posts, 0.99)),
        ms(percentile(&metrics, 0.5)),
        ms(percentile(&metrics, 0.99)),
    );
    if let Storage::Postgres { cluster, .. } = storage {
        drop(instances);
        let name = format!("bench_{}", std::process::id());
        admin(cluster, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
    }
    Ok(())
}

/// The `p` quantile of sorted durations.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted.get(((sorted.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or_default()
}

/// `count` allocations, each followed by a post on its channel, each timed
/// from the request's first byte to the answer's last; both sorted.
fn timed_posts(addr: SocketAddr, count: usize) -> Result<(Vec<Duration>, Vec<Duration>), String> {
    let (mut allocations, mut latencies) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for i in 0..count {
        let side = format!("timed{i}");
        let sent = Instant::now();
        let allocated = post(addr, "/v1/allocate", &json!({"appid": APPID, "side": side}))?;
        allocations.push(sent.elapsed());
        let channel = allocated["channel"].clone();
        let message = json!({"appid": APPID, "side": side, "channel": channel, "phase": "p", "body": "ab".repeat(40)});
        let sent = Instant::now();
        post(addr, "/v1/post", &message)?;
        latencies.push(sent.elapsed());
        post(addr, "/v1/close", &json!({"appid": APPID, "side": side, "channel": channel, "mood": "lonely"}))?;
    }
    allocations.sort_unstable();
    latencies.sort_unstable();
    Ok((allocations, latencies))
}

/// `count` requests for `/metrics`, one after the other, timed; sorted.
fn timed_metrics(addr: SocketAddr, count: usize) -> Result<Vec<Duration>, String> {
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let sent = Instant::now();
        let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).map_err(|e| e.to_string())?;
        if !answer.starts_with("HTTP/1.1 200") {
            return Err(format!("/metrics: {}", answer.lines().next().unwrap_or("")));
        }
        latencies.push(sent.elapsed());
    }
    latencies.sort_unstable();
    Ok(latencies)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// `in_flight` exchanges at a time for `duration`; returns how many
/// completed and failed.
async fn run_exchanges(urls: &[String], in_flight: usize, duration: Duration) -> (u64, u64) {
    let (completed, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..in_flight)
        .map(|_| {
            let (urls, completed, failed, stop, next) =
                (urls.to_vec(), completed.clone(), failed.clone(), stop.clone(), next.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let (initiator, receiver) = (&urls[k % urls.len()], &urls[(k + 1) % urls.len()]);
                    match exchange(initiator, receiver).await {
                        Ok(()) => completed.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            eprintln!("exchange failed: {e}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    (completed.load(Ordering::Relaxed), failed.load(Ordering::Relaxed))
}

async fn exchange(initiator_url: &str, receiver_url: &str) -> Result<(), wormhole_sync_core::Error> {
    let initiator = Initiator::builder(APPID, b"initiator's data".to_vec()).rendezvous(initiator_url).build()?.start();
    let code = initiator.when_code().await?.to_string();
    let receiver =
        Receiver::builder(APPID, &code, b"receiver's data".to_vec()).rendezvous(receiver_url).build()?.start();
    let (got_r, got_i) = tokio::join!(initiator.when_data(), receiver.when_data());
    assert_eq!((got_r?.as_slice(), got_i?.as_slice()), (&b"receiver's data"[..], &b"initiator's data"[..]));
    Ok(())
}

/// One HTTP/1.1 request on a new connection; the answer's JSON.
fn post(addr: SocketAddr, path: &str, body: &Value) -> Result<Value, String> {
    let body = body.to_string();
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    let (head, body) = answer.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("{path}: {head} {body}"));
    }
    serde_json::from_str(body).map_err(|e| e.to_string())
}

/// Long-polls waiting on instance 0 (for its channel's news), each woken
/// by a post to the last instance: the time from sending the post until
/// the long-poll's answer arrives.
fn wake_ups(addrs: &[SocketAddr], count: usize) -> Result<Vec<Duration>, String> {
    let (waiter, poster) = (addrs[0], addrs[addrs.len() - 1]);
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let (s1, s2) = (format!("w{i}"), format!("p{i}"));
        let allocated = post(waiter, "/v1/allocate", &json!({"appid": APPID, "side": s1}))?;
        let channel = allocated["channel"].clone();
        let mailbox = allocated["mailbox"].clone();
        post(poster, "/v1/join", &json!({"appid": APPID, "side": s2, "channel": channel}))?;
        let fetch = json!({"appid": APPID, "side": s1, "channel": channel, "mailbox": mailbox, "wait_ms": 10_000});
        let waiting = std::thread::spawn(move || {
            let answer = post(waiter, "/v1/fetch", &fetch);
            (answer, Instant::now())
        });
        // Let the long-poll register before the post (it is answered at once otherwise).
        std::thread::sleep(Duration::from_millis(20));
        let sent = Instant::now();
        let message = json!({"appid": APPID, "side": s2, "channel": channel, "phase": "p", "body": "news"});
        post(poster, "/v1/post", &message)?;
        let (answer, answered) = waiting.join().map_err(|_| "the waiting thread panicked")?;
        let answer = answer?;
        if answer["messages"].as_array().is_none_or(|m| m.is_empty()) {
            return Err(format!("the long-poll ended without the news: {answer}"));
        }
        latencies.push(answered.duration_since(sent));
        for (side, addr) in [(&s1, waiter), (&s2, poster)] {
            let close = json!({"appid": APPID, "side": side, "channel": channel, "mailbox": mailbox, "mood": "happy"});
            post(addr, "/v1/close", &close)?;
        }
    }
    Ok(latencies)
}
