//! One swrtp node as the pool sees it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use hyper_util::rt::TokioIo;
use switchboard_proto::media::v1::media_service_client::MediaServiceClient;
use switchboard_proto::support::grpc::{AuthedChannel, BearerToken, Endpoint};
use switchboard_proto::support::secret::Token;
use tonic::transport::{Channel, Endpoint as TonicEndpoint, Uri};

use crate::config::MediaNodeConfig;

/// Health of a node as last checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeHealth {
    /// Not checked yet.
    Unknown,
    /// Answering health checks.
    Up,
    /// Not answering.
    Down,
}

/// A snapshot of a node for admin listings and events.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaNodeInfo {
    /// Name from config.
    pub name: String,
    /// Endpoint as configured.
    pub address: String,
    /// Last health result.
    pub health: NodeHealth,
    /// Drained by an operator through swbd.
    pub drained_by_admin: bool,
    /// The node itself says it is draining.
    pub node_draining: bool,
    /// Calls of this swbd on the node.
    pub active_calls: u32,
    /// Sessions on the node (all clients).
    pub sessions: u32,
    /// Free port pairs on the node.
    pub free_port_pairs: u32,
    /// Last successful health check.
    pub last_seen: Option<SystemTime>,
    /// Last health error.
    pub last_error: String,
    /// Drain with migration: how far it got (zero when none ran).
    pub migration: MigrationProgress,
}

/// Progress of a node's drain with migration (`swbd/src/b2bua/migrate.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MigrationProgress {
    /// Calls still to move (queued or moving now).
    pub pending: u32,
    /// Calls moved off the node.
    pub moved: u32,
    /// Calls that could not be moved (they stay until they end).
    pub failed: u32,
}

impl MediaNodeInfo {
    /// Whether new calls may go to this node.
    pub fn accepts_calls(&self) -> bool {
        self.health == NodeHealth::Up && !self.drained_by_admin && !self.node_draining
    }

    /// The admin view.
    pub fn to_proto(&self) -> switchboard_proto::admin::v1::MediaNode {
        use switchboard_proto::admin::v1::MediaNodeState as S;
        let state = match self.health {
            NodeHealth::Unknown => S::Unspecified,
            NodeHealth::Down => S::Down,
            NodeHealth::Up if self.drained_by_admin || self.node_draining => S::Draining,
            NodeHealth::Up => S::Up,
        };
        switchboard_proto::admin::v1::MediaNode {
            name: self.name.clone(),
            address: self.address.clone(),
            state: state as i32,
            active_calls: self.active_calls,
            sessions: self.sessions,
            free_port_pairs: self.free_port_pairs,
            last_seen: self.last_seen.map(switchboard_proto::timestamp),
            drained: (self.drained_by_admin || self.node_draining) && self.active_calls == 0,
            last_error: self.last_error.clone(),
            migrating: self.migration.pending,
            migrated: self.migration.moved,
            migration_failed: self.migration.failed,
        }
    }
}

/// Mutable part of a node, behind a std mutex: tiny critical sections, never
/// held across `.await`.
#[derive(Debug)]
pub(crate) struct NodeState {
    pub health: NodeHealth,
    pub drained_by_admin: bool,
    pub node_draining: bool,
    pub sessions: u32,
    pub free_port_pairs: u32,
    pub last_seen: Option<SystemTime>,
    pub last_error: String,
    /// Marked down by a failed media command or a broken Control stream,
    /// not yet by a health check: the check that follows at once decides
    /// whether the node is really gone (and its calls must end).
    pub unconfirmed_down: bool,
    /// Drain with migration progress.
    pub migration: MigrationProgress,
}

