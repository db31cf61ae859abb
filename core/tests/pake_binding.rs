//! A server that re-allocates a restored initiator must learn nothing about
//! the secret words from the two PAKE messages it collects.
//!
//! SPAKE2 side A sends `X = x·B + w·M`, where `w` derives from the password
//! (the whole code, channel id included). If one seed gave the same scalar
//! `x` for two channel ids, a server holding `X₇` and `X₈` could compute
//! `X₇ − X₈ = (w₇ − w₈)·M`, which depends on the words alone, and test every
//! guess offline: run SPAKE2 for "7-guess" and "8-guess" with any one
//! generator and compare the differences. The scalar is therefore bound to
//! the code (PROTOCOL.md 4.1), and this test plays that attacker.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use spake2::{Ed25519Group, Identity, Password, Spake2};
use wormhole_sync_core::wire::Request;
use wormhole_sync_core::{Config, Event, Exchange, Timestamp};

const APPID: &str = "example.com/app1";
const NOW: Timestamp = Timestamp::from_millis(1_700_000_000_000);

/// The initiator's PAKE message and code when the server allocates `channel`.
fn pake_message_for(seed: [u8; 32], channel: u32) -> (EdwardsPoint, String) {
    let mut initiator = Exchange::initiator(Config::new(APPID).unwrap(), b"data".to_vec(), seed).unwrap();
    initiator.start(NOW);
    let allocate = initiator.poll_transmit(NOW).unwrap();
    initiator.handle_response(NOW, allocate.id(), 200, format!("{{\"channel\":{channel}}}").as_bytes());
    let post = initiator.poll_transmit(NOW).unwrap();
    let Request::Post(pake) = post.request() else { panic!("expected the PAKE post") };
    let point = point(&BASE64.decode(&pake.body).unwrap());
    let code = std::iter::from_fn(|| initiator.poll_event()).find_map(|e| match e {
        Event::Code(code) => Some(code.to_string()),
        _ => None,
    });
    (point, code.unwrap())
}

/// The group element of a 33-byte SPAKE2 message (a side byte, then the point).
fn point(message: &[u8]) -> EdwardsPoint {
    assert_eq!(message.len(), 33);
    CompressedEdwardsY::from_slice(&message[1..]).unwrap().decompress().unwrap()
}

/// What the attacker computes for a guessed code, with a generator it chose.
fn guess(code: &str) -> EdwardsPoint {
    let id_a = Identity::new(format!("wormhole-sync/v1/initiator:{APPID}").as_bytes());
    let id_b = Identity::new(format!("wormhole-sync/v1/receiver:{APPID}").as_bytes());
    let rng = ChaCha20Rng::from_seed([0xa7; 32]);
    let (_, message) = Spake2::<Ed25519Group>::start_a_with_rng(&Password::new(code.as_bytes()), &id_a, &id_b, rng);
    point(&message)
}

#[test]
fn two_channel_ids_never_give_related_pake_messages() {
    for seed in [[1u8; 32], [2; 32], [0x5e; 32]] {
        let (x7, code7) = pake_message_for(seed, 7);
        let (x8, code8) = pake_message_for(seed, 8);
        let words7 = code7.split_once('-').unwrap().1;
        assert_eq!(words7, code8.split_once('-').unwrap().1, "the words come from the exchange's secret seed alone");
        // The attacker's test, run with the true words: it must not confirm them.
        let relation_holds = x7 - x8 == guess(&code7) - guess(&code8);
        assert!(!relation_holds, "the words are recoverable from two PAKE messages (seed {seed:?})");
        // Sanity check of the attack itself: with one scalar for both codes it succeeds.
        let shared = |code: &str| {
            let id_a = Identity::new(format!("wormhole-sync/v1/initiator:{APPID}").as_bytes());
            let id_b = Identity::new(format!("wormhole-sync/v1/receiver:{APPID}").as_bytes());
            let rng = ChaCha20Rng::from_seed(seed);
            let (_, m) = Spake2::<Ed25519Group>::start_a_with_rng(&Password::new(code.as_bytes()), &id_a, &id_b, rng);
            point(&m)
        };
        assert!(shared(&code7) - shared(&code8) == guess(&code7) - guess(&code8));
    }
}
