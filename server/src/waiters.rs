//! Waiters on mailboxes: a long-poll (a fetch, or a post that waits) with
//! no news for its side, or a WebSocket that opened the mailbox, waits on
//! the mailbox's notifier until a message or a close touches it, its wait
//! ends, the client goes away (the future is dropped), or the server stops.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use tokio::sync::Notify;
use wormhole_sync_core::wire::MailboxId;

type Key = (String, MailboxId);

/// Notifiers per mailbox that has waiters, and a count for metrics.
#[derive(Default)]
pub(crate) struct Waiters {
    mailboxes: Mutex<HashMap<Key, Arc<Notify>>>,
    waiting: AtomicI64,
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
        let notify = self.mailboxes.lock().entry(key.clone()).or_default().clone();
        Waiter { waiters: self, key, notify: Some(notify), counted: false }
    }

    /// Wakes every waiter of a mailbox.
    pub(crate) fn wake(&self, appid: &str, mailbox: &MailboxId) {
        let key = (appid.to_string(), mailbox.clone());
        if let Some(notify) = self.mailboxes.lock().get(&key) {
            notify.notify_waiters();
        }
    }

    /// Wakes every waiter (shutdown).
    pub(crate) fn wake_all(&self) {
        for notify in self.mailboxes.lock().values() {
            notify.notify_waiters();
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
        if mailboxes.get(&self.key).is_some_and(|notify| Arc::strong_count(notify) == 1) {
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
