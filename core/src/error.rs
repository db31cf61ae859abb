//! The one error type every layer shares: the core, both transports and the CLI.
//!
//! Three families, told apart by [`Error::is_outcome`] and [`Error::ApiMisuse`]:
//! - **outcomes**: how an exchange ended without the peer's data (the codes
//!   did not match, nobody came, the server refused, ...);
//! - **refused inputs**: a malformed code, too much data, an out-of-range
//!   option, a corrupt saved state;
//! - **API misuse**: a call the exchange's state does not allow.

use std::fmt;
use std::sync::Arc;

use crate::code::CodeError;
use crate::time::Timestamp;
use crate::wire::{printable, ErrorCode, Mood};

/// Why an exchange failed, or why an input was refused.
///
/// Every variant is distinct so applications can react precisely: a
/// [`WrongCode`](Error::WrongCode) means "ask the person to check the code",
/// a [`Timeout`](Error::Timeout) means "nobody came". `Display` is written
/// for the person at the keyboard; transport causes are kept as
/// [`source()`](std::error::Error::source).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The two sides used different codes (or someone guessed wrong). The
    /// channel is closed for good, so the code cannot be tried again.
    #[error("the codes did not match: check the invitation code and start again")]
    WrongCode,
    /// The hard timeout passed before the exchange completed.
    #[error("timed out before the exchange completed")]
    Timeout,
    /// The hard timeout passed and the rendezvous server never answered
    /// once, or a connection failed in a way retrying cannot fix (its TLS
    /// certificate is not trusted): see the cause.
    #[error("could not reach the rendezvous server")]
    ServerUnreachable {
        /// What the last attempt saw.
        #[source]
        cause: TransportError,
    },
    /// The hard timeout passed while the rendezvous server, though reached,
    /// kept refusing with a "retry later" answer (HTTP 429 or 5xx): it is
    /// overloaded, rate-limits this address, or cannot store anything.
    #[error("the rendezvous server was reached but refused until the timeout ({code}: {message}); try again later")]
    ServerBusy {
        /// The error code of its last refusal (`rate-limited`,
        /// `too-many-channels`, `server-full`, `storage-unavailable`, ...).
        code: ServerErrorCode,
        /// The server's explanation, printable characters only.
        message: String,
    },
    /// Two other sides already used this code's channel: someone else may
    /// have used the code (it was intercepted, or guessed from the number).
    #[error("this code was already used by two other sides: someone else may have used your code")]
    Crowded,
    /// Someone joined with the code and sent its PAKE message, but never
    /// completed the exchange before the timeout. If that was not the
    /// intended peer, the code may have been intercepted: whoever joined
    /// can test one guess of it offline. The channel is burned.
    #[error(
        "someone used the code but never completed the exchange: if that was not the person you shared the code \
         with, the code may have been intercepted; start again with a new code"
    )]
    PeerVanished,
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
    /// The server refused a request with an error code.
    #[error("the rendezvous server refused the request: {code}: {message}")]
    ServerRejected {
        /// The machine-readable error code (see PROTOCOL.md).
        code: ServerErrorCode,
        /// The server's explanation, printable characters only.
        message: String,
    },
    /// The code that ran the exchange stopped unexpectedly (a panic in a
    /// driver task, or its runtime shut down): a bug or a shutdown, not a
    /// protocol outcome.
    #[error("the exchange's driver stopped unexpectedly: {detail}")]
    DriverStopped {
        /// What stopped it.
        detail: String,
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
    /// A call the exchange's state does not allow: a mistake in the
    /// calling program, not something that happened on the network.
    #[error(transparent)]
    ApiMisuse(#[from] ApiMisuse),
}

impl Error {
    /// Whether this is how an exchange ended (what
    /// [`Event::Outcome`](crate::Event::Outcome) reports), as opposed to a
    /// refused input or a misuse of the API.
    pub fn is_outcome(&self) -> bool {
        !matches!(
            self,
            Error::BadCode(_)
                | Error::DataTooLarge { .. }
                | Error::InvalidConfig(_)
                | Error::BadSerializedState(_)
                | Error::ApiMisuse(_)
        )
    }

    /// The name of the error class a binding for another language raises
    /// this as (`WrongCodeError`, `ExchangeTimeoutError`, ...; the Python
    /// package and the browser module share these names), grouping the
    /// variants a program handles alike.
    ///
    /// ```
    /// use wormhole_sync_core::Error;
    ///
    /// assert_eq!(Error::WrongCode.binding_class(), "WrongCodeError");
    /// assert_eq!(Error::ChannelBurned.binding_class(), Error::ChannelExpired.binding_class());
    /// ```
    pub fn binding_class(&self) -> &'static str {
        match self {
            Error::WrongCode => "WrongCodeError",
            Error::Timeout => "ExchangeTimeoutError",
            Error::Crowded => "CrowdedError",
            Error::UnknownChannel => "UnknownChannelError",
            Error::ChannelExpired | Error::ChannelBurned => "ChannelGoneError",
            Error::PeerClosed { .. } | Error::PeerVanished | Error::PeerDeclined => "PeerClosedError",
            Error::ServerUnreachable { .. } => "ServerUnreachableError",
            Error::ServerBusy { .. } => "ServerBusyError",
            Error::ServerRejected { .. } => "ServerRefusedError",
            Error::BadSerializedState(_) => "BadStateError",
            Error::BadCode(_) => "BadCodeError",
            Error::Cancelled => "CancelledError",
            Error::DataTooLarge { .. } | Error::InvalidConfig(_) | Error::ApiMisuse(_) => "UsageError",
            _ => "ProtocolError",
        }
    }

    /// The message with every cause, `: `-separated (why the server could
    /// not be reached), for hosts that show one string. Like the message,
    /// it never contains the code, keys or data.
    pub fn message_with_causes(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(inner) = cause {
            text = format!("{text}: {inner}");
            cause = inner.source();
        }
        text
    }

    /// The server's error code, where the server refused.
    pub fn server_code(&self) -> Option<&ServerErrorCode> {
        match self {
            Error::ServerBusy { code, .. } | Error::ServerRejected { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A call the exchange's state does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiMisuse {
    /// A verdict on the verifier was given, but no verifier is waiting for
    /// one (confirmation is off, the keys are not agreed yet, or a verdict
    /// was already given).
    #[error("no verifier is waiting for a verdict")]
    NoVerifierPending,
    /// The data was asked for while the verifier waits for a verdict that
    /// only the caller can give: confirm or decline it first.
    #[error("confirm or decline the verifier first")]
    VerifierUnconfirmed,
}

/// The error code of a server's refusal: one of PROTOCOL.md's codes, a code
/// this version does not know (from a newer server), or the bare HTTP status
/// of an answer whose body was not an error object.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServerErrorCode {
    /// A code PROTOCOL.md documents.
    Known(ErrorCode),
    /// A code this version does not know, printable characters only.
    Unknown(String),
    /// The answer had this HTTP status and no error object.
    HttpStatus(u16),
}

impl ServerErrorCode {
    /// The code for its wire name (`http-<status>` for a bare status).
    pub fn from_name(name: &str) -> ServerErrorCode {
        if let Some(code) = ErrorCode::from_name(name) {
            return ServerErrorCode::Known(code);
        }
        let status = name.strip_prefix("http-").and_then(|s| s.parse().ok()).filter(|s| (100..=599).contains(s));
        match status {
            Some(status) => ServerErrorCode::HttpStatus(status),
            None => ServerErrorCode::Unknown(printable(name, 64)),
        }
    }
}

impl PartialEq<ErrorCode> for ServerErrorCode {
    fn eq(&self, other: &ErrorCode) -> bool {
        *self == ServerErrorCode::Known(*other)
    }
}

impl fmt::Display for ServerErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerErrorCode::Known(code) => code.fmt(f),
            ServerErrorCode::Unknown(name) => f.write_str(name),
            ServerErrorCode::HttpStatus(status) => write!(f, "http-{status}"),
        }
    }
}

