//! Registrar (RFC 3261 §10.3) with digest auth over real sockets: both
//! algorithms, replayed nc, stale nonces, 423, q-values, `Contact: *`,
//! CSeq ordering, foreign domains, expiry, NAT source, blocking.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod common;

use std::time::Duration;

use common::*;
use swbd::auth::digest::Algorithm;
use swbd::events::{Event, RegistrationChange};
use swbd::sip::message::HeaderAccess;
use swbd::sip::{ContactList, Name, Response, SipMessage};
use swbd::transport::Transport;

const URI: &str = "sip:example.com";

/// REGISTER, take the 401, answer it; returns the final response.
async fn register_authed(
    peer: &UdpPeer,
    user: &str,
    password: &str,
    alg: Algorithm,
    call_id: &str,
    cseq: u32,
    extra: &str,
) -> Response {
    peer.send(&register("UDP", peer.addr(), user, call_id, cseq, extra))
        .await;
    let r = peer.response(false).await;
    assert_eq!(r.code, 401, "challenged first");
    let (realm, nonce) = challenge(&r, alg.as_str());
    let auth = authorization(
        "Authorization",
        alg,
        &realm,
        &nonce,
        user,
        password,
        "REGISTER",
        URI,
        1,
    );
    peer.send(&register(
        "UDP",
        peer.addr(),
        user,
        call_id,
        cseq + 1,
        &format!("{auth}{extra}"),
    ))
    .await;
    peer.response(false).await
}

fn contact_line(port: u16, extra: &str) -> String {
    format!("Contact: <sip:alice@127.0.0.1:{port}>{extra}\r\n")
}

#[tokio::test]
async fn register_with_sha256_and_md5() {
    let s = start("reg-algs").await;
    let mut events = s.events.subscribe();
    let peer = UdpPeer::new(s.udp()).await;
    let port = peer.addr().port();
    let r = register_authed(
        &peer,
        "alice",
        "secret-a",
        Algorithm::Sha256,
        "c1",
        1,
        &contact_line(port, ""),
    )
    .await;
    assert_eq!(r.code, 200, "{r:?}");
    let ContactList::Contacts(c) = r.contacts().expect("contacts") else {
        panic!("star")
    };
    assert_eq!(c.len(), 1);
    assert!(r.raw(&Name::CONTACT).expect("contact").contains("expires="));
    let b = s.endpoint.registrar().lookup("alice");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].source_addr(), peer.addr());
    assert_eq!(b[0].transport(), Transport::Udp);
    let ev = tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("in time")
        .expect("event");
    assert!(
        matches!(&ev.1, Event::Registration { change: RegistrationChange::Added, binding } if binding.aor == "sip:alice@example.com")
    );

    // Same contact again, higher CSeq: a refresh.
    let r = register_authed(
        &peer,
        "alice",
        "secret-a",
        Algorithm::Sha256,
        "c1",
        10,
        &contact_line(port, ""),
    )
    .await;
    assert_eq!(r.code, 200);
    assert_eq!(s.endpoint.registrar().lookup("alice").len(), 1);
    let ev = tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("in time")
        .expect("event");
    assert!(matches!(
        &ev.1,
        Event::Registration {
            change: RegistrationChange::Refreshed,
            ..
        }
    ));

    let bob = UdpPeer::new(s.udp()).await;
    let r = register_authed(
        &bob,
        "bob",
        "secret-b",
        Algorithm::Md5,
        "c2",
        1,
        &format!("Contact: <sip:bob@127.0.0.1:{}>\r\n", bob.addr().port()),
    )
    .await;
    assert_eq!(r.code, 200);
    assert_eq!(s.endpoint.registrar().list().len(), 2);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let s = start("reg-wrong").await;
    let peer = UdpPeer::new(s.udp()).await;
    let port = peer.addr().port();
    let wrong = register_authed(
        &peer,
        "alice",
        "nope",
        Algorithm::Sha256,
        "w1",
        1,
        &contact_line(port, ""),
    )
    .await;
    let unknown = register_authed(
        &peer,
        "mallory",
        "nope",
        Algorithm::Sha256,
        "w2",
        1,
        &contact_line(port, ""),
    )
    .await;
    assert_eq!((wrong.code, unknown.code), (401, 401));
    assert_eq!(wrong.reason, unknown.reason);
    assert_eq!(
        wrong.raw_values(&Name::WWW_AUTHENTICATE).count(),
        unknown.raw_values(&Name::WWW_AUTHENTICATE).count()
    );
    assert!(s.endpoint.registrar().is_empty());
    assert!(s.endpoint.counters().auth_failures >= 2);
}

