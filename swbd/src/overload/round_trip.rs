//! The media path's part of the delay: how much longer media commands take
//! than they do unloaded.
//!
//! A command's round trip (swbd to the node and back) is its queueing in
//! both daemons plus a fixed part: processing, and the network when the
//! node is on another host (a few milliseconds across a data centre, tens
//! across a region). Only the queueing is load. The fixed part is the
//! least round trip seen lately, LEDBAT's "base delay" (RFC 6817 §3.4.2):
//! the minimum over [`BUCKETS`] buckets of [`BUCKET`] each, so it follows a
//! node moved further away within ten minutes, and an overload lasting
//! longer than that is partly taken for distance (the scheduling lag and
//! receive backlog, which have no fixed part, still count in full).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One bucket of the base history.
pub const BUCKET: Duration = Duration::from_secs(60);
/// Buckets kept.
pub const BUCKETS: usize = 10;

/// The least round trips of the last [`BUCKETS`] minutes.
#[derive(Debug, Default)]
pub struct BaseRoundTrip {
    /// (bucket start, least round trip in it), oldest first.
    buckets: VecDeque<(Instant, Duration)>,
}

impl BaseRoundTrip {
    /// Take `rtt`, the round trip of the last update, and return its
    /// queueing part (above the base).
    pub fn queueing(&mut self, now: Instant, rtt: Duration) -> Duration {
        match self.buckets.back_mut() {
            Some((start, min)) if now.saturating_duration_since(*start) < BUCKET => {
                *min = (*min).min(rtt);
            }
            _ => {
                self.buckets.push_back((now, rtt));
                while self.buckets.len() > BUCKETS {
                    self.buckets.pop_front();
                }
            }
        }
        let base = self.buckets.iter().map(|(_, m)| *m).min().unwrap_or(rtt);
        rtt.saturating_sub(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_distant_node_is_not_load_but_queueing_on_top_of_it_is() {
        let mut b = BaseRoundTrip::default();
        let t = Instant::now();
        // 30 ms away, unloaded.
        assert_eq!(b.queueing(t, 30 * MS), Duration::ZERO);
        assert_eq!(b.queueing(t + 10 * MS, 31 * MS), MS);
        // Loaded: 12 ms of queueing on top.
        assert_eq!(b.queueing(t + 20 * MS, 42 * MS), 12 * MS);
    }

    #[test]
    fn the_base_follows_a_node_that_moved_after_the_history() {
        let mut b = BaseRoundTrip::default();
        let t = Instant::now();
        assert_eq!(b.queueing(t, MS), Duration::ZERO);
        // Moved 20 ms away: queueing at first, the base within 10 minutes.
        assert_eq!(b.queueing(t + BUCKET, 21 * MS), 20 * MS);
        let later = t + BUCKET * (BUCKETS as u32 + 1);
        for i in 0..=BUCKETS as u32 {
            let _ = b.queueing(t + BUCKET * (i + 1), 21 * MS);
        }
        assert_eq!(b.queueing(later, 21 * MS), Duration::ZERO);
    }
}
