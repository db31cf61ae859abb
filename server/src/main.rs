//! `wormhole-sync-server`: the rendezvous server binary.

use clap::Parser;
use wormhole_sync_server::cli::{serve, ServeArgs};

/// jemalloc with background purging returns what a burst of connections
/// freed to the system (BENCHMARKS.md: memory per waiting client).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The wormhole-sync rendezvous server.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Purge freed pages after jemalloc's decay time even while the server idles.
    let _ = tikv_jemalloc_ctl::background_thread::write(true);
    serve(Cli::parse().serve, "wormhole-sync-server").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
