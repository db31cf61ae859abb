//! `wormhole-sync-hostile`: hostile clients against a rendezvous server on
//! 127.0.0.1, with the server's defaults for the open internet (rate limits,
//! connection caps, byte budgets), while honest exchanges run beside them.
//!
//! Attackers come from their own loopback addresses (127.0.1.x to
//! 127.0.6.x), so per-address limits apply to them as to strangers on the
//! internet; honest clients come from 127.0.0.1. At once, for `--seconds`:
//!
//! - idle connections that send nothing, and slow ones that send a header
//!   line a second;
//! - clients that send pipelined requests and never read the answers;
//! - allocate and join floods for one application id;
//! - guessers joining channels of others (honest exchanges of their own
//!   application id) with garbage PAKE messages;
//! - clients posting messages of the largest size until refused.
//!
//! It reports what the server answered each kind of attacker, when it
//! closed their connections, its memory over time, and the latency and
//! outcome of every honest exchange. It fails (exit 1) if an honest
//! exchange in an application id no attacker touches fails, if any
//! exchange returns data other than what its peer sent, or if the limits
//! given for memory and latency are exceeded.
//!
//! ```sh
//! cargo run --release -p wormhole-sync-bench --bin wormhole-sync-hostile -- --seconds 40
//! ```

// Shared with the load generator, which uses more of them.
#[allow(dead_code)]
#[path = "proc.rs"]
mod proc;
#[allow(dead_code)]
#[path = "server.rs"]
mod server;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use server::Target;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser, Debug)]
#[command(version, about = "Hostile clients against a wormhole-sync rendezvous server on 127.0.0.1")]
struct Args {
    /// How long the attack lasts.
    #[arg(long, default_value_t = 40)]
    seconds: u64,
    /// Idle connections (400 per source address).
    #[arg(long, default_value_t = 3_000)]
    idle: usize,
    /// Connections sending one header line a second.
    #[arg(long, default_value_t = 300)]
    slow: usize,
    /// Connections that send 1,000 pipelined requests and never read.
    #[arg(long, default_value_t = 200)]
    never_read: usize,
    /// Addresses flooding one application id with allocations and joins.
    #[arg(long, default_value_t = 16)]
    flooders: usize,
    /// Addresses guessing codes of honest exchanges.
    #[arg(long, default_value_t = 16)]
    guessers: usize,
    /// Addresses posting messages of the largest size.
    #[arg(long, default_value_t = 16)]
    big_posters: usize,
    /// Storage of the server to start.
    #[arg(long, value_parser = ["memory", "sqlite"], default_value = "sqlite")]
    storage: String,
    /// Fail if the server's memory ever exceeds this (MiB).
    #[arg(long, default_value_t = 1_024)]
    max_rss_mib: u64,
    /// Fail if an honest exchange in the untouched application id takes longer (ms).
    #[arg(long, default_value_t = 3_000)]
    max_latency_ms: u64,
    /// Internal: serve with this storage until stdin closes.
    #[arg(long, hide = true)]
    serve: Option<String>,
}

/// Counts of what happened, by label.
#[derive(Default)]
struct Tally(Mutex<BTreeMap<String, u64>>);

impl Tally {
    fn add(&self, label: impl Into<String>) {
        *self.0.lock().expect("tally lock").entry(label.into()).or_insert(0) += 1;
    }

    fn print(&self, title: &str) {
        let counts = self.0.lock().expect("tally lock");
        let line: Vec<String> = counts.iter().map(|(label, n)| format!("{label}: {n}")).collect();
        println!("- {title}: {}", if line.is_empty() { "nothing".to_string() } else { line.join(", ") });
    }
}

/// When the server closed attackers' connections, in seconds after they opened.
#[derive(Default)]
struct Closings(Mutex<Vec<f64>>);

impl Closings {
    fn record(&self, opened: Instant) {
        self.0.lock().expect("closings lock").push(opened.elapsed().as_secs_f64());
    }

    fn summary(&self, of: usize) -> String {
        let mut times = self.0.lock().expect("closings lock").clone();
        times.sort_by(f64::total_cmp);
        match (times.first(), times.last()) {
            (Some(first), Some(last)) => {
                format!("{} of {of} closed by the server, after {first:.1} to {last:.1} s", times.len())
            }
            _ => format!("none of {of} closed by the server during the attack"),
        }
    }
}

struct Attack {
    server: SocketAddr,
    until: Instant,
    stop: AtomicBool,
}

impl Attack {
    fn over(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || Instant::now() >= self.until
    }
}

async fn connect_from(source: Ipv4Addr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.into(), 0))?;
    socket.connect(server).await
}

