//! Early shedding (issues #14, #17; `swbd/src/transport/shed.rs`): while
//! overload control refuses new calls, a well-formed new INVITE over UDP is
//! answered `503` + `Retry-After` from its raw head in the receive loop,
//! and the ACK of that `503` is dropped there; anything odd goes the
//! normal way (parsed, answered cleanly or dropped, never reflected), and
//! calls in progress keep being served.
//!
//! swbd + swrtp as real processes, peers over real UDP. What makes swbd
//! refuse does not depend on the machine's speed: `max_calls_in_setup: 1`
//! and one call held ringing, with the delay law out of reach.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::net::SocketAddr;

use support::raw::{RawPeer, fresh};
use support::ua::{OutCall, Ua, sdp};
use support::{Options, System, eventually, free_tcp_port};
use swbd::sip::message::HeaderAccess;
use swbd::sip::{Name, SipMessage};
use switchboard_proto::admin::v1 as pb;

/// Refusing stays on while one call rings: the setup cap is 1. One UDP
/// task reads and handles everything (`udp_workers: 1`), so swbd answers
/// one peer's messages in the order they came (an OPTIONS answered means
/// everything sent before it was handled).
fn refusing(metrics: u16) -> Options {
    Options {
        sip_extra: "  udp_receivers: 1\n  udp_workers: 1\n  overload: { max_calls_in_setup: 1, target_delay_ms: 30000, max_delay_ms: 60000, retry_after_secs: 3 }\n".into(),
        extra_config: format!("metrics: {{ listen: \"127.0.0.1:{metrics}\" }}\n"),
        ..Options::default()
    }
}

/// A counter's value off swbd's `/metrics`.
fn metric(addr: SocketAddr, name: &str) -> u64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("read");
    body.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix("_total ").or(rest.strip_prefix(' ')))
        })
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

async fn overload_status(sys: &System) -> pb::OverloadStatus {
    sys.status()
        .await
        .overload
        .expect("GetStatus carries overload")
}

/// One call ringing (the setup cap reached); Alice's call and Bob's INVITE.
async fn hold_one_ringing(
    sys: &System,
    alice: &mut Ua,
    bob: &mut Ua,
) -> (OutCall, swbd::sip::Request) {
    let call = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    bob.reply(&inv, 180, "Ringing", Some("ring"), None).await;
    eventually(10, "one call in setup", || async {
        (overload_status(sys).await.calls_in_setup == 1).then_some(())
    })
    .await;
    (call, inv)
}

/// End the ringing call: CANCEL, 487, and nothing left.
async fn end_ringing(
    sys: &System,
    alice: &mut Ua,
    bob: &mut Ua,
    ringing: (OutCall, swbd::sip::Request),
) {
    let (mut call, inv) = ringing;
    assert_eq!(alice.cancel(&call).await.code, 200, "CANCEL answered");
    let cancel = bob.request("CANCEL").await;
    bob.reply(&cancel, 200, "OK", None, None).await;
    bob.reply(&inv, 487, "Request Terminated", None, None).await;
    let _ack = bob.request("ACK").await;
    assert_eq!(alice.final_response(&mut call).await.code, 487);
    sys.assert_clean().await;
}

/// An OPTIONS from `peer`, then every datagram up to its `200`: what came
/// before it is what swbd sent `peer` for the messages sent before it (one
/// socket, one receive loop, loopback: in order).
async fn until_options_answered(peer: &RawPeer) -> Vec<Vec<u8>> {
    let cid = format!("ping-{}", fresh());
    peer.send(&format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{b};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:ping@127.0.0.1>;tag={t}\r\nTo: <sip:127.0.0.1>\r\n\
         Call-ID: {cid}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        me = peer.addr,
        b = fresh(),
        t = fresh(),
    ))
    .await;
    let mut before = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, _) = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            peer.sock.recv_from(&mut buf),
        )
        .await
        .expect("the OPTIONS is answered within 10 s")
        .expect("recv");
        let data = buf.get(..n).unwrap_or_default().to_vec();
        if let Ok(SipMessage::Response(r)) = SipMessage::parse(&data, true)
            && r.call_id().is_ok_and(|c| c == cid)
        {
            assert_eq!(r.code, 200, "OPTIONS answered");
            return before;
        }
        before.push(data);
    }
}

