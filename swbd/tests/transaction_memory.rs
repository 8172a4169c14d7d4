//! What a finished call leaves in the transaction tables for the RFC 3261
//! windows (issue #14): after INVITE -> 200 -> ACK and BYE -> response, the
//! INVITE is a bare key until Timer L and the BYE keeps its last response
//! until Timer J; no task, no INVITE, no `Arc<State>` graph. Measured by
//! reading the tables (`TransactionLayer::retained`), not RSS.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod common;

use std::time::Duration;

use common::*;
use swbd::sip::message::HeaderAccess;
use swbd::sip::{Name, SipMessage};
use tokio::net::UdpSocket;

const CALLS: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_call_keeps_under_a_kibibyte() {
    let s = start_with("mem", |c| c.auth.enabled = false).await;
    let server = s.udp();
    let mut invites = s.endpoint.take_invites().expect("invites");
    tokio::spawn(async move {
        while let Some(inc) = invites.recv().await {
            let tx = inc.transaction;
            let resp = tx.response(200, "OK");
            let _ = tx.respond(resp);
            tokio::spawn(async move {
                let mut tx = tx;
                while tx.next_event().await.is_some() {}
            });
        }
    });
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let me = sock.local_addr().expect("addr");
    let mut buf = vec![0u8; 65536];
    let before = s.endpoint.transactions().retained();
    for i in 0..CALLS {
        let cid = format!("mem-{i}-{}", std::process::id());
        let inv = format!(
            "INVITE sip:bob@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKi{cid};rport\r\n\
             Max-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@example.com>;tag=a{cid}\r\n\
             To: <sip:bob@example.com>\r\nCall-ID: {cid}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:alice@{me}>\r\nUser-Agent: a phone with a long name/1.2.3\r\n\
             Content-Length: 0\r\n\r\n"
        );
        sock.send_to(inv.as_bytes(), server).await.expect("send");
        let ok = loop {
            let (n, _) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf))
                .await
                .expect("answered")
                .expect("recv");
            if let Ok(SipMessage::Response(r)) = SipMessage::parse(&buf[..n], true)
                && r.code == 200
            {
                break r;
            }
        };
        let to = ok.raw(&Name::TO).expect("to").to_string();
        let ack = format!(
            "ACK sip:bob@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKa{cid};rport\r\n\
             Max-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@example.com>;tag=a{cid}\r\nTo: {to}\r\n\
             Call-ID: {cid}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        );
        sock.send_to(ack.as_bytes(), server).await.expect("ack");
        let bye = format!(
            "BYE sip:bob@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKb{cid};rport\r\n\
             Max-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@example.com>;tag=a{cid}\r\nTo: {to}\r\n\
             Call-ID: {cid}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
        );
        sock.send_to(bye.as_bytes(), server).await.expect("bye");
        loop {
            let (n, _) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf))
                .await
                .expect("BYE answered")
                .expect("recv");
            if let Ok(SipMessage::Response(r)) = SipMessage::parse(&buf[..n], true)
                && r.cseq().is_ok_and(|c| c.method.to_string() == "BYE")
            {
                break;
            }
        }
    }
    // Every INVITE task has seen its ACK and gone.
    let mut after = s.endpoint.transactions().retained();
    for _ in 0..50 {
        if after.live_invites == before.live_invites && after.absorbed == CALLS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = s.endpoint.transactions().retained();
    }
    println!("after {CALLS} finished calls: {after:?}");
    assert_eq!(after.live_invites, 0, "no INVITE task outlives its ACK");
    assert_eq!(after.absorbed, CALLS, "one key per INVITE until Timer L");
    assert_eq!(after.non_invite, CALLS, "one BYE per call until Timer J");
    assert_eq!(after.accepted, 0);
    let per_call = (after.bytes - before.bytes) / CALLS;
    println!("retained per finished call: {per_call} bytes");
    assert!(
        per_call < 1024,
        "{per_call} bytes retained per finished call"
    );

    // A retransmitted INVITE after the ACK is absorbed: no answer.
    let cid = format!("mem-0-{}", std::process::id());
    let again = format!(
        "INVITE sip:bob@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKi{cid};rport\r\n\
         Max-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@example.com>;tag=a{cid}\r\n\
         To: <sip:bob@example.com>\r\nCall-ID: {cid}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:alice@{me}>\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(again.as_bytes(), server).await.expect("send");
    let got = tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await;
    assert!(
        got.is_err(),
        "an absorbed INVITE retransmission gets no answer"
    );
}

