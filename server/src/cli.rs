//! The server's command line: its options and how to run with them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use wormhole_sync_core::parse_duration;
use wormhole_sync_core::rendezvous::RendezvousSnapshot;

use crate::error::Chain;
use crate::{ClientIpHeader, CorsOrigin, IpNet, Server, ServerConfig, Storage, TlsFiles, TlsReloader};

/// An address or a CIDR block: `127.0.0.1`, `10.0.0.0/8`, `2001:db8::/32`.
fn parse_net(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an address or a CIDR block like 10.0.0.0/8"))
}

/// The server's command-line options, shared by `wormhole-sync-server` and
/// `wormhole-sync serve` (same names, same environment variables).
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address and port to listen on (use 0.0.0.0:4000 to serve other machines).
    #[arg(long, default_value = "127.0.0.1:4000", env = "WORMHOLE_SYNC_LISTEN")]
    pub listen: SocketAddr,
    /// SQLite database file (created if missing).
    #[arg(long, default_value = "wormhole-sync.sqlite3", env = "WORMHOLE_SYNC_DB", conflicts_with = "memory")]
    pub db: PathBuf,
    /// Keep everything in memory instead (lost on restart).
    #[arg(long)]
    pub memory: bool,
    /// Keep everything in this PostgreSQL database instead
    /// (postgres://user:password@host:port/database), which any number of
    /// instances may share; the schema is created or migrated at start-up.
    /// Add ?sslmode=require for TLS, the database's certificate verified
    /// against the built-in roots or &sslrootcert=FILE's.
    #[arg(long, value_name = "URL", env = "WORMHOLE_SYNC_POSTGRES", conflicts_with_all = ["memory", "db"], hide_env_values = true)]
    pub postgres: Option<String>,
    /// Connections this instance keeps to PostgreSQL: one per transaction
    /// or read in progress (a batch of operations shares one). Every
    /// instance's, plus one each for its notifications, must fit the
    /// database's `max_connections`.
    #[arg(long, value_name = "N", default_value_t = crate::storage::DEFAULT_POSTGRES_POOL, requires = "postgres", value_parser = clap::value_parser!(u16).range(2..))]
    pub postgres_pool: u16,
    /// Delete channels idle for this long (e.g. 3d, 12h, 90s).
    #[arg(long, default_value = "3d", value_parser = parse_duration)]
    pub channel_expiry: Duration,
    /// How often to look for idle channels.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub sweep_interval: Duration,
    /// Keep a channel burned by a wrong code, used by two sides, or left by
    /// its only side this long after its sides left, so its id is not
    /// handed out again and a late join learns "burned", "crowded" or
    /// "abandoned".
    #[arg(long, default_value = "5m", value_parser = parse_duration, env = "WORMHOLE_SYNC_BURNED_RETENTION")]
    pub burned_retention: Duration,
    /// Largest message body, in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_message_bytes: usize,
    /// Most messages per channel.
    #[arg(long, default_value_t = 16)]
    pub max_messages_per_channel: usize,
    /// Most channels per application id.
    #[arg(long, default_value_t = 10_000)]
    pub max_channels_per_app: usize,
    /// Most channels in all.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_channels: usize,
    /// Longest long-poll wait granted.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub max_wait: Duration,
    /// Close connections that send no request headers for this long (idle keep-alive included).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Most bytes of a request's line and headers read (at least 8192); more
    /// is answered headers-too-large (431).
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,
    /// Largest request body read, in bytes.
    #[arg(long, default_value_t = 128 * 1024)]
    pub max_body_bytes: usize,
    /// Allocations and joins per minute per client address (0 turns it off).
    #[arg(long, default_value_t = 120)]
    pub rate_limit: u32,
    /// Posts and fetches per minute per client address (0 turns it off).
    #[arg(long, default_value_t = 1_200)]
    pub rate_limit_messages: u32,
    /// Exempt loopback clients from the rate limits (local testing; behind a
    /// reverse proxy on the same host, use --trusted-proxy instead).
    #[arg(long)]
    pub rate_limit_exempt_loopback: bool,
    /// A reverse proxy (address or CIDR, repeatable or comma-separated) whose
    /// --client-ip-header names the client.
    #[arg(long = "trusted-proxy", value_name = "CIDR", env = "WORMHOLE_SYNC_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<IpNet>,
    /// An origin whose web pages may call the HTTP API from a browser
    /// (CORS), like `https://app.example` (repeatable or comma-separated; *
    /// for any). None by default.
    #[arg(long = "cors-origin", value_name = "ORIGIN", env = "WORMHOLE_SYNC_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<CorsOrigin>,
    /// Serve no page to browsers at `/` (they get the plain-text
    /// description instead; the HTTP API is unchanged).
    #[arg(long)]
    pub no_page: bool,
    /// The one header a trusted proxy names the client in: x-forwarded-for,
    /// forwarded or x-real-ip (no other is read; the proxy must set or
    /// append to this one).
    #[arg(long, value_name = "HEADER", env = "WORMHOLE_SYNC_CLIENT_IP_HEADER", default_value = "x-forwarded-for")]
    pub client_ip_header: ClientIpHeader,
    /// Close a connection whose client has not read for this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub write_timeout: Duration,
    /// On SIGTERM or Ctrl-C, wait this long for in-flight requests.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Most open connections in all (0: no cap).
    #[arg(long, default_value_t = 50_000)]
    pub max_connections: usize,
    /// Most open connections per client address (0: no cap; trusted proxies exempt).
    #[arg(long, default_value_t = 500)]
    pub max_connections_per_address: usize,
    /// Most channels one client address (IPv6: per /64) may hold, whatever
    /// they hold, until they are deleted or every side closed them (0: no cap).
    #[arg(long, default_value_t = 20)]
    pub max_channels_per_address: usize,
    /// Most bytes of messages one client address (IPv6: per /64) may have stored
    /// at once (0: no budget).
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_bytes_per_address: u64,
    /// Most bytes of messages one application id may have stored at once (0: no budget).
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    pub max_bytes_per_app: u64,
    /// Most bytes of messages stored in all (0: no budget).
    #[arg(long, default_value_t = 2 * 1024 * 1024 * 1024)]
    pub max_bytes: u64,
    /// Most application ids with channels at once (0: no cap).
    #[arg(long, default_value_t = 100_000)]
    pub max_apps: usize,
    /// Serve HTTPS with this certificate chain (PEM; with --tls-key), read
    /// again on SIGHUP.
    #[arg(long, value_name = "PEM", env = "WORMHOLE_SYNC_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "PEM", env = "WORMHOLE_SYNC_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Message of the day, shown by `wormhole` clients of the mailbox
    /// protocol (WebSocket, /v1) when they connect.
    #[arg(long, env = "WORMHOLE_SYNC_MOTD")]
    pub motd: Option<String>,
    /// Answer the mailbox protocol's `list` with the nameplates in use (off:
    /// every number of each length in use, up to three digits, so clients
    /// that check their nameplate is listed find it, and nobody learns which
    /// are in use).
    #[arg(long)]
    pub allow_list: bool,
    /// Close a mailbox protocol connection that sends nothing (not even a
    /// pong to the server's pings, sent every minute) for this long.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub websocket_idle_timeout: Duration,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down: answering long-polls and flushing storage");
}

