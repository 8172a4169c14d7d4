//! The SIP endpoint over real UDP and TCP sockets on loopback: OPTIONS,
//! 400/483/501/405/481, INVITE auth and the placeholder answer, the B2BUA
//! INVITE hook with CANCEL, oversize messages, port-in-use errors.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use swbd::auth::digest::Algorithm;
use swbd::config::{Config, ListenAddr, Transport};
use swbd::endpoint::SipEndpoint;
use swbd::events::EventBus;
use swbd::sip::message::HeaderAccess;
use swbd::sip::{Name, SipMessage};
use swbd::transaction::ServerInviteEvent;
use switchboard_proto::support::shutdown;

#[tokio::test]
async fn options_is_answered_over_udp_and_tcp() {
    let s = start("options").await;
    let udp = UdpPeer::new(s.udp()).await;
    udp.send(&request(
        "OPTIONS",
        "sip:example.com",
        "UDP",
        udp.addr(),
        "mon",
        "x",
        "opt-1",
        1,
        "",
    ))
    .await;
    let r = udp.response(false).await;
    assert_eq!(r.code, 200);
    assert!(r.raw(&Name::ALLOW).expect("Allow").contains("REGISTER"));
    assert!(r.raw(&Name::ACCEPT).is_some());
    assert!(r.headers.contains(&Name::SUPPORTED));
    assert!(r.header_to().expect("To").tag().is_some(), "To tag added");

    let mut tcp = TcpPeer::connect(s.tcp()).await;
    let addr = tcp.addr();
    tcp.send(&request(
        "OPTIONS",
        "sip:example.com",
        "TCP",
        addr,
        "mon",
        "x",
        "opt-2",
        1,
        "",
    ))
    .await;
    assert_eq!(tcp.response(false).await.code, 200);
    // A second request on the same connection is answered on it too.
    tcp.send(&request(
        "OPTIONS",
        "sip:example.com",
        "TCP",
        addr,
        "mon",
        "x",
        "opt-3",
        2,
        "",
    ))
    .await;
    assert_eq!(tcp.response(false).await.code, 200);
}

#[tokio::test]
async fn max_forwards_zero_gets_483_and_unknown_method_501() {
    let s = start("483").await;
    let udp = UdpPeer::new(s.udp()).await;
    let msg = request(
        "OPTIONS",
        "sip:example.com",
        "UDP",
        udp.addr(),
        "a",
        "b",
        "mf0",
        1,
        "",
    )
    .replace("Max-Forwards: 70", "Max-Forwards: 0");
    udp.send(&msg).await;
    assert_eq!(udp.response(false).await.code, 483);

    udp.send(&request(
        "FROBNICATE",
        "sip:example.com",
        "UDP",
        udp.addr(),
        "a",
        "b",
        "unk",
        1,
        "",
    ))
    .await;
    let r = udp.response(false).await;
    assert_eq!(r.code, 501);
    assert!(r.raw(&Name::ALLOW).is_some());

    udp.send(&request(
        "SUBSCRIBE",
        "sip:example.com",
        "UDP",
        udp.addr(),
        "a",
        "b",
        "sub",
        1,
        "",
    ))
    .await;
    assert_eq!(udp.response(false).await.code, 405);

    udp.send(&request(
        "BYE",
        "sip:example.com",
        "UDP",
        udp.addr(),
        "a",
        "b",
        "bye",
        1,
        "",
    ))
    .await;
    assert_eq!(udp.response(false).await.code, 481);

    udp.send(&request(
        "OPTIONS",
        "sip:example.com",
        "UDP",
        udp.addr(),
        "a",
        "b",
        "req",
        1,
        "Require: 100rel, foo-ext\r\n",
    ))
    .await;
    let r = udp.response(false).await;
    assert_eq!(r.code, 420);
    // 100rel is supported (RFC 3262); only the unknown tag is named.
    assert_eq!(r.raw(&Name::UNSUPPORTED), Some("foo-ext"));
}

