//! The server's configuration: every limit and timing, in one value.

use std::time::Duration;

use wormhole_sync_core::rendezvous::RendezvousConfig;

use crate::{ClientIpHeader, Clock, CorsOrigin, IpNet, TlsFiles};

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
    /// Origins whose web pages may call the HTTP API from a browser (CORS);
    /// none by default.
    pub cors_origins: Vec<CorsOrigin>,
    /// Whether a browser opening `/` gets the page that sends and receives
    /// (on by default; off, it gets the plain-text description, as scripts
    /// always do).
    pub page: bool,
    /// Where the time is read (the system's clock; tests set a
    /// [`Clock::manual`] one to move past expiry without waiting).
    pub clock: Clock,
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
            cors_origins: Vec::new(),
            page: true,
            clock: Clock::system(),
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
