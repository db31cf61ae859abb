//! magic-wormhole's cryptography, computed as its clients compute it:
//! SPAKE2 in its symmetric mode (identity: the application id, password:
//! the whole code), keys derived with HKDF-SHA256 under magic-wormhole's
//! purpose strings, and NaCl's secretbox (XSalsa20-Poly1305) with a random
//! 24-byte nonce in front of each sealed message.
//!
//! Randomness is an input, as everywhere in this crate: the PAKE scalar
//! comes from a 32-byte seed, and each nonce is given by the caller.
//!
//! ```
//! use wormhole_sync_core::magic_wormhole::crypto::{open, phase_key, seal, verifier, Pake};
//!
//! let (appid, code) = ("lothar.com/wormhole/text-or-file-xfer", "4-purple-sausages");
//! let (ours, our_body) = Pake::start(code, appid, [1; 32]);
//! let (theirs, their_body) = Pake::start(code, appid, [2; 32]);
//! let key = ours.finish(&their_body)?;
//! assert_eq!(verifier(&key), verifier(&theirs.finish(&our_body)?));
//! let sealed = seal(&phase_key(&key, "8f0a3b2c1d", "0"), [7; 24], b"hello");
//! assert_eq!(open(&phase_key(&key, "8f0a3b2c1d", "0"), &sealed)?, b"hello");
//! # Ok::<(), wormhole_sync_core::magic_wormhole::crypto::CryptoError>(())
//! ```

use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use hkdf::Hkdf;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sha2::{Digest, Sha256};
use spake2::{Ed25519Group, Identity, Password, Spake2};
use zeroize::Zeroize;

/// Bytes of a secretbox key, and of every derived key.
pub const KEY_LEN: usize = 32;
/// Bytes of a secretbox nonce, sent in front of each sealed message.
pub const NONCE_LEN: usize = 24;
/// Bytes of the authentication tag secretbox adds.
pub const TAG_LEN: usize = 16;

/// Why magic-wormhole's cryptography failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The peer's `pake` message is not `{"pake_v1": "<hex>"}`.
    #[error("the peer's PAKE message is malformed")]
    MalformedPake,
    /// SPAKE2 refused the peer's message (not a group element, or a reflection).
    #[error("the peer's PAKE message is invalid")]
    InvalidPake,
    /// A sealed message did not open: a wrong code, or tampering.
    #[error("a message did not open under the agreed key")]
    CannotOpen,
}

/// The key both sides agree on through SPAKE2. Never shown: `Debug` names
/// it only, and it is wiped on drop. (No `==`: compare [`verifier`]s.)
#[derive(Clone)]
pub struct SharedKey([u8; KEY_LEN]);

impl Drop for SharedKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedKey(..)")
    }
}

impl SharedKey {
    /// A key from its bytes (tests, and keys restored from saved state).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> SharedKey {
        SharedKey(bytes)
    }
}

/// HKDF-SHA256 of the shared key, no salt, `purpose` as its info.
pub fn derive_key(key: &SharedKey, purpose: &[u8]) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    Hkdf::<Sha256>::new(None, &key.0).expand(purpose, &mut out).expect("32 bytes is a valid HKDF length");
    out
}

/// The key of the messages `side` sends in `phase`: purpose
/// `wormhole:phase:` + SHA-256(side) + SHA-256(phase).
pub fn phase_key(key: &SharedKey, side: &str, phase: &str) -> [u8; KEY_LEN] {
    let mut purpose = b"wormhole:phase:".to_vec();
    purpose.extend_from_slice(&Sha256::digest(side.as_bytes()));
    purpose.extend_from_slice(&Sha256::digest(phase.as_bytes()));
    derive_key(key, &purpose)
}

/// The verifier both people may compare: purpose `wormhole:verifier`.
pub fn verifier(key: &SharedKey) -> [u8; KEY_LEN] {
    derive_key(key, b"wormhole:verifier")
}

