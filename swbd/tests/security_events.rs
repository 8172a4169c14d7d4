//! Security events end to end: wrong passwords from a real UDP socket reach
//! the operator as one event at once, then one aggregated summary (not one
//! event per attempt), through `swctl events -o json`, `swctl events -f`
//! and the counters of `swctl status -o json`; a guessing source's block
//! and its end are events too.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use support::raw::{RawPeer, authorization, challenge, fresh};
use support::{Options, System, eventually, swctl};
use swbd::sip::Name;
use switchboard_proto::admin::v1 as pb;

/// A REGISTER for 1001 from `peer`, with `auth` (a header line or "").
fn register(peer: &RawPeer, call_id: &str, cseq: u32, auth: &str) -> String {
    format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{b};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:1001@127.0.0.1>;tag={t}\r\nTo: <sip:1001@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:1001@{me}>\r\n{auth}\
         Content-Length: 0\r\n\r\n",
        me = peer.addr,
        b = fresh(),
        t = fresh(),
    )
}

/// A nonce issued to `peer` (from a 401 to a REGISTER without credentials).
async fn nonce_for(peer: &RawPeer, call_id: &str) -> (String, String) {
    peer.send(&register(peer, call_id, 1, "")).await;
    let r = peer.response(false).await;
    assert_eq!(r.code, 401, "challenged");
    challenge(&r, &Name::WWW_AUTHENTICATE)
}

/// `n` REGISTERs with a wrong password, over a nonce issued to `peer`, sent
/// back to back; every answer is collected.
async fn wrong_passwords(peer: &RawPeer, n: u32) {
    let call_id = fresh();
    let (realm, nonce) = nonce_for(peer, &call_id).await;
    for i in 0..n {
        let auth = authorization(
            "Authorization",
            &realm,
            &nonce,
            "1001",
            "not-the-password",
            "REGISTER",
            "sip:127.0.0.1",
            i + 1,
        );
        peer.send(&register(peer, &call_id, i + 2, &auth)).await;
    }
    let mut answered = 0;
    while answered < n {
        let r = peer.response(false).await;
        assert_eq!(r.code, 401, "a wrong password is challenged again");
        answered += 1;
    }
}

/// The security events of `source` in `swctl events -o json --kind security`.
fn security_events_of(sys: &System, source: SocketAddr) -> Vec<serde_json::Value> {
    let out = swctl::ok(&sys.admin, &["events", "-o", "json", "--kind", "security"]);
    let all: serde_json::Value = serde_json::from_str(&out).expect("a JSON array");
    all.as_array()
        .expect("array")
        .iter()
        .filter(|e| e["subject"] == format!("udp {source}"))
        .cloned()
        .collect()
}