/// Why the server has not answered lately, from
/// [`Exchange::server_trouble`](crate::Exchange::server_trouble): for an
/// application to show while the exchange retries ("cannot reach the server
/// for 40 s: connection refused") instead of waiting in silence.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerTrouble {
    /// The last failure: the transport's error, "no answer in time", or the
    /// server's refusal (`HTTP 503`, say).
    pub cause: TransportError,
    /// When the failures began: the first since the server last answered.
    pub since: Timestamp,
    /// Whether the server ever answered this exchange (before a restore
    /// too): if not, the address may be wrong or no server is running there.
    pub server_reached: bool,
}

impl ServerTrouble {
    /// What a machine reports: nothing while no request failed since the
    /// server last answered, nor once there is an outcome.
    pub(crate) fn report(
        since: Option<Timestamp>,
        has_outcome: bool,
        cause: &TransportError,
        server_reached: bool,
    ) -> Option<ServerTrouble> {
        let since = since.filter(|_| !has_outcome)?;
        Some(ServerTrouble { cause: cause.clone(), since, server_reached })
    }
}

/// Why a request got no answer (connection refused, DNS failure, no answer
/// in time, ...): the transport's own error, kept whole so
/// [`source()`](std::error::Error::source) walks its causes.
///
/// `Display` shows the transport error's message with control characters
/// replaced. Two causes are equal when they read the same.
#[derive(Clone)]
pub struct TransportError {
    inner: Arc<dyn std::error::Error + Send + Sync + 'static>,
    permanent: bool,
}

