//! Replays, through the same functions the fuzz targets call, every input
//! that once broke a rule (`fuzz/regressions/<target>/`) and the committed
//! corpus (`fuzz/corpus/<target>/`), so `cargo test` keeps them passing
//! without a fuzzer.

use wormhole_sync_core::fuzzing::replay_committed;
use wormhole_sync_server::fuzzing::{http_requests, notification, sqlite_file};

fn replay(target: &str, run: fn(&[u8])) {
    replay_committed(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz"), target, run);
}

#[test]
fn http_requests_inputs_hold() {
    replay("http_requests", http_requests::run);
}

#[test]
fn sqlite_file_inputs_hold() {
    replay("sqlite_file", sqlite_file::run);
}

#[test]
fn notification_inputs_hold() {
    replay("notification_payload", notification::run);
}
