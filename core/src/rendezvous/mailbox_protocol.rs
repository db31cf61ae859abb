//! The mailbox protocol's operations (magic-wormhole's WebSocket front end).

use crate::code::ChannelId;
use crate::time::Timestamp;
use crate::wire::{validate_appid, validate_phase, validate_side, MailboxId, Message, Mood, WireError};

use super::changes::EffectKind;
use super::operations::Named;
use super::state::Member;
use super::Rendezvous;

impl Rendezvous {
    /// `allocate`: a free nameplate, claimed by `side` (with a new mailbox).
    ///
    /// ```
    /// use wormhole_sync_core::rendezvous::{Rendezvous, RendezvousConfig};
    /// use wormhole_sync_core::Timestamp;
    ///
    /// let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    /// let now = Timestamp::EPOCH;
    /// let nameplate = server.allocate_nameplate(now, "app", "s1")?;
    /// let mailbox = server.claim(now, "app", nameplate, "s1")?; // the allocator claims it too
    /// assert_eq!(server.claim(now, "app", nameplate, "s2")?, mailbox);
    /// server.release(now, "app", nameplate, "s1")?;
    /// server.release(now, "app", nameplate, "s2")?;
    /// // Two sides used it: the number stays with the mailbox, and a third side is refused.
    /// assert_eq!(server.mailbox_of("app", nameplate), Some(&mailbox));
    /// assert!(server.claim(now, "app", nameplate, "s3").is_err());
    /// # Ok::<(), wormhole_sync_core::wire::WireError>(())
    /// ```
    pub fn allocate_nameplate(&mut self, now: Timestamp, appid: &str, side: &str) -> Result<ChannelId, WireError> {
        self.clear_effects();
        validate_appid(appid)?;
        validate_side(side)?;
        Ok(self.allocate(now, appid, side)?.0)
    }

    /// `claim`: `side` claims a nameplate, creating it (and its mailbox) if
    /// unused, and enters its mailbox. Refused with `crowded` for a third
    /// side, `reclaimed` for a side that released it, `burned` after a
    /// wrong code.
    pub fn claim(
        &mut self,
        now: Timestamp,
        appid: &str,
        nameplate: ChannelId,
        side: &str,
    ) -> Result<MailboxId, WireError> {
        self.clear_effects();
        validate_appid(appid)?;
        validate_side(side)?;
        self.expire_if_idle(appid, Named::Nameplate(nameplate), now);
        self.claim_nameplate(now, appid, nameplate, side, true, true)
    }

    /// `release`: `side` gives the nameplate up; once no side holds it, its
    /// number is free. Releasing what is not held changes nothing.
    pub fn release(&mut self, now: Timestamp, appid: &str, nameplate: ChannelId, side: &str) -> Result<(), WireError> {
        self.clear_effects();
        let Some(app) = self.apps.get_mut(appid) else { return Ok(()) };
        let Some(id) = app.by_nameplate(nameplate.get()).cloned() else { return Ok(()) };
        let mailbox = app.mailboxes.get_mut(&id).expect("nameplates lead to mailboxes");
        if mailbox.member(side).is_some_and(Member::holds_nameplate) && mailbox.is_abandoned() {
            // Its only side closed before letting go of the nameplate (the
            // mailbox protocol sends both at once): nothing is left to keep.
            self.delete(appid, &id);
            return Ok(());
        }
        let Some(member) = mailbox.member_mut(side).filter(|m| m.holds_nameplate()) else { return Ok(()) };
        member.released = true;
        mailbox.last_activity = now;
        if app.release_if_unheld(&id) {
            self.nameplates -= 1;
        }
        self.effect(appid, &id, EffectKind::Changed);
        Ok(())
    }

    /// `open`: `side` enters a mailbox (created, with no nameplate, if it
    /// does not exist, as the reference server does) and gets every
    /// message in it. Refused with `crowded` for a third side and `burned`
    /// for a stranger after a wrong code.
    pub fn open(&mut self, now: Timestamp, appid: &str, id: &MailboxId, side: &str) -> Result<Vec<Message>, WireError> {
        self.clear_effects();
        validate_appid(appid)?;
        validate_side(side)?;
        self.expire_if_idle(appid, Named::Mailbox(id), now);
        let Some(mailbox) = self.mailbox_mut(appid, id) else {
            self.check_capacity(appid)?;
            self.create_as(now, appid, id.clone(), None, Member::new(side, false, false));
            return Ok(Vec::new());
        };
        mailbox.admits(side)?;
        let joined = mailbox.member(side).is_none();
        if joined {
            mailbox.members.push(Member::new(side, false, false));
        }
        mailbox.last_activity = now;
        let messages = mailbox.messages.clone();
        let kind = if joined { EffectKind::Changed } else { EffectKind::Touched };
        self.effect(appid, id, kind);
        Ok(messages)
    }

    /// `add`: a member of the mailbox adds a message, received at `now`
    /// under the sender's `client_id`. Returns its sequence number.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        now: Timestamp,
        appid: &str,
        id: &MailboxId,
        side: &str,
        phase: &str,
        body: &str,
        client_id: Option<String>,
    ) -> Result<u64, WireError> {
        self.clear_effects();
        validate_phase(phase)?;
        self.expire_if_idle(appid, Named::Mailbox(id), now);
        let message = Message::new(0, side, phase, body).received(Some(now), client_id);
        self.append(now, appid, id, side, message)
    }

    /// Counts as activity on a mailbox a client listens to (a WebSocket
    /// that opened it and stays connected), so it does not expire under a
    /// client that is still there. Nothing happens to a mailbox that is gone.
    ///
    /// ```
    /// use wormhole_sync_core::rendezvous::{EffectKind, Rendezvous, RendezvousConfig};
    /// use wormhole_sync_core::wire::MailboxId;
    /// use wormhole_sync_core::Timestamp;
    ///
    /// let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    /// let mailbox = MailboxId::new("abc").unwrap();
    /// server.open(Timestamp::EPOCH, "app", &mailbox, "s1")?;
    /// server.touch(Timestamp::from_millis(5), "app", &mailbox);
    /// assert_eq!(server.effects()[0].kind, EffectKind::Touched);
    /// # Ok::<(), wormhole_sync_core::wire::WireError>(())
    /// ```
    pub fn touch(&mut self, now: Timestamp, appid: &str, id: &MailboxId) {
        self.clear_effects();
        if let Some(mailbox) = self.mailbox_mut(appid, id) {
            mailbox.last_activity = mailbox.last_activity.max(now);
            self.effect(appid, id, EffectKind::Touched);
        }
    }

    /// `close`: `side` leaves the mailbox with `mood` (`scary` burns it).
    /// Closing a mailbox that is gone changes nothing.
    pub fn close(
        &mut self,
        now: Timestamp,
        appid: &str,
        id: &MailboxId,
        side: &str,
        mood: Mood,
    ) -> Result<(), WireError> {
        self.clear_effects();
        if !self.contains_mailbox(appid, id) {
            return Ok(());
        }
        self.close_member(now, appid, id, side, mood).map(|_| ())
    }
}
