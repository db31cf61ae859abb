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
use crate::wire::{validate_side, MailboxId, Mood, MAX_SEQ};
use crate::{Error, Role};

use super::MAX_DATA_LEN;
use crate::saved_fields;

/// The persisted state of an exchange. Field order is the saved order.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Facts {
    // Given.
    pub(super) role: Role,
    pub(super) config: Config,
    #[serde(with = "crate::saved_fields::seed")]
    pub(super) seed: Seed,
    #[serde(with = "crate::saved_fields::bytes")]
    pub(super) data: Vec<u8>,
    #[serde(with = "crate::saved_fields::code")]
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
    #[serde(with = "crate::saved_fields::optional_bytes")]
    pub(super) peer_pake: Option<Vec<u8>>,
    #[serde(with = "crate::saved_fields::optional_bytes")]
    pub(super) peer_data: Option<Vec<u8>>,
    pub(super) peer_mood: Option<Mood>,
    // Decided here.
    pub(super) decision: Option<bool>,
    #[serde(with = "crate::saved_fields::failure")]
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
        require(
            self.failure.as_ref().is_none_or(saved_fields::failure_texts_fit),
            "a failure's text is too long or not printable",
        )?;
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

#[cfg(test)]
mod tests {
    use super::saved_fields::SavedFailure;
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
            Error::PeerVanished,
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
