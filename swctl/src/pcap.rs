//! A call's captured SIP messages as a classic libpcap file
//! (<https://wiki.wireshark.org/Development/LibpcapFileFormat>): what
//! `swctl calls pcap` writes, for Wireshark, tshark and sngrep.
//!
//! - Link type Ethernet (1), microsecond timestamps, every message one
//!   frame with synthetic MAC addresses (swbd `02:53:57:42:44:00`, its
//!   peers `02:00:00:00:00:01`), IPv4 (with header checksum) or IPv6,
//!   then UDP or TCP with the checksum over the pseudo-header.
//! - UDP messages are UDP datagrams, as they were.
//! - TCP messages are segments of one TCP stream per address pair, `PSH|ACK`,
//!   sequence numbers running on from 1 per direction and the ACK the other
//!   direction's next sequence number; there is no handshake (the capture
//!   starts mid-connection, as a capture on a live link would). Wireshark
//!   dissects them as SIP over TCP.
//! - A message swbd cut (over 16 KiB) is written cut, with its original
//!   length in the record header and in the IP/UDP/TCP lengths, the way a
//!   capture with a short snap length looks ("packet size limited during
//!   capture"); its transport checksum covers only what was kept.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use switchboard_proto::admin::v1 as pb;

/// `LINKTYPE_ETHERNET`.
const LINKTYPE_ETHERNET: u32 = 1;
/// Snap length written in the header: the largest frame.
const SNAPLEN: u32 = 262_144;
const MAC_SWBD: [u8; 6] = [0x02, 0x53, 0x57, 0x42, 0x44, 0x00];
const MAC_PEER: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// The pcap file of `capture` (its messages in the order given).
pub fn write(capture: &pb::CallCapture) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&SNAPLEN.to_le_bytes());
    out.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    let mut tcp = TcpStreams::default();
    let mut ip_id: u16 = 0;
    for m in &capture.messages {
        ip_id = ip_id.wrapping_add(1);
        let (frame, wire_len) = frame(m, &mut tcp, ip_id);
        let at = m.at.unwrap_or_default();
        let secs = u32::try_from(at.seconds.max(0)).unwrap_or(u32::MAX);
        let usecs = u32::try_from(at.nanos.clamp(0, 999_999_999) / 1000).unwrap_or(0);
        out.extend_from_slice(&secs.to_le_bytes());
        out.extend_from_slice(&usecs.to_le_bytes());
        out.extend_from_slice(&u32::try_from(frame.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&u32::try_from(wire_len).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    out
}

/// Sequence numbers of the TCP streams, per (source, destination).
#[derive(Default)]
struct TcpStreams {
    next: HashMap<(SocketAddr, SocketAddr), u32>,
}

impl TcpStreams {
    /// (seq, ack) for `len` bytes from `src` to `dst`.
    fn segment(&mut self, src: SocketAddr, dst: SocketAddr, len: usize) -> (u32, u32) {
        let ack = *self.next.entry((dst, src)).or_insert(1);
        let next = self.next.entry((src, dst)).or_insert(1);
        let seq = *next;
        *next = next.wrapping_add(u32::try_from(len).unwrap_or(u32::MAX));
        (seq, ack)
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Both addresses in one family (an IPv4 one mapped when the other is IPv6).
fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v6 = |s: SocketAddr| match s.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), s.port()),
        IpAddr::V6(_) => s,
    };
    if a.is_ipv4() == b.is_ipv4() {
        (a, b)
    } else {
        (v6(a), v6(b))
    }
}

