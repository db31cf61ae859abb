//! Connections on the open internet: caps per address, clients that stop
//! reading, shutdowns that do not wait for half-sent requests.

mod support;

use std::io::{BufRead, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{metric, read_reply, TestServer};
use wormhole_sync_server::ServerConfig;

#[test]
fn connections_over_the_cap_per_address_are_turned_away_with_json() {
    let config = ServerConfig { max_connections_per_address: 5, ..ServerConfig::default() };
    let server = TestServer::memory(config);
    let idle: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(server.addr).unwrap()).collect();
    let mut excess = TcpStream::connect(server.addr).unwrap();
    excess.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let reply = read_reply(&mut excess).unwrap();
    assert_eq!((reply.status, reply.error_code().as_str()), (429, "rate-limited"));
    drop(idle);
    // The places come back once those connections are gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(server.addr, "wormhole_connections_open") > 1.0 {
        assert!(Instant::now() < deadline, "closed connections were not counted out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_shutdown_does_not_wait_for_half_sent_requests_beyond_its_grace() {
    let config = ServerConfig {
        shutdown_grace: Duration::from_millis(500),
        header_timeout: Duration::from_secs(60),
        ..ServerConfig::default()
    };
    let server = TestServer::memory(config);
    let mut half = TcpStream::connect(server.addr).unwrap();
    half.write_all(b"POST /v1/fetch HTTP/1.1\r\nHost: x\r\nContent-Le").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    server.stop();
    assert!(started.elapsed() < Duration::from_secs(5), "stopping took {:?}", started.elapsed());
}

/// The server binary with `args`, its address read from its log.
fn spawn_server(args: &[&str]) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wormhole-sync-server"))
        .args(["--listen", "127.0.0.1:0", "--memory"])
        .args(args)
        // Freed memory goes back to the system within a second, so the test can see it.
        .env("_RJEM_MALLOC_CONF", "dirty_decay_ms:500,muzzy_decay_ms:500")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("server binary starts");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.by_ref().map_while(Result::ok).find(|l| l.contains("listening on http://")).unwrap();
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    let addr = line.split("listening on http://").nth(1).unwrap().split_whitespace().next().unwrap();
    (child, addr.parse().unwrap())
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix(" kB")?.parse().ok()).unwrap()
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(target_os = "linux")]
#[test]
fn clients_that_stop_reading_are_closed_and_their_memory_returns() {
    const CLIENTS: usize = 60;
    // A long header timeout, so only the write timeout can close them.
    let args = ["--write-timeout", "2s", "--header-timeout", "120s", "--max-connections-per-address", "0"];
    let (mut child, addr) = spawn_server(&[&args[..], &["--rate-limit", "0", "--rate-limit-messages", "0"]].concat());
    // A channel whose log is large: 16 messages of 48 KB, so every fetch answer is about 1 MB.
    let join = serde_json::json!({"appid": "app", "side": "s1", "channel": 1, "create": true});
    assert_eq!(support::post(addr, "/v1/join", &join).status, 200);
    for n in 0..16 {
        let body = "A".repeat(48 * 1024);
        let message =
            serde_json::json!({"appid": "app", "side": "s1", "channel": 1, "phase": format!("p{n}"), "body": body});
        assert_eq!(support::post(addr, "/v1/post", &message).status, 200);
    }
    let baseline = rss_kib(child.id());
    // Each client asks for six such answers and reads none: more than the kernel
    // buffers hold, so the server's writes block with an answer in its memory.
    let fetch = br#"{"appid":"app","side":"s1","channel":1}"#;
    let one = [support::request("POST", "/v1/fetch", Some("application/json"), fetch)].concat();
    let one = String::from_utf8(one).unwrap().replace("Connection: close\r\n", "");
    let request = one.repeat(6).into_bytes();
    let clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.write_all(&request).unwrap();
            stream
        })
        .collect();
    // The write timeout closes them all, without the clients doing anything;
    // meanwhile they hold the server's memory.
    let (mut peak, mut most_open) = (0, 0.0f64);
    wait_until("the stalled clients being closed", Duration::from_secs(60), || {
        let open = metric(addr, "wormhole_connections_open");
        peak = peak.max(rss_kib(child.id()));
        most_open = most_open.max(open);
        most_open >= CLIENTS as f64 * 0.5 && open <= 1.0
    });
    let allowed = baseline + baseline / 2 + 4 * 1024;
    wait_until("memory returning to the baseline", Duration::from_secs(20), || rss_kib(child.id()) <= allowed);
    let after = rss_kib(child.id());
    eprintln!("RSS: baseline {baseline} KiB, with {CLIENTS} stalled clients {peak} KiB, after {after} KiB");
    assert!(peak > allowed, "the stalled clients did not hold memory: the test shows nothing ({peak} KiB)");
    drop(clients);
    child.kill().unwrap();
    child.wait().unwrap();
}
