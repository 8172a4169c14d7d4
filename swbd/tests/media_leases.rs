//! Session leases (issue #14): swbd owns its media sessions and renews their
//! leases; when it dies (kill -9) the node reclaims them, bridged or still
//! ringing, and a restarted swbd of the same node_id has the node drop its
//! previous run's sessions at once.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::time::Duration;

use support::ua::{OutCall, Ua, sdp};
use support::{Options, System, eventually};
use switchboard_proto::admin::v1 as pb;

async fn bridged_call(alice: &mut Ua, bob: &mut Ua) -> OutCall {
    let mut call = alice.invite(&bob.user.clone(), None).await;
    let inv = bob.request("INVITE").await;
    let body = sdp(bob.rtp_port);
    bob.reply(&inv, 200, "OK", Some("b"), Some(&body)).await;
    let _ack = bob.request("ACK").await;
    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200);
    alice.ack(&call).await;
    call
}

/// A call whose B-leg rings and never answers.
async fn ringing_call(alice: &mut Ua, carol: &mut Ua) -> OutCall {
    let call = alice.invite(&carol.user.clone(), None).await;
    let inv = carol.request("INVITE").await;
    carol.reply(&inv, 180, "Ringing", Some("c"), None).await;
    call
}

async fn sessions(sys: &System) -> Vec<pb::MediaSessionInfo> {
    sys.media_admin(0)
        .await
        .list_sessions(pb::ListMediaSessionsRequest::default())
        .await
        .expect("list sessions")
        .into_inner()
        .sessions
}

async fn media_status(sys: &System) -> pb::MediaStatus {
    sys.media_admin(0)
        .await
        .get_status(pb::GetMediaStatusRequest {})
        .await
        .expect("media status")
        .into_inner()
}

/// Two bridged calls and one ringing: six sessions, all owned by swbd.
async fn calls_up(sys: &System) -> (Ua, Ua, Ua, Vec<pb::MediaSessionInfo>) {
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    let mut carol = Ua::new("1003", sys.sip).await;
    bob.register(300).await;
    carol.register(300).await;
    bridged_call(&mut alice, &mut bob).await;
    bridged_call(&mut alice, &mut bob).await;
    ringing_call(&mut alice, &mut carol).await;
    let listed = eventually(10, "six media sessions", || async {
        let s = sessions(sys).await;
        (s.len() == 6).then_some(s)
    })
    .await;
    for s in &listed {
        assert!(
            s.owner.starts_with("swbd/"),
            "every session names its owner (node_id/instance): {s:?}"
        );
        assert!(s.lease_remaining_ms > 0, "a live lease: {s:?}");
    }
    (alice, bob, carol, listed)
}

#[tokio::test]
async fn kill_9_of_swbd_lets_the_node_reclaim_bridged_and_ringing_sessions() {
    let mut sys = System::start(Options {
        media_extra: "  lease_secs: 3\n  lease_renew_secs: 1\n".into(),
        ..Default::default()
    })
    .await;
    let (_alice, _bob, _carol, listed) = calls_up(&sys).await;
    assert!(
        listed.iter().any(|s| !s.bridged_with.is_empty()),
        "some sessions are bridged"
    );
    assert!(
        listed.iter().any(|s| s.bridged_with.is_empty()),
        "the ringing call's are not"
    );

    sys.swbd.kill(); // SIGKILL: no teardown, no goodbye

    // Lease 3 s (+ the reaper's period): a generous bound, not a timing claim.
    eventually(3 + 5 + 10, "every session reclaimed", || async {
        let s = media_status(&sys).await;
        (s.active_sessions == 0 && s.free_port_pairs == s.total_port_pairs).then_some(())
    })
    .await;
    assert_eq!(media_status(&sys).await.leases_expired, 6);
}

#[tokio::test]
async fn restarted_swbd_has_the_node_drop_its_previous_run_at_once() {
    let mut sys = System::start(Options {
        // Long enough that only the restart can explain the sessions going.
        media_extra: "  lease_secs: 120\n  lease_renew_secs: 2\n".into(),
        ..Default::default()
    })
    .await;
    let (_alice, _bob, _carol, listed) = calls_up(&sys).await;
    let old_owner = listed[0].owner.clone();

    sys.swbd.kill();
    // Still there: nobody renews them, but their lease is far from lapsing.
    assert_eq!(sessions(&sys).await.len(), 6);

    sys.restart_swbd().await;
    eventually(10, "the previous run's sessions dropped", || async {
        sessions(&sys).await.is_empty().then_some(())
    })
    .await;
    let s = media_status(&sys).await;
    assert_eq!(s.stale_owner_sessions_dropped, 6);
    assert_eq!(s.leases_expired, 0);
    assert_eq!(s.free_port_pairs, s.total_port_pairs);

    // The new run's sessions belong to a new instance.
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;
    let call = bridged_call(&mut alice, &mut bob).await;
    let now = sessions(&sys).await;
    assert_eq!(now.len(), 2);
    for s in &now {
        assert!(
            s.owner.starts_with("swbd/") && s.owner != old_owner,
            "{s:?}"
        );
    }
    let ok = alice.bye(&call).await;
    assert_eq!(ok.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn renewed_leases_keep_a_long_call_up() {
    let sys = System::start(Options {
        media_extra: "  lease_secs: 3\n  lease_renew_secs: 1\n".into(),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;
    let call = bridged_call(&mut alice, &mut bob).await;
    let before: Vec<String> = sessions(&sys)
        .await
        .into_iter()
        .map(|s| s.session_id)
        .collect();
    assert_eq!(before.len(), 2);

    // Several lease periods.
    tokio::time::sleep(Duration::from_secs(10)).await;

    let after: Vec<String> = sessions(&sys)
        .await
        .into_iter()
        .map(|s| s.session_id)
        .collect();
    assert_eq!(after, before, "the call's sessions outlived their lease");
    assert_eq!(media_status(&sys).await.leases_expired, 0);
    assert_eq!(sys.active_calls().await.len(), 1);

    let ok = alice.bye(&call).await;
    assert_eq!(ok.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}
