//! The per-packet path of the media task: RTP in ([`Relay::on_rtp`]: parse,
//! latch, stats, header rewrite, transcoding, send), RTCP in
//! ([`Relay::on_rtcp`]), and the packets held for the first bridge.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use rtp_types::{RtpPacket, RtpPacketMut};
use tokio::time::Instant;

use super::{BUF_LEN, HOLD_MAX_AGE, HOUSEKEEPING, Leg, Relay, dtmf, split};
use crate::session::MediaContext;
use crate::stats::now_ms;

#[cfg(doc)]
use super::HOLD_PACKETS;
#[cfg(doc)]
use crate::hold;

impl Relay {
    /// The per-packet path for RTP from leg `i`: check, account, rewrite
    /// in place, send to the bridge peer. Call right after the receive
    /// returned: the relay latency is measured from here to the send's end.
    pub fn on_rtp(&mut self, i: usize, n: usize, src: SocketAddr) {
        let received = Instant::now();
        let Some((dest, payload_len, at)) = self.prepare_rtp_at(i, n, src, received) else {
            return;
        };
        let (_, to) = split(&mut self.legs, i);
        if let Some(to) = to
            && let Some(data) = self.buf.get(..n)
            && to.ports.rtp.try_send_to(data, dest).is_ok()
        {
            let sent = Instant::now();
            to.shared.tx.count(payload_len, at);
            self.ctx.counters.relayed.fetch_add(1, Ordering::Relaxed);
            let took = sent.saturating_duration_since(received);
            let latency = self.latency.get_or_insert_with(Box::default);
            latency.record(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
            if sent.saturating_duration_since(self.last_flush) >= HOUSEKEEPING {
                latency.flush_into(&self.ctx.counters.latency);
                self.last_flush = sent;
            }
        }
    }

    /// Everything `on_rtp` does before the send, on the `n` bytes in the
    /// task's buffer: parse, latch, stats, header rewrite (and transcoding).
    /// Returns where to send and the payload length, or `None` when the
    /// packet is dropped or has nowhere to go.
    pub fn prepare_rtp(
        &mut self,
        i: usize,
        n: usize,
        src: SocketAddr,
    ) -> Option<(SocketAddr, usize, u64)> {
        self.prepare_rtp_at(i, n, src, Instant::now())
    }

    fn prepare_rtp_at(
        &mut self,
        i: usize,
        n: usize,
        src: SocketAddr,
        now: Instant,
    ) -> Option<(SocketAddr, usize, u64)> {
        let (from, to) = split(&mut self.legs, i);
        let from = from?;
        // Early latching (module docs, rule 5): a leg that has no remote
        // address yet latches to the first valid packet.
        let need = if from.awaiting_address() && from.latch.address().is_none() {
            1
        } else {
            self.ctx.latch_packets
        };
        let data = self.buf.get(..n)?;
        let (ssrc, seq, ts, pt, payload_len) = match RtpPacket::parse(data) {
            Ok(p) => (
                p.ssrc(),
                p.sequence_number(),
                p.timestamp(),
                p.payload_type(),
                p.payload_len(),
            ),
            Err(_) => {
                from.drop_packet(&self.ctx);
                return None;
            }
        };
        let known_pt =
            from.media.codec.is_none() || pt == from.media.pt || Some(pt) == from.media.te_pt;
        if n == BUF_LEN || !known_pt {
            from.drop_packet(&self.ctx);
            return None;
        }
        let was = from.latch.address();
        if !from.latch.accept(src, ssrc, from.sdp_rtp, need) {
            from.drop_packet(&self.ctx);
            return None;
        }
        if from.latch.address() != was {
            from.publish_remote();
        }
        from.last_rx = now;
        from.armed = true;
        if from.shared.timed_out.load(Ordering::Relaxed) {
            from.shared.timed_out.store(false, Ordering::Relaxed);
        }
        let at = now_ms();
        from.shared.rx.count(payload_len, at);
        if Some(pt) == from.media.te_pt
            && let Some(data) = self.buf.get(..n)
        {
            dtmf::on_event_packet(from, to.as_deref(), ts, data, &self.ctx);
        }
        if Some(pt) != from.media.te_pt {
            let arrival = (now.duration_since(from.epoch).as_micros() as u64 * 8 / 1000) as u32;
            let (lost, jitter) = from.rx.on_packet(ssrc, seq, ts, arrival);
            from.shared.rx.set_quality(lost, jitter / 8.0);
        }
        let Some(to) = to else {
            // Not bridged. Before its first bridge a leg keeps its last few
            // packets for the bridge to relay (module docs, "Before the
            // first bridge"); otherwise they are counted, then dropped.
            let evicted = match (from.bridged_once, self.buf.get(..n)) {
                (false, Some(data)) => from.hold(data, now),
                _ => true,
            };
            if evicted {
                self.ctx.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            return None;
        };
        let header = Header { ssrc, seq, ts, pt };
        let dest = rewrite(from, to, &self.ctx, self.buf.get_mut(..n)?, header)?;
        Some((dest, payload_len, at))
    }

    /// On the first bridge: relay what the legs received before it (at most
    /// [`HOLD_PACKETS`] each, none older than [`HOLD_MAX_AGE`]).
    pub(super) fn relay_held(&mut self) {
        let now = Instant::now();
        for i in 0..self.legs.len() {
            let Some(held) = self.legs.get_mut(i).and_then(|l| l.held.take()) else {
                continue;
            };
            for (at, packet) in held.iter() {
                if now.saturating_duration_since(*at) > HOLD_MAX_AGE {
                    self.ctx.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let n = packet.len().min(self.buf.len());
                let (Some(dst), Some(src)) = (self.buf.get_mut(..n), packet.get(..n)) else {
                    continue;
                };
                dst.copy_from_slice(src);
                let Ok(p) = RtpPacket::parse(&*dst) else {
                    continue;
                };
                let header = Header {
                    ssrc: p.ssrc(),
                    seq: p.sequence_number(),
                    ts: p.timestamp(),
                    pt: p.payload_type(),
                };
                let payload_len = p.payload_len();
                let (Some(from), Some(to)) = split(&mut self.legs, i) else {
                    break;
                };
                if let Some(dest) = rewrite(from, to, &self.ctx, dst, header)
                    && to.ports.rtp.try_send_to(dst, dest).is_ok()
                {
                    to.shared.tx.count(payload_len, now_ms());
                    self.ctx.counters.relayed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// The per-packet path for RTCP from leg `i`: sanity-check, source-check
    /// and forward unchanged. Accepted RTCP is a sign of life for the RTP
    /// timeout ([`hold`]). `muxed`: it came on the RTP port (RFC 5761); it
    /// is forwarded as any RTCP, but does not move where we send RTCP.
    pub fn on_rtcp(&mut self, i: usize, n: usize, src: SocketAddr, muxed: bool) {
        let (from, to) = split(&mut self.legs, i);
        let Some(from) = from else { return };
        let Some(data) = self.buf.get(..n) else {
            return;
        };
        let valid = (8..BUF_LEN).contains(&n)
            && n.is_multiple_of(4)
            && data.first().map(|b| b >> 6) == Some(2)
            && data.get(1).is_some_and(|pt| (192..=223).contains(pt));
        let expected_ip = from.latch.address().or(from.sdp_rtp).map(|a| a.ip());
        if !valid || expected_ip != Some(src.ip()) {
            return from.drop_packet(&self.ctx);
        }
        from.last_rx = Instant::now();
        if !muxed {
            from.rtcp_dest = Some(src);
        }
        let Some(to) = to else { return };
        let dest = to.rtcp_dest.or(to.sdp_rtcp);
        if let Some(dest) = dest
            && to.ports.rtcp.try_send_to(data, dest).is_ok()
        {
            self.ctx.counters.relayed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// RTP header fields the sending half of the relay path needs.
#[derive(Debug, Clone, Copy)]
struct Header {
    ssrc: u32,
    seq: u16,
    ts: u32,
    pt: u8,
}

/// The sending half of the relay path, `from` -> `to`, on the packet in
/// `data`: direction check, destination, payload type mapping, header rewrite
/// and transcoding, in place. Returns where to send it.
fn rewrite(
    from: &Leg,
    to: &mut Leg,
    ctx: &MediaContext,
    data: &mut [u8],
    h: Header,
) -> Option<SocketAddr> {
    if !to.media.direction.has_send() || !from.media.direction.has_recv() || to.dtmf_busy() {
        return None;
    }
    let dest = to.rtp_dest()?;
    let out_pt = if Some(h.pt) == from.media.te_pt {
        match to.media.te_pt {
            Some(p) => p,
            None => {
                from.drop_packet(ctx);
                return None;
            }
        }
    } else {
        to.media.pt
    };
    let step = to.media.ptime * 8;
    let (out_seq, out_ts, fresh) = to.tx.map(h.ssrc, h.seq, h.ts, step);
    let Ok(mut p) = RtpPacketMut::parse(data) else {
        return None;
    };
    if p.set_payload_type(out_pt).is_err() {
        from.drop_packet(ctx);
        return None;
    }
    p.set_sequence_number(out_seq);
    p.set_timestamp(out_ts);
    p.set_ssrc(to.tx.ssrc);
    if fresh {
        p.set_marker_bit(true);
    }
    if out_pt == to.media.pt
        && let (Some(a), Some(b)) = (from.media.codec, to.media.codec)
        && a != b
    {
        a.law().transcode_in_place(b.law(), p.payload_mut());
    }
    Some(dest)
}
