//! Hold that lasts (issue #15): a leg on hold is exempt from the RTP
//! timeout until it resumes; RTCP (port + 1 or multiplexed on the RTP
//! port) counts as activity; re-offers that pass hold on to the other leg.
//!
//! No test waits and then asserts that nothing happened: a control session
//! that falls silent *later* than the leg under test must time out first.
//! Without the exemption the leg under test would be reported first (it
//! has been silent longer, by more than one check period).
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use switchboard_proto::media::v1 as pb;
use tokio_stream::StreamExt;

/// A peer's SDP with an origin version and a direction line.
fn sdp(port: u16, version: u32, direction: &str) -> String {
    format!(
        "v=0\r\no=peer 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na={direction}\r\n"
    )
}

/// An RTCP receiver report (no blocks) from `ssrc`.
fn rtcp_rr(ssrc: u32) -> Vec<u8> {
    let mut v = vec![0x80, 201, 0, 1];
    v.extend_from_slice(&ssrc.to_be_bytes());
    v
}

fn rtcp_addr(rtp: std::net::SocketAddr) -> std::net::SocketAddr {
    std::net::SocketAddr::new(rtp.ip(), rtp.port() + 1)
}

/// Longer than one RTP-timeout check period (1 s): a session armed after
/// this falls silent later than the leg under test by more than the
/// checks' phase difference.
const LATER: Duration = Duration::from_millis(1500);

type Watch = tonic::Streaming<pb::SessionEvent>;

