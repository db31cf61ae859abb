//! The HTTP API's operations, and the steps both front ends share:
//! entering through a nameplate, creating, appending, closing, deleting.

use rand_core::RngCore;

use crate::code::ChannelId;
use crate::time::Timestamp;
use crate::wire::{
    AllocateResponse, CloseResponse, ErrorCode, JoinResponse, MailboxId, Message, Mood, PostResponse, Request,
    Response, WireError,
};

use super::changes::{Effect, EffectKind, Finished};
use super::state::{App, Draw, Mailbox, Member};
use super::{base32, err, unknown, Rendezvous};

/// Which channel a request names: by its short nameplate (old clients,
/// and joins), or by its mailbox.
#[derive(Clone, Copy, Debug)]
pub(super) enum Named<'a> {
    Nameplate(ChannelId),
    Mailbox(&'a MailboxId),
}

impl Rendezvous {
    /// Handles one HTTP API request at `now`. Every request is idempotent: a
    /// retry after a lost answer gets the same answer and changes nothing
    /// more.
    pub fn handle(&mut self, now: Timestamp, request: &Request) -> Result<Response, WireError> {
        self.clear_effects();
        request.validate()?;
        let (appid, side) = (request.appid(), request.side());
        let target = match (request.mailbox(), request.channel()) {
            (Some(mailbox), _) => Some(Named::Mailbox(mailbox)),
            (None, Some(channel)) => Some(Named::Nameplate(channel)),
            (None, None) => None,
        };
        if let Some(target) = target {
            self.expire_if_idle(appid, target, now);
        }
        match request {
            Request::Allocate(_) => {
                let (channel, mailbox) = self.allocate(now, appid, side)?;
                Ok(Response::Allocated(AllocateResponse { channel, mailbox: Some(mailbox) }))
            }
            Request::Join(r) => {
                let mailbox = self.claim_nameplate(now, appid, r.channel, side, r.create, false)?;
                let found = &self.apps[appid].mailboxes[&mailbox];
                let sides = u8::try_from(found.members.len()).expect("at most two members");
                let log = Some(found.log(0));
                Ok(Response::Joined(JoinResponse { sides, mailbox: Some(mailbox), log }))
            }
            Request::Post(r) => {
                let mailbox = self.resolve(appid, target.expect("posts name a channel"), side)?;
                let seq = self.append(now, appid, &mailbox, side, Message::new(0, side, &r.phase, &r.body))?;
                let log = r.after.map(|after| self.apps[appid].mailboxes[&mailbox].log(after));
                Ok(Response::Posted(PostResponse { seq, log }))
            }
            Request::Fetch(r) => {
                let mailbox = self.resolve(appid, target.expect("fetches name a channel"), side)?;
                let found = self.mailbox_mut(appid, &mailbox).expect("just resolved");
                found.last_activity = now;
                let log = found.log(r.after);
                self.effect(appid, &mailbox, EffectKind::Touched);
                Ok(Response::Fetched(log))
            }
            Request::Close(r) => {
                let mailbox = match self.resolve(appid, target.expect("closes name a channel"), side) {
                    Ok(mailbox) => mailbox,
                    // Already gone: closing again is a no-op, so retries succeed. A
                    // stranger gets the same answer, so a close cannot tell which
                    // channel ids are in use.
                    Err(e) if matches!(e.code, ErrorCode::UnknownChannel | ErrorCode::NotJoined) => {
                        return Ok(Response::Closed(CloseResponse { deleted: true }))
                    }
                    Err(e) => return Err(e),
                };
                let deleted = self.close_member(now, appid, &mailbox, side, r.mood)?;
                Ok(Response::Closed(CloseResponse { deleted }))
            }
        }
    }

    pub(super) fn mailbox_mut(&mut self, appid: &str, mailbox: &MailboxId) -> Option<&mut Mailbox> {
        self.apps.get_mut(appid)?.mailboxes.get_mut(mailbox)
    }

