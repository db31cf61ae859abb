//! The facts an exchange keeps: what it was given, what the server
//! acknowledged, what the peer sent and what it decided. They are exactly
//! what a saved state holds (PROTOCOL.md 5), in one serde type, so adding a
//! fact is one change here; everything else (keys, requests, events) is
//! derived from them.

use serde::{Deserialize, Serialize};

use crate::code::Code;
use crate::config::Config;
use crate::crypto::{Seed, PAKE_MESSAGE_LEN, TAG_LEN};
use crate::time::{Timestamp, MAX_TIMESTAMP};
use crate::wire::{is_printable_text, validate_side, MailboxId, Mood, MAX_SEQ};
use crate::{Error, Role};

use super::MAX_DATA_LEN;

/// Longest text kept in a saved failure.
const MAX_FAILURE_TEXT: usize = 1024;

/// The persisted state of an exchange. Field order is the saved order.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Facts {
    // Given.
    pub(super) role: Role,
    pub(super) config: Config,
    #[serde(with = "encoding::seed")]
    pub(super) seed: Seed,
    #[serde(with = "encoding::bytes")]
    pub(super) data: Vec<u8>,
    #[serde(with = "encoding::code")]
    pub(super) code: Option<Code>,
    pub(super) create_channel: bool,
    pub(super) started_at: Option<Timestamp>,
    // Acknowledged by the server.
    pub(super) joined: bool,
    /// The channel's mailbox, from the allocate or join answer (absent from
    /// states saved before mailboxes, and with servers that predate them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) mailbox: Option<MailboxId>,
    pub(super) pake_posted: bool,
    pub(super) data_posted: bool,
    pub(super) close_acked: bool,
    pub(super) reached_server: bool,
    // Learned from the peer.
    pub(super) cursor: u64,
    pub(super) peer_side: Option<String>,
    #[serde(with = "encoding::optional_bytes")]
    pub(super) peer_pake: Option<Vec<u8>>,
    #[serde(with = "encoding::optional_bytes")]
    pub(super) peer_data: Option<Vec<u8>>,
    pub(super) peer_mood: Option<Mood>,
    // Decided here.
    pub(super) decision: Option<bool>,
    #[serde(with = "encoding::failure")]
    pub(super) failure: Option<Error>,
}

/// Fails with `why` unless `rule` holds.
fn require(rule: bool, why: &str) -> Result<(), Error> {
    rule.then_some(()).ok_or_else(|| Error::BadSerializedState(why.to_string()))
}

impl Facts {
    /// What a new exchange knows.
    pub(super) fn new(role: Role, config: Config, data: Vec<u8>, seed: Seed, code: Option<Code>) -> Facts {
        Facts {
            role,
            config,
            seed,
            data,
            code,
            create_channel: false,
            started_at: None,
            joined: false,
            mailbox: None,
            pake_posted: false,
            data_posted: false,
            close_acked: false,
            reached_server: false,
            cursor: 0,
            peer_side: None,
            peer_pake: None,
            peer_data: None,
            peer_mood: None,
            decision: None,
            failure: None,
        }
    }

    /// Whether our data may be posted: no confirmation asked, or accepted.
    pub(super) fn released(&self) -> bool {
        !self.config.confirms_verifier() || self.decision == Some(true)
    }

    /// Checks restored facts: each field on its own, then the rules between
    /// fields that every reachable state keeps. A blob breaking one was
    /// edited or corrupted. Texts name the rule, never a value.
    pub(super) fn validate(&self) -> Result<(), Error> {
        self.config.validate().map_err(|_| Error::BadSerializedState("the configuration is out of range".into()))?;
        require(self.data.len() <= MAX_DATA_LEN, "data must be at most 32 KiB")?;
        require(
            self.peer_pake.as_ref().is_none_or(|p| p.len() <= PAKE_MESSAGE_LEN),
            "the peer's PAKE message must be at most 33 bytes",
        )?;
        require(
            self.peer_data.as_ref().is_none_or(|d| d.len() <= MAX_DATA_LEN + TAG_LEN),
            "the peer's data must be at most 32 KiB + 16",
        )?;
        require(self.peer_side.as_deref().is_none_or(|s| validate_side(s).is_ok()), "peer side is not a valid side")?;
        if let Some(failure) = &self.failure {
            let saved = encoding::SavedFailure::from(failure);
            let texts = saved.texts();
            let printable = texts.iter().all(|t| t.len() <= MAX_FAILURE_TEXT && is_printable_text(t));
            require(printable, "a failure's text is too long or not printable")?;
        }
        self.check_invariants()
    }