async fn watch(d: &mut Daemon) -> Watch {
    d.media
        .watch_sessions(pb::WatchSessionsRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// The id of the next session reported timed out.
async fn next_timeout(w: &mut Watch) -> String {
    loop {
        let e = tokio::time::timeout(WAIT, w.next())
            .await
            .expect("a timeout is reported")
            .expect("watch open")
            .expect("event");
        if e.kind == pb::SessionEventKind::RtpTimeout as i32 {
            return e.session_id;
        }
    }
}

/// A session answering `peer`, armed by one RTP packet, then silent.
async fn silent_control(d: &mut Daemon, peer: &Peer) -> String {
    let c = d.answer("control", peer, "0", "").await;
    peer.send_rtp(rtp_addr(&c.local_sdp), 0, 1, 0, 99, &[0xff; 160])
        .await;
    c.session_id
}

async fn update(d: &mut Daemon, id: &str, remote_sdp: String) -> pb::UpdateSessionResponse {
    d.media
        .update_session(pb::UpdateSessionRequest {
            session_id: id.into(),
            remote_sdp,
            ..Default::default()
        })
        .await
        .expect("update")
        .into_inner()
}

async fn reoffer(
    d: &mut Daemon,
    id: &str,
    direction: pb::Direction,
    withdraw: bool,
) -> Result<pb::ReofferSessionResponse, tonic::Status> {
    d.media
        .reoffer_session(pb::ReofferSessionRequest {
            session_id: id.into(),
            direction: direction as i32,
            withdraw,
        })
        .await
        .map(|r| r.into_inner())
}

fn direction(m: Option<&pb::NegotiatedMedia>) -> pb::Direction {
    m.map(|m| m.direction()).expect("negotiated media")
}

#[tokio::test]
async fn a_held_leg_outlives_the_rtp_timeout_and_is_watched_again_after_resume() {
    let mut cfg = config("7660-7669");
    cfg.rtp_timeout_secs = 1;
    let mut d = Daemon::start(cfg).await;
    let mut w = watch(&mut d).await;
    let holder = Peer::new().await;
    let a = d.answer("hold", &holder, "0", "a=sendrecv\r\n").await;
    holder
        .send_rtp(rtp_addr(&a.local_sdp), 0, 1, 0, 7, &[0xff; 160])
        .await;
    // The phone holds (sendonly, answered recvonly) and stops sending.
    let held = update(&mut d, &a.session_id, sdp(holder.sdp_port, 2, "sendonly")).await;
    assert!(held.local_sdp.contains("a=recvonly"), "{}", held.local_sdp);
    assert_eq!(direction(held.media.as_ref()), pb::Direction::Recvonly);

    tokio::time::sleep(LATER).await;
    let control_peer = Peer::new().await;
    let control = silent_control(&mut d, &control_peer).await;
    assert_eq!(
        next_timeout(&mut w).await,
        control,
        "the leg on hold (silent for longer) is not timed out; the control is"
    );
    assert!(
        !d.health().await.timed_out_sessions.contains(&a.session_id),
        "the held leg is alive"
    );

    // Resume: the timeout applies again, from the resume on.
    let resumed = update(&mut d, &a.session_id, sdp(holder.sdp_port, 3, "sendrecv")).await;
    assert_eq!(direction(resumed.media.as_ref()), pb::Direction::Sendrecv);
    assert_eq!(next_timeout(&mut w).await, a.session_id);
    d.stop().await;
}

#[tokio::test]
async fn inactive_and_rfc2543_hold_are_exempt_too() {
    let mut cfg = config("7670-7679");
    cfg.rtp_timeout_secs = 1;
    let mut d = Daemon::start(cfg).await;
    let mut w = watch(&mut d).await;
    let p1 = Peer::new().await;
    let inactive = d.answer("inactive", &p1, "0", "").await;
    p1.send_rtp(rtp_addr(&inactive.local_sdp), 0, 1, 0, 1, &[0xff; 160])
        .await;
    let r = update(
        &mut d,
        &inactive.session_id,
        sdp(p1.sdp_port, 2, "inactive"),
    )
    .await;
    assert_eq!(direction(r.media.as_ref()), pb::Direction::Inactive);
    let p2 = Peer::new().await;
    let zero = d.answer("zero", &p2, "0", "").await;
    p2.send_rtp(rtp_addr(&zero.local_sdp), 0, 1, 0, 2, &[0xff; 160])
        .await;
    // RFC 2543: c=0.0.0.0, direction unchanged.
    let held = sdp(p2.sdp_port, 2, "sendrecv").replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
    let r = update(&mut d, &zero.session_id, held).await;
    assert_eq!(
        r.media.as_ref().map(|m| m.remote_rtp_address.as_str()),
        Some("")
    );

    tokio::time::sleep(LATER).await;
    let control_peer = Peer::new().await;
    let control = silent_control(&mut d, &control_peer).await;
    assert_eq!(next_timeout(&mut w).await, control);
    let h = d.health().await;
    assert_eq!(h.timed_out_sessions, vec![control]);
    d.stop().await;
}

#[tokio::test]
async fn rtcp_on_its_port_or_multiplexed_counts_as_activity() {
    let mut cfg = config("7680-7689");
    cfg.rtp_timeout_secs = 1;
    let mut d = Daemon::start(cfg).await;
    let mut w = watch(&mut d).await;
    let p1 = Peer::new().await;
    let a = d.answer("rtcp", &p1, "0", "").await;
    let a_rtp = rtp_addr(&a.local_sdp);
    p1.send_rtp(a_rtp, 0, 1, 0, 11, &[0xff; 160]).await;
    let p2 = Peer::new().await;
    let m = d.answer("rtcp-mux", &p2, "0", "").await;
    let m_rtp = rtp_addr(&m.local_sdp);
    p2.send_rtp(m_rtp, 0, 1, 0, 12, &[0xff; 160]).await;

    // From now on only RTCP: A's on port + 1, M's on the RTP port.
    let keep_alive = async {
        loop {
            p1.sock
                .send_to(&rtcp_rr(11), rtcp_addr(a_rtp))
                .await
                .unwrap();
            p2.sock.send_to(&rtcp_rr(12), m_rtp).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let control_peer = Peer::new().await;
    let check = async {
        tokio::time::sleep(LATER).await;
        let control = silent_control(&mut d, &control_peer).await;
        let first = next_timeout(&mut w).await;
        (control, first)
    };
    let (control, first) = tokio::select! {
        r = check => r,
        _ = keep_alive => unreachable!(),
    };
    assert_eq!(first, control, "legs sending RTCP are alive");
    let h = d.health().await;
    assert_eq!(h.timed_out_sessions, vec![control]);
    let info = d
        .admin
        .list_sessions(switchboard_proto::admin::v1::ListMediaSessionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let dropped = info
        .sessions
        .iter()
        .find(|s| s.session_id == m.session_id)
        .and_then(|s| s.stats.as_ref())
        .map(|s| s.dropped);
    assert_eq!(
        dropped,
        Some(0),
        "multiplexed RTCP is not dropped as bad RTP"
    );
    d.stop().await;
}

#[tokio::test]
async fn a_reoffer_holds_and_resumes_a_leg_and_can_be_withdrawn() {
    let mut d = Daemon::start(config("7690-7699")).await;
    let pa = Peer::new().await;
    let pb_ = Peer::new().await;
    let a = d.answer("pass", &pa, "0", "").await;
    let b = d.offer("pass", &pb_, "0", "").await;
    d.bridge(&a.session_id, &b).await;

    // Hold B: our offer sendonly, same port, version bumped.
    let offer = reoffer(&mut d, &b, pb::Direction::Sendonly, false)
        .await
        .expect("reoffer");
    assert!(
        offer.local_sdp.contains("a=sendonly"),
        "{}",
        offer.local_sdp
    );
    assert!(offer.local_sdp.contains("m=audio "), "{}", offer.local_sdp);
    assert!(
        offer.local_sdp.contains("RTP/AVP 0\r\n"),
        "the codec in use: {}",
        offer.local_sdp
    );
    // Media unchanged until the answer.
    assert_eq!(direction(offer.media.as_ref()), pb::Direction::Sendrecv);
    let answered = update(&mut d, &b, sdp(pb_.sdp_port, 2, "recvonly")).await;
    assert!(answered.local_sdp.is_empty(), "an answer gets no SDP back");
    assert_eq!(direction(answered.media.as_ref()), pb::Direction::Sendonly);
    // A -> B still flows (B hears A, e.g. music on hold from A's phone).
    pa.send_rtp(rtp_addr(&a.local_sdp), 0, 1, 0, 5, &[0x11; 160])
        .await;
    let got = pb_.recv().await.expect("A's RTP reaches held B");
    assert_eq!(parse(&got).5, vec![0x11; 160]);

    // Resume; an answerer saying sendrecv to our sendonly would not make
    // us receive, but this is sendrecv to sendrecv.
    let offer = reoffer(&mut d, &b, pb::Direction::Sendrecv, false)
        .await
        .expect("reoffer");
    assert!(
        offer.local_sdp.contains("a=sendrecv"),
        "{}",
        offer.local_sdp
    );
    let answered = update(&mut d, &b, sdp(pb_.sdp_port, 3, "sendrecv")).await;
    assert_eq!(direction(answered.media.as_ref()), pb::Direction::Sendrecv);
    pb_.send_rtp(rtp_addr(&offer.local_sdp), 0, 1, 0, 6, &[0x22; 160])
        .await;
    let got = pa.recv().await.expect("B's RTP reaches A after resume");
    assert_eq!(parse(&got).5, vec![0x22; 160]);

    // A sloppy answerer: sendrecv to our sendonly. We still only send.
    reoffer(&mut d, &b, pb::Direction::Sendonly, false)
        .await
        .expect("reoffer");
    let answered = update(&mut d, &b, sdp(pb_.sdp_port, 4, "sendrecv")).await;
    assert_eq!(direction(answered.media.as_ref()), pb::Direction::Sendonly);

    // Withdrawn (the re-INVITE failed): B's next SDP is an offer again.
    reoffer(&mut d, &b, pb::Direction::Sendrecv, false)
        .await
        .expect("reoffer");
    let gone = reoffer(&mut d, &b, pb::Direction::Unspecified, true)
        .await
        .expect("withdraw");
    assert!(gone.local_sdp.is_empty());
    assert_eq!(direction(gone.media.as_ref()), pb::Direction::Sendonly);
    let answer = update(&mut d, &b, sdp(pb_.sdp_port, 5, "sendrecv")).await;
    assert!(
        answer.local_sdp.contains("a=sendrecv"),
        "B's re-INVITE is answered: {}",
        answer.local_sdp
    );

    // Not negotiated yet: refused.
    let fresh = d
        .media
        .create_session(pb::CreateSessionRequest {
            call_id: "pass".into(),
            leg: "c".into(),
            negotiation: Some(pb::create_session_request::Negotiation::Offer(
                pb::OfferOptions::default(),
            )),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let st = reoffer(&mut d, &fresh.session_id, pb::Direction::Sendonly, false)
        .await
        .expect_err("nothing negotiated");
    assert_eq!(st.code(), tonic::Code::FailedPrecondition);
    d.stop().await;
}
