//! The state store with a real Redis (issue #18): registrations and drain
//! flags survive a restart of swbd (and registrations do not with the
//! memory backend, as documented), a phone registered through one swbd is
//! called through another, and Redis stopped and started while swbd
//! serves (REGISTER answered and queued, status down then up, the queue
//! written when it is back), also under a load of calls (every call
//! completes, calls up across the outage end normally).
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use support::redis::Redis;
use support::ua::{Ua, sdp};
use support::{Options, System, eventually, tempdir};
use swbd::sip::message::HeaderAccess;
use switchboard_proto::admin::v1 as pb;

fn prefix(tag: &str) -> String {
    format!("t{}-{tag}:", std::process::id())
}

fn options(extra: String) -> Options {
    Options {
        extra_config: extra,
        ..Options::default()
    }
}

async fn registrations(sys: &System) -> Vec<pb::Registration> {
    sys.signaling()
        .await
        .expect("admin")
        .list_registrations(pb::ListRegistrationsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .registrations
}

async fn store_status(sys: &System) -> pb::StateStoreStatus {
    sys.status()
        .await
        .state_store
        .expect("state_store in Status")
}

#[tokio::test]
async fn registrations_survive_a_restart_with_redis() {
    let Some(redis) = Redis::start(&tempdir("redis-restart")) else {
        return;
    };
    let p = prefix("restart");
    let mut sys = System::start(options(redis.state_config(&p))).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);
    // Written through to Redis, with its TTL.
    let store = redis.store(&p);
    let stored = eventually(10, "binding in redis", || async {
        let v = store.bindings_for("1002").await.ok()?;
        (!v.is_empty()).then_some(v)
    })
    .await;
    assert_eq!(stored[0].remote, bob.addr);
    assert_eq!(stored[0].instance, "swbd");

    sys.restart_swbd().await;
    let after = eventually(10, "binding loaded after restart", || async {
        let r = registrations(&sys).await;
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(after.len(), 1);
    assert!(after[0].contact.contains(&bob.addr.port().to_string()));
    let s = store_status(&sys).await;
    assert_eq!((s.backend.as_str(), s.up), ("redis", true));

    // And a call reaches bob after the restart without a new REGISTER.
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut call = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    bob.reply(&inv, 486, "Busy Here", Some("b1"), None).await;
    let _ack = bob.request("ACK").await;
    // (The default dialplan answers a failed dial with 480.)
    assert!(alice.final_response(&mut call).await.code >= 400);
}

#[tokio::test]
async fn registrations_are_lost_on_restart_with_memory() {
    let mut sys = System::start(Options::default()).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);
    assert_eq!(registrations(&sys).await.len(), 1);
    sys.restart_swbd().await;
    // Documented: the memory backend starts empty (nothing to load).
    assert!(registrations(&sys).await.is_empty());
    let s = store_status(&sys).await;
    assert_eq!((s.backend.as_str(), s.up), ("memory", true));
}

#[tokio::test]
async fn drain_flag_survives_a_restart() {
    let Some(redis) = Redis::start(&tempdir("redis-drain")) else {
        return;
    };
    let p = prefix("drain");
    let mut sys = System::start(options(redis.state_config(&p))).await;
    sys.signaling()
        .await
        .expect("admin")
        .drain_media_node(pb::DrainMediaNodeRequest {
            name: "rtp-a".into(),
            migrate: false,
        })
        .await
        .expect("drain");
    let store = redis.store(&p);
    eventually(10, "drain flag in redis", || async {
        let d = store.drains().await.ok()?;
        (d == vec!["rtp-a".to_string()]).then_some(())
    })
    .await;
    sys.restart_swbd().await;
    eventually(10, "rtp-a drained after restart", || async {
        let nodes = sys
            .signaling()
            .await
            .ok()?
            .list_media_nodes(pb::ListMediaNodesRequest::default())
            .await
            .ok()?
            .into_inner()
            .nodes;
        nodes
            .iter()
            .any(|n| n.name == "rtp-a" && n.drained)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn redis_stopped_and_started_while_swbd_serves() {
    let Some(mut redis) = Redis::start(&tempdir("redis-outage")) else {
        return;
    };
    let p = prefix("outage");
    let sys = System::start(options(redis.state_config(&p))).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);
    eventually(10, "store up", || async {
        store_status(&sys).await.up.then_some(())
    })
    .await;

    redis.stop();
    let down = eventually(10, "store reported down", || async {
        let s = store_status(&sys).await;
        (!s.up).then_some(s)
    })
    .await;
    assert!(!down.last_error.is_empty(), "{down:?}");

    // Answer-and-queue: a REGISTER during the outage is accepted, served
    // from this instance, and queued for the store.
    let mut carol = Ua::new("1003", sys.sip).await;
    assert_eq!(carol.register(300).await.code, 200);
    assert!(store_status(&sys).await.pending_writes >= 1);
    // Calls go on from memory.
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut call = alice.invite("1003", None).await;
    let inv = carol.request("INVITE").await;
    carol.reply(&inv, 486, "Busy Here", Some("c1"), None).await;
    let _ack = carol.request("ACK").await;
    assert!(alice.final_response(&mut call).await.code >= 400);

    // Redis comes back empty (no persistence): swbd reconnects and writes
    // the queue.
    redis.start_again();
    let up = eventually(20, "store reported up with the queue written", || async {
        let s = store_status(&sys).await;
        (s.up && s.pending_writes == 0).then_some(s)
    })
    .await;
    assert!(up.failed_ops > 0, "{up:?}");
    let store = redis.store(&p);
    eventually(10, "carol's binding written after the outage", || async {
        let v = store.bindings_for("1003").await.ok()?;
        (!v.is_empty()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn registered_through_one_swbd_called_through_another() {
    let Some(redis) = Redis::start(&tempdir("redis-two")) else {
        return;
    };
    let p = prefix("two");
    let one = System::start(options(format!(
        "node_id: swbd-1\n{}",
        redis.state_config(&p)
    )))
    .await;
    let two = System::start(options(format!(
        "node_id: swbd-2\n{}",
        redis.state_config(&p)
    )))
    .await;
    let mut bob = Ua::new("1002", one.sip).await;
    assert_eq!(bob.register(300).await.code, 200);
    // swbd-2 learns it through the store's change channel.
    let seen = eventually(10, "swbd-2 lists bob's binding", || async {
        let r = registrations(&two).await;
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert!(seen[0].contact.contains(&bob.addr.port().to_string()));

    let mut alice = Ua::new("1001", two.sip).await;
    let mut call = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    // A phone answers where the request came from (its Via): swbd-2.
    bob.server = two.sip;
    bob.reply(&inv, 180, "Ringing", Some("b2"), None).await;
    let body = sdp(bob.rtp_port);
    bob.reply(&inv, 200, "OK", Some("b2"), Some(&body)).await;
    let _ack = bob.request("ACK").await;
    assert_eq!(alice.final_response(&mut call).await.code, 200);
    alice.ack(&call).await;
    assert_eq!(two.active_calls().await.len(), 1, "the call is on swbd-2");
    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    two.assert_clean().await;

    // A removal through swbd-1 reaches swbd-2 too (the change message
    // names the binding; swbd-2 does not read it back).
    bob.server = one.sip;
    assert_eq!(bob.register(0).await.code, 200);
    eventually(10, "swbd-2 drops bob's binding", || async {
        registrations(&two).await.is_empty().then_some(())
    })
    .await;
}

/// `n` calls from Alice to Bob at once: Bob answers each INVITE as it
/// comes (a retransmission read before his answer left aside); every call
/// is answered 200 and ACKed. Returns them up.
async fn calls_up(alice: &mut Ua, bob: &mut Ua, n: usize) -> Vec<support::ua::OutCall> {
    let mut calls = Vec::new();
    for _ in 0..n {
        calls.push(alice.invite("1002", None).await);
    }
    let mut answered = std::collections::BTreeSet::new();
    while answered.len() < n {
        let inv = bob.request("INVITE").await;
        let cid = inv.call_id().expect("Call-ID").to_string();
        if !answered.insert(cid) {
            continue;
        }
        let tag = format!("b{}", answered.len());
        bob.reply(&inv, 200, "OK", Some(&tag), Some(&sdp(bob.rtp_port)))
            .await;
    }
    for call in calls.iter_mut() {
        assert_eq!(alice.final_response(call).await.code, 200, "answered");
        alice.ack(call).await;
    }
    for _ in 0..n {
        let _ = bob.request("ACK").await;
    }
    calls
}

/// Alice hangs up each call; swbd answers and sends BYE to Bob.
async fn hang_up(alice: &mut Ua, bob: &mut Ua, calls: &[support::ua::OutCall]) {
    for call in calls {
        assert_eq!(alice.bye(call).await.code, 200, "BYE answered");
        let bye = bob.request("BYE").await;
        bob.reply(&bye, 200, "OK", None, None).await;
    }
}

#[tokio::test]
async fn redis_stopped_and_started_during_a_load_of_calls() {
    let Some(mut redis) = Redis::start(&tempdir("redis-load")) else {
        return;
    };
    let p = prefix("load");
    let sys = System::start(options(redis.state_config(&p))).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);
    eventually(10, "store up", || async {
        store_status(&sys).await.up.then_some(())
    })
    .await;

    // Calls before the outage; three stay up across it.
    let first = calls_up(&mut alice, &mut bob, 5).await;
    hang_up(&mut alice, &mut bob, &first).await;
    let across = calls_up(&mut alice, &mut bob, 3).await;

    redis.stop();
    eventually(10, "store reported down", || async {
        (!store_status(&sys).await.up).then_some(())
    })
    .await;
    // During the outage: rounds of calls keep completing, a new phone
    // registers (answered and queued).
    for _ in 0..3 {
        let round = calls_up(&mut alice, &mut bob, 5).await;
        hang_up(&mut alice, &mut bob, &round).await;
    }
    let mut dave = Ua::new("1004", sys.sip).await;
    assert_eq!(dave.register(300).await.code, 200, "REGISTER in the outage");
    let during = store_status(&sys).await;
    assert!(!during.up && during.pending_writes >= 1, "{during:?}");

    redis.start_again();
    eventually(20, "store up again with the queue written", || async {
        let s = store_status(&sys).await;
        (s.up && s.pending_writes == 0).then_some(())
    })
    .await;
    // The calls that were up through the outage end normally, and new
    // ones complete.
    hang_up(&mut alice, &mut bob, &across).await;
    let last = calls_up(&mut alice, &mut bob, 5).await;
    hang_up(&mut alice, &mut bob, &last).await;

    let store = redis.store(&p);
    eventually(10, "dave's binding in Redis after the outage", || async {
        let v = store.bindings_for("1004").await.ok()?;
        (!v.is_empty()).then_some(())
    })
    .await;
    // Writes of call records that met the outage are counted, not silent.
    let end = store_status(&sys).await;
    assert!(end.failed_ops > 0, "{end:?}");
    sys.assert_clean().await;
}
