//! The mailbox protocol's sessions (the core's own, no runtime): every
//! frame acknowledged and answered, no message pushed twice, the shared
//! state consistent (see `wormhole_sync_core::fuzzing::mailbox_sessions`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wormhole_sync_core::fuzzing::mailbox_sessions::run(data));
