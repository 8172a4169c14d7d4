//! swrtp, the Switchboard media daemon: it owns every RTP packet; swbd never
//! touches media. It serves `switchboard.media.v1.MediaService` (for swbd)
//! and `switchboard.admin.v1.MediaAdmin` (for swctl), each on its own gRPC
//! server with `grpc.health.v1` and reflection.
//!
//! # Layout
//!
//! - [`config`]: YAML config, defaults, `validate()`.
//! - [`ports`]: the RTP port pool (even RTP port, RTCP on port + 1).
//! - [`sdp`]: SDP offer/answer, pure functions.
//! - [`g711`]: mu-law / A-law codecs and transcoding tables.
//! - [`stats`]: per-direction counters (atomics) and RFC 3550 loss/jitter.
//! - [`session`]: the session table ([`session::Node`]) and what admin reads.
//! - [`relay`]: the media task: relay, latching, header rewriting, pacing.
//! - [`player`]: WAV decoding and playback state.
//! - [`hold`]: which legs the RTP timeout watches (hold), RTCP as activity,
//!   re-offers that pass hold on.
//! - [`service`]: the `MediaService` gRPC handlers.
//! - [`lease`]: session owners and leases, and the reaper of lapsed ones.
//! - [`admin`]: the `MediaAdmin` gRPC handlers.
//! - [`metrics`]: the Prometheus `/metrics` endpoint.
//! - [`error`]: the control-plane error and its one mapping to `tonic::Status`.
//!
//! # Behaviour swbd relies on
//!
//! - **Latching**: see [`relay`] ("Latching"): the SDP address is only the
//!   starting point; a different source needs `latch_packets` consecutive
//!   packets with one SSRC, and once latched only a source keeping the
//!   latched SSRC can take over. Exception (rule 5, "early latching"): a leg
//!   that has sent an offer and has no answer yet, so no remote address,
//!   latches to the first valid RTP packet on its port, so a callee that
//!   sends on its 200 OK loses nothing. Trade-off: until the answer, a
//!   stranger who hits the port first would receive that leg's early media;
//!   the answer resets the latch, and from then on the strict rule applies.
//! - **Before the first bridge**: a leg that has never been bridged keeps its
//!   last 8 RTP packets, and its first bridge relays those at most 200 ms old
//!   (swbd bridges after the callee's ACK; the callee may send on its 200 OK).
//!   Later unbridged packets are dropped as before.
//! - **Relay latency**: admin `GetStatus` carries `relay_latency`, the time
//!   swrtp adds per relayed RTP packet (receive returned -> send completed),
//!   p50/p90/p99/p99.9/max and the histogram buckets.
//! - **Playback while bridged is refused**: `Play` on a bridged session fails
//!   with `FAILED_PRECONDITION`; bridging a session that is playing stops the
//!   playback (`PlaybackStopped { reason: "bridged" }`). Unbridge first to play.
//! - **RTP timeout**: the clock starts once a session has received RTP or
//!   been bridged (a ringing leg legitimately receives nothing) and restarts
//!   on re-offers. On expiry the session is reported (`RTP_TIMEOUT` on
//!   WatchSessions, `session_timed_out` on admin Watch, `timed_out_sessions`
//!   in Health) and its ports are released; the session entry stays until
//!   swbd destroys it, so DestroySession still returns its final stats.
//!   A leg on hold (negotiated `sendonly`, `recvonly` or `inactive`, or
//!   `c=0.0.0.0`) is exempt while the direction stays; RTCP from the
//!   latched address counts as activity ([`hold`]).
//! - **Re-offers**: `ReofferSession` makes a new offer on a negotiated
//!   session (same port, the codec in use, the direction asked for); its
//!   answer comes through `UpdateSession` as usual; `withdraw` drops an
//!   unanswered one.
//! - **Codecs**: the two legs of a bridge may have negotiated different
//!   G.711 laws; the relay transcodes in place.
//! - **Session leases**: a session created with the owner metadata headers
//!   (see [`lease`]) is destroyed when its owner stops renewing it
//!   (`session_lease_secs`, default 30 s, until the owner announces its
//!   own), ringing or not; one without them never is.
//! - **RTCP** is relayed unchanged (SSRCs inside are not rewritten).
//! - **Header rewriting**: what a leg receives carries that leg's own SSRC
//!   and one continuous sequence/timestamp space across playbacks and
//!   bridges (marker bit set where a new source starts); payload types are
//!   mapped to the receiving leg's negotiated ones, telephone-event included.
//! - **DTMF** ([`relay::dtmf`]): `SendDtmf` (Control stream) sends digits
//!   into a leg as RFC 4733 events; every digit a leg receives as RFC 4733
//!   is reported once (`SESSION_EVENT_KIND_DTMF` on WatchSessions, and an
//!   unsolicited `event` reply on the Control streams of the session's
//!   owner), saying whether the bridge peer got it as RFC 4733 too.
//! - **IPv4 and IPv6 legs** ([`session::Family`]): an answer follows the
//!   offer's `c=` family, an offer the family asked for; one call may
//!   bridge both.
//!
//! # Defaults
//!
//! MediaService on `tcp://127.0.0.1:9090`, every call needing the media
//! token (`authorization: Bearer`, from `media_token_file`, by default
//! `media.token` in the runtime directory, created 0600 when missing);
//! MediaAdmin on `$XDG_RUNTIME_DIR/switchboard/swrtp.sock` (or
//! `/tmp/switchboard-$UID/`, created 0700, an existing one used only when
//! it is ours and private); RTP ports 10000-20000 on 127.0.0.1 (and on ::1
//! for IPv6 legs, see [`session::Family`]); RTP timeout 30 s;
//! latching after 3 packets. [`start`] returns the bound endpoints (port 0
//! resolved) for in-process tests; [`run`] is what `main` calls.