#[tokio::test]
async fn a_burst_gets_only_early_503s_and_their_acks_are_absorbed() {
    const BURST: usize = 20;
    let port = free_tcp_port();
    let metrics = SocketAddr::from(([127, 0, 0, 1], port));
    let sys = System::start(refusing(port)).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);
    let ringing = hold_one_ringing(&sys, &mut alice, &mut bob).await;

    let peer = RawPeer::bind("127.0.0.1", sys.sip).await;
    let invites: Vec<String> = (0..BURST)
        .map(|_| {
            peer.invite(
                "sip:1002@127.0.0.1",
                "<sip:caller@127.0.0.1>",
                &format!("burst-{}", fresh()),
                1,
                "",
            )
        })
        .collect();
    for invite in &invites {
        peer.send(invite).await;
    }
    // Exactly one answer per INVITE, each a 503 with Retry-After (no 100).
    let answers = until_options_answered(&peer).await;
    assert_eq!(answers.len(), BURST, "one answer per INVITE");
    let mut tags = std::collections::BTreeSet::new();
    for (invite, data) in invites.iter().zip(&answers) {
        let Ok(SipMessage::Response(r)) = SipMessage::parse(data, true) else {
            panic!("a response: {}", String::from_utf8_lossy(data));
        };
        assert_eq!(r.code, 503, "{}", String::from_utf8_lossy(data));
        assert_eq!(r.raw(&Name::RETRY_AFTER).map(str::trim), Some("3"));
        let Ok(SipMessage::Request(inv)) = SipMessage::parse(invite.as_bytes(), true) else {
            panic!("our INVITE parses");
        };
        assert_eq!(
            r.call_id().ok(),
            inv.call_id().ok(),
            "in order, Call-ID copied"
        );
        assert_eq!(r.raw(&Name::FROM), inv.raw(&Name::FROM), "From copied");
        assert_eq!(r.cseq().expect("CSeq").number, 1);
        // RFC 3581: the top Via says where the request came from.
        let via = r.raw(&Name::VIA).expect("Via");
        assert!(
            via.contains(&format!(";rport={}", peer.addr.port()))
                && via.contains(";received=127.0.0.1"),
            "{via}"
        );
        let to = r.header_to().expect("To");
        tags.insert(to.tag().expect("a To tag").to_string());
    }
    assert_eq!(tags.len(), 1, "one To tag for every early 503: {tags:?}");
    assert_eq!(
        metric(metrics, "swbd_sip_overload_early_shed"),
        BURST as u64
    );
    assert_eq!(
        overload_status(&sys).await.invites_refused,
        BURST as u64,
        "each refusal counted once"
    );

    // Their ACKs are absorbed: no answer, counted, no transaction.
    for (invite, data) in invites.iter().zip(&answers) {
        let Ok(SipMessage::Response(r)) = SipMessage::parse(data, true) else {
            unreachable!()
        };
        peer.ack_failure(invite, &r).await;
    }
    let after_acks = until_options_answered(&peer).await;
    assert!(
        after_acks.is_empty(),
        "nothing answers an ACK: {after_acks:?}"
    );
    assert_eq!(
        metric(metrics, "swbd_sip_overload_shed_acks_absorbed"),
        BURST as u64,
        "every ACK dropped before the parse"
    );
    assert_eq!(
        overload_status(&sys).await.calls_in_setup,
        1,
        "only the ringing call"
    );

    end_ringing(&sys, &mut alice, &mut bob, ringing).await;
}

