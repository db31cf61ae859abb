//! The saved form of an exchange (PROTOCOL.md 5): `format`, `version`, then
//! the [`Facts`] as they are. Error texts name the rule that failed, never a
//! value from the blob (it can hold the code).

use super::facts::Facts;
use super::{Exchange, MAX_SERIALIZED_LEN};
use crate::saved_fields;
use crate::{Error, Role};

const FORMAT: &str = "wormhole-sync/exchange";
/// Version 2 adds `mailbox`. A state is written with the lowest version
/// that holds it, so one without a mailbox still loads in 0.1, and one with
/// a mailbox is refused there as a newer version, not as a damaged state.
const FORMAT_VERSION: u64 = 2;

fn bad(why: &str) -> Error {
    Error::BadSerializedState(why.to_string())
}

impl Exchange {
    /// The whole state as JSON of printable ASCII (PROTOCOL.md 5),
    /// restorable with [`from_serialized`](Self::from_serialized) at any
    /// point of the exchange.
    ///
    /// **The result contains secrets** (our seed, the code, our data): store
    /// it as carefully as the data itself.
    pub fn serialize(&self) -> Vec<u8> {
        let version = if self.facts.mailbox.is_some() { FORMAT_VERSION } else { 1 };
        saved_fields::write_state(FORMAT, version, &self.facts)
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
        let versions = 1..=FORMAT_VERSION;
        let (version, fields) = saved_fields::read_state(bytes, MAX_SERIALIZED_LEN, FORMAT, versions, "exchange")?;
        let has_mailbox = fields.get("mailbox").is_some_and(|m| !m.is_null());
        if version == 1 && fields.contains_key("mailbox") {
            return Err(bad("a version 1 state has no mailbox"));
        }
        if version == 2 && !has_mailbox {
            return Err(bad("a version 2 state has a mailbox"));
        }
        let facts: Facts = saved_fields::read_facts(fields)?;
        facts.validate()?;
        let exchange = Exchange::from_facts(facts);
        if exchange.facts.close_acked && !exchange.is_terminal() {
            return Err(bad("the channel is closed but the exchange has no outcome"));
        }
        Ok(exchange)
    }

    /// [`from_serialized`](Self::from_serialized), refusing state that
    /// belongs to the other role (an initiator's state given to a receiver).
    pub fn from_serialized_as(bytes: &[u8], role: Role) -> Result<Exchange, Error> {
        let exchange = Exchange::from_serialized(bytes)?;
        if exchange.facts.role != role {
            let owner = match exchange.facts.role {
                Role::Initiator => "an initiator",
                Role::Receiver => "a receiver",
            };
            return Err(bad(&format!("this state belongs to {owner}")));
        }
        Ok(exchange)
    }
}
