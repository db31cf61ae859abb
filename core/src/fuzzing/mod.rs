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
//! wormhole_sync_core::fuzzing::mailbox_sessions::run(b"\x00\x01\x03\x05");
//! ```
//!
//! `WORMHOLE_FUZZ_TRACE=1` prints each operation as it runs.

pub mod exchange_ops;
pub mod mailbox_exchange_ops;
pub mod mailbox_sessions;
pub mod rendezvous_ops;

/// Whether to print each operation as it runs (`WORMHOLE_FUZZ_TRACE=1`), to
/// read how a failing input got there.
fn tracing() -> bool {
    std::env::var_os("WORMHOLE_FUZZ_TRACE").is_some()
}

/// Runs every input committed for `target` under `fuzz_dir` (its
/// `regressions/<target>/` and `corpus/<target>/`) through `run`, as the
/// crates' tests do; panics naming the first input that breaks a rule, or
/// if there is none at all (the corpus is part of the repository).
pub fn replay_committed(fuzz_dir: &std::path::Path, target: &str, run: fn(&[u8])) {
    let mut files = Vec::new();
    for dir in ["regressions", "corpus"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir.join(dir).join(target)) else { continue };
        files.extend(entries.filter_map(|e| Some(e.ok()?.path())));
    }
    files.sort();
    assert!(!files.is_empty(), "no committed inputs for {target} under {}", fuzz_dir.display());
    for file in files {
        let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{} breaks a rule again", file.display());
    }
}