    /// The mailbox a member's request names. Naming the mailbox itself
    /// shows the side knows it: once both members have shown it, the
    /// nameplate is released for the next code.
    pub(super) fn resolve(&mut self, appid: &str, target: Named<'_>, side: &str) -> Result<MailboxId, WireError> {
        let app = self.apps.get_mut(appid).ok_or_else(unknown)?;
        let id = match target {
            Named::Nameplate(channel) => app.by_nameplate(channel.get()).cloned().ok_or_else(unknown)?,
            Named::Mailbox(id) if app.mailboxes.contains_key(id) => id.clone(),
            Named::Mailbox(_) => return Err(unknown()),
        };
        let mailbox = app.mailboxes.get_mut(&id).expect("nameplates lead to mailboxes");
        let both_present = mailbox.members.len() == 2;
        let member = mailbox
            .member_mut(side)
            .ok_or_else(|| err(ErrorCode::NotJoined, "this side has not joined the channel"))?;
        if matches!(target, Named::Mailbox(_)) && both_present && member.holds_nameplate() {
            member.released = true;
            if app.release_if_unheld(&id) {
                self.nameplates -= 1;
            }
            self.effect(appid, &id, EffectKind::Released);
        }
        Ok(id)
    }

    pub(super) fn check_capacity(&self, appid: &str) -> Result<(), WireError> {
        if self.mailboxes >= self.config.max_channels {
            return Err(super::config::server_channels_full());
        }
        if self.channels_in(appid) >= self.config.max_channels_per_app {
            return Err(super::config::app_channels_full());
        }
        Ok(())
    }

    /// A fresh mailbox id no mailbox of `appid` has.
    pub(super) fn fresh_mailbox_id(&mut self, appid: &str) -> MailboxId {
        loop {
            let mut bytes = [0u8; 8];
            self.rng.fill_bytes(&mut bytes);
            let id = MailboxId::new(base32(bytes)).expect("base32 is alphanumeric");
            if !self.apps.get(appid).is_some_and(|a| a.mailboxes.contains_key(&id)) {
                return id;
            }
        }
    }

    /// Creates a mailbox with one member, led to by `nameplate` if given.
    pub(super) fn create(&mut self, now: Timestamp, appid: &str, nameplate: Option<u32>, member: Member) -> MailboxId {
        let id = self.fresh_mailbox_id(appid);
        self.create_as(now, appid, id.clone(), nameplate, member);
        id
    }

    /// Creates mailbox `id` (free in `appid`) with one member, led to by
    /// `nameplate` if given.
    pub(super) fn create_as(
        &mut self,
        now: Timestamp,
        appid: &str,
        id: MailboxId,
        nameplate: Option<u32>,
        member: Member,
    ) {
        let instance = self.next_instance();
        let app = self.apps.entry(appid.to_string()).or_default();
        if member.allocated {
            app.allocated_by.insert(member.side.clone(), id.clone());
        }
        if let Some(number) = nameplate {
            app.nameplates.hold(number, id.clone());
            self.nameplates += 1;
        }
        let mailbox = Mailbox {
            nameplate,
            members: vec![member],
            messages: Vec::new(),
            burned: false,
            last_activity: now,
            instance,
        };
        app.mailboxes.insert(id.clone(), mailbox);
        self.mailboxes += 1;
        self.effect(appid, &id, EffectKind::Created);
        self.effect(appid, &id, EffectKind::Changed);
    }

