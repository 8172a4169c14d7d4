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
