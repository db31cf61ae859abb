//! How saved states write the fields serde cannot write as they are
//! (seeds and keys as hex, data as base64, codes as text, failures as
//! their kind and texts), and read them back from untrusted bytes with
//! errors that name the rule broken, never the value (it can be a secret).

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
pub(crate) const RULE: &str = "rule: ";

/// Longest text kept in a saved failure.
pub(crate) const MAX_FAILURE_TEXT: usize = 1024;

/// Whether a restored failure's texts are printable and short enough.
pub(crate) fn failure_texts_fit(failure: &Error) -> bool {
    SavedFailure::from(failure).texts().iter().all(|t| t.len() <= MAX_FAILURE_TEXT && crate::wire::is_printable_text(t))
}

fn bad(why: &str) -> Error {
    Error::BadSerializedState(why.to_string())
}

/// A saved state: `{"format": FORMAT, "version": N, ...facts}`, printable
/// ASCII (the facts' fields follow the two, in their own order).
pub(crate) fn write_state<T: Serialize>(format: &str, version: u64, facts: &T) -> Vec<u8> {
    let facts = crate::ascii_json::to_vec(facts);
    let mut out = format!("{{\"format\":\"{format}\",\"version\":{version},").into_bytes();
    out.extend_from_slice(&facts[1..]); // The facts object without its opening brace.
    out
}

/// Reads what [`write_state`] wrote (untrusted bytes): the version, within
/// `versions`, and the facts' fields. `what` names the state in errors.
pub(crate) fn read_state(
    bytes: &[u8],
    max_len: usize,
    format: &str,
    versions: std::ops::RangeInclusive<u64>,
    what: &str,
) -> Result<(u64, serde_json::Map<String, serde_json::Value>), Error> {
    use serde_json::Value;
    if bytes.len() > max_len {
        return Err(bad(&format!("larger than any serialized {what}")));
    }
    let parsed: Unique = serde_json::from_slice(bytes).map_err(|e| match e.to_string().strip_prefix(RULE) {
        Some(rule) => bad(rule.split(" at line").next().unwrap_or(rule)),
        None => bad(&format!("not a serialized {what}")),
    })?;
    let Value::Object(mut fields) = parsed.0 else { return Err(bad(&format!("not a serialized {what}"))) };
    if fields.remove("format").as_ref().and_then(Value::as_str) != Some(format) {
        return Err(bad(&format!("not a serialized wormhole-sync {what}")));
    }
    match fields.remove("version").as_ref().and_then(Value::as_u64) {
        Some(version) if versions.contains(&version) => Ok((version, fields)),
        _ => Err(bad("unsupported format version")),
    }
}

