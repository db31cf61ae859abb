//! Two exchanges behind a hostile network and server, with invariants
//! checked at every step (see `wormhole_sync_core::fuzzing::exchange_ops`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wormhole_sync_core::fuzzing::exchange_ops::run(data));
