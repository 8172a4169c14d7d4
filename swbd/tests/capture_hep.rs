//! HEP v3 export end to end: swbd configured with `capture.hep` copies
//! every SIP message it receives and sends to a collector; a UDP socket in
//! this test is the collector and decodes the HEP3 chunks itself (version,
//! length, IP family and protocol, addresses, ports, time, capture id,
//! auth key, payload), checking the SIP payload is exactly what crossed the
//! wire.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::raw::{RawPeer, fresh};
use support::{Options, System};
use switchboard_proto::admin::v1 as pb;
use tokio::net::UdpSocket;

/// One decoded HEP3 packet: chunk type -> value (vendor 0 only).
fn decode(p: &[u8]) -> HashMap<u16, Vec<u8>> {
    assert!(p.len() >= 6, "short packet");
    assert_eq!(&p[..4], b"HEP3", "version");
    assert_eq!(
        usize::from(u16::from_be_bytes([p[4], p[5]])),
        p.len(),
        "total length"
    );
    let mut chunks = HashMap::new();
    let mut i = 6;
    while i < p.len() {
        let vendor = u16::from_be_bytes([p[i], p[i + 1]]);
        let kind = u16::from_be_bytes([p[i + 2], p[i + 3]]);
        let len = usize::from(u16::from_be_bytes([p[i + 4], p[i + 5]]));
        assert!(
            len >= 6 && i + len <= p.len(),
            "chunk {kind:#06x} length {len}"
        );
        assert_eq!(vendor, 0, "generic chunks");
        assert!(
            chunks.insert(kind, p[i + 6..i + len].to_vec()).is_none(),
            "chunk {kind:#06x} twice"
        );
        i += len;
    }
    chunks
}

fn u16_of(v: &[u8]) -> u16 {
    u16::from_be_bytes(v.try_into().expect("2 bytes"))
}

fn u32_of(v: &[u8]) -> u32 {
    u32::from_be_bytes(v.try_into().expect("4 bytes"))
}

/// Source and destination of a decoded IPv4 packet.
fn addresses(c: &HashMap<u16, Vec<u8>>) -> (SocketAddr, SocketAddr) {
    let ip = |k: u16| {
        let b: [u8; 4] = c[&k].as_slice().try_into().expect("IPv4");
        IpAddr::V4(Ipv4Addr::from(b))
    };
    (
        SocketAddr::new(ip(0x0003), u16_of(&c[&0x0007])),
        SocketAddr::new(ip(0x0004), u16_of(&c[&0x0008])),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sip_message_reaches_the_collector_as_hep3() {
    let collector = UdpSocket::bind("127.0.0.1:0").await.expect("collector");
    let at = collector.local_addr().expect("addr");
    let sys = System::start(Options {
        extra_config: format!(
            "capture: {{ hep: \"{at}\", hep_id: 4242, hep_password: \"s3cret\" }}\n"
        ),
        ..Options::default()
    })
    .await;

    let peer = RawPeer::bind("127.0.0.5", sys.sip).await;
    let call_id = fresh();
    let options = format!(
        "OPTIONS sip:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{b};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@{me}>;tag={t}\r\nTo: <sip:{sip}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        sip = sys.sip,
        me = peer.addr,
        b = fresh(),
        t = fresh(),
    );
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    peer.send(&options).await;
    let reply = peer.response(false).await;
    assert_eq!(reply.code, 200);
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();

    // The packets of this OPTIONS transaction, by its Call-ID (anything
    // else swbd sent meanwhile is not ours).
    let mut ours = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while ours.len() < 2 {
        let (n, _) = tokio::time::timeout(Duration::from_secs(10), collector.recv_from(&mut buf))
            .await
            .expect("HEP packets within 10 s")
            .expect("recv");
        let c = decode(&buf[..n]);
        let payload = String::from_utf8(c[&0x000f].clone()).expect("SIP is text");
        if payload.contains(&call_id) {
            ours.push((c, payload));
        }
    }

    for (c, _) in &ours {
        assert_eq!(c[&0x0001], [2], "IPv4 family");
        assert_eq!(c[&0x0002], [17], "UDP");
        assert_eq!(c[&0x000b], [1], "SIP");
        assert_eq!(u32_of(&c[&0x000c]), 4242, "capture agent id");
        assert_eq!(c[&0x000e], b"s3cret", "auth key");
        let secs = u64::from(u32_of(&c[&0x0009]));
        assert!(
            (before..=after).contains(&secs),
            "timestamp {secs} between {before} and {after}"
        );
        assert!(u32_of(&c[&0x000a]) < 1_000_000, "microseconds");
    }
    let (request, request_text) = &ours[0];
    assert_eq!(request_text, &options, "the OPTIONS exactly as sent");
    assert_eq!(addresses(request), (peer.addr, sys.sip));
    let (response, response_text) = &ours[1];
    assert!(
        response_text.starts_with("SIP/2.0 200 OK\r\n"),
        "{response_text}"
    );
    assert_eq!(addresses(response), (sys.sip, peer.addr));

    let status = sys
        .signaling()
        .await
        .expect("admin")
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    let capture = status.capture.expect("capture counters");
    assert!(capture.hep_sent >= 2, "{capture:?}");
    assert_eq!(capture.hep_dropped, 0, "{capture:?}");
}
