//! Waiters on mailboxes: a long-poll (a fetch, or a post that waits) with
//! no news for its side, or a WebSocket that opened the mailbox, waits on
//! the mailbox's notifier until a message or a close touches it, its wait
//! ends, the client goes away (the future is dropped), or the server stops.
//! With a wake-up from a shared database comes the state its commit left
//! the mailbox in, kept for the waiters to read ([`Waiter::committed`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use tokio::sync::Notify;
use wormhole_sync_core::wire::MailboxId;

use crate::change::Committed;

type Key = (String, MailboxId);

/// Notifiers per mailbox that has waiters, and a count for metrics.
#[derive(Default)]
pub(crate) struct Waiters {
    mailboxes: Mutex<HashMap<Key, Waited>>,
    waiting: AtomicI64,
}

/// A mailbox that has waiters.
#[derive(Default)]
struct Waited {
    notify: Arc<Notify>,
    /// The latest state a wake-up brought (the one with the most messages).
    committed: Option<Arc<Committed>>,
    /// Wake-ups that brought news without a state: the state kept may lack
    /// their messages.
    bare_wakes: u64,
}

/// One waiting fetch; dropping it deregisters it.
pub(crate) struct Waiter<'a> {
    waiters: &'a Waiters,
    key: Key,
    /// Taken only by `drop`, under the map's lock.
    notify: Option<Arc<Notify>>,
    /// A long-poll, counted for metrics (a WebSocket's subscription is not).
    counted: bool,
}

impl Waiters {
    /// Registers a waiter on a mailbox. Register *before* looking at the
    /// state, then await [`Waiter::notified`]: a post that lands in between
    /// still wakes it.
    pub(crate) fn register(&self, appid: &str, mailbox: &MailboxId) -> Waiter<'_> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let mut waiter = self.subscribe(appid, mailbox);
        waiter.counted = true;
        waiter
    }

    /// Registers a WebSocket's lasting subscription to a mailbox (as
    /// [`register`](Self::register), not counted as a waiting long-poll).
    pub(crate) fn subscribe(&self, appid: &str, mailbox: &MailboxId) -> Waiter<'_> {
        let key = (appid.to_string(), mailbox.clone());
        let notify = self.mailboxes.lock().entry(key.clone()).or_default().notify.clone();
        Waiter { waiters: self, key, notify: Some(notify), counted: false }
    }

    /// Wakes every waiter of a mailbox, keeping the state `committed` for
    /// them unless one with more messages was kept already (notifications
    /// of two commits may arrive in either order).
    pub(crate) fn wake(&self, appid: &str, mailbox: &MailboxId, committed: Option<&Arc<Committed>>) {
        let key = (appid.to_string(), mailbox.clone());
        if let Some(waited) = self.mailboxes.lock().get_mut(&key) {
            if committed.is_none() {
                waited.bare_wakes += 1;
            }
            if let Some(committed) = committed {
                let messages = |c: &Committed| (c.instance, c.snapshot.messages.len());
                let kept = waited.committed.as_deref().map(messages);
                if kept.is_none_or(|(instance, count)| instance != committed.instance || count <= messages(committed).1)
                {
                    waited.committed = Some(committed.clone());
                }
            }
            waited.notify.notify_waiters();
        }
    }

    /// Wakes every waiter (shutdown).
    pub(crate) fn wake_all(&self) {
        for waited in self.mailboxes.lock().values() {
            waited.notify.notify_waiters();
        }
    }

    /// Gives back the map's memory after a burst of waiters has gone: a
    /// hash map keeps the capacity of its peak.
    pub(crate) fn shrink(&self) {
        let mut mailboxes = self.mailboxes.lock();
        if mailboxes.capacity() > 64 && mailboxes.len() < mailboxes.capacity() / 4 {
            mailboxes.shrink_to_fit();
        }
    }

    /// Long-polls waiting now.
    pub(crate) fn waiting(&self) -> i64 {
        self.waiting.load(Ordering::Relaxed)
    }
}

impl Waiter<'_> {
    fn notify(&self) -> &Arc<Notify> {
        self.notify.as_ref().expect("taken only when dropped")
    }

    /// The latest state a wake-up of this mailbox brought, if any did since
    /// its first waiter registered.
    pub(crate) fn committed(&self) -> Option<Arc<Committed>> {
        self.waiters.mailboxes.lock().get(&self.key)?.committed.clone()
    }

    /// The state kept (as [`committed`](Self::committed)), and how many
    /// wake-ups so far brought news without one. A reader that read every
    /// message once, when that count was what it is now, finds every
    /// message announced since in the state kept: each wake-up since
    /// brought a state, and the one kept has the most messages.
    pub(crate) fn announced(&self) -> (Option<Arc<Committed>>, u64) {
        let mailboxes = self.waiters.mailboxes.lock();
        mailboxes.get(&self.key).map_or((None, 0), |waited| (waited.committed.clone(), waited.bare_wakes))
    }

    /// A future that completes at the mailbox's next wake-up. Created (and
    /// enabled) at once so no wake-up after this call is missed.
    pub(crate) fn notified(&self) -> std::pin::Pin<Box<tokio::sync::futures::Notified<'_>>> {
        let mut notified = Box::pin(self.notify().notified());
        notified.as_mut().enable();
        notified
    }
}

