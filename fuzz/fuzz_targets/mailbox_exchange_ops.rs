//! Two magic-wormhole flavour exchanges behind a hostile network and
//! mailbox server, with invariants checked at every step (see
//! `wormhole_sync_core::fuzzing::mailbox_exchange_ops`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wormhole_sync_core::fuzzing::mailbox_exchange_ops::run(data));
