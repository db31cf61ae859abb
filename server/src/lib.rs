//! The **wormhole-sync** rendezvous server: the core's pure rendezvous state
//! machine ([`wormhole_sync_core::rendezvous`]) bound to HTTP/1.1 exactly as
//! `PROTOCOL.md` specifies, with durable storage (SQLite, or a PostgreSQL
//! database that several instances share: [`Storage::postgres`]),
//! long-polls, limits, health and Prometheus metrics.
//!
//! Run it with the `wormhole-sync-server` binary, or embed it:
//!
//! ```no_run
//! use wormhole_sync_server::{RunningServer, ServerConfig, Storage};
//!
//! # async fn demo() -> std::io::Result<()> {
//! let (storage, saved) = Storage::sqlite("rendezvous.sqlite3".as_ref()).expect("database opens");
//! let server = RunningServer::start("127.0.0.1:0".parse().unwrap(), ServerConfig::default(), storage, saved).await?;
//! println!("listening on http://{}", server.addr());
//! server.stop().await;
//! # Ok(()) }
//! ```
//!
//! # Options
//! [`ServerConfig`] holds every limit and timing: the rendezvous limits
//! (expiry, message size, channels), rate limits per client (IPv6 per /64),
//! budgets of stored bytes per client, per application id and in all,
//! connection caps, header, write and shutdown timeouts, the reverse proxies
//! to trust, and TLS ([`TlsFiles`], reloadable with [`TlsReloader`]). The
//! binaries' flags ([`cli::ServeArgs`]) map onto it one to one.
//!
//! # Errors
//! Every refusal is a JSON body `{"error": code, "message": text}` with one
//! of PROTOCOL.md's stable codes, also for requests hyper cannot parse; a
//! panic fails only its own request (`internal`, 500). Start-up failures
//! (the database, the address, the certificate) are `std::io::Error`s.
//!
//! # Secrets
//! The server never sees a code or a key: messages are sealed by the
//! clients. It stores them (SQLite, PostgreSQL) until their channel closes or expires,
//! and its logs name routes, status codes and timings, never message
//! bodies.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod budgets;
pub mod cli;
mod client_address;
mod connections;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod http;
mod mailbox;
mod metrics;
mod postgres;
mod rate_limit;
mod sqlite;
mod storage;
mod tls;
mod waiters;
mod write_timeout;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use rand_core::RngCore as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wormhole_sync_core::rendezvous::{Rendezvous, RendezvousConfig, RendezvousSnapshot};
use wormhole_sync_core::wire::ErrorCode;

pub use client_address::ClientIpHeader;
pub use ipnet::IpNet;
pub use storage::{Chain, Storage, StorageError};
pub use tls::{TlsFiles, TlsReloader};