    fn check_invariants(&self) -> Result<(), Error> {
        let started = self.started_at.is_some();
        let has_code = self.code.is_some();
        require(self.started_at.is_none_or(|t| t <= MAX_TIMESTAMP), "started_at lies beyond the year 9999")?;
        require(self.role == Role::Initiator || has_code, "a receiver must have a code")?;
        require(!self.create_channel || has_code, "create_channel needs a code")?;
        require(started || !self.reached_server, "reached_server needs a start")?;
        require(
            !self.joined || (started && has_code && self.reached_server),
            "joined needs a start, a code and reached_server",
        )?;
        require(!self.pake_posted || self.joined, "pake_posted needs joined")?;
        require(
            !self.data_posted || (self.pake_posted && self.peer_pake.is_some()),
            "data_posted needs pake_posted and the peer's PAKE message",
        )?;
        require(
            !self.data_posted || self.released(),
            "data_posted needs an accepted verifier when confirmation is on",
        )?;
        require(!self.close_acked || self.joined, "close_acked needs joined")?;
        require(self.cursor <= MAX_SEQ, "cursor is beyond the largest sequence number")?;
        require(self.cursor == 0 || self.joined, "a cursor needs joined")?;
        require(self.peer_side.as_deref() != Some(self.seed.side().as_str()), "the peer side is our own side")?;
        require(self.peer_side.is_none() || self.joined, "peer_side needs joined")?;
        let heard_peer = self.peer_pake.is_some() || self.peer_data.is_some();
        require(
            !heard_peer || self.peer_side.is_some() && self.cursor > 0,
            "peer messages need peer_side and a cursor",
        )?;
        require(self.peer_mood.is_none() || self.peer_side.is_some(), "peer_mood needs peer_side")?;
        require(self.decision.is_none() || self.peer_pake.is_some(), "a verdict needs the peer's PAKE message")?;
        Ok(())
    }
}

/// How the facts that are not plain JSON values are written: bytes in
/// base64, the exchange's secret seed in hex, the code as typed, a failure by a stable code.
pub(super) mod encoding {
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::code::Code;
    use crate::crypto::{hex, unhex, Seed};
    use crate::error::{Error, ServerErrorCode, TransportError};
    use crate::wire::Mood;

    /// Marks a decoding rule's message, so the loader can repeat it (it
    /// names the rule, never the value) where serde's own messages may
    /// quote the value.
    pub(in crate::exchange) const RULE: &str = "rule: ";

    fn broken<E: serde::de::Error>(why: &str) -> E {
        E::custom(format!("{RULE}{why}"))
    }

    pub(super) mod seed {
        use super::*;

        pub(in crate::exchange) fn serialize<S: Serializer>(seed: &Seed, s: S) -> Result<S::Ok, S::Error> {
            hex(seed.0.as_slice()).serialize(s)
        }

        pub(in crate::exchange) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Seed, D::Error> {
            let text = String::deserialize(d)?;
            let bytes: [u8; 32] =
                unhex(&text).and_then(|s| s.try_into().ok()).ok_or_else(|| broken("seed must be 32 bytes of hex"))?;
            Ok(Seed::new(bytes))
        }
    }

    pub(super) mod bytes {
        use super::*;

        pub(in crate::exchange) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
            BASE64.encode(bytes).serialize(s)
        }

