//! Delayed offer (RFC 3261 §13.2.1, RFC 3264): an INVITE without SDP gets
//! the media node's offer in the 200 and answers in the ACK, with RTP
//! through swrtp both ways; an ACK without the answer ends the call (BYE
//! both legs, the reason as end cause); a trunk configured `late_offer:
//! true` gets its INVITE without SDP, offers in its 200, and gets the
//! answer in swbd's ACK.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod dialog_support;
mod support;

use dialog_support::{
    ack_with, answer_sdp, ended_calls, invite_without_sdp, media_addr, rtp_reaches,
};
use support::ua::{Ua, sdp};
use support::{Options, System};
use swbd::sip::Name;
use swbd::sip::message::HeaderAccess;

/// Bob answers the B-leg INVITE (which carries the media node's offer).
async fn bob_answers(bob: &mut Ua) -> swbd::sip::Request {
    let inv = bob.request("INVITE").await;
    assert!(
        !inv.body.is_empty(),
        "the B-leg is offered by the media node"
    );
    bob.reply(&inv, 180, "Ringing", Some("bob"), None).await;
    bob.reply(&inv, 200, "OK", Some("bob"), Some(&sdp(bob.rtp_port)))
        .await;
    let _ack = bob.request("ACK").await;
    inv
}

#[tokio::test]
async fn invite_without_sdp_gets_the_offer_in_200_and_answers_in_ack() {
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);

    let mut call = invite_without_sdp(&mut alice, "1002").await;
    let b_invite = bob_answers(&mut bob).await;
    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200, "{} {}", ok.code, ok.reason);
    let offer = String::from_utf8_lossy(&ok.body).into_owned();
    assert!(
        offer.contains("m=audio "),
        "the 200 carries an offer: {offer}"
    );
    assert!(
        offer.contains("RTP/AVP 0 8"),
        "both codecs offered: {offer}"
    );
    assert_eq!(
        ok.raw(&Name::CONTENT_TYPE).map(str::trim),
        Some("application/sdp")
    );
    let a_media = media_addr(&ok.body);
    ack_with(&alice, &call, Some(&answer_sdp(alice.rtp_port))).await;

    // RTP both ways through swrtp: A's answer in the ACK was applied.
    let b_media = media_addr(&b_invite.body);
    assert!(
        rtp_reaches(&alice.rtp, a_media, &bob.rtp, 0x11, 100).await,
        "bob hears alice"
    );
    assert!(
        rtp_reaches(&bob.rtp, b_media, &alice.rtp, 0x22, 100).await,
        "alice hears bob (swrtp sends to the address of the ACK's answer)"
    );

    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn ack_without_the_answer_ends_both_legs_with_a_reason() {
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;

    let mut call = invite_without_sdp(&mut alice, "1002").await;
    bob_answers(&mut bob).await;
    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200);
    assert!(!ok.body.is_empty(), "the 200 carries the offer");
    ack_with(&alice, &call, None).await;

    let bye = alice.request("BYE").await;
    alice.reply(&bye, 200, "OK", None, None).await;
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
    let ended = ended_calls(&sys).await;
    assert!(
        ended
            .iter()
            .any(|c| c.end_cause.contains("delayed offer") && c.end_cause.contains("no SDP answer")),
        "end cause names the missing answer: {:?}",
        ended.iter().map(|c| &c.end_cause).collect::<Vec<_>>()
    );
}

fn trunk_plan() -> String {
    "version: 1\nroutes:\n  - id: out\n    match: { destination: \"9*\" }\n    actions:\n      - dial: { target: \"gateway/carrier\", timeout: 10s, on_failure: stop }\n"
        .into()
}

#[tokio::test]
async fn gateway_late_offer_gets_no_sdp_and_its_offer_is_answered_in_the_ack() {
    let port = support::free_udp_port();
    let sys = System::start(Options {
        dialplan: Some(trunk_plan()),
        extra_config: format!(
            "gateways:\n  - name: carrier\n    addresses: [\"127.0.0.1:{port}\"]\n    late_offer: true\n"
        ),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut trunk = Ua::bind_at("carrier", sys.sip, port).await;

    let mut call = alice.invite("900555", None).await;
    let inv = trunk.request("INVITE").await;
    assert!(inv.body.is_empty(), "no SDP toward a late-offer trunk");
    assert!(
        inv.raw(&Name::CONTENT_TYPE).is_none(),
        "no Content-Type without a body"
    );
    trunk.reply(&inv, 100, "Trying", None, None).await;
    // The trunk offers in its 200.
    trunk
        .reply(&inv, 200, "OK", Some("gw"), Some(&sdp(trunk.rtp_port)))
        .await;
    let ack = trunk.request("ACK").await;
    let answer = String::from_utf8_lossy(&ack.body).into_owned();
    assert!(
        answer.contains("m=audio "),
        "swbd's ACK carries the answer: {answer}"
    );
    let b_media = media_addr(&ack.body);

    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200);
    alice.ack(&call).await;
    let a_media = media_addr(&ok.body);
    assert!(
        rtp_reaches(&alice.rtp, a_media, &trunk.rtp, 0x33, 100).await,
        "the trunk hears alice"
    );
    assert!(
        rtp_reaches(&trunk.rtp, b_media, &alice.rtp, 0x44, 100).await,
        "alice hears the trunk"
    );
    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = trunk.request("BYE").await;
    trunk.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn late_offer_on_both_sides() {
    let port = support::free_udp_port();
    let sys = System::start(Options {
        dialplan: Some(trunk_plan()),
        extra_config: format!(
            "gateways:\n  - name: carrier\n    addresses: [\"127.0.0.1:{port}\"]\n    late_offer: true\n"
        ),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut trunk = Ua::bind_at("carrier", sys.sip, port).await;

    let mut call = invite_without_sdp(&mut alice, "900556").await;
    let inv = trunk.request("INVITE").await;
    assert!(inv.body.is_empty());
    trunk
        .reply(&inv, 200, "OK", Some("gw"), Some(&sdp(trunk.rtp_port)))
        .await;
    let ack = trunk.request("ACK").await;
    let b_media = media_addr(&ack.body);
    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200);
    let a_media = media_addr(&ok.body);
    ack_with(&alice, &call, Some(&answer_sdp(alice.rtp_port))).await;
    assert!(rtp_reaches(&alice.rtp, a_media, &trunk.rtp, 0x55, 100).await);
    assert!(rtp_reaches(&trunk.rtp, b_media, &alice.rtp, 0x66, 100).await);
    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = trunk.request("BYE").await;
    trunk.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}
