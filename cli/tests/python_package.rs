//! The Python package's own tests (`python/tests`, pytest), run here so that
//! `cargo test --workspace` runs every test: the package is built from
//! source by pip into a virtualenv of its own (`target/tmp/python-venv`,
//! kept between runs), then pytest runs against this build's CLI and a
//! server it starts.
//!
//! It needs `python3` with `venv`, and PyPI (for maturin, pytest, Twisted and
//! magic-wormhole). Without them it says loudly that it skipped; under CI
//! (`CI` set) it fails instead.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What the tests need besides the package itself (pinned where the tests
/// check another program's exact behaviour).
const REQUIREMENTS: &[&str] = &["pytest", "twisted", "magic-wormhole==0.24.0"];

fn skip_or_fail(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("CI must run the Python package's tests, but {why}");
    }
    eprintln!("SKIPPED: the Python package's tests did not run: {why}");
}

fn run(command: &mut Command) -> Result<String, String> {
    let shown = format!("{command:?}");
    let output = command.output().map_err(|e| format!("could not run {shown}: {e}"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    match output.status.success() {
        true => Ok(text),
        false => Err(format!("{shown} failed ({}):\n{text}", output.status)),
    }
}

/// The virtualenv with the requirements installed (once: a marker file
/// records what was).
fn virtualenv(dir: &Path) -> Result<PathBuf, String> {
    let python = dir.join("bin").join("python");
    let marker = dir.join("requirements.txt");
    let wanted = REQUIREMENTS.join("\n");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(wanted.as_str()) {
        let _ = std::fs::remove_dir_all(dir);
        run(Command::new("python3").args(["-m", "venv"]).arg(dir))?;
        run(Command::new(&python).args(["-m", "pip", "install", "--quiet"]).args(REQUIREMENTS))?;
        std::fs::write(&marker, wanted).map_err(|e| e.to_string())?;
    }
    Ok(python)
}

#[test]
fn the_python_package_builds_and_its_tests_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root");
    let python = match virtualenv(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-venv")) {
        Ok(python) => python,
        Err(why) => return skip_or_fail(&format!("its virtualenv could not be made: {why}")),
    };
    // As a user installs it: pip builds the extension (maturin) from the checkout; unoptimized, as
    // the tests need no speed and it builds in about half the time (benchmarks use a release build).
    let installed = run(Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps"])
        .arg(root.join("python"))
        .env("MATURIN_PEP517_ARGS", "--profile dev"));
    if let Err(why) = installed {
        return skip_or_fail(&format!("pip could not build the package: {why}"));
    }
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
