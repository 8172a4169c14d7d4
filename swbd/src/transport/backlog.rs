//! How long a UDP socket's receive queue has stayed non-empty: the
//! queueing delay of datagrams waiting in the kernel for swbd to read them,
//! seen from the reader's side.
//!
//! The kernel does not tell when a queued datagram arrived without
//! `SO_TIMESTAMP` and `recvmsg`, which swbd cannot set up without `unsafe`
//! (neither tokio, socket2 nor rustix offer it). What the receive loops do
//! know is when they found the socket empty: a read that would block. A
//! queue that was empty at time E holds only datagrams that arrived after
//! E, and one that has not been found empty since S has been working
//! through a backlog for `now - S`: CoDel's "standing queue" (RFC 8289
//! §2.1, a queue that does not drain within an interval is a bad one).
//! Below capacity the queue empties every fraction of a millisecond;
//! at capacity it never does, and the standing time grows with every
//! millisecond swbd stays behind.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The standing time of one UDP socket's receive queue. Receive loops
/// report reads and empty reads; the overload monitor reads
/// [`ReceiveBacklog::standing`].
#[derive(Debug, Default)]
pub struct ReceiveBacklog {
    /// Nanoseconds after [`epoch`] since which every read found a
    /// datagram; 0 while the queue is (last seen) empty.
    busy_since: AtomicU64,
}

/// The process-wide origin of the nanosecond stamps.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn stamp(now: Instant) -> u64 {
    // Never 0 (0 means idle), even at the epoch itself.
    u64::try_from(now.saturating_duration_since(epoch()).as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl ReceiveBacklog {
    /// A read returned a datagram: the queue was not empty. The first one
    /// after an empty read starts the standing time (one load per read
    /// otherwise).
    pub fn read_one(&self) {
        if self.busy_since.load(Ordering::Relaxed) == 0 {
            let _ = self.busy_since.compare_exchange(
                0,
                stamp(Instant::now()),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// A read found the queue empty.
    pub fn found_empty(&self) {
        self.busy_since.store(0, Ordering::Relaxed);
    }

    /// How long the queue has been non-empty at `now` (zero when it was
    /// last found empty).
    pub fn standing(&self, now: Instant) -> Duration {
        match self.busy_since.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            since => Duration::from_nanos(stamp(now).saturating_sub(since)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standing_time_runs_from_the_first_read_after_an_empty_one() {
        let b = ReceiveBacklog::default();
        let later = Instant::now() + Duration::from_secs(3600);
        assert_eq!(b.standing(later), Duration::ZERO, "never read");
        b.read_one();
        let first = b.standing(later);
        assert!(first > Duration::from_secs(3599), "{first:?}");
        b.read_one();
        assert!(b.standing(later) <= first, "later reads do not restart it");
        b.found_empty();
        assert_eq!(b.standing(later), Duration::ZERO);
    }
}