/// Limits and timings of the server.
///
/// ```
/// use std::time::Duration;
/// use wormhole_sync_server::ServerConfig;
///
/// let mut config = ServerConfig::default();
/// config.rendezvous.channel_expiry = Duration::from_secs(60);
/// config.rate_limit_per_minute = 0;
/// assert_eq!(config.max_body_bytes, 128 * 1024);
/// ```
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The rendezvous limits: expiry, message size, channel caps, long-poll cap.
    pub rendezvous: RendezvousConfig,
    /// Largest request body read.
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive.
    pub body_timeout: Duration,
    /// Allocations and joins per minute per client address (0: off).
    pub rate_limit_per_minute: u32,
    /// Posts and fetches per minute per client address (0: off).
    pub message_rate_limit_per_minute: u32,
    /// Whether loopback clients are exempt from the rate limits (off: a
    /// reverse proxy on the same host must not turn the limits off; name
    /// it in `trusted_proxies` instead).
    pub rate_limit_exempt_loopback: bool,
    /// Reverse proxies whose `client_ip_header` names the client; everyone
    /// else is the client itself.
    pub trusted_proxies: Vec<IpNet>,
    /// The one header trusted proxies name the client in (no other is read).
    pub client_ip_header: ClientIpHeader,
    /// How often idle channels are swept.
    pub sweep_interval: Duration,
    /// How long a connection may take to send a request's headers (also
    /// while idle between keep-alive requests) before it is closed.
    pub header_timeout: Duration,
    /// How long a write may wait for the client to read before the
    /// connection is closed (a client that stops reading).
    pub write_timeout: Duration,
    /// Most bytes of a request's line and headers read; more is answered
    /// `headers-too-large` (431). At least 8 KiB (hyper's floor).
    pub max_header_bytes: usize,
    /// How long a shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Most open connections in all (0: no cap).
    pub max_connections: usize,
    /// Most open connections per client address (IPv6: per /64; trusted
    /// proxies exempt; 0: no cap).
    pub max_connections_per_address: usize,
    /// Most channels one client address (IPv6: per /64) may have made that
    /// are neither deleted nor finished (every side closed), whatever they
    /// hold (0: no cap). Bounds how few hosts can fill an application id.
    pub max_channels_per_address: usize,
    /// Most bytes of messages one client address (IPv6: per /64) may have
    /// stored at once (0: no budget).
    pub max_bytes_per_address: u64,
    /// Most bytes of messages one application id may have stored at once.
    pub max_bytes_per_app: u64,
    /// Most bytes of messages stored in all.
    pub max_bytes: u64,
    /// Most application ids with channels at once (0: no cap).
    pub max_apps: usize,
    /// Serve HTTPS with this certificate and key instead of HTTP.
    pub tls: Option<TlsFiles>,
    /// Message of the day for mailbox protocol clients (sent in `welcome`).
    pub motd: Option<String>,
    /// Whether the mailbox protocol's `list` names the nameplates in use (off:
    /// it names every number of each length in use, up to three digits, so
    /// it tells guessers nothing and clients that check the list still work).
    pub allow_list: bool,
    /// How long a mailbox protocol connection may stay silent (the server
    /// pings every minute; a live client's pong counts) before it is closed.
    pub websocket_idle_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            rendezvous: RendezvousConfig::default(),
            max_body_bytes: wormhole_sync_core::wire::MAX_REQUEST_BYTES,
            body_timeout: Duration::from_secs(10),
            rate_limit_per_minute: 120,
            message_rate_limit_per_minute: 1_200,
            rate_limit_exempt_loopback: false,
            trusted_proxies: Vec::new(),
            client_ip_header: ClientIpHeader::default(),
            sweep_interval: Duration::from_secs(60),
            header_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            shutdown_grace: Duration::from_secs(10),
            max_connections: 50_000,
            max_connections_per_address: 500,
            max_channels_per_address: 20,
            max_bytes_per_address: 16 * 1024 * 1024,
            max_bytes_per_app: 256 * 1024 * 1024,
            max_bytes: 2 * 1024 * 1024 * 1024,
            max_apps: 100_000,
            tls: None,
            motd: None,
            allow_list: false,
            websocket_idle_timeout: Duration::from_secs(600),
        }
    }
}

impl ServerConfig {
    /// The same, with every per-address limit off (rate limits and the
    /// connection cap per address: tests and load generators, whose
    /// clients all come from one address, or a server behind a limiter of
    /// its own).
    ///
    /// ```
    /// use wormhole_sync_server::ServerConfig;
    ///
    /// let config = ServerConfig::default().without_rate_limits();
    /// assert_eq!((config.rate_limit_per_minute, config.message_rate_limit_per_minute), (0, 0));
    /// ```
    pub fn without_rate_limits(mut self) -> ServerConfig {
        self.rate_limit_per_minute = 0;
        self.message_rate_limit_per_minute = 0;
        self.max_connections_per_address = 0;
        self.max_channels_per_address = 0;
        self.max_bytes_per_address = 0;
        self
    }
}

/// A bound server, ready to run.
pub struct Server {
    listener: TcpListener,
    app: Arc<http::App>,
    tls: Option<TlsReloader>,
}

impl Server {
    /// Binds `addr` and loads `saved` state (from [`Storage::sqlite`]).
    pub async fn bind(
        addr: SocketAddr,
        config: ServerConfig,
        storage: Storage,
        saved: RendezvousSnapshot,
    ) -> std::io::Result<Server> {
        let app = shared_state(config, storage, saved)?;
        let tls = app.config.tls.clone().map(TlsReloader::load).transpose()?;
        let listener = listen(addr)?;
        Ok(Server { listener, app, tls })
    }

