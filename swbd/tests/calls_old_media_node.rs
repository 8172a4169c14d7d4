//! A call through a media node that predates the batched RPCs (an older
//! swrtp during a rolling upgrade): `ConnectLegs` and `DestroySessions`
//! answer UNIMPLEMENTED, and swbd must fall back to the sequential
//! UpdateSession / CreateSession / Bridge and DestroySession calls.
//!
//! The old node is a real swrtp behind an in-process MediaService proxy that
//! forwards every RPC except the two new ones and counts what it saw. Without
//! the fallback the call fails at the answer (the B-leg gets BYE, the caller
//! an error) or its sessions stay on swrtp after the hang-up; the test checks
//! both, on swrtp itself rather than through the proxy. Once a node answered
//! UNIMPLEMENTED, swbd stops trying the batched RPCs on it (until the node
//! has been down and is back): later calls go straight to the sequential ones.
//! The old node has no `Control` stream either: swbd asks for it once,
//! gets UNIMPLEMENTED, and sends every command as its own RPC.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::Stream;
use support::ua::{Ua, sdp, sdp_media_addr};
use support::{Options, System};
use switchboard_proto::admin::v1 as admin_pb;
use switchboard_proto::media::v1 as pb;
use switchboard_proto::media::v1::media_service_client::MediaServiceClient;
use switchboard_proto::media::v1::media_service_server::{MediaService, MediaServiceServer};
use switchboard_proto::support::grpc::{AuthedChannel, BearerToken};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Endpoint, Server};
use tonic::{Request, Response, Status};

/// Calls the proxy saw, per MediaService method.
#[derive(Debug, Default)]
struct Calls {
    create_session: AtomicU32,
    update_session: AtomicU32,
    destroy_session: AtomicU32,
    connect_legs: AtomicU32,
    destroy_sessions: AtomicU32,
    bridge: AtomicU32,
    unbridge: AtomicU32,
    play: AtomicU32,
    stop_playback: AtomicU32,
    health: AtomicU32,
    watch_sessions: AtomicU32,
    control: AtomicU32,
}

fn count(c: &AtomicU32) {
    c.fetch_add(1, Ordering::SeqCst);
}

fn get(c: &AtomicU32) -> u32 {
    c.load(Ordering::SeqCst)
}

/// A MediaService as an older swrtp offers it: everything but `ConnectLegs`
/// and `DestroySessions` forwarded to a real swrtp.
struct OldNode {
    upstream: MediaServiceClient<AuthedChannel>,
    calls: Arc<Calls>,
}

