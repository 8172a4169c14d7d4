//! RFC 3261 §17 timers with paused time: the retransmission schedules of
//! Timers A, E and G, timeouts B, F and H, and absorption during D, I, J, K.
//! Real loopback sockets; the tokio clock is paused so the schedule is
//! read off virtual time (no wall-clock timing is asserted).
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

use std::net::SocketAddr;
use std::time::Duration;

use swbd::config::SipConfig;
use swbd::sip::message::HeaderAccess;
use swbd::sip::response::make_response;
use swbd::sip::{Method, Name, Request, SipMessage, Uri};
use swbd::transaction::{Error, IncomingRequest, ServerInviteEvent, Timers, TransactionLayer};
use swbd::transport::{SipCounters, Target, Transport, Transports};
use switchboard_proto::support::shutdown::{self, ShutdownTrigger};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

struct Harness {
    layer: TransactionLayer,
    incoming: mpsc::UnboundedReceiver<IncomingRequest>,
    peer: UdpSocket,
    swbd: SocketAddr,
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
        layer,
        incoming,
        peer: UdpSocket::bind("127.0.0.1:0").await.expect("peer"),
        swbd,
        _trigger: trigger,
    }
}

impl Harness {
    fn target(&self) -> Target {
        Target {
            transport: Transport::Udp,
            remote: self.peer.local_addr().expect("addr"),
            local: None,
        }
    }

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

    async fn send(&self, bytes: &[u8]) {
        self.peer.send_to(bytes, self.swbd).await.expect("send");
    }
}

fn request(method: Method, cseq: u32) -> Request {
    let mut r = Request::new(
        method.clone(),
        Uri::parse("sip:peer@127.0.0.1").expect("uri"),
    );
    r.headers
        .insert(Name::FROM, "<sip:swbd@example.com>;tag=t1");
    r.headers.insert(Name::TO, "<sip:peer@example.com>");
    r.headers.insert(Name::CALL_ID, format!("timers-{method}"));
    r.headers.insert(Name::CSEQ, format!("{cseq} {method}"));
    r
}

