//! Fuzz the per-datagram media path: a sequence of datagrams fed to a real
//! bridged relay (two legs on loopback sockets, as `fixture::bridged` builds
//! for the benchmarks), through `Relay::prepare_rtp` (RTP header parse,
//! payload type check incl. telephone-event, latching, RFC 3550 receive
//! stats, header rewrite, G.711 transcoding) and `Relay::on_rtcp`, and
//! through `ReceiverState` on a fuzz-driven clock. Beyond "no panic":
//! - a relayed packet was valid RTP with a negotiated payload type; the
//!   rewritten one keeps its length, CSRCs, extension and payload (or the
//!   payload's G.711 transcoding), carries the out leg's payload type and one
//!   constant SSRC per leg, and goes to an address that leg knows;
//! - while the source SSRC stays the same, sequence numbers and timestamps
//!   are shifted by one constant offset (continuity), and a new source
//!   stream is marked;
//! - the first valid packet from the SDP address of a fresh leg is relayed;
//! - receive stats: jitter finite and >= 0, no loss on a gapless stream.
//!
//! Input: byte 0 picks the legs' codecs; then records of
//! `[control] [length] [length bytes]` (control: bit 0 leg, bit 1 RTCP,
//! bits 2-3 source, bit 4 pad to the receive buffer size).
//!
//! cargo +nightly fuzz run rtp_relay -- -max_total_time=600
#![no_main]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rtp_types::RtpPacket;
use swrtp::config::PortRange;
use swrtp::ports::PortPool;
use swrtp::relay::{BUF_LEN, fixture};
use swrtp::sdp::AudioCodec;
use swrtp::stats::ReceiverState;

/// Fixture legs negotiate telephone-event on this payload type.
const TE_PT: u8 = 101;

struct World {
    rt: tokio::runtime::Runtime,
    pool: PortPool,
    /// peer A, peer B, a stranger on 127.0.0.1, a stranger on 127.0.0.2.
    /// Bound so that whatever the relay sends has a harmless destination.
    _socks: Vec<UdpSocket>,
    addrs: Vec<SocketAddr>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime");
        let pool = PortPool::new(
            PortRange {
                min: 46_000,
                max: 46_199,
            },
            IpAddr::from([127, 0, 0, 1]),
        );
        let socks: Vec<UdpSocket> = ["127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.2:0"]
            .iter()
            .map(|a| UdpSocket::bind(a).expect("bind loopback"))
            .collect();
        let addrs = socks
            .iter()
            .map(|s| s.local_addr().expect("addr"))
            .collect();
        World {
            rt,
            pool,
            _socks: socks,
            addrs,
        }
    })
}

fn codec(bit: bool) -> AudioCodec {
    if bit {
        AudioCodec::Pcma
    } else {
        AudioCodec::Pcmu
    }
}

/// What a direction (packets received on leg `i`, sent on the other) did last.
#[derive(Default)]
struct Direction {
    /// `(source SSRC, seq offset, ts offset)` of the last relayed packet.
    last: Option<(u32, u16, u32)>,
    /// The out leg's SSRC, once seen.
    out_ssrc: Option<u32>,
    /// Something was relayed from leg `i` (so it may be latched).
    relayed: bool,
    /// A source other than the SDP address sent on leg `i`.
    stranger: bool,
}

fn check_stats(
    states: &mut HashMap<u32, (ReceiverState, Option<u16>, bool)>,
    p: &RtpPacket<'_>,
    clock: u32,
) {
    let (state, prev_seq, gapless) = states.entry(p.ssrc()).or_default();
    let seq = p.sequence_number();
    *gapless &= prev_seq.is_none_or(|s| s.wrapping_add(1) == seq);
    if prev_seq.is_none() {
        *gapless = true;
    }
    *prev_seq = Some(seq);
    // Feed a lone stream per SSRC, as the relay's per-leg state would see it.
    let (lost, jitter) = state.on_packet(p.ssrc(), seq, p.timestamp(), clock);
    assert!(jitter.is_finite() && jitter >= 0.0, "jitter {jitter}");
    if *gapless {
        assert_eq!(lost, 0, "gapless stream reports loss");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let w = world();
    {
        let _guard = w.rt.enter();
        run(w, flags, rest);
    }
    // Closed sockets leave the reactor on its next turn; a runtime never
    // driven keeps them all (1 GB in a few minutes). Turn it once.
    w.rt.block_on(tokio::task::yield_now());
});

