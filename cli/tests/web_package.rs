//! The browser package's tests and the page's (`web/tests`, Node's test
//! runner), run here so that `cargo test --workspace` runs every test:
//! `tools/build-web.sh` builds the core as WebAssembly and its JavaScript
//! package into `target/tmp/web-pkg`, npm installs playwright-core into
//! `target/tmp/web-node`, then Node runs the tests against this build's CLI,
//! a server they start (which serves the page it embeds), headless
//! Chromium and the Python package (the virtualenv `python_package.rs`
//! builds, shared). Screenshots of the page land in `target/screenshots/`.
//!
//! It needs a WebAssembly toolchain that rustup cannot provide here
//! (Debian's `rustc-web`, `rust-web-src`, `lld`), `wasm-bindgen` at the
//! crate's version, `node` and `npm`, Debian's `chromium`, and what the
//! Python package's tests need (README, "In the browser"). Without them it says loudly that it skipped; under CI
//! (`CI` set) it fails instead.

mod python_venv;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The wasm-bindgen command the glue must come from (web/Cargo.toml pins the crate to it).
const WASM_BINDGEN: &str = "wasm-bindgen 0.2.130";
/// What drives Chromium in the page's tests.
const PLAYWRIGHT_CORE: &str = "playwright-core@1.65.2";
const CHROMIUM: &str = "/usr/bin/chromium";

fn skip_or_fail(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("CI must run the browser package's tests, but {why}");
    }
    eprintln!("SKIPPED: the browser package's tests did not run: {why}");
}

fn output_of(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// What is missing of the toolchain, if anything.
fn missing_tools() -> Option<String> {
    if !Path::new("/usr/lib/rustlib/src").is_dir() || !Path::new("/usr/bin/cargo").exists() {
        return Some("no Debian rustc-web toolchain (apt-get install rustc-web cargo-web rust-web-src lld)".into());
    }
    if output_of("wasm-ld", &["--version"]).is_none() {
        return Some("no wasm-ld (apt-get install lld)".into());
    }
    if output_of("wasm-bindgen", &["--version"]).as_deref() != Some(WASM_BINDGEN) {
        return Some(format!("no {WASM_BINDGEN} (cargo install wasm-bindgen-cli --version =0.2.130)"));
    }
    if output_of("node", &["--version"]).is_none() || output_of("npm", &["--version"]).is_none() {
        return Some("no node and npm (apt-get install nodejs npm)".into());
    }
    if !Path::new(CHROMIUM).exists() {
        return Some("no Chromium for the page's tests (apt-get install chromium)".into());
    }
    None
}

/// Installs playwright-core (a driver only: it downloads no browser) into `dir`.
fn install_playwright(dir: &Path) -> Result<(), String> {
    if dir.join("node_modules/playwright-core/package.json").exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    python_venv::run(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--no-save", "--prefix"])
            .arg(dir)
            .arg(PLAYWRIGHT_CORE),
    )
    .map(|_| ())
    .map_err(|why| format!("npm could not install {PLAYWRIGHT_CORE}: {why}"))
}

#[test]
fn the_browser_package_builds_and_its_tests_pass() {
    if let Some(why) = missing_tools() {
        return skip_or_fail(&why);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root");
    let pkg = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-pkg");
    let built = Command::new(root.join("tools").join("build-web.sh")).arg(&pkg).output().expect("bash runs");
    assert!(built.status.success(), "tools/build-web.sh failed:\n{}", String::from_utf8_lossy(&built.stderr));

    let node_modules = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-node");
    if let Err(why) = install_playwright(&node_modules) {
        return skip_or_fail(&why);
    }

    // The page's tests exchange with the Python package too.
    let python = match python_venv::python_with_package(root) {
        Ok(python) => python,
        Err(why) => return skip_or_fail(&why),
    };

    let cli = PathBuf::from(env!("CARGO_BIN_EXE_wormhole-sync"));
    let mut node = Command::new("node");
    node.args(["--test", "web/tests/"])
        .current_dir(root)
        .env("WORMHOLE_SYNC_WEB_PKG", &pkg)
        .env("WORMHOLE_SYNC", &cli)
        .env("WORMHOLE_SYNC_NODE_MODULES", &node_modules)
        .env("WORMHOLE_SYNC_CHROMIUM", CHROMIUM)
        .env("WORMHOLE_SYNC_PYTHON", &python);
    // The server binary, where this build made one; else the tests use `wormhole-sync serve`.
    let server = cli.with_file_name("wormhole-sync-server");
    if server.exists() {
        node.env("WORMHOLE_SYNC_SERVER", server);
    }
    let ran = node.output().expect("node runs");
    let report = format!("{}{}", String::from_utf8_lossy(&ran.stdout), String::from_utf8_lossy(&ran.stderr));
    assert!(ran.status.success(), "the browser package's tests failed:\n{report}");
    println!("{report}");
}
