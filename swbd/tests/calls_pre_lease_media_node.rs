//! A call through a media node that has the `Control` stream but predates
//! session leases (a rolling upgrade, swbd first): the node decodes the
//! lease commands as a request without a command and answers
//! INVALID_ARGUMENT. swbd must take that as "no leases here": calls work,
//! the stream is not torn down and reopened over it, and no renewal is sent
//! after the first refusal.
//!
//! The old node is a real swrtp behind an in-process MediaService proxy that
//! forwards everything, the Control stream included, except that it turns
//! `renew_leases` / `reconcile_owner` into commands it does not know (what
//! prost makes of an unknown oneof field) and drops the owner headers (an
//! old node ignores them).
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt};
use support::ua::{Ua, sdp};
use support::{Options, System};
use switchboard_proto::admin::v1 as admin_pb;
use switchboard_proto::media::v1 as pb;
use switchboard_proto::media::v1::media_service_client::MediaServiceClient;
use switchboard_proto::media::v1::media_service_server::{MediaService, MediaServiceServer};
use switchboard_proto::support::grpc::{AuthedChannel, BearerToken};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Endpoint, Server};
use tonic::{Request, Response, Status};

#[derive(Debug, Default)]
struct Seen {
    control_streams: AtomicU32,
    lease_commands: AtomicU32,
}

/// A MediaService as an swrtp with `Control` but without leases offers it.
struct PreLeaseNode {
    upstream: MediaServiceClient<AuthedChannel>,
    seen: Arc<Seen>,
}

type Forwarded<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl MediaService for PreLeaseNode {
    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        self.upstream
            .clone()
            .create_session(request.into_inner())
            .await
    }

    async fn update_session(
        &self,
        request: Request<pb::UpdateSessionRequest>,
    ) -> Result<Response<pb::UpdateSessionResponse>, Status> {
        self.upstream
            .clone()
            .update_session(request.into_inner())
            .await
    }

    async fn reoffer_session(
        &self,
        request: Request<pb::ReofferSessionRequest>,
    ) -> Result<Response<pb::ReofferSessionResponse>, Status> {
        self.upstream
            .clone()
            .reoffer_session(request.into_inner())
            .await
    }

    async fn destroy_session(
        &self,
        request: Request<pb::DestroySessionRequest>,
    ) -> Result<Response<pb::DestroySessionResponse>, Status> {
        self.upstream
            .clone()
            .destroy_session(request.into_inner())
            .await
    }

    async fn connect_legs(
        &self,
        request: Request<pb::ConnectLegsRequest>,
    ) -> Result<Response<pb::ConnectLegsResponse>, Status> {
        self.upstream
            .clone()
            .connect_legs(request.into_inner())
            .await
    }

    async fn destroy_sessions(
        &self,
        request: Request<pb::DestroySessionsRequest>,
    ) -> Result<Response<pb::DestroySessionsResponse>, Status> {
        self.upstream
            .clone()
            .destroy_sessions(request.into_inner())
            .await
    }

    async fn bridge(
        &self,
        request: Request<pb::BridgeRequest>,
    ) -> Result<Response<pb::BridgeResponse>, Status> {
        self.upstream.clone().bridge(request.into_inner()).await
    }

    async fn unbridge(
        &self,
        request: Request<pb::UnbridgeRequest>,
    ) -> Result<Response<pb::UnbridgeResponse>, Status> {
        self.upstream.clone().unbridge(request.into_inner()).await
    }

    type PlayStream = Forwarded<pb::PlayEvent>;

    async fn play(
        &self,
        request: Request<pb::PlayRequest>,
    ) -> Result<Response<Self::PlayStream>, Status> {
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
        self.upstream
            .clone()
            .stop_playback(request.into_inner())
            .await
    }

    async fn health(
        &self,
        request: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        self.upstream.clone().health(request.into_inner()).await
    }

    type WatchSessionsStream = Forwarded<pb::SessionEvent>;

    async fn watch_sessions(
        &self,
        request: Request<pb::WatchSessionsRequest>,
    ) -> Result<Response<Self::WatchSessionsStream>, Status> {
        let events = self
            .upstream
            .clone()
            .watch_sessions(request.into_inner())
            .await?
            .into_inner();
        Ok(Response::new(Box::pin(events)))
    }

    type ControlStream = Forwarded<pb::ControlReply>;

    async fn control(
        &self,
        request: Request<tonic::Streaming<pb::ControlRequest>>,
    ) -> Result<Response<Self::ControlStream>, Status> {
        use pb::control_request::Command as C;
        self.seen.control_streams.fetch_add(1, Ordering::SeqCst);
        let seen = self.seen.clone();
        // No owner headers go upstream (the request is rebuilt), and lease
        // commands arrive as an old node decodes them: without a command.
        let inbound = request
            .into_inner()
            .take_while(|r| std::future::ready(r.is_ok()))
            .filter_map(|r| std::future::ready(r.ok()))
            .map(move |mut req| {
                if matches!(
                    req.command,
                    Some(C::RenewLeases(_)) | Some(C::ReconcileOwner(_))
                ) {
                    seen.lease_commands.fetch_add(1, Ordering::SeqCst);
                    req.command = None;
                }
                req
            });
        let replies = self.upstream.clone().control(inbound).await?.into_inner();
        Ok(Response::new(Box::pin(replies)))
    }
}

