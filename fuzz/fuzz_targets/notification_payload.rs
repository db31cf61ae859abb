//! The payloads instances on one PostgreSQL database notify each other
//! with: parsed without a panic, a state taken only for the mailbox named
//! (see `wormhole_sync_server::fuzzing::notification`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wormhole_sync_server::fuzzing::notification::run(data));
