//! The state file of `--state FILE` and `resume FILE`: the exchange's saved
//! state, written only by atomic replacement and readable by its owner
//! alone (it holds the code, the exchange's seed and the data).

use std::io::Write;
use std::path::{Path, PathBuf};

use wormhole_sync_core::MAX_SERIALIZED_LEN;

use crate::exit::Failure;

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

    /// Reads a state file for `resume`.
    pub fn read(path: &Path) -> Result<Vec<u8>, Failure> {
        let fail = |why: String| Failure::usage(format!("cannot read the state file {}: {why}", path.display()));
        let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        if bytes.len() > MAX_SERIALIZED_LEN {
            return Err(fail("it is larger than any saved exchange".into()));
        }
        Ok(bytes)
    }
}
