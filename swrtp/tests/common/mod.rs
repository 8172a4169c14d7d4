//! Shared helpers of the black-box tests: an in-process daemon on loopback,
//! gRPC clients, and UDP test peers speaking real RTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use switchboard_proto::admin::v1::media_admin_client::MediaAdminClient;
use switchboard_proto::media::v1 as pb;
use switchboard_proto::media::v1::media_service_client::MediaServiceClient;
use switchboard_proto::support::grpc::{AuthedChannel, BearerToken, Endpoint};
use switchboard_proto::support::secret::{self, Token};
use switchboard_proto::support::shutdown::{self, ShutdownTrigger};
use swrtp::config::Config;
use tokio::net::UdpSocket;

/// Generous: tests wait for conditions, never assert durations.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Daemon {
    pub media: MediaServiceClient<AuthedChannel>,
    pub admin: MediaAdminClient<AuthedChannel>,
    /// The media token the clients send.
    pub media_token: Token,
    pub running: Option<swrtp::Running>,
    pub trigger: ShutdownTrigger,
}

pub fn audio_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/audio"))
}

/// A private directory of its own for one test daemon's token files.
pub fn token_dir() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "swrtp-test-tokens-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("token dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    dir
}

pub fn config(ports: &str) -> Config {
    let tokens = token_dir();
    Config {
        node_id: "test-node".into(),
        listen: "tcp://127.0.0.1:0".into(),
        admin: "tcp://127.0.0.1:0".into(),
        media_token_file: Some(tokens.join("media.token")),
        admin_token_file: Some(tokens.join("admin.token")),
        rtp_ports: ports.into(),
        audio_dir: audio_dir(),
        ..Config::default()
    }
}

/// A client channel to `e` sending `token`.
pub async fn authed(e: &Endpoint, token: &Token) -> AuthedChannel {
    let channel = tonic::transport::Endpoint::from_shared(url(e))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    tonic::service::interceptor::InterceptedService::new(channel, BearerToken::new(token))
}

fn url(e: &Endpoint) -> String {
    match e {
        Endpoint::Tcp(a) => format!("http://{a}"),
        Endpoint::Unix(p) => panic!("tests use tcp, got {}", p.display()),
    }
}

impl Daemon {
    pub async fn start(config: Config) -> Self {
        let (trigger, shutdown) = shutdown::channel();
        let media_file = config
            .media_token_file
            .clone()
            .expect("tests name the media token");
        let admin_file = config
            .admin_token_file
            .clone()
            .expect("tests name the admin token");
        let running = swrtp::start(config, shutdown).await.expect("start swrtp");
        let media_token = secret::load_token(&media_file).expect("media token");
        let admin_token = secret::load_token(&admin_file).expect("admin token");
        let media = MediaServiceClient::new(authed(&running.listen, &media_token).await);
        let admin = MediaAdminClient::new(authed(&running.admin, &admin_token).await);
        Self {
            media,
            admin,
            media_token,
            running: Some(running),
            trigger,
        }
    }

    pub async fn stop(mut self) {
        self.trigger.trigger();
        if let Some(r) = self.running.take() {
            r.wait().await.expect("clean stop");
        }
    }

    pub async fn health(&mut self) -> pb::HealthResponse {
        self.media
            .health(pb::HealthRequest {})
            .await
            .expect("health")
            .into_inner()
    }

    /// Answer an offer from `peer`.
    pub async fn answer(
        &mut self,
        call: &str,
        peer: &Peer,
        pts: &str,
        extra: &str,
    ) -> pb::CreateSessionResponse {
        self.media
            .create_session(pb::CreateSessionRequest {
                call_id: call.into(),
                leg: "a".into(),
                negotiation: Some(pb::create_session_request::Negotiation::RemoteOfferSdp(
                    offer_sdp(peer.sdp_port, pts, extra),
                )),
                peer: None,
                ..Default::default()
            })
            .await
            .expect("create (answer)")
            .into_inner()
    }

