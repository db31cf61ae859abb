//! Key agreement and sealing: SPAKE2 over Ed25519, HKDF-SHA256, ChaCha20-Poly1305.
//!
//! All randomness comes from the exchange's 32-byte seed through labelled
//! HKDF expansions, so a restored exchange regenerates exactly the same PAKE
//! message and the same ciphertexts (see PROTOCOL.md, "Cryptography").

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::traits::IsIdentity;
use hkdf::Hkdf;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sha2::Sha256;
use spake2::{Ed25519Group, Identity, Password, Spake2};
use zeroize::Zeroizing;

use crate::code::{ChannelId, Code};
use crate::Role;

/// Protocol label mixed into every derivation.
const PROTOCOL: &[u8] = b"wormhole-sync/v1";

/// Length in bytes of a SPAKE2 (Ed25519) message: a side byte and a point.
pub(crate) const PAKE_MESSAGE_LEN: usize = 33;
/// Bytes the AEAD adds to each plaintext.
pub(crate) const TAG_LEN: usize = 16;

/// The exchange's secret seed, from which every random choice is derived.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Seed(pub(crate) Zeroizing<[u8; 32]>);

impl Seed {
    pub(crate) fn new(bytes: [u8; 32]) -> Seed {
        Seed(Zeroizing::new(bytes))
    }

    /// `len` bytes for one purpose, independent of every other purpose.
    fn expand(&self, info: &[u8], out: &mut [u8]) {
        let hk = Hkdf::<Sha256>::new(Some(b"wormhole-sync/v1 seed"), self.0.as_slice());
        hk.expand(info, out).expect("HKDF output lengths used here are far below the limit");
    }

    /// This client's side id: 16 lowercase hex characters.
    pub(crate) fn side(&self) -> String {
        let mut bytes = [0u8; 8];
        self.expand(b"side", &mut bytes);
        hex(&bytes)
    }

    /// The nonce of the message this client seals in `phase` of the
    /// magic-wormhole flavour: fixed per phase, so a message sent again
    /// after a reconnect is the same bytes (and the server's copy and ours
    /// agree), unique per phase and per exchange.
    pub(crate) fn nonce(&self, phase: &str) -> [u8; 24] {
        let mut nonce = [0u8; 24];
        self.expand(format!("magic-wormhole nonce {phase}").as_bytes(), &mut nonce);
        nonce
    }

    /// The secret words of an allocated code.
    pub(crate) fn code_for(&self, channel: ChannelId, words: usize) -> Code {
        let mut entropy = vec![0u8; words];
        self.expand(b"code-words", &mut entropy);
        Code::from_entropy(channel, &entropy)
    }

    /// The ChaCha20 key of the generator SPAKE2 draws its secret scalar
    /// from. It is bound to the application id and the whole canonical
    /// code, not to our seed alone: if a restored state re-ran allocation and
    /// a server handed out another channel id, the two PAKE messages must use
    /// unrelated scalars, or their difference would depend on the secret
    /// words only and give them away to an offline search (PROTOCOL.md 4.1).
    pub(crate) fn pake_key(&self, appid: &str, code: &Code) -> Zeroizing<[u8; 32]> {
        let code = code.to_string();
        let mut info = Vec::with_capacity(12 + appid.len() + code.len());
        info.extend_from_slice(b"pake");
        for field in [appid.as_bytes(), code.as_bytes()] {
            let len = u32::try_from(field.len()).expect("app ids and codes are far below 4 GiB");
            info.extend_from_slice(&len.to_be_bytes());
            info.extend_from_slice(field);
        }
        let mut key = Zeroizing::new([0u8; 32]);
        self.expand(&info, key.as_mut_slice());
        key
    }
}

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seed(<redacted>)")
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses lowercase or uppercase hex.
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// Whether a peer's SPAKE2 message carries a group element SPAKE2 may use:
/// its last 32 bytes decode to a point of Ed25519's prime-order subgroup
/// other than the identity, as python-spake2 requires (PROTOCOL.md 4.2).
/// The spake2 crate checks only that they decode to a point of the curve,
/// so a point with a small-order component would still be accepted.
///
/// Shared by both flavours (their side bytes differ, the element does not).
pub(crate) fn is_valid_pake_element(message: &[u8]) -> bool {
    let Some(element) = message.get(1..).and_then(|e| <[u8; 32]>::try_from(e).ok()) else { return false };
    CompressedEdwardsY(element).decompress().is_some_and(|point| point.is_torsion_free() && !point.is_identity())
}

