//! The port pool through the real service: exhaustion, drain, refusals,
//! and 10,000 create/destroy cycles that leave it exactly full.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use switchboard_proto::admin::v1 as admin;
use switchboard_proto::media::v1 as pb;

fn create(sdp: &str) -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        call_id: "c".into(),
        leg: "a".into(),
        negotiation: Some(pb::create_session_request::Negotiation::RemoteOfferSdp(
            sdp.into(),
        )),
        peer: None,
        ..Default::default()
    }
}

#[tokio::test]
async fn ten_thousand_create_destroy_cycles_leave_the_pool_full() {
    let mut d = Daemon::start(config("7300-7307")).await;
    let sdp = offer_sdp(4000, "0", "");
    for i in 0..10_000 {
        let id = d
            .media
            .create_session(create(&sdp))
            .await
            .unwrap_or_else(|e| panic!("cycle {i}: {e}"))
            .into_inner()
            .session_id;
        d.destroy(&id).await;
    }
    let h = d.health().await;
    assert_eq!(h.total_port_pairs, 4);
    assert_eq!(h.free_port_pairs, 4);
    assert_eq!(h.active_sessions, 0);
    d.stop().await;
}

#[tokio::test]
async fn exhaustion_is_resource_exhausted_naming_the_range() {
    let mut d = Daemon::start(config("7310-7313")).await;
    let sdp = offer_sdp(4000, "0", "");
    let a = d
        .media
        .create_session(create(&sdp))
        .await
        .unwrap()
        .into_inner();
    let _b = d
        .media
        .create_session(create(&sdp))
        .await
        .unwrap()
        .into_inner();
    let e = d
        .media
        .create_session(create(&sdp))
        .await
        .expect_err("full");
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert!(e.message().contains("7310-7313"), "{}", e.message());
    d.destroy(&a.session_id).await;
    d.media
        .create_session(create(&sdp))
        .await
        .expect("a pair came back");
    d.stop().await;
}

#[tokio::test]
async fn bad_sdp_is_invalid_argument_and_costs_no_port() {
    let mut d = Daemon::start(config("7320-7329")).await;
    let cases = [
        ("garbage", "this is not sdp".to_string(), "does not parse"),
        (
            "no audio",
            "v=0\r\no=p 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 5000 RTP/AVP 96\r\n".to_string(),
            "no audio m-line",
        ),
        (
            "no common codec",
            offer_sdp(4000, "18", "a=rtpmap:18 G729/8000\r\n"),
            "no common codec",
        ),
    ];
    for (name, sdp, needle) in cases {
        let e = d.media.create_session(create(&sdp)).await.expect_err(name);
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{name}");
        assert!(e.message().contains(needle), "{name}: {}", e.message());
    }
    let e = d
        .media
        .create_session(pb::CreateSessionRequest::default())
        .await
        .expect_err("no negotiation");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let h = d.health().await;
    assert_eq!(h.free_port_pairs, h.total_port_pairs);
    d.stop().await;
}

#[tokio::test]
async fn draining_refuses_new_sessions_and_keeps_old_ones() {
    let mut d = Daemon::start(config("7330-7339")).await;
    let alice = Peer::new().await;
    let bob = Peer::new().await;
    let a = d.answer("d", &alice, "0", "").await;
    let b = d.offer("d", &bob, "0", "").await;
    d.bridge(&a.session_id, &b).await;
    let status = d
        .admin
        .set_draining(admin::SetDrainingRequest { draining: true })
        .await
        .unwrap()
        .into_inner();
    assert!(status.draining);
    let e = d
        .media
        .create_session(create(&offer_sdp(4000, "0", "")))
        .await
        .expect_err("draining");
    assert_eq!(e.code(), tonic::Code::Unavailable);
    assert!(e.message().contains("draining"), "{}", e.message());
    assert!(d.health().await.draining);
    // Existing calls keep their media.
    alice
        .send_rtp(rtp_addr(&a.local_sdp), 0, 1, 0, 1, &[7; 160])
        .await;
    assert_eq!(
        parse(&bob.recv().await.expect("still relayed")).5,
        vec![7; 160]
    );
    d.admin
        .set_draining(admin::SetDrainingRequest { draining: false })
        .await
        .unwrap();
    d.media
        .create_session(create(&offer_sdp(4000, "0", "")))
        .await
        .expect("accepting again");
    d.stop().await;
}

#[tokio::test]
async fn reoffer_bumps_origin_version_and_same_version_is_unchanged() {
    let mut d = Daemon::start(config("7340-7349")).await;
    let peer = Peer::new().await;
    let a = d.answer("re", &peer, "0", "").await;
    assert!(
        a.local_sdp.contains(" 1 IN IP4 127.0.0.1\r\n"),
        "{}",
        a.local_sdp
    );
    let again = d
        .media
        .update_session(pb::UpdateSessionRequest {
            session_id: a.session_id.clone(),
            remote_sdp: offer_sdp(peer.sdp_port, "0", ""),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.local_sdp, a.local_sdp, "same o= version: same answer");
    let hold = offer_sdp(peer.sdp_port, "0", "a=sendonly\r\n").replace("o=peer 1 1", "o=peer 1 2");
    let held = d
        .media
        .update_session(pb::UpdateSessionRequest {
            session_id: a.session_id.clone(),
            remote_sdp: hold,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        held.local_sdp.contains(" 2 IN IP4 127.0.0.1\r\n"),
        "{}",
        held.local_sdp
    );
    assert!(
        held.local_sdp.contains("a=recvonly\r\n"),
        "{}",
        held.local_sdp
    );
    assert_eq!(
        held.media.map(|m| m.direction),
        Some(pb::Direction::Recvonly as i32)
    );
    d.stop().await;
}