fn total(events: &[serde_json::Value]) -> u64 {
    events
        .iter()
        .map(|e| e["security"]["count"].as_u64().expect("count"))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_flood_is_one_event_then_a_summary() {
    let sys = System::start(Options {
        users: vec![("1001".into(), "pw-1001".into())],
        auth_extra: "max_failures: 1000".into(),
        extra_config: "events: { security_interval_secs: 2 }\n".into(),
        ..Options::default()
    })
    .await;

    // A follower, started before anything happens: it sees events live.
    let mut follower = swctl::spawn(
        &sys.admin,
        &["events", "-f", "-o", "json", "--kind", "security"],
    );
    let stdout = follower.stdout.take().expect("piped stdout");
    let (tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });

    // One wrong password: one event, at once.
    let peer = RawPeer::bind("127.0.0.3", sys.sip).await;
    wrong_passwords(&peer, 1).await;
    let first = lines
        .recv_timeout(Duration::from_secs(20))
        .expect("`swctl events -f` prints the auth failure");
    let first: serde_json::Value = serde_json::from_str(&first).expect("one JSON object per line");
    assert_eq!(first["kind"], "security", "{first}");
    assert_eq!(first["event"], "auth-failure", "{first}");
    assert_eq!(first["subject"], format!("udp {}", peer.addr), "{first}");
    assert_eq!(first["security"]["user"], "1001", "{first}");
    assert_eq!(first["security"]["reason"], "wrong password", "{first}");
    assert_eq!(first["security"]["count"], 1, "{first}");
    assert_eq!(first["security"]["summary"], false, "{first}");

    // A flood of 29 more: folded into summaries, never 29 events.
    wrong_passwords(&peer, 29).await;
    let events = eventually(30, "the summary of the flood", || {
        let got = security_events_of(&sys, peer.addr);
        async move { (total(&got) == 30).then_some(got) }
    })
    .await;
    assert!(
        events.len() < 30,
        "aggregated, not one event per attempt: {events:#?}"
    );
    assert_eq!(events[0]["security"]["summary"], false, "{events:#?}");
    assert!(
        events
            .iter()
            .any(|e| e["security"]["summary"] == true && e["security"]["interval_secs"] == 2),
        "a summary: {events:#?}"
    );
    // The follower saw the summary too.
    let summary = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("`swctl events -f` prints the summary");
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
        if v["security"]["summary"] == true {
            break v;
        }
    };
    assert_eq!(summary["subject"], format!("udp {}", peer.addr));
    assert!(summary["security"]["count"].as_u64().expect("count") >= 1);
    follower.kill().expect("kill the follower");
    let _ = follower.wait();

    // The counters of `swctl status -o json`.
    let status: serde_json::Value =
        serde_json::from_str(&swctl::ok(&sys.admin, &["status", "-o", "json"])).expect("JSON");
    let sec = &status[0]["security"];
    assert!(
        sec["auth_failures"].as_u64().expect("auth_failures") >= 30,
        "{status}"
    );
    assert!(
        sec["security_events"].as_u64().expect("security_events") >= 2,
        "{status}"
    );
    assert!(
        sec["security_events_suppressed"]
            .as_u64()
            .expect("suppressed")
            >= 29,
        "{status}"
    );

    // Tables fit 80 columns; `--since` leaves old events out.
    let table = swctl::ok(&sys.admin, &["events", "--kind", "security"]);
    assert!(table.contains("auth-failure"), "{table}");
    assert!(table.lines().all(|l| l.chars().count() <= 80), "{table}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let recent = swctl::ok(&sys.admin, &["events", "-o", "json", "--since", "1s"]);
    let recent: serde_json::Value = serde_json::from_str(&recent).expect("JSON");
    assert!(
        !recent
            .as_array()
            .expect("array")
            .iter()
            .any(|e| e == &first),
        "the first event is older than 1 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guessing_source_is_blocked_then_unblocked_as_events() {
    let sys = System::start(Options {
        users: vec![("1001".into(), "pw-1001".into())],
        auth_extra: "max_failures: 3, block_secs: 2".into(),
        extra_config: "events: { security_interval_secs: 1 }\n".into(),
        ..Options::default()
    })
    .await;
    let peer = RawPeer::bind("127.0.0.4", sys.sip).await;
    wrong_passwords(&peer, 3).await;
    // Blocked now: a request gets 403, and that is an event too.
    peer.send(&register(&peer, &fresh(), 1, "")).await;
    assert_eq!(peer.response(false).await.code, 403);

    let source = format!("udp {}", peer.addr);
    let kinds = eventually(20, "blocked, blocked request, unblocked", || {
        let sys = &sys;
        let source = source.clone();
        async move {
            let mut admin = sys.signaling().await.ok()?;
            let mut stream = admin
                .list_events(pb::ListEventsRequest {
                    since: None,
                    follow: false,
                })
                .await
                .ok()?
                .into_inner();
            let mut kinds = Vec::new();
            while let Some(ev) = stream.message().await.ok()? {
                if let Some(pb::signaling_event::Event::Security(s)) = ev.event
                    && s.source == source
                {
                    kinds.push(pb::SecurityEventKind::try_from(s.kind).ok()?);
                }
            }
            kinds
                .contains(&pb::SecurityEventKind::SourceUnblocked)
                .then_some(kinds)
        }
    })
    .await;
    for k in [
        pb::SecurityEventKind::AuthFailure,
        pb::SecurityEventKind::SourceBlocked,
        pb::SecurityEventKind::BlockedRequest,
        pb::SecurityEventKind::SourceUnblocked,
    ] {
        assert!(kinds.contains(&k), "{k:?} missing from {kinds:?}");
    }
    let status = sys
        .signaling()
        .await
        .expect("admin")
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.security.expect("counters").sources_blocked, 1);
}
