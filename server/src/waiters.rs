//! Long-poll waiters: a fetch, or a post that waits, with no news for its
//! side waits on its channel's notifier until a post or close touches the
//! channel, its wait ends, the client goes away (the handler future is
//! dropped), or the server stops.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use tokio::sync::Notify;
use wormhole_sync_core::ChannelId;

type Key = (String, ChannelId);

/// Notifiers per channel that has waiters, and a count for metrics.
#[derive(Default)]
pub(crate) struct Waiters {
    channels: Mutex<HashMap<Key, Arc<Notify>>>,
    waiting: AtomicI64,
}

/// One waiting fetch; dropping it deregisters it.
pub(crate) struct Waiter<'a> {
    waiters: &'a Waiters,
    key: Key,
    notify: Arc<Notify>,
}

impl Waiters {
    /// Registers a waiter on a channel. Register *before* releasing the state
    /// lock, then await [`Waiter::notified`]: a post that lands in between
    /// still wakes it.
    pub(crate) fn register(&self, appid: &str, channel: ChannelId) -> Waiter<'_> {
        let key = (appid.to_string(), channel);
        let notify = self.channels.lock().entry(key.clone()).or_default().clone();
        self.waiting.fetch_add(1, Ordering::Relaxed);
        Waiter { waiters: self, key, notify }
    }

    /// Wakes every waiter of a channel.
    pub(crate) fn wake(&self, appid: &str, channel: ChannelId) {
        let key = (appid.to_string(), channel);
        if let Some(notify) = self.channels.lock().get(&key) {
            notify.notify_waiters();
        }
    }

    /// Wakes every waiter (shutdown).
    pub(crate) fn wake_all(&self) {
        for notify in self.channels.lock().values() {
            notify.notify_waiters();
        }
    }

    /// Gives back the map's memory after a burst of waiters has gone: a
    /// hash map keeps the capacity of its peak.
    pub(crate) fn shrink(&self) {
        let mut channels = self.channels.lock();
        if channels.capacity() > 64 && channels.len() < channels.capacity() / 4 {
            channels.shrink_to_fit();
        }
    }

    /// Long-polls waiting now.
    pub(crate) fn waiting(&self) -> i64 {
        self.waiting.load(Ordering::Relaxed)
    }
}

impl Waiter<'_> {
    /// A future that completes at the channel's next wake-up. Created (and
    /// enabled) at once so no wake-up after this call is missed.
    pub(crate) fn notified(&self) -> std::pin::Pin<Box<tokio::sync::futures::Notified<'_>>> {
        let mut notified = Box::pin(self.notify.notified());
        notified.as_mut().enable();
        notified
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.waiters.waiting.fetch_sub(1, Ordering::Relaxed);
        let mut channels = self.waiters.channels.lock();
        // The map holds one reference and this waiter another: nobody else waits.
        if Arc::strong_count(&self.notify) == 2 {
            channels.remove(&self.key);
        }
    }
}