type Forwarded<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl MediaService for OldNode {
    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        count(&self.calls.create_session);
        self.upstream
            .clone()
            .create_session(request.into_inner())
            .await
    }

    async fn update_session(
        &self,
        request: Request<pb::UpdateSessionRequest>,
    ) -> Result<Response<pb::UpdateSessionResponse>, Status> {
        count(&self.calls.update_session);
        self.upstream
            .clone()
            .update_session(request.into_inner())
            .await
    }

    async fn reoffer_session(
        &self,
        _request: Request<pb::ReofferSessionRequest>,
    ) -> Result<Response<pb::ReofferSessionResponse>, Status> {
        Err(Status::unimplemented("ReofferSession: old swrtp"))
    }

    async fn destroy_session(
        &self,
        request: Request<pb::DestroySessionRequest>,
    ) -> Result<Response<pb::DestroySessionResponse>, Status> {
        count(&self.calls.destroy_session);
        self.upstream
            .clone()
            .destroy_session(request.into_inner())
            .await
    }

    type ControlStream = Forwarded<pb::ControlReply>;

    async fn control(
        &self,
        _request: Request<tonic::Streaming<pb::ControlRequest>>,
    ) -> Result<Response<Self::ControlStream>, Status> {
        count(&self.calls.control);
        Err(Status::unimplemented("Control: old swrtp"))
    }

    async fn connect_legs(
        &self,
        _request: Request<pb::ConnectLegsRequest>,
    ) -> Result<Response<pb::ConnectLegsResponse>, Status> {
        count(&self.calls.connect_legs);
        Err(Status::unimplemented("ConnectLegs: old swrtp"))
    }

    async fn destroy_sessions(
        &self,
        _request: Request<pb::DestroySessionsRequest>,
    ) -> Result<Response<pb::DestroySessionsResponse>, Status> {
        count(&self.calls.destroy_sessions);
        Err(Status::unimplemented("DestroySessions: old swrtp"))
    }

    async fn bridge(
        &self,
        request: Request<pb::BridgeRequest>,
    ) -> Result<Response<pb::BridgeResponse>, Status> {
        count(&self.calls.bridge);
        self.upstream.clone().bridge(request.into_inner()).await
    }

    async fn unbridge(
        &self,
        request: Request<pb::UnbridgeRequest>,
    ) -> Result<Response<pb::UnbridgeResponse>, Status> {
        count(&self.calls.unbridge);
        self.upstream.clone().unbridge(request.into_inner()).await
    }

    type PlayStream = Forwarded<pb::PlayEvent>;

    async fn play(
        &self,
        request: Request<pb::PlayRequest>,
    ) -> Result<Response<Self::PlayStream>, Status> {
        count(&self.calls.play);
        let events = self
            .upstream
            .clone()
            .play(request.into_inner())
            .await?
            .into_inner();
        Ok(Response::new(Box::pin(events)))
    }

    async fn stop_playback(
        &self,
        request: Request<pb::StopPlaybackRequest>,
    ) -> Result<Response<pb::StopPlaybackResponse>, Status> {
        count(&self.calls.stop_playback);
        self.upstream
            .clone()
            .stop_playback(request.into_inner())
            .await
    }

    async fn health(
        &self,
        request: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        count(&self.calls.health);
        self.upstream.clone().health(request.into_inner()).await
    }

    type WatchSessionsStream = Forwarded<pb::SessionEvent>;

    async fn watch_sessions(
        &self,
        request: Request<pb::WatchSessionsRequest>,
    ) -> Result<Response<Self::WatchSessionsStream>, Status> {
        count(&self.calls.watch_sessions);
        let events = self
            .upstream
            .clone()
            .watch_sessions(request.into_inner())
            .await?
            .into_inner();
        Ok(Response::new(Box::pin(events)))
    }
}

