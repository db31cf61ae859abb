//! The state file of `--state FILE` and `resume FILE`: the exchange's saved
//! state, written only by atomic replacement and readable by its owner
//! alone (it holds the code, the exchange's seed and the data).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use wormhole_sync_core::MAX_SERIALIZED_LEN;

use crate::exit::Failure;

/// The temporary file being written, if any (it holds secrets): a Ctrl-C
/// that ends the process meanwhile removes it, since the process exits
/// without running the temporary file's own clean-up.
static PARTIAL: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Marks a temporary file as being written while it lives.
pub struct Partial;

impl Partial {
    pub fn track(path: &Path) -> Partial {
        *PARTIAL.lock().unwrap_or_else(|e| e.into_inner()) = Some(path.to_path_buf());
        Partial
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        *PARTIAL.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Removes the temporary file being written, if any (before an exit that
/// skips destructors). Once moved into place it is gone from its temporary
/// path, so nothing else is removed.
pub fn remove_partial() {
    if let Some(path) = PARTIAL.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = std::fs::remove_file(path);
    }
}

/// Where the state goes, if anywhere.
#[derive(Debug, Default, Clone)]
pub struct StateFile {
    path: Option<PathBuf>,
}

impl StateFile {
    pub fn new(path: Option<PathBuf>) -> StateFile {
        StateFile { path }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Replaces the file's contents with `state` in one step: a crash
    /// leaves the old state or the new, never half of one.
    /// `state` is only called when there is a file: serializing an
    /// exchange tells it a saved copy may continue it.
    pub fn save(&self, state: impl FnOnce() -> Vec<u8>) -> Result<(), Failure> {
        let Some(path) = &self.path else { return Ok(()) };
        let state = state();
        let fail = |e: std::io::Error| Failure::usage(format!("cannot write the state file {}: {e}", path.display()));
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        // Created with mode 0600 on Unix.
        let mut file = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
        let _partial = Partial::track(file.path());
        file.write_all(&state).map_err(fail)?;
        file.as_file().sync_all().map_err(fail)?;
        file.persist(path).map_err(|e| fail(e.error))?;
        Ok(())
    }

    /// Removes the file: the exchange has ended.
    pub fn remove(&self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Reads a state file for `resume`: a regular file (a FIFO would block,
    /// a device never end), of which at most the largest saved exchange is read.
    pub fn read(path: &Path) -> Result<Vec<u8>, Failure> {
        let fail = |why: String| Failure::usage(format!("cannot read the state file {}: {why}", path.display()));
        let regular = |meta: std::fs::Metadata| {
            if meta.is_file() {
                Ok(())
            } else {
                Err(fail("it is not a regular file".into()))
            }
        };
        // Checked before opening (opening a FIFO waits for a writer), and again after.
        regular(std::fs::metadata(path).map_err(|e| fail(e.to_string()))?)?;
        let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
        regular(file.metadata().map_err(|e| fail(e.to_string()))?)?;
        let mut bytes = Vec::new();
        file.take(MAX_SERIALIZED_LEN as u64 + 1).read_to_end(&mut bytes).map_err(|e| fail(e.to_string()))?;
        if bytes.len() > MAX_SERIALIZED_LEN {
            return Err(fail("it is larger than any saved exchange".into()));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Ctrl-C while the state is written exits without the temporary
    /// file's clean-up; the handler removes it (it holds the secrets).
    #[test]
    fn a_partial_state_file_is_removed_on_interrupt() {
        let dir = tempfile::tempdir().unwrap();
        let partial = tempfile::NamedTempFile::new_in(dir.path()).unwrap();
        let path = partial.path().to_path_buf();
        let (_file, kept) = partial.keep().unwrap();
        let tracked = Partial::track(&kept);
        remove_partial();
        assert!(!path.exists(), "the partial file was left behind");
        drop(tracked);
        remove_partial(); // Nothing tracked: nothing happens.
    }
}
