//! The virtualenv with the Python package built from this checkout, shared
//! by the Python package's tests and the page's (which exchange with it):
//! made once in `target/tmp/python-venv`, the package installed again only
//! when its sources changed. A lock file keeps two test processes from
//! building it at once.

use std::fs::File;
use std::hash::{DefaultHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the tests need besides the package itself (pinned where the tests
/// check another program's exact behaviour).
const REQUIREMENTS: &[&str] = &["pytest", "twisted", "magic-wormhole==0.24.0"];

/// What the package is built from (relative to the workspace root).
const SOURCES: &[&str] = &[
    "Cargo.toml",
    "core/Cargo.toml",
    "core/src",
    "transport-tokio/Cargo.toml",
    "transport-tokio/src",
    "python/Cargo.toml",
    "python/Cargo.lock",
    "python/pyproject.toml",
    "python/src",
    "python/wormhole_sync",
];

pub fn run(command: &mut Command) -> Result<String, String> {
    let shown = format!("{command:?}");
    let output = command.output().map_err(|e| format!("could not run {shown}: {e}"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    match output.status.success() {
        true => Ok(text),
        false => Err(format!("{shown} failed ({}):\n{text}", output.status)),
    }
}

/// The virtualenv's python, with the requirements and the package from the
/// checkout at `root` installed.
pub fn python_with_package(root: &Path) -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-venv");
    let lock = File::create(dir.with_extension("lock")).map_err(|e| format!("the venv's lock: {e}"))?;
    // File::lock is newer than the tool's minimum Rust; this is test harness, built only by the
    // toolchain that runs the tests.
    #[allow(clippy::incompatible_msrv)]
    lock.lock().map_err(|e| format!("the venv's lock: {e}"))?;
    let python = virtualenv(&dir)?;
    let marker = dir.join("package-sources");
    let sources = format!("{:016x}", hash_of(root, SOURCES));
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(sources.as_str()) {
        // As a user installs it: pip builds the extension (maturin) from the checkout; unoptimized,
        // as the tests need no speed and it builds in about half the time (benchmarks use a release build).
        run(Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps"])
            .arg(root.join("python"))
            .env("MATURIN_PEP517_ARGS", "--profile dev"))
        .map_err(|why| format!("pip could not build the package: {why}"))?;
        std::fs::write(&marker, sources).map_err(|e| e.to_string())?;
    }
    Ok(python)
}

/// The virtualenv with the requirements installed (once: a marker file
/// records what was).
fn virtualenv(dir: &Path) -> Result<PathBuf, String> {
    let python = dir.join("bin").join("python");
    let marker = dir.join("requirements.txt");
    let wanted = REQUIREMENTS.join("\n");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(wanted.as_str()) {
        let _ = std::fs::remove_dir_all(dir);
        run(Command::new("python3").args(["-m", "venv"]).arg(dir))
            .map_err(|why| format!("its virtualenv could not be made: {why}"))?;
        run(Command::new(&python).args(["-m", "pip", "install", "--quiet"]).args(REQUIREMENTS))
            .map_err(|why| format!("its virtualenv could not be made: {why}"))?;
        std::fs::write(&marker, wanted).map_err(|e| e.to_string())?;
    }
    Ok(python)
}

/// A hash of the files' names and contents (directories walked in order,
/// caches skipped): it changes when any source does.
fn hash_of(root: &Path, paths: &[&str]) -> u64 {
    fn walk(path: &Path, hasher: &mut DefaultHasher) {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> =
                std::fs::read_dir(path).into_iter().flatten().flatten().map(|e| e.path()).collect();
            entries.sort();
            for entry in entries.iter().filter(|e| !e.ends_with("__pycache__")) {
                walk(entry, hasher);
            }
        } else if let Ok(contents) = std::fs::read(path) {
            hasher.write(path.to_string_lossy().as_bytes());
            hasher.write(&contents);
        }
    }
    let mut hasher = DefaultHasher::new();
    for path in paths {
        walk(&root.join(path), &mut hasher);
    }
    hasher.finish()
}
