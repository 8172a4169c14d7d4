//! Overload control (issue #14): new INVITEs that swbd cannot take get one
//! stateless `503` with `Retry-After` (no `100 Trying`, no transaction),
//! while the calls it admitted complete and in-dialog requests are served.
//! swbd + swrtp as real processes, phones over real UDP.
//!
//! What makes swbd refuse is chosen so the tests do not depend on the
//! machine's speed: a low `max_calls_in_setup` with a callee that answers
//! only once every INVITE of the burst has its first answer, or a swbd
//! stopped (SIGSTOP) while INVITEs queue in its socket.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::collections::BTreeMap;

use support::ua::{OutCall, Ua, sdp};
use support::{Options, System, eventually};
use swbd::sip::message::HeaderAccess;
use swbd::sip::{Name, Response, SipMessage};
use switchboard_proto::admin::v1 as pb;

/// Only the setup cap acts: the delay law and its backstop are set so far
/// up that no scheduling hiccup of a busy test machine reaches them. One
/// receive loop handling what it reads (no UDP workers), so no two INVITEs
/// pass the check for the last place at once and the cap is exact.
fn cap_only(max_calls_in_setup: usize) -> Options {
    Options {
        sip_extra: format!(
            "  udp_receivers: 1\n  udp_workers: 1\n  overload: {{ max_calls_in_setup: {max_calls_in_setup}, target_delay_ms: 30000, max_delay_ms: 60000, retry_after_secs: 3 }}\n"
        ),
        ..Options::default()
    }
}

/// What the caller saw of one INVITE until its first answer.
#[derive(Debug, Default)]
struct FirstAnswer {
    /// Status codes in arrival order (100 and/or a final).
    codes: Vec<u16>,
    /// The 503, when refused.
    refusal: Option<Response>,
}

impl FirstAnswer {
    fn admitted(&self) -> bool {
        self.codes.first() == Some(&100)
    }
}

/// Read the caller's responses until every INVITE of `calls` has its first
/// answer: `100 Trying` (admitted) or a final response (refused).
async fn first_answers(alice: &mut Ua, calls: &[OutCall]) -> BTreeMap<String, FirstAnswer> {
    let mut seen: BTreeMap<String, FirstAnswer> = calls
        .iter()
        .map(|c| (c.call_id.clone(), FirstAnswer::default()))
        .collect();
    while seen.values().any(|a| a.codes.is_empty()) {
        let waiting: Vec<String> = seen
            .iter()
            .filter(|(_, a)| a.codes.is_empty())
            .map(|(cid, _)| cid.clone())
            .collect();
        // Other messages (responses of other calls, requests) stay queued.
        let m = alice
            .wait_for(20, "a first answer to every INVITE", |m| {
                matches!(m, SipMessage::Response(r)
                    if r.cseq().is_ok_and(|c| c.method.to_string() == "INVITE")
                        && r.call_id().is_ok_and(|cid| waiting.iter().any(|w| w == cid)))
            })
            .await;
        let SipMessage::Response(r) = m else {
            unreachable!()
        };
        let cid = r.call_id().expect("Call-ID").to_string();
        let entry = seen
            .get_mut(&cid)
            .expect("a response to one of our INVITEs");
        entry.codes.push(r.code);
        if r.code >= 200 {
            entry.refusal = Some(r);
        }
    }
    seen
}

/// ACK a non-2xx final response (RFC 3261 §17.1.1.3: the INVITE's branch).
async fn ack_failure(alice: &Ua, call: &OutCall, resp: &Response) {
    let to = resp.raw(&Name::TO).unwrap_or_default();
    let cseq = resp.cseq().expect("CSeq").number;
    let msg = format!(
        "ACK sip:{dest}@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: \"{u}\" <sip:{u}@127.0.0.1>;tag={ft}\r\nTo: {to}\r\n\
         Call-ID: {cid}\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n",
        dest = call.dest,
        server = alice.server,
        me = alice.addr,
        branch = call.branch,
        u = alice.user,
        ft = call.from_tag,
        cid = call.call_id,
    );
    alice.send_raw(&msg).await;
}