#[tokio::test]
async fn replayed_nonce_count_is_refused() {
    let s = start("reg-replay").await;
    let peer = UdpPeer::new(s.udp()).await;
    let contact = contact_line(peer.addr().port(), "");
    peer.send(&register("UDP", peer.addr(), "alice", "rp", 1, &contact))
        .await;
    let r = peer.response(false).await;
    let (realm, nonce) = challenge(&r, "MD5");
    let auth = authorization(
        "Authorization",
        Algorithm::Md5,
        &realm,
        &nonce,
        "alice",
        "secret-a",
        "REGISTER",
        URI,
        1,
    );
    peer.send(&register(
        "UDP",
        peer.addr(),
        "alice",
        "rp",
        2,
        &format!("{auth}{contact}"),
    ))
    .await;
    assert_eq!(peer.response(false).await.code, 200);
    // Same nonce, same nc: a replay.
    peer.send(&register(
        "UDP",
        peer.addr(),
        "alice",
        "rp",
        3,
        &format!("{auth}{contact}"),
    ))
    .await;
    let r = peer.response(false).await;
    assert_eq!(r.code, 401);
    assert!(
        r.raw(&Name::WWW_AUTHENTICATE)
            .expect("challenge")
            .contains("stale=true")
    );
    // The next nc is fine.
    let auth2 = authorization(
        "Authorization",
        Algorithm::Md5,
        &realm,
        &nonce,
        "alice",
        "secret-a",
        "REGISTER",
        URI,
        2,
    );
    peer.send(&register(
        "UDP",
        peer.addr(),
        "alice",
        "rp",
        4,
        &format!("{auth2}{contact}"),
    ))
    .await;
    assert_eq!(peer.response(false).await.code, 200);
}

#[tokio::test]
async fn challenges_are_not_kept_but_registrations_are() {
    let s = start("reg-stateless-401").await;
    let peer = UdpPeer::new(s.udp()).await;
    let contact = contact_line(peer.addr().port(), "");
    let first = register("UDP", peer.addr(), "alice", "sl", 1, &contact);
    peer.send(&first).await;
    let r1 = peer.response(false).await;
    assert_eq!(r1.code, 401);
    assert_eq!(
        s.endpoint.transactions().live_transactions().0,
        0,
        "the challenge left no transaction behind"
    );
    // The same request again (a retransmission: same branch): a fresh
    // challenge, with a nonce of its own; both nonces work.
    peer.send(&first).await;
    let r2 = peer.response(false).await;
    assert_eq!(r2.code, 401);
    let (realm, n1) = challenge(&r1, "MD5");
    let (_, n2) = challenge(&r2, "MD5");
    assert_ne!(n1, n2, "a new challenge");
    for (kept, cseq, nonce) in [(1, 2, &n1), (2, 3, &n2)] {
        let auth = authorization(
            "Authorization",
            Algorithm::Md5,
            &realm,
            nonce,
            "alice",
            "secret-a",
            "REGISTER",
            URI,
            1,
        );
        let req = register(
            "UDP",
            peer.addr(),
            "alice",
            "sl",
            cseq,
            &format!("{auth}{contact}"),
        );
        peer.send(&req).await;
        let ok = peer.response(false).await;
        assert_eq!(ok.code, 200, "nonce {nonce}");
        // The 200s are kept (Timer J): a retransmission gets the same bytes
        // back and the registrar is not asked again (that would be a replay).
        assert_eq!(s.endpoint.transactions().live_transactions().0, kept);
        peer.send(&req).await;
        let again = peer.response(false).await;
        assert_eq!(again.code, 200, "the kept 200, not a replay refusal");
        assert_eq!(again.to_bytes(), ok.to_bytes());
    }
}

#[tokio::test]
async fn expired_nonce_gets_stale_true() {
    let s = start_with("reg-stale", |c| c.auth.nonce_ttl_secs = 1).await;
    let peer = UdpPeer::new(s.udp()).await;
    let contact = contact_line(peer.addr().port(), "");
    peer.send(&register("UDP", peer.addr(), "alice", "st", 1, &contact))
        .await;
    let (realm, nonce) = challenge(&peer.response(false).await, "SHA-256");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let auth = authorization(
        "Authorization",
        Algorithm::Sha256,
        &realm,
        &nonce,
        "alice",
        "secret-a",
        "REGISTER",
        URI,
        1,
    );
    peer.send(&register(
        "UDP",
        peer.addr(),
        "alice",
        "st",
        2,
        &format!("{auth}{contact}"),
    ))
    .await;
    let r = peer.response(false).await;
    assert_eq!(r.code, 401);
    assert!(
        r.raw(&Name::WWW_AUTHENTICATE)
            .expect("challenge")
            .contains("stale=true")
    );
    assert_eq!(
        s.endpoint.counters().auth_failures,
        0,
        "a stale nonce is not a failure"
    );
}

