//! End-to-end B2BUA calls: swbd + swrtp as real processes, scripted SIP
//! phones over real UDP, RTP through the media node, admin checks for
//! leaks afterwards.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use support::ua::{Ua, sdp, sdp_media_addr};
use support::{Options, System, goertzel};
use swbd::sip::message::HeaderAccess;
use swbd::sip::{Name, Request};

/// Bob answers an INVITE: 180, then 200 with his SDP; returns (invite, to_tag).
async fn answer(bob: &mut Ua) -> (Request, String) {
    let inv = bob.request("INVITE").await;
    let tag = format!("bob{}", bob.rtp_port);
    bob.reply(&inv, 180, "Ringing", Some(&tag), None).await;
    let body = sdp(bob.rtp_port);
    bob.reply(&inv, 200, "OK", Some(&tag), Some(&body)).await;
    let _ack = bob.request("ACK").await;
    (inv, tag)
}

#[tokio::test]
async fn basic_call_relays_rtp_and_caller_hangs_up() {
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);

    let mut call = alice.invite("1002", None).await;
    let (b_invite, _) = answer(&mut bob).await;
    // The B-leg is a new call: own Call-ID, SDP from the media node.
    assert_ne!(b_invite.call_id().expect("call-id"), call.call_id);
    let b_media = sdp_media_addr(&b_invite.body).expect("B offer has media");
    assert_ne!(b_media.port(), alice.rtp_port, "A's SDP is never forwarded");

    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200);
    alice.ack(&call).await;
    let a_media = sdp_media_addr(&ok.body).expect("200 has SDP");

    // RTP both ways through swrtp.
    let payload = [0x55u8; 160];
    for seq in 0..20u16 {
        alice.send_rtp(a_media, seq, 0xA11CE, &payload).await;
        bob.send_rtp(b_media, seq, 0xB0B, &[0x2a; 160]).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let at_bob = bob.recv_rtp(5, 10).await;
    let at_alice = alice.recv_rtp(5, 10).await;
    assert!(!at_bob.is_empty(), "bob hears alice");
    assert!(!at_alice.is_empty(), "alice hears bob");
    assert_eq!(
        at_bob[0].get(12..),
        Some(&payload[..]),
        "payload relayed unchanged"
    );

    let calls = sys.active_calls().await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].legs.len(), 2);

    // Alice hangs up: bob gets BYE.
    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn callee_hangs_up_and_caller_gets_bye() {
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;
    let mut call = alice.invite("1002", None).await;
    let (b_invite, tag) = answer(&mut bob).await;
    assert_eq!(alice.final_response(&mut call).await.code, 200);
    alice.ack(&call).await;

    // Bob sends BYE in his dialog with swbd.
    let b_call = support::ua::OutCall {
        call_id: b_invite.call_id().expect("cid").to_string(),
        from_tag: tag,
        to_tag: b_invite
            .header_from()
            .ok()
            .and_then(|f| f.tag().map(str::to_string)),
        branch: String::new(),
        invite: String::new(),
        dest: "swbd".into(),
        remote_contact: b_invite
            .raw(&Name::CONTACT)
            .map(|c| c.trim_matches(['<', '>', ' ']).to_string()),
    };
    assert_eq!(bye_as_callee(&mut bob, &b_call, &b_invite).await, 200);
    let bye = alice.request("BYE").await;
    alice.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}

/// BYE from the UAS side of the B-leg (From/To swapped relative to the INVITE).
async fn bye_as_callee(bob: &mut Ua, call: &support::ua::OutCall, invite: &Request) -> u16 {
    let from = invite.raw(&Name::TO).unwrap_or_default();
    let to = invite.raw(&Name::FROM).unwrap_or_default();
    let uri = call.remote_contact.clone().unwrap_or_default();
    let msg = format!(
        "BYE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKbye{port};rport\r\nMax-Forwards: 70\r\n\
         From: {from};tag={tag}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        me = bob.addr,
        port = bob.rtp_port,
        tag = call.from_tag,
        cid = call.call_id,
    );
    bob.send_raw(&msg).await;
    bob.response(&call.call_id, "BYE").await.code
}