    /// Reloads the certificate and key from their files (on SIGHUP, say),
    /// when serving HTTPS.
    pub fn tls_reloader(&self) -> Option<TlsReloader> {
        self.tls.clone()
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A description of the storage, for the start-up log line.
    pub fn storage_description(&self) -> String {
        self.app.storage.describe()
    }

    /// Serves until `shutdown` completes, then answers waiting long-polls,
    /// finishes in-flight requests and commits everything to storage.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let app = self.app.clone();
        let sweeper = tokio::spawn({
            let app = app.clone();
            async move {
                let mut ticks = tokio::time::interval(app.config.sweep_interval);
                loop {
                    ticks.tick().await;
                    let expired = app.sweep().await;
                    if expired > 0 {
                        tracing::info!(expired, "expired idle channels");
                    }
                }
            }
        });
        let listener =
            app.storage.shared().map(|postgres| tokio::spawn(postgres::listen(app.clone(), postgres.connect_config())));
        let router = http::router(app.clone());
        let timeouts = ConnectionLimits {
            header: app.config.header_timeout,
            write: app.config.write_timeout,
            shutdown_grace: app.config.shutdown_grace,
            max_header_bytes: app.config.max_header_bytes,
        };
        let connections = app.connections.clone();
        let served = serve_connections(self.listener, router, timeouts, connections, self.tls, async move {
            shutdown.await;
            app.begin_shutdown();
        })
        .await;
        let app = self.app;
        sweeper.abort();
        if let Some(listener) = listener {
            listener.abort();
        }
        // Waits for the writer thread's last commit: off the async threads.
        let _ = tokio::task::spawn_blocking(move || app.storage.close()).await;
        served
    }
}

/// Connections the kernel queues before the server accepts them. Tokio's
/// default (1,024) overflowed when thousands of clients connected at once,
/// and the kernel dropped the rest of the burst; the kernel caps it at
/// `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 8_192;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    // As `TcpListener::bind` does: a restarted server binds at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// What every connection's handlers share, with `saved` loaded and a
/// fresh seed for channel ids.
fn shared_state(config: ServerConfig, storage: Storage, saved: RendezvousSnapshot) -> std::io::Result<Arc<http::App>> {
    let mut seed = [0u8; 32];
    // Channel ids are drawn at random: seeded from the OS so nobody can predict them.
    rand_core::OsRng.try_fill_bytes(&mut seed).map_err(|e| std::io::Error::other(e.to_string()))?;
    shared_state_seeded(config, storage, saved, seed)
}

/// [`shared_state`] with ids drawn from `seed` (tests and fuzzing, which
/// must replay exactly).
fn shared_state_seeded(
    config: ServerConfig,
    storage: Storage,
    saved: RendezvousSnapshot,
    seed: [u8; 32],
) -> std::io::Result<Arc<http::App>> {
    let limits = if storage.shared().is_some() {
        // Kept in the database, over every instance: see `postgres::operation`.
        budgets::Limits { per_app: 0, per_client: 0, total: 0, channels_per_client: 0 }
    } else {
        budgets::Limits {
            per_app: config.max_bytes_per_app,
            per_client: config.max_bytes_per_address,
            total: config.max_bytes,
            channels_per_client: config.max_channels_per_address,
        }
    };
    let budgets = budgets::Budgets::new(limits, &saved);
    let core = Rendezvous::restore(config.rendezvous.clone(), saved, seed)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let proxies = client_address::ClientAddresses::new(config.trusted_proxies.clone(), config.client_ip_header);
    Ok(Arc::new(http::App {
        core: Mutex::new(core),
        storage,
        waiters: Default::default(),
        metrics: Default::default(),
        limiter: rate_limit::RateLimiter::new(config.rate_limit_per_minute, config.rate_limit_exempt_loopback),
        message_limiter: rate_limit::RateLimiter::new(
            config.message_rate_limit_per_minute,
            config.rate_limit_exempt_loopback,
        ),
        clients: proxies.clone(),
        budgets,
        connections: connections::Connections::new(config.max_connections, config.max_connections_per_address, proxies),
        config,
        stopping: AtomicBool::new(false),
        websockets: Default::default(),
        shutdown: Default::default(),
    }))
}

/// The smallest header buffer hyper accepts.
const MIN_HEADER_BUFFER: usize = 8 * 1024;

/// How long a connection may keep the server waiting, and how much it may
/// make it read before a request.
#[derive(Clone, Copy, Debug)]
struct ConnectionLimits {
    /// Most bytes of request line and headers buffered (hyper answers 431,
    /// which becomes `headers-too-large`).
    max_header_bytes: usize,
    /// For a request's headers, also while idle between requests.
    header: Duration,
    /// For any write to make progress: a client that stops reading is closed.
    write: Duration,
    /// For in-flight requests to finish once shutdown begins.
    shutdown_grace: Duration,
}