#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod error;
pub mod g711;
pub mod hold;
pub mod lease;
pub mod metrics;
pub mod player;
pub mod ports;
pub mod relay;
pub mod sdp;
pub mod service;
pub mod session;
pub mod stats;

use std::time::Duration;

use anyhow::Context;
use switchboard_proto::admin::v1::media_admin_server::MediaAdminServer;
use switchboard_proto::media::v1::media_service_server::MediaServiceServer;
use switchboard_proto::support::grpc::{self, BearerAuth, Endpoint};
use switchboard_proto::support::shutdown::Shutdown;
use switchboard_proto::support::{paths, secret};
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;

use crate::config::Config;
use crate::ports::PortPool;
use crate::session::{Node, NodeSettings};

/// A started daemon: where it listens, and the task that ends after shutdown.
#[derive(Debug)]
pub struct Running {
    /// MediaService endpoint actually bound (port 0 resolved).
    pub listen: Endpoint,
    /// MediaAdmin endpoint actually bound.
    pub admin: Endpoint,
    /// Where `/metrics` is served (None: disabled, or the port was taken).
    pub metrics: Option<std::net::SocketAddr>,
    /// The node, for in-process inspection.
    pub node: Node,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Wait for the daemon to finish (after shutdown fired).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("swrtp main task panicked")?
    }
}

