//! Servers started for tests and embedding: on a background task of the
//! caller's runtime, or on a thread of their own.

use std::net::SocketAddr;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wormhole_sync_core::rendezvous::RendezvousSnapshot;

use crate::{Server, ServerConfig, Storage};

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
