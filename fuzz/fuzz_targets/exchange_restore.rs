//! Serialized exchange state: arbitrary bytes restore or give a clear error;
//! anything restored serializes and restores again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wormhole_sync_core::{Exchange, Timestamp};

fuzz_target!(|blob: &[u8]| {
    if let Ok(mut exchange) = Exchange::from_serialized(blob) {
        let again = Exchange::from_serialized(&exchange.serialize()).expect("own state restores");
        assert_eq!(again.serialize(), exchange.serialize());
        let now = Timestamp::from_millis(2_000_000_000_000);
        while exchange.poll_transmit(now).is_some() {}
        let _ = exchange.poll_timeout();
    }
});
