//! swbd's media client against a real swrtp: per-call commands over the
//! node's `Control` stream. Concurrent commands each get their own reply,
//! errors keep the unary RPC's status code, a node that dies fails waiting
//! and new commands at once (UNAVAILABLE, no hang), and the stream is
//! reopened when the node is back.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::time::Duration;

use support::{free_tcp_port, start_swrtp_on, tempdir};
use swbd::media::MediaClient;
use switchboard_proto::media::v1 as pb;

fn offer(port: u16) -> String {
    format!(
        "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 8\r\n"
    )
}

async fn create(
    client: &MediaClient,
    call: &str,
) -> Result<pb::CreateSessionResponse, tonic::Status> {
    client
        .clone()
        .create_session(pb::CreateSessionRequest {
            call_id: call.into(),
            leg: "a".into(),
            negotiation: Some(pb::create_session_request::Negotiation::RemoteOfferSdp(
                offer(40000),
            )),
            peer: None,
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Retry until the node answers (it is starting).
async fn create_eventually(client: &MediaClient, call: &str) -> pb::CreateSessionResponse {
    for _ in 0..100 {
        if let Ok(r) = create(client, call).await {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("swrtp never answered CreateSession");
}

#[tokio::test]
async fn commands_share_one_stream_errors_map_and_it_reopens_after_a_restart() {
    let dir = tempdir("media-control");
    let port = free_tcp_port();
    let mut node = start_swrtp_on(&dir, "ctl", 0, port);
    let client = MediaClient::connect_lazy(&format!("tcp://127.0.0.1:{port}"), Some(&node.token()))
        .expect("client");

    let first = create_eventually(&client, "c0").await;

    // Concurrent commands on the one stream: each its own answer.
    let replies = futures::future::join_all((0..30).map(|i| {
        let client = client.clone();
        async move { create(&client, &format!("c{}", i + 1)).await }
    }))
    .await;
    let mut ids: Vec<String> = replies
        .into_iter()
        .map(|r| r.expect("create").session_id)
        .collect();
    ids.push(first.session_id);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 31, "distinct sessions");

    // Errors keep their codes.
    let bad = client
        .clone()
        .destroy_session(pb::DestroySessionRequest {
            session_id: "nope".into(),
        })
        .await
        .expect_err("unknown session");
    assert_eq!(bad.code(), tonic::Code::NotFound);
    let bad = client
        .clone()
        .create_session(pb::CreateSessionRequest {
            call_id: "x".into(),
            leg: "a".into(),
            negotiation: Some(pb::create_session_request::Negotiation::RemoteOfferSdp(
                "garbage".into(),
            )),
            peer: None,
            ..Default::default()
        })
        .await
        .expect_err("bad sdp");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    let done = client
        .clone()
        .destroy_sessions(pb::DestroySessionsRequest { session_ids: ids })
        .await
        .expect("teardown")
        .into_inner();
    assert_eq!(done.stats.len(), 31);

    // The node dies: a command fails fast instead of waiting for a reply.
    node.proc.kill();
    let started = std::time::Instant::now();
    let lost = create(&client, "lost").await.expect_err("node is gone");
    assert!(
        matches!(
            lost.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
        ),
        "{lost:?}"
    );
    assert!(
        started.elapsed() < swbd::media::COMMAND_TIMEOUT,
        "failed by the lost connection, not the command timeout"
    );

    // Back on the same address: the next commands open a new stream.
    let _node = start_swrtp_on(&dir, "ctl", 0, port);
    let again = create_eventually(&client, "again").await;
    client
        .clone()
        .destroy_session(pb::DestroySessionRequest {
            session_id: again.session_id,
        })
        .await
        .expect("destroy after the restart");
}