/// Accepts connections (within the caps of `connections`) until
/// `shutdown`, then lets each finish its in-flight request, for at most the
/// shutdown grace. Unlike `axum::serve`, hyper gets a timer, so a
/// connection that sends no request headers in time (idle keep-alive
/// included) is closed instead of held forever, and every write has a
/// timeout.
async fn serve_connections(
    listener: TcpListener,
    router: axum::Router,
    timeouts: ConnectionLimits,
    connections: Arc<connections::Connections>,
    tls: Option<TlsReloader>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};

    // HTTP/1.1 only, built directly: the version-sniffing `auto` builder keeps
    // state for HTTP/2 in every connection, which waiting clients pay for.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(timeouts.header);
    // hyper reads headers into one buffer and answers 431 once it is full
    // without a whole head (its default would read about 400 KB first).
    builder.max_buf_size(timeouts.max_header_bytes.max(MIN_HEADER_BUFFER));
    let builder = Arc::new(builder);
    // Shutdown is signalled to every connection; each holds a sender of
    // `finished`, so the channel closes once the last one has ended.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (finished, mut all_finished) = tokio::sync::mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let admitted = match connections.admit(peer.ip()) {
            Ok(admitted) => Arc::new(admitted),
            Err(refusal) => {
                tokio::spawn(turn_away(stream, refusal));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let stream = write_timeout::WriteTimeout::new(stream, timeouts.write);
        // A WebSocket keeps the admission (and so its place under the caps)
        // after the upgrade, for as long as it lives.
        let service = connection_service(router.clone(), peer, Some(admitted.clone()));
        let (builder, stopped, finished) = (builder.clone(), stopped.clone(), finished.clone());
        let acceptor = tls.as_ref().map(TlsReloader::acceptor);
        tokio::spawn(async move {
            let ended = match acceptor {
                None => serve_until_stopped(&builder, TokioIo::new(stream), service, stopped).await,
                Some(acceptor) => {
                    // The handshake gets the time a request's headers get.
                    match tokio::time::timeout(timeouts.header, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_until_stopped(&builder, TokioIo::new(stream), service, stopped).await,
                        Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => return tracing::debug!("TLS handshake timed out"),
                    }
                }
            };
            if let Err(e) = ended {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            drop((admitted, finished));
        });
    }
    drop(listener);
    let _ = stop.send(true);
    drop(finished);
    if tokio::time::timeout(timeouts.shutdown_grace, all_finished.recv()).await.is_err() {
        tracing::warn!(open = connections.open(), "shutdown grace over: leaving the connections still open");
    }
    Ok(())
}

/// Serves one connection's requests (a WebSocket upgrade included) until it
/// ends, or until `stopped` turns true: then the request in flight is
/// finished and the connection closed.
async fn serve_until_stopped<I, S, B>(
    builder: &hyper::server::conn::http1::Builder,
    io: I,
    service: S,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = builder.serve_connection(io, service).with_upgrades();
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        ended = connection.as_mut() => return ended,
        _ = stopped.wait_for(|stop| *stop) => {}
    }
    connection.as_mut().graceful_shutdown();
    connection.await
}

/// The service one connection's requests go to: the router, told the
/// peer's address, with a panic failing only its own request (a 500).
fn connection_service(
    router: axum::Router,
    peer: SocketAddr,
    admitted: Option<Arc<connections::Admitted>>,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone {
    use futures_util::FutureExt as _;
    use tower::ServiceExt as _;

    hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        if let Some(admitted) = &admitted {
            request.extensions_mut().insert(admitted.clone());
        }
        let answer = router.clone().oneshot(request.map(axum::body::Body::new));
        async move {
            match std::panic::AssertUnwindSafe(answer).catch_unwind().await {
                Ok(answer) => answer,
                Err(_) => {
                    tracing::error!("a request handler panicked; answered 500");
                    Ok(http::internal_error())
                }
            }
        }
    })
}

/// Answers a connection over a cap with the error, then closes it.
async fn turn_away(mut stream: tokio::net::TcpStream, refusal: connections::Refusal) {
    use tokio::io::AsyncWriteExt as _;
    let e = match refusal {
        connections::Refusal::Full => wormhole_sync_core::wire::WireError::new(
            ErrorCode::ServerFull,
            "the server holds as many connections as it allows",
        ),
        connections::Refusal::TooManyFromAddress => {
            wormhole_sync_core::wire::WireError::new(ErrorCode::RateLimited, "too many connections from this address")
        }
    };
    let body = e.to_json();
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        e.http_status(),
        if e.http_status() == 429 { "Too Many Requests" } else { "Service Unavailable" },
        body.len()
    );
    let answer = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
}

