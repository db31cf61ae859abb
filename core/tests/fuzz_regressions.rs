//! Replays, through the same functions the fuzz targets call, every input
//! that once broke an invariant (`fuzz/regressions/<target>/`) and the
//! committed corpus (`fuzz/corpus/<target>/`), so `cargo test` keeps them
//! passing without a fuzzer.

use wormhole_sync_core::fuzzing::replay_committed;
use wormhole_sync_core::fuzzing::{exchange_ops, mailbox_exchange_ops, mailbox_sessions, rendezvous_ops};

fn replay(target: &str, run: fn(&[u8])) {
    replay_committed(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz"), target, run);
}

#[test]
fn rendezvous_ops_inputs_hold() {
    replay("rendezvous_ops", rendezvous_ops::run);
}

#[test]
fn exchange_ops_inputs_hold() {
    replay("exchange_ops", exchange_ops::run);
}

#[test]
fn mailbox_exchange_ops_inputs_hold() {
    replay("mailbox_exchange_ops", mailbox_exchange_ops::run);
}

#[test]
fn mailbox_sessions_inputs_hold() {
    replay("mailbox_sessions", mailbox_sessions::run);
}