/// `nonce` followed by the secretbox of `plaintext` (tag, then ciphertext),
/// as PyNaCl's `SecretBox.encrypt` writes it.
pub fn seal(key: &[u8; KEY_LEN], nonce: [u8; NONCE_LEN], plaintext: &[u8]) -> Vec<u8> {
    let cipher = XSalsa20Poly1305::new(key.into());
    let sealed = cipher.encrypt(&nonce.into(), plaintext).expect("secretbox seals any length this crate sends");
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Opens what [`seal`] wrote.
pub fn open(key: &[u8; KEY_LEN], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::CannotOpen);
    }
    let (nonce, boxed) = sealed.split_at(NONCE_LEN);
    let cipher = XSalsa20Poly1305::new(key.into());
    cipher.decrypt(nonce.into(), boxed).map_err(|_| CryptoError::CannotOpen)
}

/// One side's SPAKE2 in its symmetric mode, started.
pub struct Pake {
    state: Spake2<Ed25519Group>,
}

impl std::fmt::Debug for Pake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pake(..)")
    }
}

impl Pake {
    /// Starts SPAKE2 with the whole `code` as password and `appid` as the
    /// identity, its scalar drawn from `seed`. Returns the state and the
    /// body of the `pake` message: `{"pake_v1": "<hex>"}`.
    pub fn start(code: &str, appid: &str, seed: [u8; 32]) -> (Pake, Vec<u8>) {
        let (state, message) = Spake2::<Ed25519Group>::start_symmetric_with_rng(
            &Password::new(code.as_bytes()),
            &Identity::new(appid.as_bytes()),
            ChaCha20Rng::from_seed(seed),
        );
        let body = serde_json::json!({ "pake_v1": hex(&message) }).to_string().into_bytes();
        (Pake { state }, body)
    }

    /// Finishes with the peer's `pake` message body.
    pub fn finish(self, peer_body: &[u8]) -> Result<SharedKey, CryptoError> {
        let parsed: serde_json::Value = serde_json::from_slice(peer_body).map_err(|_| CryptoError::MalformedPake)?;
        let message = parsed.get("pake_v1").and_then(serde_json::Value::as_str).ok_or(CryptoError::MalformedPake)?;
        let message = unhex(message).ok_or(CryptoError::MalformedPake)?;
        if message.len() == 33 && !crate::crypto::is_valid_pake_element(&message) {
            return Err(CryptoError::InvalidPake);
        }
        let mut key = self.state.finish(&message).map_err(|_| CryptoError::InvalidPake)?;
        let bytes: [u8; KEY_LEN] = key.as_slice().try_into().map_err(|_| CryptoError::InvalidPake)?;
        key.zeroize();
        Ok(SharedKey(bytes))
    }
}

/// Lowercase hex, as magic-wormhole writes message bodies.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of lowercase or uppercase hex, if it is hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_what_is_not_hex() {
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(unhex("00ABff"), Some(vec![0, 0xab, 0xff]));
        for bad in ["0", "zz", "0g", "é0"] {
            assert_eq!(unhex(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_wrong_code_gives_another_key_and_nothing_opens() {
        let appid = "example.com/app";
        let (ours, our_body) = Pake::start("4-purple-sausages", appid, [1; 32]);
        let (theirs, their_body) = Pake::start("4-purple-sausage", appid, [2; 32]);
        let (a, b) = (ours.finish(&their_body).unwrap(), theirs.finish(&our_body).unwrap());
        assert_ne!(verifier(&a), verifier(&b));
        let sealed = seal(&phase_key(&a, "s", "version"), [0; NONCE_LEN], b"{}");
        assert_eq!(open(&phase_key(&b, "s", "version"), &sealed), Err(CryptoError::CannotOpen));
        assert_eq!(open(&phase_key(&a, "s", "version"), &sealed[..30]), Err(CryptoError::CannotOpen));
        assert_eq!(format!("{a:?}"), "SharedKey(..)");
    }

    #[test]
    fn malformed_pake_messages_are_refused() {
        for body in [&b"not json"[..], b"{}", br#"{"pake_v1": 5}"#, br#"{"pake_v1": "zz"}"#] {
            let (pake, _) = Pake::start("1-a-b", "app", [3; 32]);
            assert_eq!(pake.finish(body).unwrap_err(), CryptoError::MalformedPake, "{body:?}");
        }
        let (pake, _) = Pake::start("1-a-b", "app", [3; 32]);
        assert_eq!(pake.finish(br#"{"pake_v1": "5300"}"#).unwrap_err(), CryptoError::InvalidPake);
    }
}
