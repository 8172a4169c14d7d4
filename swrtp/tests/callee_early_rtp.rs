//! A callee that sends RTP before its SDP answer reached swrtp (it starts on
//! its 200 OK, swbd passes the answer on a moment later): its first packet
//! latches the leg at once (early latching, rule 5 in `swrtp::relay`) and is
//! relayed; once the answer arrives the strict rule is back. Also: the
//! relay's own latency reaches admin `GetStatus`.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use switchboard_proto::admin::v1 as admin_pb;
use switchboard_proto::media::v1 as pb;

/// A bridged call whose B leg has offered and not been answered yet.
struct Call {
    a_id: String,
    a_addr: SocketAddr,
    b_id: String,
    b_addr: SocketAddr,
}

async fn unanswered_call(d: &mut Daemon, call: &str, alice: &Peer) -> Call {
    let a = d.answer(call, alice, "0", "").await;
    let a_addr = rtp_addr(&a.local_sdp);
    let b = d
        .media
        .create_session(pb::CreateSessionRequest {
            call_id: call.into(),
            leg: "b".into(),
            negotiation: Some(pb::create_session_request::Negotiation::Offer(
                pb::OfferOptions {
                    codecs: vec![],
                    telephone_event: false,
                    ptime_ms: 0,
                },
            )),
            peer: None,
            ..Default::default()
        })
        .await
        .expect("create (offer)")
        .into_inner();
    let b_addr = rtp_addr(&b.local_sdp);
    d.bridge(&a.session_id, &b.session_id).await;
    Call {
        a_id: a.session_id,
        a_addr,
        b_id: b.session_id,
        b_addr,
    }
}

async fn answer(d: &mut Daemon, id: &str, peer: &Peer) {
    d.media
        .update_session(pb::UpdateSessionRequest {
            session_id: id.into(),
            remote_sdp: offer_sdp(peer.sdp_port, "0", ""),
            ..Default::default()
        })
        .await
        .expect("apply answer");
}

