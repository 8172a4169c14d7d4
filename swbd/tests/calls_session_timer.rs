//! RFC 4028 through the whole B2BUA (swbd + swrtp as processes, scripted
//! phones over UDP), with intervals of seconds (`sip.session_timer.min_se`
//! below RFC 4028's 90 s is allowed for tests): a too-short interval gets
//! `422`; swbd refreshes the legs it refreshes (re-INVITE without SDP
//! toward a caller without UPDATE, UPDATE toward a callee allowing it); a
//! refresh that fails, or one the peer owes and never sends, ends the call
//! with BYE to both legs and the cause "session timer expired"; a peer's
//! refresh is answered with `Session-Expires`.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::time::Duration;

use support::ua::{OutCall, Ua, sdp};
use support::{Options, System, eventually};
use swbd::sip::message::HeaderAccess;
use swbd::sip::{Name, Request, SipMessage};
use switchboard_proto::admin::v1 as pb;
use tokio::sync::mpsc;

fn short_timers(session_expires: u32) -> Options {
    Options {
        sip_extra: format!(
            "  session_timer: {{ enabled: true, session_expires: {session_expires}, min_se: 2 }}\n"
        ),
        ..Options::default()
    }
}

async fn ended_cause(sys: &System) -> String {
    eventually(30, "the call listed as ended", || async {
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
            .map(|c| c.end_cause)
    })
    .await
}

/// The next request of any method.
async fn next_request(ua: &mut Ua, secs: u64) -> Request {
    match ua
        .wait_for(secs, "a request", |m| matches!(m, SipMessage::Request(_)))
        .await
    {
        SipMessage::Request(r) => r,
        SipMessage::Response(_) => unreachable!(),
    }
}

/// What a peer task saw.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// A refresh (method) arrived; answered or not.
    Refresh(String),
    /// The ACK of a refresh re-INVITE, with an SDP body or not.
    Ack { with_sdp: bool },
    /// BYE (answered 200); the task ends.
    Bye,
}

/// Play a peer in a confirmed call until BYE: refreshes numbered from 1
/// are answered 200 (re-INVITEs with an SDP offer) while `answer(n)`,
/// with `extra` headers; everything is reported on `tx`.
async fn peer(
    mut ua: Ua,
    answer: impl Fn(usize) -> bool,
    extra: &'static [(&'static str, &'static str)],
    tx: mpsc::UnboundedSender<Seen>,
) {
    let mut n = 0;
    loop {
        let r = next_request(&mut ua, 30).await;
        let method = r.method.to_string();
        match method.as_str() {
            "BYE" => {
                ua.reply(&r, 200, "OK", None, None).await;
                let _ = tx.send(Seen::Bye);
                return;
            }
            "ACK" => {
                let _ = tx.send(Seen::Ack {
                    with_sdp: !r.body.is_empty(),
                });
            }
            "INVITE" | "UPDATE" => {
                // (A retransmission of an unanswered one counts again.)
                n += 1;
                let _ = tx.send(Seen::Refresh(method.clone()));
                if answer(n) {
                    let body = (method == "INVITE").then(|| sdp(ua.rtp_port));
                    ua.reply_full(&r, 200, "OK", None, body.as_deref(), extra)
                        .await;
                }
            }
            other => panic!("unexpected {other}"),
        }
    }
}

/// Wait for `want` on `rx`, collecting what came before.
async fn until(rx: &mut mpsc::UnboundedReceiver<Seen>, want: Seen, seen: &mut Vec<Seen>) {
    loop {
        let s = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("in time")
            .expect("peer alive");
        let done = s == want;
        seen.push(s);
        if done {
            return;
        }
    }
}

#[tokio::test]
async fn session_interval_below_min_se_gets_422() {
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);
    let mut call = alice
        .invite_with("1002", None, "Supported: timer\r\nSession-Expires: 30\r\n")
        .await;
    let r = alice.final_response(&mut call).await;
    assert_eq!(r.code, 422);
    assert_eq!(r.raw(&Name::MIN_SE), Some("90"));
    assert!(sys.active_calls().await.is_empty());
}

/// Alice calls Bob; Bob answers with `bob_extra`. Returns the call, Alice's
/// 200 and Bob's INVITE.
async fn bridged_call(
    sys: &System,
    alice_extra: &str,
    bob_extra: &[(&str, &str)],
) -> (Ua, Ua, OutCall, swbd::sip::Response, Request) {
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);
    let mut call = alice.invite_with("1002", None, alice_extra).await;
    let inv = bob.request("INVITE").await;
    let body = sdp(bob.rtp_port);
    bob.reply_full(&inv, 200, "OK", Some("bobtag"), Some(&body), bob_extra)
        .await;
    let _ack = bob.request("ACK").await;
    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200);
    alice.ack(&call).await;
    (alice, bob, call, ok, inv)
}

