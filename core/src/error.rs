//! The one error type every layer shares: the core, both transports and the CLI.

use serde::{Deserialize, Serialize};

use crate::code::CodeError;
use crate::wire::Mood;

/// Why an exchange failed, or why an input was refused.
///
/// Every variant is distinct so applications can react precisely: a
/// [`WrongCode`](Error::WrongCode) means "ask the person to check the code",
/// a [`Timeout`](Error::Timeout) means "nobody came".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Error {
    /// The two sides used different codes (or someone guessed wrong). The
    /// channel is closed for good, so the code cannot be tried again.
    #[error("the codes did not match: check the invitation code and start again")]
    WrongCode,
    /// The hard timeout passed before the exchange completed.
    #[error("timed out before the exchange completed")]
    Timeout,
    /// The hard timeout passed and the rendezvous server never answered once.
    #[error("could not reach the rendezvous server: {detail}")]
    ServerUnreachable {
        /// What the last attempt saw (for people, not for matching).
        detail: String,
    },
    /// The hard timeout passed while the rendezvous server, though reached,
    /// kept refusing with a "retry later" answer (HTTP 429 or 5xx): it is
    /// overloaded, rate-limits this address, or cannot store anything.
    #[error("the rendezvous server was reached but refused until the timeout ({code}: {message}); try again later")]
    ServerBusy {
        /// The stable error code of its last refusal (`rate-limited`,
        /// `too-many-channels`, `server-full`, `storage-unavailable`, ...;
        /// `http-<status>` when the body was not an error object).
        code: String,
        /// The server's explanation, printable characters only.
        message: String,
    },
    /// Two sides already hold this channel: the code was used by someone else.
    #[error("the channel is already in use by two other sides")]
    Crowded,
    /// The channel in a typed code does not exist: a typo in the number, or
    /// the code expired or was used up.
    #[error(
        "no such channel: check the number at the start of the code; if it is right, the code has expired or was \
         already used, so ask for a new one"
    )]
    UnknownChannel,
    /// The channel this side had joined is gone from the server: it expired
    /// after a long silence, or the server lost its state.
    #[error("the channel is gone from the rendezvous server (it expired or the server lost it); start a new exchange")]
    ChannelExpired,
    /// The channel was closed after a failed attempt; this code is used up.
    #[error("this code was already used in a failed attempt; ask for a new one")]
    ChannelBurned,
    /// The other side closed the channel before the exchange completed.
    #[error("{}", peer_closed(*.mood))]
    PeerClosed {
        /// The outcome the other side reported.
        mood: Mood,
    },
    /// Our application stopped the exchange.
    #[error("the exchange was stopped")]
    Cancelled,
    /// Our application declined the verifier, so nothing was released.
    #[error("the verifier was declined here; nothing was sent")]
    Declined,
    /// The data cannot be released before the verifier is confirmed or
    /// declined (blocking APIs return this instead of waiting forever).
    #[error("confirm or decline the verifier first")]
    VerifierUnconfirmed,
    /// The other side declined the verifier.
    #[error("the other side declined the verifier")]
    PeerDeclined,
    /// A message we sent came back to us as if from the peer.
    #[error("our own message was reflected back to us")]
    Reflection,
    /// The peer sent a message that does not follow the protocol.
    #[error("the other side sent an invalid message: {detail}")]
    PeerProtocol {
        /// What was wrong.
        detail: String,
    },
    /// The server answered with a response this client cannot understand.
    #[error("the rendezvous server sent an invalid response: {detail}")]
    ServerProtocol {
        /// What was wrong.
        detail: String,
    },
    /// The server refused a request with a stable error code.
    #[error("the rendezvous server refused the request: {code}: {message}")]
    ServerRejected {
        /// The stable, machine-readable error code (see PROTOCOL.md).
        code: String,
        /// The server's human-readable explanation.
        message: String,
    },
    /// The invitation code could not be parsed.
    #[error("invalid code: {0}")]
    BadCode(#[from] CodeError),
    /// Our data is larger than the protocol allows.
    #[error("data is {len} bytes, more than the limit of {max}")]
    DataTooLarge {
        /// Length of the data given.
        len: usize,
        /// The limit, [`MAX_DATA_LEN`](crate::MAX_DATA_LEN).
        max: usize,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A serialized exchange could not be restored.
    #[error("cannot restore serialized state: {0}")]
    BadSerializedState(String),
}

impl Error {
    /// The free texts this error carries, for checks on restored state.
    pub(crate) fn texts(&self) -> Vec<&str> {
        match self {
            Error::ServerUnreachable { detail } | Error::PeerProtocol { detail } | Error::ServerProtocol { detail } => {
                vec![detail]
            }
            Error::ServerBusy { code, message } | Error::ServerRejected { code, message } => vec![code, message],
            Error::InvalidConfig(text) | Error::BadSerializedState(text) => vec![text],
            _ => Vec::new(),
        }
    }
}

fn peer_closed(mood: Mood) -> &'static str {
    match mood {
        Mood::Lonely => "the other side gave up waiting (lonely) or was stopped",
        Mood::Errory => "the other side stopped because of an error (errory)",
        Mood::Happy => "the other side closed the channel (happy) before our data reached it",
        Mood::Scary => "the other side saw a wrong code (scary)",
        Mood::Declined => "the other side declined the verifier (declined)",
    }
}