#[tokio::test]
async fn odd_invites_during_overload_go_the_normal_way_and_are_never_reflected() {
    let port = free_tcp_port();
    let metrics = SocketAddr::from(([127, 0, 0, 1], port));
    let sys = System::start(refusing(port)).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);
    let ringing = hold_one_ringing(&sys, &mut alice, &mut bob).await;

    let peer = RawPeer::bind("127.0.0.1", sys.sip).await;
    let good = |call_id: &str| {
        peer.invite(
            "sip:1002@127.0.0.1",
            "\"Eve\" <sip:eve@127.0.0.1>",
            call_id,
            1,
            "",
        )
    };
    // Each: the INVITE, and bytes that must never come back.
    let cases: Vec<(&str, String, &[u8])> = vec![
        ("no rport", good("odd-a").replace(";rport\r\n", "\r\n"), b""),
        (
            "a bell in From",
            good("odd-b").replace("\"Eve\"", "\"E\x07ve\""),
            b"\x07",
        ),
        (
            "a bare CR inside Call-ID",
            good("odd-c").replace("Call-ID: odd-c", "Call-ID: odd-c\rX-Injected: 1"),
            // The normal path may echo the value cleaned; never as a line.
            b"\nX-Injected",
        ),
        (
            "a folded header",
            good("odd-d").replace(
                "Max-Forwards: 70\r\n",
                "Max-Forwards: 70\r\n X-Folded: 1\r\n",
            ),
            b"X-Folded",
        ),
        (
            "no Call-ID",
            good("odd-e").replace("Call-ID: odd-e\r\n", ""),
            b"",
        ),
        (
            "a To tag of no dialog",
            good("odd-f").replace(
                "To: <sip:1002@127.0.0.1>",
                "To: <sip:1002@127.0.0.1>;tag=nodialog",
            ),
            b"",
        ),
        (
            // Answered by the normal path (which copies the Via, RFC 3261
            // §8.2.6.2), not here.
            "a Via the early path does not answer",
            good("odd-g").replace(";rport\r\n", ";rport;maddr=192.0.2.1\r\n"),
            b"",
        ),
    ];
    for (what, invite, never) in &cases {
        let mut bytes = invite.clone().into_bytes();
        if *what == "a bell in From" {
            // And a byte that is not UTF-8.
            bytes = invite.replace("E\x07ve", "E\x07v\u{1}e").into_bytes();
            if let Some(b) = bytes.iter_mut().find(|b| **b == 1) {
                *b = 0xff;
            }
        }
        peer.sock.send_to(&bytes, sys.sip).await.expect("send");
        let answers = until_options_answered(&peer).await;
        assert!(
            answers.len() <= 1,
            "{what}: at most one answer: {answers:?}"
        );
        for data in &answers {
            let text = String::from_utf8_lossy(data);
            let code: u16 = text
                .strip_prefix("SIP/2.0 ")
                .and_then(|t| t.get(..3))
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("{what}: a response: {text}"));
            assert!(
                (400..500).contains(&code) || code == 503,
                "{what}: a clean 4xx or 503: {text}"
            );
            assert!(!data.contains(&0xff), "{what}: a non-UTF-8 byte reflected");
            if !never.is_empty() {
                assert!(
                    !data.windows(never.len()).any(|w| w == *never),
                    "{what}: reflected: {text}"
                );
            }
        }
    }
    assert_eq!(
        metric(metrics, "swbd_sip_overload_early_shed"),
        0,
        "none of these was answered early"
    );
    end_ringing(&sys, &mut alice, &mut bob, ringing).await;
}

