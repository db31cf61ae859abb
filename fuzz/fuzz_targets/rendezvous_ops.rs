//! The rendezvous machine under request sequences from several sides, a
//! moving clock and restarts, with invariants checked at every step (see
//! `wormhole_sync_core::fuzzing::rendezvous_ops`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wormhole_sync_core::fuzzing::rendezvous_ops::run(data));
