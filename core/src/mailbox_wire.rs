//! The frames of magic-wormhole's mailbox protocol: the JSON text messages
//! its clients and mailbox servers exchange over a WebSocket (`/v1`), parsed
//! from untrusted bytes with a precise error, and written back.
//!
//! This is the vocabulary of a mailbox front end and of a client that talks
//! to magic-wormhole peers; the state behind each lives elsewhere.
//! Errors read as the reference server words them (`"missing 'type'"`,
//! `"claim requires 'nameplate'"`, ...), since clients show them to people.
//!
//! ```
//! use wormhole_sync_core::mailbox_wire::{ClientMessage, ServerMessage};
//!
//! let frame = ClientMessage::parse(br#"{"type": "claim", "nameplate": "4", "id": "a1b2"}"#)?;
//! assert_eq!(frame.message, ClientMessage::Claim { nameplate: "4".into() });
//! let ack = ServerMessage::Ack { id: frame.id.clone() }.to_json(1_700_000_000.25);
//! let ack: serde_json::Value = serde_json::from_str(&ack).unwrap();
//! assert_eq!(ack, serde_json::json!({"type": "ack", "id": "a1b2", "server_tx": 1_700_000_000.25}));
//! # Ok::<(), wormhole_sync_core::mailbox_wire::FrameError>(())
//! ```

use serde_json::{json, Map, Value};

pub use crate::wire::MAX_MAILBOX_LEN;
use crate::wire::{MailboxId, MAX_APPID_LEN, MAX_PHASE_LEN, MAX_SIDE_LEN};

/// Largest frame read: a 64 KiB message is 128 KiB of hex, plus its fields.
pub const MAX_FRAME_BYTES: usize = 160 * 1024;
/// Longest nameplate: digits only, as the reference server's.
pub const MAX_NAMEPLATE_LEN: usize = 40;
/// Longest client message id (echoed in acks).
pub const MAX_ID_LEN: usize = 64;

/// A client's frame: its message and the id it asks to have acknowledged.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientFrame {
    /// The id to echo in the `ack` (a string or an integer, as sent).
    pub id: Option<Value>,
    /// What it asks.
    pub message: ClientMessage,
}

/// What a client asks of a mailbox server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientMessage {
    /// Names the application and the side; must come first.
    Bind {
        /// The application id.
        appid: String,
        /// The client's side id.
        side: String,
    },
    /// Asks for the nameplates in use.
    List,
    /// Asks for a free nameplate (which it then claims).
    Allocate,
    /// Claims a nameplate; the answer names its mailbox.
    Claim {
        /// The nameplate, digits.
        nameplate: String,
    },
    /// Gives the nameplate up (its mailbox stays).
    Release {
        /// The nameplate claimed, if named.
        nameplate: Option<String>,
    },
    /// Opens a mailbox: every message in it is sent, then each new one.
    Open {
        /// The mailbox id from `claimed`.
        mailbox: MailboxId,
    },
    /// Adds a message to the open mailbox.
    Add {
        /// The phase (`pake`, `version`, `0`, ...).
        phase: String,
        /// The body, lowercase or uppercase hex.
        body: String,
    },
    /// Closes the mailbox, with how the client ended.
    Close {
        /// The mailbox opened, if named.
        mailbox: Option<MailboxId>,
        /// `happy`, `lonely`, `scary`, `errory`, ... as sent.
        mood: Option<String>,
    },
    /// Asks for a `pong` with the same number.
    Ping {
        /// Echoed back.
        ping: u64,
    },
}

/// A frame that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Longer than [`MAX_FRAME_BYTES`].
    #[error("message too large")]
    TooLarge,
    /// Not a JSON object.
    #[error("message is not a JSON object")]
    NotJson,
    /// No `type` field.
    #[error("missing 'type'")]
    MissingType,
    /// A `type` this protocol does not have.
    #[error("unknown type")]
    UnknownType,
    /// A field the message type requires is missing or not a string.
    #[error("{0} requires '{1}'")]
    Requires(&'static str, &'static str),
    /// A field has a value the server does not accept.
    #[error("invalid '{0}'")]
    Invalid(&'static str),
}

fn text<'a>(object: &'a Map<String, Value>, kind: &'static str, field: &'static str) -> Result<&'a str, FrameError> {
    object.get(field).and_then(Value::as_str).ok_or(FrameError::Requires(kind, field))
}

