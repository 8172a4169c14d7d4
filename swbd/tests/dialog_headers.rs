//! Dialog details (RFC 3261 §12.1.1, §13.3.1.4): the 180 to the caller
//! carries a Contact (the early dialog's remote target) and Allow, the 200
//! carries Contact, Allow (with UPDATE) and Supported; a known user who is
//! not registered is 480, an unknown one 404.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod dialog_support;
mod support;

use support::ua::{Ua, sdp};
use support::{Options, System};
use swbd::sip::Name;
use swbd::sip::message::HeaderAccess;

#[tokio::test]
async fn ringing_carries_contact_and_the_200_allow_supported_contact() {
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);

    let mut call = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    bob.reply(&inv, 180, "Ringing", Some("bobtag"), None).await;
    let ringing = loop {
        let r = alice.response(&call.call_id, "INVITE").await;
        if r.code == 180 {
            break r;
        }
        assert!(r.code < 200, "final before 180: {}", r.code);
    };
    assert!(
        ringing.header_to().expect("To").tag().is_some(),
        "the 180 has a To tag"
    );
    let contact = ringing
        .raw(&Name::CONTACT)
        .expect("the 180 carries a Contact");
    assert!(contact.contains("sip:"), "{contact}");
    let allow = ringing.raw(&Name::ALLOW).expect("the 180 carries Allow");
    assert!(allow.contains("UPDATE"), "{allow}");

    bob.reply(&inv, 200, "OK", Some("bobtag"), Some(&sdp(bob.rtp_port)))
        .await;
    let _ack = bob.request("ACK").await;
    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200);
    assert!(
        ok.raw(&Name::CONTACT).is_some(),
        "the 200 carries a Contact"
    );
    let allow = ok.raw(&Name::ALLOW).expect("the 200 carries Allow");
    for m in ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "UPDATE"] {
        assert!(allow.contains(m), "Allow lists {m}: {allow}");
    }
    let supported = ok.raw(&Name::SUPPORTED).expect("the 200 carries Supported");
    for tag in swbd::sip::capabilities::SUPPORTED_EXTENSIONS {
        assert!(
            supported.contains(tag),
            "Supported lists {tag}: {supported}"
        );
    }
    alice.ack(&call).await;
    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn known_user_not_registered_is_480_unknown_user_404() {
    // Users known from the users file, authentication off (a trusted PBX
    // front): 1002 exists but never registered, 1999 does not exist.
    let users = support::tempdir("dlg-users").join("users.yaml");
    std::fs::write(
        &users,
        "users:\n  - { username: \"1001\", password: \"a\" }\n  - { username: \"1002\", password: \"b\" }\n",
    )
    .expect("write users");
    let plan = "version: 1\nroutes:\n  - id: ext\n    match: { destination: \"1???\" }\n    actions:\n      - dial: { target: \"user/${destination}\", timeout: 10s, on_failure: stop }\n";
    let sys = System::start(Options {
        dialplan: Some(plan.into()),
        auth_extra: format!("users_file: \"{}\"", users.display()),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;

    let mut call = alice.invite("1002", None).await;
    let r = alice.final_response(&mut call).await;
    assert_eq!(
        r.code, 480,
        "known, not registered: {} {}",
        r.code, r.reason
    );

    let mut call = alice.invite("1999", None).await;
    let r = alice.final_response(&mut call).await;
    assert_eq!(r.code, 404, "unknown: {} {}", r.code, r.reason);
    sys.assert_clean().await;
}

#[tokio::test]
async fn callee_bye_in_its_early_dialog_does_not_end_the_call() {
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;

    let mut call = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    bob.reply(&inv, 180, "Ringing", Some("bobtag"), None).await;
    // Relayed: swbd has routed Bob's early dialog by now.
    while alice.response(&call.call_id, "INVITE").await.code != 180 {}
    // A (misbehaving) callee BYE in its early dialog, which swbd routes
    // for UPDATE: answered, and the caller's call is not torn down.
    let r = dialog_support::callee_final(&mut bob, &inv, "bobtag", "BYE", 1, None).await;
    assert_eq!(r.code, 200);
    bob.reply(&inv, 200, "OK", Some("bobtag"), Some(&sdp(bob.rtp_port)))
        .await;
    let _ack = bob.request("ACK").await;
    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200, "{} {}", ok.code, ok.reason);
    alice.ack(&call).await;
    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}
