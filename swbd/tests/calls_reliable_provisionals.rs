//! RFC 3262 through the whole B2BUA (swbd + swrtp as processes, scripted
//! phones over UDP): a caller that requires `100rel` gets its 18x
//! reliably and PRACKs them before the 200; a caller that never PRACKs
//! sees the 18x retransmitted and the INVITE rejected, and the callee is
//! CANCELled; a callee's reliable 183 is PRACKed by swbd, early media
//! flows from it, and the dialog's CSeq continues above the PRACKs.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use support::ua::{OutCall, Ua, sdp, sdp_media_addr};
use support::{Options, System, eventually};
use swbd::sip::message::HeaderAccess;
use swbd::sip::{Name, Response};
use switchboard_proto::admin::v1 as pb;

fn rseq(r: &Response) -> u32 {
    r.raw(&Name::RSEQ)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{} without RSeq", r.code))
}

fn to_tag(r: &Response) -> String {
    r.header_to()
        .ok()
        .and_then(|t| t.tag().map(str::to_string))
        .expect("To tag")
}

fn contact_uri(r: &Response) -> String {
    r.raw(&Name::CONTACT)
        .expect("a reliable 18x carries Contact")
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

/// A PRACK from `ua` for `call`'s early dialog with swbd.
fn prack(ua: &Ua, call: &OutCall, target: &str, tag: &str, cseq: u32, rack: &str) -> String {
    format!(
        "PRACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKpr{cseq}{n};rport\r\n\
         Max-Forwards: 70\r\nFrom: \"{u}\" <sip:{u}@127.0.0.1>;tag={ft}\r\nTo: <sip:{dest}@127.0.0.1>;tag={tag}\r\n\
         Call-ID: {cid}\r\nCSeq: {cseq} PRACK\r\nRAck: {rack}\r\nContent-Length: 0\r\n\r\n",
        me = ua.addr,
        n = ua.rtp_port,
        u = ua.user,
        ft = call.from_tag,
        dest = call.dest,
        cid = call.call_id,
    )
}

/// The next response to the INVITE of `call` other than 100.
async fn next_invite_response(ua: &mut Ua, call: &OutCall) -> Response {
    loop {
        let r = ua.response(&call.call_id, "INVITE").await;
        if r.code != 100 {
            return r;
        }
    }
}

async fn ended_call(sys: &System) -> pb::Call {
    eventually(20, "the call listed as ended", || async {
        let calls = sys
            .signaling()
            .await
            .ok()?
            .list_calls(pb::ListCallsRequest {
                include_ended: true,
            })
            .await
            .ok()?
            .into_inner()
            .calls;
        calls
            .into_iter()
            .find(|c| c.state == pb::CallState::Ended as i32)
    })
    .await
}

#[tokio::test]
async fn caller_requiring_100rel_pracks_180_and_183_before_the_200() {
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);

    let mut call = alice
        .invite_with("1002", None, "Require: 100rel\r\nSupported: 100rel\r\n")
        .await;
    let inv = bob.request("INVITE").await;
    let supported = inv.raw(&Name::SUPPORTED).unwrap_or_default().to_string();
    assert!(
        supported.contains("100rel") && supported.contains("timer"),
        "B-leg INVITE says Supported: {supported:?}"
    );
    bob.reply(&inv, 180, "Ringing", Some("bobtag"), None).await;
    let early = sdp(bob.rtp_port);
    bob.reply(&inv, 183, "Session Progress", Some("bobtag"), Some(&early))
        .await;

    // The 180 comes reliably; the 183 waits for its PRACK.
    let ringing = next_invite_response(&mut alice, &call).await;
    assert_eq!(ringing.code, 180);
    assert_eq!(ringing.raw(&Name::REQUIRE), Some("100rel"));
    let first = rseq(&ringing);
    let tag = to_tag(&ringing);
    let target = contact_uri(&ringing);
    let invite_cseq = call
        .invite
        .lines()
        .find_map(|l| l.strip_prefix("CSeq: "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse::<u32>().ok())
        .expect("CSeq of the INVITE");

    // A PRACK naming a provisional never sent: 481.
    alice
        .send_raw(&prack(
            &alice,
            &call,
            &target,
            &tag,
            10,
            &format!("{} {invite_cseq} INVITE", first + 5),
        ))
        .await;
    assert_eq!(alice.response(&call.call_id, "PRACK").await.code, 481);

    alice
        .send_raw(&prack(
            &alice,
            &call,
            &target,
            &tag,
            11,
            &format!("{first} {invite_cseq} INVITE"),
        ))
        .await;
    assert_eq!(alice.response(&call.call_id, "PRACK").await.code, 200);

    // Now the 183 with our answer, numbered next.
    let progress = loop {
        let r = next_invite_response(&mut alice, &call).await;
        if r.code == 183 {
            break r;
        }
        assert_eq!((r.code, rseq(&r)), (180, first), "only 180 retransmissions");
    };
    assert_eq!(rseq(&progress), first + 1);
    let a_media = sdp_media_addr(&progress.body).expect("183 carries swbd's answer");
    alice
        .send_raw(&prack(
            &alice,
            &call,
            &target,
            &tag,
            12,
            &format!("{} {invite_cseq} INVITE", first + 1),
        ))
        .await;
    assert_eq!(alice.response(&call.call_id, "PRACK").await.code, 200);

    // Bob answers: Alice's 200 carries no SDP (the answer was in the 183).
    bob.reply(&inv, 200, "OK", Some("bobtag"), Some(&early))
        .await;
    let _ack = bob.request("ACK").await;
    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200);
    assert!(ok.body.is_empty(), "no second answer in the 200");
    alice.ack(&call).await;

    // Media flows on what the 183 negotiated.
    let b_media = sdp_media_addr(&inv.body).expect("B offer");
    for seq in 0..20u16 {
        alice.send_rtp(a_media, seq, 0xA11CE, &[0x55; 160]).await;
        bob.send_rtp(b_media, seq, 0xB0B, &[0x2a; 160]).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!bob.recv_rtp(5, 5).await.is_empty(), "bob hears alice");
    assert!(!alice.recv_rtp(5, 5).await.is_empty(), "alice hears bob");

    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn no_prack_retransmits_the_18x_then_rejects_the_invite_and_cancels_the_callee() {
    // T1 = 50 ms: 64*T1 is 3.2 s instead of 32.
    let sys = System::start(Options {
        sip_extra: "  timers: { t1_ms: 50, t2_ms: 4000, t4_ms: 5000 }\n".into(),
        ..Options::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);

    let mut call = alice.invite_with("1002", None, "Require: 100rel\r\n").await;
    let inv = bob.request("INVITE").await;
    bob.reply(&inv, 180, "Ringing", Some("bobtag"), None).await;

    let first = next_invite_response(&mut alice, &call).await;
    assert_eq!(first.code, 180);
    let number = rseq(&first);
    let mut copies = 1;
    let last = loop {
        let r = next_invite_response(&mut alice, &call).await;
        if r.code != 180 {
            break r;
        }
        assert_eq!(rseq(&r), number, "retransmitted, same RSeq");
        copies += 1;
    };
    assert!(copies >= 3, "the 180 was retransmitted ({copies} copies)");
    assert_eq!(last.code, 500, "{} {}", last.code, last.reason);
    call.to_tag = Some(to_tag(&last));

    // The callee is CANCELled.
    let cancel = bob.request("CANCEL").await;
    bob.reply(&cancel, 200, "OK", None, None).await;
    bob.reply(&inv, 487, "Request Terminated", Some("bobtag"), None)
        .await;
    let _ack = bob.request("ACK").await;

    let ended = ended_call(&sys).await;
    assert_eq!(ended.end_cause, "no PRACK from caller");
    sys.assert_clean().await;
}

#[tokio::test]
async fn reliable_183_from_the_callee_is_pracked_once_and_cseq_continues() {
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);

    let mut call = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    let invite_cseq = inv.cseq().expect("cseq").number;
    let early = sdp(bob.rtp_port);
    let reliable = [("Require", "100rel"), ("RSeq", "7")];
    bob.reply_full(
        &inv,
        183,
        "Session Progress",
        Some("bobtag"),
        Some(&early),
        &reliable,
    )
    .await;

    let p1 = bob.request("PRACK").await;
    assert_eq!(
        p1.raw(&Name::RACK),
        Some(format!("7 {invite_cseq} INVITE").as_str())
    );
    assert_eq!(p1.header_to().expect("to").tag(), Some("bobtag"));
    assert_eq!(
        p1.uri.to_string(),
        format!("sip:1002@{}", bob.addr),
        "to B's Contact"
    );
    let p1_cseq = p1.cseq().expect("cseq").number;
    assert!(p1_cseq > invite_cseq);
    bob.reply(&p1, 200, "OK", None, None).await;

    // The same 183 again (as if our PRACK were lost, RFC 3262 §4: not
    // PRACKed again), then a reliable 180 numbered next: the next PRACK is
    // for RSeq 8, not a second one for 7.
    bob.reply_full(
        &inv,
        183,
        "Session Progress",
        Some("bobtag"),
        Some(&early),
        &reliable,
    )
    .await;
    bob.reply_full(
        &inv,
        180,
        "Ringing",
        Some("bobtag"),
        None,
        &[("Require", "100rel"), ("RSeq", "8")],
    )
    .await;
    let p2 = bob.request("PRACK").await;
    assert_eq!(
        p2.raw(&Name::RACK),
        Some(format!("8 {invite_cseq} INVITE").as_str())
    );
    let p2_cseq = p2.cseq().expect("cseq").number;
    assert!(p2_cseq > p1_cseq);
    bob.reply(&p2, 200, "OK", None, None).await;

    // Alice (no 100rel) got early media unreliably.
    let progress = loop {
        let r = next_invite_response(&mut alice, &call).await;
        if r.code == 183 {
            break r;
        }
    };
    assert!(
        progress.raw(&Name::RSEQ).is_none(),
        "Alice did not ask for 100rel"
    );
    assert!(sdp_media_addr(&progress.body).is_some());

    // Bob's 200 carries no SDP: his answer was in the reliable 183 (as
    // pjsua2 does); swbd uses that one.
    bob.reply(&inv, 200, "OK", Some("bobtag"), None).await;
    let _ack = bob.request("ACK").await;
    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200);
    alice.ack(&call).await;
    let a_media = sdp_media_addr(&ok.body).expect("Alice's 200 has swbd's answer");
    let b_media = sdp_media_addr(&inv.body).expect("B offer");
    for seq in 0..20u16 {
        alice.send_rtp(a_media, seq, 0xA11CE, &[0x55; 160]).await;
        bob.send_rtp(b_media, seq, 0xB0B, &[0x2a; 160]).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!bob.recv_rtp(5, 5).await.is_empty(), "bob hears alice");
    assert!(!alice.recv_rtp(5, 5).await.is_empty(), "alice hears bob");
    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    assert!(
        bye.cseq().expect("cseq").number > p2_cseq,
        "the dialog's CSeq continues above the PRACKs"
    );
    bob.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}
