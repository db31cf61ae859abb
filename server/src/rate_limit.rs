//! Per-client token buckets: one limiter for the operations that claim
//! channels (allocate and join), so one client cannot sweep channel ids,
//! and one for posts and fetches. IPv6 clients share a bucket per /64.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;

use crate::client_address::subscriber;
use std::time::Instant;

/// Most addresses tracked; past it, full buckets are forgotten.
const MAX_TRACKED: usize = 100_000;

pub(crate) struct RateLimiter {
    per_minute: u32,
    exempt_loopback: bool,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_minute` = 0 turns limiting off; `exempt_loopback` lets
    /// loopback clients through.
    pub(crate) fn new(per_minute: u32, exempt_loopback: bool) -> RateLimiter {
        RateLimiter { per_minute, exempt_loopback, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `addr`; false when it has none left.
    pub(crate) fn allow(&self, addr: IpAddr, now: Instant) -> bool {
        if self.per_minute == 0 || (addr.is_loopback() && self.exempt_loopback) {
            return true;
        }
        let addr = subscriber(addr);
        let capacity = f64::from(self.per_minute);
        let refill = |tokens: f64, since: Instant| {
            (tokens + now.duration_since(since).as_secs_f64() * capacity / 60.0).min(capacity)
        };
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&addr) {
            buckets.retain(|_, (tokens, since)| refill(*tokens, *since) < capacity);
        }
        let (tokens, since) = buckets.entry(addr).or_insert((capacity, now));
        *tokens = refill(*tokens, *since);
        *since = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn buckets_refill_over_time_and_loopback_is_exempt_only_when_asked() {
        let limiter = RateLimiter::new(60, true);
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!((0..100).filter(|_| limiter.allow(client, t0)).count(), 60);
        assert!(!limiter.allow(client, t0));
        assert!(limiter.allow(client, t0 + Duration::from_secs(1)), "one token per second at 60/min");
        assert!(!limiter.allow(client, t0 + Duration::from_secs(1)));
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert!((0..1000).all(|_| limiter.allow(loopback, t0)));
        let strict = RateLimiter::new(2, false);
        assert!(strict.allow(loopback, t0) && strict.allow(loopback, t0) && !strict.allow(loopback, t0));
        let off = RateLimiter::new(0, false);
        assert!((0..1000).all(|_| off.allow(client, t0)));
        // One IPv6 subscriber, many addresses: one bucket.
        let v6 = RateLimiter::new(2, false);
        let (a, b) = ("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap());
        assert!(v6.allow(a, t0) && v6.allow(b, t0) && !v6.allow(a, t0));
    }
}