/// The system with swbd's only media node behind a [`PreLeaseNode`] proxy.
async fn start_with_pre_lease_node(opts: Options) -> (System, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let proxy: SocketAddr = listener.local_addr().expect("proxy address");
    let seen = Arc::new(Seen::default());
    let counted = seen.clone();
    let sys = System::start_with_node_addresses(opts, move |nodes| {
        let node = nodes.first().expect("one swrtp");
        let upstream = node
            .control
            .strip_prefix("tcp://")
            .expect("swrtp listens on tcp");
        let channel = Endpoint::from_shared(format!("http://{upstream}"))
            .expect("swrtp endpoint")
            .connect_lazy();
        let service = PreLeaseNode {
            upstream: MediaServiceClient::with_interceptor(
                channel,
                BearerToken::new(&node.token()),
            ),
            seen: counted,
        };
        tokio::spawn(
            Server::builder()
                .add_service(MediaServiceServer::new(service))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        vec![format!("tcp://{proxy}")]
    })
    .await;
    (sys, seen)
}

#[tokio::test]
async fn a_node_without_leases_gets_calls_and_no_renewals() {
    let (sys, seen) = start_with_pre_lease_node(Options {
        media_extra: "  lease_secs: 3\n  lease_renew_secs: 1\n".into(),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);

    let mut call = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    bob.reply(&inv, 200, "OK", Some("b"), Some(&sdp(bob.rtp_port)))
        .await;
    let _ack = bob.request("ACK").await;
    assert_eq!(alice.final_response(&mut call).await.code, 200);
    alice.ack(&call).await;

    // Several renewal periods: the call stays, nothing more is renewed.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let calls = sys.active_calls().await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].state, admin_pb::CallState::Bridged as i32);
    let sessions = sys
        .media_admin(0)
        .await
        .list_sessions(admin_pb::ListMediaSessionsRequest::default())
        .await
        .expect("list sessions")
        .into_inner()
        .sessions;
    assert_eq!(sessions.len(), 2);
    for s in &sessions {
        assert_eq!(s.owner, "", "an old node knows no owner: {s:?}");
    }
    assert_eq!(
        seen.lease_commands.load(Ordering::SeqCst),
        1,
        "one reconcile refused, then no renewals"
    );
    assert_eq!(
        seen.control_streams.load(Ordering::SeqCst),
        1,
        "the stream survived the refusal"
    );

    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}