    pub(super) fn allocate(
        &mut self,
        now: Timestamp,
        appid: &str,
        side: &str,
    ) -> Result<(ChannelId, MailboxId), WireError> {
        if let Some(app) = self.apps.get_mut(appid) {
            if let Some(id) = app.allocated_by.get(side).cloned() {
                let found = app.mailboxes.get_mut(&id);
                let number = found.as_ref().and_then(|m| m.nameplate);
                let live = number.is_some_and(|n| app.nameplates.get(&n) == Some(&id));
                match (found, number.and_then(ChannelId::new)) {
                    (Some(mailbox), Some(channel)) if live => {
                        mailbox.last_activity = now;
                        self.effect(appid, &id, EffectKind::Touched);
                        return Ok((channel, id));
                    }
                    // Its nameplate was released or it is gone: a later allocate gets a fresh one.
                    _ => {
                        app.allocated_by.remove(side);
                    }
                }
            }
        }
        self.check_capacity(appid)?;
        let no_app = App::default();
        let app = self.apps.get(appid).unwrap_or(&no_app);
        let drawn = match app.nameplates.random_free(&mut self.rng) {
            Draw::Free(number) => ChannelId::new(number),
            Draw::Full => None,
            Draw::Unchecked => {
                self.ran_past_checked = true;
                None
            }
        };
        let channel =
            drawn.ok_or_else(|| err(ErrorCode::TooManyChannels, "no channel id is free for this application"))?;
        let mailbox = self.create(now, appid, Some(channel.get()), Member::new(side, true, true));
        Ok((channel, mailbox))
    }

    /// A side claims a nameplate (HTTP join, mailbox claim): it enters the
    /// nameplate's mailbox, which is created (with the nameplate) if
    /// `create` and it does not exist. `strict` refuses a side that
    /// already released it (the mailbox protocol's `reclaimed`).
    pub(super) fn claim_nameplate(
        &mut self,
        now: Timestamp,
        appid: &str,
        channel: ChannelId,
        side: &str,
        create: bool,
        strict: bool,
    ) -> Result<MailboxId, WireError> {
        let existing = self.apps.get(appid).and_then(|a| a.by_nameplate(channel.get())).cloned();
        let Some(id) = existing else {
            if !create {
                return Err(unknown());
            }
            self.check_capacity(appid)?;
            return Ok(self.create(now, appid, Some(channel.get()), Member::new(side, false, true)));
        };
        let mailbox = self.mailbox_mut(appid, &id).expect("nameplates lead to mailboxes");
        if create && mailbox.is_abandoned() && mailbox.member(side).is_none() {
            // Nobody used the code and its side left: one that may create the
            // channel (a chosen code tried again) starts it afresh.
            self.delete(appid, &id);
            self.check_capacity(appid)?;
            return Ok(self.create(now, appid, Some(channel.get()), Member::new(side, false, true)));
        }
        mailbox.admits(side)?;
        match mailbox.member_mut(side) {
            Some(member) if member.closed.is_some() => {
                return Err(err(ErrorCode::SideClosed, "this side already closed the channel"));
            }
            Some(member) if strict && member.released => {
                return Err(err(ErrorCode::Reclaimed, "this side already released this nameplate"));
            }
            Some(member) => member.claimed = true,
            None => mailbox.members.push(Member::new(side, false, true)),
        }
        mailbox.last_activity = now;
        self.effect(appid, &id, EffectKind::Changed);
        Ok(id)
    }

    /// Appends a member's message (one per side and phase: a repeat with the
    /// same body answers the original's sequence number).
    pub(super) fn append(
        &mut self,
        now: Timestamp,
        appid: &str,
        id: &MailboxId,
        side: &str,
        message: Message,
    ) -> Result<u64, WireError> {
        let (max_bytes, max_messages) = (self.config.max_message_bytes, self.config.max_messages_per_channel);
        let mailbox = self.mailbox_mut(appid, id).ok_or_else(unknown)?;
        let member =
            mailbox.member(side).ok_or_else(|| err(ErrorCode::NotJoined, "this side has not joined the channel"))?;
        if member.closed.is_some() {
            return Err(err(ErrorCode::SideClosed, "this side already closed the channel"));
        }
        if mailbox.burned {
            return Err(err(ErrorCode::Burned, "the channel was closed after a wrong code"));
        }
        if message.body.len() > max_bytes {
            return Err(err(ErrorCode::MessageTooLarge, "the message body is larger than this server allows"));
        }
        mailbox.last_activity = now;
        if let Some(existing) = mailbox.messages.iter().find(|m| m.side == side && m.phase == message.phase) {
            let answer = if existing.body == message.body {
                Ok(existing.seq)
            } else {
                Err(err(ErrorCode::Conflict, "this side already posted a different message in this phase"))
            };
            self.effect(appid, id, EffectKind::Touched);
            return answer;
        }
        if mailbox.messages.len() >= max_messages {
            return Err(err(ErrorCode::TooManyMessages, "the channel holds as many messages as allowed"));
        }
        let seq = mailbox.messages.len() as u64 + 1;
        mailbox.messages.push(Message { seq, ..message });
        self.messages += 1;
        self.effect(appid, id, EffectKind::Appended(seq));
        Ok(seq)
    }

