//! Wall-clock time as the core sees it: an input, never read from the system.
//!
//! Times are milliseconds since the Unix epoch rather than process-local
//! instants because they are persisted by [`Exchange::serialize`](crate::Exchange::serialize):
//! the schedule and the timeout keep counting from the first start across
//! process restarts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A point in wall-clock time, in whole milliseconds since the Unix epoch.
///
/// ```
/// use std::time::Duration;
/// use wormhole_sync_core::Timestamp;
///
/// let t = Timestamp::from_millis(1_000);
/// assert_eq!(t + Duration::from_millis(500), Timestamp::from_millis(1_500));
/// assert_eq!(Timestamp::from_millis(1_500).saturating_since(t), Duration::from_millis(500));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch itself.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// A timestamp `ms` milliseconds after the Unix epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Converts a system time the caller read (times before 1970 clamp to the epoch).
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use wormhole_sync_core::Timestamp;
    ///
    /// let t = Timestamp::from_system_time(UNIX_EPOCH + Duration::from_secs(2));
    /// assert_eq!(t.as_millis(), 2_000);
    /// ```
    pub fn from_system_time(time: SystemTime) -> Self {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        Timestamp(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    /// This time moved back by `d`, stopping at the epoch.
    ///
    /// ```
    /// use std::time::Duration;
    /// use wormhole_sync_core::Timestamp;
    ///
    /// let t = Timestamp::from_millis(1_000);
    /// assert_eq!(t.saturating_sub(Duration::from_millis(400)), Timestamp::from_millis(600));
    /// assert_eq!(t.saturating_sub(Duration::from_secs(5)), Timestamp::EPOCH);
    /// ```
    pub fn saturating_sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(millis(d)))
    }

    /// The time elapsed since `earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;

    /// Adds a duration, saturating at the far future instead of overflowing.
    fn add(self, rhs: Duration) -> Timestamp {
        let ms = u64::try_from(rhs.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }
}

/// The last millisecond of the year 9999: no saved time may lie beyond it.
pub(crate) const MAX_TIMESTAMP: Timestamp = Timestamp(253_402_300_799_999);

/// Converts a duration to whole milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