    /// Offer to `peer`, who answers with `pts`.
    pub async fn offer(&mut self, call: &str, peer: &Peer, pts: &str, extra: &str) -> String {
        let created = self
            .media
            .create_session(pb::CreateSessionRequest {
                call_id: call.into(),
                leg: "b".into(),
                negotiation: Some(pb::create_session_request::Negotiation::Offer(
                    pb::OfferOptions {
                        codecs: vec![],
                        telephone_event: true,
                        ptime_ms: 0,
                    },
                )),
                peer: None,
                ..Default::default()
            })
            .await
            .expect("create (offer)")
            .into_inner();
        let updated = self
            .media
            .update_session(pb::UpdateSessionRequest {
                session_id: created.session_id.clone(),
                remote_sdp: offer_sdp(peer.sdp_port, pts, extra),
                ..Default::default()
            })
            .await
            .expect("apply answer")
            .into_inner();
        assert!(updated.local_sdp.is_empty(), "an answer gets no SDP back");
        created.session_id
    }

    pub async fn destroy(&mut self, id: &str) -> pb::SessionStats {
        self.media
            .destroy_session(pb::DestroySessionRequest {
                session_id: id.into(),
            })
            .await
            .expect("destroy")
            .into_inner()
            .stats
            .unwrap_or_default()
    }

    pub async fn bridge(&mut self, a: &str, b: &str) {
        self.media
            .bridge(pb::BridgeRequest {
                session_a: a.into(),
                session_b: b.into(),
            })
            .await
            .expect("bridge");
    }
}

pub fn offer_sdp(port: u16, pts: &str, extra: &str) -> String {
    format!(
        "v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP {pts}\r\n{extra}"
    )
}

/// Our RTP address from a local SDP.
pub fn rtp_addr(local_sdp: &str) -> SocketAddr {
    let port = local_sdp
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse::<u16>().ok())
        .expect("m=audio port");
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A test endpoint: the socket it really sends from, and the port its SDP names.
pub struct Peer {
    pub sock: UdpSocket,
    pub sdp_port: u16,
}

impl Peer {
    pub async fn new() -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind peer");
        let sdp_port = sock.local_addr().expect("addr").port();
        Self { sock, sdp_port }
    }

    /// A peer whose SDP names a port it never sends from (NAT).
    pub async fn behind_nat() -> Self {
        let decoy = std::net::UdpSocket::bind("127.0.0.1:0").expect("decoy");
        let sdp_port = decoy.local_addr().expect("addr").port();
        drop(decoy);
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind peer");
        Self { sock, sdp_port }
    }

    pub async fn send_rtp(
        &self,
        to: SocketAddr,
        pt: u8,
        seq: u16,
        ts: u32,
        ssrc: u32,
        payload: &[u8],
    ) {
        let pkt = rtp(pt, seq, ts, ssrc, false, payload);
        self.sock.send_to(&pkt, to).await.expect("send");
    }

    pub async fn recv(&self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 2048];
        match tokio::time::timeout(WAIT, self.sock.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => {
                buf.truncate(n);
                Some(buf)
            }
            _ => None,
        }
    }

    /// Receive until nothing arrives for `quiet`.
    pub async fn drain(&self, quiet: Duration) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 2048];
        while let Ok(Ok((n, _))) = tokio::time::timeout(quiet, self.sock.recv_from(&mut buf)).await
        {
            out.push(buf[..n].to_vec());
        }
        out
    }
}

pub fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + payload.len());
    v.push(0x80);
    v.push(pt | if marker { 0x80 } else { 0 });
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// `(pt, marker, seq, ts, ssrc, payload)` of a received packet.
pub fn parse(p: &[u8]) -> (u8, bool, u16, u32, u32, Vec<u8>) {
    let pkt = rtp_types::RtpPacket::parse(p).expect("valid RTP from swrtp");
    (
        pkt.payload_type(),
        pkt.marker_bit(),
        pkt.sequence_number(),
        pkt.timestamp(),
        pkt.ssrc(),
        pkt.payload().to_vec(),
    )
}

/// Poll `f` until it is true (or panic after WAIT).
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}