#[tokio::test]
async fn expiry_rules_423_and_cap() {
    let s = start("reg-423").await;
    let peer = UdpPeer::new(s.udp()).await;
    let port = peer.addr().port();
    let r = register_authed(
        &peer,
        "alice",
        "secret-a",
        Algorithm::Sha256,
        "e1",
        1,
        &format!("Expires: 10\r\n{}", contact_line(port, "")),
    )
    .await;
    assert_eq!(r.code, 423);
    assert_eq!(r.raw(&Name::MIN_EXPIRES), Some("60"));
    let r = register_authed(
        &peer,
        "alice",
        "secret-a",
        Algorithm::Sha256,
        "e2",
        1,
        &contact_line(port, ";expires=999999"),
    )
    .await;
    assert_eq!(r.code, 200);
    let b = s.endpoint.registrar().lookup("alice");
    assert!(b[0].remaining_secs() <= 7200, "capped at max_expires_secs");
}

#[tokio::test]
async fn several_contacts_q_values_star_removal_and_cseq_order() {
    let s = start("reg-multi").await;
    let mut events = s.events.subscribe();
    let peer = UdpPeer::new(s.udp()).await;
    let contacts = "Contact: <sip:alice@10.0.0.1:5060>;q=0.3, <sip:alice@10.0.0.2:5060>;q=0.9\r\nContact: <sip:alice@10.0.0.3:5060>\r\n";
    let r = register_authed(
        &peer,
        "alice",
        "secret-a",
        Algorithm::Sha256,
        "m1",
        10,
        contacts,
    )
    .await;
    assert_eq!(r.code, 200);
    let ContactList::Contacts(c) = r.contacts().expect("contacts") else {
        panic!("star")
    };
    assert_eq!(c.len(), 3, "200 lists all bindings");
    let b = s.endpoint.registrar().lookup("alice");
    let qs: Vec<f32> = b.iter().map(|b| b.q).collect();
    assert_eq!(qs, vec![1.0, 0.9, 0.3], "best q first");
    // NAT: every binding is reached at the REGISTER's real source.
    assert!(b.iter().all(|b| b.source_addr() == peer.addr()));

    // An older CSeq on the same Call-ID is refused.
    let r = register_authed(
        &peer,
        "alice",
        "secret-a",
        Algorithm::Sha256,
        "m1",
        3,
        "Contact: <sip:alice@10.0.0.1:5060>\r\n",
    )
    .await;
    assert_eq!(r.code, 400);
    assert!(r.reason.contains("CSeq"));

    // Contact: * without Expires: 0 is refused, with it everything goes.
    let r = register_authed(
        &peer,
        "alice",
        "secret-a",
        Algorithm::Sha256,
        "m1",
        20,
        "Contact: *\r\n",
    )
    .await;
    assert_eq!(r.code, 400);
    let r = register_authed(
        &peer,
        "alice",
        "secret-a",
        Algorithm::Sha256,
        "m1",
        30,
        "Contact: *\r\nExpires: 0\r\n",
    )
    .await;
    assert_eq!(r.code, 200);
    assert!(!r.headers.contains(&Name::CONTACT));
    assert!(s.endpoint.registrar().lookup("alice").is_empty());
    let mut removed = 0;
    while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
        if matches!(
            ev.1,
            Event::Registration {
                change: RegistrationChange::Removed,
                ..
            }
        ) {
            removed += 1;
        }
    }
    assert_eq!(removed, 3);
}

#[tokio::test]
async fn foreign_domain_is_404_and_foreign_aor_403() {
    let s = start("reg-404").await;
    let peer = UdpPeer::new(s.udp()).await;
    let port = peer.addr().port();
    peer.send(
        &register(
            "UDP",
            peer.addr(),
            "alice",
            "f1",
            1,
            &contact_line(port, ""),
        )
        .replace("@example.com", "@elsewhere.test"),
    )
    .await;
    let r = peer.response(false).await;
    assert_eq!(r.code, 401, "authentication comes first");
    let (realm, nonce) = challenge(&r, "SHA-256");
    let auth = authorization(
        "Authorization",
        Algorithm::Sha256,
        &realm,
        &nonce,
        "alice",
        "secret-a",
        "REGISTER",
        URI,
        1,
    );
    peer.send(
        &register(
            "UDP",
            peer.addr(),
            "alice",
            "f1",
            2,
            &format!("{auth}{}", contact_line(port, "")),
        )
        .replace("@example.com", "@elsewhere.test"),
    )
    .await;
    assert_eq!(peer.response(false).await.code, 404);

    // alice may not register bob's AOR.
    let msg = register("UDP", peer.addr(), "bob", "f2", 1, &contact_line(port, ""));
    peer.send(&msg).await;
    let (realm, nonce) = challenge(&peer.response(false).await, "SHA-256");
    let auth = authorization(
        "Authorization",
        Algorithm::Sha256,
        &realm,
        &nonce,
        "alice",
        "secret-a",
        "REGISTER",
        URI,
        1,
    );
    peer.send(&register(
        "UDP",
        peer.addr(),
        "bob",
        "f2",
        2,
        &format!("{auth}{}", contact_line(port, "")),
    ))
    .await;
    assert_eq!(peer.response(false).await.code, 403);
}

