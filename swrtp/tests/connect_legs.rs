//! The batched call-path RPCs: `ConnectLegs` (apply the B-leg's answer,
//! answer the A-leg's offer, bridge, in one round trip) and
//! `DestroySessions` (a call's teardown in one round trip).
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use switchboard_proto::media::v1 as pb;

/// A B-leg session offering to `bob` (no answer applied yet).
async fn b_offer(d: &mut Daemon, call: &str) -> String {
    d.media
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
        .into_inner()
        .session_id
}

async fn sessions_of(d: &mut Daemon, call: &str) -> usize {
    d.admin
        .list_sessions(switchboard_proto::admin::v1::ListMediaSessionsRequest {
            call_id: call.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .sessions
        .len()
}

#[tokio::test]
async fn connect_legs_answers_a_and_bridges_then_destroy_sessions_frees_both() {
    let mut d = Daemon::start(config("7600-7619")).await;
    let alice = Peer::new().await;
    let bob = Peer::new().await;
    let b_id = b_offer(&mut d, "call-c1").await;
    let r = d
        .media
        .connect_legs(pb::ConnectLegsRequest {
            session_id: b_id.clone(),
            remote_answer_sdp: offer_sdp(bob.sdp_port, "0", ""),
            peer: Some(pb::connect_legs_request::Peer::PeerOffer(pb::PeerOffer {
                call_id: "call-c1".into(),
                leg: "a".into(),
                remote_offer_sdp: offer_sdp(alice.sdp_port, "0 8", ""),
            })),
        })
        .await
        .expect("connect")
        .into_inner();
    assert_eq!(r.media.unwrap().codec, pb::Codec::Pcmu as i32);
    assert_eq!(r.peer_media.unwrap().codec, pb::Codec::Pcmu as i32);
    assert!(!r.peer_session_id.is_empty());
    assert!(
        r.peer_local_sdp.contains("m=audio "),
        "{}",
        r.peer_local_sdp
    );
    assert_eq!(sessions_of(&mut d, "call-c1").await, 2);

    // Bridged: alice's RTP to A's address reaches bob.
    let a_addr = rtp_addr(&r.peer_local_sdp);
    alice.send_rtp(a_addr, 0, 1, 0, 0xA, &[7; 160]).await;
    let p = parse(&bob.recv().await.expect("bob receives"));
    assert_eq!(p.5, vec![7; 160]);

    let gone = d
        .media
        .destroy_sessions(pb::DestroySessionsRequest {
            session_ids: vec![r.peer_session_id.clone(), b_id.clone(), "s-nope".into()],
        })
        .await
        .expect("destroy batch")
        .into_inner();
    assert_eq!(gone.stats.len(), 2);
    assert_eq!(gone.stats[0].rx.as_ref().map(|s| s.packets), Some(1));
    assert_eq!(gone.not_found, vec!["s-nope".to_string()]);
    assert_eq!(sessions_of(&mut d, "call-c1").await, 0);
    let h = d.health().await;
    assert_eq!(h.free_port_pairs, h.total_port_pairs);
    d.stop().await;
}

#[tokio::test]
async fn connect_legs_with_an_existing_peer_bridges_it() {
    let mut d = Daemon::start(config("7620-7639")).await;
    let alice = Peer::new().await;
    let bob = Peer::new().await;
    let a = d.answer("call-c2", &alice, "0", "").await;
    let b_id = b_offer(&mut d, "call-c2").await;
    let r = d
        .media
        .connect_legs(pb::ConnectLegsRequest {
            session_id: b_id.clone(),
            remote_answer_sdp: offer_sdp(bob.sdp_port, "0", ""),
            peer: Some(pb::connect_legs_request::Peer::PeerSessionId(
                a.session_id.clone(),
            )),
        })
        .await
        .expect("connect")
        .into_inner();
    assert_eq!(r.peer_session_id, a.session_id);
    assert!(
        r.peer_local_sdp.is_empty(),
        "no new answer for an existing peer"
    );
    let a_addr = rtp_addr(&a.local_sdp);
    alice.send_rtp(a_addr, 0, 1, 0, 0xA, &[9; 160]).await;
    assert_eq!(
        parse(&bob.recv().await.expect("bob receives")).5,
        vec![9; 160]
    );
    d.stop().await;
}

#[tokio::test]
async fn connect_legs_that_fails_leaves_no_session_behind() {
    let mut d = Daemon::start(config("7640-7659")).await;
    let bob = Peer::new().await;
    let b_id = b_offer(&mut d, "call-c3").await;
    // A's offer is garbage: the B answer may be applied, but no A session stays.
    let err = d
        .media
        .connect_legs(pb::ConnectLegsRequest {
            session_id: b_id.clone(),
            remote_answer_sdp: offer_sdp(bob.sdp_port, "0", ""),
            peer: Some(pb::connect_legs_request::Peer::PeerOffer(pb::PeerOffer {
                call_id: "call-c3".into(),
                leg: "a".into(),
                remote_offer_sdp: "this is not SDP\r\n".into(),
            })),
        })
        .await
        .expect_err("bad A offer");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(sessions_of(&mut d, "call-c3").await, 1);
    // Bridging with an unknown peer: NOT_FOUND, nothing created.
    let err = d
        .media
        .connect_legs(pb::ConnectLegsRequest {
            session_id: b_id.clone(),
            remote_answer_sdp: offer_sdp(bob.sdp_port, "0", ""),
            peer: Some(pb::connect_legs_request::Peer::PeerSessionId(
                "s-nope".into(),
            )),
        })
        .await
        .expect_err("unknown peer");
    assert_eq!(err.code(), tonic::Code::NotFound);
    // No peer at all: a bad request, nothing touched.
    let err = d
        .media
        .connect_legs(pb::ConnectLegsRequest {
            session_id: b_id.clone(),
            remote_answer_sdp: String::new(),
            peer: None,
        })
        .await
        .expect_err("no peer");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(sessions_of(&mut d, "call-c3").await, 1);
    d.destroy(&b_id).await;
    let h = d.health().await;
    assert_eq!(h.free_port_pairs, h.total_port_pairs);
    d.stop().await;
}

/// `CreateSessionRequest.peer`: the B-leg's offer session and A's answer
/// session in one round trip, A's first, so an unusable caller offer is
/// refused before anything exists for the B-leg.
#[tokio::test]
async fn create_with_peer_checks_the_callers_offer_first() {
    let mut d = Daemon::start(config("7940-7959")).await;
    let alice = Peer::new().await;
    let offer = |peer_sdp: String| pb::CreateSessionRequest {
        call_id: "call-p1".into(),
        leg: "b".into(),
        negotiation: Some(pb::create_session_request::Negotiation::Offer(
            pb::OfferOptions {
                codecs: vec![],
                telephone_event: true,
                ptime_ms: 0,
            },
        )),
        peer: Some(pb::PeerOffer {
            call_id: "call-p1".into(),
            leg: "a".into(),
            remote_offer_sdp: peer_sdp,
        }),
        ..Default::default()
    };
    // G.729 only: nothing this node speaks.
    let err = d
        .media
        .create_session(offer(offer_sdp(alice.sdp_port, "18", "")))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().starts_with("peer offer: "),
        "{}",
        err.message()
    );
    assert_eq!(sessions_of(&mut d, "call-p1").await, 0, "nothing created");

    let r = d
        .media
        .create_session(offer(offer_sdp(alice.sdp_port, "8", "")))
        .await
        .expect("created")
        .into_inner();
    assert!(!r.session_id.is_empty() && !r.peer_session_id.is_empty());
    assert_ne!(r.session_id, r.peer_session_id);
    assert!(r.local_sdp.contains("m=audio "), "B's offer");
    assert!(r.peer_local_sdp.contains("m=audio "), "A's answer");
    assert_eq!(
        r.peer_media.expect("peer media").codec,
        pb::Codec::Pcma as i32
    );
    assert_eq!(sessions_of(&mut d, "call-p1").await, 2);
    d.destroy(&r.session_id).await;
    d.destroy(&r.peer_session_id).await;
    assert_eq!(sessions_of(&mut d, "call-p1").await, 0);
    d.stop().await;
}
