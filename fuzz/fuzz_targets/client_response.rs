//! Client side: an exchange fed arbitrary server answers (status and body)
//! for whatever it sends never panics and keeps a consistent outcome.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wormhole_sync_core::{Config, Exchange, Progress, Timestamp, TransportError};

fuzz_target!(|input: &[u8]| {
    let config = Config::new("fuzz.example").expect("valid appid");
    let mut exchange = Exchange::initiator(config, b"data".to_vec(), [3; 32]).expect("small data");
    let mut now = Timestamp::from_millis(1_000);
    exchange.start(now);
    // Each chunk: two status bytes, a length byte, then that many body bytes.
    let mut news = Progress::default();
    let mut rest = input;
    while rest.len() >= 3 {
        let status = u16::from_be_bytes([rest[0], rest[1]]) % 600;
        let len = usize::from(rest[2]).min(rest.len() - 3);
        let body = &rest[3..3 + len];
        rest = &rest[3 + len..];
        match exchange.poll_transmit(now) {
            Some(t) if status < 100 => {
                exchange.handle_transport_error(now, t.id(), TransportError::from_message("fuzz"))
            }
            Some(t) => exchange.handle_response(now, t.id(), status, body),
            None => match exchange.poll_timeout() {
                Some(at) => {
                    now = at.max(now);
                    exchange.handle_timeout(now);
                }
                None => break,
            },
        }
        news.drain(&mut exchange);
    }
    // A restored exchange announces the same outcome again.
    let mut restored = Exchange::from_serialized(&exchange.serialize()).expect("own state restores");
    let mut restored_news = Progress::default();
    restored_news.drain(&mut restored);
    assert_eq!(news.outcome(), restored_news.outcome());
});
