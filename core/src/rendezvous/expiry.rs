//! Idle mailboxes expire: all at once, or in steps.

use crate::time::Timestamp;
use crate::wire::MailboxId;

use super::operations::Named;
use super::state::Mailbox;
use super::Rendezvous;

/// Where a sweep in steps ([`Rendezvous::expire_step`]) continues.
#[derive(Clone, Debug, Default)]
pub struct SweepCursor(Option<(String, MailboxId)>);

impl Rendezvous {
    /// When `mailbox` is deleted if nothing touches it first.
    pub(super) fn expires_at(&self, mailbox: &Mailbox) -> Timestamp {
        let keep = if mailbox.is_tombstone() { self.config.burned_retention } else { self.config.channel_expiry };
        mailbox.last_activity + keep
    }

    pub(super) fn is_idle(&self, mailbox: &Mailbox, now: Timestamp) -> bool {
        self.expires_at(mailbox) <= now
    }

    pub(super) fn expire_if_idle(&mut self, appid: &str, target: Named<'_>, now: Timestamp) {
        let Some(app) = self.apps.get(appid) else { return };
        let id = match target {
            Named::Nameplate(channel) => app.by_nameplate(channel.get()),
            Named::Mailbox(id) => Some(id),
        };
        let Some(id) = id.cloned() else { return };
        if app.mailboxes.get(&id).is_some_and(|m| self.is_idle(m, now)) {
            self.delete(appid, &id);
        }
    }

    /// Deletes every mailbox idle for the expiry time; returns which.
    pub fn expire(&mut self, now: Timestamp) -> Vec<(String, MailboxId)> {
        self.clear_effects();
        let idle: Vec<(String, MailboxId)> = self
            .apps
            .iter()
            .flat_map(|(appid, app)| {
                app.mailboxes
                    .iter()
                    .filter(|(_, m)| self.is_idle(m, now))
                    .map(move |(id, _)| (appid.clone(), id.clone()))
            })
            .collect();
        for (appid, id) in &idle {
            self.delete(appid, id);
        }
        self.shrink_indexes();
        idle
    }

    /// Gives back the memory of indexes that shrank after a burst (a hash
    /// map keeps the capacity of its peak).
    pub fn shrink_indexes(&mut self) {
        for app in self.apps.values_mut() {
            let index = &mut app.allocated_by;
            if index.capacity() > 64 && index.len() < index.capacity() / 4 {
                index.shrink_to_fit();
            }
        }
    }

    /// Expires idle mailboxes among the next `limit` mailboxes (in appid,
    /// then id order) from `cursor`, and moves the cursor past them: a sweep
    /// in steps, so a server need not hold its state across a scan of every
    /// mailbox. Returns the deleted mailboxes and whether the scan reached
    /// the end (the cursor then starts over).
    ///
    /// ```
    /// use wormhole_sync_core::rendezvous::{Rendezvous, RendezvousConfig, SweepCursor};
    /// use wormhole_sync_core::Timestamp;
    ///
    /// let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    /// let mut cursor = SweepCursor::default();
    /// let (expired, done) = server.expire_step(Timestamp::EPOCH, &mut cursor, 1_000);
    /// assert!(expired.is_empty() && done);
    /// ```
    pub fn expire_step(
        &mut self,
        now: Timestamp,
        cursor: &mut SweepCursor,
        limit: usize,
    ) -> (Vec<(String, MailboxId)>, bool) {
        self.clear_effects();
        let start = cursor.0.take();
        let mut seen = 0;
        let mut idle = Vec::new();
        let mut next = None;
        let from_app = start.as_ref().map_or(String::new(), |(a, _)| a.clone());
        'apps: for (appid, app) in self.apps.range(from_app.clone()..) {
            let from = match &start {
                Some((a, id)) if *a == *appid => std::ops::Bound::Included(id.clone()),
                _ => std::ops::Bound::Unbounded,
            };
            for (id, mailbox) in app.mailboxes.range((from, std::ops::Bound::Unbounded)) {
                if seen == limit {
                    next = Some((appid.clone(), id.clone()));
                    break 'apps;
                }
                seen += 1;
                if self.is_idle(mailbox, now) {
                    idle.push((appid.clone(), id.clone()));
                }
            }
        }
        for (appid, id) in &idle {
            self.delete(appid, id);
        }
        let done = next.is_none();
        cursor.0 = next;
        (idle, done)
    }

    /// When the next mailbox will have been idle for the expiry time.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.apps.values().flat_map(|a| a.mailboxes.values()).map(|m| self.expires_at(m)).min()
    }
}
