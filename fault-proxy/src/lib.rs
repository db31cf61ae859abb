//! Test support: a TCP proxy that puts a real, faulty network between real
//! processes on 127.0.0.1, where the kernel offers no `tc netem`.
//!
//! Each accepted connection gets one [`Fault`] from a plan (a function of
//! the connection's number): added latency, a stall, a reset in the middle
//! of the request or of the response, a truncated response, byte-at-a-time
//! delivery, or none. [`FaultProxy::blackhole`] swallows all traffic for a
//! while. [`Stats`] tells what was injected, so a test can derive how long
//! its exchanges may take.
//!
//! ```
//! use std::time::Duration;
//! use wormhole_sync_fault_proxy::{Fault, FaultProxy};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let proxy = FaultProxy::start(upstream.local_addr()?, |n| {
//!     if n % 2 == 0 { Fault::Latency(Duration::from_millis(20)) } else { Fault::None }
//! })
//! .await?;
//! assert!(proxy.url().starts_with("http://127.0.0.1:"));
//! assert_eq!(proxy.stats().connections, 0);
//! # Ok::<(), std::io::Error>(())
//! # }).unwrap();
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What happens to one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Passed through untouched.
    None,
    /// Every chunk, either way, waits this long before it is passed on.
    Latency(Duration),
    /// The answer stops after this many bytes for a while, then goes on.
    Stall {
        /// Bytes of the answer passed before the pause.
        after: usize,
        /// How long nothing passes.
        pause: Duration,
    },
    /// The client's connection is reset after this many bytes of its request.
    ResetRequest {
        /// Bytes of the request passed on first.
        after: usize,
    },
    /// The client's connection is reset after this many bytes of the answer.
    ResetResponse {
        /// Bytes of the answer passed on first.
        after: usize,
    },
    /// The answer is cut after this many bytes: the connection closes
    /// cleanly (FIN), as if the server had ended it.
    Truncate {
        /// Bytes of the answer passed on first.
        after: usize,
    },
    /// Both ways, one byte at a time, each after this delay.
    Trickle(Duration),
}

impl Fault {
    /// Whether the fault breaks what crosses it (the client must retry),
    /// rather than only slowing it down.
    pub fn breaks(self) -> bool {
        matches!(self, Fault::ResetRequest { .. } | Fault::ResetResponse { .. } | Fault::Truncate { .. })
    }
}

/// What a proxy injected so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted.
    pub connections: u64,
    /// Connections that got a fault other than [`Fault::None`].
    pub faulted: u64,
    /// Connections reset or cut: each costs the client a failed request.
    pub broken: u64,
    /// Connections swallowed by a blackhole.
    pub blackholed: u64,
    /// The time the proxy spent in every delay it added (latency, stalls,
    /// trickling, blackholes; as measured, since timers wake late), summed
    /// over all connections: at most this much time was lost waiting on it.
    pub added_delay: Duration,
}

struct Shared {
    stats: Mutex<Stats>,
    blackhole_until: Mutex<Option<Instant>>,
}

impl Shared {
    fn add_delay(&self, delay: Duration) {
        self.stats.lock().expect("stats lock").added_delay += delay;
    }

    /// Sleeps and counts the time it really took (a timer wakes late, most
    /// of all for sleeps of a millisecond).
    async fn delay(&self, delay: Duration) {
        let started = Instant::now();
        tokio::time::sleep(delay).await;
        self.add_delay(started.elapsed());
    }

    fn blackholed_until(&self) -> Option<Instant> {
        let until = *self.blackhole_until.lock().expect("blackhole lock");
        until.filter(|t| *t > Instant::now())
    }

