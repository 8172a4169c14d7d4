//! DTMF between legs that carry it differently, through swbd + swrtp as
//! real processes: SIP INFO from one leg reaches the other as RFC 4733
//! when that leg negotiated telephone-event, as INFO when it did not; RFC
//! 4733 from a leg whose peer has no telephone-event reaches the peer as
//! INFO. INFO bodies are parsed strictly: another type gets 415 with
//! Accept, a bad DTMF body 400, no body 200.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::ua::{OutCall, Ua, sdp, sdp_media_addr};
use support::{Options, System};
use swbd::sip::message::HeaderAccess;
use swbd::sip::{Name, Request};

/// SDP without telephone-event.
fn sdp_no_te(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// A call alice -> bob, answered by bob with `bob_sdp`; alice offers
/// `alice_sdp`. Returns (alice's call, bob's INVITE, swbd's media address
/// for alice, for bob).
async fn call(
    alice: &mut Ua,
    bob: &mut Ua,
    alice_sdp: &str,
    bob_sdp: &str,
) -> (OutCall, Request, SocketAddr, SocketAddr) {
    assert_eq!(bob.register(300).await.code, 200);
    let mut call = alice.invite("1002", Some(alice_sdp)).await;
    let inv = bob.request("INVITE").await;
    bob.reply(&inv, 200, "OK", Some("bobtag"), Some(bob_sdp))
        .await;
    let _ack = bob.request("ACK").await;
    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200);
    alice.ack(&call).await;
    let a_media = sdp_media_addr(&ok.body).expect("A's media");
    let b_media = sdp_media_addr(&inv.body).expect("B's media");
    (call, inv, a_media, b_media)
}

/// `(event, end)` of every telephone-event packet (pt 101) in `packets`.
fn events(packets: &[Vec<u8>]) -> Vec<(u8, bool)> {
    packets
        .iter()
        .filter(|p| p.get(1).map(|b| b & 0x7f) == Some(101))
        .filter_map(|p| Some((*p.get(12)?, p.get(13)? & 0x80 != 0)))
        .collect()
}