fn optional_text<'a>(object: &'a Map<String, Value>, field: &'static str) -> Result<Option<&'a str>, FrameError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(FrameError::Invalid(field)),
    }
}

fn printable(value: &str, max: usize, field: &'static str) -> Result<String, FrameError> {
    if !is_printable_token(value, max) {
        return Err(FrameError::Invalid(field));
    }
    Ok(value.to_string())
}

/// 1 to `max` printable ASCII characters, no space: what a frame's side,
/// phase and similar fields may hold.
fn is_printable_token(value: &str, max: usize) -> bool {
    !value.is_empty() && value.len() <= max && value.chars().all(|c| c.is_ascii_graphic())
}

/// Whether `side` is one a `message` frame may carry, and so a side a
/// magic-wormhole peer may have: the reference server takes any printable
/// side, not only this crate's `a-z 0-9 - _`.
pub(crate) fn is_peer_side(side: &str) -> bool {
    is_printable_token(side, MAX_SIDE_LEN)
}

fn nameplate(value: &str) -> Result<String, FrameError> {
    if value.is_empty() || value.len() > MAX_NAMEPLATE_LEN || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FrameError::Invalid("nameplate"));
    }
    Ok(value.to_string())
}

fn mailbox(value: &str) -> Result<MailboxId, FrameError> {
    MailboxId::new(value).ok_or(FrameError::Invalid("mailbox"))
}

impl ClientMessage {
    /// Reads one text frame from a client.
    pub fn parse(frame: &[u8]) -> Result<ClientFrame, FrameError> {
        if frame.len() > MAX_FRAME_BYTES {
            return Err(FrameError::TooLarge);
        }
        let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(frame) else { return Err(FrameError::NotJson) };
        let id = match object.get("id") {
            None | Some(Value::Null) => None,
            Some(id @ Value::String(s)) if s.len() <= MAX_ID_LEN => Some(id.clone()),
            // Integers only: a float would not echo back digit for digit.
            Some(id @ Value::Number(n)) if n.is_i64() || n.is_u64() => Some(id.clone()),
            Some(_) => return Err(FrameError::Invalid("id")),
        };
        let kind = object.get("type").and_then(Value::as_str).ok_or(FrameError::MissingType)?;
        let message = match kind {
            "bind" => ClientMessage::Bind {
                appid: printable(text(&object, "bind", "appid")?, MAX_APPID_LEN, "appid")?,
                side: printable(text(&object, "bind", "side")?, MAX_SIDE_LEN, "side")?,
            },
            "list" => ClientMessage::List,
            "allocate" => ClientMessage::Allocate,
            "claim" => ClientMessage::Claim { nameplate: nameplate(text(&object, "claim", "nameplate")?)? },
            "release" => {
                ClientMessage::Release { nameplate: optional_text(&object, "nameplate")?.map(nameplate).transpose()? }
            }
            "open" => ClientMessage::Open { mailbox: mailbox(text(&object, "open", "mailbox")?)? },
            "add" => {
                let phase = text(&object, "add", "phase").map_err(|_| FrameError::Requires("add", "phase"))?;
                let body = text(&object, "add", "body")?;
                if body.len() % 2 != 0 || !body.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(FrameError::Invalid("body"));
                }
                ClientMessage::Add { phase: printable(phase, MAX_PHASE_LEN, "phase")?, body: body.to_string() }
            }
            "close" => ClientMessage::Close {
                mailbox: optional_text(&object, "mailbox")?.map(mailbox).transpose()?,
                mood: optional_text(&object, "mood")?.map(|m| printable(m, 32, "mood")).transpose()?,
            },
            "ping" => ClientMessage::Ping {
                ping: object.get("ping").and_then(Value::as_u64).ok_or(FrameError::Requires("ping", "ping"))?,
            },
            _ => return Err(FrameError::UnknownType),
        };
        Ok(ClientFrame { id, message })
    }

    /// The frame a client sends, with `id`.
    pub fn to_json(&self, id: Option<&Value>) -> String {
        let mut frame = match self {
            ClientMessage::Bind { appid, side } => json!({"type": "bind", "appid": appid, "side": side}),
            ClientMessage::List => json!({"type": "list"}),
            ClientMessage::Allocate => json!({"type": "allocate"}),
            ClientMessage::Claim { nameplate } => json!({"type": "claim", "nameplate": nameplate}),
            ClientMessage::Release { nameplate } => json!({"type": "release", "nameplate": nameplate}),
            ClientMessage::Open { mailbox } => json!({"type": "open", "mailbox": mailbox}),
            ClientMessage::Add { phase, body } => json!({"type": "add", "phase": phase, "body": body}),
            ClientMessage::Close { mailbox, mood } => json!({"type": "close", "mailbox": mailbox, "mood": mood}),
            ClientMessage::Ping { ping } => json!({"type": "ping", "ping": ping}),
        };
        if let (Some(id), Value::Object(object)) = (id, &mut frame) {
            object.insert("id".into(), id.clone());
        }
        frame.to_string()
    }
}