#[tokio::test]
async fn bad_requests_get_400_with_reason_or_are_dropped_and_counted() {
    let s = start("400").await;
    let udp = UdpPeer::new(s.udp()).await;
    let msg = request(
        "OPTIONS",
        "sip:example.com",
        "UDP",
        udp.addr(),
        "a",
        "b",
        "bad",
        1,
        "",
    )
    .replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
    udp.send(&msg).await;
    let r = udp.response(false).await;
    assert_eq!(r.code, 400);
    assert!(
        r.reason.contains("CSeq method"),
        "reason says why: {}",
        r.reason
    );

    let before = s.endpoint.counters().sip_parse_errors;
    udp.send("this is not SIP at all\r\n\r\n").await;
    udp.send("\u{0}\u{1}\u{2}garbage").await;
    assert!(
        udp.recv_within(Duration::from_millis(300)).await.is_none(),
        "garbage is not answered"
    );
    wait_for("parse errors counted", || {
        s.endpoint.counters().sip_parse_errors >= before + 2
    })
    .await;
    assert!(s.endpoint.counters().sip_dropped_unanswerable >= 2);

    // Still serving others afterwards.
    udp.send(&request(
        "OPTIONS",
        "sip:example.com",
        "UDP",
        udp.addr(),
        "a",
        "b",
        "ok",
        1,
        "",
    ))
    .await;
    assert_eq!(udp.response(false).await.code, 200);
}

#[tokio::test]
async fn oversize_udp_is_dropped_and_oversize_tcp_gets_513() {
    let s = start_with("oversize", |c| c.sip.max_message_size = 2000).await;
    let udp = UdpPeer::new(s.udp()).await;
    let big = format!("X-Pad: {}\r\n", "a".repeat(3000));
    udp.send(&request(
        "OPTIONS",
        "sip:example.com",
        "UDP",
        udp.addr(),
        "a",
        "b",
        "big",
        1,
        &big,
    ))
    .await;
    assert!(udp.recv_within(Duration::from_millis(300)).await.is_none());
    wait_for("oversize counted", || {
        s.endpoint.counters().oversize_dropped >= 1
    })
    .await;

    let mut tcp = TcpPeer::connect(s.tcp()).await;
    let addr = tcp.addr();
    let msg = request(
        "OPTIONS",
        "sip:example.com",
        "TCP",
        addr,
        "a",
        "b",
        "bigtcp",
        1,
        "",
    )
    .replace("Content-Length: 0", "Content-Length: 50000");
    tcp.send(&msg).await;
    let r = tcp.response(false).await;
    assert_eq!(r.code, 513);
    assert!(tcp.recv_within(WAIT).await.is_none(), "connection closed");
}

#[tokio::test]
async fn invite_is_challenged_then_answered_480_without_b2bua() {
    let s = start("invite").await;
    let udp = UdpPeer::new(s.udp()).await;
    let inv = request(
        "INVITE",
        "sip:bob@example.com",
        "UDP",
        udp.addr(),
        "alice",
        "bob",
        "inv-1",
        1,
        "",
    );
    udp.send(&inv).await;
    // The challenge is the first and only answer: no 100 Trying, no
    // transaction (the stateless front door).
    let r = udp.response(false).await;
    assert_eq!(r.code, 407);
    assert_eq!(
        r.raw_values(&Name::PROXY_AUTHENTICATE).count(),
        2,
        "SHA-256 and MD5"
    );
    let (realm, nonce) = challenge(&r, "SHA-256");

    let auth = authorization(
        "Proxy-Authorization",
        Algorithm::Sha256,
        &realm,
        &nonce,
        "alice",
        "secret-a",
        "INVITE",
        "sip:bob@example.com",
        1,
    );
    let inv2 = request(
        "INVITE",
        "sip:bob@example.com",
        "UDP",
        udp.addr(),
        "alice",
        "bob",
        "inv-1",
        2,
        &auth,
    );
    udp.send(&inv2).await;
    let r = udp.response(true).await;
    assert_eq!(r.code, 480);
    assert!(r.reason.contains("no B2BUA"));
}

