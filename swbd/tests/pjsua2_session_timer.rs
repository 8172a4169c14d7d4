//! RFC 4028 with a real third-party UA: two pjsua2 (PJSIP 2.15) phones
//! call each other through swbd + swrtp with 90 s session timers (PJSIP's
//! floor, and RFC 4028's). The caller refreshes its leg (it asked to:
//! swbd's 200 says `refresher=uac` and `Require: timer`), swbd refreshes
//! the callee's leg (the callee chose swbd, the UAC) with UPDATE, each
//! refresh is answered with `Session-Expires`, and the call stays up. One
//! refresh takes 45 s: this test waits that long, once.
//!
//! Needs `python3 -c 'import pjsua2'` (`scripts/test.sh` installs
//! `pjsua2-python`); without it the test fails when `CI=true` and is
//! skipped with a note otherwise.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use support::pjsua2::{self, Pjsua, field, is_msg};
use support::{Options, System};
use switchboard_proto::admin::v1 as pb;

fn args(sys: &System, user: &str, password: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "--swbd".into(),
        sys.sip.to_string(),
        "--user".into(),
        user.into(),
        "--password".into(),
        password.into(),
        "--session-expires".into(),
        "90".into(),
        "--min-se".into(),
        "90".into(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[tokio::test]
async fn both_legs_are_refreshed_and_the_call_stays_up() {
    if !pjsua2::required() {
        return;
    }
    let sys = System::start(Options {
        users: vec![
            ("1001".into(), "pw-alice".into()),
            ("1002".into(), "pw-bob".into()),
        ],
        sip_extra: "  session_timer: { enabled: true, session_expires: 90, min_se: 90 }\n".into(),
        ..Options::default()
    })
    .await;
    let mut bob = Pjsua::start(
        "bob",
        &args(&sys, "1002", "pw-bob", &["--timer", "optional"]),
    );
    bob.wait_for(30, "bob registered", |l| l == "reg | 200")
        .await;
    let mut alice = Pjsua::start(
        "alice",
        &args(
            &sys,
            "1001",
            "pw-alice",
            &["--call", "1002", "--timer", "always"],
        ),
    );
    let answer = alice
        .wait_for(40, "alice's 200", |l| {
            is_msg(l, "rx", "SIP/2.0 200", None)
                && field(l, "CSeq").is_some_and(|c| c.ends_with("INVITE"))
        })
        .await;
    bob.wait_for(20, "bob's call confirmed", |l| {
        l.starts_with("state | CONFIRMED")
    })
    .await;

    // Negotiated: Alice refreshes her leg, swbd refreshes Bob's.
    assert_eq!(
        field(&answer, "Session-Expires"),
        Some("90;refresher=uac"),
        "{answer}"
    );
    assert_eq!(field(&answer, "Require"), Some("timer"), "{answer}");
    let b_invite = bob
        .seen
        .iter()
        .find(|l| is_msg(l, "rx", "INVITE", None))
        .cloned()
        .expect("bob's INVITE");
    assert_eq!(
        field(&b_invite, "Session-Expires"),
        Some("90"),
        "{b_invite}"
    );
    assert_eq!(field(&b_invite, "Min-SE"), Some("90"), "{b_invite}");
    assert!(
        field(&b_invite, "Supported").is_some_and(|s| s.contains("timer") && s.contains("100rel")),
        "{b_invite}"
    );

    // At half the interval (45 s): Alice's refresh (by UPDATE, which
    // swbd's 200 allows, or re-INVITE) answered with Session-Expires. The
    // UPDATE pjsua2 sends right after the answer is not the refresh this
    // waits for: only a 200 seen 30 s or more after the answer counts.
    let since_answer = std::time::Instant::now();
    let refreshed = alice
        .wait_for(75, "alice's refresh answered", |l| {
            is_msg(l, "rx", "SIP/2.0 200", Some("Session-Expires="))
                && field(l, "CSeq").is_some_and(|c| c.ends_with("INVITE") || c.ends_with("UPDATE"))
                && l != answer
                && since_answer.elapsed() >= std::time::Duration::from_secs(30)
        })
        .await;
    assert_eq!(
        field(&refreshed, "Session-Expires"),
        Some("90;refresher=uac")
    );
    // ...and swbd's UPDATE to Bob, answered.
    let update = bob
        .wait_for(30, "swbd's refresh of bob", |l| {
            is_msg(l, "rx", "UPDATE", None)
        })
        .await;
    assert_eq!(
        field(&update, "Session-Expires"),
        Some("90;refresher=uac"),
        "{update}"
    );
    bob.wait_for(10, "bob's 200 to the UPDATE", |l| {
        is_msg(l, "tx", "SIP/2.0 200", None)
            && field(l, "CSeq").is_some_and(|c| c.ends_with("UPDATE"))
    })
    .await;

    // The call is up; swbd's ladder shows the refreshes.
    let calls = sys.active_calls().await;
    assert_eq!(calls.len(), 1, "still up after the refreshes");
    let call = sys
        .signaling()
        .await
        .expect("admin")
        .get_call(pb::GetCallRequest {
            call_id: calls[0].call_id.clone(),
        })
        .await
        .expect("get call")
        .into_inner();
    let ladder: Vec<&str> = call.ladder.iter().map(|m| m.summary.as_str()).collect();
    assert!(
        ladder.iter().any(|s| s.starts_with("UPDATE ")),
        "{ladder:?}"
    );
    assert!(
        ladder.iter().any(|s| s.starts_with("200 OK (UPDATE)")),
        "{ladder:?}"
    );

    alice.command("hangup").await;
    alice
        .wait_for(20, "alice disconnected", |l| {
            l.starts_with("state | DISCONNECTED")
        })
        .await;
    bob.wait_for(20, "bob disconnected", |l| {
        l.starts_with("state | DISCONNECTED")
    })
    .await;
    sys.assert_clean().await;
    alice.quit().await;
    bob.quit().await;
}