/// Intervals between arrivals, rounded to 10 ms.
fn intervals(times: &[Instant]) -> Vec<u64> {
    times
        .windows(2)
        .map(|w| ((w[1] - w[0]).as_millis() as u64 + 5) / 10 * 10)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn timer_e_schedule_and_timer_f_timeout() {
    let h = harness().await;
    let start = Instant::now();
    let mut ctx = h
        .layer
        .send_request(request(Method::Options, 1), h.target())
        .await
        .expect("sent");
    let mut times = Vec::new();
    while let Some((_, at)) = h.recv(Duration::from_secs(40)).await {
        times.push(at);
        if times.len() == 11 {
            break;
        }
    }
    // 0.5, 1, 2, then capped at T2 = 4 s.
    assert_eq!(
        intervals(&times),
        vec![500, 1000, 2000, 4000, 4000, 4000, 4000, 4000, 4000, 4000]
    );
    assert_eq!(
        ctx.next_response().await.expect_err("timeout"),
        Error::Timeout
    );
    assert!(
        Instant::now() - start >= Duration::from_secs(32),
        "Timer F = 64*T1"
    );
}

#[tokio::test(start_paused = true)]
async fn timer_e_is_t2_in_proceeding_and_k_absorbs() {
    let h = harness().await;
    let mut ctx = h
        .layer
        .send_request(request(Method::Options, 2), h.target())
        .await
        .expect("sent");
    let (SipMessage::Request(req), _) = h.recv(Duration::from_secs(1)).await.expect("request")
    else {
        panic!("not a request")
    };
    h.send(&make_response(&req, 180, "", Some("p")).to_bytes())
        .await;
    assert_eq!(ctx.next_response().await.expect("180").code, 180);
    let (_, t1) = h
        .recv(Duration::from_secs(10))
        .await
        .expect("retransmission");
    let (_, t2) = h
        .recv(Duration::from_secs(10))
        .await
        .expect("retransmission");
    assert_eq!(intervals(&[t1, t2]), vec![4000], "T2 in Proceeding");
    let ok = make_response(&req, 200, "", Some("p")).to_bytes();
    h.send(&ok).await;
    assert_eq!(ctx.next_response().await.expect("200").code, 200);
    // Retransmitted 200 is absorbed in Completed; Timer K (T4) ends it.
    h.send(&ok).await;
    assert_eq!(
        ctx.next_response().await.expect_err("done"),
        Error::Terminated
    );
    assert!(
        h.recv(Duration::from_secs(3)).await.is_none(),
        "no more retransmissions"
    );
    let r = h.layer.retained();
    assert_eq!(
        (r.clients, r.clients_completed),
        (0, 1),
        "Completed is a key in the table, not a task"
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(h.layer.live_transactions().1, 0, "gone after Timer K");
}

#[tokio::test(start_paused = true)]
async fn timer_a_schedule_and_timer_b_timeout() {
    let h = harness().await;
    let start = Instant::now();
    let mut ctx = h
        .layer
        .send_invite(request(Method::Invite, 1), h.target())
        .await
        .expect("sent");
    let mut times = Vec::new();
    while let Some((_, at)) = h.recv(Duration::from_secs(40)).await {
        times.push(at);
    }
    // Timer A doubles without a cap (RFC 3261 §17.1.1.2) until Timer B.
    assert_eq!(intervals(&times), vec![500, 1000, 2000, 4000, 8000, 16000]);
    assert_eq!(
        ctx.next_response().await.expect_err("timeout"),
        Error::Timeout
    );
    assert!(
        Instant::now() - start >= Duration::from_secs(32),
        "Timer B = 64*T1"
    );
}

#[tokio::test(start_paused = true)]
async fn client_invite_acks_non_2xx_and_absorbs_during_timer_d() {
    let h = harness().await;
    let mut ctx = h
        .layer
        .send_invite(request(Method::Invite, 5), h.target())
        .await
        .expect("sent");
    let (SipMessage::Request(inv), _) = h.recv(Duration::from_secs(1)).await.expect("INVITE")
    else {
        panic!("not a request")
    };
    let busy = make_response(&inv, 486, "", Some("p")).to_bytes();
    h.send(&busy).await;
    assert_eq!(ctx.next_response().await.expect("486").code, 486);
    let (SipMessage::Request(ack), _) = h.recv(Duration::from_secs(1)).await.expect("ACK") else {
        panic!("not a request")
    };
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(
        ack.top_via().expect("via").branch(),
        inv.top_via().expect("via").branch(),
        "same branch"
    );
    assert_eq!(ack.header_to().expect("to").tag(), Some("p"));
    // A retransmitted 486 gets the ACK again, not a new event.
    h.send(&busy).await;
    let (SipMessage::Request(ack2), _) = h.recv(Duration::from_secs(1)).await.expect("ACK again")
    else {
        panic!("not a request")
    };
    assert_eq!(ack2.method, Method::Ack);
    assert_eq!(
        ctx.next_response().await.expect_err("done"),
        Error::Terminated
    );
    // Completed is a key and the ACK in the table, not a task (issue #14);
    // Timer D removes it.
    let r = h.layer.retained();
    assert_eq!((r.clients, r.clients_completed), (0, 1));
    tokio::time::sleep(Duration::from_secs(33)).await;
    assert_eq!(h.layer.live_transactions().1, 0, "gone after Timer D");
}

#[tokio::test(start_paused = true)]
async fn cancel_uses_the_invite_branch() {
    let h = harness().await;
    let mut ctx = h
        .layer
        .send_invite(request(Method::Invite, 9), h.target())
        .await
        .expect("sent");
    let (SipMessage::Request(inv), _) = h.recv(Duration::from_secs(1)).await.expect("INVITE")
    else {
        panic!("not a request")
    };
    ctx.cancel(); // before any provisional: held back (RFC 3261 §9.1)
    h.send(&make_response(&inv, 180, "", Some("p")).to_bytes())
        .await;
    assert_eq!(ctx.next_response().await.expect("180").code, 180);
    let (SipMessage::Request(cancel), _) = h.recv(Duration::from_secs(1)).await.expect("CANCEL")
    else {
        panic!("not a request")
    };
    assert_eq!(cancel.method, Method::Cancel);
    assert_eq!(
        cancel.top_via().expect("via").branch(),
        inv.top_via().expect("via").branch()
    );
    assert_eq!(cancel.cseq().expect("cseq").number, 9);
    h.send(&make_response(&cancel, 200, "", Some("p")).to_bytes())
        .await;
    h.send(&make_response(&inv, 487, "", Some("p")).to_bytes())
        .await;
    assert_eq!(ctx.next_response().await.expect("487").code, 487);
}

fn peer_invite(peer: SocketAddr, branch: &str) -> String {
    format!(
        "INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {peer};branch={branch}\r\nMax-Forwards: 70\r\nFrom: <sip:p@example.com>;tag=pp\r\nTo: <sip:x@example.com>\r\nCall-ID: srv-{branch}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
}

#[tokio::test(start_paused = true)]
async fn timer_g_schedule_and_timer_h_for_a_lost_ack() {
    let mut h = harness().await;
    let peer = h.peer.local_addr().expect("addr");
    h.send(peer_invite(peer, "z9hG4bKg1").as_bytes()).await;
    let Some(IncomingRequest::Invite(mut tx)) = h.incoming.recv().await else {
        panic!("no INVITE")
    };
    let (SipMessage::Response(trying), _) = h.recv(Duration::from_secs(1)).await.expect("100")
    else {
        panic!("not a response")
    };
    assert_eq!(trying.code, 100);
    let start = Instant::now();
    tx.respond(tx.response(486, "Busy Here")).expect("486");
    let mut times = Vec::new();
    while let Some((m, at)) = h.recv(Duration::from_secs(40)).await {
        assert!(matches!(m, SipMessage::Response(ref r) if r.code == 486));
        times.push(at);
    }
    // 0.5, 1, 2, 4, then T2 = 4 s until Timer H (32 s).
    let iv = intervals(&times);
    assert_eq!(&iv[..5], &[500, 1000, 2000, 4000, 4000]);
    assert!(iv[5..].iter().all(|i| *i == 4000), "{iv:?}");
    assert!(matches!(
        tx.next_event().await,
        Some(ServerInviteEvent::NoAck)
    ));
    assert!(Instant::now() - start >= Duration::from_secs(32));
}

#[tokio::test(start_paused = true)]
async fn ack_stops_timer_g_and_timer_i_absorbs() {
    let mut h = harness().await;
    let peer = h.peer.local_addr().expect("addr");
    let inv = peer_invite(peer, "z9hG4bKi1");
    h.send(inv.as_bytes()).await;
    let Some(IncomingRequest::Invite(tx)) = h.incoming.recv().await else {
        panic!("no INVITE")
    };
    let _ = h.recv(Duration::from_secs(1)).await.expect("100");
    tx.respond(tx.response(603, "Decline")).expect("603");
    let (SipMessage::Response(r), _) = h.recv(Duration::from_secs(1)).await.expect("603") else {
        panic!("not a response")
    };
    let to = r.raw(&Name::TO).expect("to").to_string();
    let ack = inv
        .replace("INVITE sip:x@127.0.0.1", "ACK sip:x@127.0.0.1")
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace("To: <sip:x@example.com>", &format!("To: {to}"));
    h.send(ack.as_bytes()).await;
    h.send(ack.as_bytes()).await;
    assert!(
        h.recv(Duration::from_secs(10)).await.is_none(),
        "no 603 after the ACK"
    );
    assert_eq!(h.layer.live_transactions().0, 0, "gone after Timer I");
}

#[tokio::test(start_paused = true)]
async fn timer_j_absorbs_non_invite_retransmissions() {
    let mut h = harness().await;
    let peer = h.peer.local_addr().expect("addr");
    let opt = format!(
        "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {peer};branch=z9hG4bKj1\r\nMax-Forwards: 70\r\nFrom: <sip:p@example.com>;tag=pp\r\nTo: <sip:x@example.com>\r\nCall-ID: j1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    h.send(opt.as_bytes()).await;
    let Some(IncomingRequest::Request(tx)) = h.incoming.recv().await else {
        panic!("no OPTIONS")
    };
    tx.respond(tx.response(200, "OK")).expect("200");
    let _ = h.recv(Duration::from_secs(1)).await.expect("200");
    tokio::time::sleep(Duration::from_secs(10)).await;
    h.send(opt.as_bytes()).await;
    let (SipMessage::Response(r), _) = h.recv(Duration::from_secs(1)).await.expect("200 again")
    else {
        panic!("not a response")
    };
    assert_eq!(r.code, 200);
    assert!(
        h.incoming.try_recv().is_err(),
        "the retransmission is not a new request"
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        h.layer.live_transactions().0,
        0,
        "gone after Timer J (64*T1)"
    );
    // After Timer J the same request is new again.
    h.send(opt.as_bytes()).await;
    assert!(matches!(
        h.incoming.recv().await,
        Some(IncomingRequest::Request(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn client_invite_accepted_state_passes_2xx_retransmissions_until_timer_m() {
    let h = harness().await;
    let mut ctx = h
        .layer
        .send_invite(request(Method::Invite, 11), h.target())
        .await
        .expect("sent");
    let (SipMessage::Request(inv), _) = h.recv(Duration::from_secs(1)).await.expect("INVITE")
    else {
        panic!("not a request")
    };
    let ok = make_response(&inv, 200, "", Some("p")).to_bytes();
    h.send(&ok).await;
    assert_eq!(ctx.next_response().await.expect("200").code, 200);
    // RFC 6026 §7.2: a retransmitted 2xx goes to the TU (which re-ACKs).
    h.send(&ok).await;
    assert_eq!(ctx.next_response().await.expect("200 again").code, 200);
    assert!(
        h.recv(Duration::from_secs(2)).await.is_none(),
        "no ACK from the transaction for a 2xx"
    );
    // Timer M (64*T1) ends it.
    assert_eq!(
        ctx.next_response().await.expect_err("done"),
        Error::Terminated
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_a_client_invite_after_a_provisional_cancels_it() {
    let h = harness().await;
    let mut ctx = h
        .layer
        .send_invite(request(Method::Invite, 12), h.target())
        .await
        .expect("sent");
    let (SipMessage::Request(inv), _) = h.recv(Duration::from_secs(1)).await.expect("INVITE")
    else {
        panic!("not a request")
    };
    h.send(&make_response(&inv, 183, "", Some("p")).to_bytes())
        .await;
    assert_eq!(ctx.next_response().await.expect("183").code, 183);
    drop(ctx);
    let (SipMessage::Request(cancel), _) = h.recv(Duration::from_secs(1)).await.expect("CANCEL")
    else {
        panic!("not a request")
    };
    assert_eq!(cancel.method, Method::Cancel);
    assert_eq!(
        cancel.top_via().expect("via").branch(),
        inv.top_via().expect("via").branch()
    );
}

#[tokio::test(start_paused = true)]
async fn server_accepted_state_absorbs_invite_and_reports_missing_ack_at_timer_l() {
    let mut h = harness().await;
    let peer = h.peer.local_addr().expect("addr");
    let inv = peer_invite(peer, "z9hG4bKl1");
    h.send(inv.as_bytes()).await;
    let Some(IncomingRequest::Invite(mut tx)) = h.incoming.recv().await else {
        panic!("no INVITE")
    };
    let _ = h.recv(Duration::from_secs(1)).await.expect("100");
    let start = Instant::now();
    tx.respond(tx.response(200, "OK")).expect("200");
    let mut oks = 0;
    // INVITE retransmissions are absorbed (no new TU request); the 2xx is
    // retransmitted by the transaction until Timer L.
    h.send(inv.as_bytes()).await;
    while let Some((m, _)) = h.recv(Duration::from_secs(5)).await {
        assert!(matches!(m, SipMessage::Response(ref r) if r.code == 200));
        oks += 1;
    }
    assert!(oks >= 5, "2xx retransmitted: {oks}");
    assert!(
        h.incoming.try_recv().is_err(),
        "retransmitted INVITE is not a new call"
    );
    assert!(matches!(
        tx.next_event().await,
        Some(ServerInviteEvent::NoAck)
    ));
    assert!(
        Instant::now() - start >= Duration::from_secs(32),
        "Timer L = 64*T1"
    );
}

fn peer_options(peer: SocketAddr, branch: &str) -> String {
    format!(
        "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {peer};branch={branch}\r\nMax-Forwards: 70\r\nFrom: <sip:p@example.com>;tag=pp\r\nTo: <sip:x@example.com>\r\nCall-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

#[tokio::test(start_paused = true)]
async fn dropping_a_non_invite_handle_answers_500_and_retransmissions_get_it_again() {
    let mut h = harness().await;
    let peer = h.peer.local_addr().expect("addr");
    let opt = peer_options(peer, "z9hG4bKdrop1");
    h.send(opt.as_bytes()).await;
    let Some(IncomingRequest::Request(tx)) = h.incoming.recv().await else {
        panic!("no OPTIONS")
    };
    drop(tx);
    let (SipMessage::Response(r), _) = h.recv(Duration::from_secs(1)).await.expect("500") else {
        panic!("not a response")
    };
    assert_eq!(r.code, 500);
    h.send(opt.as_bytes()).await;
    let (SipMessage::Response(r), _) = h.recv(Duration::from_secs(1)).await.expect("500 again")
    else {
        panic!("not a response")
    };
    assert_eq!(r.code, 500, "the retransmission gets the stored response");
    assert!(h.incoming.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn a_non_invite_handle_held_past_64_t1_ends_the_transaction() {
    let mut h = harness().await;
    let peer = h.peer.local_addr().expect("addr");
    let opt = peer_options(peer, "z9hG4bKheld1");
    h.send(opt.as_bytes()).await;
    let Some(IncomingRequest::Request(tx)) = h.incoming.recv().await else {
        panic!("no OPTIONS")
    };
    assert_eq!(h.layer.live_transactions().0, 1);
    // A retransmission before any response gets nothing and is not new.
    h.send(opt.as_bytes()).await;
    assert!(h.recv(Duration::from_millis(100)).await.is_none());
    assert!(h.incoming.try_recv().is_err());
    tokio::time::sleep(Duration::from_secs(33)).await;
    assert_eq!(
        h.layer.live_transactions().0,
        0,
        "gone 64*T1 after it started"
    );
    assert!(
        tx.respond(tx.response(200, "OK")).is_err(),
        "a late answer is refused"
    );
    drop(tx);
    assert!(
        h.recv(Duration::from_millis(100)).await.is_none(),
        "nothing is sent for an ended transaction"
    );
}