    /// Waits out a blackhole, counting the time lost.
    async fn through_blackhole(&self) {
        if let Some(until) = self.blackholed_until() {
            self.delay(until.saturating_duration_since(Instant::now())).await;
        }
    }
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (an OS-chosen port) and forwards each connection
    /// to `upstream`, with the fault `plan` picks for its number (0, 1, ...).
    pub async fn start(
        upstream: SocketAddr,
        mut plan: impl FnMut(u64) -> Fault + Send + 'static,
    ) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared { stats: Mutex::new(Stats::default()), blackhole_until: Mutex::new(None) });
        let task = tokio::spawn({
            let shared = shared.clone();
            async move {
                let mut number = 0;
                while let Ok((client, _)) = listener.accept().await {
                    let fault = plan(number);
                    number += 1;
                    {
                        let mut stats = shared.stats.lock().expect("stats lock");
                        stats.connections += 1;
                        stats.faulted += u64::from(fault != Fault::None);
                        stats.broken += u64::from(fault.breaks());
                    }
                    tokio::spawn(serve(client, upstream, fault, shared.clone()));
                }
            }
        });
        Ok(FaultProxy { addr, shared, task })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://` and the address.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on, for `duration`, nothing gets through: new connections
    /// are read and ignored, then reset when it ends; open ones hold their
    /// bytes until it ends.
    pub fn blackhole(&self, duration: Duration) {
        *self.shared.blackhole_until.lock().expect("blackhole lock") = Some(Instant::now() + duration);
    }

    /// What was injected so far.
    pub fn stats(&self) -> Stats {
        self.shared.stats.lock().expect("stats lock").clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Resets a connection: with a zero linger, closing sends RST.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

async fn serve(client: TcpStream, upstream: SocketAddr, fault: Fault, shared: Arc<Shared>) {
    let _ = client.set_nodelay(true);
    if let Some(until) = shared.blackholed_until() {
        shared.stats.lock().expect("stats lock").blackholed += 1;
        return swallow(client, until, &shared).await;
    }
    let Ok(server) = TcpStream::connect(upstream).await else { return reset(&client) };
    let _ = server.set_nodelay(true);
    let (client, server) = (Arc::new(client), Arc::new(server));
    let request = pump(client.clone(), server.clone(), Direction::Request, fault, shared.clone());
    let answer = pump(server.clone(), client.clone(), Direction::Answer, fault, shared.clone());
    tokio::pin!(request, answer);
    let (mut request_done, mut answer_done) = (false, false);
    while !(request_done && answer_done) {
        let ended = tokio::select! {
            ended = &mut request, if !request_done => { request_done = true; ended }
            ended = &mut answer, if !answer_done => { answer_done = true; ended }
        };
        if ended == Ended::Reset {
            // Both ways end here; the last handle's drop closes with RST.
            reset(&client);
            return;
        }
    }
}

/// Reads and ignores a connection until the blackhole ends, then resets it.
async fn swallow(mut client: TcpStream, until: Instant, shared: &Shared) {
    shared.add_delay(until.saturating_duration_since(Instant::now()));
    let mut sink = [0u8; 4096];
    let drain = async {
        while let Ok(n) = client.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout_at(until, drain).await;
    reset(&client);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Request,
    Answer,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ended {
    Closed,
    Reset,
}

async fn read_some(stream: &TcpStream, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        stream.readable().await?;
        match stream.try_read(buffer) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            result => return result,
        }
    }
}

async fn write_all(stream: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        stream.writable().await?;
        match stream.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn shutdown_writes(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
}

/// Copies one way, applying `fault`; ends when the sender closes (then the
/// receiver's writes are shut down too) or the fault ends the connection.
async fn pump(
    from: Arc<TcpStream>,
    to: Arc<TcpStream>,
    direction: Direction,
    fault: Fault,
    shared: Arc<Shared>,
) -> Ended {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut passed = 0usize;
    let mut stalled = false;
    loop {
        let n = match read_some(&from, &mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        shared.through_blackhole().await;
        let mut chunk = &buffer[..n];
        match (fault, direction) {
            (Fault::Latency(delay), _) => shared.delay(delay).await,
            (Fault::Stall { after, pause }, Direction::Answer) if !stalled && passed + chunk.len() > after => {
                let first = after.saturating_sub(passed);
                if write_all(&to, &chunk[..first]).await.is_err() {
                    break;
                }
                passed += first;
                chunk = &chunk[first..];
                stalled = true;
                shared.delay(pause).await;
            }
            (Fault::ResetRequest { after }, Direction::Request)
            | (Fault::ResetResponse { after }, Direction::Answer)
                if passed + chunk.len() > after =>
            {
                let _ = write_all(&to, &chunk[..after.saturating_sub(passed)]).await;
                return Ended::Reset;
            }
            (Fault::Truncate { after }, Direction::Answer) if passed + chunk.len() > after => {
                let _ = write_all(&to, &chunk[..after.saturating_sub(passed)]).await;
                shutdown_writes(&to);
                shutdown_writes(&from);
                return Ended::Closed;
            }
            (Fault::Trickle(delay), _) => {
                for byte in chunk {
                    shared.delay(delay).await;
                    if write_all(&to, std::slice::from_ref(byte)).await.is_err() {
                        return Ended::Closed;
                    }
                }
                passed += chunk.len();
                continue;
            }
            _ => {}
        }
        if write_all(&to, chunk).await.is_err() {
            break;
        }
        passed += chunk.len();
    }
    shutdown_writes(&to);
    Ended::Closed
}