/// One Ethernet frame (as kept) and its length on the wire.
fn frame(m: &pb::CapturedMessage, tcp: &mut TcpStreams, ip_id: u16) -> (Vec<u8>, usize) {
    let (src, dst) = same_family(addr(&m.source), addr(&m.destination));
    let payload = &m.raw;
    let wire_payload = match m.original_length as usize {
        0 => payload.len(),
        n => n.max(payload.len()),
    };
    let is_tcp = m.transport == pb::CaptureTransport::Tcp as i32;
    let (proto, mut l4) = if is_tcp {
        let (seq, ack) = tcp.segment(src, dst, wire_payload);
        let mut h = Vec::with_capacity(20 + payload.len());
        h.extend_from_slice(&src.port().to_be_bytes());
        h.extend_from_slice(&dst.port().to_be_bytes());
        h.extend_from_slice(&seq.to_be_bytes());
        h.extend_from_slice(&ack.to_be_bytes());
        h.push(5 << 4); // data offset: 5 words
        h.push(0x18); // PSH | ACK
        h.extend_from_slice(&65_535u16.to_be_bytes()); // window
        h.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        (PROTO_TCP, h)
    } else {
        let len = u16::try_from(8 + wire_payload).unwrap_or(u16::MAX);
        let mut h = Vec::with_capacity(8 + payload.len());
        h.extend_from_slice(&src.port().to_be_bytes());
        h.extend_from_slice(&dst.port().to_be_bytes());
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(&[0, 0]); // checksum
        (PROTO_UDP, h)
    };
    let l4_header = l4.len();
    l4.extend_from_slice(payload);
    let l4_wire_len = l4_header + wire_payload;
    let sum = transport_checksum(src.ip(), dst.ip(), proto, l4_wire_len, &l4);
    let at = if is_tcp { 16 } else { 6 };
    if let Some(c) = l4.get_mut(at..at + 2) {
        // UDP: a computed 0 is sent as all ones (RFC 768).
        let sum = if !is_tcp && sum == 0 { 0xffff } else { sum };
        c.copy_from_slice(&sum.to_be_bytes());
    }
    let mut f = Vec::with_capacity(14 + 40 + l4.len());
    let (dst_mac, src_mac) = if m.inbound {
        (MAC_SWBD, MAC_PEER)
    } else {
        (MAC_PEER, MAC_SWBD)
    };
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    let ip_header_len = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let total = u16::try_from(20 + l4_wire_len).unwrap_or(u16::MAX);
            let mut h = [0u8; 20];
            h[0] = 0x45;
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h[4..6].copy_from_slice(&ip_id.to_be_bytes());
            h[6] = 0x40; // don't fragment
            h[8] = 64; // TTL
            h[9] = proto;
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let sum = !fold(sum_words(&h));
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            f.extend_from_slice(&h);
            20
        }
        (s, d) => {
            let s = v6_of(s);
            let d = v6_of(d);
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            let mut h = [0u8; 40];
            h[0] = 0x60;
            let len = u16::try_from(l4_wire_len).unwrap_or(u16::MAX);
            h[4..6].copy_from_slice(&len.to_be_bytes());
            h[6] = proto;
            h[7] = 64; // hop limit
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
            f.extend_from_slice(&h);
            40
        }
    };
    f.extend_from_slice(&l4);
    let wire = 14 + ip_header_len + l4_wire_len;
    (f, wire)
}

