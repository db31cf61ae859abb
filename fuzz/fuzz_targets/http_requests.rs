//! The server's HTTP handling, in process: every answer is well-formed
//! JSON with a documented code, never a 500 (see
//! `wormhole_sync_server::fuzzing::http_requests`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wormhole_sync_server::fuzzing::http_requests::run(data));