/// What a mailbox server sends.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ServerMessage {
    /// The first frame: a message of the day, or an error that makes
    /// clients give up.
    Welcome {
        /// Shown to people.
        motd: Option<String>,
        /// Clients stop with this.
        error: Option<String>,
    },
    /// A client frame was received.
    Ack {
        /// Its id.
        id: Option<Value>,
    },
    /// The answer to a `ping`.
    Pong {
        /// The ping's number.
        pong: u64,
    },
    /// The nameplates in use (or, where listing is off, every number of the
    /// lengths in use).
    Nameplates {
        /// Their ids.
        nameplates: Vec<String>,
    },
    /// A nameplate was allocated.
    Allocated {
        /// It.
        nameplate: String,
    },
    /// A nameplate was claimed; its mailbox.
    Claimed {
        /// The mailbox id.
        mailbox: MailboxId,
    },
    /// The nameplate was released.
    Released,
    /// A message in the open mailbox (every side's, the receiver's own included).
    Message {
        /// Who added it.
        side: String,
        /// Its phase.
        phase: String,
        /// Its body, hex.
        body: String,
        /// When the server received it, seconds since the epoch.
        server_rx: f64,
        /// The id its sender gave it, if any.
        id: Option<String>,
    },
    /// The mailbox was closed.
    Closed,
    /// A frame was refused.
    Error {
        /// Why (as the reference server words it, e.g. `crowded`).
        error: String,
        /// The frame refused.
        orig: Value,
    },
}

impl ServerMessage {
    /// The frame, stamped with `server_tx` (seconds since the epoch).
    pub fn to_json(&self, server_tx: f64) -> String {
        let mut frame = match self {
            ServerMessage::Welcome { motd, error } => {
                let mut welcome = Map::new();
                if let Some(motd) = motd {
                    welcome.insert("motd".into(), json!(motd));
                }
                if let Some(error) = error {
                    welcome.insert("error".into(), json!(error));
                }
                json!({"type": "welcome", "welcome": welcome})
            }
            ServerMessage::Ack { id } => json!({"type": "ack", "id": id}),
            ServerMessage::Pong { pong } => json!({"type": "pong", "pong": pong}),
            ServerMessage::Nameplates { nameplates } => {
                let list: Vec<Value> = nameplates.iter().map(|id| json!({"id": id})).collect();
                json!({"type": "nameplates", "nameplates": list})
            }
            ServerMessage::Allocated { nameplate } => json!({"type": "allocated", "nameplate": nameplate}),
            ServerMessage::Claimed { mailbox } => json!({"type": "claimed", "mailbox": mailbox}),
            ServerMessage::Released => json!({"type": "released"}),
            ServerMessage::Message { side, phase, body, server_rx, id } => {
                json!({"type": "message", "side": side, "phase": phase, "body": body, "server_rx": server_rx, "id": id})
            }
            ServerMessage::Closed => json!({"type": "closed"}),
            ServerMessage::Error { error, orig } => json!({"type": "error", "error": error, "orig": orig}),
        };
        if let Value::Object(object) = &mut frame {
            object.insert("server_tx".into(), json!(server_tx));
        }
        frame.to_string()
    }

