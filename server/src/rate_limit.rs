//! Per-client token buckets (governor's GCRA): one limiter for the
//! operations that claim channels (allocate and join), so one client cannot
//! sweep channel ids, and one for posts and fetches. IPv6 clients share a
//! bucket per /64.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::Quota;

use crate::client_address::subscriber;

type Buckets<C> = governor::RateLimiter<IpAddr, DashMapStateStore<IpAddr>, C, NoOpMiddleware<<C as Clock>::Instant>>;

pub(crate) struct RateLimiter<C: Clock = DefaultClock> {
    /// `None`: limiting is off.
    buckets: Option<Buckets<C>>,
    exempt_loopback: bool,
}

impl RateLimiter {
    /// `per_minute` = 0 turns limiting off; `exempt_loopback` lets
    /// loopback clients through.
    pub(crate) fn new(per_minute: u32, exempt_loopback: bool) -> RateLimiter {
        RateLimiter::with_clock(per_minute, exempt_loopback, DefaultClock::default())
    }
}

impl<C: Clock> RateLimiter<C> {
    fn with_clock(per_minute: u32, exempt_loopback: bool, clock: C) -> RateLimiter<C> {
        let buckets =
            NonZeroU32::new(per_minute).map(|n| governor::RateLimiter::dashmap_with_clock(Quota::per_minute(n), clock));
        RateLimiter { buckets, exempt_loopback }
    }

    /// Takes one token for `addr`; false when it has none left.
    pub(crate) fn allow(&self, addr: IpAddr) -> bool {
        match &self.buckets {
            None => true,
            Some(_) if addr.is_loopback() && self.exempt_loopback => true,
            Some(buckets) => buckets.check_key(&subscriber(addr)).is_ok(),
        }
    }

    /// Forgets clients whose buckets are full again (the sweeper calls it),
    /// so the memory follows the clients active now, not all ever seen.
    pub(crate) fn forget_idle(&self) {
        if let Some(buckets) = &self.buckets {
            buckets.retain_recent();
            buckets.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn buckets_refill_over_time_and_loopback_is_exempt_only_when_asked() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(60, true, clock.clone());
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!((0..100).filter(|_| limiter.allow(client)).count(), 60);
        assert!(!limiter.allow(client));
        clock.advance(Duration::from_secs(1));
        assert!(limiter.allow(client), "one token per second at 60/min");
        assert!(!limiter.allow(client));
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert!((0..1000).all(|_| limiter.allow(loopback)));
        let strict = RateLimiter::with_clock(2, false, clock.clone());
        assert!(strict.allow(loopback) && strict.allow(loopback) && !strict.allow(loopback));
        let off = RateLimiter::with_clock(0, false, clock.clone());
        assert!((0..1000).all(|_| off.allow(client)));
        // One IPv6 subscriber, many addresses: one bucket.
        let v6 = RateLimiter::with_clock(2, false, clock.clone());
        let (a, b) = ("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap());
        assert!(v6.allow(a) && v6.allow(b) && !v6.allow(a));
        // Full buckets are forgotten.
        clock.advance(Duration::from_secs(120));
        v6.forget_idle();
        assert_eq!(v6.buckets.as_ref().unwrap().len(), 0);
    }
}
