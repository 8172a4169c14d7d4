//! Two swbd on one Redis with real phones (issue #18): a baresip phone
//! registered through swbd-1 is called by a baresip phone through swbd-2,
//! and each phone hears the other's tone.
//!
//! Real processes on loopback: a Redis server (Debian `redis-server`) on a
//! free port, two swbd (node ids `swbd-1`, `swbd-2`, one key prefix), each
//! with its own swrtp, and two baresip phones (Debian `baresip-core`)
//! sending 1000 Hz (caller) and 440 Hz (callee). swbd-2 learns Bob's
//! binding from the store and sends the INVITE to Bob's registered UDP
//! address. A missing baresip or redis-server FAILS the test under
//! `CI=true` (scripts/test.sh installs both).
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::time::Duration;

use support::baresip_phone::{Phone, require_baresip, tail_tone};
use support::redis::Redis;
use support::{Options, System, eventually, tempdir};
use switchboard_proto::admin::v1 as pb;

fn users() -> Vec<(String, String)> {
    vec![
        ("1001".into(), "alice-pw-1".into()),
        ("1002".into(), "bob-pw-2".into()),
    ]
}

fn rtp_base(slot: u16) -> u16 {
    41_000 + (std::process::id() % 40) as u16 * 500 + slot * 200
}

async fn registrations(sys: &System) -> Vec<pb::Registration> {
    sys.signaling()
        .await
        .expect("admin")
        .list_registrations(pb::ListRegistrationsRequest::default())
        .await
        .expect("list registrations")
        .into_inner()
        .registrations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_registered_through_swbd_1_is_called_through_swbd_2_with_its_tone() {
    if !require_baresip() {
        return;
    }
    let Some(redis) = Redis::start(&tempdir("redis-two-phones")) else {
        return;
    };
    let prefix = format!("t{}-two-phones:", std::process::id());
    let start = |node: &'static str| {
        System::start(Options {
            users: users(),
            extra_config: format!("node_id: {node}\n{}", redis.state_config(&prefix)),
            ..Default::default()
        })
    };
    let one = start("swbd-1").await;
    let two = start("swbd-2").await;
    let users = users();

    // Bob registers through swbd-1 only.
    let mut bob = Phone::start(&one.dir, "1002", &users[1].1, one.sip, 440.0, rtp_base(1));
    let store = redis.store(&prefix);
    let stored = eventually(20, "Bob's binding in Redis", || async {
        let v = store.bindings_for("1002").await.ok()?;
        (!v.is_empty()).then_some(v)
    })
    .await;
    assert_eq!(stored[0].instance, "swbd-1", "held by swbd-1: {stored:?}");
    // swbd-2 learns it through the store.
    eventually(10, "swbd-2 lists Bob's binding", || async {
        registrations(&two)
            .await
            .iter()
            .any(|r| r.aor.contains("1002"))
            .then_some(())
    })
    .await;

    // Alice registers and calls through swbd-2.
    let mut alice = Phone::start(&two.dir, "1001", &users[0].1, two.sip, 1000.0, rtp_base(0));
    eventually(20, "Alice registered through swbd-2", || async {
        registrations(&two)
            .await
            .iter()
            .any(|r| r.aor.contains("1001"))
            .then_some(())
    })
    .await;
    alice.command("dial", &format!("sip:1002@127.0.0.1:{}", two.sip.port()));
    assert!(
        alice.wait_event("CALL_ESTABLISHED", 15),
        "Alice established"
    );
    assert!(bob.wait_event("CALL_ESTABLISHED", 5), "Bob established");
    let calls = eventually(10, "the call bridged on swbd-2", || async {
        let calls = two.active_calls().await;
        (calls.len() == 1 && calls[0].state == pb::CallState::Bridged as i32).then_some(calls)
    })
    .await;
    assert!(
        one.active_calls().await.is_empty(),
        "swbd-1 only holds the registration, not the call"
    );
    assert_eq!(
        calls[0].media_node, two.nodes[0].name,
        "media on swbd-2's node"
    );

    // Let the tones flow.
    tokio::time::sleep(Duration::from_secs(4)).await;
    // The callee hangs up: his BYE goes to the Contact swbd-2 gave him,
    // which must be swbd-2's own address, not swbd-1's, where he
    // registered (it named swbd-1's socket and the BYE got 481).
    bob.command("hangup", "");
    assert!(bob.wait_event("CALL_CLOSED", 10), "Bob closed");
    assert!(alice.wait_event("CALL_CLOSED", 10), "Alice got BYE");
    two.assert_clean().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (phone, want, not) in [(&alice, 440.0, 1000.0), (&bob, 1000.0, 440.0)] {
        let rec = phone
            .recording()
            .unwrap_or_else(|| panic!("{} recorded nothing", phone.user));
        let (hit, miss) = tail_tone(&rec, 2, want, not);
        assert!(
            hit > 10.0 * miss,
            "{} hears {want} Hz: {hit:e} vs {not} Hz {miss:e}",
            phone.user
        );
    }
}
