//! The SQLite loader on damaged databases: a clear error, never a panic or
//! a partial load (see `wormhole_sync_server::fuzzing::sqlite_file`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wormhole_sync_server::fuzzing::sqlite_file::run(data));
