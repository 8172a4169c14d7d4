//! Round-robin pool of media nodes with continuous health checks.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use super::control::MediaClient;
use super::token::MediaTokens;
use switchboard_proto::media::v1::HealthRequest;
use switchboard_proto::support::shutdown::Shutdown;
use tokio::sync::broadcast;

use super::lease::LeaseOwner;
use super::node::{MediaNodeInfo, Node, NodeHealth};
use crate::config::MediaConfig;
use crate::events::{Event, EventBus};

/// Media-plane events the B2BUA reacts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// A node stopped answering: its calls must be torn down.
    NodeDown {
        /// Node name.
        node: String,
    },
    /// A session received no RTP for the node's timeout.
    SessionTimedOut {
        /// Node name.
        node: String,
        /// Session id on that node.
        session_id: String,
    },
}

/// Pool errors.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PoolError {
    /// No node is up and undrained.
    #[error("no media node can take the call ({up} of {total} up, {accepting} accepting)")]
    NoNodeAvailable {
        /// Configured nodes.
        total: usize,
        /// Nodes answering health checks.
        up: usize,
        /// Nodes up and not draining.
        accepting: usize,
    },
    /// Admin named a node that is not configured.
    #[error("no media node named {0:?}")]
    UnknownNode(String),
}

impl PoolError {
    /// SIP status for the caller.
    pub fn status_code(&self) -> u16 {
        match self {
            PoolError::NoNodeAvailable { .. } => 503,
            PoolError::UnknownNode(_) => 500,
        }
    }
}

impl From<PoolError> for tonic::Status {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::UnknownNode(_) => tonic::Status::not_found(e.to_string()),
            PoolError::NoNodeAvailable { .. } => tonic::Status::unavailable(e.to_string()),
        }
    }
}

#[derive(Debug)]
struct Inner {
    nodes: Vec<Node>,
    next: AtomicUsize,
    events: EventBus,
    media_tx: broadcast::Sender<MediaEvent>,
    interval: Duration,
    /// This process as owner of its sessions (None: no leases, tests).
    owner: Option<Arc<LeaseOwner>>,
}

/// Cheap-clone handle to the pool.
#[derive(Debug, Clone)]
pub struct MediaPool {
    inner: Arc<Inner>,
}

/// A call's claim on a node: both legs use it; dropping it releases the
/// call from the node's count (which is what "drained" waits for).
#[derive(Debug)]
pub struct NodeLease {
    inner: Arc<Inner>,
    idx: usize,
}

impl NodeLease {
    fn node(&self) -> Option<&Node> {
        self.inner.nodes.get(self.idx)
    }

    /// Node name.
    pub fn name(&self) -> &str {
        self.node().map(|n| n.name.as_str()).unwrap_or("")
    }

    /// A client for the node's MediaService (cheap clone of one channel;
    /// per-call commands go over the node's Control stream).
    pub fn client(&self) -> Option<MediaClient> {
        self.node()
            .map(|n| MediaClient::new(n.client.clone(), n.control.clone()))
    }

    /// Whether the batched RPCs (`ConnectLegs`, `DestroySessions`) are
    /// worth trying on this node (false once it answered UNIMPLEMENTED).
    pub fn batched(&self) -> bool {
        self.node()
            .is_some_and(|n| !n.unbatched.load(Ordering::Relaxed))
    }

    /// The node answered a batched RPC with UNIMPLEMENTED: later calls
    /// go straight to the sequential RPCs.
    pub fn mark_unbatched(&self) {
        if let Some(n) = self.node()
            && !n.unbatched.swap(true, Ordering::Relaxed)
        {
            tracing::info!(node = %n.name, "media node has no batched RPCs (older swrtp): using the sequential ones");
        }
    }
}

