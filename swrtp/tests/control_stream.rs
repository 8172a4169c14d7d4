//! `Control`: the per-call commands over one stream. Replies carry their
//! request's id, errors are replies (with the unary RPC's status code) and
//! leave the stream open, commands run concurrently, and the reply stream
//! ends once the client ends its requests and the running commands are done.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use pb::control_reply::Result as R;
use pb::control_request::Command as C;
use switchboard_proto::media::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

fn create(call: &str, sdp: String) -> C {
    C::CreateSession(pb::CreateSessionRequest {
        call_id: call.into(),
        leg: "a".into(),
        negotiation: Some(pb::create_session_request::Negotiation::RemoteOfferSdp(sdp)),
        peer: None,
        ..Default::default()
    })
}

fn send(tx: &mpsc::UnboundedSender<pb::ControlRequest>, id: u64, command: Option<C>) {
    tx.send(pb::ControlRequest { id, command }).expect("send");
}

async fn next(replies: &mut tonic::Streaming<pb::ControlReply>) -> pb::ControlReply {
    tokio::time::timeout(Duration::from_secs(5), replies.message())
        .await
        .expect("a reply in time")
        .expect("stream ok")
        .expect("stream open")
}

/// A Control stream on `d`.
async fn open(
    d: &mut Daemon,
) -> (
    mpsc::UnboundedSender<pb::ControlRequest>,
    tonic::Streaming<pb::ControlReply>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let replies = d
        .media
        .control(UnboundedReceiverStream::new(rx))
        .await
        .expect("control stream")
        .into_inner();
    (tx, replies)
}

/// Create a session over the stream and destroy it (unary): both paths work.
async fn create_and_destroy(d: &mut Daemon, alice: &Peer, call: &str) {
    let (tx, mut replies) = open(d).await;
    send(
        &tx,
        1,
        Some(create(call, offer_sdp(alice.sdp_port, "0", ""))),
    );
    let r = next(&mut replies).await;
    let Some(R::CreateSession(c)) = r.result else {
        panic!("create reply: {r:?}")
    };
    d.destroy(&c.session_id).await;
}

fn error_code(r: &pb::ControlReply) -> Option<tonic::Code> {
    match &r.result {
        Some(R::Error(e)) => Some(tonic::Code::from_i32(e.code)),
        _ => None,
    }
}

#[tokio::test]
async fn commands_errors_and_ids_on_one_stream() {
    let mut d = Daemon::start(config("7700-7799")).await;
    let alice = Peer::new().await;
    let (tx, mut replies) = open(&mut d).await;

    // A good command, then three bad ones: each bad one is a reply with the
    // unary RPC's code, and the stream keeps working.
    send(
        &tx,
        10,
        Some(create("call-1", offer_sdp(alice.sdp_port, "0", ""))),
    );
    let r = next(&mut replies).await;
    assert_eq!(r.id, 10);
    let Some(R::CreateSession(created)) = r.result else {
        panic!("create reply: {r:?}")
    };
    assert!(created.local_sdp.contains("m=audio"));
    send(&tx, 11, Some(create("call-2", "not sdp".into())));
    send(
        &tx,
        12,
        Some(C::DestroySession(pb::DestroySessionRequest {
            session_id: "no-such-session".into(),
        })),
    );
    send(&tx, 13, None);
    let mut got = HashMap::new();
    for _ in 0..3 {
        let r = next(&mut replies).await;
        got.insert(r.id, error_code(&r));
    }
    assert_eq!(got[&11], Some(tonic::Code::InvalidArgument), "bad SDP");
    assert_eq!(got[&12], Some(tonic::Code::NotFound), "unknown session");
    assert_eq!(got[&13], Some(tonic::Code::InvalidArgument), "no command");

    // Many at once: every id answered once, every session really made.
    let n = 40u64;
    for i in 0..n {
        send(
            &tx,
            100 + i,
            Some(create(
                &format!("many-{i}"),
                offer_sdp(alice.sdp_port, "0 8", ""),
            )),
        );
    }
    let mut ids = Vec::new();
    for _ in 0..n {
        let r = next(&mut replies).await;
        let Some(R::CreateSession(c)) = r.result else {
            panic!("create reply: {r:?}")
        };
        ids.push((r.id, c.session_id));
    }
    ids.sort();
    assert_eq!(
        ids.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        (100..100 + n).collect::<Vec<_>>()
    );
    let health = d.health().await;
    assert_eq!(u64::from(health.active_sessions), n + 1);

    // One teardown for all of them, plus the first session.
    let mut all: Vec<String> = ids.into_iter().map(|(_, s)| s).collect();
    all.push(created.session_id);
    send(
        &tx,
        500,
        Some(C::DestroySessions(pb::DestroySessionsRequest {
            session_ids: all,
        })),
    );
    let r = next(&mut replies).await;
    assert_eq!(r.id, 500);
    let Some(R::DestroySessions(done)) = r.result else {
        panic!("destroy reply: {r:?}")
    };
    assert_eq!(done.stats.len() as u64, n + 1);
    assert!(done.not_found.is_empty());
    assert_eq!(d.health().await.active_sessions, 0);

    // Ending the requests ends the replies.
    drop(tx);
    let end = tokio::time::timeout(Duration::from_secs(5), replies.message())
        .await
        .expect("ends in time")
        .expect("clean end");
    assert!(end.is_none(), "no reply after the requests ended: {end:?}");
    d.stop().await;
}

#[tokio::test]
async fn a_client_that_goes_away_leaves_the_daemon_serving() {
    let mut d = Daemon::start(config("7800-7819")).await;
    let alice = Peer::new().await;
    // Dropped mid-stream, requests and replies both.
    create_and_destroy(&mut d, &alice, "gone").await;
    // The daemon still takes new streams and unary calls.
    create_and_destroy(&mut d, &alice, "again").await;
    assert_eq!(d.health().await.active_sessions, 0);
    d.stop().await;
}