#[tokio::test]
async fn cancel_before_answer_cancels_the_b_leg() {
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;
    let mut call = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    bob.reply(&inv, 180, "Ringing", Some("bobtag"), None).await;
    let ringing = alice.response(&call.call_id, "INVITE").await;
    assert!(ringing.code == 100 || ringing.code == 180);

    assert_eq!(alice.cancel(&call).await.code, 200);
    // swbd CANCELs the B-leg: answer it like a phone does.
    let cancel = bob.request("CANCEL").await;
    bob.reply(&cancel, 200, "OK", None, None).await;
    bob.reply(&inv, 487, "Request Terminated", Some("bobtag"), None)
        .await;
    let _ack = bob.request("ACK").await;

    assert_eq!(alice.final_response(&mut call).await.code, 487);
    sys.assert_clean().await;
}

#[tokio::test]
async fn busy_callee_maps_to_486() {
    let plan = "version: 1\nroutes:\n  - id: ext\n    match: { destination: \"1???\" }\n    actions:\n      - dial: { target: \"user/${destination}\", timeout: 10s, on_failure: stop }\n";
    let sys = System::start(Options {
        dialplan: Some(plan.into()),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;
    let mut call = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    bob.reply(&inv, 486, "Busy Here", Some("b"), None).await;
    let _ack = bob.request("ACK").await;
    assert_eq!(alice.final_response(&mut call).await.code, 486);
    sys.assert_clean().await;
}

#[tokio::test]
async fn unknown_destination_is_404_and_unregistered_user_480() {
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut call = alice.invite("777", None).await;
    assert_eq!(alice.final_response(&mut call).await.code, 404);
    // 1009 matches the extensions route but nobody registered: the dial
    // fails and the default plan's next action answers 480.
    let mut call = alice.invite("1009", None).await;
    assert_eq!(alice.final_response(&mut call).await.code, 480);
    sys.assert_clean().await;
}

#[tokio::test]
async fn no_answer_times_out_with_cancel() {
    let plan = "version: 1\nroutes:\n  - id: ext\n    match: { destination: \"1???\" }\n    actions:\n      - dial: { target: \"user/${destination}\", timeout: 1s, on_failure: stop }\n";
    let sys = System::start(Options {
        dialplan: Some(plan.into()),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;
    let mut call = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    bob.reply(&inv, 180, "Ringing", Some("b"), None).await;
    let cancel = bob.request("CANCEL").await;
    bob.reply(&cancel, 200, "OK", None, None).await;
    bob.reply(&inv, 487, "Request Terminated", Some("b"), None)
        .await;
    assert_eq!(alice.final_response(&mut call).await.code, 480);
    sys.assert_clean().await;
}

#[tokio::test]
async fn malformed_sdp_gets_488_with_a_reason() {
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;
    // Dial 500 (answer + playback): the A offer is parsed at answer time.
    let mut call = alice.invite("500", Some("this is not SDP\r\n")).await;
    let r = alice.final_response(&mut call).await;
    assert_eq!(r.code, 488, "{} {}", r.code, r.reason);
    assert!(
        r.reason.len() > "Not Acceptable Here".len(),
        "reason says why: {}",
        r.reason
    );
    sys.assert_clean().await;
}

#[tokio::test]
async fn b_leg_with_garbage_sdp_ends_cleanly() {
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;
    let mut call = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    bob.reply(&inv, 200, "OK", Some("b"), Some("garbage\r\n"))
        .await;
    let _ack = bob.request("ACK").await;
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    let r = alice.final_response(&mut call).await;
    assert!(r.code >= 400, "caller gets an error, got {}", r.code);
    sys.assert_clean().await;
}

#[tokio::test]
async fn parallel_ringing_first_answer_wins_other_is_cancelled() {
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut desk = Ua::new("1002", sys.sip).await;
    let mut mobile = Ua::new("1002", sys.sip).await;
    desk.register(300).await;
    mobile.register(300).await;
    let mut call = alice.invite("1002", None).await;
    let inv_desk = desk.request("INVITE").await;
    let inv_mobile = mobile.request("INVITE").await;
    mobile
        .reply(&inv_mobile, 180, "Ringing", Some("m"), None)
        .await;
    desk.reply(&inv_desk, 180, "Ringing", Some("d"), None).await;
    let body = sdp(desk.rtp_port);
    desk.reply(&inv_desk, 200, "OK", Some("d"), Some(&body))
        .await;
    let _ack = desk.request("ACK").await;
    let cancel = mobile.request("CANCEL").await;
    mobile.reply(&cancel, 200, "OK", None, None).await;
    mobile
        .reply(&inv_mobile, 487, "Request Terminated", Some("m"), None)
        .await;

    assert_eq!(alice.final_response(&mut call).await.code, 200);
    alice.ack(&call).await;
    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = desk.request("BYE").await;
    desk.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn playback_route_is_heard_by_the_caller() {
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut call = alice.invite("500", None).await;
    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200);
    alice.ack(&call).await;
    let a_media = sdp_media_addr(&ok.body).expect("SDP");
    // Let swrtp latch onto us, then listen.
    alice.send_rtp(a_media, 1, 7, &[0xff; 160]).await;
    let packets = alice.recv_rtp(10, 60).await;
    assert!(
        packets.len() >= 50,
        "tone packets arrive: {}",
        packets.len()
    );
    let samples: Vec<f64> = packets
        .iter()
        .flat_map(|p| p.get(12..).unwrap_or_default().to_vec())
        .map(|b| f64::from(mulaw_decode(b)))
        .collect();
    let at_1k = goertzel(&samples, 1000.0);
    let at_440 = goertzel(&samples, 440.0);
    assert!(
        at_1k > 10.0 * at_440,
        "1 kHz dominates: {at_1k} vs {at_440}"
    );
    // The plan hangs up after the prompt: swbd sends BYE.
    let bye = alice.request("BYE").await;
    alice.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}

fn mulaw_decode(b: u8) -> i16 {
    let b = !b;
    let sign = b & 0x80;
    let exponent = (b >> 4) & 0x07;
    let mantissa = b & 0x0f;
    let magnitude = ((i32::from(mantissa) << 3) + 0x84) << exponent;
    let v = magnitude - 0x84;
    (if sign != 0 { -v } else { v }) as i16
}

#[tokio::test]
async fn early_media_from_183_reaches_the_caller_before_answer() {
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;
    let mut call = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    let b_media = sdp_media_addr(&inv.body).expect("B offer");
    let body = sdp(bob.rtp_port);
    bob.reply(&inv, 183, "Session Progress", Some("b"), Some(&body))
        .await;
    let progress = loop {
        let r = alice.response(&call.call_id, "INVITE").await;
        if r.code == 183 {
            break r;
        }
        assert!(r.code < 200, "unexpected final {}", r.code);
    };
    let a_media = sdp_media_addr(&progress.body).expect("183 carries SDP");
    // Ringback from the far end reaches alice before any answer.
    for seq in 0..10u16 {
        bob.send_rtp(b_media, seq, 0xB0B, &[0x11; 160]).await;
        alice.send_rtp(a_media, seq, 0xA11, &[0x22; 160]).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let early = alice.recv_rtp(5, 3).await;
    assert!(!early.is_empty(), "early media heard");
    bob.reply(&inv, 200, "OK", Some("b"), Some(&body)).await;
    let _ack = bob.request("ACK").await;
    assert_eq!(alice.final_response(&mut call).await.code, 200);
    alice.ack(&call).await;
    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn late_200_on_a_cancelled_fork_gets_ack_and_bye() {
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut desk = Ua::new("1002", sys.sip).await;
    let mut mobile = Ua::new("1002", sys.sip).await;
    desk.register(300).await;
    mobile.register(300).await;
    let mut call = alice.invite("1002", None).await;
    let inv_desk = desk.request("INVITE").await;
    let inv_mobile = mobile.request("INVITE").await;
    mobile
        .reply(&inv_mobile, 180, "Ringing", Some("m"), None)
        .await;
    let body = sdp(desk.rtp_port);
    desk.reply(&inv_desk, 200, "OK", Some("d"), Some(&body))
        .await;
    let _ack = desk.request("ACK").await;
    // The mobile answers too: its 200 crosses swbd's CANCEL.
    let cancel = mobile.request("CANCEL").await;
    let body_m = sdp(mobile.rtp_port);
    mobile
        .reply(&inv_mobile, 200, "OK", Some("m"), Some(&body_m))
        .await;
    mobile.reply(&cancel, 200, "OK", None, None).await;
    let _ack = mobile.request("ACK").await;
    let bye = mobile.request("BYE").await;
    mobile.reply(&bye, 200, "OK", None, None).await;

    assert_eq!(alice.final_response(&mut call).await.code, 200);
    alice.ack(&call).await;
    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = desk.request("BYE").await;
    desk.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}
