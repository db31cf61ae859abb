//! The Python package's own tests (`python/tests`, pytest), run here so that
//! `cargo test --workspace` runs every test: the package is built from
//! source by pip into a virtualenv of its own (`target/tmp/python-venv`,
//! kept between runs and shared with the page's tests: `python_venv`), then
//! pytest runs against this build's CLI and a server it starts.
//!
//! It needs `python3` with `venv`, and PyPI (for maturin, pytest, Twisted and
//! magic-wormhole). Without them it says loudly that it skipped; under CI
//! (`CI` set) it fails instead.

mod python_venv;

use std::path::{Path, PathBuf};
use std::process::Command;

use python_venv::{python_with_package, run};

fn skip_or_fail(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("CI must run the Python package's tests, but {why}");
    }
    eprintln!("SKIPPED: the Python package's tests did not run: {why}");
}

#[test]
fn the_python_package_builds_and_its_tests_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root");
    let python = match python_with_package(root) {
        Ok(python) => python,
        Err(why) => return skip_or_fail(&why),
    };
    let cli = PathBuf::from(env!("CARGO_BIN_EXE_wormhole-sync"));
    let mut pytest = Command::new(&python);
    // From the root, so the installed package is imported rather than python/'s sources.
    pytest.args(["-m", "pytest", "-q", "python/tests"]).current_dir(root).env("WORMHOLE_SYNC", &cli);
    // The server binary, where this build made one; else the tests use `wormhole-sync serve`.
    let server = cli.with_file_name("wormhole-sync-server");
    if server.exists() {
        pytest.env("WORMHOLE_SYNC_SERVER", server);
    }
    match run(&mut pytest) {
        Ok(report) => println!("{report}"),
        Err(failure) => panic!("{failure}"),
    }
}