/// Our half of a SPAKE2 run that has not finished yet.
pub(crate) struct Pake {
    state: Spake2<Ed25519Group>,
    outbound: Vec<u8>,
}

impl fmt::Debug for Pake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pake(<redacted>)")
    }
}

fn identity(appid: &str, role: Role) -> Identity {
    let label = match role {
        Role::Initiator => "initiator",
        Role::Receiver => "receiver",
    };
    Identity::new(format!("wormhole-sync/v1/{label}:{appid}").as_bytes())
}

impl Pake {
    /// Starts SPAKE2 with the canonical code as the password, the initiator
    /// as side A and the receiver as side B.
    pub(crate) fn start(seed: &Seed, appid: &str, role: Role, code: &Code) -> Pake {
        let password = Password::new(code.to_string().as_bytes());
        let id_a = identity(appid, Role::Initiator);
        let id_b = identity(appid, Role::Receiver);
        let rng = ChaCha20Rng::from_seed(*seed.pake_key(appid, code));
        let (state, outbound) = match role {
            Role::Initiator => Spake2::<Ed25519Group>::start_a_with_rng(&password, &id_a, &id_b, rng),
            Role::Receiver => Spake2::<Ed25519Group>::start_b_with_rng(&password, &id_a, &id_b, rng),
        };
        Pake { state, outbound }
    }

    /// The message to send to the peer.
    pub(crate) fn outbound(&self) -> &[u8] {
        &self.outbound
    }

    /// Finishes with the peer's message and derives the session keys.
    pub(crate) fn finish(self, role: Role, inbound: &[u8]) -> Result<SessionKeys, spake2::Error> {
        let shared = self.finish_shared(inbound)?;
        Ok(SessionKeys::derive(role, &shared))
    }

    /// The raw SPAKE2 shared secret (published in the test vectors).
    pub(crate) fn finish_shared(self, inbound: &[u8]) -> Result<Zeroizing<Vec<u8>>, spake2::Error> {
        if inbound.len() == PAKE_MESSAGE_LEN && !is_valid_pake_element(inbound) {
            return Err(spake2::Error::CorruptMessage);
        }
        Ok(Zeroizing::new(self.state.finish(inbound)?))
    }
}

/// Keys agreed by SPAKE2: one per direction, and the verifier.
pub(crate) struct SessionKeys {
    outbound: Zeroizing<[u8; 32]>,
    inbound: Zeroizing<[u8; 32]>,
    verifier: Verifier,
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKeys(<redacted>)")
    }
}

/// Which way a message travels; each direction has its own key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    InitiatorToReceiver,
    ReceiverToInitiator,
}

impl Direction {
    pub(crate) fn from(sender: Role) -> Direction {
        match sender {
            Role::Initiator => Direction::InitiatorToReceiver,
            Role::Receiver => Direction::ReceiverToInitiator,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Direction::InitiatorToReceiver => "initiator-to-receiver",
            Direction::ReceiverToInitiator => "receiver-to-initiator",
        }
    }

    fn byte(self) -> u8 {
        match self {
            Direction::InitiatorToReceiver => 1,
            Direction::ReceiverToInitiator => 2,
        }
    }
}

fn direction_key(hk: &Hkdf<Sha256>, direction: Direction) -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    let info = format!("wormhole-sync/v1 key {}", direction.label());
    hk.expand(info.as_bytes(), key.as_mut_slice()).expect("32 bytes is a valid HKDF-SHA256 length");
    key
}

impl SessionKeys {
    pub(crate) fn derive(role: Role, shared: &[u8]) -> SessionKeys {
        let hk = Hkdf::<Sha256>::new(Some(PROTOCOL), shared);
        let to_receiver = direction_key(&hk, Direction::InitiatorToReceiver);
        let to_initiator = direction_key(&hk, Direction::ReceiverToInitiator);
        let mut verifier = [0u8; 32];
        hk.expand(b"wormhole-sync/v1 verifier", &mut verifier).expect("32 bytes is a valid HKDF-SHA256 length");
        let (outbound, inbound) = match role {
            Role::Initiator => (to_receiver, to_initiator),
            Role::Receiver => (to_initiator, to_receiver),
        };
        SessionKeys { outbound, inbound, verifier: Verifier(verifier) }
    }