#[tokio::test]
async fn invite_handed_to_b2bua_with_provisional_resend_and_cancel() {
    let s = start_with("b2bua", |c| c.auth.enabled = false).await;
    let mut invites = s.endpoint.take_invites().expect("first take");
    assert!(s.endpoint.take_invites().is_none());
    let udp = UdpPeer::new(s.udp()).await;
    let inv = request(
        "INVITE",
        "sip:bob@example.com",
        "UDP",
        udp.addr(),
        "alice",
        "bob",
        "inv-b",
        1,
        "",
    );
    udp.send(&inv).await;
    assert_eq!(udp.response(false).await.code, 100);

    let mut incoming = tokio::time::timeout(WAIT, invites.recv())
        .await
        .expect("in time")
        .expect("an INVITE");
    assert_eq!(
        incoming.principal,
        Some(swbd::auth::Principal::Unverified),
        "auth is off: nobody is verified"
    );
    let tx = &mut incoming.transaction;
    tx.respond(tx.response(180, "Ringing")).expect("180");
    assert_eq!(udp.response(false).await.code, 180);

    // A retransmitted INVITE gets the latest provisional again.
    udp.send(&inv).await;
    assert_eq!(udp.response(false).await.code, 180);

    // CANCEL with the same branch.
    let via = inv.lines().find(|l| l.starts_with("Via:")).expect("via");
    let from = inv.lines().find(|l| l.starts_with("From:")).expect("from");
    let cancel = format!(
        "CANCEL sip:bob@example.com SIP/2.0\r\n{via}\r\nMax-Forwards: 70\r\n{from}\r\nTo: <sip:bob@example.com>\r\nCall-ID: inv-b\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    );
    udp.send(&cancel).await;
    let r = udp.response(false).await;
    assert_eq!(
        (r.code, r.cseq().expect("cseq").method.to_string()),
        (200, "CANCEL".into())
    );
    let ev = tokio::time::timeout(WAIT, tx.next_event())
        .await
        .expect("in time");
    assert!(
        matches!(ev, Some(ServerInviteEvent::Cancelled(_))),
        "{ev:?}"
    );
    tx.respond(tx.response(487, "Request Terminated"))
        .expect("487");
    let r = udp.response(false).await;
    assert_eq!(r.code, 487);
    // ACK for the 487 is absorbed by the transaction.
    let to = r.raw(&Name::TO).expect("to");
    let ack = format!(
        "ACK sip:bob@example.com SIP/2.0\r\n{via}\r\nMax-Forwards: 70\r\n{from}\r\nTo: {to}\r\nCall-ID: inv-b\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    udp.send(&ack).await;
    assert!(
        udp.recv_within(Duration::from_millis(700)).await.is_none(),
        "no retransmission after ACK"
    );
}

#[tokio::test]
async fn invite_2xx_is_retransmitted_until_ack() {
    let s = start_with("2xx", |c| {
        c.auth.enabled = false;
        c.sip.timers.t1_ms = 100;
        c.sip.timers.t2_ms = 400;
    })
    .await;
    let mut invites = s.endpoint.take_invites().expect("take");
    let mut tcp = TcpPeer::connect(s.tcp()).await;
    let addr = tcp.addr();
    let inv = request(
        "INVITE",
        "sip:bob@example.com",
        "TCP",
        addr,
        "alice",
        "bob",
        "inv-2xx",
        7,
        "",
    );
    tcp.send(&inv).await;
    let mut incoming = tokio::time::timeout(WAIT, invites.recv())
        .await
        .expect("in time")
        .expect("invite");
    let tx = &mut incoming.transaction;
    tx.respond(tx.response(200, "OK")).expect("200");
    let first = tcp.response(true).await;
    assert_eq!(first.code, 200);
    let again = tcp.response(true).await;
    assert_eq!(again.code, 200, "2xx retransmitted before the ACK");
    let to = first.raw(&Name::TO).expect("to");
    let from = inv.lines().find(|l| l.starts_with("From:")).expect("from");
    let ack = format!(
        "ACK sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TCP {addr};branch=z9hG4bKack2xx\r\nMax-Forwards: 70\r\n{from}\r\nTo: {to}\r\nCall-ID: inv-2xx\r\nCSeq: 7 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    tcp.send(&ack).await;
    let ev = tokio::time::timeout(WAIT, tx.next_event())
        .await
        .expect("in time");
    assert!(matches!(ev, Some(ServerInviteEvent::Ack(_))), "{ev:?}");
}

#[tokio::test]
async fn port_in_use_is_a_clear_error() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let mut c = Config::default();
    c.sip.listen = vec![ListenAddr {
        transport: Transport::Udp,
        addr,
    }];
    let (_t, sd) = shutdown::channel();
    let err = SipEndpoint::start(Arc::new(c), EventBus::new(), sd)
        .await
        .expect_err("port in use");
    assert_eq!(
        err.to_string(),
        format!("cannot listen on udp:{addr}: address already in use")
    );
}

#[tokio::test]
async fn ipv6_loopback_works_when_available() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipping: no IPv6 loopback on this host");
        return;
    }
    let s = start_with("v6", |c| {
        c.sip.listen = vec![
            "udp:[::1]:0".parse().expect("listen"),
            "tcp:[::1]:0".parse().expect("listen"),
        ];
    })
    .await;
    let udp = UdpPeer::bind("[::1]:0", s.udp()).await;
    udp.send(&request(
        "OPTIONS",
        "sip:[::1]",
        "UDP",
        udp.addr(),
        "a",
        "b",
        "v6",
        1,
        "",
    ))
    .await;
    let r = udp.response(false).await;
    assert_eq!(r.code, 200);
    let mut tcp = TcpPeer::connect(s.tcp()).await;
    let a = tcp.addr();
    tcp.send(&request(
        "OPTIONS",
        "sip:[::1]",
        "TCP",
        a,
        "a",
        "b",
        "v6t",
        1,
        "",
    ))
    .await;
    assert_eq!(tcp.response(false).await.code, 200);
}

