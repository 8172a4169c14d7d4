//! DTMF as RFC 4733 telephone-events, on real sockets: `SendDtmf` (Control
//! stream) puts digits on a leg as events (marker, growing duration, the
//! end three times, one timestamp per event, relayed audio held back
//! meanwhile); digits a leg receives are reported once each, on
//! WatchSessions and on the owner's Control stream, saying whether the
//! bridge peer got them as RFC 4733 too.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use pb::control_reply::Result as R;
use pb::control_request::Command as C;
use switchboard_proto::media::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

const TE: &str = "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n";

/// A Control stream, owned by `swbd-1/run-1` (owned streams get events).
struct Stream {
    tx: mpsc::UnboundedSender<pb::ControlRequest>,
    replies: tonic::Streaming<pb::ControlReply>,
    next_id: u64,
}

impl Stream {
    async fn open(d: &mut Daemon) -> Stream {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut request = tonic::Request::new(UnboundedReceiverStream::new(rx));
        request
            .metadata_mut()
            .insert("switchboard-owner-node", "swbd-1".parse().expect("ascii"));
        request.metadata_mut().insert(
            "switchboard-owner-instance",
            "run-1".parse().expect("ascii"),
        );
        let replies = d
            .media
            .control(request)
            .await
            .expect("control stream")
            .into_inner();
        Stream {
            tx,
            replies,
            next_id: 1,
        }
    }

    async fn next(&mut self) -> pb::ControlReply {
        tokio::time::timeout(WAIT, self.replies.message())
            .await
            .expect("a reply in time")
            .expect("stream ok")
            .expect("stream open")
    }

    /// Send `command`; its reply (unsolicited events before it are kept
    /// in `events`).
    async fn call(&mut self, command: C, events: &mut Vec<pb::SessionEvent>) -> R {
        let id = self.next_id;
        self.next_id += 1;
        self.tx
            .send(pb::ControlRequest {
                id,
                command: Some(command),
            })
            .expect("send");
        loop {
            let reply = self.next().await;
            match (reply.id, reply.result) {
                (0, Some(R::Event(e))) => events.push(e),
                (got, Some(r)) if got == id => return r,
                other => panic!("unexpected reply {other:?}"),
            }
        }
    }

