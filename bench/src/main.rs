//! `wormhole-sync-bench`: measures a wormhole-sync rendezvous server and its
//! clients on one machine. It starts the server as a child process on
//! 127.0.0.1 (memory or SQLite storage), or targets one already running,
//! and reports for each client transport:
//!
//! - sequential latency: p50, p99, max and a histogram;
//! - exchanges per second with C in flight, HTTP requests per exchange
//!   (from the server's `/metrics`), server and client CPU per exchange
//!   (from `/proc`);
//! - server memory per waiting client with W initiators waiting, the
//!   server's CPU while they wait, and its memory once they are gone.
//!
//! ```sh
//! cargo run --release -p wormhole-sync-bench -- --storage memory --storage sqlite
//! ```

mod proc;
mod server;
mod workload;

use std::time::{Duration, Instant};

use clap::Parser;

use server::Target;
use workload::{Transport, Waiting};

/// The server binary's allocator, so the child server measures the same.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser, Debug)]
#[command(version, about = "Load generator for the wormhole-sync rendezvous server and clients")]
struct Args {
    /// Storage of the server to start (repeat for both); ignored with --url.
    #[arg(long, value_parser = ["memory", "sqlite"], default_values = ["memory"])]
    storage: Vec<String>,
    /// Measure this running server instead of starting one.
    #[arg(long)]
    url: Option<String>,
    /// The running server's process id, for its CPU and memory figures.
    #[arg(long, requires = "url")]
    server_pid: Option<u32>,
    /// Client transports to measure (repeat for both).
    #[arg(long, value_enum, default_values = ["ureq", "tokio"])]
    transport: Vec<Transport>,
    /// Sequential exchanges (0 skips).
    #[arg(long, default_value_t = 200)]
    sequential: usize,
    /// Exchanges in flight in the throughput run (0 skips).
    #[arg(long, default_value_t = 100)]
    in_flight: usize,
    /// Length of the throughput run, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Initiators left waiting for the memory and idle-CPU figures (0 skips).
    #[arg(long, default_value_t = 1000)]
    waiting: usize,
    /// How long to measure the waiting initiators' cost, in seconds (at
    /// least one 30 s long-poll window, to see its renewal).
    #[arg(long, default_value_t = 65)]
    idle_seconds: u64,
    /// After the waiting initiators leave, how long to wait for one sweep
    /// of the server before measuring its memory again (0: measure at once,
    /// without waiting for their connections to close either).
    #[arg(long, default_value_t = 31)]
    settle_seconds: u64,
    /// Internal: serve with this storage until stdin closes.
    #[arg(long, hide = true)]
    serve: Option<String>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(storage) = &args.serve {
        // Purge freed memory in the background, as the server binary does.
        let _ = tikv_jemalloc_ctl::background_thread::write(true);
        // Sweep (and return freed memory) every 10 s instead of every minute, so
        // the memory figure after a burst does not wait long for it.
        let config = wormhole_sync_server::ServerConfig {
            sweep_interval: Duration::from_secs(10),
            ..wormhole_sync_server::ServerConfig::default().without_rate_limits()
        };
        return match server::serve(storage, config) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wormhole-sync-bench: server: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    println!("wormhole-sync-bench on {} cores", std::thread::available_parallelism().map_or(1, |n| n.get()));
    let targets: Vec<(String, Option<&str>)> = match &args.url {
        Some(url) => vec![(url.clone(), None)],
        None => args.storage.iter().map(|s| (format!("{s} storage"), Some(s.as_str()))).collect(),
    };
    for (name, storage) in &targets {
        for &transport in &args.transport {
            println!("\n## {name}, {transport:?} client");
            // A fresh server for each run, so figures do not mix.
            let target = match (storage, &args.url) {
                (Some(storage), _) => Target::spawn(storage),
                (None, Some(url)) => Ok(Target::external(url, args.server_pid)),
                (None, None) => unreachable!("a target is either started or given"),
            };
            let result = target.map_err(|e| e.to_string()).and_then(|target| measure(&args, &target, transport));
            if let Err(e) = result {
                eprintln!("wormhole-sync-bench: {name}, {transport:?}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    std::process::ExitCode::SUCCESS
}

fn measure(args: &Args, target: &Target, transport: Transport) -> Result<(), String> {
    let url = target.url.as_str();
    if args.sequential > 0 {
        workload::sequential(transport, url, 5).map_err(|e| e.to_string())?; // warm-up
        let requests = target.requests_settled();
        let mut times = workload::sequential(transport, url, args.sequential).map_err(|e| e.to_string())?;
        let per_exchange = (target.requests_settled() - requests) as f64 / times.len() as f64;
        times.sort_unstable();
        let at = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
        println!(
            "sequential: {} exchanges, p50 {} / p99 {} / max {}; {per_exchange:.1} HTTP requests per exchange",
            times.len(),
            ms(at(0.5)),
            ms(at(0.99)),
            ms(at(1.0)),
        );
        print_histogram(&times);
    }
    if args.in_flight > 0 {
        let server_cpu = target.pid.map(proc::cpu_time);
        let client_cpu = proc::cpu_time(std::process::id());
        let requests = target.requests_settled();
        let started = Instant::now();
        let counts = workload::throughput(transport, url, args.in_flight, Duration::from_secs(args.seconds));
        let elapsed = started.elapsed().as_secs_f64();
        let completed = counts.completed.load(std::sync::atomic::Ordering::Relaxed).max(1);
        let failed = counts.failed.load(std::sync::atomic::Ordering::Relaxed);
        let per = |d: Duration| ms(d / u32::try_from(completed).unwrap_or(u32::MAX));
        print!(
            "throughput, {} in flight: {:.0} exchanges/s ({completed} in {elapsed:.1} s, {failed} failed); \
             {:.1} HTTP requests per exchange; client CPU {} per exchange",
            args.in_flight,
            completed as f64 / elapsed,
            (target.requests_settled() - requests) as f64 / completed as f64,
            per(proc::cpu_time(std::process::id()).saturating_sub(client_cpu)),
        );
        match (target.pid, server_cpu) {
            (Some(pid), Some(before)) => println!("; server CPU {} per exchange", per(proc::cpu_time(pid) - before)),
            _ => println!(),
        }
    }
    if args.waiting > 0 {
        let Some(pid) = target.pid else {
            println!("waiting: skipped, the server's process id is unknown (--server-pid)");
            return Ok(());
        };
        std::thread::sleep(Duration::from_secs(1));
        let (baseline, baseline_files) = (proc::rss_bytes(pid), proc::open_files(pid));
        let timeout = Duration::from_secs(args.idle_seconds + 30);
        let waiting = Waiting::start(transport, url, args.waiting, timeout).map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_secs(1));
        let (cpu, requests) = (proc::cpu_time(pid), target.requests_served());
        std::thread::sleep(Duration::from_secs(args.idle_seconds));
        let idle_cpu = proc::cpu_time(pid) - cpu;
        let idle_requests = target.requests_served() - requests;
        let loaded = proc::rss_bytes(pid);
        waiting.stop();
        if args.settle_seconds > 0 {
            // The server notices a client gone only when its long-poll ends and its
            // idle connection times out: wait for its sockets to close.
            let gave_up = Instant::now() + Duration::from_secs(120);
            while proc::open_files(pid) > baseline_files + args.waiting / 100 && Instant::now() < gave_up {
                std::thread::sleep(Duration::from_millis(500));
            }
            std::thread::sleep(Duration::from_secs(args.settle_seconds));
        }
        let after = proc::rss_bytes(pid);
        let per_client = loaded.saturating_sub(baseline) as f64 / args.waiting as f64 / 1024.0;
        println!(
            "waiting, {} initiators: server memory {per_client:.1} KiB per waiting client \
             (RSS {} MiB before, {} MiB waiting, {} MiB after: {:+.0} % of before); \
             server CPU {:.2} % of a core and {:.3} requests per client per 30 s while they wait",
            args.waiting,
            baseline / (1 << 20),
            loaded / (1 << 20),
            after / (1 << 20),
            (after as f64 / baseline.max(1) as f64 - 1.0) * 100.0,
            idle_cpu.as_secs_f64() / args.idle_seconds as f64 * 100.0,
            idle_requests as f64 / args.waiting as f64 / args.idle_seconds as f64 * 30.0,
        );
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Counts per doubling bucket (under 0.5 ms, 0.5–1 ms, 1–2 ms, ...), with bars.
fn print_histogram(sorted: &[Duration]) {
    let mut upper = Duration::from_micros(500);
    let mut rest = sorted;
    while !rest.is_empty() {
        let n = rest.iter().take_while(|t| **t < upper).count();
        let bar = "#".repeat((n * 50).div_ceil(sorted.len()));
        println!("  < {:>9}: {n:>6} {bar}", ms(upper));
        rest = &rest[n..];
        upper *= 2;
    }
}