#[tokio::test]
async fn client_transaction_gets_responses_in_order() {
    // swbd as UAC towards a scripted UAS on UDP.
    let s = start("uac").await;
    let uas = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let uas_addr = uas.local_addr().expect("addr");
    let mut req = swbd::sip::Request::new(
        swbd::sip::Method::Invite,
        swbd::sip::Uri::parse(&format!("sip:bob@{uas_addr}")).expect("uri"),
    );
    req.headers
        .insert(Name::FROM, "<sip:swbd@example.com>;tag=abc");
    req.headers.insert(Name::TO, "<sip:bob@example.com>");
    req.headers.insert(Name::CALL_ID, "uac-1");
    req.headers.insert(Name::CSEQ, "1 INVITE");
    let target = swbd::transport::Target {
        transport: Transport::Udp,
        remote: uas_addr,
        local: None,
    };
    let mut ctx = s
        .endpoint
        .transactions()
        .send_invite(req, target)
        .await
        .expect("sent");
    let mut buf = vec![0u8; 65535];
    let (n, from) = uas.recv_from(&mut buf).await.expect("INVITE arrives");
    let SipMessage::Request(inv) = SipMessage::parse(&buf[..n], true).expect("parses") else {
        panic!("not a request")
    };
    // 180 and 200 back to back: both must come out, in order.
    for code in [180u16, 200] {
        let mut resp = swbd::sip::response::make_response(&inv, code, "", Some("uas"));
        resp.headers
            .insert(Name::CONTACT, format!("<sip:bob@{uas_addr}>"));
        uas.send_to(&resp.to_bytes(), from).await.expect("send");
    }
    assert_eq!(ctx.next_response().await.expect("180").code, 180);
    assert_eq!(ctx.next_response().await.expect("200").code, 200);
}