#[tokio::test]
async fn refresh_failure_ends_the_call_with_bye_to_both_legs() {
    let sys = System::start(short_timers(4)).await;
    // Alice asks for 4 s but supports neither timers nor UPDATE: swbd
    // refreshes her with re-INVITEs. Bob lets swbd refresh him (uac) by
    // UPDATE, answers the first one and then goes silent.
    let (alice, bob, _call, ok, inv) = bridged_call(
        &sys,
        "Session-Expires: 4\r\n",
        &[
            ("Session-Expires", "4;refresher=uac"),
            ("Require", "timer"),
            ("Allow", "INVITE, ACK, CANCEL, BYE, UPDATE"),
        ],
    )
    .await;
    assert_eq!(inv.raw(&Name::SESSION_EXPIRES), Some("4"));
    assert_eq!(inv.raw(&Name::MIN_SE), Some("2"));
    assert_eq!(ok.raw(&Name::SESSION_EXPIRES), Some("4;refresher=uas"));
    assert!(
        ok.raw(&Name::REQUIRE).is_none(),
        "Alice does not support timers"
    );

    let (a_tx, mut a_rx) = mpsc::unbounded_channel();
    let (b_tx, mut b_rx) = mpsc::unbounded_channel();
    tokio::spawn(peer(alice, |_| true, &[], a_tx));
    tokio::spawn(peer(
        bob,
        |n| n == 1,
        &[("Session-Expires", "4;refresher=uac")],
        b_tx,
    ));
    let mut at_bob = Vec::new();
    until(&mut b_rx, Seen::Bye, &mut at_bob).await;
    let mut at_alice = Vec::new();
    until(&mut a_rx, Seen::Bye, &mut at_alice).await;

    assert!(
        at_bob
            .iter()
            .filter(|s| **s == Seen::Refresh("UPDATE".into()))
            .count()
            >= 2,
        "Bob was refreshed by UPDATE, twice at least: {at_bob:?}"
    );
    assert!(
        at_alice.contains(&Seen::Refresh("INVITE".into())),
        "Alice was refreshed by re-INVITE: {at_alice:?}"
    );
    assert!(
        at_alice.contains(&Seen::Ack { with_sdp: true }),
        "the refresh's ACK answers Alice's offer: {at_alice:?}"
    );
    assert_eq!(ended_cause(&sys).await, "session timer expired");
    sys.assert_clean().await;
}

#[tokio::test]
async fn a_refresh_the_callee_owes_and_never_sends_ends_the_call() {
    let sys = System::start(short_timers(10)).await;
    // Bob says he refreshes (uas) every 3 s and never does: swbd gives up
    // at 3 s minus a third, before its own refresh of Alice is due (5 s).
    let (alice, bob, _call, ok, _inv) = bridged_call(
        &sys,
        "",
        &[("Session-Expires", "3;refresher=uas"), ("Require", "timer")],
    )
    .await;
    assert_eq!(ok.raw(&Name::SESSION_EXPIRES), Some("10;refresher=uas"));
    let (a_tx, mut a_rx) = mpsc::unbounded_channel();
    let (b_tx, mut b_rx) = mpsc::unbounded_channel();
    tokio::spawn(peer(alice, |_| true, &[], a_tx));
    tokio::spawn(peer(bob, |_| true, &[], b_tx));
    let mut at_bob = Vec::new();
    until(&mut b_rx, Seen::Bye, &mut at_bob).await;
    let mut at_alice = Vec::new();
    until(&mut a_rx, Seen::Bye, &mut at_alice).await;
    assert_eq!(at_bob, vec![Seen::Bye], "nothing but the BYE for Bob");
    assert_eq!(ended_cause(&sys).await, "session timer expired");
    sys.assert_clean().await;
}

/// A re-INVITE from Alice in `call` with `extra` headers and her SDP.
fn reinvite(alice: &Ua, call: &OutCall, cseq: u32, extra: &str) -> String {
    let body = sdp(alice.rtp_port);
    format!(
        "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKre{cseq}{n};rport\r\n\
         Max-Forwards: 70\r\nFrom: \"{u}\" <sip:{u}@127.0.0.1>;tag={ft}\r\nTo: <sip:{dest}@127.0.0.1>;tag={tt}\r\n\
         Call-ID: {cid}\r\nCSeq: {cseq} INVITE\r\nContact: {c}\r\n{extra}Content-Type: application/sdp\r\n\
         Content-Length: {len}\r\n\r\n{body}",
        uri = call.remote_contact.clone().expect("swbd's Contact"),
        me = alice.addr,
        n = alice.rtp_port,
        u = alice.user,
        ft = call.from_tag,
        dest = call.dest,
        tt = call.to_tag.clone().expect("To tag"),
        cid = call.call_id,
        c = alice.contact(),
        len = body.len(),
    )
}

