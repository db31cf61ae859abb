//! The crypto an exchange derives from its facts: SPAKE2 from its secret seed and
//! code, the session keys once the peer's PAKE message is known, the peer's
//! plaintext once its data is, and the outcome these imply.

use super::Exchange;
use crate::crypto::Pake;
use crate::wire::Mood;
use crate::Error;

impl Exchange {
    pub(super) fn pake_message(&mut self) -> Vec<u8> {
        self.ensure_pake();
        self.own_pake.clone()
    }

    /// Starts SPAKE2 from our seed unless it ran already (the same seed and
    /// code always give the same message).
    fn ensure_pake(&mut self) -> Option<&Pake> {
        if self.pake.is_none() && self.keys.is_none() {
            let code = self.facts.code.as_ref()?;
            let pake = Pake::start(&self.facts.seed, self.facts.config.appid(), self.facts.role, code);
            self.own_pake = pake.outbound().to_vec();
            self.pake = Some(pake);
        }
        self.pake.as_ref()
    }

    pub(super) fn sealed_data(&self) -> Vec<u8> {
        match (&self.keys, self.channel()) {
            (Some(keys), Some(channel)) => {
                keys.seal(self.facts.role, self.facts.config.appid(), channel, &self.facts.data)
            }
            _ => unreachable!("data is only posted once keys are agreed"),
        }
    }

    /// Derives keys, plaintext and the outcome from the facts so far.
    pub(super) fn derive(&mut self) {
        let (Some(channel), Some(peer_pake)) = (self.channel(), self.facts.peer_pake.clone()) else {
            return self.check_peer_mood();
        };
        let role = self.facts.role;
        if self.keys.is_none() {
            let Some(pake) = self.ensure_pake() else { return };
            if pake.outbound() == peer_pake.as_slice() {
                return self.fail(Error::Reflection);
            }
            let pake = self.pake.take().expect("ensured above");
            match pake.finish(role, &peer_pake) {
                Ok(keys) => self.keys = Some(keys),
                Err(_) => {
                    let detail = "the PAKE message is not a valid SPAKE2 message for our role".into();
                    return self.fail(Error::PeerProtocol { detail });
                }
            }
        }
        let keys = self.keys.as_ref().expect("agreed above");
        if let (None, Some(sealed)) = (&self.peer_plain, &self.facts.peer_data) {
            let appid = self.facts.config.appid();
            match keys.open(role, appid, channel, sealed) {
                Some(plain) => self.peer_plain = Some(plain),
                None if keys.is_reflection(role, appid, channel, sealed) => return self.fail(Error::Reflection),
                None => return self.fail(Error::WrongCode),
            }
        }
        if self.facts.decision == Some(false) {
            return self.fail(Error::Declined);
        }
        if self.peer_plain.is_some() && self.facts.data_posted && self.facts.released() {
            self.succeeded = true;
            self.end();
            return;
        }
        self.check_peer_mood();
    }

    fn check_peer_mood(&mut self) {
        match self.facts.peer_mood {
            Some(Mood::Scary) => self.fail(Error::WrongCode),
            Some(Mood::Declined) => self.fail(Error::PeerDeclined),
            Some(mood @ (Mood::Lonely | Mood::Errory)) => self.fail(Error::PeerClosed { mood }),
            // A peer closes happily only after our data reached it; its own
            // data is then in the log, so there is nothing to do but fetch it.
            Some(Mood::Happy) | None => {}
        }
    }
}