/// A server running on a background task (tests, embedding).
pub struct RunningServer {
    addr: SocketAddr,
    https: bool,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Binds and starts serving.
    pub async fn start(
        addr: SocketAddr,
        config: ServerConfig,
        storage: Storage,
        saved: RendezvousSnapshot,
    ) -> std::io::Result<RunningServer> {
        let server = Server::bind(addr, config, storage, saved).await?;
        let addr = server.local_addr()?;
        let https = server.tls.is_some();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Ok(RunningServer { addr, https, stop: Some(stop), task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, e.g. `http://127.0.0.1:4000` (`https://` when serving TLS).
    pub fn url(&self) -> String {
        format!("{}://{}", if self.https { "https" } else { "http" }, self.addr)
    }

    /// Shuts down gracefully and waits until storage is flushed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A server on a runtime of its own, for blocking programs and tests:
/// starts at once, serves on background threads, and stops (flushing
/// storage) on [`stop`](Self::stop) or drop.
///
/// ```
/// use wormhole_sync_core::rendezvous::RendezvousSnapshot;
/// use wormhole_sync_server::{BackgroundServer, ServerConfig, Storage};
///
/// let server = BackgroundServer::start(
///     "127.0.0.1:0".parse().unwrap(),
///     ServerConfig::default(),
///     Storage::memory(),
///     RendezvousSnapshot::new(Vec::new()),
/// )?;
/// assert!(server.url().starts_with("http://127.0.0.1:"));
/// server.stop();
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct BackgroundServer {
    runtime: tokio::runtime::Runtime,
    server: Option<RunningServer>,
    addr: SocketAddr,
    url: String,
}

impl BackgroundServer {
    /// Binds and starts serving on two background threads.
    pub fn start(
        addr: SocketAddr,
        config: ServerConfig,
        storage: Storage,
        saved: RendezvousSnapshot,
    ) -> std::io::Result<BackgroundServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let server = runtime.block_on(RunningServer::start(addr, config, storage, saved))?;
        let (addr, url) = (server.addr(), server.url());
        Ok(BackgroundServer { runtime, server: Some(server), addr, url })
    }

    /// Connects to a PostgreSQL database that other instances may share
    /// (see [`Storage::postgres`]), then binds and starts serving on two
    /// background threads.
    ///
    /// ```no_run
    /// use wormhole_sync_server::{BackgroundServer, ServerConfig};
    ///
    /// let url = "postgres://wormhole@127.0.0.1/wormhole";
    /// let a = BackgroundServer::postgres("127.0.0.1:0".parse().unwrap(), ServerConfig::default(), url)?;
    /// let b = BackgroundServer::postgres("127.0.0.1:0".parse().unwrap(), ServerConfig::default(), url)?;
    /// // An exchange may now start on a and finish on b.
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn postgres(addr: SocketAddr, config: ServerConfig, url: &str) -> std::io::Result<BackgroundServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let server = runtime.block_on(async {
            let (storage, saved) = Storage::postgres(url).await.map_err(std::io::Error::other)?;
            RunningServer::start(addr, config, storage, saved).await
        })?;
        let (addr, url) = (server.addr(), server.url());
        Ok(BackgroundServer { runtime, server: Some(server), addr, url })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, e.g. `http://127.0.0.1:4000` (`https://` when serving TLS).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Shuts down gracefully and waits until storage is flushed.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.stop());
        }
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn a_panicking_handler_fails_only_its_own_request() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let shared = Arc::new(Mutex::new(0u32));
        let router = axum::Router::new()
            .route(
                "/boom",
                axum::routing::get({
                    let shared = shared.clone();
                    move || async move {
                        let _held = shared.lock();
                        if _held.checked_add(0).is_some() {
                            panic!("a bug in a handler, with a lock held");
                        }
                        "unreachable"
                    }
                }),
            )
            .route(
                "/ok",
                axum::routing::get({
                    let shared = shared.clone();
                    move || async move {
                        *shared.lock() += 1;
                        "fine"
                    }
                }),
            );
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let timeouts = ConnectionLimits {
            header: Duration::from_secs(5),
            write: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
            max_header_bytes: 16 * 1024,
        };
        let connections = connections::Connections::new(0, 0, client_address::ClientAddresses::default());
        let served = runtime.spawn(serve_connections(listener, router, timeouts, connections, None, async move {
            let _ = stopped.await;
        }));
        let boom = get(addr, "/boom");
        assert!(boom.starts_with("HTTP/1.1 500"), "{boom}");
        assert!(boom.contains(r#""error":"internal""#), "{boom}");
        for _ in 0..3 {
            let ok = get(addr, "/ok");
            assert!(ok.starts_with("HTTP/1.1 200") && ok.ends_with("fine"), "{ok}");
        }
        assert_eq!(*shared.lock(), 3, "the lock the panic held is usable");
        let _ = stop.send(());
        runtime.block_on(served).unwrap().unwrap();
    }
}