/// Reads the certificate and key again on every SIGHUP. Without TLS there
/// is nothing to read again, but SIGHUP (`systemctl reload`) must not stop
/// the server, as its default action would.
#[cfg(unix)]
async fn reload_on_sighup(mut hangups: tokio::signal::unix::Signal, tls: Option<TlsReloader>) {
    while hangups.recv().await.is_some() {
        match tls.as_ref().map(TlsReloader::reload) {
            Some(Ok(())) => tracing::info!("reloaded the TLS certificate and key"),
            Some(Err(e)) => tracing::error!(error = %e, "kept the TLS certificate in use: the new one cannot be read"),
            None => tracing::info!("SIGHUP: nothing to reload (no --tls-cert)"),
        }
    }
}

/// Runs the server as the options say until SIGINT or SIGTERM, logging to
/// standard output; `name` prefixes the errors it prints.
pub async fn serve(args: ServeArgs, name: &str) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    if args.log_format == "json" {
        tracing_subscriber::fmt().with_env_filter(filter).json().init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).init();
    }
    let mut config = ServerConfig::default();
    config.rendezvous.channel_expiry = args.channel_expiry;
    config.rendezvous.max_message_bytes = args.max_message_bytes;
    config.rendezvous.max_messages_per_channel = args.max_messages_per_channel;
    config.rendezvous.max_channels_per_app = args.max_channels_per_app;
    config.rendezvous.max_channels = args.max_channels;
    config.rendezvous.max_wait = args.max_wait;
    config.rendezvous.burned_retention = args.burned_retention;
    config.max_body_bytes = args.max_body_bytes;
    config.max_header_bytes = args.max_header_bytes;
    config.rate_limit_per_minute = args.rate_limit;
    config.message_rate_limit_per_minute = args.rate_limit_messages;
    config.rate_limit_exempt_loopback = args.rate_limit_exempt_loopback;
    config.trusted_proxies = args.trusted_proxies.clone();
    config.client_ip_header = args.client_ip_header;
    config.cors_origins = args.cors_origins.clone();
    config.page = !args.no_page;
    config.sweep_interval = args.sweep_interval;
    config.header_timeout = args.header_timeout;
    config.write_timeout = args.write_timeout;
    config.shutdown_grace = args.shutdown_grace;
    config.max_connections = args.max_connections;
    config.max_connections_per_address = args.max_connections_per_address;
    config.max_channels_per_address = args.max_channels_per_address;
    config.max_bytes_per_address = args.max_bytes_per_address;
    config.max_bytes_per_app = args.max_bytes_per_app;
    config.max_bytes = args.max_bytes;
    config.max_apps = args.max_apps;
    config.motd = args.motd.clone();
    config.allow_list = args.allow_list;
    config.websocket_idle_timeout = args.websocket_idle_timeout;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config.tls = Some(TlsFiles { cert: cert.clone(), key: key.clone() });
    }

    let (storage, saved) = if let Some(url) = &args.postgres {
        match Storage::postgres_with_pool(url, usize::from(args.postgres_pool)).await {
            Ok(opened) => opened,
            Err(e) => {
                eprintln!("{name}: {}", Chain(&e));
                return ExitCode::FAILURE;
            }
        }
    } else if args.memory {
        (Storage::memory(), RendezvousSnapshot::new(Vec::new()))
    } else {
        match Storage::sqlite(&args.db) {
            Ok(opened) => opened,
            Err(e) => {
                eprintln!("{name}: {}", Chain(&e));
                return ExitCode::FAILURE;
            }
        }
    };
    let channels = saved.mailboxes.len();
    let server = match Server::bind(args.listen, config, storage, saved).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("{name}: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = server.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let scheme = if server.tls_reloader().is_some() { "https" } else { "http" };
    tracing::info!(%addr, storage = %server.storage_description(), channels, "listening on {scheme}://{addr}");
    let ws = if scheme == "https" { "wss" } else { "ws" };
    // The address to give clients: this one, unless it is every interface's.
    let reach = match server.local_addr() {
        Ok(a) if a.ip().is_unspecified() => format!("THIS-MACHINE:{}", a.port()),
        _ => addr.clone(),
    };
    tracing::info!(
        "wormhole-sync clients: wormhole-sync send --rendezvous {scheme}://{reach} (or WORMHOLE_SYNC_RENDEZVOUS)"
    );
    tracing::info!("wormhole clients: wormhole --relay-url {ws}://{reach}/v1 send");
    // Listening before the server answers anything, so no SIGHUP finds the default action.
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangups) => drop(tokio::spawn(reload_on_sighup(hangups, server.tls_reloader()))),
        Err(e) => tracing::warn!(error = %e, "cannot listen for SIGHUP: it would stop the server"),
    }
    match server.run(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}
