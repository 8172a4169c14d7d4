//! RFC 3262 §3 in the INVITE server transaction, on tokio's paused clock
//! (real loopback sockets, virtual time): a reliable provisional is
//! numbered and retransmitted from T1 doubling without T2's cap until its
//! PRACK, the INVITE is rejected `500` after 64*T1 without one, a PRACK
//! must name the provisional (`RAck`) and our To tag or it gets `481`, and
//! a 2xx waits for the PRACK of a provisional that carried SDP.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

use std::net::SocketAddr;
use std::time::Duration;

use swbd::config::SipConfig;
use swbd::sip::message::HeaderAccess;
use swbd::sip::{Name, Response, SipMessage};
use swbd::transaction::{
    IncomingRequest, ServerInviteEvent, ServerInviteTransaction, Timers, TransactionLayer,
};
use swbd::transport::{SipCounters, Transports};
use switchboard_proto::support::shutdown::{self, ShutdownTrigger};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

struct Harness {
    incoming: mpsc::UnboundedReceiver<IncomingRequest>,
    peer: UdpSocket,
    swbd: SocketAddr,
    _layer: TransactionLayer,
    _trigger: ShutdownTrigger,
}

async fn harness() -> Harness {
    let config = SipConfig {
        listen: vec!["udp:127.0.0.1:0".parse().expect("listen")],
        ..SipConfig::default()
    };
    let (trigger, sd) = shutdown::channel();
    let transports = Transports::bind(&config, std::sync::Arc::new(SipCounters::default()), sd)
        .await
        .expect("bind");
    let swbd = transports.local_addrs()[0].addr;
    let (layer, incoming) =
        TransactionLayer::new(transports.clone(), Timers::default(), "test".into());
    transports.start(layer.receiver());
    Harness {
        incoming,
        peer: UdpSocket::bind("127.0.0.1:0").await.expect("peer"),
        swbd,
        _layer: layer,
        _trigger: trigger,
    }
}

