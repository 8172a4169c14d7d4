//! Transfer with real phones (baresip, Debian package `baresip-core`):
//! Alice calls Bob, Bob transfers her to Carol with baresip's `transfer`
//! command (a blind REFER to swbd). Bob's call ends, Alice's goes on, and
//! each phone's recording must carry the other's tone: Alice hears
//! Carol's 700 Hz (not Bob's 440 Hz) in the last seconds of her call,
//! Carol hears Alice's 1 kHz.
//!
//! Fails in CI when baresip is missing (`scripts/test.sh` installs it).
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::time::Duration;

use support::baresip_phone::{Phone, require_baresip, tail_tone};
use support::{Options, System, eventually};
use switchboard_proto::admin::v1 as pb;

#[tokio::test]
async fn baresip_callee_transfers_the_caller_who_then_hears_the_target() {
    if !require_baresip() {
        return;
    }
    let users: Vec<(String, String)> = [
        ("1001", "alice-pw-1"),
        ("1002", "bob-pw-2"),
        ("1003", "carol-pw-3"),
    ]
    .iter()
    .map(|(u, p)| (u.to_string(), p.to_string()))
    .collect();
    let sys = System::start(Options {
        users: users.clone(),
        ..Default::default()
    })
    .await;
    let base = 45_000 + (std::process::id() % 50) as u16 * 300;
    let mut alice = Phone::start(&sys.dir, "1001", &users[0].1, sys.sip, 1000.0, base);
    let mut bob = Phone::start(&sys.dir, "1002", &users[1].1, sys.sip, 440.0, base + 100);
    let mut carol = Phone::start(&sys.dir, "1003", &users[2].1, sys.sip, 700.0, base + 200);

    let admin = sys.signaling().await.expect("admin");
    eventually(20, "three phones registered", || {
        let mut admin = admin.clone();
        async move {
            let regs = admin
                .list_registrations(pb::ListRegistrationsRequest::default())
                .await
                .ok()?
                .into_inner()
                .registrations;
            (regs.len() >= 3).then_some(())
        }
    })
    .await;

    alice.command("dial", &format!("sip:1002@127.0.0.1:{}", sys.sip.port()));
    assert!(
        alice.wait_event("CALL_ESTABLISHED", 15),
        "Alice established"
    );
    assert!(bob.wait_event("CALL_ESTABLISHED", 5), "Bob established");
    tokio::time::sleep(Duration::from_secs(2)).await;

    bob.command(
        "transfer",
        &format!("sip:1003@127.0.0.1:{}", sys.sip.port()),
    );
    assert!(
        carol.wait_event("CALL_ESTABLISHED", 15),
        "Carol answered the transfer"
    );
    assert!(bob.wait_event("CALL_CLOSED", 15), "Bob released");
    let calls = eventually(10, "one bridged call left", || {
        let mut admin = admin.clone();
        async move {
            let calls = admin
                .list_calls(pb::ListCallsRequest::default())
                .await
                .ok()?
                .into_inner()
                .calls;
            (calls.len() == 1 && calls[0].state == pb::CallState::Bridged as i32).then_some(calls)
        }
    })
    .await;
    assert_eq!(calls.len(), 1);
    tokio::time::sleep(Duration::from_secs(4)).await;

    alice.command("hangup", "");
    assert!(alice.wait_event("CALL_CLOSED", 10), "Alice closed");
    assert!(carol.wait_event("CALL_CLOSED", 10), "Carol got BYE");
    sys.assert_clean().await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    for (phone, want, not) in [(&alice, 700.0, 440.0), (&carol, 1000.0, 440.0)] {
        let rec = phone
            .recording()
            .unwrap_or_else(|| panic!("{} recorded nothing", phone.user));
        let (hit, miss) = tail_tone(&rec, 2, want, not);
        assert!(
            hit > 10.0 * miss,
            "{} hears {want} Hz at the end: {hit:e} vs {not} Hz {miss:e}",
            phone.user
        );
    }
}
