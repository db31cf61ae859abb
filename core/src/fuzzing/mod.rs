//! Stateful fuzz targets with invariants (feature `fuzzing`): each takes the
//! fuzzer's bytes, reads them as a sequence of operations with `arbitrary`,
//! runs it and panics with the invariant that broke. The `fuzz/` crate's
//! targets call them; this crate's tests replay the committed corpus and
//! every input that once failed through the same functions.
//!
//! ```
//! // Any bytes are a valid input; these make a few random operations.
//! wormhole_sync_core::fuzzing::rendezvous_ops::run(b"\x00\x01\x02\x03\x04\x05\x06\x07");
//! wormhole_sync_core::fuzzing::exchange_ops::run(b"\x01\x00\x00\x07\x03\x00");
//! ```
//!
//! `WORMHOLE_FUZZ_TRACE=1` prints each operation as it runs.

pub mod exchange_ops;
pub mod rendezvous_ops;

/// Whether to print each operation as it runs (`WORMHOLE_FUZZ_TRACE=1`), to
/// read how a failing input got there.
fn tracing() -> bool {
    std::env::var_os("WORMHOLE_FUZZ_TRACE").is_some()
}