impl Harness {
    async fn recv(&self, wait: Duration) -> Option<(SipMessage, Instant)> {
        let mut buf = vec![0u8; 65535];
        let (n, _) = tokio::time::timeout(wait, self.peer.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some((
            SipMessage::parse(&buf[..n], true).expect("parses"),
            Instant::now(),
        ))
    }

    /// The next response, skipping `100 Trying`.
    async fn response(&self) -> (Response, Instant) {
        loop {
            match self.recv(Duration::from_secs(60)).await {
                Some((SipMessage::Response(r), _)) if r.code == 100 => continue,
                Some((SipMessage::Response(r), at)) => return (r, at),
                Some((SipMessage::Request(r), _)) => panic!("unexpected {}", r.method),
                None => panic!("no response"),
            }
        }
    }

    /// The next response to a `method` request, skipping the others
    /// (retransmissions of the INVITE's responses).
    async fn response_to(&self, method: &str) -> Response {
        loop {
            let (r, _) = self.response().await;
            if r.cseq().expect("cseq").method.to_string() == method {
                return r;
            }
        }
    }

    async fn send(&self, text: &str) {
        self.peer
            .send_to(text.as_bytes(), self.swbd)
            .await
            .expect("send");
    }

    /// Send an INVITE (Call-ID `call`) and take its transaction.
    async fn invite(&mut self, call: &str) -> ServerInviteTransaction {
        let peer = self.peer.local_addr().expect("addr");
        self.send(&format!(
            "INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {peer};branch=z9hG4bK{call}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:p@example.com>;tag=pp\r\nTo: <sip:x@example.com>\r\n\
             Call-ID: {call}\r\nCSeq: 4 INVITE\r\nSupported: 100rel\r\nContent-Length: 0\r\n\r\n"
        ))
        .await;
        let Some(IncomingRequest::Invite(tx)) = self.incoming.recv().await else {
            panic!("no INVITE")
        };
        tx
    }

    /// A PRACK in `call`'s early dialog (To tag `to_tag`) with `rack`.
    async fn prack(&self, call: &str, to_tag: &str, rack: &str, branch: &str) {
        let peer = self.peer.local_addr().expect("addr");
        self.send(&format!(
            "PRACK sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {peer};branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:p@example.com>;tag=pp\r\nTo: <sip:x@example.com>;tag={to_tag}\r\n\
             Call-ID: {call}\r\nCSeq: 5 PRACK\r\nRAck: {rack}\r\nContent-Length: 0\r\n\r\n"
        ))
        .await;
    }
}

fn progress(tx: &ServerInviteTransaction) -> Response {
    let mut r = tx.response(183, "Session Progress");
    r.headers.insert(Name::CONTENT_TYPE, "application/sdp");
    r.body = bytes::Bytes::from_static(b"v=0\r\n");
    r
}

fn rseq(r: &Response) -> u32 {
    r.raw(&Name::RSEQ)
        .and_then(|v| v.trim().parse().ok())
        .expect("RSeq")
}

#[tokio::test(start_paused = true)]
async fn retransmitted_from_t1_doubling_then_500_after_64_t1_without_prack() {
    let mut h = harness().await;
    let mut tx = h.invite("rel-timeout").await;
    let start = Instant::now();
    tx.respond_reliably(progress(&tx)).expect("183");
    let (first, _) = h.response().await;
    assert_eq!(first.code, 183);
    assert_eq!(first.raw(&Name::REQUIRE), Some("100rel"));
    let number = rseq(&first);
    let mut offsets = Vec::new();
    let last = loop {
        let (r, at) = h.response().await;
        if r.code != 183 {
            break (r, at);
        }
        assert_eq!(rseq(&r), number, "a retransmission keeps its RSeq");
        offsets.push(((at - start).as_millis() as u64 + 5) / 10 * 10);
    };
    // T1 = 0.5 s doubling, past T2 (4 s): no cap (RFC 3262 §3).
    assert_eq!(offsets, vec![500, 1500, 3500, 7500, 15500, 31500]);
    let (rejected, at) = last;
    assert_eq!(rejected.code, 500);
    assert_eq!(at - start, Duration::from_secs(32), "64*T1");
    assert!(matches!(
        tx.next_event().await,
        Some(ServerInviteEvent::PrackTimeout)
    ));
}

#[tokio::test(start_paused = true)]
async fn prack_must_name_the_provisional_and_a_2xx_waits_for_it() {
    let mut h = harness().await;
    let tx = h.invite("rel-prack").await;
    let to_tag = tx.to_tag().to_string();
    tx.respond_reliably(progress(&tx)).expect("183");
    let (first, _) = h.response().await;
    let number = rseq(&first);
    // The 2xx carries no SDP (the answer was in the 183) and must wait.
    tx.respond(tx.response(200, "OK")).expect("200");

    // A PRACK naming another INVITE (CSeq 3) is not this transaction's:
    // it goes to the TU like any in-dialog request (swbd's front door
    // answers it 481 for an early dialog).
    h.prack("rel-prack", &to_tag, &format!("{number} 3 INVITE"), "other")
        .await;
    match h.incoming.recv().await {
        Some(IncomingRequest::Request(r)) => {
            assert_eq!(r.request().method.to_string(), "PRACK");
            r.respond(r.response(481, "Call/Transaction Does Not Exist"))
                .expect("481");
        }
        other => panic!("expected the PRACK at the TU, got {other:?}"),
    }
    assert_eq!(h.response_to("PRACK").await.code, 481);
    // Wrong RSeq, wrong method, wrong To tag: 481, nothing acknowledged.
    for (i, (rack, tag)) in [
        (format!("{} 4 INVITE", number + 1), to_tag.as_str()),
        (format!("{number} 4 UPDATE"), to_tag.as_str()),
        (format!("{number} 4 INVITE"), "someone-else"),
    ]
    .iter()
    .enumerate()
    {
        h.prack("rel-prack", tag, rack, &format!("bad{i}")).await;
        let r = h.response_to("PRACK").await;
        assert_eq!(r.code, 481, "PRACK with RAck {rack} To tag {tag}");
    }

    h.prack("rel-prack", &to_tag, &format!("{number} 4 INVITE"), "good")
        .await;
    // The PRACK's 200, then the INVITE's 200 it released (in either
    // order: retransmissions of the 183 may come before).
    let mut prack_ok = false;
    let mut invite_ok = false;
    while !(prack_ok && invite_ok) {
        let (r, _) = h.response().await;
        let method = r.cseq().expect("cseq").method.to_string();
        match (r.code, method.as_str()) {
            (200, "PRACK") => prack_ok = true,
            (200, "INVITE") => {
                assert!(prack_ok, "the 2xx waited for the PRACK");
                invite_ok = true;
            }
            (183, "INVITE") => assert!(!prack_ok, "no retransmission after the PRACK"),
            other => panic!("unexpected {other:?}"),
        }
    }
    // A retransmitted PRACK gets its 200 again, from its own transaction.
    h.prack("rel-prack", &to_tag, &format!("{number} 4 INVITE"), "good")
        .await;
    assert_eq!(h.response_to("PRACK").await.code, 200);
}

#[tokio::test(start_paused = true)]
async fn one_reliable_provisional_at_a_time() {
    let mut h = harness().await;
    let tx = h.invite("rel-order").await;
    let to_tag = tx.to_tag().to_string();
    let mut ringing = tx.response(180, "Ringing");
    ringing.headers.insert(Name::REQUIRE, "100rel");
    tx.respond(ringing).expect("180");
    tx.respond_reliably(progress(&tx)).expect("183");
    let (first, _) = h.response().await;
    assert_eq!(first.code, 180, "marked by its Require header alone");
    let number = rseq(&first);
    // The 183 waits for the 180's PRACK: only the 180 comes (retransmitted).
    let (again, _) = h.response().await;
    assert_eq!((again.code, rseq(&again)), (180, number));
    h.prack("rel-order", &to_tag, &format!("{number} 4 INVITE"), "p1")
        .await;
    let mut saw_183 = false;
    while !saw_183 {
        let (r, _) = h.response().await;
        match r.code {
            183 => {
                assert_eq!(rseq(&r), number + 1, "the next RSeq");
                saw_183 = true;
            }
            180 | 200 => {}
            other => panic!("unexpected {other}"),
        }
    }
}