/// The `n`-th source address of attacker group `group` (127.0.group.n+1).
fn source(group: u8, n: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, group, u8::try_from(n % 250 + 1).expect("below 251"))
}

/// One HTTP/1.1 request on a kept-alive connection; the status and body.
async fn request(stream: &mut TcpStream, path: &str, body: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: rendezvous\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head_len)) = response.parse(&buffer) {
            let length = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                .unwrap_or(0);
            let status = response.code.unwrap_or(0);
            while buffer.len() < head_len + length {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buffer.extend_from_slice(&chunk[..n]);
            }
            return Ok((status, buffer[head_len..head_len + length].to_vec()));
        }
    }
}

/// `200`, or the status and the error code the server named.
fn label(route: &str, answer: &std::io::Result<(u16, Vec<u8>)>) -> String {
    match answer {
        Ok((200, _)) => format!("{route} ok"),
        Ok((status, body)) => {
            let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let code = json.get("error").and_then(|e| e.as_str()).unwrap_or("?");
            format!("{route} {status} {code}")
        }
        Err(_) => format!("{route} connection lost"),
    }
}

/// Holds a connection that sends nothing (`slow`: a header line a second)
/// until the server closes it or the attack ends.
async fn idle(attack: Arc<Attack>, from: Ipv4Addr, slow: bool, closings: Arc<Closings>, refused: Arc<Tally>) {
    let Ok(mut stream) = connect_from(from, attack.server).await else { return refused.add("connect failed") };
    let opened = Instant::now();
    if slow {
        let _ = stream.write_all(b"POST /v1/allocate HTTP/1.1\r\n").await;
    }
    let mut buffer = [0u8; 1024];
    loop {
        let wait = tokio::time::sleep(Duration::from_secs(1));
        tokio::select! {
            read = stream.read(&mut buffer) => match read {
                // An answer (a refusal over a cap), then the close.
                Ok(n) if n > 0 => refused.add(String::from_utf8_lossy(&buffer[..n]).lines().next().unwrap_or("").to_string()),
                _ => return closings.record(opened),
            },
            () = wait => {
                if attack.over() {
                    return;
                }
                if slow && stream.write_all(b"x-slow: 1\r\n").await.is_err() {
                    return closings.record(opened);
                }
            }
        }
    }
}

/// Sends 1,000 pipelined requests for `/metrics` on a connection with a
/// small receive window, and never reads: the server's writes block.
async fn never_read(attack: Arc<Attack>, from: Ipv4Addr, closings: Arc<Closings>) {
    let connect = async {
        let socket = TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(4096)?;
        socket.bind(SocketAddr::new(from.into(), 0))?;
        socket.connect(attack.server).await
    };
    let Ok(mut stream) = connect.await else { return };
    let opened = Instant::now();
    let requests = "GET /metrics HTTP/1.1\r\nhost: rendezvous\r\n\r\n".repeat(1_000);
    if stream.write_all(requests.as_bytes()).await.is_err() {
        return closings.record(opened);
    }
    // Probe the connection with empty-line writes; a reset shows as an error.
    while !attack.over() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if stream.write_all(b"\r\n").await.is_err() {
            return closings.record(opened);
        }
    }
}

