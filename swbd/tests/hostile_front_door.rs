//! Issue #13, reproduced against real swbd + swrtp processes: reflection
//! through challenges, spoofed lock-out, digest `uri` games, unusable SDP
//! found too late, unbounded forking, and sources outside the ACL.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::time::Duration;

use support::raw::{RawPeer, as_request, authorization, challenge, fresh};
use support::{Options, System, free_udp_port};
use swbd::sip::message::HeaderAccess;
use swbd::sip::{Name, SipMessage};

fn users() -> Vec<(String, String)> {
    vec![("1001".into(), "pw-1001".into())]
}

fn status(raw: &[u8]) -> Option<u16> {
    match SipMessage::parse(raw, true) {
        Ok(SipMessage::Response(r)) => Some(r.code),
        _ => None,
    }
}

/// One spoofed INVITE costs one reply: no 100 Trying, no Timer G.
#[tokio::test]
async fn an_unacked_invite_gets_exactly_one_407() {
    let sys = System::start(Options {
        users: users(),
        ..Options::default()
    })
    .await;
    // Timer G (T1 = 500 ms) would resend at 0.5 s and 1.5 s within 3 s.
    let peer = RawPeer::bind("127.0.0.1", sys.sip).await;
    let text = peer.invite(
        &format!("sip:500@{}", sys.sip),
        "<sip:1001@x>",
        &fresh(),
        1,
        "",
    );
    peer.send(&text).await;
    let got = peer.collect(Duration::from_secs(3)).await;
    let codes: Vec<Option<u16>> = got.iter().map(|r| status(r)).collect();
    assert_eq!(codes, vec![Some(407)], "exactly one reply, the challenge");
    let reply = got.first().map(Vec::len).unwrap_or_default();
    println!(
        "request {} bytes, reply {reply} bytes ({:.2}x)",
        text.len(),
        reply as f64 / text.len() as f64
    );
    // A retransmission is screened again and gets a challenge of its own.
    peer.send(&text).await;
    let again = peer.collect(Duration::from_secs(1)).await;
    assert_eq!(again.len(), 1);
    assert_eq!(status(&again[0]), Some(407));
    sys.assert_clean().await;
}