/// An RFC 4733 event from `ua` to `to`: start, update, the end three times.
async fn send_event(ua: &Ua, to: SocketAddr, seq: &mut u16, ts: u32, event: u8) {
    for (duration, end) in [
        (160u16, false),
        (320, false),
        (800, true),
        (800, true),
        (800, true),
    ] {
        let mut pkt = vec![0x80, 101];
        pkt.extend_from_slice(&seq.to_be_bytes());
        pkt.extend_from_slice(&ts.to_be_bytes());
        pkt.extend_from_slice(&0xB0B_u32.to_be_bytes());
        pkt.extend_from_slice(&[event, if end { 0x8a } else { 0x0a }]);
        pkt.extend_from_slice(&duration.to_be_bytes());
        let _ = ua.rtp.send_to(&pkt, to).await;
        *seq = seq.wrapping_add(1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const RELAY: &str = "application/dtmf-relay";

#[tokio::test]
async fn info_becomes_rfc4733_for_a_leg_with_telephone_event() {
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    let (a_sdp, b_sdp) = (sdp(alice.rtp_port), sdp(bob.rtp_port));
    let (call, _inv, _, _) = call(&mut alice, &mut bob, &a_sdp, &b_sdp).await;

    for body in [
        "Signal=5\r\nDuration=100\r\n",
        "Signal=#\r\nDuration=100\r\n",
    ] {
        let r = alice.in_dialog_with_body("INFO", &call, RELAY, body).await;
        assert_eq!(r.code, 200, "{body:?}");
    }
    let r = alice
        .in_dialog_with_body("INFO", &call, "application/dtmf", "9")
        .await;
    assert_eq!(r.code, 200);
    let mut got = Vec::new();
    while !got.contains(&(9, true)) {
        let packets = bob.recv_rtp(5, 50).await;
        assert!(!packets.is_empty(), "RFC 4733 reaches bob: {got:?}");
        got.extend(events(&packets));
    }
    let digits: Vec<u8> = got
        .iter()
        .filter(|(_, end)| *end)
        .map(|(e, _)| *e)
        .collect::<Vec<_>>()
        .chunks(3)
        .filter_map(|c| c.first().copied())
        .collect();
    assert_eq!(digits, [5, 11, 9], "5, # and 9 in order, each ended thrice");
    // No INFO went to bob: his leg takes RFC 4733.
    assert!(
        bob.sock.try_recv_from(&mut [0u8; 2048]).is_err(),
        "no SIP for bob"
    );

    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn info_stays_info_for_a_leg_without_telephone_event() {
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    let (a_sdp, b_sdp) = (sdp(alice.rtp_port), sdp_no_te(bob.rtp_port));
    let (call, _inv, _, _) = call(&mut alice, &mut bob, &a_sdp, &b_sdp).await;

    let r = alice
        .in_dialog_with_body("INFO", &call, RELAY, "Signal=7\r\nDuration=250\r\n")
        .await;
    assert_eq!(r.code, 200);
    let info = bob.request("INFO").await;
    assert_eq!(info.raw(&Name::CONTENT_TYPE), Some(RELAY));
    assert_eq!(&info.body[..], b"Signal=7\r\nDuration=250\r\n");
    bob.reply(&info, 200, "OK", None, None).await;
    // A hostile Duration is clamped, never copied.
    let r = alice
        .in_dialog_with_body("INFO", &call, RELAY, "Signal=*\r\nDuration=999999\r\n")
        .await;
    assert_eq!(r.code, 200);
    let info = bob.request("INFO").await;
    assert_eq!(&info.body[..], b"Signal=*\r\nDuration=5000\r\n");
    bob.reply(&info, 200, "OK", None, None).await;

    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn rfc4733_becomes_info_for_a_leg_without_telephone_event() {
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    let (a_sdp, b_sdp) = (sdp_no_te(alice.rtp_port), sdp(bob.rtp_port));
    let (call, _inv, a_media, b_media) = call(&mut alice, &mut bob, &a_sdp, &b_sdp).await;
    // Alice talks, so her leg is latched (not needed for INFO, but real).
    alice.send_rtp(a_media, 1, 0xA11CE, &[0xff; 160]).await;

    let mut seq = 1;
    send_event(&bob, b_media, &mut seq, 16_000, 3).await;
    send_event(&bob, b_media, &mut seq, 32_000, 10).await;
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let info = alice.request("INFO").await;
        assert_eq!(info.raw(&Name::CONTENT_TYPE), Some(RELAY));
        assert_eq!(
            info.call_id().ok(),
            Some(call.call_id.as_str()),
            "in A's dialog"
        );
        bodies.push(String::from_utf8_lossy(&info.body).into_owned());
        alice.reply(&info, 200, "OK", None, None).await;
    }
    assert_eq!(
        bodies,
        [
            "Signal=3\r\nDuration=100\r\n",
            "Signal=*\r\nDuration=100\r\n"
        ]
    );
    // Nothing of it reached alice as RTP events.
    let at_alice = alice.recv_rtp(1, 50).await;
    assert!(events(&at_alice).is_empty());

    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn info_bodies_are_checked_strictly() {
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    let (a_sdp, b_sdp) = (sdp(alice.rtp_port), sdp_no_te(bob.rtp_port));
    let (call, _inv, _, _) = call(&mut alice, &mut bob, &a_sdp, &b_sdp).await;

    let r = alice
        .in_dialog_with_body("INFO", &call, "application/media_control+xml", "<x/>")
        .await;
    assert_eq!(r.code, 415);
    assert_eq!(
        r.raw(&Name::ACCEPT),
        Some("application/dtmf-relay, application/dtmf")
    );
    for bad in [
        "Signal=55\r\n",
        "Signal=1\r\nSignal=2\r\n",
        "Duration=100\r\n",
        "Signal=1\r\nX-Evil\r\n",
    ] {
        let r = alice.in_dialog_with_body("INFO", &call, RELAY, bad).await;
        assert_eq!(r.code, 400, "{bad:?}");
    }
    let r = alice.in_dialog_with_body("INFO", &call, "", "").await;
    assert_eq!(r.code, 200, "an INFO without a body is a harmless probe");
    // None of these reached bob; a good one does, and only it.
    let r = alice
        .in_dialog_with_body("INFO", &call, RELAY, "Signal=2\r\n")
        .await;
    assert_eq!(r.code, 200);
    let info = bob.request("INFO").await;
    assert_eq!(&info.body[..], b"Signal=2\r\nDuration=160\r\n");
    bob.reply(&info, 200, "OK", None, None).await;

    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}
