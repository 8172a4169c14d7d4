//! RFC 3262 with a real third-party UA: two pjsua2 (PJSIP 2.15) phones
//! register with passwords and call each other through swbd + swrtp.
//! A caller that requires `100rel` gets the 18x reliably and PRACKs them;
//! a callee that requires `100rel` sends its 183 reliably and swbd PRACKs
//! it (and sends its own 183 reliably to a caller that supports `100rel`). Both calls are answered and hung up, leaving nothing behind.
//!
//! Needs `python3 -c 'import pjsua2'` (`scripts/test.sh` installs
//! `pjsua2-python`); without it the tests fail when `CI=true` and are
//! skipped with a note otherwise.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use support::pjsua2::{self, Pjsua, field, is_msg};
use support::{Options, System};

fn system_options() -> Options {
    Options {
        users: vec![
            ("1001".into(), "pw-alice".into()),
            ("1002".into(), "pw-bob".into()),
        ],
        ..Options::default()
    }
}

fn args(sys: &System, user: &str, password: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "--swbd".into(),
        sys.sip.to_string(),
        "--user".into(),
        user.into(),
        "--password".into(),
        password.into(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// Hang up from Alice, see both sides disconnected and swbd clean.
async fn hang_up(sys: &System, mut alice: Pjsua, mut bob: Pjsua) {
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

#[tokio::test]
async fn caller_requiring_100rel_pracks_the_reliable_18x() {
    if !pjsua2::required() {
        return;
    }
    let sys = System::start(system_options()).await;
    let mut bob = Pjsua::start(
        "bob",
        &args(
            &sys,
            "1002",
            "pw-bob",
            &["--early", "180,183", "--answer-after-ms", "1500"],
        ),
    );
    bob.wait_for(30, "bob registered", |l| l == "reg | 200")
        .await;
    let mut alice = Pjsua::start(
        "alice",
        &args(
            &sys,
            "1001",
            "pw-alice",
            &["--call", "1002", "--prack", "mandatory"],
        ),
    );
    alice
        .wait_for(40, "alice's call confirmed", |l| {
            l.starts_with("state | CONFIRMED")
        })
        .await;
    bob.wait_for(20, "bob's call confirmed", |l| {
        l.starts_with("state | CONFIRMED")
    })
    .await;

    assert!(
        alice.saw(|l| is_msg(l, "tx", "INVITE", Some("Require=100rel"))),
        "alice's INVITE requires 100rel"
    );
    // Every 18x came reliably and was PRACKed with its RSeq.
    let reliable: Vec<String> = alice
        .seen
        .iter()
        .filter(|l| is_msg(l, "rx", "SIP/2.0 18", None))
        .cloned()
        .collect();
    assert!(!reliable.is_empty(), "alice got a 18x");
    for l in &reliable {
        assert_eq!(field(l, "Require"), Some("100rel"), "reliable: {l}");
        let rseq = field(l, "RSeq").unwrap_or_else(|| panic!("RSeq in {l}"));
        assert!(
            alice.saw(|p| is_msg(p, "tx", "PRACK", None)
                && field(p, "RAck").is_some_and(|r| r.starts_with(&format!("{rseq} ")))),
            "alice PRACKed RSeq {rseq}"
        );
    }
    assert!(
        reliable.iter().any(|l| l.contains("SIP/2.0 183")),
        "the early media (183 with SDP) was among them: {reliable:?}"
    );
    assert!(
        alice.saw(|l| is_msg(l, "rx", "SIP/2.0 200", None)
            && field(l, "CSeq").is_some_and(|c| c.ends_with("PRACK"))),
        "swbd answered the PRACKs"
    );
    hang_up(&sys, alice, bob).await;
}

#[tokio::test]
async fn callees_reliable_183_is_pracked_by_swbd() {
    if !pjsua2::required() {
        return;
    }
    let sys = System::start(system_options()).await;
    let mut bob = Pjsua::start(
        "bob",
        &args(
            &sys,
            "1002",
            "pw-bob",
            &[
                "--prack",
                "mandatory",
                "--early",
                "183",
                "--answer-after-ms",
                "1500",
            ],
        ),
    );
    bob.wait_for(30, "bob registered", |l| l == "reg | 200")
        .await;
    let mut alice = Pjsua::start(
        "alice",
        &args(&sys, "1001", "pw-alice", &["--call", "1002"]),
    );
    alice
        .wait_for(40, "alice's call confirmed", |l| {
            l.starts_with("state | CONFIRMED")
        })
        .await;
    bob.wait_for(20, "bob's call confirmed", |l| {
        l.starts_with("state | CONFIRMED")
    })
    .await;

    let sent = bob
        .seen
        .iter()
        .find(|l| is_msg(l, "tx", "SIP/2.0 183", Some("RSeq=")))
        .cloned()
        .unwrap_or_else(|| panic!("bob sent a reliable 183; seen:\n{}", bob.seen.join("\n")));
    let rseq = field(&sent, "RSeq").expect("RSeq").to_string();
    assert!(
        bob.saw(|l| is_msg(l, "rx", "PRACK", None)
            && field(l, "RAck")
                .is_some_and(|r| r.starts_with(&format!("{rseq} ")) && r.ends_with("INVITE"))),
        "swbd PRACKed RSeq {rseq}"
    );
    assert!(
        bob.saw(|l| is_msg(l, "tx", "SIP/2.0 200", None)
            && field(l, "CSeq").is_some_and(|c| c.ends_with("PRACK"))),
        "bob accepted the PRACK"
    );
    // Alice only supports 100rel (pjsua2 says so by default): the 183
    // carrying swbd's answer went to her reliably, and she PRACKed it.
    let progress = alice
        .seen
        .iter()
        .find(|l| is_msg(l, "rx", "SIP/2.0 183", None))
        .cloned()
        .expect("alice got the 183");
    assert_eq!(field(&progress, "Require"), Some("100rel"), "{progress}");
    assert!(
        alice.saw(|l| is_msg(l, "tx", "PRACK", None)),
        "alice PRACKed"
    );
    hang_up(&sys, alice, bob).await;
}