    /// A member leaves with `mood`. `scary` burns the mailbox; the last
    /// close deletes it, unless it is kept, emptied, for the retention as a
    /// tombstone (burned, spent or abandoned: see `Mailbox::is_tombstone`).
    /// Returns whether it was deleted.
    pub(super) fn close_member(
        &mut self,
        now: Timestamp,
        appid: &str,
        id: &MailboxId,
        side: &str,
        mood: Mood,
    ) -> Result<bool, WireError> {
        let app = self.apps.get_mut(appid).ok_or_else(unknown)?;
        let mailbox = app.mailboxes.get_mut(id).ok_or_else(unknown)?;
        let was_tombstone = mailbox.is_tombstone();
        let was_finished = mailbox.all_closed();
        let member = mailbox
            .member_mut(side)
            .ok_or_else(|| err(ErrorCode::NotJoined, "this side has not joined the channel"))?;
        member.closed.get_or_insert(mood);
        let allocated = member.allocated;
        mailbox.last_activity = now;
        let mut nameplate_back = false;
        if mood == Mood::Scary && !mailbox.burned {
            mailbox.burned = true;
            // The nameplate leads here again if it was released and is still
            // free, so the person with the right code learns it was burned.
            if let Some(number) = mailbox.nameplate {
                if !app.nameplates.is_used(number) {
                    app.nameplates.hold(number, id.clone());
                    nameplate_back = true;
                }
            }
        }
        if !was_finished && mailbox.all_closed() {
            let moods = mailbox.members.iter().filter_map(|m| m.closed).collect();
            self.finished.push(Finished { appid: appid.to_string(), moods, messages: mailbox.messages.len() });
        }
        let tombstone = mailbox.is_tombstone();
        let deleted = mailbox.all_closed() && !tombstone;
        let dropped = if tombstone { std::mem::take(&mut mailbox.messages).len() } else { 0 };
        let made_tombstone = tombstone && !was_tombstone;
        app.tombstones += usize::from(made_tombstone);
        if allocated && app.allocated_by.get(side) == Some(id) {
            // A later allocate by this side gets a fresh nameplate.
            app.allocated_by.remove(side);
        }
        self.messages -= dropped;
        self.tombstones += usize::from(made_tombstone);
        if nameplate_back {
            self.nameplates += 1;
        }
        if deleted {
            self.delete(appid, id);
        } else {
            self.effect(appid, id, EffectKind::Changed);
            if tombstone {
                self.effect(appid, id, EffectKind::LogDropped);
            }
        }
        Ok(deleted)
    }

    pub(super) fn delete(&mut self, appid: &str, id: &MailboxId) {
        let Some(app) = self.apps.get_mut(appid) else { return };
        if let Some(mailbox) = app.mailboxes.remove(id) {
            self.mailboxes -= 1;
            if mailbox.is_tombstone() {
                self.tombstones -= 1;
                app.tombstones -= 1;
            }
            self.messages -= mailbox.messages.len();
            if let Some(number) = mailbox.nameplate {
                if app.nameplates.get(&number) == Some(id) {
                    app.nameplates.free(number);
                    self.nameplates -= 1;
                }
            }
            for member in mailbox.members.iter().filter(|m| m.allocated) {
                if app.allocated_by.get(&member.side) == Some(id) {
                    app.allocated_by.remove(&member.side);
                }
            }
            self.effects.push(Effect { appid: appid.to_string(), mailbox: id.clone(), kind: EffectKind::Deleted });
        }
        if app.mailboxes.is_empty() && app.nameplates.none_reserved() {
            self.apps.remove(appid);
        }
    }
}
