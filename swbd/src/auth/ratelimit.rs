//! Per-source request rate limit (like Kamailio's `pike` module): a token
//! bucket per source address, `sip.rate_limit.requests_per_sec` sustained
//! with bursts up to `sip.rate_limit.burst`.
//!
//! - A source is an IPv4 address, or an IPv6 /64 ([`SourceKey`]): one
//!   host owns a whole /64 and can pick a new address in it for every
//!   packet, so a per-address bucket would never fill.
//! - The table is bounded (`max_sources`). When full, the source seen least
//!   recently gives up its bucket: a source idle that long has a full bucket
//!   anyway, so forgetting it loses nothing, while a source sending now is
//!   the most recently seen and keeps its (empty) bucket however many new
//!   sources arrive in between, up to `max_sources` of them.
//! - Every operation is O(1) (the `lru` crate: a hash map threaded with a
//!   linked list, keyed with std's SipHash since sources pick the keys), under
//!   one short `std::sync::Mutex` critical section, never across an await.
//! - Off by default (`requests_per_sec: 0`): the right number depends on
//!   what is behind one address (one phone, an office NAT with hundreds, a
//!   trunk or SBC carrying thousands of calls), and a wrong default drops
//!   legitimate traffic; see `docs/SECURITY.md, "Resource limits"`.
//!
//! This module decides; the caller (the transaction layer) acts on a
//! [`Verdict::Limited`] (drop, or answer 503 with Retry-After).

use std::hash::RandomState;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use lru::LruCache;
use tokio::time::Instant;

use crate::config::RateLimitConfig;
use crate::transport::SourceKey;

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the source's rate (or limiting is off).
    Allow,
    /// Over the source's rate: refuse or drop it.
    Limited,
}

/// One source's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Requests it may still send now (fractions accumulate).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

/// Per-source token buckets. Cheap to call from any task; share it in an
/// `Arc`.
#[derive(Debug)]
pub struct RateLimiter {
    /// Tokens added per second; 0 = limiting is off.
    rate: f64,
    /// Bucket size.
    burst: f64,
    capacity: usize,
    /// std Mutex: every access is a short lookup/update, never across an
    /// await.
    buckets: Mutex<LruCache<SourceKey, Bucket, RandomState>>,
    limited: AtomicU64,
    evicted: AtomicU64,
}

impl RateLimiter {
    /// From `sip.rate_limit` (validated: `burst` >= 1 and `max_sources` >= 1
    /// when `requests_per_sec` > 0).
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            rate: f64::from(config.requests_per_sec),
            burst: f64::from(config.burst.max(1)),
            capacity: config.max_sources.max(1),
            buckets: Mutex::new(LruCache::unbounded_with_hasher(RandomState::new())),
            limited: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    /// Whether limiting is on.
    pub fn enabled(&self) -> bool {
        self.rate > 0.0
    }