        pub(in crate::exchange) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            let text = String::deserialize(d)?;
            // Longer than any allowed field: refused before decoding.
            if text.len() > 64 * 1024 {
                return Err(broken("a byte field is too long"));
            }
            BASE64.decode(text).map_err(|_| broken("a byte field is not base64"))
        }
    }

    pub(super) mod optional_bytes {
        use super::*;

        pub(in crate::exchange) fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
            bytes.as_ref().map(|b| BASE64.encode(b)).serialize(s)
        }

        pub(in crate::exchange) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapped(#[serde(with = "super::bytes")] Vec<u8>);
            Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
        }
    }

    pub(super) mod code {
        use super::*;

        pub(in crate::exchange) fn serialize<S: Serializer>(code: &Option<Code>, s: S) -> Result<S::Ok, S::Error> {
            code.as_ref().map(Code::to_string).serialize(s)
        }

        pub(in crate::exchange) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Code>, D::Error> {
            let Some(text) = Option::<String>::deserialize(d)? else { return Ok(None) };
            let code = text.parse::<Code>().map_err(|_| broken("code is not a valid code"))?;
            if code.to_string() != text {
                return Err(broken("code is not in canonical form"));
            }
            Ok(Some(code))
        }
    }

    pub(super) mod failure {
        use super::*;

        pub(in crate::exchange) fn serialize<S: Serializer>(failure: &Option<Error>, s: S) -> Result<S::Ok, S::Error> {
            failure.as_ref().map(SavedFailure::from).serialize(s)
        }

        pub(in crate::exchange) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Error>, D::Error> {
            Ok(Option::<SavedFailure>::deserialize(d)?.map(Error::from))
        }
    }

    /// A failure as saved: each kind by a stable name of its own, so
    /// renaming an [`Error`] variant cannot break old saved states.
    #[derive(Serialize, Deserialize)]
    #[serde(tag = "kind", deny_unknown_fields)]
    pub(in crate::exchange) enum SavedFailure {
        #[serde(rename = "wrong-code")]
        WrongCode,
        #[serde(rename = "timeout")]
        Timeout,
        #[serde(rename = "crowded")]
        Crowded,
        #[serde(rename = "unknown-channel")]
        UnknownChannel,
        #[serde(rename = "channel-expired")]
        ChannelExpired,
        #[serde(rename = "channel-burned")]
        ChannelBurned,
        #[serde(rename = "cancelled")]
        Cancelled,
        #[serde(rename = "declined")]
        Declined,
        #[serde(rename = "peer-declined")]
        PeerDeclined,
        #[serde(rename = "reflection")]
        Reflection,
        #[serde(rename = "peer-closed")]
        PeerClosed { mood: Mood },
        #[serde(rename = "server-unreachable")]
        ServerUnreachable { detail: String },
        #[serde(rename = "peer-protocol")]
        PeerProtocol { detail: String },
        #[serde(rename = "server-protocol")]
        ServerProtocol { detail: String },
        #[serde(rename = "server-busy")]
        ServerBusy { code: String, message: String },
        #[serde(rename = "server-rejected")]
        ServerRejected { code: String, message: String },
    }

    /// `text` cut to at most `max` bytes, at a character boundary.
    fn within(mut text: String, max: usize) -> String {
        let mut end = text.len().min(max);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text
    }

    impl SavedFailure {
        /// The free texts it carries.
        pub(in crate::exchange) fn texts(&self) -> Vec<&str> {
            match self {
                SavedFailure::ServerUnreachable { detail }
                | SavedFailure::PeerProtocol { detail }
                | SavedFailure::ServerProtocol { detail } => vec![detail],
                SavedFailure::ServerBusy { code, message } | SavedFailure::ServerRejected { code, message } => {
                    vec![code, message]
                }
                _ => Vec::new(),
            }
        }
    }

    impl From<&Error> for SavedFailure {
        fn from(error: &Error) -> SavedFailure {
            match error {
                Error::WrongCode => SavedFailure::WrongCode,
                Error::Timeout => SavedFailure::Timeout,
                Error::Crowded => SavedFailure::Crowded,
                Error::UnknownChannel => SavedFailure::UnknownChannel,
                Error::ChannelExpired => SavedFailure::ChannelExpired,
                Error::ChannelBurned => SavedFailure::ChannelBurned,
                Error::Cancelled => SavedFailure::Cancelled,
                Error::Declined => SavedFailure::Declined,
                Error::PeerDeclined => SavedFailure::PeerDeclined,
                Error::Reflection => SavedFailure::Reflection,
                Error::PeerClosed { mood } => SavedFailure::PeerClosed { mood: *mood },
                Error::ServerUnreachable { cause } => {
                    SavedFailure::ServerUnreachable { detail: within(cause.chain(), super::MAX_FAILURE_TEXT) }
                }
                Error::PeerProtocol { detail } => SavedFailure::PeerProtocol { detail: detail.clone() },
                Error::ServerProtocol { detail } => SavedFailure::ServerProtocol { detail: detail.clone() },
                Error::ServerBusy { code, message } => {
                    SavedFailure::ServerBusy { code: code.to_string(), message: message.clone() }
                }
                Error::ServerRejected { code, message } => {
                    SavedFailure::ServerRejected { code: code.to_string(), message: message.clone() }
                }
                // An exchange ends only with the outcomes above (`Error::is_outcome`);
                // anything else would be kept as a protocol failure with its text.
                other => SavedFailure::ServerProtocol { detail: within(other.to_string(), super::MAX_FAILURE_TEXT) },
            }
        }
    }

    impl From<SavedFailure> for Error {
        fn from(saved: SavedFailure) -> Error {
            match saved {
                SavedFailure::WrongCode => Error::WrongCode,
                SavedFailure::Timeout => Error::Timeout,
                SavedFailure::Crowded => Error::Crowded,
                SavedFailure::UnknownChannel => Error::UnknownChannel,
                SavedFailure::ChannelExpired => Error::ChannelExpired,
                SavedFailure::ChannelBurned => Error::ChannelBurned,
                SavedFailure::Cancelled => Error::Cancelled,
                SavedFailure::Declined => Error::Declined,
                SavedFailure::PeerDeclined => Error::PeerDeclined,
                SavedFailure::Reflection => Error::Reflection,
                SavedFailure::PeerClosed { mood } => Error::PeerClosed { mood },
                SavedFailure::ServerUnreachable { detail } => {
                    Error::ServerUnreachable { cause: TransportError::from_message(&detail) }
                }
                SavedFailure::PeerProtocol { detail } => Error::PeerProtocol { detail },
                SavedFailure::ServerProtocol { detail } => Error::ServerProtocol { detail },
                SavedFailure::ServerBusy { code, message } => {
                    Error::ServerBusy { code: ServerErrorCode::from_name(&code), message }
                }
                SavedFailure::ServerRejected { code, message } => {
                    Error::ServerRejected { code: ServerErrorCode::from_name(&code), message }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::encoding::SavedFailure;
    use crate::error::{ServerErrorCode, TransportError};
    use crate::wire::{ErrorCode, Mood};
    use crate::Error;

    /// Found by fuzzing: a failure kind without its own arm was saved with
    /// its display text, so a restored exchange reported a different error.
    #[test]
    fn every_outcome_is_saved_and_restored_unchanged() {
        let outcomes = [
            Error::WrongCode,
            Error::Timeout,
            Error::ServerUnreachable { cause: TransportError::from_message("connection refused") },
            Error::ServerBusy { code: ServerErrorCode::Known(ErrorCode::ServerFull), message: "full".into() },
            Error::Crowded,
            Error::UnknownChannel,
            Error::ChannelExpired,
            Error::ChannelBurned,
            Error::PeerClosed { mood: Mood::Errory },
            Error::Cancelled,
            Error::Declined,
            Error::PeerDeclined,
            Error::Reflection,
            Error::PeerProtocol { detail: "bad pake".into() },
            Error::ServerProtocol { detail: "malformed response".into() },
            Error::ServerRejected { code: ServerErrorCode::HttpStatus(404), message: String::new() },
            Error::ServerRejected { code: ServerErrorCode::Unknown("new-code".into()), message: "m".into() },
        ];
        for error in outcomes {
            assert!(error.is_outcome());
            let saved = serde_json::to_string(&SavedFailure::from(&error)).unwrap();
            let restored: Error = serde_json::from_str::<SavedFailure>(&saved).unwrap().into();
            assert_eq!(restored, error, "{saved}");
        }
    }
}
