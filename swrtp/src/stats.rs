//! Per-session, per-direction RTP statistics, and the relay's own latency.
//!
//! [`DirectionCounters`] are atomics written by the session's media task and
//! read by the admin and health handlers, so readers never block the packet
//! path. [`ReceiverState`] is the RFC 3550 receive-side bookkeeping (sequence
//! extension, loss, interarrival jitter), owned by the media task alone.
//!
//! [`LocalLatency`] / [`RelayLatency`]: a fixed log-linear histogram of the
//! time swrtp adds to each relayed packet. Each media task records into its
//! own plain-integer copy (no atomics, no allocation per packet) and adds it
//! into the node-wide atomic one about once a second and when it ends, so
//! media tasks on different cores never share a cache line per packet.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchboard_proto::media::v1 as pb;

/// Counters of one direction.
#[derive(Debug, Default)]
pub struct DirectionCounters {
    packets: AtomicU64,
    bytes: AtomicU64,
    lost: AtomicI64,
    /// f64 milliseconds, as bits.
    jitter_ms: AtomicU64,
    /// Unix time in milliseconds of the last packet, 0 = never.
    last_at_ms: AtomicU64,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl DirectionCounters {
    /// Count one packet of `payload_len` bytes at `at_ms`.
    pub fn count(&self, payload_len: usize, at_ms: u64) {
        self.packets.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(payload_len as u64, Ordering::Relaxed);
        self.last_at_ms.store(at_ms, Ordering::Relaxed);
    }

    /// Publish receive-side loss and jitter.
    pub fn set_quality(&self, lost: i64, jitter_ms: f64) {
        self.lost.store(lost, Ordering::Relaxed);
        self.jitter_ms.store(jitter_ms.to_bits(), Ordering::Relaxed);
    }

    /// Packets counted.
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    /// Snapshot as proto.
    pub fn to_proto(&self) -> pb::DirectionStats {
        let last = self.last_at_ms.load(Ordering::Relaxed);
        pb::DirectionStats {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            packets_lost: self.lost.load(Ordering::Relaxed),
            jitter_ms: f64::from_bits(self.jitter_ms.load(Ordering::Relaxed)),
            last_packet_at: (last != 0)
                .then(|| switchboard_proto::timestamp(UNIX_EPOCH + Duration::from_millis(last))),
        }
    }
}

/// RFC 3550 A.1/A.3/A.8 receive state for one SSRC.
#[derive(Debug, Clone, Default)]
pub struct ReceiverState {
    ssrc: u32,
    started: bool,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    received: u64,
    last_transit: Option<i64>,
    /// Jitter in timestamp units (RFC 3550 §6.4.1 `J`).
    jitter: f64,
}

impl ReceiverState {
    /// Account one packet; `arrival` is the arrival time in RTP timestamp
    /// units (clock rate of the stream). Returns `(lost, jitter in units)`.
    pub fn on_packet(&mut self, ssrc: u32, seq: u16, ts: u32, arrival: u32) -> (i64, f64) {
        if !self.started || ssrc != self.ssrc {
            *self = ReceiverState {
                ssrc,
                started: true,
                base_seq: u32::from(seq),
                max_seq: seq,
                ..Default::default()
            };
        } else {
            let delta = seq.wrapping_sub(self.max_seq);
            if delta != 0 && delta < 0x8000 {
                if seq < self.max_seq {
                    self.cycles = self.cycles.wrapping_add(1 << 16);
                }
                self.max_seq = seq;
            }
        }
        self.received += 1;
        let transit = i64::from(arrival) - i64::from(ts);
        if let Some(prev) = self.last_transit {
            // Wrapping differences of 32-bit clocks, as RFC 3550 A.8 does.
            let d = (transit - prev) as i32;
            let d = f64::from(d.unsigned_abs());
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
        // 32-bit counters that wrap, as in RFC 3550 A.3: after 2^32 sequence
        // numbers (65,536 wraps, which a peer can send in ~200k packets)
        // `cycles` is back at 0, and wider arithmetic would underflow.
        let extended_max = self.cycles.wrapping_add(u32::from(self.max_seq));
        let expected = extended_max.wrapping_sub(self.base_seq).wrapping_add(1);
        (i64::from(expected) - self.received as i64, self.jitter)
    }
}

/// Sub-buckets per power of two: 2^3 = 8, so a bucket is at most 12.5%
/// wide (values below 8 ns are exact).
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Buckets: exact 0..8 ns, then 8 per power of two up to 2^34 ns (~17 s);
/// larger values land in the last bucket.
pub const LATENCY_BUCKETS: usize = 256;

/// Bucket of a value in nanoseconds.
pub fn latency_bucket(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let msb = 63 - ns.leading_zeros(); // >= SUB_BITS
    let shift = msb - SUB_BITS;
    let group = shift as usize + 1;
    let sub = ((ns >> shift) as usize) & (SUB - 1);
    (group * SUB + sub).min(LATENCY_BUCKETS - 1)
}

/// Largest value (ns) counted in bucket `i`.
pub fn latency_bucket_upper(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let group = (i / SUB) as u32;
    let sub = (i % SUB) as u64;
    let shift = group - 1;
    ((SUB as u64 + sub) << shift) + ((1u64 << shift) - 1)
}

/// A media task's own latency histogram: plain integers, written per packet
/// by that task only. 1 KiB, allocated once by the first relayed packet.
#[derive(Debug, Clone)]
pub struct LocalLatency {
    counts: [u32; LATENCY_BUCKETS],
    packets: u32,
    sum_ns: u64,
    max_ns: u64,
}

impl Default for LocalLatency {
    fn default() -> Self {
        Self {
            counts: [0; LATENCY_BUCKETS],
            packets: 0,
            sum_ns: 0,
            max_ns: 0,
        }
    }
}

impl LocalLatency {
    /// Record one packet that took `ns`.
    pub fn record(&mut self, ns: u64) {
        if let Some(c) = self.counts.get_mut(latency_bucket(ns)) {
            *c = c.saturating_add(1);
        }
        self.packets = self.packets.saturating_add(1);
        self.sum_ns = self.sum_ns.saturating_add(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    /// Packets recorded since the last flush.
    pub fn packets(&self) -> u32 {
        self.packets
    }

    /// Add everything into `node` and start from zero.
    pub fn flush_into(&mut self, node: &RelayLatency) {
        if self.packets == 0 {
            return;
        }
        for (c, n) in self.counts.iter_mut().zip(node.counts.iter()) {
            if *c != 0 {
                n.fetch_add(u64::from(*c), Ordering::Relaxed);
                *c = 0;
            }
        }
        node.packets
            .fetch_add(u64::from(self.packets), Ordering::Relaxed);
        node.sum_ns.fetch_add(self.sum_ns, Ordering::Relaxed);
        node.max_ns.fetch_max(self.max_ns, Ordering::Relaxed);
        self.packets = 0;
        self.sum_ns = 0;
        self.max_ns = 0;
    }
}

/// The node-wide latency histogram (atomics), read by admin `GetStatus`.
#[derive(Debug)]
pub struct RelayLatency {
    counts: [AtomicU64; LATENCY_BUCKETS],
    packets: AtomicU64,
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Default for RelayLatency {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            packets: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }
}

impl RelayLatency {
    /// Snapshot as proto: percentiles (each the upper bound of the bucket
    /// holding that rank, so never an underestimate) and the non-empty buckets.
    pub fn to_proto(&self) -> switchboard_proto::admin::v1::RelayLatency {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let max_ns = self.max_ns.load(Ordering::Relaxed);
        let pct = |p: f64| -> u64 {
            if total == 0 {
                return 0;
            }
            let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return latency_bucket_upper(i).min(max_ns);
                }
            }
            max_ns
        };
        let (bucket_upper_ns, bucket_counts) = counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c != 0)
            .map(|(i, c)| (latency_bucket_upper(i), *c))
            .unzip();
        switchboard_proto::admin::v1::RelayLatency {
            packets: total,
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
            max_ns,
            p50_ns: pct(50.0),
            p90_ns: pct(90.0),
            p99_ns: pct(99.0),
            p999_ns: pct(99.9),
            bucket_upper_ns,
            bucket_counts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_log_linear_and_contiguous() {
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(7), 7);
        assert_eq!(latency_bucket(8), 8);
        assert_eq!(latency_bucket(15), 15);
        assert_eq!(latency_bucket(16), 16);
        assert_eq!(latency_bucket(17), 16);
        for i in 0..LATENCY_BUCKETS - 1 {
            let upper = latency_bucket_upper(i);
            assert_eq!(latency_bucket(upper), i, "upper of {i}");
            assert_eq!(latency_bucket(upper + 1), i + 1, "next after {i}");
        }
        assert_eq!(latency_bucket(u64::MAX), LATENCY_BUCKETS - 1);
        // Width stays within 12.5% of the lower bound.
        for v in [1_000u64, 50_000, 999_999, 12_345_678] {
            let i = latency_bucket(v);
            let lo = latency_bucket_upper(i - 1) + 1;
            let hi = latency_bucket_upper(i);
            assert!(lo <= v && v <= hi);
            assert!((hi - lo + 1) * 8 <= lo, "{v}: {lo}..={hi}");
        }
    }