#[tokio::test]
async fn callee_first_packet_before_its_answer_is_relayed() {
    let mut d = Daemon::start(config("7300-7319")).await;
    let alice = Peer::new().await;
    let bob = Peer::new().await;
    let Call {
        a_id, b_id, b_addr, ..
    } = unanswered_call(&mut d, "early", &alice).await;

    // Bob's very first packet, before swrtp knows his address.
    bob.send_rtp(b_addr, 0, 100, 16_000, 0xB0B, &[1; 160]).await;
    let p = parse(&alice.recv().await.expect("first packet relayed"));
    assert_eq!(p.5, vec![1u8; 160]);

    // His answer arrives; his packets keep flowing without a gap.
    answer(&mut d, &b_id, &bob).await;
    for i in 1..5u16 {
        bob.send_rtp(
            b_addr,
            0,
            100 + i,
            16_000 + 160 * u32::from(i),
            0xB0B,
            &[1 + i as u8; 160],
        )
        .await;
    }
    for i in 1..5u8 {
        let p = parse(&alice.recv().await.expect("relayed after the answer"));
        assert_eq!(p.5, vec![1 + i; 160]);
    }

    // Every relayed packet is in the relay-latency histogram once the media
    // task has flushed (at the latest when it ends).
    let stats = d.destroy(&b_id).await;
    assert_eq!(stats.rx.unwrap().packets, 5);
    d.destroy(&a_id).await;
    let mut admin = d.admin.clone();
    eventually("relay latency counted", || {
        let mut admin = admin.clone();
        async move {
            let s = admin
                .get_status(admin_pb::GetMediaStatusRequest {})
                .await
                .unwrap()
                .into_inner();
            s.relay_latency.is_some_and(|l| l.packets == 5)
        }
    })
    .await;
    let l = admin
        .get_status(admin_pb::GetMediaStatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .relay_latency
        .unwrap();
    assert!(l.max_ns > 0 && l.p50_ns <= l.p99_ns && l.p99_ns <= l.max_ns);
    assert_eq!(l.bucket_counts.iter().sum::<u64>(), 5);
    assert_eq!(l.bucket_upper_ns.len(), l.bucket_counts.len());
    d.stop().await;
}

#[tokio::test]
async fn early_latch_by_a_stranger_does_not_survive_the_answer() {
    let mut d = Daemon::start(config("7320-7339")).await;
    let alice = Peer::new().await;
    let bob = Peer::new().await;
    let stranger = Peer::new().await;
    let Call {
        a_addr,
        b_id,
        b_addr,
        ..
    } = unanswered_call(&mut d, "bleed", &alice).await;

    // Before the answer, whoever hits the port first is latched.
    stranger.send_rtp(b_addr, 0, 1, 0, 0x5757, &[6; 160]).await;
    assert!(alice.recv().await.is_some(), "early latch relays");

    // The answer names Bob: his first packet latches at once, the stranger
    // (another SSRC) is dropped from then on.
    answer(&mut d, &b_id, &bob).await;
    bob.send_rtp(b_addr, 0, 10, 0, 0xB0B, &[2; 160]).await;
    let p = parse(&alice.recv().await.expect("bob relayed"));
    assert_eq!(p.5, vec![2u8; 160]);
    for i in 0..5u16 {
        stranger
            .send_rtp(b_addr, 0, 2 + i, 160, 0x5757, &[6; 160])
            .await;
    }
    bob.send_rtp(b_addr, 0, 11, 160, 0xB0B, &[3; 160]).await;
    let got = alice.drain(Duration::from_millis(300)).await;
    assert_eq!(got.len(), 1, "only bob's packet");
    assert_eq!(parse(&got[0]).5, vec![3u8; 160]);

    // Alice's media goes to Bob, not to the stranger.
    alice.send_rtp(a_addr, 0, 1, 0, 0xA11CE, &[4; 160]).await;
    let p = parse(&bob.recv().await.expect("alice reaches bob"));
    assert_eq!(p.5, vec![4u8; 160]);
    assert!(stranger.drain(Duration::from_millis(200)).await.is_empty());
    d.stop().await;
}

#[tokio::test]
async fn a_known_address_keeps_the_strict_rule() {
    // An answered leg is not affected: a stranger still needs
    // latch_packets packets (and cannot take over once latched).
    let mut d = Daemon::start(config("7340-7359")).await;
    let alice = Peer::new().await;
    let bob = Peer::new().await;
    let stranger = Peer::new().await;
    let Call { b_id, b_addr, .. } = unanswered_call(&mut d, "strict", &alice).await;
    answer(&mut d, &b_id, &bob).await;
    stranger.send_rtp(b_addr, 0, 1, 0, 0x5757, &[6; 160]).await;
    stranger
        .send_rtp(b_addr, 0, 2, 160, 0x5757, &[6; 160])
        .await;
    assert!(
        alice.drain(Duration::from_millis(300)).await.is_empty(),
        "two packets from a non-SDP source do not latch"
    );
    d.stop().await;
}

/// Two answered sessions, not bridged yet.
async fn answered_pair(d: &mut Daemon, call: &str, alice: &Peer, bob: &Peer) -> Call {
    let a = d.answer(call, alice, "0", "").await;
    let a_addr = rtp_addr(&a.local_sdp);
    let b_id = d.offer(call, bob, "0", "").await;
    let list = d
        .admin
        .list_sessions(admin_pb::ListMediaSessionsRequest {
            call_id: call.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let b = list.sessions.iter().find(|s| s.session_id == b_id).unwrap();
    Call {
        a_id: a.session_id,
        a_addr,
        b_addr: SocketAddr::from(([127, 0, 0, 1], b.rtp_port as u16)),
        b_id,
    }
}

#[tokio::test]
async fn callee_packets_before_the_first_bridge_are_relayed_by_it() {
    // swbd bridges only after the callee's 200 OK was ACKed; a callee that
    // sends on its 200 OK must not lose those packets.
    let mut d = Daemon::start(config("7360-7379")).await;
    let alice = Peer::new().await;
    let bob = Peer::new().await;
    let c = answered_pair(&mut d, "hold", &alice, &bob).await;
    for i in 0..2u16 {
        bob.send_rtp(
            c.b_addr,
            0,
            7 + i,
            160 * u32::from(i),
            0xB0B,
            &[10 + i as u8; 160],
        )
        .await;
    }
    // Let swrtp read them while still unbridged.
    let _ = d.health().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    d.bridge(&c.a_id, &c.b_id).await;
    let first = parse(&alice.recv().await.expect("held packet relayed on bridge"));
    assert!(first.1, "marker bit: a new stream starts");
    assert_eq!(first.5, vec![10u8; 160]);
    let second = parse(&alice.recv().await.expect("second held packet"));
    assert_eq!(second.5, vec![11u8; 160]);
    assert_eq!(second.2, first.2.wrapping_add(1), "seq continuity");
    bob.send_rtp(c.b_addr, 0, 9, 320, 0xB0B, &[12; 160]).await;
    let third = parse(&alice.recv().await.expect("live packet after the held ones"));
    assert_eq!(third.5, vec![12u8; 160]);
    assert_eq!(third.2, first.2.wrapping_add(2));
    d.stop().await;
}

#[tokio::test]
async fn stale_or_later_unbridged_packets_are_not_relayed() {
    let mut d = Daemon::start(config("7380-7399")).await;
    let alice = Peer::new().await;
    let bob = Peer::new().await;
    let c = answered_pair(&mut d, "stale", &alice, &bob).await;
    bob.send_rtp(c.b_addr, 0, 1, 0, 0xB0B, &[1; 160]).await;
    // Older than 200 ms at the bridge: dropped.
    tokio::time::sleep(Duration::from_millis(400)).await;
    d.bridge(&c.a_id, &c.b_id).await;
    assert!(alice.drain(Duration::from_millis(200)).await.is_empty());

    // Unbridged after a bridge: dropped, and not relayed by the next bridge.
    d.media
        .unbridge(pb::UnbridgeRequest {
            session_id: c.a_id.clone(),
        })
        .await
        .expect("unbridge");
    bob.send_rtp(c.b_addr, 0, 2, 160, 0xB0B, &[2; 160]).await;
    let _ = d.health().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    d.bridge(&c.a_id, &c.b_id).await;
    assert!(alice.drain(Duration::from_millis(200)).await.is_empty());
    d.stop().await;
}
