//! Calls against the media-node pool: a node that dies mid-call, draining,
//! and a dialplan reload while a call is up.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::time::Duration;

use support::ua::{OutCall, Ua, sdp, sdp_media_addr};
use support::{Options, System, eventually};
use switchboard_proto::admin::v1 as pb;

async fn bridged_call(sys: &System, alice: &mut Ua, bob: &mut Ua) -> OutCall {
    let mut call = alice.invite(&bob.user.clone(), None).await;
    let inv = bob.request("INVITE").await;
    let body = sdp(bob.rtp_port);
    bob.reply(&inv, 200, "OK", Some("b"), Some(&body)).await;
    let _ack = bob.request("ACK").await;
    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200);
    alice.ack(&call).await;
    let _ = sys;
    call
}

#[tokio::test]
async fn media_node_killed_mid_call_ends_both_legs_and_new_calls_use_the_other() {
    let mut sys = System::start(Options {
        nodes: 2,
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;
    let _call = bridged_call(&sys, &mut alice, &mut bob).await;
    let calls = sys.active_calls().await;
    let node = calls[0].media_node.clone();
    let idx = sys
        .nodes
        .iter()
        .position(|n| n.name == node)
        .expect("node of the call");
    sys.nodes[idx].proc.kill();

    // Both legs get BYE.
    let bye_a = alice.request("BYE").await;
    alice.reply(&bye_a, 200, "OK", None, None).await;
    let bye_b = bob.request("BYE").await;
    bob.reply(&bye_b, 200, "OK", None, None).await;
    eventually(20, "call gone", || async {
        sys.active_calls().await.is_empty().then_some(())
    })
    .await;

    // New calls go to the surviving node.
    let _call2 = bridged_call(&sys, &mut alice, &mut bob).await;
    let calls = sys.active_calls().await;
    assert_eq!(calls.len(), 1);
    assert_ne!(calls[0].media_node, node);
}

#[tokio::test]
async fn drain_keeps_existing_calls_and_sends_new_ones_elsewhere() {
    let sys = System::start(Options {
        nodes: 2,
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    let mut carol = Ua::new("1003", sys.sip).await;
    bob.register(300).await;
    carol.register(300).await;
    let first = bridged_call(&sys, &mut alice, &mut bob).await;
    let node = sys.active_calls().await[0].media_node.clone();

    let mut admin = sys.signaling().await.expect("admin");
    let drained = admin
        .drain_media_node(pb::DrainMediaNodeRequest {
            name: node.clone(),
            ..Default::default()
        })
        .await
        .expect("drain")
        .into_inner();
    assert_eq!(drained.state, pb::MediaNodeState::Draining as i32);
    assert!(!drained.drained, "a call is still on it");

    let mut alice2 = Ua::new("1001", sys.sip).await;
    let _second = bridged_call(&sys, &mut alice2, &mut carol).await;
    let calls = sys.active_calls().await;
    assert_eq!(calls.len(), 2);
    assert!(
        calls.iter().any(|c| c.media_node != node),
        "new call on the other node"
    );

    // The first call still works and ends normally; then the node is drained.
    assert_eq!(alice.bye(&first).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    eventually(20, "drained node empty", || {
        let mut admin = admin.clone();
        let node = node.clone();
        async move {
            let nodes = admin
                .list_media_nodes(pb::ListMediaNodesRequest {})
                .await
                .ok()?
                .into_inner()
                .nodes;
            nodes
                .iter()
                .find(|n| n.name == node && n.drained)
                .map(|_| ())
        }
    })
    .await;
}

#[tokio::test]
async fn all_nodes_drained_gives_503() {
    let plan = "version: 1\nroutes:\n  - id: ext\n    match: { destination: \"1???\" }\n    actions:\n      - dial: { target: \"user/${destination}\", on_failure: stop }\n";
    let sys = System::start(Options {
        dialplan: Some(plan.into()),
        ..Default::default()
    })
    .await;
    let mut admin = sys.signaling().await.expect("admin");
    admin
        .drain_media_node(pb::DrainMediaNodeRequest {
            name: "rtp-a".into(),
            ..Default::default()
        })
        .await
        .expect("drain");
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;
    let mut call = alice.invite("1002", None).await;
    assert_eq!(alice.final_response(&mut call).await.code, 503);
}

#[tokio::test]
async fn dialplan_reload_during_a_live_call() {
    let v1 = "version: 1\nroutes:\n  - id: ext\n    match: { destination: \"1???\" }\n    actions:\n      - dial: { target: \"user/${destination}\" }\n";
    let sys = System::start(Options {
        dialplan: Some(v1.into()),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;
    let call = bridged_call(&sys, &mut alice, &mut bob).await;
    let mut admin = sys.signaling().await.expect("admin");
    let before = admin
        .get_dialplan(pb::GetDialplanRequest {})
        .await
        .expect("get")
        .into_inner()
        .version;

    // A bad file is refused and the old plan stays.
    std::fs::write(
        sys.dir.join("dialplan.yaml"),
        "version: 1\nroutes: [ {id: x, bogus: 1} ]\n",
    )
    .expect("write");
    let refused = admin
        .reload_dialplan(pb::ReloadDialplanRequest {
            path: String::new(),
        })
        .await
        .expect("reload")
        .into_inner();
    assert!(!refused.applied);
    assert_eq!(refused.version, before);
    assert!(
        refused.errors.iter().all(|e| e.line > 0),
        "{:?}",
        refused.errors
    );

    // A good one applies; the live call keeps running under the old plan.
    let v2 = "version: 1\nroutes:\n  - id: closed\n    match: { destination: \"*\" }\n    actions:\n      - hangup: { code: 403, reason: Closed }\n";
    std::fs::write(sys.dir.join("dialplan.yaml"), v2).expect("write");
    let applied = admin
        .reload_dialplan(pb::ReloadDialplanRequest {
            path: String::new(),
        })
        .await
        .expect("reload")
        .into_inner();
    assert!(applied.applied, "{:?}", applied.errors);
    assert_ne!(applied.version, before);
    let live = sys.active_calls().await;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].dialplan_version, before);

    let mut carol = Ua::new("1003", sys.sip).await;
    let mut c = carol.invite("1002", None).await;
    assert_eq!(carol.final_response(&mut c).await.code, 403);

    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn sighup_reloads_the_dialplan_of_a_running_swbd() {
    let v1 = "version: 1\nroutes:\n  - id: a\n    match: { destination: \"1???\" }\n    actions: [ { hangup: { code: 486 } } ]\n";
    let sys = System::start(Options {
        dialplan: Some(v1.into()),
        ..Default::default()
    })
    .await;
    let mut admin = sys.signaling().await.expect("admin");
    let get =
        |mut a: switchboard_proto::admin::v1::signaling_admin_client::SignalingAdminClient<
            tonic::transport::Channel,
        >| async move {
            a.get_dialplan(pb::GetDialplanRequest {})
                .await
                .expect("get")
                .into_inner()
                .version
        };
    let v1_version = get(admin.clone()).await;
    let pid = sys.swbd.child.id().to_string();

    std::fs::write(sys.dir.join("dialplan.yaml"), v1.replace("486", "487")).expect("write");
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill");
    let v2_version = eventually(20, "SIGHUP reload applied", || {
        let a = admin.clone();
        let old = v1_version.clone();
        async move {
            let v = get(a).await;
            (v != old).then_some(v)
        }
    })
    .await;

    std::fs::write(sys.dir.join("dialplan.yaml"), "routes: [[[\n").expect("write");
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        get(admin.clone()).await,
        v2_version,
        "bad file refused, plan kept"
    );
    let _ = &mut admin;
    let _ = sdp_media_addr(b"");
}

#[tokio::test]
async fn admin_lists_shows_and_hangs_up_calls() {
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;
    let _call = bridged_call(&sys, &mut alice, &mut bob).await;
    let mut admin = sys.signaling().await.expect("admin");
    let calls = sys.active_calls().await;
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(c.state, pb::CallState::Bridged as i32);
    assert_eq!(c.caller, "1001");
    assert_eq!(c.destination, "1002");
    assert_eq!(c.route_id, "extensions");
    let shown = admin
        .get_call(pb::GetCallRequest {
            call_id: c.call_id.get(..4).unwrap_or_default().to_string(),
        })
        .await
        .expect("get by prefix")
        .into_inner();
    assert!(
        shown.ladder.len() >= 5,
        "ladder: {:?}",
        shown.ladder.iter().map(|l| &l.summary).collect::<Vec<_>>()
    );
    assert!(
        shown
            .ladder
            .iter()
            .any(|l| l.summary.starts_with("INVITE") && l.inbound)
    );
    assert!(
        shown
            .ladder
            .iter()
            .any(|l| l.summary.starts_with("200 OK") && !l.inbound)
    );

    let regs = admin
        .list_registrations(pb::ListRegistrationsRequest::default())
        .await
        .expect("regs")
        .into_inner()
        .registrations;
    assert_eq!(regs.len(), 1);

    admin
        .hangup_call(pb::HangupCallRequest {
            call_id: c.call_id.clone(),
            reason: "test".into(),
        })
        .await
        .expect("hangup");
    let bye_a = alice.request("BYE").await;
    alice.reply(&bye_a, 200, "OK", None, None).await;
    let bye_b = bob.request("BYE").await;
    bob.reply(&bye_b, 200, "OK", None, None).await;
    sys.assert_clean().await;
    let err = admin
        .hangup_call(pb::HangupCallRequest {
            call_id: "nope".into(),
            reason: String::new(),
        })
        .await
        .expect_err("unknown call");
    assert_eq!(err.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn rtp_timeout_tears_the_call_down_with_bye_on_both_legs() {
    let sys = System::start(Options {
        rtp_timeout_secs: 1,
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;
    // Nobody sends RTP: the node reports the sessions timed out.
    let _call = bridged_call(&sys, &mut alice, &mut bob).await;
    let bye_a = alice.request("BYE").await;
    alice.reply(&bye_a, 200, "OK", None, None).await;
    let bye_b = bob.request("BYE").await;
    bob.reply(&bye_b, 200, "OK", None, None).await;
    sys.assert_clean().await;
    let ended = sys
        .signaling()
        .await
        .expect("admin")
        .list_calls(pb::ListCallsRequest {
            include_ended: true,
        })
        .await
        .expect("list")
        .into_inner()
        .calls;
    assert!(
        ended.iter().any(|c| c.end_cause.contains("RTP timeout")),
        "{ended:?}"
    );
}