    #[test]
    fn relay_latency_percentiles_from_flushed_tasks() {
        let node = RelayLatency::default();
        let mut a = LocalLatency::default();
        let mut b = LocalLatency::default();
        for _ in 0..98 {
            a.record(2_000);
        }
        b.record(500_000);
        b.record(3_000_000);
        a.flush_into(&node);
        b.flush_into(&node);
        assert_eq!(a.packets(), 0);
        let p = node.to_proto();
        assert_eq!(p.packets, 100);
        assert_eq!(p.max_ns, 3_000_000);
        assert!((2_000..2_300).contains(&p.p50_ns), "{}", p.p50_ns);
        assert!((500_000..570_000).contains(&p.p99_ns), "{}", p.p99_ns);
        assert_eq!(p.p999_ns, 3_000_000);
        assert_eq!(p.bucket_counts.iter().sum::<u64>(), 100);
        assert_eq!(p.bucket_upper_ns.len(), 3);
        assert_eq!(p.sum_ns, 98 * 2_000 + 3_500_000);
    }

    #[test]
    fn in_order_stream_has_no_loss_or_jitter() {
        let mut r = ReceiverState::default();
        let mut out = (0, 0.0);
        for i in 0..100u32 {
            out = r.on_packet(7, 65500u16.wrapping_add(i as u16), i * 160, 1000 + i * 160);
        }
        assert_eq!(out, (0, 0.0));
    }