/// The ACK for Alice's re-INVITE `cseq` (to a 2xx: a new branch; to a
/// failure: the re-INVITE's branch, RFC 3261 §17.1.1.3).
fn ack(alice: &Ua, call: &OutCall, cseq: u32, branch: &str) -> String {
    format!(
        "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: \"{u}\" <sip:{u}@127.0.0.1>;tag={ft}\r\nTo: <sip:{dest}@127.0.0.1>;tag={tt}\r\n\
         Call-ID: {cid}\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n",
        uri = call.remote_contact.clone().expect("swbd's Contact"),
        me = alice.addr,
        u = alice.user,
        ft = call.from_tag,
        dest = call.dest,
        tt = call.to_tag.clone().expect("To tag"),
        cid = call.call_id,
    )
}

#[tokio::test]
async fn the_callers_refresh_is_answered_with_session_expires() {
    let sys = System::start(short_timers(60)).await;
    // Alice supports timers and refreshes (uac); Bob does not do timers.
    let (mut alice, mut bob, call, ok, _inv) = bridged_call(
        &sys,
        "Supported: timer\r\nSession-Expires: 60;refresher=uac\r\n",
        &[],
    )
    .await;
    assert_eq!(ok.raw(&Name::SESSION_EXPIRES), Some("60;refresher=uac"));
    assert_eq!(ok.raw(&Name::REQUIRE), Some("timer"));

    // Too short: 422 with our Min-SE, the session as it was.
    alice
        .send_raw(&reinvite(
            &alice,
            &call,
            50,
            "Supported: timer\r\nSession-Expires: 1\r\n",
        ))
        .await;
    let r = alice.response(&call.call_id, "INVITE").await;
    let r = if r.code == 100 {
        alice.response(&call.call_id, "INVITE").await
    } else {
        r
    };
    assert_eq!(r.code, 422);
    assert_eq!(r.raw(&Name::MIN_SE), Some("2"));
    let branch = format!("z9hG4bKre50{}", alice.rtp_port);
    alice.send_raw(&ack(&alice, &call, 50, &branch)).await;

    // A refresh: 200 with Session-Expires, Alice still the refresher.
    alice
        .send_raw(&reinvite(
            &alice,
            &call,
            51,
            "Supported: timer\r\nSession-Expires: 30;refresher=uac\r\n",
        ))
        .await;
    let r = loop {
        let r = alice.response(&call.call_id, "INVITE").await;
        if r.code >= 200 && r.cseq().expect("cseq").number == 51 {
            break r;
        }
    };
    assert_eq!(r.code, 200);
    assert_eq!(r.raw(&Name::SESSION_EXPIRES), Some("30;refresher=uac"));
    assert_eq!(r.raw(&Name::REQUIRE), Some("timer"));
    alice
        .send_raw(&ack(&alice, &call, 51, "z9hG4bKack51"))
        .await;

    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    assert_eq!(ended_cause(&sys).await, "caller hung up");
    sys.assert_clean().await;
}

#[tokio::test]
async fn a_callees_422_is_answered_with_its_min_se() {
    let sys = System::start(short_timers(60)).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);
    let mut call = alice.invite("1002", None).await;
    let first = bob.request("INVITE").await;
    assert_eq!(first.raw(&Name::SESSION_EXPIRES), Some("60"));
    bob.reply_with(
        &first,
        422,
        "Session Interval Too Small",
        Some("b422"),
        &[("Min-SE", "120")],
    )
    .await;
    let again = bob.request("INVITE").await;
    assert_eq!(again.call_id().ok(), first.call_id().ok(), "same B-leg");
    assert_eq!(
        again.cseq().expect("cseq").number,
        first.cseq().expect("cseq").number + 1
    );
    assert_eq!(again.raw(&Name::SESSION_EXPIRES), Some("120"));
    assert_eq!(again.raw(&Name::MIN_SE), Some("120"));
    let body = sdp(bob.rtp_port);
    bob.reply_full(
        &again,
        200,
        "OK",
        Some("bobtag"),
        Some(&body),
        &[
            ("Session-Expires", "120;refresher=uac"),
            ("Require", "timer"),
        ],
    )
    .await;
    let _ack = bob.request("ACK").await;
    assert_eq!(alice.final_response(&mut call).await.code, 200);
    alice.ack(&call).await;
    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}
