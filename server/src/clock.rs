//! Where the server reads the time: the system's clock, or one a test
//! sets and moves, so expiry and retention can be tested without waiting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use wormhole_sync_core::Timestamp;

/// The server's clock ([`ServerConfig::clock`](crate::ServerConfig::clock)).
///
/// ```
/// use std::time::Duration;
/// use wormhole_sync_server::Clock;
/// use wormhole_sync_core::Timestamp;
///
/// let clock = Clock::manual(Timestamp::from_millis(1_000));
/// clock.advance(Duration::from_secs(3 * 24 * 3600));
/// assert_eq!(clock.now(), Timestamp::from_millis(1_000 + 3 * 24 * 3600 * 1_000));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// The manual clock's time in milliseconds; `None`: the system's.
    manual: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system's clock (the default).
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A clock that reads `start` until [`advance`](Self::advance) moves
    /// it; clones share it.
    pub fn manual(start: Timestamp) -> Clock {
        Clock { manual: Some(Arc::new(AtomicU64::new(start.as_millis()))) }
    }

    /// Moves a manual clock forwards (the system's clock ignores this).
    pub fn advance(&self, by: Duration) {
        if let Some(millis) = &self.manual {
            millis.fetch_add(u64::try_from(by.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }

    /// The time now.
    pub fn now(&self) -> Timestamp {
        match &self.manual {
            Some(millis) => Timestamp::from_millis(millis.load(Ordering::Relaxed)),
            None => Timestamp::from_system_time(SystemTime::now()),
        }
    }
}