/// What the front door answers keeps nothing: OPTIONS pings, BYEs for no
/// dialog, challenged INVITEs and REGISTERs, unknown methods.
#[tokio::test]
async fn stateless_answers_keep_no_transaction() {
    let s = start("stateless").await;
    let server = s.udp();
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let me = sock.local_addr().expect("addr");
    let mut buf = vec![0u8; 65536];
    let mut codes = Vec::new();
    for (i, method) in ["OPTIONS", "BYE", "INVITE", "REGISTER", "FOO"]
        .iter()
        .cycle()
        .take(200)
        .enumerate()
    {
        let msg = format!(
            "{method} sip:x@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKs{i};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=f{i}\r\nTo: <sip:x@example.com>\r\n\
             Call-ID: st-{i}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        );
        sock.send_to(msg.as_bytes(), server).await.expect("send");
        let (n, _) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf))
            .await
            .expect("answered")
            .expect("recv");
        let Ok(SipMessage::Response(r)) = SipMessage::parse(&buf[..n], true) else {
            panic!("not a response")
        };
        codes.push(r.code);
    }
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes, vec![200, 401, 407, 481, 501]);
    assert_eq!(
        s.endpoint.transactions().live_transactions(),
        (0, 0),
        "nothing kept for any of them"
    );
}

/// A B-leg's INVITE client transaction in the Accepted state lives until
/// Timer M only while the TU listens: once the call drops its
/// `AcceptedInvite`, nothing is kept for the rest of the 32 s.
#[tokio::test]
async fn an_accepted_client_invite_ends_when_the_call_lets_go() {
    use swbd::config::Transport;
    let s = start("uacmem").await;
    let uas = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let uas_addr = uas.local_addr().expect("addr");
    let mut req = swbd::sip::Request::new(
        swbd::sip::Method::Invite,
        swbd::sip::Uri::parse(&format!("sip:bob@{uas_addr}")).expect("uri"),
    );
    req.headers
        .insert(Name::FROM, "<sip:swbd@example.com>;tag=abc");
    req.headers.insert(Name::TO, "<sip:bob@example.com>");
    req.headers.insert(Name::CALL_ID, "uacmem-1");
    req.headers.insert(Name::CSEQ, "1 INVITE");
    let target = swbd::transport::Target {
        transport: Transport::Udp,
        remote: uas_addr,
        local: None,
    };
    let layer = s.endpoint.transactions();
    let mut ctx = layer.send_invite(req, target).await.expect("sent");
    let mut buf = vec![0u8; 65535];
    let (n, from) = uas.recv_from(&mut buf).await.expect("INVITE arrives");
    let SipMessage::Request(inv) = SipMessage::parse(&buf[..n], true).expect("parses") else {
        panic!("not a request")
    };
    let ok = swbd::sip::response::make_response(&inv, 200, "", Some("uas"));
    uas.send_to(&ok.to_bytes(), from).await.expect("send");
    assert_eq!(ctx.next_response().await.expect("200").code, 200);
    let accepted = ctx.into_accepted();
    assert_eq!(
        layer.live_transactions().1,
        1,
        "Accepted, waiting for Timer M"
    );
    drop(accepted);
    let mut clients = layer.live_transactions().1;
    for _ in 0..100 {
        if clients == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        clients = layer.live_transactions().1;
    }
    assert_eq!(clients, 0, "gone long before Timer M once the TU let go");
}
