//! The serialized form of an exchange (PROTOCOL.md 5): writing it, reading
//! it back, and the checks a blob passes before it becomes an exchange
//! again: every field on its own, then the invariants between fields that a
//! real exchange always keeps. Error texts name the rule that failed, never
//! a value from the blob (it can hold the code).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{Exchange, MAX_DATA_LEN, MAX_SERIALIZED_LEN};
use crate::code::Code;
use crate::config::Config;
use crate::crypto::{hex, unhex, PAKE_MESSAGE_LEN, TAG_LEN};
use crate::time::{Timestamp, MAX_TIMESTAMP};
use crate::wire::{is_printable_text, validate_side, Mood, MAX_SEQ};
use crate::{ascii_json, Error, Role};

const FORMAT: &str = "wormhole-sync/exchange";
const FORMAT_VERSION: u32 = 1;
/// Longest text kept in a saved failure.
const MAX_FAILURE_TEXT: usize = 1024;

/// Just enough to tell a foreign blob from a newer version.
#[derive(Deserialize)]
struct FormatHeader {
    format: Option<String>,
    version: Option<u32>,
}

/// The serialized form, field for field (`format`, `version`, then the facts).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SerializedExchange {
    format: String,
    version: u32,
    role: Role,
    config: Config,
    seed: String,
    data: String,
    code: Option<String>,
    create_channel: bool,
    started_at: Option<Timestamp>,
    joined: bool,
    pake_posted: bool,
    data_posted: bool,
    close_acked: bool,
    reached_server: bool,
    cursor: u64,
    peer_side: Option<String>,
    peer_pake: Option<String>,
    peer_data: Option<String>,
    peer_mood: Option<Mood>,
    decision: Option<bool>,
    failure: Option<Error>,
}

fn bad(why: &str) -> Error {
    Error::BadSerializedState(why.to_string())
}

/// Fails with `why` unless `rule` holds.
fn require(rule: bool, why: &str) -> Result<(), Error> {
    rule.then_some(()).ok_or_else(|| bad(why))
}

fn decode_base64(text: &str, max: usize, why: &str) -> Result<Vec<u8>, Error> {
    BASE64.decode(text).ok().filter(|b| b.len() <= max).ok_or_else(|| bad(why))
}

impl Exchange {
    /// The whole state as JSON of printable ASCII (PROTOCOL.md 5),
    /// restorable with [`from_serialized`](Self::from_serialized) at any
    /// point of the exchange.
    ///
    /// **The result contains secrets** (our seed, the code, our data): store
    /// it as carefully as the data itself.
    pub fn serialize(&self) -> Vec<u8> {
        let b64 = |bytes: &Vec<u8>| BASE64.encode(bytes);
        let state = SerializedExchange {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            role: self.role,
            config: self.config.clone(),
            seed: hex(self.seed.0.as_slice()),
            data: BASE64.encode(&self.data),
            code: self.code.as_ref().map(Code::to_string),
            create_channel: self.create_channel,
            started_at: self.started_at,
            joined: self.joined,
            pake_posted: self.pake_posted,
            data_posted: self.data_posted,
            close_acked: self.close_acked,
            reached_server: self.reached_server,
            cursor: self.cursor,
            peer_side: self.peer_side.clone(),
            peer_pake: self.peer_pake.as_ref().map(b64),
            peer_data: self.peer_data.as_ref().map(b64),
            peer_mood: self.peer_mood,
            decision: self.decision,
            failure: self.failure.clone(),
        };
        ascii_json::to_vec(&state)
    }

