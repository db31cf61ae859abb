//! Entry points into private machinery for the crate's criterion benches
//! (`cargo bench -p wormhole-sync-core`). Not a public API: enabled only by
//! the `bench-internals` feature, hidden from the docs, and free to change.

use crate::code::{ChannelId, Code};
use crate::crypto::{Pake, Seed, SessionKeys};
use crate::Role;

/// The code an initiator with `seed` shows for `channel`.
pub fn code_for(seed: [u8; 32], channel: ChannelId, words: usize) -> Code {
    Seed::new(seed).code_for(channel, words)
}

/// One side's SPAKE2 start: the message it posts, and the state to finish.
pub fn pake_start(seed: [u8; 32], appid: &str, role: Role, code: &Code) -> (Vec<u8>, PakeState) {
    let pake = Pake::start(&Seed::new(seed), appid, role, code);
    (pake.outbound().to_vec(), PakeState(pake, role))
}

/// A started SPAKE2 side.
pub struct PakeState(Pake, Role);

impl PakeState {
    /// Finishes with the peer's message: the session keys.
    pub fn finish(self, inbound: &[u8]) -> Option<Keys> {
        let role = self.1;
        self.0.finish(role, inbound).ok().map(|keys| Keys(keys, role))
    }
}

/// One side's session keys.
pub struct Keys(SessionKeys, Role);

impl Keys {
    /// Seals `plaintext` as this side sends it.
    pub fn seal(&self, appid: &str, channel: ChannelId, plaintext: &[u8]) -> Vec<u8> {
        self.0.seal(self.1, appid, channel, plaintext)
    }

    /// Opens what the peer sealed.
    pub fn open(&self, appid: &str, channel: ChannelId, sealed: &[u8]) -> Option<Vec<u8>> {
        self.0.open(self.1, appid, channel, sealed)
    }
}
