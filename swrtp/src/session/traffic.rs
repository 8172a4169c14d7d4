//! Node-wide RTP traffic and quality for metrics, read at scrape time from
//! the per-session atomics the media tasks keep anyway: no work on the
//! packet path.
//!
//! A counter must never step back, yet a session's counts leave the table
//! with it. So [`Node::destroy`] hands them to [`EndedSessions`] in two
//! steps: what the session counted so far moves there under the table lock,
//! in the same critical section that removes it (a scrape, which sums the
//! table under that lock, sees the session either in the table or in the
//! ended totals, never in neither), and what its media task counted after
//! that moves there once the task has let the session go. That second step
//! also records the session's receive quality in two histograms.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::histogram::Histogram;

use super::{Node, SessionShared};

/// Buckets of a session's receive loss (lost / expected).
const LOSS_BUCKETS: [f64; 10] = [0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];
/// Buckets of a session's receive jitter (RFC 3550 interarrival), seconds.
const JITTER_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5];

/// RTP packets and payload bytes, received from peers and sent to them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Packets received.
    pub rx_packets: u64,
    /// Payload bytes received.
    pub rx_bytes: u64,
    /// Packets sent (relayed or played).
    pub tx_packets: u64,
    /// Payload bytes sent.
    pub tx_bytes: u64,
}

impl Traffic {
    fn of(s: &SessionShared) -> Self {
        let rx = s.rx.to_proto();
        let tx = s.tx.to_proto();
        Self {
            rx_packets: rx.packets,
            rx_bytes: rx.bytes,
            tx_packets: tx.packets,
            tx_bytes: tx.bytes,
        }
    }

    fn since(self, earlier: Traffic) -> Self {
        Self {
            rx_packets: self.rx_packets.saturating_sub(earlier.rx_packets),
            rx_bytes: self.rx_bytes.saturating_sub(earlier.rx_bytes),
            tx_packets: self.tx_packets.saturating_sub(earlier.tx_packets),
            tx_bytes: self.tx_bytes.saturating_sub(earlier.tx_bytes),
        }
    }

    fn add(&mut self, other: Traffic) {
        self.rx_packets = self.rx_packets.saturating_add(other.rx_packets);
        self.rx_bytes = self.rx_bytes.saturating_add(other.rx_bytes);
        self.tx_packets = self.tx_packets.saturating_add(other.tx_packets);
        self.tx_bytes = self.tx_bytes.saturating_add(other.tx_bytes);
    }
}

/// What destroyed sessions counted, and their receive quality.
#[derive(Debug)]
pub struct EndedSessions {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    /// Receive loss of each destroyed session that received RTP.
    pub loss: Histogram,
    /// Receive jitter (seconds) of each destroyed session that received RTP.
    pub jitter: Histogram,
}

impl Default for EndedSessions {
    fn default() -> Self {
        Self {
            rx_packets: AtomicU64::new(0),
            rx_bytes: AtomicU64::new(0),
            tx_packets: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
            loss: Histogram::new(LOSS_BUCKETS),
            jitter: Histogram::new(JITTER_BUCKETS),
        }
    }
}

impl EndedSessions {
    /// Step one, under the table lock as `s` leaves the table.
    pub(super) fn take_over(&self, s: &SessionShared) -> Traffic {
        let t = Traffic::of(s);
        self.add(t);
        t
    }

    /// Step two, once `s`'s media task has let it go.
    pub(super) fn finish(&self, s: &SessionShared, taken: Traffic) {
        self.add(Traffic::of(s).since(taken));
        let rx = s.rx.to_proto();
        if rx.packets > 0 {
            self.loss.observe(loss_ratio(rx.packets, rx.packets_lost));
            self.jitter.observe(rx.jitter_ms / 1000.0);
        }
    }

    fn add(&self, t: Traffic) {
        self.rx_packets.fetch_add(t.rx_packets, Ordering::Relaxed);
        self.rx_bytes.fetch_add(t.rx_bytes, Ordering::Relaxed);
        self.tx_packets.fetch_add(t.tx_packets, Ordering::Relaxed);
        self.tx_bytes.fetch_add(t.tx_bytes, Ordering::Relaxed);
    }

    fn totals(&self) -> Traffic {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Traffic {
            rx_packets: g(&self.rx_packets),
            rx_bytes: g(&self.rx_bytes),
            tx_packets: g(&self.tx_packets),
            tx_bytes: g(&self.tx_bytes),
        }
    }
}

/// Lost over expected; duplicates (negative loss) count as none.
fn loss_ratio(received: u64, lost: i64) -> f64 {
    let lost = u64::try_from(lost).unwrap_or(0);
    let expected = received.saturating_add(lost);
    if expected == 0 {
        return 0.0;
    }
    lost as f64 / expected as f64
}

/// The receive quality of the live sessions that have received RTP.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LiveQuality {
    /// Sessions that have received RTP.
    pub receiving: usize,
    /// Their worst jitter, seconds.
    pub jitter_max: f64,
    /// Their mean jitter, seconds.
    pub jitter_mean: f64,
    /// Their worst loss ratio.
    pub loss_max: f64,
}

impl Node {
    /// RTP packets and bytes since start, destroyed sessions included;
    /// never decreases.
    pub fn traffic(&self) -> Traffic {
        let table = self.table();
        let mut total = self.inner.ctx.counters.ended.totals();
        for e in table.sessions.values() {
            total.add(Traffic::of(&e.shared));
        }
        total
    }

    /// Receive quality of the live sessions.
    pub fn live_quality(&self) -> LiveQuality {
        let mut q = LiveQuality::default();
        let mut jitter_sum = 0.0;
        for s in self.sessions() {
            let rx = s.rx.to_proto();
            if rx.packets == 0 {
                continue;
            }
            let jitter = rx.jitter_ms / 1000.0;
            q.receiving += 1;
            jitter_sum += jitter;
            q.jitter_max = q.jitter_max.max(jitter);
            q.loss_max = q.loss_max.max(loss_ratio(rx.packets, rx.packets_lost));
        }
        if q.receiving > 0 {
            q.jitter_mean = jitter_sum / q.receiving as f64;
        }
        q
    }

    /// What destroyed sessions counted (their histograms are registered
    /// with the metrics).
    pub fn ended_sessions(&self) -> &EndedSessions {
        &self.inner.ctx.counters.ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_ratio_is_lost_over_expected() {
        assert_eq!(loss_ratio(0, 0), 0.0);
        assert_eq!(loss_ratio(90, 10), 0.1);
        assert_eq!(loss_ratio(10, -3), 0.0, "duplicates are not negative loss");
    }
}
