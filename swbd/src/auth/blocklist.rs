//! Failed-attempt counting per source, and temporary blocks.
//!
//! A source is an IPv4 address or an IPv6 /64 ([`SourceKey`]): a host
//! owns its whole /64, and blocking one address of it would let it move to
//! the next.
//!
//! The table is bounded (a flood of spoofed sources must not grow it
//! without limit) and, when full, gives up what matters least first:
//!
//! 1. a block that has run out (the oldest block is the first to run out:
//!    every block lasts `block`);
//! 2. the source with failures but no block that failed least recently
//!    (its failures are the likeliest to have left the window anyway);
//! 3. only when every tracked source is actively blocked: the oldest block,
//!    counted in [`Blocklist::evicted_blocks`] and logged.
//!
//! A flood of new sources therefore never unblocks an attacker unless it
//! brings as many *blocked* sources as the table holds, and even then only
//! the oldest block goes, one per new source, instead of all at once.
//!
//! Two LRU lists (the `lru` crate: a hash map threaded with a linked list)
//! keep both orders, so every operation is O(1): `is_blocked` runs for
//! every authenticated request and must not scan. Their hasher is std's
//! keyed SipHash: the keys are addresses an attacker picks.

use std::collections::VecDeque;
use std::hash::RandomState;
use std::net::IpAddr;
use std::time::Duration;

use lru::LruCache;
use tokio::time::Instant;

use crate::transport::SourceKey;

/// Bound on tracked sources (blocked or with recent failures).
const MAX_TRACKED: usize = 65_536;

/// Failures of a source that is not blocked.
#[derive(Debug, Default)]
struct Failures {
    times: VecDeque<Instant>,
}

/// Counts failures per IP in a sliding window; `max_failures` within it
/// blocks the IP for `block`.
#[derive(Debug)]
pub struct Blocklist {
    max_failures: u32,
    window: Duration,
    block: Duration,
    capacity: usize,
    /// Sources with failures and no block, least recently failed first.
    failing: LruCache<SourceKey, Failures, RandomState>,
    /// Blocked sources with the end of their block, oldest block first
    /// (never promoted: looking a block up does not renew its place).
    blocked: LruCache<SourceKey, Instant, RandomState>,
    /// Active blocks dropped because the table was full of them.
    evicted_blocks: u64,
}

impl Blocklist {
    /// A new, empty list holding at most 65,536 sources.
    pub fn new(max_failures: u32, window: Duration, block: Duration) -> Self {
        Self::with_capacity(MAX_TRACKED, max_failures, window, block)
    }

    /// A new, empty list holding at most `capacity` (at least 1) sources.
    pub fn with_capacity(
        capacity: usize,
        max_failures: u32,
        window: Duration,
        block: Duration,
    ) -> Self {
        Self {
            max_failures,
            window,
            block,
            capacity: capacity.max(1),
            failing: LruCache::unbounded_with_hasher(RandomState::new()),
            blocked: LruCache::unbounded_with_hasher(RandomState::new()),
            evicted_blocks: 0,
        }
    }

    /// Whether `ip`'s source is blocked now.
    pub fn is_blocked(&mut self, ip: IpAddr) -> bool {
        self.key_is_blocked(SourceKey::of(ip))
    }

