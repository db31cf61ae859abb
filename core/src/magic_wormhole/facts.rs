//! What a [`MailboxExchange`](super::MailboxExchange) keeps: what it was
//! given, what the mailbox server confirmed, what the peer sent. Exactly
//! what its saved state holds; keys, bodies and events are derived from
//! them (and the exchange's random seed) again after a restore.

use serde::{Deserialize, Serialize};

use crate::code::Code;
use crate::config::Config;
use crate::crypto::Seed;
use crate::saved_fields;
use crate::time::{Timestamp, MAX_TIMESTAMP};
use crate::wire::MailboxId;
use crate::{Error, Role, MAX_DATA_LEN};

use super::crypto::{NONCE_LEN, TAG_LEN};

/// Longest peer `pake` body kept (magic-wormhole's is 77 bytes).
pub(super) const MAX_PEER_PAKE: usize = 1024;
/// Longest peer `version` message kept (its application versions and
/// abilities, as JSON, sealed).
pub(super) const MAX_PEER_VERSION: usize = 64 * 1024;
/// Longest peer application message kept: our data limit, sealed.
pub(super) const MAX_PEER_DATA: usize = MAX_DATA_LEN + NONCE_LEN + TAG_LEN;

/// The persisted state of a magic-wormhole exchange. Field order is the
/// saved order.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Facts {
    // Given.
    pub(super) role: Role,
    pub(super) config: Config,
    #[serde(with = "saved_fields::seed")]
    pub(super) seed: Seed,
    #[serde(with = "saved_fields::bytes")]
    pub(super) data: Vec<u8>,
    /// A receiver of the `wormhole` command's text convention: its message
    /// answers the sender's (an ack to a text offer, a refusal to anything
    /// else) instead of being `data`. Absent from saved states when false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub(super) answers_offer: bool,
    #[serde(with = "saved_fields::code")]
    pub(super) code: Option<Code>,
    pub(super) started_at: Option<Timestamp>,
    // Confirmed by the mailbox server.
    pub(super) reached_server: bool,
    pub(super) mailbox: Option<MailboxId>,
    pub(super) released: bool,
    /// Our messages the server sent back, so stored: `pake`, `version`, `0`.
    pub(super) echoed: [bool; 3],
    pub(super) closed: bool,
    // Learned from the peer.
    pub(super) peer_side: Option<String>,
    #[serde(with = "saved_fields::optional_bytes")]
    pub(super) peer_pake: Option<Vec<u8>>,
    #[serde(with = "saved_fields::optional_bytes")]
    pub(super) peer_version: Option<Vec<u8>>,
    #[serde(with = "saved_fields::optional_bytes")]
    pub(super) peer_data: Option<Vec<u8>>,
    // Decided here.
    #[serde(with = "saved_fields::failure")]
    pub(super) failure: Option<Error>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Fails with `why` unless `rule` holds.
fn require(rule: bool, why: &str) -> Result<(), Error> {
    rule.then_some(()).ok_or_else(|| Error::BadSerializedState(why.to_string()))
}

impl Facts {
    pub(super) fn new(role: Role, config: Config, data: Vec<u8>, seed: Seed, code: Option<Code>) -> Facts {
        Facts {
            role,
            config,
            seed,
            data,
            answers_offer: false,
            code,
            started_at: None,
            reached_server: false,
            mailbox: None,
            released: false,
            echoed: [false; 3],
            closed: false,
            peer_side: None,
            peer_pake: None,
            peer_version: None,
            peer_data: None,
            failure: None,
        }
    }

    /// Checks restored facts, field by field and then the rules between
    /// fields every reachable state keeps. Texts name the rule, never a value.
    pub(super) fn validate(&self) -> Result<(), Error> {
        self.config.validate().map_err(|_| Error::BadSerializedState("the configuration is out of range".into()))?;
        require(self.data.len() <= MAX_DATA_LEN, "data must be at most 32 KiB")?;
        let within = |bytes: &Option<Vec<u8>>, max: usize| bytes.as_ref().is_none_or(|b| b.len() <= max);
        require(within(&self.peer_pake, MAX_PEER_PAKE), "the peer's PAKE message is too long")?;
        require(within(&self.peer_version, MAX_PEER_VERSION), "the peer's version message is too long")?;
        require(within(&self.peer_data, MAX_PEER_DATA), "the peer's message is too long")?;
        // As a `message` frame may carry it (the reference server takes any printable side).
        require(
            self.peer_side.as_deref().is_none_or(crate::mailbox_wire::is_peer_side),
            "peer side is not a valid side",
        )?;
        require(
            self.failure.as_ref().is_none_or(saved_fields::failure_texts_fit),
            "a failure's text is too long or not printable",
        )?;
        require(self.started_at.is_none_or(|t| t <= MAX_TIMESTAMP), "started_at lies beyond the year 9999")?;
        require(self.role == Role::Initiator || self.code.is_some(), "a receiver must have a code")?;
        require(self.role == Role::Receiver || !self.answers_offer, "only a receiver answers an offer")?;
        let started = self.started_at.is_some();
        require(started || !self.reached_server, "the server was reached before the start")?;
        require(self.reached_server || self.mailbox.is_none(), "a mailbox needs the server")?;
        require(self.code.is_some() || self.mailbox.is_none(), "a mailbox needs a code")?;
        let mailbox = self.mailbox.is_some();
        require(mailbox || !self.released, "a released nameplate needs a mailbox")?;
        require(mailbox || self.echoed == [false; 3], "an echoed message needs a mailbox")?;
        require(mailbox || !self.closed, "a closed mailbox needs a mailbox")?;
        let heard = self.peer_side.is_some();
        require(mailbox || !heard, "a peer is heard through a mailbox")?;
        let from_peer = [&self.peer_pake, &self.peer_version, &self.peer_data];
        require(heard || from_peer.iter().all(|m| m.is_none()), "a peer's message needs the peer's side")?;
        Ok(())
    }
}
