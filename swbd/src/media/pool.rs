//! Round-robin pool of media nodes with continuous health checks.
//!
//! A node is also taken out of the rotation the moment it looks dead: its
//! Control stream breaks, or a media command to it fails because it could
//! not be reached ([`super::node_unreachable`]). Waiting for the next health check sent
//! new calls to a killed node for up to `media.health_interval_ms`, and
//! they failed (issue #14). Such a mark is unconfirmed: it stops new calls
//! only, and wakes the node's health loop for a check at once. That check
//! confirms it (the node's calls are ended, [`MediaEvent::NodeDown`]) or
//! brings the node back (a stream closed for another reason, a node
//! refusing because it drains). So a false alarm costs a health check, not
//! calls.

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
    /// A session received a DTMF digit as RFC 4733.
    Dtmf {
        /// Node name.
        node: String,
        /// What and where.
        dtmf: MediaDtmf,
    },
}

/// A DTMF digit a media session received (RFC 4733), as the node reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDtmf {
    /// Session id on the node.
    pub session_id: String,
    /// One of `0`-`9`, `*`, `#`, `A`-`D`.
    pub digit: char,
    /// Duration the sender gave (milliseconds).
    pub duration_ms: u32,
    /// The bridge peer got it as RFC 4733 too (nothing else to do).
    pub relayed: bool,
}

impl MediaDtmf {
    /// The digit of a pushed session event; `None` for another kind, or a
    /// digit outside the DTMF alphabet.
    pub fn from_event(e: &switchboard_proto::media::v1::SessionEvent) -> Option<Self> {
        use switchboard_proto::media::v1::SessionEventKind;
        if e.kind != SessionEventKind::Dtmf as i32 {
            return None;
        }
        let d = e.dtmf.as_ref()?;
        let mut chars = d.digit.chars();
        let digit = match (chars.next(), chars.next()) {
            (Some(c), None) => crate::sip::dtmf::normalize_digit(c)?,
            _ => return None,
        };
        Some(Self {
            session_id: e.session_id.clone(),
            digit,
            duration_ms: d.duration_ms,
            relayed: d.relayed,
        })
    }
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

/// `Retry-After` (seconds) for a caller refused because no media node can
/// take the call: a node found dead at once is back, or confirmed gone and
/// drained of calls, within a few health checks.
pub const NO_NODE_RETRY_AFTER_SECS: u32 = 5;

impl PoolError {
    /// SIP status for the caller.
    pub fn status_code(&self) -> u16 {
        match self {
            PoolError::NoNodeAvailable { .. } => 503,
            PoolError::UnknownNode(_) => 500,
        }
    }

