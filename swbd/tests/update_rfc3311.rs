//! UPDATE (RFC 3311): without SDP answered at once in early and confirmed
//! dialogs (from either side); with SDP in the early dialog answered by
//! the media node for that leg; with SDP in a confirmed call answered for
//! the leg that sent it and relayed to the other leg with the media
//! node's new offer, whose answer moves the media.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod dialog_support;
mod support;

use dialog_support::{callee_final, caller_final, media_addr, offer_sdp, rtp_reaches};
use support::ua::{OutCall, Ua, sdp};
use support::{Options, System};
use swbd::sip::Name;
use swbd::sip::message::HeaderAccess;
use tokio::net::UdpSocket;

/// The caller's view of the early dialog a 18x created.
fn early_call(call: &OutCall, resp: &swbd::sip::Response) -> OutCall {
    let mut early = call.clone();
    early.to_tag = resp
        .header_to()
        .ok()
        .and_then(|t| t.tag().map(str::to_string));
    early.remote_contact = resp.raw(&Name::CONTACT).map(|c| {
        c.trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string()
    });
    early
}

#[tokio::test]
async fn update_in_the_early_dialog_from_both_sides() {
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;

    let mut call = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    bob.reply(&inv, 180, "Ringing", Some("bob"), None).await;
    let ringing = loop {
        let r = alice.response(&call.call_id, "INVITE").await;
        if r.code == 180 {
            break r;
        }
    };
    let early = early_call(&call, &ringing);
    assert!(
        early.remote_contact.is_some(),
        "the 180 gives the early dialog a target"
    );

    // A, no SDP: 200 at once, with a Contact.
    let r = caller_final(&mut alice, "UPDATE", &early, 2, None).await;
    assert_eq!(r.code, 200, "{} {}", r.code, r.reason);
    assert!(r.raw(&Name::CONTACT).is_some());
    // A, with SDP: the media node answers for A's session.
    let offer = offer_sdp(alice.rtp_port, 2);
    let r = caller_final(&mut alice, "UPDATE", &early, 3, Some(&offer)).await;
    assert_eq!(r.code, 200, "{} {}", r.code, r.reason);
    assert!(
        String::from_utf8_lossy(&r.body).contains("m=audio "),
        "answer in the 200"
    );

    // B, no SDP, in its early dialog with swbd: 200.
    let r = callee_final(&mut bob, &inv, "bob", "UPDATE", 1, None).await;
    assert_eq!(r.code, 200, "{} {}", r.code, r.reason);
    // B, with SDP, while swbd's INVITE offer has no answer yet: 491.
    let offer = offer_sdp(bob.rtp_port, 1);
    let r = callee_final(&mut bob, &inv, "bob", "UPDATE", 2, Some(&offer)).await;
    assert_eq!(r.code, 491, "{} {}", r.code, r.reason);
    // After its 183 answer (early media), B's offer is answered.
    bob.reply(
        &inv,
        183,
        "Session Progress",
        Some("bob"),
        Some(&sdp(bob.rtp_port)),
    )
    .await;
    let progress = loop {
        let r = alice.response(&call.call_id, "INVITE").await;
        if r.code == 183 {
            break r;
        }
    };
    assert!(
        progress.raw(&Name::CONTACT).is_some(),
        "the 183 carries a Contact"
    );
    let offer = offer_sdp(bob.rtp_port, 2);
    let r = callee_final(&mut bob, &inv, "bob", "UPDATE", 3, Some(&offer)).await;
    assert_eq!(r.code, 200, "{} {}", r.code, r.reason);
    assert!(String::from_utf8_lossy(&r.body).contains("m=audio "));

    bob.reply(&inv, 200, "OK", Some("bob"), Some(&sdp(bob.rtp_port)))
        .await;
    let _ack = bob.request("ACK").await;
    assert_eq!(alice.final_response(&mut call).await.code, 200);
    alice.ack(&call).await;
    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn update_in_a_confirmed_call_without_sdp_and_with_sdp_relayed() {
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;

    let mut call = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    bob.reply(&inv, 200, "OK", Some("bob"), Some(&sdp(bob.rtp_port)))
        .await;
    let _ack = bob.request("ACK").await;
    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200);
    alice.ack(&call).await;
    let a_media = media_addr(&ok.body);
    let b_media = media_addr(&inv.body);

    // No SDP, either side: 200 with a Contact, nothing relayed.
    let r = caller_final(&mut alice, "UPDATE", &call, 10, None).await;
    assert_eq!(r.code, 200);
    assert!(r.raw(&Name::CONTACT).is_some());
    let r = callee_final(&mut bob, &inv, "bob", "UPDATE", 10, None).await;
    assert_eq!(r.code, 200);

    // Alice moves her media (a new RTP port) by UPDATE.
    let alice_rtp2 = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let a_port2 = alice_rtp2.local_addr().expect("addr").port();
    let r = caller_final(
        &mut alice,
        "UPDATE",
        &call,
        11,
        Some(&offer_sdp(a_port2, 2)),
    )
    .await;
    assert_eq!(r.code, 200, "{} {}", r.code, r.reason);
    assert_eq!(media_addr(&r.body), a_media, "same media node address");

    // It reaches Bob as swbd's UPDATE with the node's new offer for his leg.
    let upd = bob.request("UPDATE").await;
    let offer = String::from_utf8_lossy(&upd.body).into_owned();
    assert!(offer.contains("m=audio "), "relayed with SDP: {offer}");
    assert_eq!(
        media_addr(&upd.body),
        b_media,
        "the B-leg's media node address"
    );
    assert!(
        !offer.contains(&a_port2.to_string()),
        "Alice's SDP is never forwarded"
    );
    // Bob answers from a new port too; swbd applies it.
    let bob_rtp2 = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let b_port2 = bob_rtp2.local_addr().expect("addr").port();
    bob.reply(
        &upd,
        200,
        "OK",
        None,
        Some(&dialog_support::answer_sdp(b_port2)),
    )
    .await;

    assert!(
        rtp_reaches(&alice_rtp2, a_media, &bob_rtp2, 0x31, 100).await,
        "media flows between the new addresses, Alice to Bob"
    );
    assert!(
        rtp_reaches(&bob_rtp2, b_media, &alice_rtp2, 0x32, 100).await,
        "and Bob to Alice"
    );

    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}
