//! `UpdateSession` with `reoffer` / `withdraw_offer`: a negotiated session
//! makes a new offer (the B2BUA relays an UPDATE to its leg), the answer
//! applies it, a refusal withdraws it and the session keeps its media.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod common;

use common::*;
use switchboard_proto::media::v1 as pb;

fn options() -> pb::OfferOptions {
    pb::OfferOptions {
        codecs: vec![],
        telephone_event: true,
        ptime_ms: 0,
    }
}

async fn reoffer(d: &mut Daemon, id: &str) -> Result<pb::UpdateSessionResponse, tonic::Status> {
    d.media
        .update_session(pb::UpdateSessionRequest {
            session_id: id.into(),
            reoffer: Some(options()),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn apply(d: &mut Daemon, id: &str, sdp: String) -> pb::UpdateSessionResponse {
    d.media
        .update_session(pb::UpdateSessionRequest {
            session_id: id.into(),
            remote_sdp: sdp,
            ..Default::default()
        })
        .await
        .expect("update")
        .into_inner()
}

async fn withdraw(d: &mut Daemon, id: &str) {
    d.media
        .update_session(pb::UpdateSessionRequest {
            session_id: id.into(),
            withdraw_offer: true,
            ..Default::default()
        })
        .await
        .expect("withdraw");
}

#[tokio::test]
async fn reoffer_puts_the_negotiated_codec_first_and_its_answer_moves_the_media() {
    let mut d = Daemon::start(config("7460-7479")).await;
    let alice = Peer::new().await;
    // Alice offered PCMA first: that is what the session uses.
    let a = d.answer("re", &alice, "8 0", "").await;
    let offer = reoffer(&mut d, &a.session_id).await.expect("reoffer");
    let sdp = offer.local_sdp;
    assert!(sdp.contains("m=audio "), "{sdp}");
    assert!(
        sdp.contains("RTP/AVP 8 0 101"),
        "negotiated codec first: {sdp}"
    );
    assert!(sdp.contains(" 2 IN IP4 "), "o= version bumped: {sdp}");
    assert_eq!(rtp_addr(&sdp), rtp_addr(&a.local_sdp), "same port");

    // The answer (from a new port) is applied: no SDP back, media moved.
    let moved = Peer::new().await;
    let r = apply(&mut d, &a.session_id, offer_sdp(moved.sdp_port, "8", "")).await;
    assert!(r.local_sdp.is_empty(), "an answer gets no SDP back");
    let media = r.media.expect("media");
    assert_eq!(
        media.remote_rtp_address,
        format!("127.0.0.1:{}", moved.sdp_port)
    );
    d.destroy(&a.session_id).await;
    d.stop().await;
}

#[tokio::test]
async fn a_withdrawn_reoffer_leaves_the_session_answering_offers_again() {
    let mut d = Daemon::start(config("7480-7499")).await;
    let alice = Peer::new().await;
    let a = d.answer("wd", &alice, "0", "").await;
    reoffer(&mut d, &a.session_id).await.expect("reoffer");
    withdraw(&mut d, &a.session_id).await;
    // The peer's next SDP is an offer again (not taken as our answer).
    let r = apply(
        &mut d,
        &a.session_id,
        offer_sdp(alice.sdp_port, "0", "a=sendonly\r\n"),
    )
    .await;
    assert!(
        r.local_sdp.contains("m=audio "),
        "answered: {}",
        r.local_sdp
    );

    // A session still waiting for its first answer has nothing to re-offer,
    // and withdrawing keeps that first offer.
    let b = d
        .media
        .create_session(pb::CreateSessionRequest {
            call_id: "wd".into(),
            leg: "b".into(),
            negotiation: Some(pb::create_session_request::Negotiation::Offer(options())),
            peer: None,
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner();
    let st = reoffer(&mut d, &b.session_id)
        .await
        .expect_err("not negotiated yet");
    assert_eq!(st.code(), tonic::Code::FailedPrecondition);
    withdraw(&mut d, &b.session_id).await;
    let r = apply(&mut d, &b.session_id, offer_sdp(alice.sdp_port, "0", "")).await;
    assert!(
        r.local_sdp.is_empty(),
        "still the answer to the first offer"
    );
    d.destroy(&a.session_id).await;
    d.destroy(&b.session_id).await;
    d.stop().await;
}
