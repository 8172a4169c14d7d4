//! Per-session, per-direction RTP statistics.
//!
//! [`DirectionCounters`] are atomics written by the session's media task and
//! read by the admin and health handlers, so readers never block the packet
//! path. [`ReceiverState`] is the RFC 3550 receive-side bookkeeping (sequence
//! extension, loss, interarrival jitter), owned by the media task alone.

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
        let extended_max = u64::from(self.cycles) + u64::from(self.max_seq);
        let expected = extended_max + 1 - u64::from(self.base_seq);
        (expected as i64 - self.received as i64, self.jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn new_ssrc_restarts_accounting() {
        let mut r = ReceiverState::default();
        r.on_packet(7, 100, 0, 0);
        let (lost, _) = r.on_packet(8, 5000, 0, 0);
        assert_eq!(lost, 0);
    }
}