/// Bind everything, then serve in the background until `shutdown` fires.
/// Errors here (port in use, bad address, missing directory) happen before
/// anything is served.
pub async fn start(config: Config, shutdown: Shutdown) -> anyhow::Result<Running> {
    let range = config
        .port_range()
        .map_err(anyhow::Error::msg)
        .context("invalid rtp_ports")?;
    let listen: Endpoint = config
        .listen
        .parse()
        .map_err(anyhow::Error::msg)
        .context("invalid listen endpoint")?;
    let admin_ep = config
        .admin_endpoint()
        .map_err(anyhow::Error::msg)
        .context("invalid admin endpoint")?;
    // The runtime directory (default admin socket, default media token)
    // must be ours and private: created 0700, an existing one checked.
    if config.admin.is_empty() || config.media_token_file.is_none() {
        paths::ensure_runtime_dir(&paths::runtime_dir()).context("runtime directory")?;
    }
    let media_token_file = config
        .media_token_file
        .clone()
        .unwrap_or_else(paths::media_token);
    let media_token = secret::load_or_create_token(&media_token_file)
        .context("media token (media_token_file)")?;
    let admin_token = match (&admin_ep, &config.admin_token_file) {
        (Endpoint::Tcp(_), Some(file)) => {
            Some(secret::load_or_create_token(file).context("admin token (admin_token_file)")?)
        }
        (Endpoint::Tcp(addr), None) => {
            anyhow::bail!("admin: tcp://{addr} needs admin_token_file")
        }
        (Endpoint::Unix(_), _) => None,
    };
    let metrics_token = metrics::token(&config)?;
    if !config.audio_dir.is_dir() {
        tracing::warn!(dir = %config.audio_dir.display(), "audio_dir does not exist; Play will report errors");
    }

    let pool = PortPool::new(range, config.bind_address);
    // IPv6 legs next to IPv4 ones (session::Family). The ::1 default is
    // dropped on a host without IPv6 loopback; a configured address stays
    // (its sessions fail loudly if it cannot be bound).
    let media_v6 = config.media_v6().filter(|(bind, _)| {
        let usable = config.bind_address_v6.is_some() || ports::can_bind(*bind);
        if !usable {
            tracing::info!(address = %bind, "no IPv6 loopback on this host: IPv6 legs are refused");
        }
        usable
    });
    let pool_v6 = media_v6.map(|(bind, _)| PortPool::new(range, bind));
    let node = Node::with_pools(
        NodeSettings {
            node_id: config.node_id.clone(),
            public_address: config.advertised_address(),
            public_address_v6: media_v6.map(|(_, public)| public),
            audio_dir: config.audio_dir.clone(),
            rtp_timeout: (config.rtp_timeout_secs > 0)
                .then(|| Duration::from_secs(config.rtp_timeout_secs)),
            latch_packets: config.latch_packets,
            default_lease: Duration::from_secs(config.session_lease_secs),
        },
        pool,
        pool_v6,
    );
    tokio::spawn(lease::reaper(node.clone()));

    let media_listener = grpc::bind(&listen).await?;
    let admin_listener = grpc::bind(&admin_ep).await?;
    let listen = media_listener.endpoint();
    let admin = admin_listener.endpoint();
    let metrics = metrics::start(&config, metrics_token, &node, shutdown.clone()).await;

    let (media_health, media_router) = grpc::base_router()?;
    media_health
        .set_serving::<MediaServiceServer<service::MediaControl>>()
        .await;
    // Every MediaService call carries the media token; grpc.health.v1 and
    // reflection stay open (they reveal nothing and drive nothing).
    let media_router = media_router.add_service(InterceptedService::new(
        MediaServiceServer::new(service::MediaControl::new(node.clone())),
        BearerAuth::for_service(media_token.as_str(), "MediaService"),
    ));
    let (admin_health, admin_router) = grpc::base_router()?;
    admin_health
        .set_serving::<MediaAdminServer<admin::Admin>>()
        .await;
    let admin_service = MediaAdminServer::new(admin::Admin::new(node.clone()));
    let admin_router = match &admin_token {
        Some(token) => admin_router.add_service(InterceptedService::new(
            admin_service,
            BearerAuth::new(token.as_str()),
        )),
        None => admin_router.add_service(admin_service),
    };

    tracing::info!(
        node = %config.node_id,
        %listen,
        %admin,
        rtp_ports = %range,
        public = %config.advertised_address(),
        public_v6 = %media_v6.map(|(_, p)| p.to_string()).unwrap_or_else(|| "none".into()),
        media_token = %media_token_file.display(),
        "swrtp serving"
    );
    let task_node = node.clone();
    let task = tokio::spawn(async move {
        let media = grpc::serve(media_router, media_listener, shutdown.clone());
        let admin = grpc::serve(admin_router, admin_listener, shutdown.clone());
        // Sessions go first: that ends playback and watch streams, which the
        // servers' graceful shutdown would otherwise wait for.
        let closer = async {
            shutdown.clone().wait().await;
            task_node.shutdown().await;
        };
        let ((m, a), ()) = tokio::join!(async { tokio::join!(media, admin) }, closer);
        // Media tasks close their sockets as they end; give them a moment so
        // the ports are really free when run() returns.
        for _ in 0..100 {
            if task_node.all_ports_free() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        m.context("media control server failed")?;
        a.context("admin server failed")?;
        tracing::info!("swrtp stopped");
        Ok(())
    });
    Ok(Running {
        listen,
        admin,
        metrics,
        node,
        task,
    })
}

/// Run the daemon until `shutdown` fires: stop playbacks, free every port,
/// remove the unix socket, return.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    start(config, shutdown).await?.wait().await
}
