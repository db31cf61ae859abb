//! The `wormhole` command's convention for text messages: the sender's
//! application message is `{"offer": {"message": TEXT}}`, and the
//! receiver answers `{"answer": {"message_ack": "ok"}}`.
//!
//! ```
//! use wormhole_sync_core::magic_wormhole::text;
//!
//! let offer = text::offer("meet at 6");
//! assert_eq!(text::read_offer(&offer)?, text::Offer::Text("meet at 6".into()));
//! assert!(text::is_ack(&text::ack()));
//! # Ok::<(), wormhole_sync_core::Error>(())
//! ```

use serde_json::{json, Value};

use crate::Error;

/// What a sender offered.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Offer {
    /// A text message.
    Text(String),
    /// A file or directory (`wormhole send FILE`), which this crate does
    /// not transfer; its kind (`file`, `directory`) is given.
    Unsupported(String),
}

impl std::fmt::Debug for Offer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Offer::Text(text) => write!(f, "Text(<{} bytes>)", text.len()),
            Offer::Unsupported(kind) => f.debug_tuple("Unsupported").field(kind).finish(),
        }
    }
}

/// The application message that offers `text`.
pub fn offer(text: &str) -> Vec<u8> {
    json!({"offer": {"message": text}}).to_string().into_bytes()
}

/// The receiver's answer to a text offer.
pub fn ack() -> Vec<u8> {
    json!({"answer": {"message_ack": "ok"}}).to_string().into_bytes()
}

/// What `wormhole receive` answers to an offer this crate cannot take; the
/// `wormhole` command shows it after "remote error, transfer abandoned: ".
pub const REFUSAL: &str = "wormhole-sync receives text messages only, not files or directories: send text with \
                           `wormhole send --text TEXT`";

/// The answer to a sender's first message: an ack to a text offer, a
/// refusal (`{"error": REFUSAL}`) to anything else.
pub fn answer(message: &[u8]) -> Vec<u8> {
    match read_offer(message) {
        Ok(Offer::Text(_)) => ack(),
        _ => json!({ "error": REFUSAL }).to_string().into_bytes(),
    }
}

/// Reads a sender's offer; anything but an offer is a protocol error. A
/// `transit` message (which `wormhole send FILE` sends before its file or
/// directory offer) reads as [`Offer::Unsupported`]`("file or directory")`.
pub fn read_offer(message: &[u8]) -> Result<Offer, Error> {
    let refused = |detail: &str| Error::PeerProtocol { detail: detail.to_string() };
    let value: Value = serde_json::from_slice(message).map_err(|_| refused("its message is not JSON"))?;
    if value.get("transit").is_some() {
        return Ok(Offer::Unsupported("file or directory".into()));
    }
    let offer = value.get("offer").and_then(Value::as_object).ok_or_else(|| refused("its message is not an offer"))?;
    if let Some(text) = offer.get("message") {
        let text = text.as_str().ok_or_else(|| refused("its text offer is not a string"))?;
        return Ok(Offer::Text(text.to_string()));
    }
    let kind = offer.keys().next().cloned().unwrap_or_default();
    Ok(Offer::Unsupported(kind.chars().filter(|c| c.is_ascii_graphic()).take(32).collect()))
}

/// Whether a receiver's answer acknowledges a text offer.
pub fn is_ack(message: &[u8]) -> bool {
    serde_json::from_slice::<Value>(message).is_ok_and(|v| v["answer"]["message_ack"] == "ok")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_read_back_and_other_messages_are_refused() {
        assert_eq!(read_offer(&offer("é \" \\n")).unwrap(), Offer::Text("é \" \\n".into()));
        let file = br#"{"offer": {"file": {"filename": "a", "filesize": 3}}}"#;
        assert_eq!(read_offer(file).unwrap(), Offer::Unsupported("file".into()));
        for bad in [&b"nope"[..], br#"{"answer": {}}"#, br#"{"offer": {"message": 5}}"#] {
            assert!(matches!(read_offer(bad), Err(Error::PeerProtocol { .. })), "{bad:?}");
        }
        assert!(!is_ack(br#"{"answer": {"message_ack": "no"}}"#));
        assert!(!is_ack(b"\xff"));
    }

    #[test]
    fn a_text_offer_is_acked_and_anything_else_refused_as_wormhole_shows_it() {
        assert!(is_ack(&answer(&offer("hi"))));
        let transit = br#"{"transit": {"abilities-v1": [], "hints-v1": []}}"#;
        assert_eq!(read_offer(transit).unwrap(), Offer::Unsupported("file or directory".into()));
        for other in [&transit[..], br#"{"offer": {"directory": {}}}"#, b"nope"] {
            let refusal: Value = serde_json::from_slice(&answer(other)).unwrap();
            assert_eq!(refusal, json!({ "error": REFUSAL }), "{other:?}");
        }
    }
}