    fn key_is_blocked(&mut self, key: SourceKey) -> bool {
        match self.blocked.peek(&key) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                // Served its time: it starts over with no failures.
                self.blocked.pop(&key);
                false
            }
            None => false,
        }
    }

    /// Record one failure of `ip`'s source; true when this blocks it.
    pub fn record_failure(&mut self, ip: IpAddr) -> bool {
        let key = SourceKey::of(ip);
        if self.max_failures == 0 || self.key_is_blocked(key) {
            return false;
        }
        let now = Instant::now();
        if !self.failing.contains(&key) {
            self.make_room(now);
        }
        let window = self.window;
        let e = self.failing.get_or_insert_mut(key, Failures::default);
        while e
            .times
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            e.times.pop_front();
        }
        e.times.push_back(now);
        if e.times.len() < self.max_failures as usize {
            return false;
        }
        self.failing.pop(&key);
        self.blocked.put(key, now + self.block);
        true
    }

    /// Forget failures of a source that authenticated (a block stays).
    pub fn record_success(&mut self, ip: IpAddr) {
        self.failing.pop(&SourceKey::of(ip));
    }

    /// Sources tracked (blocked or failing).
    pub fn len(&self) -> usize {
        self.failing.len() + self.blocked.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Active blocks given up because the table was full of active blocks.
    pub fn evicted_blocks(&self) -> u64 {
        self.evicted_blocks
    }

    /// Drop one entry if the table is full, in the order the module
    /// documentation gives.
    fn make_room(&mut self, now: Instant) {
        if self.len() < self.capacity {
            return;
        }
        if self
            .blocked
            .peek_lru()
            .is_some_and(|(_, until)| *until <= now)
        {
            self.blocked.pop_lru();
            return;
        }
        if self.failing.pop_lru().is_some() {
            return;
        }
        if let Some((source, _)) = self.blocked.pop_lru() {
            self.evicted_blocks += 1;
            // Logged on the 1st, 2nd, 4th, 8th... so a flood cannot flood the log.
            if self.evicted_blocks.is_power_of_two() {
                tracing::warn!(
                    %source,
                    evicted = self.evicted_blocks,
                    capacity = self.capacity,
                    "blocklist full of active blocks: the oldest block was dropped"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0xc000_0200 + n))
    }

    #[tokio::test(start_paused = true)]
    async fn blocks_after_max_and_unblocks_later() {
        let mut b = Blocklist::new(3, Duration::from_secs(60), Duration::from_secs(30));
        let bad: IpAddr = "192.0.2.1".parse().expect("ip");
        let good: IpAddr = "192.0.2.2".parse().expect("ip");
        assert!(!b.record_failure(bad));
        assert!(!b.record_failure(bad));
        assert!(b.record_failure(bad));
        assert!(b.is_blocked(bad));
        assert!(!b.is_blocked(good));
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(!b.is_blocked(bad));
        assert!(!b.record_failure(bad), "starts over after the block");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_outside_the_window_do_not_count() {
        let mut b = Blocklist::new(3, Duration::from_secs(60), Duration::from_secs(30));
        assert!(!b.record_failure(ip(1)));
        assert!(!b.record_failure(ip(1)));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(!b.record_failure(ip(1)));
        assert!(!b.record_failure(ip(1)));
        assert!(b.record_failure(ip(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_new_sources_evicts_the_least_recently_failing_first() {
        let mut b =
            Blocklist::with_capacity(4, 2, Duration::from_secs(60), Duration::from_secs(60));
        // ip(1) blocked; then ip(2), ip(3), ip(4) fail once each, in order.
        assert!(!b.record_failure(ip(1)));
        assert!(b.record_failure(ip(1)));
        assert!(!b.record_failure(ip(2)));
        assert!(!b.record_failure(ip(3)));
        assert!(!b.record_failure(ip(4)));
        assert_eq!(b.len(), 4);
        // Full: a new source pushes out ip(2), the least recently failing.
        assert!(!b.record_failure(ip(5)));
        assert_eq!(b.len(), 4);
        assert!(b.record_failure(ip(3)), "ip(3) kept its failure");
        // ip(3) is now blocked; failing ones: ip(4), ip(5). ip(2) starts over.
        assert!(
            !b.record_failure(ip(2)),
            "ip(2) was forgotten, so one failure"
        );
        // That pushed out ip(4) (least recent); ip(5) kept its failure.
        assert!(b.record_failure(ip(5)));
        assert!(b.is_blocked(ip(1)) && b.is_blocked(ip(3)) && b.is_blocked(ip(5)));
        assert_eq!(b.evicted_blocks(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_never_clears_blocks_and_drops_the_oldest_block_only_when_full_of_blocks() {
        let mut b =
            Blocklist::with_capacity(3, 1, Duration::from_secs(60), Duration::from_secs(60));
        for n in 1..=3 {
            assert!(b.record_failure(ip(n)), "one failure blocks");
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert_eq!(b.len(), 3);
        // Full of active blocks: a fourth source drops the oldest block only.
        assert!(b.record_failure(ip(4)));
        assert_eq!(b.evicted_blocks(), 1);
        assert!(!b.is_blocked(ip(1)), "the oldest block went");
        assert!(b.is_blocked(ip(2)) && b.is_blocked(ip(3)) && b.is_blocked(ip(4)));
        // Checking a block does not renew its place: ip(2) goes next.
        assert!(b.is_blocked(ip(2)));
        assert!(b.record_failure(ip(5)));
        assert!(!b.is_blocked(ip(2)));
        assert!(b.is_blocked(ip(3)) && b.is_blocked(ip(4)) && b.is_blocked(ip(5)));
        assert_eq!(b.evicted_blocks(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn failing_sources_go_before_any_active_block() {
        let mut b =
            Blocklist::with_capacity(3, 2, Duration::from_secs(600), Duration::from_secs(60));
        assert!(!b.record_failure(ip(1)));
        assert!(b.record_failure(ip(1)));
        // Thousands of one-failure sources through a table of 3.
        for n in 100..2100 {
            assert!(!b.record_failure(ip(n)));
        }
        assert!(b.len() <= 3);
        assert!(b.is_blocked(ip(1)), "the block survived the flood");
        assert_eq!(b.evicted_blocks(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_block_goes_before_a_failing_source() {
        let mut b =
            Blocklist::with_capacity(2, 2, Duration::from_secs(600), Duration::from_secs(10));
        assert!(!b.record_failure(ip(1)));
        assert!(b.record_failure(ip(1)));
        assert!(!b.record_failure(ip(2)));
        tokio::time::advance(Duration::from_secs(11)).await;
        // Full; ip(1)'s block has run out: it goes, ip(2) keeps its failure.
        assert!(!b.record_failure(ip(3)));
        assert!(b.record_failure(ip(2)), "ip(2) kept its first failure");
        assert_eq!(b.evicted_blocks(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_ipv6_slash_64_fails_and_is_blocked_as_one_source() {
        let mut b = Blocklist::new(2, Duration::from_secs(60), Duration::from_secs(60));
        let a: IpAddr = "2001:db8:7:7::1".parse().expect("ip");
        let next: IpAddr = "2001:db8:7:7::2".parse().expect("ip");
        let elsewhere: IpAddr = "2001:db8:7:8::1".parse().expect("ip");
        assert!(!b.record_failure(a));
        assert!(b.record_failure(next), "the second failure of the /64");
        assert!(b.is_blocked(a) && b.is_blocked(next));
        assert!(!b.is_blocked(elsewhere));
    }

    #[tokio::test(start_paused = true)]
    async fn success_forgets_failures_but_not_a_block() {
        let mut b = Blocklist::new(2, Duration::from_secs(60), Duration::from_secs(60));
        assert!(!b.record_failure(ip(1)));
        b.record_success(ip(1));
        assert!(!b.record_failure(ip(1)), "counting restarted");
        assert!(b.record_failure(ip(1)));
        b.record_success(ip(1));
        assert!(b.is_blocked(ip(1)));
    }
}
