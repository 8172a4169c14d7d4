//! A call interrupted while its answering B-leg's 200 is being connected
//! on the media node still ACKs that 200 and hangs the B-leg up (RFC 3261
//! §13.2.2.4: every 2xx is ACKed). Before, the interrupted dial dropped
//! the B-leg's transaction: the callee retransmitted its 200 for 32 s,
//! got no ACK and no BYE, and kept a dialog swbd had forgotten (seen as
//! `uas-no-ack` under overload, when a lost media node interrupted calls).
//!
//! The media node is stopped (SIGSTOP) before the callee answers, so
//! swbd's ConnectLegs waits; the caller CANCELs meanwhile.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use support::ua::{Ua, sdp};
use support::{Options, System, eventually};
use swbd::sip::SipMessage;
use switchboard_proto::admin::v1 as pb;

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {sig} {pid}");
}

#[tokio::test]
async fn a_call_cancelled_while_its_answer_is_connected_acks_and_hangs_up_the_callee() {
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);

    let mut call = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    bob.reply(&inv, 180, "Ringing", Some("bobtag"), None).await;
    let node = sys.nodes.first().expect("a node").proc.child.id();
    signal(node, "-STOP");
    // Bob answers; swbd asks the (stopped) node to connect the legs.
    let body = sdp(bob.rtp_port);
    bob.reply(&inv, 200, "OK", Some("bobtag"), Some(&body))
        .await;
    // The call logs B's 200 in its ladder and goes straight on to the
    // node, where it waits: once the ladder shows it, the call is there.
    let id = sys
        .active_calls()
        .await
        .first()
        .expect("the call")
        .call_id
        .clone();
    eventually(10, "B's 200 in the call's ladder", || async {
        let c = sys
            .signaling()
            .await
            .ok()?
            .get_call(pb::GetCallRequest {
                call_id: id.clone(),
            })
            .await
            .ok()?
            .into_inner();
        c.ladder
            .iter()
            .any(|m| m.inbound && m.summary.starts_with("200 OK (INVITE)"))
            .then_some(())
    })
    .await;
    // Alice gives up meanwhile (her CANCEL crosses the answer).
    let ringing = alice.response(&call.call_id, "INVITE").await;
    assert!(
        ringing.code < 200,
        "still ringing for alice: {}",
        ringing.code
    );
    assert_eq!(alice.cancel(&call).await.code, 200, "CANCEL answered");
    assert_eq!(alice.final_response(&mut call).await.code, 487);

    // Bob retransmits his 200 (Timer G-like) until swbd ACKs it, then
    // expects a BYE: the call he answered was cancelled.
    let mut acked = false;
    let mut bye = None;
    for _ in 0..8 {
        bob.reply(&inv, 200, "OK", Some("bobtag"), Some(&body))
            .await;
        let m = bob
            .wait_for(2, "ACK or BYE from swbd", |m| {
                matches!(m, SipMessage::Request(r)
                    if matches!(r.method.to_string().as_str(), "ACK" | "BYE"))
            })
            .await;
        if let SipMessage::Request(r) = m {
            match r.method.to_string().as_str() {
                "ACK" => acked = true,
                _ => {
                    bye = Some(r);
                    break;
                }
            }
        }
    }
    assert!(acked, "swbd ACKed the 200 of the cancelled call's B-leg");
    let bye = match bye {
        Some(b) => b,
        None => bob.request("BYE").await,
    };
    bob.reply(&bye, 200, "OK", None, None).await;
    signal(node, "-CONT");
    sys.assert_clean().await;
}