/// Bad digests over nonces the spoofer made up (it never sees ours) do not
/// count; bad digests over nonces we issued to that address do.
#[tokio::test]
async fn spoofed_failures_do_not_lock_out_the_real_address() {
    let sys = System::start(Options {
        users: users(),
        auth_extra: "max_failures: 5, failure_window_secs: 60, block_secs: 60".into(),
        ..Options::default()
    })
    .await;
    let ruri = format!("sip:500@{}", sys.sip);
    // The "spoofer" sends from the phone's address with made-up nonces.
    let spoofer = RawPeer::bind("127.0.0.1", sys.sip).await;
    for i in 0..30u32 {
        let nonce = format!("{i:x}-00112233aabb-0123456789abcdef0123456789abcdef");
        let auth = authorization(
            "Proxy-Authorization",
            "switchboard",
            &nonce,
            "1001",
            "guess",
            "INVITE",
            &ruri,
            1,
        );
        spoofer
            .send(&spoofer.invite(&ruri, "<sip:1001@x>", &fresh(), 1, &auth))
            .await;
    }
    let replies = spoofer.collect(Duration::from_secs(1)).await;
    assert!(
        replies.iter().all(|r| status(r) == Some(407)),
        "made-up nonces are challenged, never refused"
    );

    // The real phone at the same address still gets in.
    let phone = RawPeer::bind("127.0.0.1", sys.sip).await;
    let cid = fresh();
    let make = |cseq: u32, auth: &str| phone.invite(&ruri, "<sip:1001@x>", &cid, cseq, auth);
    let text = make(2, "");
    let r = phone.invite_authed(make, "1001", "pw-1001", &ruri).await;
    assert_ne!(r.code, 403, "not locked out: {r:?}");
    assert_ne!(r.code, 407, "authenticated: {r:?}");
    phone.ack_failure(&text, &r).await;

    // Guessing passwords over our own nonces from 127.0.0.2 does block it.
    let guesser = RawPeer::bind("127.0.0.2", sys.sip).await;
    let mut last = 0;
    for _ in 0..7 {
        let cid = fresh();
        guesser
            .send(&guesser.invite(&ruri, "<sip:1001@x>", &cid, 1, ""))
            .await;
        let ch = guesser.response(false).await;
        if ch.code == 403 {
            last = 403;
            break;
        }
        assert_eq!(ch.code, 407);
        let (realm, nonce) = challenge(&ch, &Name::PROXY_AUTHENTICATE);
        let auth = authorization(
            "Proxy-Authorization",
            &realm,
            &nonce,
            "1001",
            "wrong",
            "INVITE",
            &ruri,
            1,
        );
        guesser
            .send(&guesser.invite(&ruri, "<sip:1001@x>", &cid, 2, &auth))
            .await;
        last = guesser.response(false).await.code;
    }
    assert_eq!(last, 403, "the guessing address is blocked");
    // ... and only that address.
    let phone2 = RawPeer::bind("127.0.0.1", sys.sip).await;
    phone2
        .send(&phone2.invite(&ruri, "<sip:1001@x>", &fresh(), 1, ""))
        .await;
    assert_eq!(phone2.response(false).await.code, 407);
    // The operator sees it in `swctl status` (admin GetStatus).
    let sec = sys
        .signaling()
        .await
        .expect("admin")
        .get_status(switchboard_proto::admin::v1::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner()
        .security
        .expect("security counters");
    assert!(sec.auth_failures >= 5, "{sec:?}");
    assert!(sec.blocked_requests >= 1, "{sec:?}");
    assert!(sec.stateless_replies >= 30, "{sec:?}");
    sys.assert_clean().await;
}

/// A response computed for another Request-URI proves nothing about this
/// one (an INVITE to 500 with a digest computed for 7000).
#[tokio::test]
async fn digest_uri_must_be_the_request_uri() {
    let sys = System::start(Options {
        users: users(),
        ..Options::default()
    })
    .await;
    let peer = RawPeer::bind("127.0.0.1", sys.sip).await;
    let ruri = format!("sip:500@{}", sys.sip);
    let cid = fresh();
    let make = |cseq: u32, auth: &str| peer.invite(&ruri, "<sip:1001@x>", &cid, cseq, auth);
    let r = peer
        .invite_authed(make, "1001", "pw-1001", &format!("sip:7000@{}", sys.sip))
        .await;
    assert_eq!(r.code, 400, "{r:?}");
    assert!(r.reason.contains("digest uri"), "{}", r.reason);
    assert!(sys.active_calls().await.is_empty());
    sys.assert_clean().await;
}

/// An offer the media node cannot use is refused with 488 and a Warning
/// before any B-leg exists: the callee never rings.
#[tokio::test]
async fn unusable_caller_sdp_gets_488_before_any_b_leg() {
    let callee_port = free_udp_port();
    let sys = System::start(Options {
        dialplan: Some(format!(
            "version: 1\nroutes:\n  - id: any\n    match: {{ destination: \"*\" }}\n    actions:\n\
             \x20     - dial: {{ target: \"sip:bob@127.0.0.1:{callee_port}\", timeout: 5s }}\n\
             \x20     - dial: {{ target: \"sip:bob2@127.0.0.1:{callee_port}\", timeout: 5s }}\n"
        )),
        ..Options::default()
    })
    .await;
    let callee = RawPeer {
        sock: tokio::net::UdpSocket::bind(("127.0.0.1", callee_port))
            .await
            .expect("bind"),
        addr: ([127, 0, 0, 1], callee_port).into(),
        server: sys.sip,
    };
    let peer = RawPeer::bind("127.0.0.1", sys.sip).await;
    // G.729 only: swrtp speaks G.711.
    let g729 = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                m=audio 40000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
    let text = peer
        .invite(
            &format!("sip:500@{}", sys.sip),
            "<sip:1001@x>",
            &fresh(),
            1,
            "",
        )
        .replace(&support::raw::sdp(40000), g729)
        .replace(
            &format!("Content-Length: {}", support::raw::sdp(40000).len()),
            &format!("Content-Length: {}", g729.len()),
        );
    peer.send(&text).await;
    let r = peer.response(true).await;
    assert_eq!(r.code, 488, "{r:?}");
    let warning = r.raw(&Name::WARNING).expect("a Warning says why");
    assert!(warning.starts_with("399 "), "{warning}");
    println!("Warning: {warning}");
    peer.ack_failure(&text, &r).await;
    assert!(
        callee.collect(Duration::from_secs(1)).await.is_empty(),
        "no B-leg was created"
    );
    sys.assert_clean().await;
}

/// One call rings at most `b2bua.max_branches` B-legs at once.
#[tokio::test]
async fn b_legs_per_call_are_capped() {
    let callee_port = free_udp_port();
    let targets: Vec<String> = (0..6)
        .map(|i| format!("\"sip:b{i}@127.0.0.1:{callee_port}\""))
        .collect();
    let sys = System::start(Options {
        dialplan: Some(format!(
            "version: 1\nroutes:\n  - id: any\n    match: {{ destination: \"*\" }}\n    actions:\n\
             \x20     - dial: {{ targets: [{}], timeout: 2s }}\n",
            targets.join(", ")
        )),
        extra_config: "b2bua: { max_branches: 2 }\n".into(),
        ..Options::default()
    })
    .await;
    let callee = RawPeer {
        sock: tokio::net::UdpSocket::bind(("127.0.0.1", callee_port))
            .await
            .expect("bind"),
        addr: ([127, 0, 0, 1], callee_port).into(),
        server: sys.sip,
    };
    let peer = RawPeer::bind("127.0.0.1", sys.sip).await;
    let text = peer.invite(
        &format!("sip:500@{}", sys.sip),
        "<sip:1001@x>",
        &fresh(),
        1,
        "",
    );
    peer.send(&text).await;
    let got = callee.collect(Duration::from_secs(1)).await;
    // (Retransmissions of the same INVITEs count once.)
    let users: std::collections::BTreeSet<String> = got
        .iter()
        .filter_map(|raw| as_request(raw))
        .filter(|r| r.method == swbd::sip::Method::Invite)
        .map(|r| r.uri.user().unwrap_or_default())
        .collect();
    let users: Vec<String> = users.into_iter().collect();
    assert_eq!(
        users,
        vec!["b0".to_string(), "b1".to_string()],
        "two B-legs, not six"
    );
    // Nobody answers: the dial times out, the call ends cleanly.
    let r = peer.response(true).await;
    assert!(r.code >= 400, "{r:?}");
    peer.ack_failure(&text, &r).await;
    sys.assert_clean().await;
}

/// Sources outside `acl.allow` get nothing back at all.
#[tokio::test]
async fn sources_outside_acl_allow_are_dropped() {
    let sys = System::start(Options {
        users: users(),
        extra_config: "acl: { allow: [\"127.0.0.1/32\"] }\n".into(),
        ..Options::default()
    })
    .await;
    let inside = RawPeer::bind("127.0.0.1", sys.sip).await;
    let outside = RawPeer::bind("127.0.0.2", sys.sip).await;
    let ruri = format!("sip:500@{}", sys.sip);
    outside
        .send(&outside.invite(&ruri, "<sip:1001@x>", &fresh(), 1, ""))
        .await;
    inside
        .send(&inside.invite(&ruri, "<sip:1001@x>", &fresh(), 1, ""))
        .await;
    assert_eq!(inside.response(false).await.code, 407);
    assert!(outside.collect(Duration::from_secs(1)).await.is_empty());
    sys.assert_clean().await;
}

/// A source over `sip.rate_limit` gets 503 with Retry-After, once per
/// request and statelessly; other sources are not affected.
#[tokio::test]
async fn a_flooding_source_is_rate_limited() {
    let sys = System::start(Options {
        users: users(),
        sip_extra: "  rate_limit: { requests_per_sec: 5, burst: 10 }\n".into(),
        ..Options::default()
    })
    .await;
    let ruri = format!("sip:500@{}", sys.sip);
    let flooder = RawPeer::bind("127.0.0.1", sys.sip).await;
    for _ in 0..40 {
        flooder
            .send(&flooder.invite(&ruri, "<sip:1001@x>", &fresh(), 1, ""))
            .await;
    }
    let replies = flooder.collect(Duration::from_secs(1)).await;
    let parsed: Vec<_> = replies
        .iter()
        .filter_map(|r| match SipMessage::parse(r, true) {
            Ok(SipMessage::Response(r)) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(
        parsed.len(),
        40,
        "one reply per request, no retransmissions"
    );
    let limited: Vec<_> = parsed.iter().filter(|r| r.code == 503).collect();
    assert!(
        limited.len() >= 25,
        "most of the flood is refused: {}",
        limited.len()
    );
    assert!(limited.iter().all(|r| r.raw(&Name::RETRY_AFTER).is_some()));
    assert!(parsed.iter().all(|r| r.code == 503 || r.code == 407));
    // Another source is served.
    let other = RawPeer::bind("127.0.0.2", sys.sip).await;
    other
        .send(&other.invite(&ruri, "<sip:1001@x>", &fresh(), 1, ""))
        .await;
    assert_eq!(other.response(false).await.code, 407);
    sys.assert_clean().await;
}

/// An INVITE (or BYE) for a dialog that does not exist, with a made-up To
/// tag, gets one `481` and nothing else: no `100 Trying`, no transaction
/// whose Timer G would resend the `481` to a spoofed source.
#[tokio::test]
async fn a_made_up_in_dialog_request_gets_one_481() {
    let sys = System::start(Options {
        users: users(),
        ..Options::default()
    })
    .await;
    let peer = RawPeer::bind("127.0.0.1", sys.sip).await;
    let ruri = format!("sip:500@{}", sys.sip);
    let text = peer.invite(&ruri, "<sip:1001@x>", &fresh(), 1, "").replace(
        &format!("To: <{ruri}>"),
        &format!("To: <{ruri}>;tag=madeup"),
    );
    peer.send(&text).await;
    let got = peer.collect(Duration::from_secs(3)).await;
    let codes: Vec<Option<u16>> = got.iter().map(|r| status(r)).collect();
    assert_eq!(codes, vec![Some(481)], "exactly one reply");
    let bye = text
        .replace("INVITE sip:", "BYE sip:")
        .replace(" INVITE\r\n", " BYE\r\n");
    peer.send(&bye).await;
    let got = peer.collect(Duration::from_secs(1)).await;
    let codes: Vec<Option<u16>> = got.iter().map(|r| status(r)).collect();
    assert_eq!(codes, vec![Some(481)]);
    sys.assert_clean().await;
}
