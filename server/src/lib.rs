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

//!
//! # Modules
//! - `config`: [`ServerConfig`], with its `clock`. `cli`: the binaries'
//!   flags onto it.
//! - `net`: the listening socket, the accept loop and its connection caps
//!   (`connections`, `client_address`), TLS (`tls`), the header deadline
//!   and the write deadline (`write_deadline`, below TLS), hyper's own
//!   error answers made JSON (`error_answers`, above TLS), graceful
//!   shutdown, JSON answers. It serves an `axum::Router` and imports no
//!   front end and no engine.
//! - `app`: the state the front ends share: the engine, the waiters, rate
//!   limiters and metrics; running one operation (a core `Op`) and then
//!   waking the `waiters` of the mailboxes with news and logging finished
//!   exchanges; the sweep.
//! - Front ends, as adapters: `http` (the HTTP API of PROTOCOL.md) and
//!   `mailbox` (magic-wormhole's WebSocket protocol) parse, rate-limit (by
//!   the `Op`'s limits), hand an `Op` to `app` and answer. Their rules are
//!   the core's: `MailboxSession` (one connection) and `LongPoll` (a held
//!   request), which the simulation runs too. With `rate_limit` and `metrics`.
//! - `engine`: one engine per storage model behind one type, and the only
//!   module that asks which model is in use. Local: the state in memory
//!   (the truth), caps and `budgets` in memory, its changes journaled
//!   (`storage`: to nothing, or as `change`s to `sqlite`) and durable
//!   before an answer. Shared: `postgres`, a database several instances
//!   share, one transaction per operation, caps counted there
//!   (`postgres::caps`). `error`: [`StorageError`], [`Chain`].
//! - `testing`: [`RunningServer`] and [`BackgroundServer`].
//!
//! Words are the core's (nameplate, mailbox, channel, side, member: see
//! [`wormhole_sync_core::rendezvous`]).
//!
//! Dependency rules (`tests/structure.rs` checks them): no module imports
//! one that imports it back; `net` imports neither a front end nor an
//! engine; an engine never imports a front end.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod app;
mod budgets;
mod change;
pub mod cli;
mod client_address;
mod clock;
mod config;
mod connections;
mod cors;
mod engine;
mod error;
mod error_answers;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod http;
mod mailbox;
mod metrics;
mod net;
mod page;
mod postgres;
mod rate_limit;
mod sqlite;
mod storage;
mod testing;
mod tls;
mod waiters;
mod write_deadline;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use rand_core::RngCore as _;
use tokio::net::TcpListener;
use wormhole_sync_core::rendezvous::RendezvousSnapshot;

pub use client_address::ClientIpHeader;
pub use clock::Clock;
pub use config::ServerConfig;
pub use cors::CorsOrigin;
pub use error::{Chain, StorageError};
pub use ipnet::IpNet;
pub use storage::{Storage, DEFAULT_POSTGRES_POOL};
pub use testing::{BackgroundServer, RunningServer};
pub use tls::{TlsFiles, TlsReloader};

use net::{listen, serve_connections, ConnectionLimits};

/// A bound server, ready to run.
pub struct Server {
    listener: TcpListener,
    app: Arc<app::App>,
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
        self.app.engine.describe()
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
        let listener = app.engine.listen(app.waiters.clone());
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
        let _ = tokio::task::spawn_blocking(move || app.engine.close()).await;
        served
    }
}

/// What every connection's handlers share, with `saved` loaded and a
/// fresh seed for channel ids.
fn shared_state(config: ServerConfig, storage: Storage, saved: RendezvousSnapshot) -> std::io::Result<Arc<app::App>> {
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
) -> std::io::Result<Arc<app::App>> {
    let engine = engine::Engine::new(&config, storage, saved, seed)?;
    let proxies = client_address::ClientAddresses::new(config.trusted_proxies.clone(), config.client_ip_header);
    Ok(Arc::new(app::App {
        engine,
        waiters: Default::default(),
        metrics: Default::default(),
        limiter: rate_limit::RateLimiter::new(config.rate_limit_per_minute, config.rate_limit_exempt_loopback),
        message_limiter: rate_limit::RateLimiter::new(
            config.message_rate_limit_per_minute,
            config.rate_limit_exempt_loopback,
        ),
        clients: proxies.clone(),
        connections: connections::Connections::new(config.max_connections, config.max_connections_per_address, proxies),
        config,
        stopping: AtomicBool::new(false),
        websockets: Default::default(),
        shutdown: Default::default(),
    }))
}