    /// `Retry-After` seconds for the caller, when trying later may help.
    pub fn retry_after_secs(&self) -> Option<u32> {
        match self {
            PoolError::NoNodeAvailable { .. } => Some(NO_NODE_RETRY_AFTER_SECS),
            PoolError::UnknownNode(_) => None,
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

    /// The node could not be reached (`why`): no new calls go to it until
    /// a health check, run now, says it answers (module docs).
    pub fn report_unreachable(&self, why: &str) {
        mark_unreachable(&self.inner, self.idx, why);
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
        let inner = Arc::new(Inner {
            nodes,
            next: AtomicUsize::new(0),
            events,
            media_tx,
            interval: Duration::from_millis(cfg.health_interval_ms.max(50)),
            owner,
        });
        for (idx, node) in inner.nodes.iter().enumerate() {
            // Weak: the node's channel must not keep the pool alive.
            let pool = Arc::downgrade(&inner);
            node.control.set_on_unreachable(Arc::new(move |why: &str| {
                if let Some(inner) = pool.upgrade() {
                    mark_unreachable(&inner, idx, why);
                }
            }));
            let pool = Arc::downgrade(&inner);
            let name = node.name.clone();
            node.control.set_on_event(Arc::new(move |event| {
                if let (Some(inner), Some(dtmf)) = (pool.upgrade(), MediaDtmf::from_event(&event)) {
                    let _ = inner.media_tx.send(MediaEvent::Dtmf {
                        node: name.clone(),
                        dtmf,
                    });
                }
            }));
        }
        Ok(Self { inner })
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
        self.pick_excluding(&[])
    }

    /// [`pick`](Self::pick), skipping the nodes named in `tried` (a call
    /// retrying its first media command elsewhere tries each node once).
    pub fn pick_excluding(&self, tried: &[String]) -> Result<NodeLease, PoolError> {
        let n = self.inner.nodes.len();
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let idx = (start + i) % n;
            if let Some(node) = self.inner.nodes.get(idx)
                && !tried.contains(&node.name)
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

    /// This swbd restarted keeping its instance id (issue #18): the first
    /// ReconcileOwner on `node` keeps `keep` (the sessions of the calls
    /// restored on it) and destroys our other sessions there. The receiver
    /// gets the kept sessions the node no longer has. `None`: no such node.
    /// Call before [`MediaPool::start`].
    pub fn keep_after_restart(
        &self,
        node: &str,
        keep: Vec<String>,
    ) -> Option<tokio::sync::oneshot::Receiver<Vec<String>>> {
        let n = self.inner.nodes.iter().find(|n| n.name == node)?;
        Some(n.control.keep_after_restart(keep))
    }

    /// A claim on the node named `node` whatever its state: a call restored
    /// after a restart stays on the node its media is on (issue #18).
    pub fn lease_named(&self, node: &str) -> Option<NodeLease> {
        let idx = self.inner.nodes.iter().position(|n| n.name == node)?;
        let n = self.inner.nodes.get(idx)?;
        n.active_calls.fetch_add(1, Ordering::Relaxed);
        Some(NodeLease {
            inner: self.inner.clone(),
            idx,
        })
    }

    /// Every node, in config order.
    pub fn list(&self) -> Vec<MediaNodeInfo> {
        self.inner.nodes.iter().map(Node::info).collect()
    }

    /// The least media command round trip of each node since the last
    /// call, the longest of them (a call on the slowest node waits that
    /// long); `None` when no command finished meanwhile.
    pub fn take_command_round_trip(&self) -> Option<Duration> {
        self.inner
            .nodes
            .iter()
            .filter_map(|n| n.control.take_least_round_trip())
            .max()
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

    /// Change node `name`'s migration progress with `f` (drain with
    /// migration); publishes the node. Unknown names are ignored.
    pub fn update_migration(&self, name: &str, f: impl FnOnce(&mut super::MigrationProgress)) {
        let Some(node) = self.inner.nodes.iter().find(|n| n.name == name) else {
            return;
        };
        if let Ok(mut s) = node.state.lock() {
            f(&mut s.migration);
        }
        self.inner.events.publish(Event::MediaNode(node.info()));
    }

    /// Start node `name`'s migration with `pending` calls to move (counts
    /// reset); false while one is running (calls still pending).
    pub fn begin_migration(&self, name: &str, pending: u32) -> bool {
        let Some(node) = self.inner.nodes.iter().find(|n| n.name == name) else {
            return false;
        };
        let begun = match node.state.lock() {
            Ok(mut s) if s.migration.pending == 0 => {
                s.migration = super::MigrationProgress {
                    pending,
                    moved: 0,
                    failed: 0,
                };
                true
            }
            _ => false,
        };
        if begun {
            self.inner.events.publish(Event::MediaNode(node.info()));
        }
        begun
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
        // Up when this check started, or only marked down since (by a
        // failed command): a failed check now is the node going down.
        let mut was_up = before.health == NodeHealth::Up;
        let result = tokio::time::timeout(
            inner.interval.max(Duration::from_secs(1)),
            node.client.clone().health(HealthRequest {}),
        )
        .await;
        let mut timed_out = Vec::new();
        if let Ok(mut s) = node.state.lock() {
            was_up |= s.health == NodeHealth::Up || s.unconfirmed_down;
            s.unconfirmed_down = false;
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
        }
        if after.health == NodeHealth::Down && was_up {
            let _ = inner.media_tx.send(MediaEvent::NodeDown {
                node: node.name.clone(),
            });
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
            () = node.recheck.notified() => {}
        }
    }
}

/// Take node `idx` out of the rotation at once, unconfirmed (module docs):
/// only a node that is up is marked, so a dead node's failing commands do
/// not keep waking its health loop.
fn mark_unreachable(inner: &Inner, idx: usize, why: &str) {
    let Some(node) = inner.nodes.get(idx) else {
        return;
    };
    let marked = match node.state.lock() {
        Ok(mut s) if s.health == NodeHealth::Up => {
            s.health = NodeHealth::Down;
            s.unconfirmed_down = true;
            s.last_error = format!("unreachable: {why}");
            true
        }
        _ => false,
    };
    if marked {
        tracing::warn!(node = %node.name, error = %why, "media node unreachable: no new calls until it answers a health check");
        inner.events.publish(Event::MediaNode(node.info()));
        node.recheck.notify_one();
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
            ..MediaConfig::default()
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

    fn set_health(pool: &MediaPool, health: NodeHealth) {
        let node = pool.inner.nodes.first().expect("one node");
        node.state.lock().expect("state").health = health;
    }

    #[tokio::test]
    async fn an_unreachable_node_leaves_the_rotation_at_once_and_a_check_confirms_it() {
        let pool = pool_with_dead_node();
        // As if its last health check had passed just before it died.
        set_health(&pool, NodeHealth::Up);
        let lease = pool.pick().expect("an up node is picked");
        assert!(pool.pick_excluding(&["dead".into()]).is_err(), "excluded");
        let mut events = pool.subscribe_media_events();

        lease.report_unreachable("tcp connect error");
        let info = &pool.list()[0];
        assert_eq!(info.health, NodeHealth::Down);
        assert!(info.last_error.contains("tcp connect error"), "{info:?}");
        assert_eq!(
            pool.pick().expect_err("no new calls").retry_after_secs(),
            Some(NO_NODE_RETRY_AFTER_SECS)
        );

        // The next health check confirms it: the node's calls must end
        // (an unconfirmed mark alone sends no NodeDown).
        let (trigger, shutdown) = switchboard_proto::support::shutdown::channel();
        pool.start(shutdown);
        let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("a NodeDown in time")
            .expect("event");
        assert_eq!(
            ev,
            MediaEvent::NodeDown {
                node: "dead".into()
            }
        );
        trigger.trigger();
    }

    #[tokio::test]
    async fn a_node_already_down_is_not_marked_again() {
        let pool = pool_with_dead_node();
        set_health(&pool, NodeHealth::Down);
        mark_unreachable(&pool.inner, 0, "tcp connect error");
        let node = pool.inner.nodes.first().expect("one node");
        assert!(!node.state.lock().expect("state").unconfirmed_down);
        assert!(pool.list()[0].last_error.is_empty());
    }

    #[test]
    fn unreachable_is_unavailable_or_a_transport_failure_not_a_refusal() {
        use crate::media::node_unreachable;
        use tonic::Status;
        assert!(node_unreachable(&Status::unavailable("tcp connect error")));
        // What a request on a connection that just died gets: UNKNOWN
        // with the transport error as its source.
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "gone");
        let transport = Status::from_error(Box::new(io));
        assert_eq!(transport.code(), tonic::Code::Unknown);
        assert!(node_unreachable(&transport));
        // Statuses the node sent: no source.
        assert!(!node_unreachable(&Status::invalid_argument("bad SDP")));
        assert!(!node_unreachable(&Status::unknown("transport error")));
        assert!(!node_unreachable(&Status::resource_exhausted("no ports")));
    }

    #[tokio::test]
    async fn a_second_migration_of_a_node_waits_for_the_first() {
        let pool = pool_with_dead_node();
        assert!(pool.begin_migration("dead", 3), "first");
        assert!(
            !pool.begin_migration("dead", 1),
            "refused while 3 are pending"
        );
        pool.update_migration("dead", |p| {
            p.pending = 0;
            p.moved = 2;
            p.failed = 1;
        });
        assert_eq!(pool.list()[0].migration.moved, 2);
        assert!(pool.begin_migration("dead", 0), "after it is done");
        assert_eq!(pool.list()[0].migration.moved, 0, "counts reset");
        assert!(!pool.begin_migration("nope", 1), "unknown node");
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