impl Waiter<'_> {
    /// As [`notified`](Self::notified), owning its notifier, for a waiter
    /// that waits again and again (a WebSocket's subscription).
    /// Drop the future before the waiter: it holds the notifier too.
    pub(crate) fn owned_notified(&self) -> std::pin::Pin<Box<tokio::sync::futures::OwnedNotified>> {
        let mut notified = Box::pin(self.notify().clone().notified_owned());
        notified.as_mut().enable();
        notified
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.waiters.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        let mut mailboxes = self.waiters.mailboxes.lock();
        // This waiter's reference goes under the lock, so of two waiters
        // dropped at once on two threads the second sees only the map's.
        drop(self.notify.take());
        if mailboxes.get(&self.key).is_some_and(|waited| Arc::strong_count(&waited.notify) == 1) {
            mailboxes.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_is_forgotten_once_dropped_and_not_counted_as_a_long_poll() {
        let waiters = Waiters::default();
        let mailbox = MailboxId::new("abc").unwrap();
        let subscription = waiters.subscribe("app", &mailbox);
        let woken = subscription.owned_notified();
        let long_poll = waiters.register("app", &mailbox);
        assert_eq!(waiters.waiting(), 1);
        drop(long_poll);
        drop(woken);
        drop(subscription);
        assert_eq!(waiters.waiting(), 0);
        assert!(waiters.mailboxes.lock().is_empty(), "the mailbox's notifier was forgotten");
    }

    /// A state with the given messages (`body` per message), as a commit of
    /// `instance` announced it.
    fn committed(instance: u64, bodies: &[&str]) -> Arc<Committed> {
        Arc::new(Committed::with_messages("app", instance, bodies))
    }

    #[test]
    fn a_wake_up_keeps_the_state_with_the_most_messages_until_the_last_waiter_goes() {
        let waiters = Waiters::default();
        let mailbox = MailboxId::new("abc").unwrap();
        waiters.wake("app", &mailbox, Some(&committed(1, &["a"])));
        let waiter = waiters.register("app", &mailbox);
        assert!(waiter.committed().is_none(), "a wake-up with no waiter keeps nothing");
        let bodies = |waiter: &Waiter<'_>| waiter.committed().map(|c| c.snapshot.messages.len());
        waiters.wake("app", &mailbox, Some(&committed(1, &["a", "b"])));
        assert_eq!(bodies(&waiter), Some(2));
        waiters.wake("app", &mailbox, Some(&committed(1, &["a"])));
        assert_eq!(bodies(&waiter), Some(2), "an older state that arrived late");
        let (_, bare) = waiter.announced();
        waiters.wake("app", &mailbox, None);
        assert_eq!(bodies(&waiter), Some(2), "news without a state keeps the one kept");
        assert_eq!(waiter.announced().1, bare + 1, "news without a state is counted");
        waiters.wake("app", &mailbox, Some(&committed(1, &["a", "b", "c"])));
        assert_eq!(waiter.announced().1, bare + 1, "news with a state is not");
        waiters.wake("app", &mailbox, Some(&committed(2, &["x"])));
        assert_eq!(waiter.committed().map(|c| c.instance), Some(2), "a mailbox made anew under the id");
        drop(waiter);
        assert!(waiters.register("app", &mailbox).committed().is_none(), "forgotten with its last waiter");
    }

    /// Waiters of one mailbox dropped at the same moment on several threads:
    /// the last one out forgets the notifier, whichever it is.
    #[test]
    fn waiters_dropped_at_once_on_several_threads_leave_nothing_behind() {
        let waiters = Waiters::default();
        let mailbox = MailboxId::new("abc").unwrap();
        for round in 0..5_000 {
            let all: Vec<_> = (0..8).map(|_| waiters.register("app", &mailbox)).collect();
            let start = std::sync::Barrier::new(all.len());
            std::thread::scope(|scope| {
                for waiter in all {
                    let start = &start;
                    scope.spawn(move || {
                        start.wait();
                        drop(waiter);
                    });
                }
            });
            assert!(waiters.mailboxes.lock().is_empty(), "round {round}: a notifier was left in the map");
        }
        assert_eq!(waiters.waiting(), 0);
    }
}
