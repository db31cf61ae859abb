//! What an operation changed, for the caller to persist and to wake
//! whoever waits.

use crate::wire::{MailboxId, Mood};

use super::Rendezvous;

/// How an operation changed a mailbox, for the caller to persist it and
/// wake whoever waits on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EffectKind {
    /// It was made by this operation (a `Changed` follows): a server
    /// charges it to the client that made it.
    Created,
    /// Its members, nameplate, burning or closes changed (or it is new):
    /// persist the whole mailbox.
    Changed,
    /// A side let go of the nameplate by naming the mailbox (and the
    /// nameplate may be free now): persist the mailbox, though a crash may
    /// lose this, since the side's next request naming the mailbox does it
    /// again.
    Released,
    /// One message was appended (by its sequence number).
    Appended(u64),
    /// Only its activity time moved (a read).
    Touched,
    /// Its log was dropped: every side closed, and it is kept, emptied, only
    /// for the retention (burned, two sides used its code, or its only side
    /// left it).
    LogDropped,
    /// It is gone, with its nameplate.
    Deleted,
}

impl EffectKind {
    /// Whether this is **news** for whoever waits on the mailbox (a
    /// long-poll, a WebSocket that opened it): it can change what a read of
    /// the mailbox returns (a message, a member or a close, its log
    /// dropped) or whether it exists. The one rule every server and the
    /// simulation wake waiters by.
    ///
    /// ```
    /// use wormhole_sync_core::rendezvous::EffectKind;
    ///
    /// assert!(EffectKind::Appended(1).is_news());
    /// assert!(!EffectKind::Touched.is_news(), "a read moves only the activity time");
    /// ```
    pub fn is_news(self) -> bool {
        match self {
            EffectKind::Created
            | EffectKind::Changed
            | EffectKind::Appended(_)
            | EffectKind::LogDropped
            | EffectKind::Deleted => true,
            EffectKind::Released | EffectKind::Touched => false,
        }
    }
}

/// One effect of the last operation on one mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effect {
    /// The mailbox's application id.
    pub appid: String,
    /// The mailbox.
    pub mailbox: MailboxId,
    /// What happened to it.
    pub kind: EffectKind,
}

/// An exchange whose last side just closed its mailbox, for the server's
/// log (one line per finished exchange): nothing secret, no side ids.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finished {
    /// The mailbox's application id.
    pub appid: String,
    /// Each side's mood, in the order the sides came.
    pub moods: Vec<Mood>,
    /// Messages the mailbox held when its last side closed.
    pub messages: usize,
}

impl Rendezvous {
    /// What the last operation (a request, a mailbox operation or an
    /// expiry) changed, mailbox by mailbox, in order.
    pub fn effects(&self) -> &[Effect] {
        &self.effects
    }

    /// Forgets the last operation's effects, for a caller about to run
    /// steps of its own that may refuse before any operation runs: then
    /// [`effects`](Self::effects) tells only what happened since.
    ///
    /// ```
    /// use wormhole_sync_core::rendezvous::{Rendezvous, RendezvousConfig};
    /// use wormhole_sync_core::Timestamp;
    ///
    /// let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    /// server.allocate_nameplate(Timestamp::EPOCH, "app", "s1")?;
    /// assert!(!server.effects().is_empty());
    /// server.clear_effects();
    /// assert!(server.effects().is_empty());
    /// # Ok::<(), wormhole_sync_core::wire::WireError>(())
    /// ```
    pub fn clear_effects(&mut self) {
        self.effects.clear();
        self.finished.clear();
    }

    /// The exchanges the last operation finished: its last side closed the
    /// mailbox (a `close`, or a mailbox-protocol `close`).
    pub fn finished(&self) -> &[Finished] {
        &self.finished
    }

    pub(super) fn effect(&mut self, appid: &str, mailbox: &MailboxId, kind: EffectKind) {
        self.effects.push(Effect { appid: appid.to_string(), mailbox: mailbox.clone(), kind });
    }
}
