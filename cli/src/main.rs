//! `wormhole-sync`: send and receive a small piece of data with a short
//! invitation code, resume an exchange after a restart, run the rendezvous
//! server.

mod docs;
mod exit;
mod output;
mod settings;
mod state;
mod terminal;
mod transfer;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use wormhole_sync_core::parse_duration;
use wormhole_sync_server::cli::ServeArgs;
use wormhole_sync_ureq::magic_wormhole::{PUBLIC_MAILBOX_URL, TEXT_APPID};
use wormhole_sync_ureq::{Schedule, DEFAULT_RENDEZVOUS_URL};

use crate::exit::Failure;
use crate::settings::Settings;
use crate::state::StateFile;
use crate::transfer::{Flavour, Options};

/// The server's allocator, for `serve` (it returns what a burst of
/// connections freed to the system).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// How long a run without `--state` waits for a server that never answered.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// The application id both sides use unless told otherwise.
pub const DEFAULT_APPID: &str = "wormhole-sync/cli";

const EXAMPLES: &str = "\
Examples:
  wormhole-sync send 'my ssh key'                 show a code, send the text
  echo key | wormhole-sync send | consume         data in and out through pipes
  wormhole-sync receive 7-guitarist-revenge       receive with the code shown
  wormhole-sync receive                           ask for the code (Tab completes words)
  wormhole-sync send --state inv.json --file key  resumable: after Ctrl-C or a reboot,
  wormhole-sync resume inv.json                   continue with the same code
  wormhole-sync serve                             run a rendezvous server
  wormhole-sync send --magic-wormhole 'hi'        to someone running `wormhole receive`
  wormhole-sync receive --magic-wormhole 4-purple-sausages
                                                  from someone running `wormhole send --text`

Settings file (to set your server once): config.toml in wormhole-sync's folder of the
platform's configuration folder (~/.config/wormhole-sync/config.toml on Linux), or the
file WORMHOLE_SYNC_CONFIG names. Below the options and environment variables:
  rendezvous = \"http://rendezvous.example:4000\"
  magic-wormhole-rendezvous = \"ws://relay.example:4000/v1\"
  appid = \"example.com/family\"
  ca-cert = \"/etc/ssl/private-ca.pem\"";

