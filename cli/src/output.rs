//! Where the received data goes: a file (`--output`), never through a
//! symbolic link, readable by its owner only, not over an existing file
//! without `--force`; or standard output, raw into a pipe or a file, and
//! with control characters shown escaped on a terminal, so data from the
//! other side cannot drive the terminal with escape sequences.

use std::io::{IsTerminal, Write};
use std::path::Path;

use wormhole_sync_core::wire::is_printable_text;

use crate::exit::{code, Failure};

/// Writes the received data to `output`, or to standard output.
pub fn write_data(data: &[u8], output: Option<&Path>, force: bool) -> Result<(), Failure> {
    match output {
        Some(path) => write_file(data, path, force),
        None => {
            let mut out = std::io::stdout().lock();
            let terminal = out.is_terminal();
            let mut shown = if terminal { escaped(data) } else { data.to_vec() };
            let changed = shown != data;
            if terminal && !shown.is_empty() && !shown.ends_with(b"\n") {
                // So the shell's prompt starts a line of its own.
                shown.push(b'\n');
            }
            let written = out.write_all(&shown).and_then(|()| out.flush()).map_err(|e| {
                Failure::new(code::OTHER, format!("cannot write the received data to standard output: {e}"))
            });
            if changed {
                crate::terminal::say(
                    "wormhole-sync: the data holds control characters, shown escaped above; \
                     use --output FILE (or a pipe) for the exact bytes",
                );
            }
            written
        }
    }
}

/// Refuses, before any exchange starts, an `--output` path that the data
/// could not be written to at the end.
pub fn check_target(path: &Path, force: bool) -> Result<(), Failure> {
    target_refusal(path, force).map_or(Ok(()), |why| Err(Failure::usage(format!("--output {}: {why}", path.display()))))
}

fn target_refusal(path: &Path, force: bool) -> Option<&'static str> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Some("it is a symbolic link, which is not followed"),
        Ok(meta) if !meta.is_file() => Some("it is not a regular file"),
        Ok(_) if !force => Some("it exists (add --force to replace it)"),
        _ => None,
    }
}

/// Writes `data` to a new file at `path`, mode 0600: into a temporary file
/// in the same folder, moved into place in one step. Without `force` an
/// existing file is never replaced; a symbolic link at `path` never is.
fn write_file(data: &[u8], path: &Path, force: bool) -> Result<(), Failure> {
    let fail = |why: String| Failure::new(code::OTHER, format!("cannot write {}: {why}", path.display()));
    if let Some(why) = target_refusal(path, force) {
        return Err(fail(why.into()));
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // Created with mode 0600 on Unix.
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(|e| fail(e.to_string()))?;
    let _partial = crate::state::Partial::track(file.path());
    file.write_all(data).and_then(|()| file.as_file().sync_all()).map_err(|e| fail(e.to_string()))?;
    let placed = if force { file.persist(path) } else { file.persist_noclobber(path) };
    placed.map(|_| ()).map_err(|e| fail(e.error.to_string()))
}

/// `data` as text a terminal shows literally: valid UTF-8 with every control
/// or format character but newline and tab as `\u{…}`, and every byte that
/// is not UTF-8 as `\x…`.
fn escaped(data: &[u8]) -> Vec<u8> {
    let mut out = String::new();
    for chunk in data.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\n' || c == '\t' || is_printable_text(c.encode_utf8(&mut [0; 4])) {
                out.push(c);
            } else {
                out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_sees_escape_sequences_escaped() {
        assert_eq!(escaped(b"plain text\n\twith tab"), b"plain text\n\twith tab");
        assert_eq!(escaped(b"\x1b]0;pwned\x07"), br"\u{1b}]0;pwned\u{7}");
        assert_eq!(escaped("left\u{202e}right".as_bytes()), br"left\u{202e}right");
        assert_eq!(escaped(b"\xff\xfe ok"), br"\xff\xfe ok");
        assert_eq!(escaped("café ☕".as_bytes()), "café ☕".as_bytes());
    }

    #[test]
    fn an_output_file_is_private_never_a_link_and_not_replaced_without_force() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("theirs.txt");
        write_data(b"first", Some(&path), false).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let refused = write_data(b"second", Some(&path), false).unwrap_err();
        assert!(refused.message.contains("--force"), "{}", refused.message);
        write_data(b"second", Some(&path), true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let target = dir.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for force in [false, true] {
            let refused = write_data(b"evil", Some(&link), force).unwrap_err();
            assert!(refused.message.contains("symbolic link"), "{}", refused.message);
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(write_data(b"evil", Some(&dangling), false).is_err());
        assert!(!dir.path().join("nowhere").exists());
    }
}
