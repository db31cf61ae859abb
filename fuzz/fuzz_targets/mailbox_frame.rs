//! magic-wormhole mailbox frames from clients: any bytes parse or get a
//! clear error (whose `error` frame writes without a panic); what parses
//! writes back to a frame that parses to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wormhole_sync_core::mailbox_wire::{ClientMessage, ServerMessage};

fuzz_target!(|frame: &[u8]| {
    match ClientMessage::parse(frame) {
        Ok(parsed) => {
            let written = parsed.message.to_json(parsed.id.as_ref());
            assert_eq!(ClientMessage::parse(written.as_bytes()).as_ref(), Ok(&parsed), "{written}");
        }
        Err(error) => {
            let _ = ServerMessage::refusal(frame, &error).to_json(0.0);
        }
    }
});
