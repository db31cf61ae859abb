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

use crate::client_address::{subscriber, Client};

type Buckets<C> = governor::RateLimiter<IpAddr, DashMapStateStore<IpAddr>, C, NoOpMiddleware<<C as Clock>::Instant>>;

pub(crate) struct RateLimiter<C: Clock = DefaultClock> {
    /// `None`: limiting is off.
    buckets: Option<Buckets<C>>,
    exempt_loopback: bool,
}

impl RateLimiter {
    /// `per_minute` = 0 turns limiting off; `exempt_loopback` lets local
    /// clients through (a loopback connection that is not a trusted proxy;
    /// never an address a proxy reported).
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

    /// Takes one token for `client`; false when it has none left.
    pub(crate) fn allow(&self, client: Client) -> bool {
        match &self.buckets {
            None => true,
            Some(_) if client.local && self.exempt_loopback => true,
            Some(buckets) => buckets.check_key(&subscriber(client.address)).is_ok(),
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
        let remote = |text: &str| Client { address: text.parse().unwrap(), local: false };
        let client = remote("192.0.2.7");
        assert_eq!((0..100).filter(|_| limiter.allow(client)).count(), 60);
        assert!(!limiter.allow(client));
        clock.advance(Duration::from_secs(1));
        assert!(limiter.allow(client), "one token per second at 60/min");
        assert!(!limiter.allow(client));
        let loopback = Client { address: "127.0.0.1".parse().unwrap(), local: true };
        assert!((0..1000).all(|_| limiter.allow(loopback)));
        // A proxy's report of a loopback address is charged like any other.
        let forwarded_loopback = remote("127.0.0.1");
        assert_eq!((0..100).filter(|_| limiter.allow(forwarded_loopback)).count(), 60);
        let strict = RateLimiter::with_clock(2, false, clock.clone());
        assert!(strict.allow(loopback) && strict.allow(loopback) && !strict.allow(loopback));
        let off = RateLimiter::with_clock(0, false, clock.clone());
        assert!((0..1000).all(|_| off.allow(client)));
        // One IPv6 subscriber, many addresses: one bucket.
        let v6 = RateLimiter::with_clock(2, false, clock.clone());
        let (a, b) = (remote("2001:db8::1"), remote("2001:db8::2"));
        assert!(v6.allow(a) && v6.allow(b) && !v6.allow(a));
        // Full buckets are forgotten.
        clock.advance(Duration::from_secs(120));
        v6.forget_idle();
        assert_eq!(v6.buckets.as_ref().unwrap().len(), 0);
    }
}
