//! A B-leg's 3xx (RFC 3261 §8.1.3.4): followed by default (the Contact is
//! dialled through the same rules as a `dial` target), at most 5 redirects
//! in a row; or, with `redirect: pass`, given to the caller with its
//! Contact intact.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod dialog_support;
mod support;

use dialog_support::reply_exact;
use support::ua::{Ua, sdp};
use support::{Options, System};
use swbd::sip::message::HeaderAccess;
use swbd::sip::{Name, SipMessage};

fn plan(redirect: &str) -> String {
    format!(
        "version: 1\nroutes:\n  - id: ext\n    match: {{ destination: \"1???\" }}\n    actions:\n      - dial: {{ target: \"user/${{destination}}\", timeout: 10s{redirect} }}\n      - hangup: {{ code: 480 }}\n"
    )
}

#[tokio::test]
async fn redirect_is_followed_and_the_new_target_bridged() {
    let sys = System::start(Options {
        dialplan: Some(plan("")),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    let mut bob2 = Ua::new("bob2", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);

    let mut call = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    let moved = format!("<sip:bob2@{}>", bob2.addr);
    reply_exact(
        &bob,
        &inv,
        302,
        "Moved Temporarily",
        "b1",
        &[("Contact", &moved)],
        None,
    )
    .await;
    let _ack = bob.request("ACK").await;

    let inv2 = bob2.request("INVITE").await;
    assert_eq!(inv2.uri.to_string(), format!("sip:bob2@{}", bob2.addr));
    assert!(
        inv2.raw(&Name::FROM).expect("From").contains("1001"),
        "the caller's identity goes on"
    );
    assert!(!inv2.body.is_empty(), "offered by the media node");
    bob2.reply(&inv2, 200, "OK", Some("b2"), Some(&sdp(bob2.rtp_port)))
        .await;
    let _ack = bob2.request("ACK").await;
    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200);
    alice.ack(&call).await;
    let a_media = dialog_support::media_addr(&ok.body);
    assert!(
        dialog_support::rtp_reaches(&alice.rtp, a_media, &bob2.rtp, 0x21, 100).await,
        "the redirect target hears the caller"
    );
    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob2.request("BYE").await;
    bob2.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn redirect_to_one_of_our_users_rings_that_users_phone() {
    let sys = System::start(Options {
        dialplan: Some(plan("")),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    let mut carol = Ua::new("1003", sys.sip).await;
    bob.register(300).await;
    carol.register(300).await;

    let mut call = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    // An address of record in our domain: user/1003, found in the registrar.
    reply_exact(
        &bob,
        &inv,
        302,
        "Moved Temporarily",
        "b1",
        &[("Contact", "<sip:1003@127.0.0.1>")],
        None,
    )
    .await;
    let inv3 = carol.request("INVITE").await;
    assert_eq!(inv3.uri.user().as_deref(), Some("1003"));
    carol
        .reply(&inv3, 200, "OK", Some("c"), Some(&sdp(carol.rtp_port)))
        .await;
    let _ack = carol.request("ACK").await;
    assert_eq!(alice.final_response(&mut call).await.code, 200);
    alice.ack(&call).await;
    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = carol.request("BYE").await;
    carol.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn redirects_stop_after_five_in_a_row() {
    let stop_plan = "version: 1\nroutes:\n  - id: ext\n    match: { destination: \"1???\" }\n    actions:\n      - dial: { target: \"user/${destination}\", timeout: 10s, on_failure: stop }\n";
    let sys = System::start(Options {
        dialplan: Some(stop_plan.into()),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut looper = Ua::new("1002", sys.sip).await;
    looper.register(300).await;

    let mut call = alice.invite("1002", None).await;
    // Every INVITE is sent on to a new URI on the same phone.
    for hop in 0..6 {
        let inv = looper.request("INVITE").await;
        let next = format!("<sip:hop{hop}@{}>", looper.addr);
        reply_exact(
            &looper,
            &inv,
            302,
            "Moved Temporarily",
            &format!("h{hop}"),
            &[("Contact", &next)],
            None,
        )
        .await;
    }
    let r = alice.final_response(&mut call).await;
    assert_eq!(r.code, 482, "hop limit: {} {}", r.code, r.reason);
    // Everything swbd sent went out before the caller's final response:
    // after the 6th redirect, no 7th INVITE.
    let mut buf = vec![0u8; 65536];
    while let Ok((n, _)) = looper.sock.try_recv_from(&mut buf) {
        if let Ok(SipMessage::Request(req)) = SipMessage::parse(&buf[..n], true) {
            assert!(
                !(req.method.to_string() == "INVITE" && req.uri.user().as_deref() == Some("hop5")),
                "a 7th INVITE was sent"
            );
        }
    }
    sys.assert_clean().await;
}

#[tokio::test]
async fn redirect_passed_to_the_caller_with_contact_intact() {
    let sys = System::start(Options {
        dialplan: Some(plan(", redirect: pass")),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;

    let mut call = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    let contact = "<sip:elsewhere@198.51.100.7:5070;transport=tcp>;q=0.5";
    reply_exact(
        &bob,
        &inv,
        302,
        "Moved Temporarily",
        "b1",
        &[("Contact", contact)],
        None,
    )
    .await;
    let _ack = bob.request("ACK").await;
    // The plan's next action (hangup 480) does not hide the 3xx.
    let r = alice.final_response(&mut call).await;
    assert_eq!(r.code, 302, "{} {}", r.code, r.reason);
    assert_eq!(r.raw(&Name::CONTACT).map(str::trim), Some(contact));
    sys.assert_clean().await;
}