/// Check a refusal: `503` with `Retry-After: secs`, nothing before it.
fn assert_refused(cid: &str, a: &FirstAnswer, secs: &str) {
    assert_eq!(
        a.codes,
        [503],
        "{cid}: one 503 and nothing before it (no 100 Trying)"
    );
    let r = a.refusal.as_ref().expect("the 503");
    assert_eq!(
        r.raw(&Name::RETRY_AFTER).map(str::trim),
        Some(secs),
        "{cid}: Retry-After"
    );
}

/// Bob answers `n` B-leg INVITEs (180, 200 with SDP) and takes their ACKs.
async fn bob_answers(bob: &mut Ua, n: usize) {
    let mut invites = Vec::new();
    for _ in 0..n {
        invites.push(bob.request("INVITE").await);
    }
    for (i, inv) in invites.iter().enumerate() {
        let tag = format!("bob{i}");
        bob.reply(inv, 180, "Ringing", Some(&tag), None).await;
        bob.reply(inv, 200, "OK", Some(&tag), Some(&sdp(bob.rtp_port)))
            .await;
    }
    for _ in 0..n {
        let _ = bob.request("ACK").await;
    }
}

/// The admitted calls complete: 200, ACK, hold, BYE answered 200 (and Bob
/// answers the BYEs swbd sends him).
async fn complete(alice: &mut Ua, bob: &mut Ua, calls: &mut [OutCall]) {
    for call in calls.iter_mut() {
        let ok = alice.final_response(call).await;
        assert_eq!(
            ok.code, 200,
            "{}: an admitted call is answered",
            call.call_id
        );
        alice.ack(call).await;
    }
    for call in calls.iter() {
        assert_eq!(
            alice.bye(call).await.code,
            200,
            "{}: BYE answered",
            call.call_id
        );
        let bye = bob.request("BYE").await;
        bob.reply(&bye, 200, "OK", None, None).await;
    }
}

async fn overload_status(sys: &System) -> pb::OverloadStatus {
    sys.status()
        .await
        .overload
        .expect("GetStatus carries overload")
}

