//! Questions a server asks about the state (no changes).

use crate::code::ChannelId;
use crate::wire::{MailboxId, Message, Request};

use super::Rendezvous;

impl Rendezvous {
    /// Whether a nameplate is in use (it leads to a mailbox).
    pub fn contains(&self, appid: &str, channel: ChannelId) -> bool {
        self.apps.get(appid).is_some_and(|a| a.nameplates.contains_key(&channel.get()))
    }

    /// The mailbox a nameplate leads to, while it is in use.
    pub fn mailbox_of(&self, appid: &str, channel: ChannelId) -> Option<&MailboxId> {
        self.apps.get(appid)?.by_nameplate(channel.get())
    }

    /// Whether this HTTP request would make a new channel: an allocate
    /// (unless it repeats one whose channel still holds its id), or a join
    /// with `create` of an id not in use. For caps on channels, checked
    /// before the request runs.
    ///
    /// ```
    /// use wormhole_sync_core::rendezvous::{Rendezvous, RendezvousConfig};
    /// use wormhole_sync_core::wire::{AllocateRequest, Request};
    /// use wormhole_sync_core::Timestamp;
    ///
    /// let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    /// let allocate = Request::Allocate(AllocateRequest::new("app", "s1"));
    /// assert!(server.creates_channel(&allocate));
    /// server.handle(Timestamp::EPOCH, &allocate)?;
    /// assert!(!server.creates_channel(&allocate), "a repeat answers the same channel");
    /// # Ok::<(), wormhole_sync_core::wire::WireError>(())
    /// ```
    pub fn creates_channel(&self, request: &Request) -> bool {
        let app = self.apps.get(request.appid());
        match request {
            Request::Allocate(r) => !app.is_some_and(|app| {
                app.allocated_by.get(&r.side).is_some_and(|id| {
                    let number = app.mailboxes.get(id).and_then(|m| m.nameplate);
                    number.is_some_and(|n| app.nameplates.get(&n) == Some(id))
                })
            }),
            Request::Join(r) => r.create && !self.contains(request.appid(), r.channel),
            _ => false,
        }
    }

    /// Whether a mailbox exists.
    pub fn contains_mailbox(&self, appid: &str, mailbox: &MailboxId) -> bool {
        self.apps.get(appid).is_some_and(|a| a.mailboxes.contains_key(mailbox))
    }

    /// Which mailbox under this id exists now, if one does: a mailbox
    /// deleted and made again under the same id (`open` makes unknown ones)
    /// has a different instance number, so a listener of the first one can
    /// tell its messages from the second's. Numbers are not saved in
    /// snapshots; they stay distinct within one process.
    ///
    /// ```
    /// use wormhole_sync_core::rendezvous::{Rendezvous, RendezvousConfig};
    /// use wormhole_sync_core::wire::{MailboxId, Mood};
    /// use wormhole_sync_core::Timestamp;
    ///
    /// let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    /// let mailbox = MailboxId::new("abc").unwrap();
    /// server.open(Timestamp::EPOCH, "app", &mailbox, "s1")?;
    /// let first = server.mailbox_instance("app", &mailbox);
    /// server.close(Timestamp::EPOCH, "app", &mailbox, "s1", Mood::Happy)?;
    /// assert_eq!(server.mailbox_instance("app", &mailbox), None);
    /// server.open(Timestamp::EPOCH, "app", &mailbox, "s1")?;
    /// assert!(server.mailbox_instance("app", &mailbox).is_some());
    /// assert_ne!(server.mailbox_instance("app", &mailbox), first);
    /// # Ok::<(), wormhole_sync_core::wire::WireError>(())
    /// ```
    pub fn mailbox_instance(&self, appid: &str, mailbox: &MailboxId) -> Option<u64> {
        Some(self.apps.get(appid)?.mailboxes.get(mailbox)?.instance)
    }

    /// Whether any mailbox of `appid` exists.
    pub fn has_app(&self, appid: &str) -> bool {
        self.apps.get(appid).is_some_and(|app| !app.mailboxes.is_empty())
    }

    /// The channels of `appid` its cap counts: its mailboxes but the
    /// tombstones (see [`RendezvousConfig::max_channels_per_app`](super::RendezvousConfig::max_channels_per_app)).
    ///
    /// ```
    /// use wormhole_sync_core::rendezvous::{Rendezvous, RendezvousConfig};
    /// use wormhole_sync_core::wire::{AllocateRequest, Request};
    /// use wormhole_sync_core::Timestamp;
    ///
    /// let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    /// server.handle(Timestamp::from_millis(0), &Request::Allocate(AllocateRequest::new("app", "side"))).unwrap();
    /// assert_eq!(server.channels_in("app"), 1);
    /// ```
    pub fn channels_in(&self, appid: &str) -> usize {
        self.apps.get(appid).map_or(0, |app| app.mailboxes.len() - app.tombstones)
    }

    /// The mailbox a request reaches (by the mailbox it names, else by its
    /// nameplate), if it exists now.
    pub fn mailbox_for(&self, request: &Request) -> Option<MailboxId> {
        let app = self.apps.get(request.appid())?;
        match (request.mailbox(), request.channel()) {
            (Some(id), _) => app.mailboxes.contains_key(id).then(|| id.clone()),
            (None, Some(channel)) => app.by_nameplate(channel.get()).cloned(),
            (None, None) => None,
        }
    }

    /// Whether `side` already posted in `phase` of this mailbox (a repeated
    /// post stores nothing new).
    pub fn has_posted(&self, appid: &str, mailbox: &MailboxId, side: &str, phase: &str) -> bool {
        let found = self.apps.get(appid).and_then(|a| a.mailboxes.get(mailbox));
        found.is_some_and(|m| m.messages.iter().any(|m| m.side == side && m.phase == phase))
    }

    /// A mailbox's messages after `after` (empty if it does not exist).
    pub fn messages_after(&self, appid: &str, mailbox: &MailboxId, after: u64) -> &[Message] {
        let found = self.apps.get(appid).and_then(|a| a.mailboxes.get(mailbox));
        let messages = found.map_or(&[][..], |m| &m.messages[..]);
        &messages[usize::try_from(after).unwrap_or(usize::MAX).min(messages.len())..]
    }

    /// The messages a mailbox-protocol session listens to: those after
    /// [`Listening::after`](super::Listening::after), if the mailbox under
    /// its id is still the one it opened (none otherwise).
    pub fn messages_for(&self, listening: super::Listening<'_>) -> &[Message] {
        let (appid, mailbox) = (listening.appid, listening.mailbox);
        if self.mailbox_instance(appid, mailbox) != Some(listening.instance) {
            return &[];
        }
        self.messages_after(appid, mailbox, listening.after)
    }

    /// One message, by its sequence number.
    pub fn message(&self, appid: &str, mailbox: &MailboxId, seq: u64) -> Option<&Message> {
        let found = self.apps.get(appid)?.mailboxes.get(mailbox)?;
        found.messages.get(usize::try_from(seq).ok()?.checked_sub(1)?)
    }

    /// Nameplates in use for `appid`, in order.
    pub fn nameplates(&self, appid: &str) -> Vec<ChannelId> {
        let Some(app) = self.apps.get(appid) else { return Vec::new() };
        app.nameplates.keys().filter_map(|&n| ChannelId::new(n)).collect()
    }
}