    #[test]
    fn gaps_count_as_loss_across_wrap() {
        let mut r = ReceiverState::default();
        r.on_packet(7, 65534, 0, 0);
        let (lost, _) = r.on_packet(7, 2, 4 * 160, 4 * 160);
        assert_eq!(lost, 3); // 65535, 0, 1
    }

    #[test]
    fn duplicates_count_negative_loss() {
        let mut r = ReceiverState::default();
        r.on_packet(7, 10, 0, 0);
        let (lost, _) = r.on_packet(7, 10, 0, 0);
        assert_eq!(lost, -1);
    }

    #[test]
    fn jitter_follows_rfc3550() {
        let mut r = ReceiverState::default();
        r.on_packet(7, 1, 0, 0);
        let (_, j) = r.on_packet(7, 2, 160, 160 + 16);
        assert!((j - 1.0).abs() < 1e-9, "{j}");
    }

    #[test]
    fn sequence_cycle_counter_wraps_without_overflow() {
        // Found while writing the rtp_relay fuzz target: 65,536 sequence
        // wraps bring `cycles` back to 0 below `base_seq`, and the expected
        // count underflowed (a panic with overflow checks). Jumps of 0x7fff
        // are "in order", so a peer gets there in ~131k packets.
        let mut r = ReceiverState::default();
        let mut seq = 1000u16;
        let mut out = (0, 0.0);
        for _ in 0..(2 * 65_536 + 8) {
            out = r.on_packet(7, seq, 0, 0);
            seq = seq.wrapping_add(0x7fff);
        }
        assert!(out.0 > -(2 * 65_536 + 8), "{out:?}");
    }

    #[test]
    fn new_ssrc_restarts_accounting() {
        let mut r = ReceiverState::default();
        r.on_packet(7, 100, 0, 0);
        let (lost, _) = r.on_packet(8, 5000, 0, 0);
        assert_eq!(lost, 0);
    }
}