/// Securely exchange a small piece of data between two computers with a
/// short invitation code, through a rendezvous server that relays encrypted
/// messages it cannot read.
#[derive(Parser, Debug)]
#[command(name = "wormhole-sync", version, about, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start an exchange: show an invitation code, send our data, print theirs.
    #[command(after_help = format!("Examples:\n  wormhole-sync send 'meet at 6'\n  wormhole-sync send --file key.pub --output theirs.pub\n  tar c dir | wormhole-sync send   (at most 32 KiB)\n\n{}", exit::HELP))]
    Send {
        /// The data to send (else --file, else standard input).
        text: Option<String>,
        /// Send this file's contents.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// Use this code instead of allocating one; the other side types it with
        /// `receive --code`. `-` reads it from the first line of standard input
        /// (a code on the command line is visible to other users in `ps`).
        #[arg(long, value_name = "CODE")]
        code: Option<String>,
        /// How many secret words the code has (1 to 16; each adds 8 bits).
        #[arg(long, value_name = "N")]
        code_words: Option<usize>,
        /// Also show the command for the other side as a QR code (with
        /// --magic-wormhole, a wormhole-transfer: URI), for a phone's camera;
        /// shown only on a terminal.
        #[arg(long)]
        qr: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Join an exchange with the code the other side shows; print its data.
    #[command(after_help = format!("Examples:\n  wormhole-sync receive 7-guitarist-revenge\n  wormhole-sync receive 7-guitarist-revenge 'my reply' --output theirs.txt\n  wormhole-sync receive   (asks for the code; Tab completes words)\n\n{}", exit::HELP))]
    Receive {
        /// The invitation code: asked for on the terminal if left out; `-` reads
        /// it from the first line of standard input. A code on the command line
        /// is visible to other users in `ps`: prefer the prompt, `-` or
        /// WORMHOLE_SYNC_CODE.
        #[arg(env = "WORMHOLE_SYNC_CODE", hide_env_values = true)]
        code: Option<String>,
        /// The data to send back (else --file, else standard input, else nothing).
        text: Option<String>,
        /// Send this file's contents back.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// A code both sides chose and typed (`send --code`), instead of CODE:
        /// its channel is created if this side comes first. `-` reads it from
        /// standard input.
        #[arg(long = "code", value_name = "CODE", conflicts_with = "code")]
        chosen: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Continue the exchange saved in a state file (`--state`) after Ctrl-C,
    /// a crash or a reboot, with the same code.
    #[command(after_help = format!("Example:\n  wormhole-sync resume invitation.json --output theirs.txt\n\n{}", exit::HELP))]
    Resume {
        /// The state file.
        file: PathBuf,
        /// Give up this long after the exchange first started (e.g. 3d)
        /// instead of the timeout it was saved with.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// Write the received data to this new file (mode 0600; never through
        /// a symbolic link) instead of standard output.
        #[arg(long, value_name = "PATH")]
        output: Option<PathBuf>,
        /// Replace the --output file if it exists.
        #[arg(long, requires = "output")]
        force: bool,
        /// No spinner.
        #[arg(long, short)]
        quiet: bool,
        /// Trust only this CA certificate (PEM) for an HTTPS rendezvous server.
        #[arg(long, value_name = "PEM", env = "WORMHOLE_SYNC_CA_CERT")]
        ca_cert: Option<PathBuf>,
    },
    /// Run the rendezvous server (the same options as `wormhole-sync-server`).
    Serve(ServeArgs),
    /// Print a shell completion script: `wormhole-sync completions bash > /etc/bash_completion.d/wormhole-sync`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print a manual page (roff): `wormhole-sync man > wormhole-sync.1`,
    /// `wormhole-sync man send`, or all of them: `wormhole-sync man --dir DIR`.
    Man {
        /// The command whose page to print [default: the top page].
        command: Option<String>,
        /// Write every page (wormhole-sync.1, wormhole-sync-send.1, ...) into this folder.
        #[arg(long, value_name = "DIR", conflicts_with = "command")]
        dir: Option<PathBuf>,
    },
}

/// Options of `send` and `receive`.
#[derive(Args, Debug)]
struct Common {
    /// Talk to magic-wormhole's `wormhole` command (a text message each
    /// way) through a magic-wormhole mailbox server, by default the public one.
    #[arg(long)]
    magic_wormhole: bool,
    /// The rendezvous server; both sides must use the same one [default:
    /// `rendezvous` in the settings file, else http://127.0.0.1:4000; with
    /// --magic-wormhole: `magic-wormhole-rendezvous` there, else
    /// ws://relay.magic-wormhole.io:4000/v1].
    #[arg(long, value_name = "URL", env = "WORMHOLE_SYNC_RENDEZVOUS")]
    rendezvous: Option<String>,
    /// The application id; both sides must use the same one [default:
    /// `appid` in the settings file, else wormhole-sync/cli; with
    /// --magic-wormhole: the `wormhole` command's].
    #[arg(long, value_name = "ID", env = "WORMHOLE_SYNC_APPID")]
    appid: Option<String>,
    /// Give up after this long (e.g. 90s, 30m, 3d).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    timeout: Duration,
    /// While the server has never answered, give up after this long (a wrong
    /// address, or no server running) [default: 1m; with --state: the whole
    /// --timeout, so a saved invitation outlasts a server that is down].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    connect_timeout: Option<Duration>,
    /// When to poll, as `when:interval` steps from the start (e.g. 0:500ms,5m:60s);
    /// it matters only where the server does not hold requests.
    #[arg(long, value_name = "STEPS", value_parser = parse_schedule)]
    schedule: Option<Schedule>,
    /// Show the verifier on both sides and ask before releasing our data.
    #[arg(long)]
    verify: bool,
    /// Keep the exchange's state in this file (mode 0600, replaced
    /// atomically, removed at the end) so `resume` can continue it. It holds
    /// the code and the data: keep it private.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Write the received data to this new file (mode 0600; never through a
    /// symbolic link) instead of standard output.
    #[arg(long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Replace the --output file if it exists.
    #[arg(long, requires = "output")]
    force: bool,
    /// No spinner.
    #[arg(long, short)]
    quiet: bool,
    /// Trust only this CA certificate (PEM) for an HTTPS rendezvous server
    /// with a private CA.
    #[arg(long, value_name = "PEM", env = "WORMHOLE_SYNC_CA_CERT")]
    ca_cert: Option<PathBuf>,
}

fn parse_schedule(text: &str) -> Result<Schedule, String> {
    text.parse().map_err(|e: wormhole_sync_ureq::Error| e.to_string())
}

impl Common {
    /// The options, from the command line and the environment, then the
    /// settings file, then the defaults.
    fn options(&self, code_words: Option<usize>, settings: &Settings) -> Result<Options, Failure> {
        let flavour = if self.magic_wormhole { Flavour::MagicWormhole } else { Flavour::Transcribe };
        let (default_rendezvous, default_appid, set_rendezvous, set_appid) = match flavour {
            Flavour::Transcribe => {
                (DEFAULT_RENDEZVOUS_URL, DEFAULT_APPID, &settings.rendezvous, settings.appid.as_deref())
            }
            Flavour::MagicWormhole => (PUBLIC_MAILBOX_URL, TEXT_APPID, &settings.magic_wormhole_rendezvous, None),
        };
        let (rendezvous, rendezvous_from) = match (&self.rendezvous, set_rendezvous) {
            (Some(given), _) => (given.clone(), None),
            (None, Some(set)) => (set.clone(), settings.source.clone()),
            (None, None) => (default_rendezvous.to_string(), None),
        };
        transfer::check_rendezvous(&rendezvous, flavour).map_err(|failure| match &rendezvous_from {
            Some(file) => Failure::usage(format!("{} (set in {})", failure.message, file.display())),
            None => failure,
        })?;
        if self.magic_wormhole && self.verify {
            return Err(Failure::usage("--verify is not available with --magic-wormhole"));
        }
        if let Some(path) = &self.output {
            output::check_target(path, self.force)?;
        }
        Ok(Options {
            flavour,
            rendezvous,
            rendezvous_from,
            appid: self
                .appid
                .clone()
                .or_else(|| set_appid.map(str::to_string))
                .unwrap_or_else(|| default_appid.to_string()),
            timeout: self.timeout,
            connect_timeout: match (self.connect_timeout, &self.state) {
                (Some(timeout), _) => Some(timeout),
                (None, None) => Some(DEFAULT_CONNECT_TIMEOUT),
                (None, Some(_)) => None,
            },
            schedule: self.schedule.clone(),
            code_words,
            verify: self.verify,
            quiet: self.quiet,
            qr: false,
            state: StateFile::new(self.state.clone()),
            output: self.output.clone(),
            force: self.force,
            ca_cert: self.ca_cert.clone().or_else(|| settings.ca_cert.clone()),
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

fn run(command: Command) -> Result<(), Failure> {
    let settings = match &command {
        Command::Send { .. } | Command::Receive { .. } | Command::Resume { .. } => Settings::load()?,
        _ => Settings::default(),
    };
    let (options, data) = match command {
        Command::Send { text, file, code, code_words, qr, common } => {
            let options = Options { qr, ..common.options(code_words, &settings)? };
            let code_from_stdin = code.as_deref() == Some("-");
            let code = if code_from_stdin { Some(terminal::code_from_stdin()?) } else { code };
            let piped = text.is_none() && file.is_none();
            let data = transfer::read_data(text, file, code_from_stdin)?
                .ok_or_else(|| Failure::usage("nothing to send: give TEXT, --file PATH, or pipe the data in"))?;
            if piped && data.is_empty() {
                return Err(Failure::usage(
                    "standard input was empty: nothing to send (to send empty data on purpose, give '' as TEXT)",
                ));
            }
            transfer::handle_ctrl_c(&options.state);
            (options.clone(), transfer::send(&options, data, code)?)
        }
        Command::Receive { code, text, file, chosen, common } => {
            let options = common.options(None, &settings)?;
            let code_from_stdin = chosen.as_deref().or(code.as_deref()) == Some("-");
            let from_stdin = |code: String| if code == "-" { terminal::code_from_stdin() } else { Ok(code) };
            let (code, chosen) = match (code, chosen) {
                (_, Some(chosen)) => {
                    let chosen = from_stdin(chosen)?;
                    (chosen.parse().map_err(|e| Failure::usage(format!("invalid code: {e}")))?, true)
                }
                (Some(code), None) => (terminal::typed_code(&from_stdin(code)?)?, false),
                (None, None) if std::io::stdin().is_terminal() => (terminal::ask_code()?, false),
                (None, None) => {
                    return Err(Failure::usage("give the invitation code (standard input is not a terminal)"))
                }
            };
            let data = transfer::read_data(text, file, code_from_stdin)?.unwrap_or_default();
            transfer::handle_ctrl_c(&options.state);
            (options.clone(), transfer::receive(&options, &code, data, chosen)?)
        }
        Command::Resume { file, timeout, output, force, quiet, ca_cert } => {
            let saved = StateFile::read(&file)?;
            let state = StateFile::new(Some(file));
            let options = Options {
                flavour: Flavour::Transcribe,                   // Replaced by the saved one.
                rendezvous: DEFAULT_RENDEZVOUS_URL.to_string(), // Likewise.
                rendezvous_from: None,
                appid: String::new(),
                timeout: Duration::ZERO, // The saved one, or --timeout.
                connect_timeout: None,   // The saved state waits for its server.
                schedule: None,
                code_words: None,
                verify: false,
                quiet,
                qr: false,
                state,
                output,
                force,
                ca_cert: ca_cert.or(settings.ca_cert),
            };
            if let Some(path) = &options.output {
                output::check_target(path, options.force)?;
            }
            transfer::handle_ctrl_c(&options.state);
            (options.clone(), transfer::resume(options, &saved, timeout)?)
        }
        Command::Serve(args) => return serve(args),
        Command::Completions { shell } => return docs::completions(shell),
        Command::Man { command, dir } => return docs::man(command.as_deref(), dir.as_deref()),
    };
    output::write_data(&data, options.output.as_deref(), options.force)
}

fn serve(args: ServeArgs) -> Result<(), Failure> {
    // Purge freed pages after jemalloc's decay time even while the server idles.
    let _ = tikv_jemalloc_ctl::background_thread::write(true);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::code::OTHER, format!("cannot start the server's runtime: {e}")))?;
    let code = runtime.block_on(wormhole_sync_server::cli::serve(args, "wormhole-sync serve"));
    if code == ExitCode::SUCCESS {
        Ok(())
    } else {
        // The server printed why.
        std::process::exit(1)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_run_gives_up_on_a_server_never_reached_after_a_minute_unless_it_keeps_state() {
        let connect_timeout = |args: &[&str]| {
            let Command::Send { common, .. } = Cli::parse_from([&["wormhole-sync", "send"], args].concat()).command
            else {
                panic!("a send")
            };
            common.options(None, &Settings::default()).unwrap().connect_timeout
        };
        assert_eq!(connect_timeout(&["x"]), Some(Duration::from_secs(60)));
        assert_eq!(connect_timeout(&["--state", "s.json", "x"]), None);
        assert_eq!(
            connect_timeout(&["--state", "s.json", "--connect-timeout", "5m", "x"]),
            Some(Duration::from_secs(300))
        );
    }
}