fn run(w: &World, flags: u8, mut rest: &[u8]) {
    let codecs = [codec(flags & 1 != 0), codec(flags & 2 != 0)];
    let (peer_a, peer_b) = (w.addrs[0], w.addrs[1]);
    let peers = [peer_a, peer_b];
    let Some(mut relay) = fixture::bridged(&w.pool, peer_a, peer_b, codecs[0], codecs[1]) else {
        panic!("port pool exhausted: relays are not returning their ports");
    };
    let mut dirs = [Direction::default(), Direction::default()];
    // Sources each leg has seen (where it may legitimately send to).
    let mut seen: [Vec<SocketAddr>; 2] = [vec![peer_a], vec![peer_b]];
    let mut stats = HashMap::new();
    let mut clock = 0u32;

    while let [ctl, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (body, next) = tail.split_at(len);
        rest = next;
        let i = usize::from(ctl & 1);
        let other = 1 - i;
        let src = match (ctl >> 2) & 3 {
            0 => peers[i],
            1 => w.addrs[2],
            2 => w.addrs[3],
            _ => peers[other],
        };
        let mut packet = body.to_vec();
        if ctl & 0x10 != 0 {
            packet.resize(BUF_LEN + 16, 0);
        }
        if src != peers[i] {
            dirs[i].stranger = true;
        }
        if !seen[i].contains(&src) {
            seen[i].push(src);
        }
        let n = relay.load(&packet);
        if ctl & 2 != 0 {
            relay.on_rtcp(i, n, src, false);
            continue;
        }
        let input = packet.get(..n).expect("loaded prefix").to_vec();
        let parsed = RtpPacket::parse(&input).ok();
        if let Some(p) = &parsed {
            clock = clock.wrapping_add(u32::from(p.payload().first().copied().unwrap_or(160)) * 8);
            check_stats(&mut stats, p, clock);
        }
        let fresh_leg = !dirs[i].relayed && !dirs[i].stranger;
        let result = relay.prepare_rtp(i, n, src);
        let Some((dest, payload_len, _)) = result else {
            if let Some(p) = &parsed
                && fresh_leg
                && src == peers[i]
                && n < BUF_LEN
                && (p.payload_type() == codecs[i].static_pt() || p.payload_type() == TE_PT)
            {
                panic!("first valid packet from the SDP address was not relayed: {p:?}");
            }
            continue;
        };
        dirs[i].relayed = true;
        let p = parsed.expect("a relayed packet parsed as RTP");
        assert!(n < BUF_LEN);
        let in_pt = p.payload_type();
        let te = in_pt == TE_PT;
        assert!(te || in_pt == codecs[i].static_pt(), "pt {in_pt} relayed");
        assert!(
            seen[other].contains(&dest),
            "sent to {dest}, unknown to leg {other}"
        );
        let out_buf = relay.buffer(n).to_vec();
        let out = RtpPacket::parse(&out_buf).expect("rewritten packet is RTP");
        assert_eq!(out_buf.len(), input.len());
        assert_eq!(out.payload_len(), p.payload_len());
        assert_eq!(payload_len, p.payload_len());
        assert_eq!(out.payload_offset(), p.payload_offset());
        assert_eq!(out.padding(), p.padding());
        assert!(out.csrc().eq(p.csrc()));
        assert_eq!(out.extension(), p.extension());
        assert_eq!(
            out.payload_type(),
            if te { TE_PT } else { codecs[other].static_pt() }
        );
        let mut want = p.payload().to_vec();
        if !te && codecs[i] != codecs[other] {
            codecs[i]
                .law()
                .transcode_in_place(codecs[other].law(), &mut want);
        }
        assert_eq!(out.payload(), &want[..], "payload altered");
        let d = &mut dirs[i];
        assert_eq!(
            *d.out_ssrc.get_or_insert(out.ssrc()),
            out.ssrc(),
            "out SSRC changed"
        );
        let seq_off = out.sequence_number().wrapping_sub(p.sequence_number());
        let ts_off = out.timestamp().wrapping_sub(p.timestamp());
        match d.last {
            Some((ssrc, so, to)) if ssrc == p.ssrc() => {
                assert_eq!(
                    (so, to),
                    (seq_off, ts_off),
                    "discontinuity within one stream"
                );
                assert_eq!(
                    out.marker_bit(),
                    p.marker_bit(),
                    "marker changed mid-stream"
                );
            }
            _ => assert!(out.marker_bit(), "new stream not marked"),
        }
        d.last = Some((p.ssrc(), seq_off, ts_off));
    }
}
