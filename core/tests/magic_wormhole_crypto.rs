//! The magic-wormhole flavour's cryptography against vectors computed by
//! magic-wormhole's own Python code (`tools/magic_wormhole_vectors.py`,
//! which CI runs to check the file): SPAKE2 finished with the Python
//! side's message reaches the key Python reached with ours, and the
//! verifier, phase key and sealed message match byte for byte.

use serde_json::Value;
use wormhole_sync_core::magic_wormhole::crypto::{hex, open, phase_key, seal, unhex, verifier, Pake};

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/magic-wormhole-vectors.json")).unwrap()
}

fn text<'a>(vectors: &'a Value, name: &str) -> &'a str {
    vectors[name].as_str().unwrap_or_else(|| panic!("{name} is missing"))
}

#[test]
fn our_spake2_agrees_with_magic_wormholes_and_so_do_the_derived_keys() {
    let v = vectors();
    let seed: [u8; 32] = unhex(text(&v, "rust_seed")).unwrap().try_into().unwrap();
    let (ours, our_body) = Pake::start(text(&v, "code"), text(&v, "appid"), seed);
    assert_eq!(String::from_utf8(our_body).unwrap(), text(&v, "rust_pake_body"), "our message is the recorded one");
    let key = ours.finish(text(&v, "python_pake_body").as_bytes()).unwrap();
    assert_eq!(hex(&verifier(&key)), text(&v, "verifier"));
    let phase = phase_key(&key, text(&v, "side"), text(&v, "phase"));
    assert_eq!(hex(&phase), text(&v, "phase_key"));
    let nonce: [u8; 24] = unhex(text(&v, "nonce")).unwrap().try_into().unwrap();
    let sealed = seal(&phase, nonce, text(&v, "plaintext").as_bytes());
    assert_eq!(hex(&sealed), text(&v, "sealed"));
    assert_eq!(open(&phase, &sealed).unwrap(), text(&v, "plaintext").as_bytes());
}
