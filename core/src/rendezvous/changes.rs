//! What an operation changed, for the caller to persist and to wake
//! whoever waits: as effects (which mailbox, how), and drained as values
//! that carry their data ([`MailboxChange`], [`Rendezvous::take_changes`]).

use crate::time::Timestamp;
use crate::wire::{MailboxId, Message, Mood};

use super::snapshot::snapshot_of;
use super::{MailboxSnapshot, Rendezvous};

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

/// What to persist of a mailbox after an operation changed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Persist {
    /// It is gone (deleted, and not made again).
    Gone,
    /// Its row changed (members, nameplate, burning, closes, its log
    /// dropped), or it is new: all of it.
    Whole(MailboxSnapshot),
    /// A side let go of the nameplate by naming the mailbox: all of it,
    /// though a crash may lose this (the side's next request naming the
    /// mailbox does it again).
    Released(MailboxSnapshot),
    /// Only messages were appended ([`MailboxChange::appended`]) or its
    /// activity time moved.
    Activity {
        /// Its activity time now.
        last_activity: Timestamp,
    },
}

/// How one operation changed one mailbox, with the data an engine needs to
/// persist it, charge or free its budgets, and wake whoever waits on it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MailboxChange {
    /// The mailbox's application id.
    pub appid: String,
    /// The mailbox.
    pub mailbox: MailboxId,
    /// What to persist of it now.
    pub persist: Persist,
    /// The messages this operation appended, in order.
    pub appended: Vec<Message>,
    /// It was made by this operation: a server charges it to the client that made it.
    pub created: bool,
    /// It was deleted by this operation (it exists again if
    /// [`persist`](Self::persist) is not `Gone`: made anew under its id).
    pub deleted: bool,
    /// Its log was dropped: every side closed, and it is kept, emptied,
    /// only for the retention. With `deleted`, its stored bytes and its
    /// place under its maker's cap are free.
    pub log_dropped: bool,
    /// It is news for whoever waits on it (see [`EffectKind::is_news`]).
    pub news: bool,
}

impl MailboxChange {
    /// Whether a crash may lose this change without harm, so an engine
    /// need not wait for it to be durable: an activity time (a mailbox then
    /// expires a little early at worst) or a release naming the mailbox
    /// (done again by the side's next request). The one rule every engine
    /// follows.
    pub fn is_soft(&self) -> bool {
        matches!(self.persist, Persist::Activity { .. } | Persist::Released(_))
            && self.appended.is_empty()
            && !self.deleted
    }

    /// Its stored bytes and its place under its maker's cap are free:
    /// deleted, or finished and kept only for the retention.
    pub fn frees_budgets(&self) -> bool {
        self.deleted || self.log_dropped
    }
}

/// What the last operation changed, drained by [`Rendezvous::take_changes`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Changes {
    /// Each mailbox it changed, in the order it first changed it.
    pub mailboxes: Vec<MailboxChange>,
    /// The exchanges it finished (its last side closed the mailbox).
    pub finished: Vec<Finished>,
}

impl Changes {
    /// Whether any mailbox it changed has news for its waiters.
    pub fn has_news(&self) -> bool {
        self.mailboxes.iter().any(|change| change.news)
    }
}

impl Rendezvous {
    /// Drains what the last operation (a request, a mailbox operation, an
    /// [`apply`](Self::apply) or an expiry) changed, mailbox by mailbox,
    /// with the data to persist: afterwards [`effects`](Self::effects) and
    /// [`finished`](Self::finished) are empty, so a caller whose own step
    /// refused before any operation ran drains nothing stale.
    ///
    /// ```
    /// use wormhole_sync_core::rendezvous::{Op, Persist, Rendezvous, RendezvousConfig};
    /// use wormhole_sync_core::Timestamp;
    ///
    /// let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    /// server.apply(Timestamp::EPOCH, &Op::Allocate { appid: "app".into(), side: "s1".into() })?;
    /// let changes = server.take_changes();
    /// let made = &changes.mailboxes[0];
    /// assert!(made.created && made.news && !made.is_soft());
    /// assert!(matches!(made.persist, Persist::Whole(_)));
    /// assert!(server.take_changes().mailboxes.is_empty(), "drained");
    /// # Ok::<(), wormhole_sync_core::wire::WireError>(())
    /// ```
    pub fn take_changes(&mut self) -> Changes {
        let effects = std::mem::take(&mut self.effects);
        let finished = std::mem::take(&mut self.finished);
        let mut mailboxes: Vec<MailboxChange> = Vec::new();
        for effect in &effects {
            if mailboxes.iter().any(|c| c.appid == effect.appid && c.mailbox == effect.mailbox) {
                continue;
            }
            let kinds: Vec<EffectKind> = effects
                .iter()
                .filter(|e| e.appid == effect.appid && e.mailbox == effect.mailbox)
                .map(|e| e.kind)
                .collect();
            mailboxes.push(self.change_of(&effect.appid, &effect.mailbox, &kinds));
        }
        Changes { mailboxes, finished }
    }

    fn change_of(&self, appid: &str, mailbox: &MailboxId, kinds: &[EffectKind]) -> MailboxChange {
        let has = |kind: EffectKind| kinds.contains(&kind);
        let appended: Vec<Message> = kinds
            .iter()
            .filter_map(|kind| match kind {
                EffectKind::Appended(seq) => self.message(appid, mailbox, *seq).cloned(),
                _ => None,
            })
            .collect();
        let whole = has(EffectKind::Created) || has(EffectKind::Changed) || has(EffectKind::Deleted);
        let found = self.apps.get(appid).and_then(|app| Some((app, app.mailboxes.get(mailbox)?)));
        // Only what the change needs is copied: a read moves only a time.
        let persist = match found {
            None => Persist::Gone,
            Some((app, state)) if whole || has(EffectKind::LogDropped) => {
                Persist::Whole(snapshot_of(appid, app, mailbox, state))
            }
            Some((app, state)) if has(EffectKind::Released) => {
                Persist::Released(snapshot_of(appid, app, mailbox, state))
            }
            Some((_, state)) => Persist::Activity { last_activity: state.last_activity },
        };
        MailboxChange {
            appid: appid.to_string(),
            mailbox: mailbox.clone(),
            persist,
            appended,
            created: has(EffectKind::Created),
            deleted: has(EffectKind::Deleted),
            log_dropped: has(EffectKind::LogDropped),
            news: kinds.iter().any(|kind| kind.is_news()),
        }
    }

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
