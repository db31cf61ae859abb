//! `wormhole-sync-server`: the rendezvous server binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use wormhole_sync_core::rendezvous::RendezvousSnapshot;
use wormhole_sync_server::{Server, ServerConfig, Storage};

/// jemalloc with background purging returns what a burst of connections
/// freed to the system (BENCHMARKS.md: memory per waiting client).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The wormhole-sync rendezvous server.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Address and port to listen on (use 0.0.0.0:4000 to serve other machines).
    #[arg(long, default_value = "127.0.0.1:4000", env = "WORMHOLE_SYNC_LISTEN")]
    listen: SocketAddr,
    /// SQLite database file (created if missing).
    #[arg(long, default_value = "wormhole-sync.sqlite3", env = "WORMHOLE_SYNC_DB", conflicts_with = "memory")]
    db: PathBuf,
    /// Keep everything in memory instead (lost on restart).
    #[arg(long)]
    memory: bool,
    /// Delete channels idle for this long (e.g. 3d, 12h, 90s).
    #[arg(long, default_value = "3d", value_parser = parse_duration)]
    channel_expiry: Duration,
    /// How often to look for idle channels.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    sweep_interval: Duration,
    /// Keep a channel burned by a wrong code this long after its sides left,
    /// so its id is not handed out again and a late join learns "burned".
    #[arg(long, default_value = "5m", value_parser = parse_duration, env = "WORMHOLE_SYNC_BURNED_RETENTION")]
    burned_retention: Duration,
    /// Largest message body, in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    max_message_bytes: usize,
    /// Most messages per channel.
    #[arg(long, default_value_t = 16)]
    max_messages_per_channel: usize,
    /// Most channels per application id.
    #[arg(long, default_value_t = 10_000)]
    max_channels_per_app: usize,
    /// Most channels in all.
    #[arg(long, default_value_t = 1_000_000)]
    max_channels: usize,
    /// Longest long-poll wait granted.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    max_wait: Duration,
    /// Close connections that send no request headers for this long (idle keep-alive included).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    header_timeout: Duration,
    /// Largest request body read, in bytes.
    #[arg(long, default_value_t = 128 * 1024)]
    max_body_bytes: usize,
    /// Allocations and joins per minute per client address (0 turns it off).
    #[arg(long, default_value_t = 120)]
    rate_limit: u32,
    /// Rate-limit loopback clients too.
    #[arg(long)]
    rate_limit_loopback: bool,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

/// Parses `500ms`, `90s`, `15m`, `12h`, `3d`, or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 90s or 3d"))?;
    let millis = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("unknown unit {unit:?}: use ms, s, m, h or d")),
    };
    number.checked_mul(millis).map(Duration::from_millis).ok_or_else(|| "duration too long".into())
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

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // Purge freed pages after jemalloc's decay time even while the server idles.
    let _ = tikv_jemalloc_ctl::background_thread::write(true);
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
    config.rate_limit_per_minute = args.rate_limit;
    config.rate_limit_loopback = args.rate_limit_loopback;
    config.sweep_interval = args.sweep_interval;
    config.header_timeout = args.header_timeout;

    let (storage, saved) = if args.memory {
        (Storage::memory(), RendezvousSnapshot::new(Vec::new()))
    } else {
        match Storage::sqlite(&args.db) {
            Ok(opened) => opened,
            Err(e) => {
                eprintln!("wormhole-sync-server: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    };
    let channels = saved.channels.len();
    let server = match Server::bind(args.listen, config, storage, saved).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("wormhole-sync-server: cannot listen on {}: {e}", args.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    let addr = server.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(%addr, storage = %server.storage_description(), channels, "listening on http://{addr}");
    match server.run(shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wormhole-sync-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("3d"), Ok(Duration::from_secs(3 * 86_400)));
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
