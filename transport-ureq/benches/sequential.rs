//! Sequential exchanges through the blocking client: an initiator and a
//! receiver (each on its own thread) complete one exchange after another
//! against a server on 127.0.0.1, with memory and with SQLite storage.
//!
//! `cargo bench -p wormhole-sync-ureq --bench sequential` (set
//! `EXCHANGES` to change how many per storage, default 200). Every exchange
//! uses the default schedule (poll every 0.5 s): with both sides online its
//! time should be a few round trips, never a poll interval.

use std::time::{Duration, Instant};

use wormhole_sync_core::rendezvous::RendezvousSnapshot;
use wormhole_sync_server::{BackgroundServer, ServerConfig, Storage};
use wormhole_sync_ureq::transcribe::{Initiator, Receiver};

const APPID: &str = "bench.example/sequential";

fn one_exchange(url: &str) -> Duration {
    let started = Instant::now();
    let mut initiator = Initiator::new(APPID, b"initiator's data".to_vec()).unwrap().rendezvous(url).unwrap();
    let code = initiator.get_code().unwrap();
    let url = url.to_string();
    let receiver = std::thread::spawn(move || {
        let mut receiver =
            Receiver::new(APPID, &code.to_string(), b"receiver's data".to_vec()).unwrap().rendezvous(&url).unwrap();
        receiver.get_data().unwrap()
    });
    assert_eq!(initiator.get_data().unwrap(), b"receiver's data");
    assert_eq!(receiver.join().unwrap(), b"initiator's data");
    started.elapsed()
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn run(name: &str, storage: Storage, saved: RendezvousSnapshot, count: usize) {
    let config = ServerConfig { rate_limit_per_minute: 0, ..ServerConfig::default() };
    let server = BackgroundServer::start("127.0.0.1:0".parse().unwrap(), config, storage, saved).unwrap();
    let url = server.url();
    for _ in 0..5 {
        one_exchange(&url); // warm-up: connections, page cache
    }
    let mut times: Vec<Duration> = (0..count).map(|_| one_exchange(&url)).collect();
    times.sort_unstable();
    let at = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    let slow = times.iter().filter(|t| **t >= Duration::from_millis(400)).count();
    println!(
        "{name:>6}: {count} exchanges, p50 {} / p90 {} / p99 {} / max {}; {slow} took 400 ms or more",
        millis(at(0.5)),
        millis(at(0.9)),
        millis(at(0.99)),
        millis(at(1.0))
    );
    server.stop();
}

fn main() {
    let count = std::env::var("EXCHANGES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    run("memory", Storage::memory(), RendezvousSnapshot::new(Vec::new()), count);
    let dir = tempfile::tempdir().unwrap();
    let (storage, saved) = Storage::sqlite(&dir.path().join("bench.sqlite3")).unwrap();
    run("sqlite", storage, saved, count);
}
