//! Two sessions created through the real gRPC service, bridged, with two UDP
//! peers exchanging RTP: what each receives, with which headers, in which order.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use switchboard_proto::media::v1 as pb;

const TE: &str = "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n";

#[tokio::test]
async fn bridged_peers_receive_each_others_media_rewritten_in_order() {
    let mut d = Daemon::start(config("7000-7019")).await;
    let alice = Peer::new().await;
    let bob = Peer::new().await;
    let a = d.answer("call-1", &alice, "0 101", TE).await;
    let a_addr = rtp_addr(&a.local_sdp);
    let media = a.media.clone().unwrap();
    assert_eq!(media.codec, pb::Codec::Pcmu as i32);
    assert_eq!(media.telephone_event_payload_type, 101);
    let b_id = d.offer("call-1", &bob, "0 101", TE).await;
    let b_addr = {
        let list = d
            .admin
            .list_sessions(switchboard_proto::admin::v1::ListMediaSessionsRequest {
                call_id: "call-1".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(list.sessions.len(), 2);
        let b = list.sessions.iter().find(|s| s.session_id == b_id).unwrap();
        std::net::SocketAddr::from(([127, 0, 0, 1], b.rtp_port as u16))
    };
    d.bridge(&a.session_id, &b_id).await;

    // alice -> bob: 20 packets with distinct payloads, then a DTMF event.
    for i in 0..20u16 {
        alice
            .send_rtp(
                a_addr,
                0,
                1000 + i,
                160 * u32::from(i),
                0xA11CE,
                &[i as u8; 160],
            )
            .await;
    }
    alice
        .send_rtp(a_addr, 101, 1020, 3200, 0xA11CE, &[5, 0x80, 0, 160])
        .await;
    let mut got = Vec::new();
    for _ in 0..21 {
        got.push(parse(&bob.recv().await.expect("bob receives")));
    }
    let ssrc = got[0].4;
    assert_ne!(ssrc, 0xA11CE, "SSRC is rewritten to the B leg's own");
    assert!(got[0].1, "marker bit on the first packet of a new stream");
    for (i, p) in got.iter().take(20).enumerate() {
        assert_eq!(p.0, 0, "payload type");
        assert_eq!(p.4, ssrc, "one SSRC");
        assert_eq!(p.5, vec![i as u8; 160], "payload {i} in order");
        assert_eq!(p.2, got[0].2.wrapping_add(i as u16), "seq continuity");
        assert_eq!(p.3, got[0].3.wrapping_add(160 * i as u32), "ts step 160");
    }
    let dtmf = &got[20];
    assert_eq!(dtmf.0, 101, "telephone-event passes through");
    assert_eq!(dtmf.5, vec![5, 0x80, 0, 160]);

    // bob -> alice.
    for i in 0..10u16 {
        bob.send_rtp(
            b_addr,
            0,
            50 + i,
            8000 + 160 * u32::from(i),
            0xB0B,
            &[0x40 + i as u8; 160],
        )
        .await;
    }
    for i in 0..10u8 {
        let p = parse(&alice.recv().await.expect("alice receives"));
        assert_eq!(p.5, vec![0x40 + i; 160]);
        assert_ne!(p.4, 0xB0B);
    }

    // Stats are visible to admin and in the final stats.
    let stats = d.destroy(&a.session_id).await;
    assert_eq!(stats.rx.as_ref().map(|r| r.packets), Some(21));
    assert_eq!(stats.tx.as_ref().map(|r| r.packets), Some(10));
    assert_eq!(stats.rx.as_ref().map(|r| r.packets_lost), Some(0));
    assert_eq!(
        stats.remote_address,
        alice.sock.local_addr().unwrap().to_string()
    );
    d.destroy(&b_id).await;
    let h = d.health().await;
    assert_eq!(h.free_port_pairs, h.total_port_pairs);
    d.stop().await;
}

#[tokio::test]
async fn pcmu_leg_bridged_to_pcma_leg_is_transcoded_and_dtmf_pt_mapped() {
    let mut d = Daemon::start(config("7020-7039")).await;
    let alice = Peer::new().await;
    let bob = Peer::new().await;
    let a = d.answer("call-2", &alice, "0 101", TE).await;
    let a_addr = rtp_addr(&a.local_sdp);
    let b_id = d
        .offer(
            "call-2",
            &bob,
            "8 96",
            "a=rtpmap:8 PCMA/8000\r\na=rtpmap:96 telephone-event/8000\r\n",
        )
        .await;
    d.bridge(&a.session_id, &b_id).await;
    let payload: Vec<u8> = (0..160).map(|i| (i * 3) as u8).collect();
    alice.send_rtp(a_addr, 0, 1, 0, 7, &payload).await;
    alice.send_rtp(a_addr, 101, 2, 160, 7, &[1, 0, 0, 80]).await;
    let p = parse(&bob.recv().await.expect("audio"));
    assert_eq!(p.0, 8);
    let expected: Vec<u8> = payload
        .iter()
        .map(|b| swrtp::g711::ULAW_TO_ALAW[usize::from(*b)])
        .collect();
    assert_eq!(p.5, expected);
    let e = parse(&bob.recv().await.expect("dtmf"));
    assert_eq!(e.0, 96, "telephone-event pt mapped to the B leg's");
    d.stop().await;
}

#[tokio::test]
async fn bridge_torn_down_mid_stream_leaks_nothing() {
    let mut d = Daemon::start(config("7040-7059")).await;
    for round in 0..5 {
        let alice = Peer::new().await;
        let bob = Peer::new().await;
        let a = d.answer("call-3", &alice, "0", "").await;
        let a_addr = rtp_addr(&a.local_sdp);
        let b = d.offer("call-3", &bob, "0", "").await;
        d.bridge(&a.session_id, &b).await;
        let streamer = tokio::spawn(async move {
            for i in 0..200u16 {
                alice
                    .send_rtp(a_addr, 0, i, u32::from(i) * 160, 1, &[0xFF; 160])
                    .await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        // Wait until media flows, then tear down while it still does.
        assert!(bob.recv().await.is_some(), "round {round}: media flows");
        if round % 2 == 0 {
            d.destroy(&a.session_id).await;
            d.destroy(&b).await;
        } else {
            d.media
                .unbridge(pb::UnbridgeRequest {
                    session_id: b.clone(),
                })
                .await
                .expect("unbridge");
            d.destroy(&b).await;
            d.destroy(&a.session_id).await;
        }
        streamer.await.unwrap();
    }
    let h = d.health().await;
    assert_eq!(h.active_sessions, 0);
    assert_eq!(h.free_port_pairs, h.total_port_pairs);
    d.stop().await;
}

#[tokio::test]
async fn bridge_refusals_are_clear_statuses() {
    let mut d = Daemon::start(config("7060-7079")).await;
    let p = Peer::new().await;
    let a = d.answer("c", &p, "0", "").await.session_id;
    let b = d.answer("c", &p, "0", "").await.session_id;
    let c = d.answer("c", &p, "0", "").await.session_id;
    let e = d
        .media
        .bridge(pb::BridgeRequest {
            session_a: a.clone(),
            session_b: a.clone(),
        })
        .await
        .expect_err("self");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    d.bridge(&a, &b).await;
    d.bridge(&b, &a).await; // idempotent
    let e = d
        .media
        .bridge(pb::BridgeRequest {
            session_a: c.clone(),
            session_b: a.clone(),
        })
        .await
        .expect_err("already bridged");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("already bridged"), "{}", e.message());
    let e = d
        .media
        .destroy_session(pb::DestroySessionRequest {
            session_id: "nope".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), tonic::Code::NotFound);
    let status = d
        .admin
        .get_status(switchboard_proto::admin::v1::GetMediaStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.active_sessions, 3);
    assert_eq!(status.active_bridges, 1);
    d.stop().await;
    // After shutdown the ports are free again: bind them ourselves.
    for port in (7060..7079).step_by(2) {
        std::net::UdpSocket::bind(("127.0.0.1", port)).expect("port released at shutdown");
    }
}