    /// Count one request from `ip` at `now` and say whether it is within
    /// its source's rate. `now` comes from the caller (tokio's clock) so a
    /// batch of requests can share one clock read.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Verdict {
        if !self.enabled() {
            return Verdict::Allow;
        }
        let key = SourceKey::of(ip);
        let Ok(mut buckets) = self.buckets.lock() else {
            // A panic elsewhere poisoned the table: fail open, as with the
            // limit off, rather than refuse everyone.
            return Verdict::Allow;
        };
        let verdict = match buckets.get_mut(&key) {
            Some(b) => {
                if now > b.at {
                    let elapsed = now.duration_since(b.at).as_secs_f64();
                    b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
                    b.at = now;
                }
                if b.tokens >= 1.0 {
                    b.tokens -= 1.0;
                    Verdict::Allow
                } else {
                    Verdict::Limited
                }
            }
            None => {
                if buckets.len() >= self.capacity && buckets.pop_lru().is_some() {
                    self.evicted.fetch_add(1, Ordering::Relaxed);
                }
                buckets.put(
                    key,
                    Bucket {
                        tokens: self.burst - 1.0,
                        at: now,
                    },
                );
                Verdict::Allow
            }
        };
        drop(buckets);
        if verdict == Verdict::Limited {
            self.limited.fetch_add(1, Ordering::Relaxed);
        }
        verdict
    }

    /// Requests found over their source's rate so far.
    pub fn limited(&self) -> u64 {
        self.limited.load(Ordering::Relaxed)
    }

    /// Sources forgotten because the table was full.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Sources tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().map(|b| b.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limiter(requests_per_sec: u32, burst: u32, max_sources: usize) -> RateLimiter {
        RateLimiter::new(&RateLimitConfig {
            requests_per_sec,
            burst,
            max_sources,
            ..RateLimitConfig::default()
        })
    }

    fn v4(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0xc633_6400 + n))
    }

    /// Verdicts of `n` requests from `ip`, all at `now`.
    fn burst_of(l: &RateLimiter, ip: IpAddr, now: Instant, n: usize) -> Vec<Verdict> {
        (0..n).map(|_| l.check(ip, now)).collect()
    }

    #[test]
    fn off_allows_everything_and_tracks_nothing() {
        let l = limiter(0, 1, 10);
        let now = Instant::now();
        assert!(
            burst_of(&l, v4(1), now, 1000)
                .iter()
                .all(|v| *v == Verdict::Allow)
        );
        assert_eq!(l.tracked(), 0);
        assert_eq!(l.limited(), 0);
    }

    #[test]
    fn a_burst_passes_then_the_rest_is_limited_and_counted() {
        let l = limiter(10, 5, 100);
        let now = Instant::now();
        let v = burst_of(&l, v4(1), now, 8);
        assert_eq!(&v[..5], &[Verdict::Allow; 5]);
        assert_eq!(&v[5..], &[Verdict::Limited; 3]);
        assert_eq!(l.limited(), 3);
        // Another source has its own bucket.
        assert_eq!(l.check(v4(2), now), Verdict::Allow);
    }

    #[test]
    fn tokens_come_back_at_the_configured_rate_up_to_the_burst() {
        let l = limiter(10, 5, 100);
        let t0 = Instant::now();
        let _ = burst_of(&l, v4(1), t0, 5);
        assert_eq!(l.check(v4(1), t0), Verdict::Limited);
        // 10/s: one token every 100 ms.
        let t1 = t0 + Duration::from_millis(250);
        assert_eq!(
            burst_of(&l, v4(1), t1, 3),
            vec![Verdict::Allow, Verdict::Allow, Verdict::Limited]
        );
        // A long pause refills to the burst, no further.
        let t2 = t1 + Duration::from_secs(3600);
        let v = burst_of(&l, v4(1), t2, 6);
        assert_eq!(&v[..5], &[Verdict::Allow; 5]);
        assert_eq!(v[5], Verdict::Limited);
    }

    #[test]
    fn a_steady_source_at_the_rate_is_never_limited() {
        let l = limiter(50, 1, 100);
        let t0 = Instant::now();
        for i in 0..1000u64 {
            let at = t0 + Duration::from_millis(20 * i);
            assert_eq!(l.check(v4(1), at), Verdict::Allow, "request {i}");
        }
        assert_eq!(l.limited(), 0);
    }

    #[test]
    fn an_ipv6_slash_64_is_one_source_and_mapped_ipv4_is_ipv4() {
        let l = limiter(1, 2, 100);
        let now = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().expect("ip");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(l.check(a, now), Verdict::Allow);
        assert_eq!(l.check(b, now), Verdict::Allow);
        assert_eq!(l.check(a, now), Verdict::Limited, "same /64, bucket empty");
        assert_eq!(l.check(other, now), Verdict::Allow);
        let mapped: IpAddr = "::ffff:198.51.100.1".parse().expect("ip");
        let plain: IpAddr = "198.51.100.1".parse().expect("ip");
        assert_eq!(l.check(mapped, now), Verdict::Allow);
        assert_eq!(l.check(plain, now), Verdict::Allow);
        assert_eq!(l.check(plain, now), Verdict::Limited);
    }

    #[test]
    fn a_full_table_forgets_the_least_recently_seen_source() {
        let l = limiter(1, 1, 3);
        let now = Instant::now();
        for n in 1..=3 {
            assert_eq!(l.check(v4(n), now), Verdict::Allow);
        }
        // v4(1) is seen again (limited), so v4(2) is now the least recent.
        assert_eq!(l.check(v4(1), now), Verdict::Limited);
        assert_eq!(l.check(v4(4), now), Verdict::Allow);
        assert_eq!(l.tracked(), 3);
        assert_eq!(l.evicted(), 1);
        assert_eq!(
            l.check(v4(1), now),
            Verdict::Limited,
            "v4(1) kept its bucket"
        );
        assert_eq!(
            l.check(v4(3), now),
            Verdict::Limited,
            "v4(3) kept its bucket"
        );
        assert_eq!(l.check(v4(2), now), Verdict::Allow, "v4(2) was forgotten");
    }

    #[test]
    fn a_flood_of_new_sources_does_not_reset_a_busy_source() {
        let l = limiter(1, 1, 64);
        let now = Instant::now();
        let attacker = v4(0);
        assert_eq!(l.check(attacker, now), Verdict::Allow);
        for n in 1..10_000 {
            let _ = l.check(v4(n), now);
            // The attacker keeps sending between every 32 new sources.
            if n % 32 == 0 {
                assert_eq!(l.check(attacker, now), Verdict::Limited, "after {n}");
            }
        }
        assert!(l.tracked() <= 64);
    }

    #[test]
    fn a_clock_that_goes_backwards_adds_no_tokens() {
        let l = limiter(10, 1, 10);
        let t0 = Instant::now() + Duration::from_secs(10);
        assert_eq!(l.check(v4(1), t0), Verdict::Allow);
        assert_eq!(
            l.check(v4(1), t0 - Duration::from_secs(5)),
            Verdict::Limited
        );
    }
}
