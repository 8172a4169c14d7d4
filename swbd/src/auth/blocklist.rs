//! Failed-attempt counting per source IP, and temporary blocks.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

/// Bound on tracked sources, so a flood of spoofed sources cannot grow the
/// table without limit (oldest entries are dropped first when pruning).
const MAX_TRACKED: usize = 65_536;

#[derive(Debug, Default)]
struct Entry {
    failures: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

/// Counts failures per IP in a sliding window; `max_failures` within it
/// blocks the IP for `block`.
#[derive(Debug)]
pub struct Blocklist {
    max_failures: u32,
    window: Duration,
    block: Duration,
    entries: HashMap<IpAddr, Entry>,
}

impl Blocklist {
    /// A new, empty list.
    pub fn new(max_failures: u32, window: Duration, block: Duration) -> Self {
        Self {
            max_failures,
            window,
            block,
            entries: HashMap::new(),
        }
    }

    /// Whether `ip` is blocked now.
    pub fn is_blocked(&mut self, ip: IpAddr) -> bool {
        let now = Instant::now();
        match self.entries.get_mut(&ip) {
            Some(e) => match e.blocked_until {
                Some(until) if until > now => true,
                Some(_) => {
                    e.blocked_until = None;
                    e.failures.clear();
                    false
                }
                None => false,
            },
            None => false,
        }
    }

    /// Record one failure; true when this blocks the source.
    pub fn record_failure(&mut self, ip: IpAddr) -> bool {
        if self.max_failures == 0 {
            return false;
        }
        let now = Instant::now();
        if self.entries.len() >= MAX_TRACKED {
            self.prune(now);
        }
        let e = self.entries.entry(ip).or_default();
        while e
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            e.failures.pop_front();
        }
        e.failures.push_back(now);
        if e.failures.len() >= self.max_failures as usize {
            e.blocked_until = Some(now + self.block);
            e.failures.clear();
            return true;
        }
        false
    }

    /// Forget failures of a source that authenticated.
    pub fn record_success(&mut self, ip: IpAddr) {
        if let Some(e) = self.entries.get_mut(&ip)
            && e.blocked_until.is_none()
        {
            self.entries.remove(&ip);
        }
    }

    fn prune(&mut self, now: Instant) {
        let window = self.window;
        self.entries.retain(|_, e| {
            e.blocked_until.is_some_and(|u| u > now)
                || e.failures
                    .back()
                    .is_some_and(|t| now.duration_since(*t) <= window)
        });
        if self.entries.len() >= MAX_TRACKED {
            self.entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