/// Start the system with swbd's only media node behind an [`OldNode`] proxy.
async fn start_with_old_node(opts: Options) -> (System, Arc<Calls>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let proxy: SocketAddr = listener.local_addr().expect("proxy address");
    let calls = Arc::new(Calls::default());
    let counted = calls.clone();
    let sys = System::start_with_node_addresses(opts, move |nodes| {
        let node = nodes.first().expect("one swrtp");
        let upstream = node
            .control
            .strip_prefix("tcp://")
            .expect("swrtp listens on tcp");
        // Lazy: swrtp may still be starting; swbd's health checks retry.
        let channel = Endpoint::from_shared(format!("http://{upstream}"))
            .expect("swrtp endpoint")
            .connect_lazy();
        let service = OldNode {
            upstream: MediaServiceClient::with_interceptor(
                channel,
                BearerToken::new(&node.token()),
            ),
            calls: counted,
        };
        tokio::spawn(
            Server::builder()
                .add_service(MediaServiceServer::new(service))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        vec![format!("tcp://{proxy}")]
    })
    .await;
    (sys, calls)
}

#[tokio::test]
async fn call_through_a_node_without_batched_rpcs_uses_the_sequential_ones() {
    let (sys, calls) = start_with_old_node(Options::default()).await;
    assert!(
        get(&calls.health) >= 1,
        "swbd checks health through the proxy"
    );
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);

    // First call: early media (183 with SDP), so the answer takes the
    // sequential path and ConnectLegs is not tried; the teardown tries
    // DestroySessions, gets UNIMPLEMENTED and releases both sessions with
    // DestroySession.
    let mut early = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    bob.reply(
        &inv,
        183,
        "Session Progress",
        Some("early"),
        Some(&sdp(bob.rtp_port)),
    )
    .await;
    bob.reply(&inv, 200, "OK", Some("early"), Some(&sdp(bob.rtp_port)))
        .await;
    let _ack = bob.request("ACK").await;
    assert_eq!(alice.final_response(&mut early).await.code, 200);
    alice.ack(&early).await;
    assert_eq!(get(&calls.connect_legs), 0, "early media: no ConnectLegs");
    assert_eq!(alice.bye(&early).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    // Without the DestroySessions fallback both sessions stay on swrtp:
    // assert_clean asks swrtp's admin directly for an empty, full pool.
    sys.assert_clean().await;
    assert_eq!(get(&calls.destroy_sessions), 1, "DestroySessions was tried");
    assert!(get(&calls.destroy_session) >= 2, "then DestroySession");
    let released_one_by_one = get(&calls.destroy_session);

    // Second call: swbd remembers that this node has no batched RPCs and
    // goes straight to the sequential ones.
    let mut call = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    let b_media = sdp_media_addr(&inv.body).expect("B offer has media");
    bob.reply(&inv, 180, "Ringing", Some("bobtag"), None).await;
    bob.reply(&inv, 200, "OK", Some("bobtag"), Some(&sdp(bob.rtp_port)))
        .await;
    let _ack = bob.request("ACK").await;

    // Without the ConnectLegs fallback the answer fails here: the caller
    // gets an error instead of 200 (and bob a BYE).
    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200, "the caller is answered");
    alice.ack(&call).await;
    let a_media = sdp_media_addr(&ok.body).expect("200 has SDP");
    assert_eq!(
        get(&calls.connect_legs),
        0,
        "ConnectLegs not tried: the node is known to lack it"
    );
    assert!(
        get(&calls.update_session) >= 1,
        "B's answer via UpdateSession"
    );
    assert!(
        get(&calls.create_session) >= 2,
        "B's offer and A's answer via CreateSession"
    );
    assert!(get(&calls.bridge) >= 1, "legs bridged via Bridge");

    // swrtp itself (not the proxy) has the two legs bridged to each other.
    let swbd_calls = sys.active_calls().await;
    assert_eq!(swbd_calls.len(), 1);
    assert_eq!(swbd_calls[0].state, admin_pb::CallState::Bridged as i32);
    let mut media = sys.media_admin(0).await;
    let sessions = media
        .list_sessions(admin_pb::ListMediaSessionsRequest {
            call_id: swbd_calls[0].call_id.clone(),
        })
        .await
        .expect("list sessions")
        .into_inner()
        .sessions;
    assert_eq!(sessions.len(), 2, "one session per leg: {sessions:?}");
    assert_eq!(sessions[0].bridged_with, sessions[1].session_id);
    assert_eq!(sessions[1].bridged_with, sessions[0].session_id);

    // RTP both ways through the relay.
    let payload = [0x55u8; 160];
    for seq in 0..20u16 {
        alice.send_rtp(a_media, seq, 0xA11CE, &payload).await;
        bob.send_rtp(b_media, seq, 0xB0B, &[0x2a; 160]).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let at_bob = bob.recv_rtp(5, 10).await;
    let at_alice = alice.recv_rtp(5, 10).await;
    assert!(!at_bob.is_empty(), "bob hears alice");
    assert!(!at_alice.is_empty(), "alice hears bob");
    assert_eq!(at_bob[0].get(12..), Some(&payload[..]), "alice's payload");
    assert_eq!(
        at_alice[0].get(12..),
        Some(&[0x2a; 160][..]),
        "bob's payload"
    );

    // Alice hangs up: bob gets BYE.
    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;

    sys.assert_clean().await;
    assert_eq!(
        get(&calls.destroy_sessions),
        1,
        "DestroySessions not tried again"
    );
    assert!(
        get(&calls.destroy_session) >= released_one_by_one + 2,
        "both sessions released one by one via DestroySession"
    );
    assert_eq!(
        get(&calls.control),
        1,
        "Control asked for once, then every command went unary"
    );
    assert!(get(&calls.create_session) >= 2, "sessions created unary");
}

/// The caller is answered and hears a prompt before the dial: the A-leg
/// session exists when B answers, so ConnectLegs is tried with it as the
/// peer, and the fallback must bridge that session rather than create one.
#[tokio::test]
async fn prompt_then_dial_through_a_node_without_batched_rpcs_bridges_the_existing_session() {
    let plan = "version: 1\nroutes:\n  - id: ext\n    match: { destination: \"1???\" }\n    actions:\n      - answer\n      - playback: { file: beep-440.wav }\n      - dial: { target: \"user/${destination}\", timeout: 10s }\n";
    let (sys, calls) = start_with_old_node(Options {
        dialplan: Some(plan.into()),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);

    let mut call = alice.invite("1002", None).await;
    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200, "answered before the prompt");
    alice.ack(&call).await;
    let a_media = sdp_media_addr(&ok.body).expect("200 has SDP");

    // After the prompt (streamed through the proxy), bob is dialled.
    let inv = bob.request("INVITE").await;
    assert!(get(&calls.play) >= 1, "the prompt went through Play");
    let b_media = sdp_media_addr(&inv.body).expect("B offer has media");
    bob.reply(&inv, 200, "OK", Some("bobtag"), Some(&sdp(bob.rtp_port)))
        .await;
    let _ack = bob.request("ACK").await;
    assert_eq!(get(&calls.connect_legs), 1, "ConnectLegs was tried once");

    // Still bridged A's own session (the one alice's 200 points at) with B's.
    let mut media = sys.media_admin(0).await;
    let swbd_call = support::eventually(10, "call bridged", || async {
        let calls = sys.active_calls().await;
        calls
            .into_iter()
            .find(|c| c.state == admin_pb::CallState::Bridged as i32)
    })
    .await;
    let sessions = media
        .list_sessions(admin_pb::ListMediaSessionsRequest {
            call_id: swbd_call.call_id.clone(),
        })
        .await
        .expect("list sessions")
        .into_inner()
        .sessions;
    assert_eq!(sessions.len(), 2, "no extra A session: {sessions:?}");
    let a = sessions
        .iter()
        .find(|s| s.rtp_port == u32::from(a_media.port()))
        .expect("the session alice was answered with");
    let b = sessions
        .iter()
        .find(|s| s.session_id != a.session_id)
        .expect("B's session");
    assert_eq!(a.bridged_with, b.session_id);
    assert_eq!(b.bridged_with, a.session_id);
    assert_eq!(get(&calls.create_session), 2, "A's answer and B's offer");
    assert!(
        get(&calls.update_session) >= 1,
        "B's answer via UpdateSession"
    );
    assert!(get(&calls.bridge) >= 1, "legs bridged via Bridge");

    // RTP both ways through the relay.
    let payload = [0x55u8; 160];
    for seq in 0..20u16 {
        alice.send_rtp(a_media, seq, 0xA11CE, &payload).await;
        bob.send_rtp(b_media, seq, 0xB0B, &[0x2a; 160]).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let at_bob = bob.recv_rtp(5, 10).await;
    assert!(!at_bob.is_empty(), "bob hears alice");
    assert_eq!(at_bob[0].get(12..), Some(&payload[..]), "alice's payload");
    // Alice may still have prompt packets queued: look for bob's among them.
    let at_alice = alice.recv_rtp(2, 200).await;
    assert!(
        at_alice
            .iter()
            .any(|p| p.get(12..) == Some(&[0x2a; 160][..])),
        "alice hears bob"
    );

    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
    assert_eq!(
        get(&calls.destroy_sessions),
        0,
        "after ConnectLegs' UNIMPLEMENTED the teardown goes straight to DestroySession"
    );
    assert!(
        get(&calls.destroy_session) >= 2,
        "both sessions released one by one via DestroySession"
    );
}