    /// Restores an exchange from [`serialize`](Self::serialize)'s output.
    /// Sending resumes at once; the schedule and timeout continue from the
    /// original start (a start that lies ahead of the clock given next moves
    /// to that clock). A corrupt, foreign or impossible state gives
    /// [`Error::BadSerializedState`], whose text never repeats a value from
    /// the blob.
    ///
    /// ```
    /// use wormhole_sync_core::{Config, Exchange, Timestamp};
    ///
    /// let mut before = Exchange::initiator(Config::new("app")?, b"hi".to_vec(), [7; 32])?;
    /// before.start(Timestamp::from_millis(1_000));
    /// let restored = Exchange::from_serialized(&before.serialize())?;
    /// assert!(restored.is_started());
    /// assert!(Exchange::from_serialized(b"{\"format\":\"other\"}").is_err());
    /// # Ok::<(), wormhole_sync_core::Error>(())
    /// ```
    pub fn from_serialized(bytes: &[u8]) -> Result<Exchange, Error> {
        let bad = |why: &str| Error::BadSerializedState(why.to_string());
        if bytes.len() > MAX_SERIALIZED_LEN {
            return Err(bad("larger than any serialized exchange"));
        }
        let header: FormatHeader = serde_json::from_slice(bytes).map_err(|_| bad("not a serialized exchange"))?;
        if header.format.as_deref() != Some(FORMAT) {
            return Err(bad("not a serialized wormhole-sync exchange"));
        }
        if header.version != Some(FORMAT_VERSION) {
            return Err(bad("unsupported format version"));
        }
        // serde's messages can quote the offending value (the code, say): name the place only.
        let state: SerializedExchange = serde_json::from_slice(bytes).map_err(|e| {
            Error::BadSerializedState(format!(
                "a field is missing, unknown or of the wrong type (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let mut exchange = Exchange::decode(state)?;
        exchange.check_invariants()?;
        exchange.progress();
        if exchange.close_acked && !exchange.is_terminal() {
            return Err(bad("the channel is closed but the exchange has no outcome"));
        }
        Ok(exchange)
    }

    /// [`from_serialized`](Self::from_serialized), refusing state that
    /// belongs to the other role (an initiator's state given to a receiver).
    pub fn from_serialized_as(bytes: &[u8], role: Role) -> Result<Exchange, Error> {
        let exchange = Exchange::from_serialized(bytes)?;
        if exchange.role != role {
            return Err(Error::BadSerializedState(format!("this state belongs to a {:?}", exchange.role)));
        }
        Ok(exchange)
    }

    /// Decodes every field of a parsed blob into an exchange.
    fn decode(state: SerializedExchange) -> Result<Exchange, Error> {
        state.config.validate().map_err(|_| bad("the configuration is out of range"))?;
        let seed: [u8; 32] =
            unhex(&state.seed).and_then(|s| s.try_into().ok()).ok_or_else(|| bad("seed must be 32 bytes of hex"))?;
        let data = decode_base64(&state.data, MAX_DATA_LEN, "data must be base64 of at most 32 KiB")?;
        let code = match &state.code {
            Some(text) => {
                let code = text.parse::<Code>().map_err(|_| bad("code is not a valid code"))?;
                require(code.to_string() == *text, "code is not in canonical form")?;
                Some(code)
            }
            None => None,
        };
        let decode_peer = |text: &Option<String>, max: usize, why: &str| {
            text.as_deref().map(|t| decode_base64(t, max, why)).transpose()
        };
        let peer_pake =
            decode_peer(&state.peer_pake, PAKE_MESSAGE_LEN, "peer PAKE message must be base64 of at most 33 bytes")?;
        let peer_data =
            decode_peer(&state.peer_data, MAX_DATA_LEN + TAG_LEN, "peer data must be base64 of at most 32 KiB + 16")?;
        if let Some(side) = &state.peer_side {
            validate_side(side).map_err(|_| bad("peer side is not a valid side"))?;
        }
        if let Some(failure) = &state.failure {
            let printable = failure.texts().into_iter().all(|t| t.len() <= MAX_FAILURE_TEXT && is_printable_text(t));
            require(printable, "a failure's text is too long or not printable")?;
        }
        let mut exchange = Exchange::new(state.role, state.config, data, seed, code)?;
        exchange.create_channel = state.create_channel;
        exchange.started_at = state.started_at;
        exchange.joined = state.joined;
        exchange.pake_posted = state.pake_posted;
        exchange.data_posted = state.data_posted;
        exchange.close_acked = state.close_acked;
        exchange.reached_server = state.reached_server;
        exchange.cursor = state.cursor;
        exchange.peer_side = state.peer_side;
        exchange.peer_pake = peer_pake;
        exchange.peer_data = peer_data;
        exchange.peer_mood = state.peer_mood;
        exchange.decision = state.decision;
        exchange.failure = state.failure;
        Ok(exchange)
    }

    /// The rules between facts that every reachable state keeps
    /// (PROTOCOL.md 5); a blob breaking one was edited or corrupted.
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
        require(self.peer_side.as_deref() != Some(self.side.as_str()), "the peer side is our own side")?;
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