#[tokio::test]
async fn idle_tcp_connections_are_closed() {
    let s = start_with("idle", |c| c.sip.tcp_idle_timeout_secs = 1).await;
    let mut tcp = TcpPeer::connect(s.tcp()).await;
    let addr = tcp.addr();
    tcp.send(&request(
        "OPTIONS",
        "sip:example.com",
        "TCP",
        addr,
        "a",
        "b",
        "idle",
        1,
        "",
    ))
    .await;
    assert_eq!(tcp.response(false).await.code, 200);
    assert!(
        tcp.recv_within(WAIT).await.is_none(),
        "the idle connection is closed by swbd"
    );
}

#[tokio::test]
async fn oversize_udp_request_we_send_goes_over_tcp() {
    // RFC 3261 §18.1.1: a request above 1300 bytes is sent over TCP.
    let s = start("udp2tcp").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let remote = listener.local_addr().expect("addr");
    let mut req = swbd::sip::Request::new(
        swbd::sip::Method::Message,
        swbd::sip::Uri::parse(&format!("sip:bob@{remote}")).expect("uri"),
    );
    req.headers
        .insert(Name::FROM, "<sip:swbd@example.com>;tag=big");
    req.headers.insert(Name::TO, "<sip:bob@example.com>");
    req.headers.insert(Name::CALL_ID, "big-1");
    req.headers.insert(Name::CSEQ, "1 MESSAGE");
    req.headers.insert(Name::CONTENT_TYPE, "text/plain");
    req.body = bytes::Bytes::from(vec![b'x'; 2000]);
    let target = swbd::transport::Target {
        transport: Transport::Udp,
        remote,
        local: None,
    };
    let _ctx = s
        .endpoint
        .transactions()
        .send_request(req, target)
        .await
        .expect("sent");
    let (stream, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .expect("connected in time")
        .expect("accept");
    let mut peer = TcpPeer {
        stream,
        buf: Default::default(),
    };
    let Some(SipMessage::Request(got)) = peer.recv_within(WAIT).await else {
        panic!("no request over TCP")
    };
    assert_eq!(got.body.len(), 2000);
    assert!(got.top_via().expect("via").transport() == "TCP");
}

#[tokio::test]
async fn tcp_connections_beyond_the_limit_are_closed_and_counted() {
    let s = start_with("tcplimit", |c| c.sip.tcp_max_connections = 2).await;
    let mut peers = Vec::new();
    for (i, call) in ["l1", "l2"].into_iter().enumerate() {
        let mut tcp = TcpPeer::connect(s.tcp()).await;
        let addr = tcp.addr();
        tcp.send(&request(
            "OPTIONS",
            "sip:example.com",
            "TCP",
            addr,
            "a",
            "b",
            call,
            i as u32 + 1,
            "",
        ))
        .await;
        assert_eq!(tcp.response(false).await.code, 200, "connection {i} served");
        peers.push(tcp);
    }
    let mut third = tokio::net::TcpStream::connect(s.tcp())
        .await
        .expect("connect");
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut third, &mut byte))
        .await
        .expect("swbd closes the third connection instead of keeping it open");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed, not served: {read:?}"
    );
    wait_for("refusal counted", || s.endpoint.counters().tcp_refused >= 1).await;
    // The open ones still work.
    let addr = peers[0].addr();
    peers[0]
        .send(&request(
            "OPTIONS",
            "sip:example.com",
            "TCP",
            addr,
            "a",
            "b",
            "l1b",
            3,
            "",
        ))
        .await;
    assert_eq!(peers[0].response(false).await.code, 200);
}