    /// Reads one text frame from a mailbox server (untrusted: a client's
    /// input). Fields a client does not use may be missing; an unknown
    /// `type` is [`FrameError::UnknownType`], which clients should ignore
    /// (servers may add message types).
    ///
    /// ```
    /// use wormhole_sync_core::mailbox_wire::ServerMessage;
    ///
    /// let frame = ServerMessage::parse(br#"{"type": "allocated", "nameplate": "4", "server_tx": 1.5}"#)?;
    /// assert_eq!(frame, ServerMessage::Allocated { nameplate: "4".into() });
    /// # Ok::<(), wormhole_sync_core::mailbox_wire::FrameError>(())
    /// ```
    pub fn parse(frame: &[u8]) -> Result<ServerMessage, FrameError> {
        if frame.len() > MAX_FRAME_BYTES {
            return Err(FrameError::TooLarge);
        }
        let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(frame) else { return Err(FrameError::NotJson) };
        let kind = object.get("type").and_then(Value::as_str).ok_or(FrameError::MissingType)?;
        let number = |field: &'static str| object.get(field).and_then(Value::as_f64).unwrap_or(0.0);
        Ok(match kind {
            "welcome" => {
                let welcome = object.get("welcome").and_then(Value::as_object);
                let field = |name: &'static str| -> Result<Option<String>, FrameError> {
                    Ok(welcome.map(|w| optional_text(w, name)).transpose()?.flatten().map(str::to_string))
                };
                ServerMessage::Welcome { motd: field("motd")?, error: field("error")? }
            }
            "ack" => ServerMessage::Ack { id: object.get("id").filter(|id| !id.is_null()).cloned() },
            "pong" => ServerMessage::Pong {
                pong: object.get("pong").and_then(Value::as_u64).ok_or(FrameError::Requires("pong", "pong"))?,
            },
            "nameplates" => {
                let list = object.get("nameplates").and_then(Value::as_array);
                let list = list.ok_or(FrameError::Requires("nameplates", "nameplates"))?;
                let nameplates = list
                    .iter()
                    .map(|entry| entry.get("id").and_then(Value::as_str).map(nameplate))
                    .collect::<Option<Result<Vec<_>, _>>>()
                    .ok_or(FrameError::Invalid("nameplates"))??;
                ServerMessage::Nameplates { nameplates }
            }
            "allocated" => ServerMessage::Allocated { nameplate: nameplate(text(&object, "allocated", "nameplate")?)? },
            "claimed" => ServerMessage::Claimed { mailbox: mailbox(text(&object, "claimed", "mailbox")?)? },
            "released" => ServerMessage::Released,
            "message" => {
                let body = text(&object, "message", "body")?;
                if body.len() % 2 != 0 || !body.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(FrameError::Invalid("body"));
                }
                ServerMessage::Message {
                    side: printable(text(&object, "message", "side")?, MAX_SIDE_LEN, "side")?,
                    phase: printable(text(&object, "message", "phase")?, MAX_PHASE_LEN, "phase")?,
                    body: body.to_string(),
                    server_rx: number("server_rx"),
                    id: optional_text(&object, "id").ok().flatten().map(str::to_string),
                }
            }
            "closed" => ServerMessage::Closed,
            "error" => ServerMessage::Error {
                error: text(&object, "error", "error")?.to_string(),
                orig: object.get("orig").cloned().unwrap_or(Value::Null),
            },
            _ => return Err(FrameError::UnknownType),
        })
    }

    /// The `error` frame for a client frame that could not be read, quoting
    /// it when it was JSON (as the reference server does).
    pub fn refusal(frame: &[u8], error: &FrameError) -> ServerMessage {
        let orig = if frame.len() <= MAX_FRAME_BYTES {
            serde_json::from_slice(frame).unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        ServerMessage::Error { error: error.to_string(), orig }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_message_reads_back() {
        let messages = [
            ClientMessage::Bind { appid: "lothar.com/wormhole/text-or-file-xfer".into(), side: "a1b2c3".into() },
            ClientMessage::List,
            ClientMessage::Allocate,
            ClientMessage::Claim { nameplate: "42".into() },
            ClientMessage::Release { nameplate: Some("42".into()) },
            ClientMessage::Release { nameplate: None },
            ClientMessage::Open { mailbox: MailboxId::new("mxyz2345abcde").unwrap() },
            ClientMessage::Add { phase: "pake".into(), body: "7b7d".into() },
            ClientMessage::Close { mailbox: MailboxId::new("mxyz2345abcde"), mood: Some("happy".into()) },
            ClientMessage::Ping { ping: 7 },
        ];
        for message in messages {
            let id = json!("0f1e");
            let frame = ClientMessage::parse(message.to_json(Some(&id)).as_bytes()).unwrap();
            assert_eq!(frame, ClientFrame { id: Some(id), message });
        }
    }

    #[test]
    fn every_server_message_reads_back() {
        let messages = [
            ServerMessage::Welcome { motd: Some("hi".into()), error: None },
            ServerMessage::Welcome { motd: None, error: Some("go away".into()) },
            ServerMessage::Ack { id: Some(json!("0f1e")) },
            ServerMessage::Pong { pong: 7 },
            ServerMessage::Nameplates { nameplates: vec!["1".into(), "23".into()] },
            ServerMessage::Allocated { nameplate: "42".into() },
            ServerMessage::Claimed { mailbox: MailboxId::new("mxyz2345abcde").unwrap() },
            ServerMessage::Released,
            ServerMessage::Message {
                side: "a1".into(),
                phase: "pake".into(),
                body: "7b7d".into(),
                server_rx: 1.5,
                id: Some("c3".into()),
            },
            ServerMessage::Closed,
            ServerMessage::Error { error: "crowded".into(), orig: json!({"type": "claim", "nameplate": "4"}) },
        ];
        for message in messages {
            assert_eq!(ServerMessage::parse(message.to_json(2.0).as_bytes()).unwrap(), message);
        }
    }

    #[test]
    fn server_frames_a_client_cannot_use_are_refused_by_name() {
        let refused = |frame: &str| ServerMessage::parse(frame.as_bytes()).unwrap_err().to_string();
        assert_eq!(refused(r#"{"type": "dilate"}"#), "unknown type");
        assert_eq!(refused(r#"{"type": "claimed"}"#), "claimed requires 'mailbox'");
        assert_eq!(refused(r#"{"type": "claimed", "mailbox": "../x"}"#), "invalid 'mailbox'");
        assert_eq!(refused(r#"{"type": "message", "side": "a", "phase": "0", "body": "abc"}"#), "invalid 'body'");
        assert_eq!(refused(r#"{"type": "nameplates", "nameplates": [{"id": 4}]}"#), "invalid 'nameplates'");
        assert_eq!(refused(r#"{"type": "welcome", "welcome": {"error": 5}}"#), "invalid 'error'");
        assert_eq!(refused("[]"), "message is not a JSON object");
    }

    #[test]
    fn refusals_name_what_is_wrong_in_the_reference_servers_words() {
        let refused = |frame: &str| ClientMessage::parse(frame.as_bytes()).unwrap_err().to_string();
        assert_eq!(refused(r#"{"id": "1"}"#), "missing 'type'");
        assert_eq!(refused(r#"{"type": "dance"}"#), "unknown type");
        assert_eq!(refused(r#"{"type": "claim"}"#), "claim requires 'nameplate'");
        assert_eq!(refused(r#"{"type": "bind", "appid": "a"}"#), "bind requires 'side'");
        assert_eq!(refused(r#"{"type": "add", "body": "00"}"#), "add requires 'phase'");
        assert_eq!(refused(r#"{"type": "ping"}"#), "ping requires 'ping'");
        assert_eq!(refused(r#"{"type": "add", "phase": "0", "body": "xyz"}"#), "invalid 'body'");
        assert_eq!(refused(r#"{"type": "claim", "nameplate": "../1"}"#), "invalid 'nameplate'");
        assert_eq!(refused("[1, 2]"), "message is not a JSON object");
        assert_eq!(refused(r#"{"type": "list", "id": 1.5}"#), "invalid 'id'");
        assert_eq!(refused(&" ".repeat(MAX_FRAME_BYTES + 1)), "message too large");
    }

    #[test]
    fn server_frames_carry_the_fields_clients_read() {
        let message = ServerMessage::Message {
            side: "a1".into(),
            phase: "pake".into(),
            body: "7b7d".into(),
            server_rx: 1.5,
            id: Some("c3d4".into()),
        };
        let frame: Value = serde_json::from_str(&message.to_json(2.0)).unwrap();
        assert_eq!(
            frame,
            json!({"type": "message", "side": "a1", "phase": "pake", "body": "7b7d", "server_rx": 1.5, "id": "c3d4", "server_tx": 2.0})
        );
        let welcome: Value =
            serde_json::from_str(&ServerMessage::Welcome { motd: None, error: None }.to_json(0.0)).unwrap();
        assert_eq!(welcome["welcome"], json!({}));
        let refusal = ServerMessage::refusal(br#"{"type": "claim"}"#, &FrameError::Requires("claim", "nameplate"));
        let refusal: Value = serde_json::from_str(&refusal.to_json(0.0)).unwrap();
        assert_eq!(refusal["error"], "claim requires 'nameplate'");
        assert_eq!(refusal["orig"], json!({"type": "claim"}));
    }
}