#[tokio::test]
async fn bindings_expire_on_time() {
    let s = start_with("reg-expire", |c| {
        c.registrar.min_expires_secs = 1;
    })
    .await;
    let mut events = s.events.subscribe();
    let peer = UdpPeer::new(s.udp()).await;
    let r = register_authed(
        &peer,
        "alice",
        "secret-a",
        Algorithm::Sha256,
        "x1",
        1,
        &contact_line(peer.addr().port(), ";expires=1"),
    )
    .await;
    assert_eq!(r.code, 200);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("Expired in time")
            .expect("event");
        if matches!(
            ev.1,
            Event::Registration {
                change: RegistrationChange::Expired,
                ..
            }
        ) {
            break;
        }
    }
    assert!(s.endpoint.registrar().lookup("alice").is_empty());
    assert!(s.endpoint.registrar().list().is_empty());
}

#[tokio::test]
async fn failing_source_is_blocked_others_are_not() {
    let s = start_with("reg-block", |c| {
        c.auth.max_failures = 3;
        c.auth.block_secs = 600;
    })
    .await;
    let bad = UdpPeer::new(s.udp()).await;
    let port = bad.addr().port();
    for i in 0..3 {
        let r = register_authed(
            &bad,
            "alice",
            "wrong",
            Algorithm::Md5,
            &format!("b{i}"),
            1,
            &contact_line(port, ""),
        )
        .await;
        assert_eq!(r.code, 401);
    }
    bad.send(&register(
        "UDP",
        bad.addr(),
        "alice",
        "b9",
        1,
        &contact_line(port, ""),
    ))
    .await;
    assert_eq!(bad.response(false).await.code, 403);

    // Another source (127.0.0.2) is unaffected.
    let Ok(good) = tokio::net::UdpSocket::bind("127.0.0.2:0").await else {
        eprintln!("skipping second-source check: cannot bind 127.0.0.2");
        return;
    };
    let good = UdpPeer {
        sock: good,
        server: s.udp(),
    };
    let r = register_authed(
        &good,
        "alice",
        "secret-a",
        Algorithm::Sha256,
        "g1",
        1,
        &contact_line(good.addr().port(), ""),
    )
    .await;
    assert_eq!(r.code, 200);
    assert!(s.endpoint.counters().blocked_requests >= 1);
}

#[tokio::test]
async fn tcp_binding_is_reached_over_its_connection() {
    let s = start("reg-tcp").await;
    let mut peer = TcpPeer::connect(s.tcp()).await;
    let addr = peer.addr();
    let contact = format!("Contact: <sip:alice@{addr};transport=tcp>\r\n");
    peer.send(&register("TCP", addr, "alice", "t1", 1, &contact))
        .await;
    let r = peer.response(false).await;
    let (realm, nonce) = challenge(&r, "SHA-256");
    let auth = authorization(
        "Authorization",
        Algorithm::Sha256,
        &realm,
        &nonce,
        "alice",
        "secret-a",
        "REGISTER",
        URI,
        1,
    );
    peer.send(&register(
        "TCP",
        addr,
        "alice",
        "t1",
        2,
        &format!("{auth}{contact}"),
    ))
    .await;
    assert_eq!(peer.response(false).await.code, 200);
    let b = s.endpoint.registrar().lookup("alice");
    assert_eq!(b[0].transport(), Transport::Tcp);

    // swbd sends an OPTIONS to the binding: it arrives on the same connection.
    let mut opt = swbd::sip::Request::new(swbd::sip::Method::Options, b[0].contact.clone());
    opt.headers
        .insert(Name::FROM, "<sip:swbd@example.com>;tag=s1");
    opt.headers.insert(Name::TO, "<sip:alice@example.com>");
    opt.headers.insert(Name::CALL_ID, "probe-1");
    opt.headers.insert(Name::CSEQ, "1 OPTIONS");
    let mut ctx = s
        .endpoint
        .transactions()
        .send_request(opt, b[0].target())
        .await
        .expect("sent");
    let Some(SipMessage::Request(got)) = peer.recv_within(WAIT).await else {
        panic!("no OPTIONS")
    };
    assert_eq!(got.method, swbd::sip::Method::Options);
    let resp = swbd::sip::response::make_response(&got, 200, "OK", Some("ua"));
    peer.send(std::str::from_utf8(&resp.to_bytes()).expect("utf8"))
        .await;
    assert_eq!(ctx.final_response().await.expect("200").code, 200);
}