fn v6_of(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// One's-complement sum of 16-bit big-endian words (odd byte padded).
fn sum_words(data: &[u8]) -> u32 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for w in &mut chunks {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([w[0], w[1]])));
    }
    if let [last] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*last) << 8);
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// UDP/TCP checksum over the pseudo-header (RFC 768, RFC 793, RFC 8200
/// §8.1) and `segment` (header with a zero checksum, then payload).
fn transport_checksum(src: IpAddr, dst: IpAddr, proto: u8, len: usize, segment: &[u8]) -> u16 {
    let mut sum = sum_words(segment);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            sum = sum.wrapping_add(sum_words(&s.octets()));
            sum = sum.wrapping_add(sum_words(&d.octets()));
            sum = sum.wrapping_add(u32::from(proto));
            sum = sum.wrapping_add(u32::try_from(len & 0xffff).unwrap_or(0));
        }
        (s, d) => {
            sum = sum.wrapping_add(sum_words(&v6_of(s).octets()));
            sum = sum.wrapping_add(sum_words(&v6_of(d).octets()));
            let len = u32::try_from(len).unwrap_or(u32::MAX);
            sum = sum.wrapping_add(len >> 16).wrapping_add(len & 0xffff);
            sum = sum.wrapping_add(u32::from(proto));
        }
    }
    !fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(
        transport: pb::CaptureTransport,
        src: &str,
        dst: &str,
        raw: &[u8],
    ) -> pb::CapturedMessage {
        pb::CapturedMessage {
            at: Some(prost_types::Timestamp {
                seconds: 1_790_000_000,
                nanos: 250_000_000,
            }),
            transport: transport as i32,
            source: src.into(),
            destination: dst.into(),
            inbound: true,
            raw: raw.to_vec(),
            original_length: 0,
        }
    }

    /// (record header fields, frame) of every record.
    fn records(file: &[u8]) -> Vec<([u32; 4], Vec<u8>)> {
        assert_eq!(&file[..4], &0xa1b2_c3d4u32.to_le_bytes());
        assert_eq!(u32::from_le_bytes(file[20..24].try_into().unwrap()), 1);
        let mut out = Vec::new();
        let mut i = 24;
        while i < file.len() {
            let f = |k: usize| u32::from_le_bytes(file[i + k..i + k + 4].try_into().unwrap());
            let h = [f(0), f(4), f(8), f(12)];
            let len = h[2] as usize;
            out.push((h, file[i + 16..i + 16 + len].to_vec()));
            i += 16 + len;
        }
        assert_eq!(i, file.len());
        out
    }

    #[test]
    fn udp_over_ipv4_with_valid_checksums() {
        let sip = b"OPTIONS sip:x SIP/2.0\r\nCall-ID: a\r\n\r\n";
        let cap = pb::CallCapture {
            messages: vec![msg(
                pb::CaptureTransport::Udp,
                "127.0.0.1:5071",
                "127.0.0.1:5060",
                sip,
            )],
            ..Default::default()
        };
        let recs = records(&write(&cap));
        assert_eq!(recs.len(), 1);
        let (h, f) = &recs[0];
        assert_eq!((h[0], h[1]), (1_790_000_000, 250_000));
        assert_eq!(h[2], h[3], "nothing cut");
        assert_eq!(f.len(), 14 + 20 + 8 + sip.len());
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        let ip = &f[14..34];
        assert_eq!(fold(sum_words(ip)), 0xffff, "IPv4 header checksum");
        assert_eq!(
            usize::from(u16::from_be_bytes([ip[2], ip[3]])),
            20 + 8 + sip.len()
        );
        let udp = &f[34..];
        assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), 5071);
        assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 5060);
        assert_eq!(
            usize::from(u16::from_be_bytes([udp[4], udp[5]])),
            8 + sip.len()
        );
        // Verifying: the sum over pseudo-header and segment is all ones.
        let check = transport_checksum(
            "127.0.0.1".parse().unwrap(),
            "127.0.0.1".parse().unwrap(),
            PROTO_UDP,
            udp.len(),
            udp,
        );
        assert_eq!(check, 0, "UDP checksum verifies");
        assert_eq!(&udp[8..], sip);
    }

    #[test]
    fn tcp_over_ipv6_runs_sequence_numbers_per_direction() {
        let a = b"INVITE sip:x SIP/2.0\r\n\r\n";
        let b = b"SIP/2.0 100 Trying\r\n\r\n";
        let cap = pb::CallCapture {
            messages: vec![
                msg(pb::CaptureTransport::Tcp, "[::1]:40000", "[::1]:5060", a),
                msg(pb::CaptureTransport::Tcp, "[::1]:5060", "[::1]:40000", b),
                msg(pb::CaptureTransport::Tcp, "[::1]:40000", "[::1]:5060", a),
            ],
            ..Default::default()
        };
        let recs = records(&write(&cap));
        let tcp = |f: &Vec<u8>| f[14 + 40..].to_vec();
        let seq_ack = |t: &[u8]| {
            (
                u32::from_be_bytes(t[4..8].try_into().unwrap()),
                u32::from_be_bytes(t[8..12].try_into().unwrap()),
            )
        };
        assert_eq!(&recs[0].1[12..14], &[0x86, 0xdd]);
        let t0 = tcp(&recs[0].1);
        let t1 = tcp(&recs[1].1);
        let t2 = tcp(&recs[2].1);
        assert_eq!(seq_ack(&t0), (1, 1));
        assert_eq!(seq_ack(&t1), (1, 1 + a.len() as u32));
        assert_eq!(seq_ack(&t2), (1 + a.len() as u32, 1 + b.len() as u32));
        assert_eq!(t0[13], 0x18, "PSH|ACK");
        let ip: IpAddr = "::1".parse().unwrap();
        assert_eq!(transport_checksum(ip, ip, PROTO_TCP, t0.len(), &t0), 0);
    }

    #[test]
    fn a_cut_message_keeps_its_wire_length() {
        let mut m = msg(
            pb::CaptureTransport::Udp,
            "127.0.0.1:1",
            "127.0.0.1:2",
            &[b'x'; 100],
        );
        m.original_length = 30_000;
        let recs = records(&write(&pb::CallCapture {
            messages: vec![m],
            ..Default::default()
        }));
        let (h, f) = &recs[0];
        assert_eq!(h[2] as usize, f.len());
        assert_eq!(h[3] as usize, 14 + 20 + 8 + 30_000);
    }
}
