//! Known-answer tests: the vectors published in PROTOCOL.md are recomputed
//! here and compared, so the specification and the code cannot drift apart.

use serde_json::{json, Value};

use crate::code::Code;
use crate::crypto::{associated_data, hex, Direction, Pake, Seed, SessionKeys};
use crate::Role;

const APPID: &str = "example.com/app1";
const INITIATOR_SEED: [u8; 32] = [0x11; 32];
const RECEIVER_SEED: [u8; 32] = [0x22; 32];

fn compute() -> Value {
    let (iseed, rseed) = (Seed::new(INITIATOR_SEED), Seed::new(RECEIVER_SEED));
    let channel = crate::ChannelId::new(7).expect("valid");
    let code: Code = iseed.code_for(channel, 2);
    let ipake = Pake::start(&iseed, APPID, Role::Initiator, &code);
    let rpake = Pake::start(&rseed, APPID, Role::Receiver, &code);
    let (imsg, rmsg) = (ipake.outbound().to_vec(), rpake.outbound().to_vec());
    let (ikey, rkey) = (iseed.pake_key(APPID, &code), rseed.pake_key(APPID, &code));
    let shared = ipake.finish_shared(&rmsg).expect("valid message");
    let ikeys = SessionKeys::derive(Role::Initiator, &shared);
    let rkeys = rpake.finish(Role::Receiver, &imsg).expect("valid message");
    assert_eq!(ikeys.verifier(), rkeys.verifier());
    let (idata, rdata) = (b"initiator's data", b"receiver's data");
    // A point of the curve outside the prime-order subgroup (PROTOCOL.md 4.2).
    let refused = [&[0x42][..], &[0x01; 32]].concat();
    let finished = Pake::start(&iseed, APPID, Role::Initiator, &code).finish(Role::Initiator, &refused);
    assert!(finished.is_err(), "a receiver PAKE message outside the group was accepted");
    json!({
        "appid": APPID,
        "initiator_seed": hex(&INITIATOR_SEED),
        "receiver_seed": hex(&RECEIVER_SEED),
        "initiator_side": iseed.side(),
        "receiver_side": rseed.side(),
        "channel": 7,
        "code": code.to_string(),
        "initiator_pake_key": hex(ikey.as_slice()),
        "initiator_scalar": hex(&scalar(&ikey)),
        "initiator_pake": hex(&imsg),
        "receiver_pake_key": hex(rkey.as_slice()),
        "receiver_scalar": hex(&scalar(&rkey)),
        "receiver_pake": hex(&rmsg),
        "spake2_key": hex(&shared),
        "key_initiator_to_receiver": hex(ikeys.outbound_key()),
        "key_receiver_to_initiator": hex(rkeys.outbound_key()),
        "verifier": ikeys.verifier().to_hex(),
        "aad_initiator_to_receiver": hex(&associated_data(APPID, channel, Direction::InitiatorToReceiver)),
        "initiator_data": hex(idata),
        "initiator_sealed": hex(&ikeys.seal(Role::Initiator, APPID, channel, idata)),
        "receiver_data": hex(rdata),
        "receiver_sealed": hex(&rkeys.seal(Role::Receiver, APPID, channel, rdata)),
        "refused_receiver_pake": hex(&refused),
    })
}

/// The SPAKE2 secret scalar for a generator key, as PROTOCOL.md 4.1 draws
/// it (little-endian bytes): the first 64 bytes of the ChaCha20 keystream,
/// little-endian, reduced modulo the group order.
fn scalar(key: &[u8; 32]) -> [u8; 32] {
    use rand_core::{RngCore, SeedableRng};
    let mut wide = [0u8; 64];
    rand_chacha::ChaCha20Rng::from_seed(*key).fill_bytes(&mut wide);
    curve25519_dalek::Scalar::from_bytes_mod_order_wide(&wide).to_bytes()
}

/// The JSON block after the `test-vectors` marker in PROTOCOL.md.
fn published() -> Option<Value> {
    let spec = include_str!("../../PROTOCOL.md");
    let start = spec.find("```json test-vectors")?;
    let body = &spec[start..];
    let body = &body[body.find('\n')? + 1..];
    serde_json::from_str(&body[..body.find("```")?]).ok()
}

#[test]
fn published_vectors_match() {
    let computed = compute();
    let pretty = serde_json::to_string_pretty(&computed).expect("json");
    assert_eq!(published(), Some(computed), "PROTOCOL.md's test vectors differ; computed:\n{pretty}");
}