    /// The raw key sealing what we send (for the test vectors).
    #[cfg(test)]
    pub(crate) fn outbound_key(&self) -> &[u8; 32] {
        &self.outbound
    }

    pub(crate) fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Seals our data for the peer.
    pub(crate) fn seal(&self, role: Role, appid: &str, channel: ChannelId, plaintext: &[u8]) -> Vec<u8> {
        let aad = associated_data(appid, channel, Direction::from(role));
        seal(&self.outbound, &aad, plaintext)
    }

    /// Opens the peer's data.
    pub(crate) fn open(&self, role: Role, appid: &str, channel: ChannelId, ciphertext: &[u8]) -> Option<Vec<u8>> {
        let aad = associated_data(appid, channel, Direction::from(role.peer()));
        open(&self.inbound, &aad, ciphertext)
    }

    /// Whether `ciphertext` is our own sealed data, sent back to us.
    pub(crate) fn is_reflection(&self, role: Role, appid: &str, channel: ChannelId, ciphertext: &[u8]) -> bool {
        let aad = associated_data(appid, channel, Direction::from(role));
        open(&self.outbound, &aad, ciphertext).is_some()
    }
}

/// Associated data binding a ciphertext to the protocol version, application,
/// channel and direction: `"wormhole-sync/v1 data" || u32be(len appid) ||
/// appid || u32be(channel) || direction byte`.
pub(crate) fn associated_data(appid: &str, channel: ChannelId, direction: Direction) -> Vec<u8> {
    let mut aad = Vec::with_capacity(32 + appid.len());
    aad.extend_from_slice(b"wormhole-sync/v1 data");
    let appid_len = u32::try_from(appid.len()).expect("application ids are at most 256 bytes");
    aad.extend_from_slice(&appid_len.to_be_bytes());
    aad.extend_from_slice(appid.as_bytes());
    aad.extend_from_slice(&channel.get().to_be_bytes());
    aad.push(direction.byte());
    aad
}

/// Each direction key seals exactly one plaintext (our data, fixed for the
/// life of the exchange), so message counter 0 is the only nonce ever used
/// under it: a re-seal after a restore gives the identical ciphertext.
fn nonce() -> Nonce {
    Nonce::default()
}

pub(crate) fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    cipher
        .encrypt(&nonce(), Payload { msg: plaintext, aad })
        .expect("ChaCha20-Poly1305 encryption only fails for plaintexts beyond 256 GiB")
}

pub(crate) fn open(key: &[u8; 32], aad: &[u8], ciphertext: &[u8]) -> Option<Vec<u8>> {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    cipher.decrypt(&nonce(), Payload { msg: ciphertext, aad }).ok()
}

/// A value both people can compare to be sure they talk to each other:
/// equal on both sides exactly when both used the same code.
///
/// It is derived from the session key by HKDF and reveals nothing about it.
/// `Display` shows the first 16 bytes as four groups of hex digits.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Verifier([u8; 32]);

impl Verifier {
    pub(crate) fn new(bytes: [u8; 32]) -> Verifier {
        Verifier(bytes)
    }