impl TransportError {
    /// Wraps a transport's error; the request is retried per the schedule.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> TransportError {
        TransportError { inner: Arc::new(error), permanent: false }
    }

    /// Wraps an error retrying cannot fix (the server's TLS certificate is
    /// not trusted, say): the exchange fails at once with
    /// [`Error::ServerUnreachable`] instead of retrying until its timeout.
    pub fn permanent(error: impl std::error::Error + Send + Sync + 'static) -> TransportError {
        TransportError { inner: Arc::new(error), permanent: true }
    }

    /// Wraps a transport's error, [permanent](Self::permanent) if any
    /// error in its chain of causes (looking inside I/O errors too) makes
    /// `is_permanent` true: a transport passes "is it a TLS error?".
    pub fn classify(
        error: impl std::error::Error + Send + Sync + 'static,
        is_permanent: impl Fn(&(dyn std::error::Error + 'static)) -> bool,
    ) -> TransportError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        let mut permanent = false;
        while let Some(e) = source {
            let inside_io = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
            if is_permanent(e) || inside_io.is_some_and(|inner| is_permanent(inner)) {
                permanent = true;
                break;
            }
            source = e.source().or_else(|| inside_io.map(|inner| inner as &(dyn std::error::Error + 'static)));
        }
        TransportError { inner: Arc::new(error), permanent }
    }

    /// A cause known only by its description (a restored exchange's, or
    /// the core's own "no answer in time").
    pub fn from_message(message: &str) -> TransportError {
        TransportError { inner: Arc::new(Message(printable(message, 1024))), permanent: false }
    }

    /// The same cause, [permanent](Self::permanent): a host that knows
    /// retrying cannot help (`TransportError::from_message(why).into_permanent()`).
    pub fn into_permanent(mut self) -> TransportError {
        self.permanent = true;
        self
    }

    /// Whether retrying cannot help.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// The description with every cause, `: `-separated, as one printable line.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = self.inner.source();
        while let Some(cause) = source {
            text = format!("{text}: {}", printable(&cause.to_string(), 256));
            source = cause.source();
        }
        text
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&printable(&self.inner.to_string(), 256))
    }
}

impl fmt::Debug for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TransportError").field(&self.chain()).finish()
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source()
    }
}

impl PartialEq for TransportError {
    fn eq(&self, other: &Self) -> bool {
        self.chain() == other.chain()
    }
}

impl Eq for TransportError {}

#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

fn peer_closed(mood: Mood) -> &'static str {
    match mood {
        Mood::Lonely => "the other side gave up waiting (lonely) or was stopped",
        Mood::Errory => "the other side stopped because of an error (errory)",
        Mood::Happy => "the other side closed the channel (happy) before our data reached it",
        Mood::Scary => "the other side saw a wrong code (scary)",
        Mood::Declined => "the other side declined the verifier (declined)",
    }
}