/// Allocates and joins (with `create`) in one application id as fast as the
/// server answers.
async fn flood(attack: Arc<Attack>, from: Ipv4Addr, tally: Arc<Tally>, seed: u64) {
    let mut n = seed;
    while !attack.over() {
        let Ok(mut stream) = connect_from(from, attack.server).await else {
            tally.add("connect failed");
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        while !attack.over() {
            n = n.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let (route, path, body) = if n.is_multiple_of(2) {
                ("allocate", "/v1/allocate", format!(r#"{{"appid":"flooded","side":"f{n:x}"}}"#))
            } else {
                let channel = (n >> 33) % 999 + 1;
                (
                    "join",
                    "/v1/join",
                    format!(r#"{{"appid":"flooded","side":"f{n:x}","channel":{channel},"create":true}}"#),
                )
            };
            let answer = request(&mut stream, path, &body).await;
            tally.add(label(route, &answer));
            if answer.is_err() {
                break;
            }
        }
    }
}

/// Joins channels 1 to 99 of the guessed application id at random and, when
/// in, posts a garbage PAKE message and closes.
async fn guess(attack: Arc<Attack>, from: Ipv4Addr, tally: Arc<Tally>, seed: u64) {
    let mut n = seed;
    while !attack.over() {
        let Ok(mut stream) = connect_from(from, attack.server).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        while !attack.over() {
            n = n.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let (side, channel) = (format!("g{n:x}"), (n >> 33) % 99 + 1);
            let join = format!(r#"{{"appid":"guessed","side":"{side}","channel":{channel},"create":false}}"#);
            let answer = request(&mut stream, "/v1/join", &join).await;
            tally.add(label("join", &answer));
            match answer {
                Ok((200, _)) => {
                    let pake = "A".repeat(44);
                    let post = format!(
                        r#"{{"appid":"guessed","side":"{side}","channel":{channel},"phase":"pake","body":"{pake}"}}"#
                    );
                    tally.add(label("post", &request(&mut stream, "/v1/post", &post).await));
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
}

/// Posts messages of the largest size (sixteen per channel, then a new
/// channel) until the server refuses.
async fn post_big(attack: Arc<Attack>, from: Ipv4Addr, tally: Arc<Tally>, n: usize) {
    let body = "B".repeat(64 * 1024);
    let mut round = 0;
    while !attack.over() {
        let Ok(mut stream) = connect_from(from, attack.server).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        while !attack.over() {
            round += 1;
            let side = format!("b{n}-{round}");
            let allocate = format!(r#"{{"appid":"big","side":"{side}"}}"#);
            let answer = request(&mut stream, "/v1/allocate", &allocate).await;
            tally.add(label("allocate", &answer));
            let Ok((200, allocated)) = answer else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                break;
            };
            let json: serde_json::Value = serde_json::from_slice(&allocated).unwrap_or_default();
            let channel = json.get("channel").and_then(serde_json::Value::as_u64).unwrap_or(0);
            for phase in 0..16 {
                let post = format!(
                    r#"{{"appid":"big","side":"{side}","channel":{channel},"phase":"p{phase}","body":"{body}"}}"#
                );
                let answer = request(&mut stream, "/v1/post", &post).await;
                tally.add(label("post", &answer));
                if !matches!(answer, Ok((200, _))) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    break;
                }
            }
        }
    }
}

/// An honest exchange's time and outcome.
type Probe = (Duration, Result<(), String>);

/// One honest exchange in `appid` from 127.0.0.1.
async fn honest(url: &str, appid: &str, n: u64) -> Probe {
    use wormhole_sync_tokio::transcribe::{Initiator, Receiver};
    let started = Instant::now();
    let (i_data, r_data) = (format!("initiator {n}").into_bytes(), format!("receiver {n}").into_bytes());
    let timeout = Duration::from_secs(20);
    let i = match Initiator::builder(appid, i_data.clone()).rendezvous(url).timeout(timeout).build() {
        Ok(i) => i.start(),
        Err(e) => return (started.elapsed(), Err(format!("{e}"))),
    };
    let code = match i.when_code().await {
        Ok(code) => code.to_string(),
        Err(e) => return (started.elapsed(), Err(format!("initiator: {e:?}"))),
    };
    let r = match Receiver::builder(appid, &code, r_data.clone()).rendezvous(url).timeout(timeout).build() {
        Ok(r) => r.start(),
        Err(e) => return (started.elapsed(), Err(format!("{e}"))),
    };
    let (mine, theirs) = tokio::join!(i.when_data(), r.when_data());
    let took = started.elapsed();
    match (mine, theirs) {
        (Ok(mine), Ok(theirs)) if mine == r_data && theirs == i_data => (took, Ok(())),
        (Ok(_), Ok(_)) => (took, Err("WRONG DATA".into())),
        (Ok(m), Err(e)) | (Err(e), Ok(m)) if m != r_data && m != i_data => (took, Err(format!("WRONG DATA; {e:?}"))),
        (mine, theirs) => (took, Err(format!("{:?} / {:?}", mine.err(), theirs.err()))),
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(storage) = &args.serve {
        let _ = tikv_jemalloc_ctl::background_thread::write(true);
        // The defaults for the open internet; a sweep every 10 s shows freed memory sooner.
        let config =
            wormhole_sync_server::ServerConfig { sweep_interval: Duration::from_secs(10), ..Default::default() };
        return match server::serve(storage, config) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wormhole-sync-hostile: server: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let target = match Target::spawn(&args.storage) {
        Ok(target) => target,
        Err(e) => {
            eprintln!("wormhole-sync-hostile: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    let passed = runtime.block_on(attack(&args, &target));
    if passed {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

async fn attack(args: &Args, target: &Target) -> bool {
    let pid = target.pid.expect("a server this tool started");
    let server: SocketAddr = target.url.trim_start_matches("http://").parse().expect("an address");
    println!(
        "wormhole-sync-hostile: {} s against {} ({} storage, the server's defaults)",
        args.seconds, target.url, args.storage
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = proc::rss_bytes(pid);
    let attack = Arc::new(Attack {
        server,
        until: Instant::now() + Duration::from_secs(args.seconds),
        stop: AtomicBool::new(false),
    });
    let (idle_closings, slow_closings, never_read_closings) =
        (Arc::new(Closings::default()), Arc::new(Closings::default()), Arc::new(Closings::default()));
    let (connects, floods, guesses, bigs) = (
        Arc::new(Tally::default()),
        Arc::new(Tally::default()),
        Arc::new(Tally::default()),
        Arc::new(Tally::default()),
    );
    let mut tasks = Vec::new();
    for n in 0..args.idle {
        tasks.push(tokio::spawn(idle(
            attack.clone(),
            source(1, n / 400),
            false,
            idle_closings.clone(),
            connects.clone(),
        )));
    }
    for n in 0..args.slow {
        tasks.push(tokio::spawn(idle(
            attack.clone(),
            source(2, n / 100),
            true,
            slow_closings.clone(),
            connects.clone(),
        )));
    }
    for n in 0..args.never_read {
        tasks.push(tokio::spawn(never_read(attack.clone(), source(3, n / 50), never_read_closings.clone())));
    }
    for n in 0..args.flooders {
        tasks.push(tokio::spawn(flood(attack.clone(), source(4, n), floods.clone(), n as u64 + 1)));
    }
    for n in 0..args.guessers {
        tasks.push(tokio::spawn(guess(attack.clone(), source(5, n), guesses.clone(), n as u64 + 100)));
    }
    for n in 0..args.big_posters {
        tasks.push(tokio::spawn(post_big(attack.clone(), source(6, n), bigs.clone(), n)));
    }
    // Memory, sampled while the attack runs.
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = tokio::spawn({
        let (attack, peak) = (attack.clone(), peak.clone());
        async move {
            while !attack.over() {
                peak.fetch_max(proc::rss_bytes(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    });
    // Honest exchanges, one at a time: every other one in an application id
    // no attacker touches, the rest in the guessed and the flooded ones.
    let mut results: BTreeMap<&str, Vec<Probe>> = BTreeMap::new();
    let mut n = 0;
    while !attack.over() {
        let appid = ["untouched", "guessed", "untouched", "flooded"][(n % 4) as usize];
        let started = Instant::now();
        let outcome = honest(&target.url, appid, n).await;
        results.entry(appid).or_default().push(outcome);
        n += 1;
        // At most one exchange (an allocation and a join) a second: within
        // the per-address rate limit that honest clients share.
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(started.elapsed())).await;
    }
    let during = proc::rss_bytes(pid);
    attack.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let _ = sampler.await;
    // Freed after the attackers left and a sweep ran.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let after = proc::rss_bytes(pid);
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    println!(
        "server memory: {:.1} MiB before, {:.1} MiB peak, {:.1} MiB at the end of the attack, {:.1} MiB after",
        mib(baseline),
        mib(peak.load(Ordering::Relaxed)),
        mib(during),
        mib(after)
    );
    println!("- idle connections: {}", idle_closings.summary(args.idle));
    println!("- slow connections: {}", slow_closings.summary(args.slow));
    println!("- never-reading connections: {}", never_read_closings.summary(args.never_read));
    connects.print("answers to idle and slow connections (refusals over a cap)");
    floods.print("allocate and join flood on \"flooded\"");
    guesses.print("guesses on \"guessed\"");
    bigs.print("largest messages on \"big\"");
    let mut passed = true;
    for (appid, outcomes) in &results {
        let mut times: Vec<Duration> = outcomes.iter().map(|o| o.0).collect();
        times.sort_unstable();
        let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.1.as_ref().err()).collect();
        let at =
            |p: f64| times.get(((times.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or_default();
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for failure in &failures {
            *kinds.entry(failure.as_str()).or_insert(0) += 1;
        }
        println!(
            "honest exchanges on {appid:?}: {} of {} completed; p50 {:.1} ms, max {:.1} ms; failures {kinds:?}",
            outcomes.len() - failures.len(),
            outcomes.len(),
            at(0.5).as_secs_f64() * 1e3,
            at(1.0).as_secs_f64() * 1e3,
        );
        if failures.iter().any(|f| f.contains("WRONG DATA")) {
            println!("FAIL: an exchange on {appid:?} returned data its peer never sent");
            passed = false;
        }
        if *appid == "untouched" {
            if !failures.is_empty() || outcomes.is_empty() {
                println!("FAIL: honest exchanges on an application id no attacker touches must all complete");
                passed = false;
            }
            if at(1.0) > Duration::from_millis(args.max_latency_ms) {
                println!("FAIL: an honest exchange took longer than {} ms", args.max_latency_ms);
                passed = false;
            }
        }
    }
    if peak.load(Ordering::Relaxed) > args.max_rss_mib << 20 {
        println!("FAIL: the server's memory exceeded {} MiB", args.max_rss_mib);
        passed = false;
    }
    passed
}
