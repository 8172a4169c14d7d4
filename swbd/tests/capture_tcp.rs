//! SIP capture over TCP, on a real in-process endpoint: the addresses kept
//! for each message are the connection's own, both ways, so a pcap shows
//! one TCP stream per connection. For a connection a phone opened, that is
//! swbd's listen address; for one swbd opened, its ephemeral local port
//! (known before the first message goes out, not the listen port).
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod common;

use std::net::SocketAddr;

use common::*;
use swbd::capture::store::Message;
use swbd::config::Transport;
use swbd::sip::{Name, Request};
use swbd::transport::Target;
use switchboard_proto::admin::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Read from `stream` until `want` SIP messages (by start line) came in;
/// returns their start lines.
async fn read_messages(stream: &mut TcpStream, want: usize) -> Vec<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        let starts: Vec<String> = text
            .split("\r\n\r\n")
            .filter(|m| m.starts_with("SIP/2.0 ") || m.contains(" SIP/2.0\r\n"))
            .map(|m| m.lines().next().unwrap_or_default().to_string())
            .collect();
        if starts.len() >= want {
            return starts;
        }
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("data within the wait")
            .expect("read");
        assert!(n > 0, "connection closed early; got {text:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn call(call_id: &str, sip_call_id: &str) -> pb::Call {
    pb::Call {
        call_id: call_id.into(),
        legs: vec![pb::Leg {
            sip_call_id: sip_call_id.into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Every message goes between `a` and `b`, over TCP.
fn between(messages: &[Message], a: SocketAddr, b: SocketAddr) {
    for m in messages {
        assert_eq!(m.transport, Transport::Tcp);
        let pair = (m.source, m.destination);
        assert!(
            pair == (a, b) || pair == (b, a),
            "{:?} -> {:?} is not between {a} and {b}: {}",
            m.source,
            m.destination,
            String::from_utf8_lossy(&m.raw)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_a_phone_opened_is_captured_with_its_addresses() {
    let s = start_with("cap-tcp-in", |c| c.auth.enabled = false).await;
    let mut phone = TcpStream::connect(s.tcp()).await.expect("connect");
    let me = phone.local_addr().expect("addr");
    let invite = format!(
        "INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bKtcpin1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>\r\n\
         Call-ID: tcp-in-1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{me};transport=tcp>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    phone.write_all(invite.as_bytes()).await.expect("send");
    // No B2BUA in this endpoint: 100 Trying, then 480.
    let got = read_messages(&mut phone, 2).await;
    assert!(got[1].starts_with("SIP/2.0 480"), "{got:?}");
    let capture = s.endpoint.capture();
    capture.claim(&call("c-in", "tcp-in-1"));
    let c = capture.get("c-in").expect("captured");
    let starts: Vec<String> = c
        .messages
        .iter()
        .map(|m| {
            String::from_utf8_lossy(&m.raw)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        starts,
        [
            "INVITE sip:bob@127.0.0.1 SIP/2.0",
            "SIP/2.0 100 Trying",
            got[1].as_str()
        ],
        "{starts:?}"
    );
    assert!(c.messages[0].inbound && !c.messages[1].inbound);
    assert_eq!(
        c.messages[0].raw.as_ref(),
        invite.as_bytes(),
        "as on the wire"
    );
    between(&c.messages, me, s.tcp());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_swbd_opened_is_captured_with_its_ephemeral_port() {
    let s = start_with("cap-tcp-out", |c| c.auth.enabled = false).await;
    let callee = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let callee_addr = callee.local_addr().expect("addr");
    let mut invite = Request::new(
        swbd::sip::Method::Invite,
        swbd::sip::Uri::parse(&format!("sip:bob@{callee_addr};transport=tcp")).expect("uri"),
    );
    invite
        .headers
        .insert(Name::FROM, "<sip:swbd@127.0.0.1>;tag=s1");
    invite
        .headers
        .insert(Name::TO, format!("<sip:bob@{callee_addr}>"));
    invite.headers.insert(Name::CALL_ID, "tcp-out-1");
    invite.headers.insert(Name::CSEQ, "1 INVITE");
    let target = Target {
        transport: Transport::Tcp,
        remote: callee_addr,
        local: None,
    };
    let mut txn = s
        .endpoint
        .transactions()
        .send_invite(invite, target)
        .await
        .expect("sent");
    let (mut conn, swbd_side) = tokio::time::timeout(WAIT, callee.accept())
        .await
        .expect("swbd connects")
        .expect("accept");
    let got = read_messages(&mut conn, 1).await;
    assert!(got[0].starts_with("INVITE "), "{got:?}");
    // 486 over the same connection; swbd ACKs it there.
    let via = txn
        .request()
        .headers
        .get_raw(&Name::VIA)
        .next()
        .expect("Via")
        .to_string();
    let busy = format!(
        "SIP/2.0 486 Busy Here\r\nVia: {via}\r\nFrom: <sip:swbd@127.0.0.1>;tag=s1\r\n\
         To: <sip:bob@{callee_addr}>;tag=b1\r\nCall-ID: tcp-out-1\r\nCSeq: 1 INVITE\r\n\
         Content-Length: 0\r\n\r\n"
    );
    conn.write_all(busy.as_bytes()).await.expect("send 486");
    let final_code = loop {
        let r = tokio::time::timeout(WAIT, txn.next_response())
            .await
            .expect("a response")
            .expect("not closed");
        if r.code >= 200 {
            break r.code;
        }
    };
    assert_eq!(final_code, 486);
    let acked = read_messages(&mut conn, 1).await;
    assert!(acked[0].starts_with("ACK "), "{acked:?}");

    let capture = s.endpoint.capture();
    capture.claim(&call("c-out", "tcp-out-1"));
    let c = capture.get("c-out").expect("captured");
    assert_eq!(c.messages.len(), 3, "INVITE, 486, ACK");
    assert_ne!(swbd_side.port(), s.tcp().port(), "an ephemeral port");
    between(&c.messages, swbd_side, callee_addr);
}
