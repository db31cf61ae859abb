//! How a command ends: an exit code per kind of outcome, and one line that
//! says what happened and what to do.

use std::process::ExitCode;

use wormhole_sync_ureq::{Error, Mood, DEFAULT_RENDEZVOUS_URL};

/// The exit codes, documented in `--help`.
pub mod code {
    /// Anything not listed below (an output file that cannot be written, ...).
    pub const OTHER: u8 = 1;
    /// A mistake on the command line: a malformed or mistyped code, too
    /// much data, a bad option, an unreadable state file.
    pub const USAGE: u8 = 2;
    /// The two sides used different codes.
    pub const WRONG_CODE: u8 = 3;
    /// Nobody came before the timeout.
    pub const TIMEOUT: u8 = 4;
    /// Two other sides already use this code.
    pub const CROWDED: u8 = 5;
    /// The code's channel does not exist (any more).
    pub const NO_CHANNEL: u8 = 6;
    /// The rendezvous server could not be reached.
    pub const UNREACHABLE: u8 = 7;
    /// The rendezvous server refused.
    pub const REFUSED: u8 = 8;
    /// The other side stopped, declined, or broke the protocol.
    pub const PEER: u8 = 9;
    /// Someone used the code but never completed the exchange: the code may
    /// have been intercepted (the channel is burned).
    pub const VANISHED: u8 = 10;
    /// The person said the verifiers differ: nothing was released.
    pub const DECLINED: u8 = 11;
    /// Interrupted with Ctrl-C.
    pub const INTERRUPTED: u8 = 130;
}

/// The exit codes as `--help` shows them.
pub const HELP: &str = "\
Exit codes:
  0  the data was exchanged
  2  bad usage: a malformed or mistyped code, too much data, a bad option
  3  wrong code: the two sides typed different codes (the code is used up)
  4  timeout: nobody came in time
  5  crowded: two other sides already use this code
  6  no such channel: the code's number is wrong, or it expired or was used
  7  the rendezvous server could not be reached
  8  the rendezvous server refused
  9  the other side stopped, declined, or broke the protocol
  10  someone used the code but never completed: it may have been intercepted
  11  you said the verifiers differ: nothing was sent (someone may be in between)
  130  interrupted (Ctrl-C)
  1  anything else";

/// A command that did not end with the data exchanged.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure { code, message: message.into() }
    }

    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(code::USAGE, message)
    }

    /// An exchange's error, with what to do about it; `rendezvous` names
    /// the server in messages about it.
    /// `settings` is the settings file that named the server, if one did.
    pub fn from_error(error: &Error, rendezvous: &str, settings: Option<&std::path::Path>) -> Failure {
        let server = match settings {
            Some(file) => format!("{rendezvous} (set in {})", file.display()),
            None if rendezvous == DEFAULT_RENDEZVOUS_URL => {
                format!("{rendezvous} (the default; choose another with --rendezvous)")
            }
            None => rendezvous.to_string(),
        };
        match error {
            Error::WrongCode | Error::Reflection => Failure::new(code::WRONG_CODE, error.to_string()),
            Error::Timeout => Failure::new(
                code::TIMEOUT,
                "timed out: the other side did not complete in time (see --timeout); start again with a new code",
            ),
            Error::Crowded => Failure::new(code::CROWDED, format!("{error}: ask for a new code")),
            Error::PeerVanished => Failure::new(code::VANISHED, error.to_string()),
            Error::UnknownChannel | Error::ChannelExpired | Error::ChannelBurned => {
                Failure::new(code::NO_CHANNEL, error.to_string())
            }
            Error::ServerUnreachable { cause } => {
                let chain = cause.chain();
                // rustls reading a plain-HTTP answer as a TLS record.
                let hint = if rendezvous.starts_with("https://") && chain.contains("InvalidContentType") {
                    " (the server answers in plain HTTP: use http:// instead of https://)"
                } else {
                    ""
                };
                let what_to_do = if rendezvous.starts_with("http") {
                    "; is a wormhole-sync server running there? Start one with `wormhole-sync serve` (on a computer \
                     both sides reach: `wormhole-sync serve --listen 0.0.0.0:4000`), or give its address with \
                     --rendezvous"
                } else {
                    "; check the address (--rendezvous) and the network connection"
                };
                Failure::new(
                    code::UNREACHABLE,
                    format!("could not reach the rendezvous server at {server}: {chain}{hint}{what_to_do}"),
                )
            }
            Error::ServerBusy { .. } | Error::ServerRejected { .. } | Error::ServerProtocol { .. } => {
                Failure::new(code::REFUSED, format!("{error} (server: {server})"))
            }
            Error::Declined => Failure::new(
                code::DECLINED,
                "you said the verifiers differ, so nothing was sent: someone may be between you and the other \
                 side; start again with a new code",
            ),
            // The code is spent either way: say what to do next.
            Error::PeerClosed { mood: Mood::Lonely | Mood::Errory } => {
                Failure::new(code::PEER, format!("{error}; start again with a new code"))
            }
            Error::PeerClosed { .. } | Error::PeerDeclined | Error::PeerProtocol { .. } => {
                Failure::new(code::PEER, error.to_string())
            }
            Error::Cancelled => Failure::new(code::INTERRUPTED, "interrupted: the channel was closed"),
            Error::BadCode(_)
            | Error::DataTooLarge { .. }
            | Error::InvalidConfig(_)
            | Error::BadSerializedState(_)
            | Error::ApiMisuse(_) => Failure::usage(error.to_string()),
            _ => Failure::new(code::OTHER, error.to_string()),
        }
    }

    /// Prints the message and returns the exit code.
    pub fn report(self) -> ExitCode {
        crate::terminal::say(&format!("wormhole-sync: {}", self.message));
        ExitCode::from(self.code)
    }
}