#[tokio::test]
async fn overload_burst_gets_only_503s_for_shed_calls_and_the_survivors_complete() {
    const BURST: usize = 24;
    let sys = System::start(cap_only(4)).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);

    let mut calls = Vec::new();
    for _ in 0..BURST {
        calls.push(alice.invite("1002", None).await);
    }
    // Bob does not answer before every INVITE has its first answer: the
    // admitted calls stay in setup meanwhile, so the cap holds for all.
    let answers = first_answers(&mut alice, &calls).await;
    let (mut admitted, refused): (Vec<OutCall>, Vec<OutCall>) = calls
        .into_iter()
        .partition(|c| answers.get(&c.call_id).is_some_and(FirstAnswer::admitted));
    assert_eq!(admitted.len(), 4, "as many admitted as the cap");
    assert_eq!(refused.len(), BURST - 4, "the rest refused");
    for call in &refused {
        let a = answers.get(&call.call_id).expect("answer");
        assert_refused(&call.call_id, a, "3");
        ack_failure(&alice, call, a.refusal.as_ref().expect("503")).await;
    }
    let status = overload_status(&sys).await;
    assert_eq!(
        status.invites_refused,
        refused.len() as u64,
        "swbd counts what it refused"
    );

    bob_answers(&mut bob, admitted.len()).await;
    complete(&mut alice, &mut bob, &mut admitted).await;
    sys.assert_clean().await;
    eventually(10, "no call left in setup", || async {
        (overload_status(&sys).await.calls_in_setup == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn in_dialog_requests_are_served_while_new_invites_are_refused() {
    let sys = System::start(cap_only(2)).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);

    // Two calls up (not in setup any more).
    let mut up = Vec::new();
    for _ in 0..2 {
        let mut call = alice.invite("1002", None).await;
        bob_answers(&mut bob, 1).await;
        assert_eq!(alice.final_response(&mut call).await.code, 200);
        alice.ack(&call).await;
        up.push(call);
    }
    // Two calls ringing: the setup cap is reached.
    let mut ringing = Vec::new();
    for i in 0..2 {
        let call = alice.invite("1002", None).await;
        let inv = bob.request("INVITE").await;
        bob.reply(&inv, 180, "Ringing", Some(&format!("ring{i}")), None)
            .await;
        ringing.push((call, inv));
    }
    // A new INVITE is refused statelessly.
    let extra = alice.invite("1002", None).await;
    let answers = first_answers(&mut alice, std::slice::from_ref(&extra)).await;
    assert_refused(
        &extra.call_id,
        answers.get(&extra.call_id).expect("answer"),
        "3",
    );

    // In-dialog requests of the calls up are served meanwhile.
    assert_eq!(alice.in_dialog_request("OPTIONS", &up[0]).await, 200);
    for call in &up {
        assert_eq!(alice.bye(call).await.code, 200, "BYE of a call up");
        let bye = bob.request("BYE").await;
        bob.reply(&bye, 200, "OK", None, None).await;
    }
    // CANCEL of the ringing calls too.
    for (call, inv) in &mut ringing {
        assert_eq!(alice.cancel(call).await.code, 200, "CANCEL answered");
        let cancel = bob.request("CANCEL").await;
        bob.reply(&cancel, 200, "OK", None, None).await;
        bob.reply(inv, 487, "Request Terminated", None, None).await;
        let _ack = bob.request("ACK").await;
        assert_eq!(alice.final_response(call).await.code, 487);
    }
    sys.assert_clean().await;
    assert_eq!(overload_status(&sys).await.invites_refused, 1);
}

/// Send a signal to a process this test started.
fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {sig} {pid}");
}

#[tokio::test]
async fn invites_that_waited_through_a_stall_are_refused() {
    // The default law and backstop (max_delay_ms 100); no setup cap.
    let sys = System::start(Options {
        sip_extra: "  overload: { max_calls_in_setup: 0 }\n".into(),
        ..Options::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);

    // swbd stops (a paused VM, a swapped-out process) with INVITEs in its
    // socket; when it runs again they have waited far past max_delay_ms.
    let pid = sys.swbd.child.id();
    signal(pid, "-STOP");
    let mut calls = Vec::new();
    for _ in 0..8 {
        calls.push(alice.invite("1002", None).await);
    }
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    signal(pid, "-CONT");

    let answers = first_answers(&mut alice, &calls).await;
    let (mut admitted, refused): (Vec<OutCall>, Vec<OutCall>) = calls
        .into_iter()
        .partition(|c| answers.get(&c.call_id).is_some_and(FirstAnswer::admitted));
    assert!(
        !refused.is_empty(),
        "INVITEs that waited 400 ms are refused"
    );
    for call in &refused {
        let a = answers.get(&call.call_id).expect("answer");
        assert_refused(&call.call_id, a, "2");
        ack_failure(&alice, call, a.refusal.as_ref().expect("503")).await;
    }
    bob_answers(&mut bob, admitted.len()).await;
    complete(&mut alice, &mut bob, &mut admitted).await;

    // Once it has caught up, a new call goes through.
    let mut next = vec![alice.invite("1002", None).await];
    let mut tries = 0;
    loop {
        let answers = first_answers(&mut alice, &next).await;
        let a = answers.get(&next[0].call_id).expect("answer");
        if a.admitted() {
            break;
        }
        // Still refusing right after the stall: the share falls within
        // a few updates; a caller would retry after Retry-After.
        ack_failure(&alice, &next[0], a.refusal.as_ref().expect("503")).await;
        tries += 1;
        assert!(tries < 20, "swbd keeps refusing after the stall");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        next = vec![alice.invite("1002", None).await];
    }
    bob_answers(&mut bob, 1).await;
    complete(&mut alice, &mut bob, &mut next).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn a_stalled_media_node_holds_at_most_the_setup_work_cap_the_rest_are_refused() {
    // Only the setup-work cap acts (sip.overload.setup_budget_ms, at its
    // floor, min_setup_work, on an idle swbd): the delay law, its backstop and the
    // calls-in-setup cap are out of reach, and no health check ends the
    // calls while the node is stopped.
    let sys = System::start(Options {
        sip_extra: "  udp_receivers: 1\n  udp_workers: 1\n  overload: { max_calls_in_setup: 0, target_delay_ms: 30000, max_delay_ms: 60000, retry_after_secs: 3, setup_budget_ms: 15, min_setup_work: 8 }\n".into(),
        health_interval_ms: 600_000,
        ..Options::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);

    // The media node stops answering: every new call waits in swbd for its
    // session, which is swbd's work, not a callee's.
    let node = sys.nodes[0].proc.child.id();
    signal(node, "-STOP");
    const CAP: usize = 8;
    let mut held = Vec::new();
    for _ in 0..CAP {
        held.push(alice.invite("1002", None).await);
    }
    let answers = first_answers(&mut alice, &held).await;
    assert!(
        answers.values().all(FirstAnswer::admitted),
        "up to the floor every call is admitted: {answers:?}"
    );
    eventually(
        10,
        "every admitted call waits on the media node",
        || async {
            let s = overload_status(&sys).await;
            (s.setup_work == CAP as u32).then_some(())
        },
    )
    .await;

    // More calls now would only queue behind the stalled ones.
    let extra: Vec<OutCall> = {
        let mut v = Vec::new();
        for _ in 0..6 {
            v.push(alice.invite("1002", None).await);
        }
        v
    };
    let refusals = first_answers(&mut alice, &extra).await;
    for call in &extra {
        let a = refusals.get(&call.call_id).expect("answer");
        assert_refused(&call.call_id, a, "3");
        ack_failure(&alice, call, a.refusal.as_ref().expect("503")).await;
    }
    let status = overload_status(&sys).await;
    assert_eq!(status.invites_refused, 6, "{status:?}");
    assert_eq!(status.setup_work_cap, CAP as u32, "{status:?}");

    // The node runs again: the admitted calls complete, and the work is
    // released as each B-leg INVITE goes out and each caller is answered.
    signal(node, "-CONT");
    bob_answers_each_once(&mut bob, CAP).await;
    complete(&mut alice, &mut bob, &mut held).await;
    sys.assert_clean().await;
    eventually(10, "no setup work left", || async {
        (overload_status(&sys).await.setup_work == 0).then_some(())
    })
    .await;
}

/// Bob answers `n` distinct B-leg INVITEs (180, 200) as each arrives, a
/// retransmission read before his answer left aside, and takes their ACKs.
async fn bob_answers_each_once(bob: &mut Ua, n: usize) {
    let mut answered = std::collections::BTreeSet::new();
    while answered.len() < n {
        let inv = bob.request("INVITE").await;
        let cid = inv.call_id().expect("Call-ID").to_string();
        if !answered.insert(cid) {
            continue;
        }
        let tag = format!("bob{}", answered.len());
        bob.reply(&inv, 180, "Ringing", Some(&tag), None).await;
        bob.reply(&inv, 200, "OK", Some(&tag), Some(&sdp(bob.rtp_port)))
            .await;
    }
    let mut acked = std::collections::BTreeSet::new();
    while acked.len() < n {
        let ack = bob.request("ACK").await;
        acked.insert(ack.call_id().expect("Call-ID").to_string());
    }
}