/// A JSON value that refuses an object naming a key twice, at any depth
/// (serde_json alone keeps the last, so two readers of one state could
/// disagree on what it says).
struct Unique(serde_json::Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Unique, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = Unique;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Unique, E> {
        Ok(Unique(v.into()))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Unique, E> {
        Ok(Unique(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Unique, E> {
        Ok(Unique(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Unique, E> {
        Ok(Unique(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Unique, E> {
        Ok(Unique(v.into()))
    }

    fn visit_string<E>(self, v: String) -> Result<Unique, E> {
        Ok(Unique(v.into()))
    }

    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique(serde_json::Value::Null))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        let mut items = Vec::new();
        while let Some(Unique(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Unique(serde_json::Value::Array(items)))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some((key, Unique(value))) = map.next_entry::<String, Unique>()? {
            if object.insert(key, value).is_some() {
                return Err(broken("an object names a key twice"));
            }
        }
        Ok(Unique(serde_json::Value::Object(object)))
    }
}

/// The facts from [`read_state`]'s fields. serde's own messages can quote
/// the offending value (the code, say); the encodings' rules name the rule
/// only, so only those are repeated.
pub(crate) fn read_facts<T: serde::de::DeserializeOwned>(
    fields: serde_json::Map<String, serde_json::Value>,
) -> Result<T, Error> {
    T::deserialize(serde_json::Value::Object(fields)).map_err(|e| match e.to_string().strip_prefix(RULE) {
        Some(rule) => bad(rule),
        None => bad("a field is missing, unknown or of the wrong type"),
    })
}

fn broken<E: serde::de::Error>(why: &str) -> E {
    E::custom(format!("{RULE}{why}"))
}

pub(crate) mod seed {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(seed: &Seed, s: S) -> Result<S::Ok, S::Error> {
        hex(seed.0.as_slice()).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Seed, D::Error> {
        let text = String::deserialize(d)?;
        let bytes: [u8; 32] =
            unhex(&text).and_then(|s| s.try_into().ok()).ok_or_else(|| broken("seed must be 32 bytes of hex"))?;
        Ok(Seed::new(bytes))
    }
}

pub(crate) mod bytes {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        BASE64.encode(bytes).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        // Longer than any allowed field: refused before decoding.
        if text.len() > 64 * 1024 {
            return Err(broken("a byte field is too long"));
        }
        BASE64.decode(text).map_err(|_| broken("a byte field is not base64"))
    }
}

pub(crate) mod optional_bytes {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        bytes.as_ref().map(|b| BASE64.encode(b)).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super::bytes")] Vec<u8>);
        Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
    }
}

pub(crate) mod code {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(code: &Option<Code>, s: S) -> Result<S::Ok, S::Error> {
        code.as_ref().map(Code::to_string).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Code>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else { return Ok(None) };
        let code = text.parse::<Code>().map_err(|_| broken("code is not a valid code"))?;
        if code.to_string() != text {
            return Err(broken("code is not in canonical form"));
        }
        Ok(Some(code))
    }
}

pub(crate) mod failure {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(failure: &Option<Error>, s: S) -> Result<S::Ok, S::Error> {
        failure.as_ref().map(SavedFailure::from).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Error>, D::Error> {
        Ok(Option::<SavedFailure>::deserialize(d)?.map(Error::from))
    }
}

/// A failure as saved: each kind by a stable name of its own, so
/// renaming an [`Error`] variant cannot break old saved states.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", deny_unknown_fields)]
// Kinds without fields are empty structs, not unit variants: serde lets
// unit variants of an internally tagged enum carry any unknown field.
pub(crate) enum SavedFailure {
    #[serde(rename = "wrong-code")]
    WrongCode {},
    #[serde(rename = "timeout")]
    Timeout {},
    #[serde(rename = "crowded")]
    Crowded {},
    #[serde(rename = "peer-vanished")]
    PeerVanished {},
    #[serde(rename = "unknown-channel")]
    UnknownChannel {},
    #[serde(rename = "channel-expired")]
    ChannelExpired {},
    #[serde(rename = "channel-burned")]
    ChannelBurned {},
    #[serde(rename = "cancelled")]
    Cancelled {},
    #[serde(rename = "declined")]
    Declined {},
    #[serde(rename = "peer-declined")]
    PeerDeclined {},
    #[serde(rename = "reflection")]
    Reflection {},
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
    pub(crate) fn texts(&self) -> Vec<&str> {
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
            Error::WrongCode => SavedFailure::WrongCode {},
            Error::Timeout => SavedFailure::Timeout {},
            Error::Crowded => SavedFailure::Crowded {},
            Error::PeerVanished => SavedFailure::PeerVanished {},
            Error::UnknownChannel => SavedFailure::UnknownChannel {},
            Error::ChannelExpired => SavedFailure::ChannelExpired {},
            Error::ChannelBurned => SavedFailure::ChannelBurned {},
            Error::Cancelled => SavedFailure::Cancelled {},
            Error::Declined => SavedFailure::Declined {},
            Error::PeerDeclined => SavedFailure::PeerDeclined {},
            Error::Reflection => SavedFailure::Reflection {},
            Error::PeerClosed { mood } => SavedFailure::PeerClosed { mood: *mood },
            Error::ServerUnreachable { cause } => {
                SavedFailure::ServerUnreachable { detail: within(cause.chain(), MAX_FAILURE_TEXT) }
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
            other => SavedFailure::ServerProtocol { detail: within(other.to_string(), MAX_FAILURE_TEXT) },
        }
    }
}

impl From<SavedFailure> for Error {
    fn from(saved: SavedFailure) -> Error {
        match saved {
            SavedFailure::WrongCode {} => Error::WrongCode,
            SavedFailure::Timeout {} => Error::Timeout,
            SavedFailure::Crowded {} => Error::Crowded,
            SavedFailure::PeerVanished {} => Error::PeerVanished,
            SavedFailure::UnknownChannel {} => Error::UnknownChannel,
            SavedFailure::ChannelExpired {} => Error::ChannelExpired,
            SavedFailure::ChannelBurned {} => Error::ChannelBurned,
            SavedFailure::Cancelled {} => Error::Cancelled,
            SavedFailure::Declined {} => Error::Declined,
            SavedFailure::PeerDeclined {} => Error::PeerDeclined,
            SavedFailure::Reflection {} => Error::Reflection,
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
