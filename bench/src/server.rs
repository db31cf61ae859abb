//! The server under test: a child process running the server library (so
//! its CPU time and memory are its own in `/proc`), or one already running.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use wormhole_sync_core::rendezvous::RendezvousSnapshot;
use wormhole_sync_server::{Server, ServerConfig, Storage};

/// A server to measure: its base URL and, when known, its process id.
pub struct Target {
    pub url: String,
    pub pid: Option<u32>,
    child: Option<(Child, ChildStdin)>,
}

impl Target {
    /// Starts `wormhole-sync-bench --serve <storage>` and reads the address it listens on.
    pub fn spawn(storage: &str) -> std::io::Result<Target> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--serve", storage])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let mut first_line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut first_line)?;
        let url = first_line
            .trim()
            .strip_prefix("listening ")
            .map(str::to_string)
            .ok_or_else(|| std::io::Error::other(format!("the server did not start: {first_line:?}")))?;
        Ok(Target { url, pid: Some(child.id()), child: Some((child, stdin)) })
    }

    /// A server started elsewhere (its pid, when given, enables CPU and memory figures).
    pub fn external(url: &str, pid: Option<u32>) -> Target {
        Target { url: url.trim_end_matches('/').to_string(), pid, child: None }
    }

    /// Requests answered so far, once the count has stopped moving (clients
    /// close in the background after their data arrived).
    pub fn requests_settled(&self) -> u64 {
        let mut last = self.requests_served();
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let now = self.requests_served();
            if now == last {
                return now;
            }
            last = now;
        }
    }

    /// Requests answered so far (the sum of `wormhole_requests_total`).
    pub fn requests_served(&self) -> u64 {
        let text = self.get("/metrics").unwrap_or_default();
        text.lines()
            .filter(|line| line.starts_with("wormhole_requests_total{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    fn get(&self, path: &str) -> std::io::Result<String> {
        let host = self.url.trim_start_matches("http://");
        let mut stream = TcpStream::connect(host)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.child.take() {
            drop(stdin); // the child stops when its stdin closes
            let _ = child.wait();
        }
    }
}

/// The child's side: serve on 127.0.0.1 with `storage` (`memory`, or
/// `sqlite` in a temporary directory) and `config` until stdin closes.
pub fn serve(storage: &str, config: ServerConfig) -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let (storage, saved) = match storage {
        "memory" => (Storage::memory(), RendezvousSnapshot::new(Vec::new())),
        "sqlite" => Storage::sqlite(&dir.path().join("bench.sqlite3")).map_err(std::io::Error::other)?,
        other => return Err(std::io::Error::other(format!("unknown storage {other:?}"))),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let server = Server::bind("127.0.0.1:0".parse().expect("an address"), config, storage, saved).await?;
        println!("listening http://{}", server.local_addr()?);
        std::io::stdout().flush()?;
        let stdin_closed = async {
            let _ = tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await;
        };
        server.run(stdin_closed).await
    })
}