/// One node: its client and state.
#[derive(Debug)]
pub(crate) struct Node {
    pub name: String,
    pub address: String,
    pub client: MediaServiceClient<AuthedChannel>,
    /// The per-call commands' stream (over the same channel).
    pub control: std::sync::Arc<super::control::ControlChannel>,
    pub state: Mutex<NodeState>,
    pub active_calls: AtomicU32,
    /// The node answered a batched RPC (`ConnectLegs`, `DestroySessions`)
    /// with UNIMPLEMENTED: an older swrtp. Calls then use the sequential
    /// RPCs directly; reset when the node comes back after being down (it
    /// may have been upgraded).
    pub unbatched: std::sync::atomic::AtomicBool,
    /// Wakes the health loop for a check now (the node was just found
    /// unreachable) instead of at the next interval.
    pub recheck: tokio::sync::Notify,
}

impl Node {
    /// A node with a lazily connecting channel (a node that is down at start
    /// is simply Down until it answers).
    /// Every call carries `token` (swrtp refuses calls without it).
    /// Sessions created through it belong to `owner` (see [`super::lease`]).
    pub fn new(
        cfg: &MediaNodeConfig,
        token: Option<&Token>,
        owner: Option<std::sync::Arc<super::lease::LeaseOwner>>,
    ) -> Result<Self, String> {
        let client = authed_client(&cfg.address, token)?;
        Ok(Self {
            name: cfg.name.clone(),
            address: cfg.address.clone(),
            control: std::sync::Arc::new(super::control::ControlChannel::new(
                client.clone(),
                owner,
            )),
            client,
            state: Mutex::new(NodeState {
                health: NodeHealth::Unknown,
                drained_by_admin: false,
                node_draining: false,
                sessions: 0,
                free_port_pairs: 0,
                last_seen: None,
                last_error: String::new(),
                unconfirmed_down: false,
                migration: MigrationProgress::default(),
            }),
            active_calls: AtomicU32::new(0),
            unbatched: std::sync::atomic::AtomicBool::new(false),
            recheck: tokio::sync::Notify::new(),
        })
    }

    /// A consistent snapshot.
    pub fn info(&self) -> MediaNodeInfo {
        let active_calls = self.active_calls.load(Ordering::Relaxed);
        match self.state.lock() {
            Ok(s) => MediaNodeInfo {
                name: self.name.clone(),
                address: self.address.clone(),
                health: s.health,
                drained_by_admin: s.drained_by_admin,
                node_draining: s.node_draining,
                active_calls,
                sessions: s.sessions,
                free_port_pairs: s.free_port_pairs,
                last_seen: s.last_seen,
                last_error: s.last_error.clone(),
                migration: s.migration,
            },
            // A poisoned lock means a panic elsewhere; report the node as down.
            Err(_) => MediaNodeInfo {
                name: self.name.clone(),
                address: self.address.clone(),
                health: NodeHealth::Down,
                drained_by_admin: true,
                node_draining: false,
                active_calls,
                sessions: 0,
                free_port_pairs: 0,
                last_seen: None,
                last_error: "internal: node state poisoned".into(),
                migration: MigrationProgress::default(),
            },
        }
    }
}

/// A MediaService client for `address` whose every call (unary, streams,
/// the Control stream) carries `token`.
pub(crate) fn authed_client(
    address: &str,
    token: Option<&Token>,
) -> Result<MediaServiceClient<AuthedChannel>, String> {
    Ok(MediaServiceClient::with_interceptor(
        channel(address)?,
        BearerToken::optional(token),
    ))
}

/// A lazily connecting channel to `address` (`tcp://host:port` or
/// `unix:///path`).
pub(crate) fn channel(address: &str) -> Result<Channel, String> {
    let endpoint: Endpoint = address.parse()?;
    Ok(match &endpoint {
        Endpoint::Tcp(addr) => TonicEndpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .connect_lazy(),
        Endpoint::Unix(path) => {
            let path = path.clone();
            TonicEndpoint::from_static("http://localhost").connect_with_connector_lazy(
                tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        tokio::net::UnixStream::connect(path)
                            .await
                            .map(TokioIo::new)
                    }
                }),
            )
        }
    })
}
