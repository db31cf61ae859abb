//! The manual pages and shell completion scripts the tool prints about
//! itself: one page per command (the top page lists them and the exit
//! codes), written to standard output or to a folder.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use crate::exit::{code, Failure};

/// The manual page of `command` (`None`: the top page) on standard output,
/// or every page into `dir`.
pub fn man(command: Option<&str>, dir: Option<&Path>) -> Result<(), Failure> {
    let failed = |e: std::io::Error| Failure::new(code::OTHER, format!("cannot write the manual: {e}"));
    let top = crate::Cli::command().disable_help_subcommand(true);
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(failed)?;
        let mut built = top.clone();
        built.build();
        for sub in built.get_subcommands().filter(|s| !s.is_hide_set()) {
            clap_mangen::Man::new(sub.clone()).generate_to(dir).map_err(failed)?;
        }
        let mut page = Vec::new();
        top_page(top, &mut page).map_err(failed)?;
        return std::fs::write(dir.join("wormhole-sync.1"), page).map_err(failed);
    }
    let mut page = Vec::new();
    match command {
        None => top_page(top, &mut page).map_err(failed)?,
        Some(name) => {
            let mut built = top;
            built.build();
            let sub = built.find_subcommand(name).ok_or_else(|| {
                Failure::usage(format!("no command {:?}: see `wormhole-sync --help`", crate::terminal::shown(name)))
            })?;
            clap_mangen::Man::new(sub.clone()).render(&mut page).map_err(failed)?;
        }
    }
    print(&page)
}

/// The top page: what clap knows, and the exit codes.
fn top_page(command: clap::Command, out: &mut Vec<u8>) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(command);
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_subcommands_section(out)?;
    writeln!(out, ".SH \"EXIT STATUS\"\n.nf")?;
    for line in crate::exit::HELP.lines().skip(1) {
        writeln!(out, "{}", line.trim_start().replace('\\', "\\\\").replace('-', "\\-"))?;
    }
    writeln!(out, ".fi")?;
    man.render_version_section(out)
}

/// A completion script for `shell` on standard output.
pub fn completions(shell: clap_complete::Shell) -> Result<(), Failure> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut crate::Cli::command(), "wormhole-sync", &mut script);
    print(&script)
}

/// Writes to standard output; a reader that stopped reading (`| head`) is
/// no failure.
fn print(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::new(code::OTHER, format!("cannot write to standard output: {e}")))
        }
        _ => Ok(()),
    }
}