    /// All 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Full lowercase hex.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let groups: Vec<String> = self.0[..16].chunks(4).map(hex).collect();
        f.write_str(&groups.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pair(code_a: &str, code_b: &str) -> (SessionKeys, SessionKeys) {
        let a = Pake::start(&Seed::new([1; 32]), "app", Role::Initiator, &code_a.parse().unwrap());
        let b = Pake::start(&Seed::new([2; 32]), "app", Role::Receiver, &code_b.parse().unwrap());
        let (a_msg, b_msg) = (a.outbound().to_vec(), b.outbound().to_vec());
        assert_eq!(a_msg.len(), PAKE_MESSAGE_LEN);
        (a.finish(Role::Initiator, &b_msg).unwrap(), b.finish(Role::Receiver, &a_msg).unwrap())
    }

    #[test]
    fn same_code_gives_matching_keys_and_verifiers() {
        let (a, b) = pair("7-guitarist-revenge", "7-guitarist-revenge");
        assert_eq!(a.verifier(), b.verifier());
        let channel = ChannelId::new(7).unwrap();
        let sealed = a.seal(Role::Initiator, "app", channel, b"hello");
        assert_eq!(b.open(Role::Receiver, "app", channel, &sealed).as_deref(), Some(&b"hello"[..]));
        // Different key per direction: the initiator cannot open its own message as inbound.
        assert_eq!(a.open(Role::Initiator, "app", channel, &sealed), None);
        assert!(a.is_reflection(Role::Initiator, "app", channel, &sealed));
        assert!(!b.is_reflection(Role::Receiver, "app", channel, &sealed));
    }

    #[test]
    fn different_codes_give_different_keys() {
        let (a, b) = pair("7-guitarist-revenge", "7-guitarist-reward");
        assert_ne!(a.verifier(), b.verifier());
        let channel = ChannelId::new(7).unwrap();
        let sealed = a.seal(Role::Initiator, "app", channel, b"hello");
        assert_eq!(b.open(Role::Receiver, "app", channel, &sealed), None);
    }

    #[test]
    fn pake_rejects_reflected_and_corrupt_messages() {
        let code: Code = "7-a-b".parse().unwrap();
        let a = Pake::start(&Seed::new([1; 32]), "app", Role::Initiator, &code);
        let own = a.outbound().to_vec();
        assert!(a.finish(Role::Initiator, &own).is_err());
        let a = Pake::start(&Seed::new([1; 32]), "app", Role::Initiator, &code);
        assert!(a.finish(Role::Initiator, &[0x42; 5]).is_err());
    }

    #[test]
    fn the_seed_determines_everything() {
        let code: Code = "7-a-b".parse().unwrap();
        let first = Pake::start(&Seed::new([9; 32]), "app", Role::Initiator, &code);
        let again = Pake::start(&Seed::new([9; 32]), "app", Role::Initiator, &code);
        let other = Pake::start(&Seed::new([8; 32]), "app", Role::Initiator, &code);
        assert_eq!(first.outbound(), again.outbound());
        assert_ne!(first.outbound(), other.outbound());
        assert_eq!(Seed::new([9; 32]).side(), Seed::new([9; 32]).side());
        assert_ne!(Seed::new([9; 32]).side(), Seed::new([8; 32]).side());
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let (a, _) = pair("7-a-b", "7-a-b");
        assert_eq!(format!("{a:?}"), "SessionKeys(<redacted>)");
        assert_eq!(format!("{:?}", Seed::new([7; 32])), "Seed(<redacted>)");
    }

    proptest! {
        #[test]
        fn seal_open_round_trip_and_tamper_detection(
            key in any::<[u8; 32]>(),
            plaintext in proptest::collection::vec(any::<u8>(), 0..512),
            flip in any::<usize>(),
            bit in 0u8..8,
        ) {
            let channel = ChannelId::new(3).unwrap();
            let aad = associated_data("app", channel, Direction::InitiatorToReceiver);
            let sealed = seal(&key, &aad, &plaintext);
            prop_assert_eq!(sealed.len(), plaintext.len() + TAG_LEN);
            prop_assert_eq!(open(&key, &aad, &sealed), Some(plaintext.clone()));

            let mut tampered = sealed.clone();
            let i = flip % tampered.len();
            tampered[i] ^= 1 << bit;
            prop_assert_eq!(open(&key, &aad, &tampered), None);

            // Bound to application, channel and direction.
            let other_app = associated_data("app2", channel, Direction::InitiatorToReceiver);
            let other_channel = associated_data("app", ChannelId::new(4).unwrap(), Direction::InitiatorToReceiver);
            let other_direction = associated_data("app", channel, Direction::ReceiverToInitiator);
            prop_assert_eq!(open(&key, &other_app, &sealed), None);
            prop_assert_eq!(open(&key, &other_channel, &sealed), None);
            prop_assert_eq!(open(&key, &other_direction, &sealed), None);
        }

        #[test]
        fn hex_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(unhex(&hex(&bytes)), Some(bytes));
        }
    }
}