impl Drop for NodeLease {
    fn drop(&mut self) {
        if let Some(n) = self.inner.nodes.get(self.idx) {
            n.active_calls.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl MediaPool {
    /// Build the pool (channels connect lazily); each node's calls carry
    /// its token from `tokens`.
    /// Its sessions have no owner and no lease; see [`MediaPool::with_owner`].
    pub fn new(cfg: &MediaConfig, tokens: &MediaTokens, events: EventBus) -> Result<Self, String> {
        Self::build(cfg, tokens, events, None)
    }

    /// Build the pool for `owner`: its sessions carry the owner and live
    /// on leases it renews (see [`super::lease`]).
    pub fn with_owner(
        cfg: &MediaConfig,
        tokens: &MediaTokens,
        events: EventBus,
        owner: LeaseOwner,
    ) -> Result<Self, String> {
        Self::build(cfg, tokens, events, Some(Arc::new(owner)))
    }

    fn build(
        cfg: &MediaConfig,
        tokens: &MediaTokens,
        events: EventBus,
        owner: Option<Arc<LeaseOwner>>,
    ) -> Result<Self, String> {
        let nodes = cfg
            .nodes
            .iter()
            .map(|n| {
                Node::new(n, tokens.for_node(&n.name), owner.clone())
                    .map_err(|e| format!("media node {}: {e}", n.name))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (media_tx, _) = broadcast::channel(1024);
        Ok(Self {
            inner: Arc::new(Inner {
                nodes,
                next: AtomicUsize::new(0),
                events,
                media_tx,
                interval: Duration::from_millis(cfg.health_interval_ms.max(50)),
                owner,
            }),
        })
    }

    /// Start one health-check task per node, and with an owner one lease
    /// renewal task per node; they stop on shutdown.
    pub fn start(&self, shutdown: Shutdown) {
        for idx in 0..self.inner.nodes.len() {
            let inner = self.inner.clone();
            let s = shutdown.clone();
            tokio::spawn(health_loop(inner, idx, s));
            if let Some(owner) = &self.inner.owner {
                let inner = self.inner.clone();
                let every = owner.renew_every;
                let s = shutdown.clone();
                tokio::spawn(async move {
                    if let Some(node) = inner.nodes.get(idx) {
                        super::lease::renew_loop(node, every, inner.interval, s).await;
                    }
                });
            }
        }
    }

    /// Pick a node for a new call: round-robin over nodes that are up and
    /// not draining.
    pub fn pick(&self) -> Result<NodeLease, PoolError> {
        let n = self.inner.nodes.len();
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let idx = (start + i) % n;
            if let Some(node) = self.inner.nodes.get(idx)
                && node.info().accepts_calls()
            {
                node.active_calls.fetch_add(1, Ordering::Relaxed);
                return Ok(NodeLease {
                    inner: self.inner.clone(),
                    idx,
                });
            }
        }
        let infos = self.list();
        Err(PoolError::NoNodeAvailable {
            total: n,
            up: infos.iter().filter(|i| i.health == NodeHealth::Up).count(),
            accepting: infos.iter().filter(|i| i.accepts_calls()).count(),
        })
    }

    /// Every node, in config order.
    pub fn list(&self) -> Vec<MediaNodeInfo> {
        self.inner.nodes.iter().map(Node::info).collect()
    }

    /// Nodes answering health checks.
    pub fn up_count(&self) -> usize {
        self.list()
            .iter()
            .filter(|i| i.health == NodeHealth::Up)
            .count()
    }

    /// Drain (`true`) or undrain a node by name.
    pub fn set_drained(&self, name: &str, drained: bool) -> Result<MediaNodeInfo, PoolError> {
        let node = self
            .inner
            .nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| PoolError::UnknownNode(name.to_string()))?;
        if let Ok(mut s) = node.state.lock() {
            s.drained_by_admin = drained;
        }
        let info = node.info();
        tracing::info!(node = name, drained, "media node drain changed by admin");
        self.inner.events.publish(Event::MediaNode(info.clone()));
        Ok(info)
    }

    /// Media events (node down, RTP timeouts).
    pub fn subscribe_media_events(&self) -> broadcast::Receiver<MediaEvent> {
        self.inner.media_tx.subscribe()
    }
}

async fn health_loop(inner: Arc<Inner>, idx: usize, mut shutdown: Shutdown) {
    let Some(node) = inner.nodes.get(idx) else {
        return;
    };
    let mut reported_timeouts: HashSet<String> = HashSet::new();
    loop {
        let before = node.info();
        let result = tokio::time::timeout(
            inner.interval.max(Duration::from_secs(1)),
            node.client.clone().health(HealthRequest {}),
        )
        .await;
        let mut timed_out = Vec::new();
        if let Ok(mut s) = node.state.lock() {
            match result {
                Ok(Ok(resp)) => {
                    let h = resp.into_inner();
                    if s.health != NodeHealth::Up {
                        // Back (or first seen): it may be a different swrtp
                        // version. Reset before anyone can see it Up (the
                        // lease renewal waits for Up).
                        node.unbatched.store(false, Ordering::Relaxed);
                        node.control.reset_support();
                    }
                    s.health = NodeHealth::Up;
                    s.node_draining = h.draining;
                    s.sessions = h.active_sessions;
                    s.free_port_pairs = h.free_port_pairs;
                    s.last_seen = Some(SystemTime::now());
                    s.last_error.clear();
                    timed_out = h.timed_out_sessions;
                }
                Ok(Err(status)) if status.code() == tonic::Code::Unauthenticated => {
                    s.health = NodeHealth::Down;
                    s.last_error = format!(
                        "{}: {} (swbd's media.token_file must hold the node's media_token_file token)",
                        status.code(),
                        status.message()
                    );
                }
                Ok(Err(status)) => {
                    s.health = NodeHealth::Down;
                    s.last_error = format!("{}: {}", status.code(), status.message());
                }
                Err(_) => {
                    s.health = NodeHealth::Down;
                    s.last_error = "health check timed out".into();
                }
            }
        }
        let after = node.info();
        if before.health != after.health
            || before.node_draining != after.node_draining
            || before.accepts_calls() != after.accepts_calls()
        {
            match after.health {
                NodeHealth::Down => {
                    tracing::warn!(node = %node.name, error = %after.last_error, "media node down")
                }
                _ => {
                    tracing::info!(node = %node.name, draining = after.node_draining, "media node up")
                }
            }
            inner.events.publish(Event::MediaNode(after.clone()));
            if after.health == NodeHealth::Down && before.health == NodeHealth::Up {
                let _ = inner.media_tx.send(MediaEvent::NodeDown {
                    node: node.name.clone(),
                });
            }
        }
        // Report each timed-out session once while the node lists it.
        let current: HashSet<String> = timed_out.into_iter().collect();
        for session_id in current.difference(&reported_timeouts) {
            let _ = inner.media_tx.send(MediaEvent::SessionTimedOut {
                node: node.name.clone(),
                session_id: session_id.clone(),
            });
        }
        reported_timeouts = current;

        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(inner.interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MediaNodeConfig;

    fn pool_with_dead_node() -> MediaPool {
        // Port 1 on loopback: nothing listens, connections are refused.
        let cfg = MediaConfig {
            nodes: vec![MediaNodeConfig {
                name: "dead".into(),
                address: "tcp://127.0.0.1:1".into(),
                token_file: None,
            }],
            health_interval_ms: 50,
            lease_secs: 30,
            lease_renew_secs: 10,
            token_file: None,
        };
        let token = switchboard_proto::support::secret::Token::new("t").expect("token");
        MediaPool::new(&cfg, &MediaTokens::fixed(token), EventBus::new()).expect("pool")
    }

    #[tokio::test]
    async fn unchecked_or_dead_nodes_take_no_calls() {
        let pool = pool_with_dead_node();
        let err = pool.pick().expect_err("no node is up yet");
        assert_eq!(err.status_code(), 503);

        let (trigger, shutdown) = switchboard_proto::support::shutdown::channel();
        pool.start(shutdown);
        for _ in 0..100 {
            if pool.list()[0].health == NodeHealth::Down {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let info = &pool.list()[0];
        assert_eq!(info.health, NodeHealth::Down);
        assert!(!info.last_error.is_empty());
        assert!(matches!(
            pool.pick(),
            Err(PoolError::NoNodeAvailable {
                total: 1,
                up: 0,
                ..
            })
        ));
        trigger.trigger();
    }

    #[tokio::test]
    async fn draining_an_unknown_node_is_not_found() {
        let pool = pool_with_dead_node();
        let err = pool.set_drained("nope", true).expect_err("unknown");
        assert_eq!(tonic::Status::from(err).code(), tonic::Code::NotFound);
        let info = pool.set_drained("dead", true).expect("known");
        assert!(info.drained_by_admin);
    }
}
