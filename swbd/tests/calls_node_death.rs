//! A media node killed with `kill -9` (issue #14, item 2): swbd notices at
//! once, not at the next health check. Every test sets
//! `media.health_interval_ms` to a minute, so a health check on its own
//! schedule cannot be what rescues the calls.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use support::ua::{OutCall, Ua, sdp};
use support::{Options, System};
use swbd::sip::Name;
use swbd::sip::message::HeaderAccess;
use switchboard_proto::admin::v1 as pb;

/// Longer than any test here: only swbd's immediate reaction can help.
const NO_HEALTH_CHECK_MS: u64 = 60_000;

fn two_nodes() -> Options {
    Options {
        nodes: 2,
        health_interval_ms: NO_HEALTH_CHECK_MS,
        ..Default::default()
    }
}

/// alice calls bob, bob answers: the call is bridged (a final 200 to A).
async fn bridged_call(alice: &mut Ua, bob: &mut Ua) -> OutCall {
    let mut call = alice.invite(&bob.user.clone(), None).await;
    let inv = bob.request("INVITE").await;
    bob.reply(&inv, 200, "OK", Some("b"), Some(&sdp(bob.rtp_port)))
        .await;
    let _ack = bob.request("ACK").await;
    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200, "{} {}", ok.code, ok.reason);
    alice.ack(&call).await;
    call
}

async fn hang_up(alice: &mut Ua, bob: &mut Ua, call: &OutCall) {
    assert_eq!(alice.bye(call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
}

async fn node_states(sys: &System) -> Vec<pb::MediaNode> {
    sys.signaling()
        .await
        .expect("admin")
        .list_media_nodes(pb::ListMediaNodesRequest {})
        .await
        .expect("list media nodes")
        .into_inner()
        .nodes
}

/// The first pick goes to the first node, which is dead but still "up" as
/// far as any health check knows: that call's session create fails with a
/// connect error and is made on the other node; the dead node is out of
/// the rotation from then on.
#[tokio::test]
async fn calls_right_after_a_node_is_killed_all_land_on_the_survivor() {
    let mut sys = System::start(two_nodes()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;
    let dead = sys.nodes[0].name.clone();
    let survivor = sys.nodes[1].name.clone();
    sys.nodes[0].proc.kill();

    for i in 0..20 {
        let call = bridged_call(&mut alice, &mut bob).await;
        let calls = sys.active_calls().await;
        assert_eq!(calls.len(), 1, "call {i}");
        assert_eq!(calls[0].media_node, survivor, "call {i}");
        hang_up(&mut alice, &mut bob, &call).await;
        // The call leaves the table once its task has seen the B-leg's
        // 200 to BYE; under a loaded test run that can trail the phone's
        // answer, so wait for it before the next call is counted.
        support::eventually(20, "the call ended", || async {
            sys.active_calls().await.is_empty().then_some(())
        })
        .await;
    }

    let nodes = node_states(&sys).await;
    let dead_node = nodes.iter().find(|n| n.name == dead).expect("dead node");
    assert_eq!(
        dead_node.state,
        pb::MediaNodeState::Down as i32,
        "{dead_node:?}"
    );
    assert!(!dead_node.last_error.is_empty(), "{dead_node:?}");
    let alive = nodes.iter().find(|n| n.name == survivor).expect("survivor");
    assert_eq!(alive.state, pb::MediaNodeState::Up as i32, "{alive:?}");
}

/// A node with an open Control stream (a call on it) is killed: the stream
/// breaks, the node is checked at once and its call ends with BYE on both
/// legs; the next call goes to the other node.
#[tokio::test]
async fn a_node_killed_mid_call_ends_its_call_without_waiting_for_a_health_check() {
    let mut sys = System::start(two_nodes()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;
    let _call = bridged_call(&mut alice, &mut bob).await;
    let node = sys.active_calls().await[0].media_node.clone();
    let idx = sys
        .nodes
        .iter()
        .position(|n| n.name == node)
        .expect("node of the call");
    sys.nodes[idx].proc.kill();

    let bye_a = alice.request("BYE").await;
    alice.reply(&bye_a, 200, "OK", None, None).await;
    let bye_b = bob.request("BYE").await;
    bob.reply(&bye_b, 200, "OK", None, None).await;

    let call = bridged_call(&mut alice, &mut bob).await;
    let calls = sys.active_calls().await;
    assert_eq!(calls.len(), 1);
    assert_ne!(calls[0].media_node, node);
    hang_up(&mut alice, &mut bob, &call).await;
}

/// Both nodes dead: the call tries each once and the caller gets 503 with
/// Retry-After, not the default dialplan's 480 after a failed dial; a
/// route that answers itself (playback) gets the same.
#[tokio::test]
async fn no_node_left_gives_503_with_retry_after() {
    let mut sys = System::start(two_nodes()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;
    for node in &mut sys.nodes {
        node.proc.kill();
    }

    for destination in ["1002", "500"] {
        let mut call = alice.invite(destination, None).await;
        let r = alice.final_response(&mut call).await;
        assert_eq!(r.code, 503, "{destination}: {} {}", r.code, r.reason);
        let retry_after = r
            .raw(&Name::RETRY_AFTER)
            .unwrap_or_else(|| panic!("{destination}: 503 without Retry-After"));
        let secs: u32 = retry_after.trim().parse().expect("Retry-After seconds");
        assert!(secs > 0, "{destination}: Retry-After {secs}");
    }
    let nodes = node_states(&sys).await;
    assert!(
        nodes
            .iter()
            .all(|n| n.state == pb::MediaNodeState::Down as i32),
        "{nodes:?}"
    );
}

/// SDP the node cannot use is the caller's problem, not the node's: 488
/// with a Warning, and no node is taken out of the rotation for it.
#[tokio::test]
async fn unusable_sdp_still_gets_488_and_marks_no_node_down() {
    let sys = System::start(two_nodes()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;
    let mut call = alice.invite("1002", Some("this is not SDP\r\n")).await;
    let r = alice.final_response(&mut call).await;
    assert_eq!(r.code, 488, "{} {}", r.code, r.reason);
    assert!(r.raw(&Name::WARNING).is_some(), "a Warning says why");

    let nodes = node_states(&sys).await;
    assert_eq!(nodes.len(), 2);
    assert!(
        nodes
            .iter()
            .all(|n| n.state == pb::MediaNodeState::Up as i32 && n.last_error.is_empty()),
        "{nodes:?}"
    );
    // Both nodes still take calls (round-robin: two calls, two nodes).
    let mut used = Vec::new();
    for _ in 0..2 {
        let call = bridged_call(&mut alice, &mut bob).await;
        used.push(sys.active_calls().await[0].media_node.clone());
        hang_up(&mut alice, &mut bob, &call).await;
    }
    used.sort();
    used.dedup();
    assert_eq!(used.len(), 2, "{used:?}");
    sys.assert_clean().await;
}
