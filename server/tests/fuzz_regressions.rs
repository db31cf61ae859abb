//! Replays, through the same functions the fuzz targets call, every input
//! that once broke a rule (`fuzz/regressions/<target>/`) and the committed
//! corpus (`fuzz/corpus/<target>/`), so `cargo test` keeps them passing
//! without a fuzzer.

use std::path::{Path, PathBuf};

use wormhole_sync_server::fuzzing::{http_requests, sqlite_file};

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files = Vec::new();
    for dir in ["regressions", "corpus"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else { continue };
        files.extend(entries.map(|e| e.expect("readable directory").path()));
    }
    files.sort();
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "no committed inputs for {target}: the corpus is part of the repository");
    for file in files {
        let data = std::fs::read(&file).expect("readable input");
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{} breaks a rule again", file.display());
    }
}

#[test]
fn http_requests_inputs_hold() {
    replay("http_requests", http_requests::run);
}

#[test]
fn sqlite_file_inputs_hold() {
    replay("sqlite_file", sqlite_file::run);
}