    /// The next unsolicited event.
    async fn event(&mut self) -> pb::SessionEvent {
        let reply = self.next().await;
        match (reply.id, reply.result) {
            (0, Some(R::Event(e))) => e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    async fn create(&mut self, call: &str, peer: &Peer, extra: &str) -> pb::CreateSessionResponse {
        let r = self
            .call(
                C::CreateSession(pb::CreateSessionRequest {
                    call_id: call.into(),
                    leg: "a".into(),
                    negotiation: Some(pb::create_session_request::Negotiation::RemoteOfferSdp(
                        offer_sdp(peer.sdp_port, "0 101", extra),
                    )),
                    ..Default::default()
                }),
                &mut Vec::new(),
            )
            .await;
        let R::CreateSession(c) = r else {
            panic!("create: {r:?}")
        };
        c
    }

    async fn send_dtmf(&mut self, session: &str, digits: &str, duration_ms: u32) -> R {
        self.call(
            C::SendDtmf(pb::SendDtmfRequest {
                session_id: session.into(),
                digits: digits.into(),
                duration_ms,
            }),
            &mut Vec::new(),
        )
        .await
    }
}

fn error_code(r: &R) -> Option<tonic::Code> {
    match r {
        R::Error(e) => Some(tonic::Code::from_i32(e.code)),
        _ => None,
    }
}

/// `(event, end, duration)` of a telephone-event payload.
fn event(payload: &[u8]) -> (u8, bool, u16) {
    let [e, flags, d0, d1] = payload[..4] else {
        unreachable!()
    };
    (e, flags & 0x80 != 0, u16::from_be_bytes([d0, d1]))
}

/// One RFC 4733 event as a sender puts it on the wire: start, updates,
/// the end three times.
async fn send_event(peer: &Peer, to: std::net::SocketAddr, seq: &mut u16, ts: u32, digit: u8) {
    for (duration, end) in [
        (160u16, false),
        (320, false),
        (480, true),
        (480, true),
        (480, true),
    ] {
        let mut payload = vec![digit, if end { 0x80 | 10 } else { 10 }];
        payload.extend_from_slice(&duration.to_be_bytes());
        peer.send_rtp(to, 101, *seq, ts, 0x5eed, &payload).await;
        *seq = seq.wrapping_add(1);
    }
}

#[tokio::test]
async fn send_dtmf_puts_rfc4733_events_on_the_leg() {
    let mut d = Daemon::start(config("8100-8119")).await;
    let alice = Peer::new().await;
    let mut s = Stream::open(&mut d).await;
    let a = s.create("dtmf-send", &alice, TE).await;
    let ours = rtp_addr(&a.local_sdp);
    // Alice speaks first, so the leg is latched and knows where she is.
    alice.send_rtp(ours, 0, 1, 160, 77, &[0xff; 160]).await;

    let r = s.send_dtmf(&a.session_id, "1#", 60).await;
    let R::SendDtmf(queued) = r else {
        panic!("send_dtmf: {r:?}")
    };
    assert_eq!(queued.queued, 2);

    let mut packets = Vec::new();
    while packets.len() < 8 {
        let p = alice.recv().await.expect("telephone-events from swrtp");
        packets.push(parse(&p));
    }
    // 60 ms = 480 ticks: 160, 320, then 480 with the end bit three times.
    let first: Vec<_> = packets.iter().take(5).collect();
    assert!(first.iter().all(|(pt, ..)| *pt == 101), "{first:?}");
    let shape: Vec<(u8, bool, u16, bool)> = first
        .iter()
        .map(|(_, marker, _, _, _, payload)| {
            let (e, end, dur) = event(payload);
            (e, end, dur, *marker)
        })
        .collect();
    assert_eq!(
        shape,
        [
            (1, false, 160, true),
            (1, false, 320, false),
            (1, true, 480, false),
            (1, true, 480, false),
            (1, true, 480, false)
        ]
    );
    let ts = first[0].3;
    assert!(first.iter().all(|p| p.3 == ts), "one timestamp per event");
    for w in packets.windows(2) {
        assert_eq!(
            w[1].2,
            w[0].2.wrapping_add(1),
            "consecutive sequence numbers"
        );
    }
    // The second digit is another event: its own timestamp, marker again.
    let (pt, marker, _, ts2, _, payload) = &packets[5];
    assert_eq!((*pt, *marker, event(payload).0), (101, true, 11));
    assert_ne!(*ts2, ts);
    d.stop().await;
}

#[tokio::test]
async fn send_dtmf_is_refused_clearly() {
    let mut d = Daemon::start(config("8120-8139")).await;
    let alice = Peer::new().await;
    let mut s = Stream::open(&mut d).await;
    let with_te = s.create("dtmf-refusals", &alice, TE).await;
    let bob = Peer::new().await;
    let without_te = s.create("dtmf-refusals", &bob, "").await;

    let code = |r: R| error_code(&r);
    assert_eq!(
        code(s.send_dtmf(&without_te.session_id, "1", 0).await),
        Some(tonic::Code::FailedPrecondition),
        "no telephone-event negotiated: the caller falls back to SIP INFO"
    );
    for (digits, duration) in [
        ("", 0),
        ("1x", 0),
        ("1\r\n", 0),
        (&"1".repeat(33)[..], 0),
        ("1", 10),
        ("1", 6000),
    ] {
        assert_eq!(
            code(s.send_dtmf(&with_te.session_id, digits, duration).await),
            Some(tonic::Code::InvalidArgument),
            "{digits:?} {duration}"
        );
    }
    assert_eq!(
        code(s.send_dtmf("s-nope", "1", 0).await),
        Some(tonic::Code::NotFound)
    );
    // The queue is bounded.
    let r = s
        .send_dtmf(&with_te.session_id, &"5".repeat(32), 5000)
        .await;
    assert!(matches!(r, R::SendDtmf(_)), "{r:?}");
    assert_eq!(
        code(s.send_dtmf(&with_te.session_id, "5", 0).await),
        Some(tonic::Code::ResourceExhausted)
    );
    d.stop().await;
}

#[tokio::test]
async fn relayed_audio_waits_while_an_event_is_sent() {
    let mut d = Daemon::start(config("8140-8159")).await;
    let alice = Peer::new().await;
    let bob = Peer::new().await;
    let mut s = Stream::open(&mut d).await;
    let a = s.create("dtmf-mute", &alice, TE).await;
    let b = s.create("dtmf-mute", &bob, TE).await;
    d.bridge(&a.session_id, &b.session_id).await;
    let to_a = rtp_addr(&a.local_sdp);
    let to_b = rtp_addr(&b.local_sdp);
    bob.send_rtp(to_b, 0, 1, 160, 9, &[0xff; 160]).await;
    alice.send_rtp(to_a, 0, 1, 160, 8, &[0xff; 160]).await;
    let first = alice.recv().await.expect("bob's audio reaches alice");
    assert_eq!(parse(&first).0, 0);

    let r = s.send_dtmf(&a.session_id, "9", 100).await;
    assert!(matches!(r, R::SendDtmf(_)), "{r:?}");
    // Bob keeps talking while the digit goes to alice.
    let talker = tokio::spawn(async move {
        for i in 2..40u16 {
            bob.send_rtp(to_b, 0, i, u32::from(i) * 160, 9, &[0xff; 160])
                .await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        bob
    });
    let mut seen = Vec::new();
    while seen.len() < 30 {
        let Some(p) = alice.recv().await else { break };
        seen.push(parse(&p));
    }
    talker.await.expect("talker");
    let kinds: Vec<u8> = seen.iter().map(|p| p.0).collect();
    let start = kinds
        .iter()
        .position(|pt| *pt == 101)
        .expect("the digit arrives");
    let end = kinds.iter().rposition(|pt| *pt == 101).expect("its end");
    assert!(
        kinds[start..=end].iter().all(|pt| *pt == 101),
        "no audio inside the event: {kinds:?}"
    );
    let after = seen.get(end + 1).expect("audio resumes after the event");
    assert_eq!(after.0, 0);
    assert!(after.1, "resumed audio carries the marker bit");
    assert_eq!(after.2, seen[end].2.wrapping_add(1), "one sequence space");
    let event_ts = seen[end].3;
    assert!(
        after.3.wrapping_sub(event_ts) >= 800,
        "audio timestamps continue after the event's 100 ms"
    );
    d.stop().await;
}

#[tokio::test]
async fn received_digits_are_reported_once_with_whether_the_peer_got_them() {
    let mut d = Daemon::start(config("8160-8179")).await;
    let mut watch = d
        .media
        .watch_sessions(pb::WatchSessionsRequest {})
        .await
        .expect("watch")
        .into_inner();
    let alice = Peer::new().await;
    let bob = Peer::new().await;
    let carol = Peer::new().await;
    let mut s = Stream::open(&mut d).await;
    let a = s.create("dtmf-rx", &alice, TE).await;
    // Bob negotiated no telephone-event: he cannot get alice's digits as
    // RFC 4733, so the report says `relayed: false` (swbd sends INFO).
    let b = s.create("dtmf-rx", &bob, "").await;
    d.bridge(&a.session_id, &b.session_id).await;
    let to_a = rtp_addr(&a.local_sdp);
    let mut seq = 1;
    send_event(&alice, to_a, &mut seq, 8000, 4).await;

    let e = s.event().await;
    assert_eq!(e.session_id, a.session_id);
    assert_eq!(e.kind, pb::SessionEventKind::Dtmf as i32);
    let dtmf = e.dtmf.expect("the digit");
    assert_eq!(
        (dtmf.digit.as_str(), dtmf.duration_ms, dtmf.relayed),
        ("4", 60, false)
    );
    let w = loop {
        let ev = tokio::time::timeout(WAIT, watch.message())
            .await
            .expect("watch event in time")
            .expect("watch ok")
            .expect("watch open");
        if ev.kind == pb::SessionEventKind::Dtmf as i32 {
            break ev;
        }
    };
    assert_eq!(w.dtmf.map(|d| d.digit), Some("4".to_string()));
    // Nothing of it reached bob: he has no payload type for it.
    assert!(bob.drain(Duration::from_millis(300)).await.is_empty());

    // With a peer that negotiated telephone-event: relayed, and reported.
    d.media
        .unbridge(pb::UnbridgeRequest {
            session_id: a.session_id.clone(),
        })
        .await
        .expect("unbridge");
    let c = s.create("dtmf-rx", &carol, TE).await;
    d.bridge(&a.session_id, &c.session_id).await;
    send_event(&alice, to_a, &mut seq, 16000, 11).await;
    let e = s.event().await;
    let dtmf = e.dtmf.expect("the digit");
    assert_eq!((dtmf.digit.as_str(), dtmf.relayed), ("#", true));
    let got: Vec<_> = carol
        .drain(Duration::from_millis(300))
        .await
        .iter()
        .map(|p| parse(p))
        .filter(|p| p.0 == 101)
        .collect();
    assert_eq!(got.len(), 5, "every packet of the event relayed to carol");
    d.stop().await;
}

#[tokio::test]
async fn a_flood_of_events_is_reported_within_the_budget() {
    let mut d = Daemon::start(config("8180-8199")).await;
    let alice = Peer::new().await;
    let mut s = Stream::open(&mut d).await;
    let a = s.create("dtmf-flood", &alice, TE).await;
    let to_a = rtp_addr(&a.local_sdp);
    // 200 one-packet events with fresh timestamps, as fast as possible.
    for i in 0..200u16 {
        let payload = [1, 0x80 | 10, 0x01, 0xe0];
        alice
            .send_rtp(to_a, 101, i, u32::from(i) * 1000, 0x5eed, &payload)
            .await;
    }
    // Then a marker digit, once the budget refilled a little.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut seq = 500;
    send_event(&alice, to_a, &mut seq, 900_000, 7).await;
    let mut reported = 0;
    loop {
        let e = s.event().await;
        let digit = e.dtmf.expect("dtmf").digit;
        if digit == "7" {
            break;
        }
        reported += 1;
    }
    assert!(
        (1..=25).contains(&reported),
        "{reported} of 200 flooded events reported"
    );
    d.stop().await;
}
