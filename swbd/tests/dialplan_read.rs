//! The dialplan's `read` action on a real call: an IVR route answers,
//! plays a prompt, collects the caller's digits (RFC 4733 in one call, SIP
//! INFO in another) and dials the extension they name, or hangs up when
//! nobody has it.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::ua::{Ua, sdp, sdp_media_addr};
use support::{Options, System};
use swbd::sip::Name;
use swbd::sip::message::HeaderAccess;

const IVR: &str = r##"version: 1
routes:
  - id: ivr
    match: {destination: "700"}
    actions:
      - read: {var: ext, max_digits: 4, timeout: 5s, terminator: "#", prompt: tone-1khz-2s.wav}
      - dial: {target: "user/${ext}", timeout: 10s}
      - hangup: {code: 404, reason: "no extension ${ext}"}
"##;

/// An RFC 4733 event from `ua` to `to`: start, update, the end three times.
async fn send_event(ua: &Ua, to: SocketAddr, seq: &mut u16, ts: u32, event: u8) {
    for (duration, end) in [
        (160u16, false),
        (320, false),
        (800, true),
        (800, true),
        (800, true),
    ] {
        let mut pkt = vec![0x80, 101];
        pkt.extend_from_slice(&seq.to_be_bytes());
        pkt.extend_from_slice(&ts.to_be_bytes());
        pkt.extend_from_slice(&0xA11CE_u32.to_be_bytes());
        pkt.extend_from_slice(&[event, if end { 0x8a } else { 0x0a }]);
        pkt.extend_from_slice(&duration.to_be_bytes());
        let _ = ua.rtp.send_to(&pkt, to).await;
        *seq = seq.wrapping_add(1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_ivr_reads_an_extension_and_dials_it_or_hangs_up() {
    let sys = System::start(Options {
        dialplan: Some(IVR.into()),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);

    // Call 1: the digits come as RFC 4733 while the prompt plays.
    let mut call = alice.invite("700", None).await;
    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200, "read answers the call");
    alice.ack(&call).await;
    let a_media = sdp_media_addr(&ok.body).expect("A's media");
    let prompt = alice.recv_rtp(5, 5).await;
    assert!(!prompt.is_empty(), "the prompt plays");
    let mut seq = 1;
    for (i, digit) in [1u8, 0, 0, 2].into_iter().enumerate() {
        send_event(&alice, a_media, &mut seq, 8000 * (i as u32 + 1), digit).await;
    }
    let inv = bob.request("INVITE").await;
    assert!(
        inv.raw(&Name::TO).is_some_and(|t| t.contains("sip:1002@")),
        "the read extension is dialled: {:?}",
        inv.raw(&Name::TO)
    );
    let body = sdp(bob.rtp_port);
    bob.reply(&inv, 200, "OK", Some("bobtag"), Some(&body))
        .await;
    let _ack = bob.request("ACK").await;
    let calls = sys.active_calls().await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].legs.len(), 2, "bridged to bob");
    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;

    // Call 2: the digits come as INFO; `#` ends them early; nobody has
    // extension 99, so the route hangs up (a BYE: the call was answered).
    let mut call = alice.invite("700", None).await;
    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200);
    alice.ack(&call).await;
    for digit in ["9", "9", "#"] {
        let r = alice
            .in_dialog_with_body("INFO", &call, "application/dtmf", digit)
            .await;
        assert_eq!(r.code, 200);
    }
    let bye = alice.request("BYE").await;
    alice.reply(&bye, 200, "OK", None, None).await;
    support::eventually(10, "the call ended by the route's hangup", || async {
        let calls = sys
            .signaling()
            .await
            .ok()?
            .list_calls(switchboard_proto::admin::v1::ListCallsRequest {
                include_ended: true,
            })
            .await
            .ok()?
            .into_inner()
            .calls;
        calls
            .iter()
            .any(|c| c.end_cause.contains("no extension 99"))
            .then_some(())
    })
    .await;
    sys.assert_clean().await;
}