#[tokio::test]
async fn a_call_up_is_served_while_new_invites_are_shed_early() {
    let port = free_tcp_port();
    let metrics = SocketAddr::from(([127, 0, 0, 1], port));
    let sys = System::start(refusing(port)).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);

    // A call up, then one ringing (the cap reached).
    let mut up = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    bob.reply(&inv, 180, "Ringing", Some("up"), None).await;
    bob.reply(&inv, 200, "OK", Some("up"), Some(&sdp(bob.rtp_port)))
        .await;
    let _ = bob.request("ACK").await;
    assert_eq!(alice.final_response(&mut up).await.code, 200);
    alice.ack(&up).await;
    let ringing = hold_one_ringing(&sys, &mut alice, &mut bob).await;

    // A new INVITE is shed early; the call up is served meanwhile.
    let peer = RawPeer::bind("127.0.0.1", sys.sip).await;
    peer.send(&peer.invite(
        "sip:1002@127.0.0.1",
        "<sip:caller@127.0.0.1>",
        &format!("shed-{}", fresh()),
        1,
        "",
    ))
    .await;
    assert_eq!(peer.response(false).await.code, 503);
    assert_eq!(metric(metrics, "swbd_sip_overload_early_shed"), 1);
    assert_eq!(alice.in_dialog_request("OPTIONS", &up).await, 200);
    assert_eq!(alice.bye(&up).await.code, 200, "BYE of the call up");
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    end_ringing(&sys, &mut alice, &mut bob, ringing).await;
}

#[tokio::test]
async fn a_retransmitted_invite_of_an_admitted_call_is_not_refused() {
    let port = free_tcp_port();
    let metrics = SocketAddr::from(([127, 0, 0, 1], port));
    let sys = System::start(refusing(port)).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);

    // The peer's call is admitted and rings: the setup cap is reached.
    let peer = RawPeer::bind("127.0.0.1", sys.sip).await;
    let invite = peer.invite(
        "sip:1002@127.0.0.1",
        "<sip:caller@127.0.0.1>",
        &format!("kept-{}", fresh()),
        1,
        "",
    );
    peer.send(&invite).await;
    let inv = bob.request("INVITE").await;
    bob.reply(&inv, 180, "Ringing", Some("ring"), None).await;
    eventually(10, "one call in setup", || async {
        (overload_status(&sys).await.calls_in_setup == 1).then_some(())
    })
    .await;

    // Its INVITE again (a retransmission: the caller missed the 100 and
    // the 180), then a new INVITE: the retransmission goes to its
    // transaction (a provisional answer at most, never a refusal) while the
    // new one is refused early.
    peer.send(&invite).await;
    let new_call = format!("new-{}", fresh());
    peer.send(&peer.invite(
        "sip:1002@127.0.0.1",
        "<sip:caller@127.0.0.1>",
        &new_call,
        1,
        "",
    ))
    .await;
    let kept = inv_call_id(&invite);
    loop {
        let r = peer.response(false).await;
        let cid = r.call_id().expect("Call-ID").to_string();
        if cid == kept {
            assert!(
                r.code < 200,
                "the admitted INVITE is not refused: {}",
                r.code
            );
            continue;
        }
        assert_eq!(cid, new_call);
        assert_eq!(r.code, 503, "the new INVITE is refused");
        break;
    }
    assert_eq!(metric(metrics, "swbd_sip_overload_early_shed"), 1);

    // The callee is busy: the call ends, nothing is left.
    bob.reply(&inv, 486, "Busy Here", Some("ring"), None).await;
    let _ack = bob.request("ACK").await;
    let busy = loop {
        let r = peer.response(true).await;
        if r.code >= 200 && r.call_id().is_ok_and(|c| c == kept) {
            break r;
        }
    };
    assert!(busy.code >= 400, "the callee's refusal: {}", busy.code);
    peer.ack_failure(&invite, &busy).await;
    sys.assert_clean().await;
}

/// The Call-ID of a request's text.
fn inv_call_id(text: &str) -> String {
    let Ok(SipMessage::Request(r)) = SipMessage::parse(text.as_bytes(), true) else {
        panic!("a request");
    };
    r.call_id().expect("Call-ID").to_string()
}
