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
#[serde(tag = "kind", rename_all = "kebab-case")]
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
    /// Two sides already hold this channel: the code was used by someone else.
    #[error("the channel is already in use by two other sides")]
    Crowded,
    /// The channel in the code does not exist (a typo in the number, or it
    /// expired or was closed).
    #[error("no such channel: check the number at the start of the code")]
    UnknownChannel,
    /// The channel was closed after a failed attempt; this code is used up.
    #[error("this code was already used in a failed attempt; ask for a new one")]
    ChannelBurned,
    /// The other side closed the channel before the exchange completed.
    #[error("the other side gave up ({mood})")]
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
