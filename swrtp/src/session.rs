//! Sessions: the shared, read-mostly view of each call leg ([`SessionShared`])
//! and the node's session table ([`Node`]) that the gRPC services drive.
//!
//! Ownership: a session's sockets, latching state and playback live in the
//! media task (see [`crate::relay`]) that owns it; this module only keeps a
//! command channel to that task plus what admin needs to read. The table is a
//! `std::sync::Mutex<BTreeMap>` touched by control operations only (create,
//! update, destroy, bridge, list), never by the per-packet path, and never held
//! across an `.await`. Topology changes (bridge, unbridge, destroy, play) are
//! serialised by one async `ops` mutex so two of them never interleave.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use switchboard_proto::admin::v1 as admin_pb;
use switchboard_proto::media::v1 as pb;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::error::{Error, Result};
use crate::hold;
use crate::lease::Owner;
use crate::ports::PortPool;
use crate::relay::{self, Cmd, Leg, LegMedia};
use crate::sdp::{self, LocalOrigin, Negotiated, Offer};
use crate::stats::{DirectionCounters, RelayLatency};

mod bridge;
mod dtmf;
mod family;
mod lease;
mod play;
mod reoffer;
mod restart;
mod shared;
mod traffic;

pub use restart::MAX_KEEP;

pub use family::Family;
pub use lease::LiveOwner;
pub use play::resolve_audio_path;
pub use shared::{SessionShared, View};
pub use traffic::{EndedSessions, LiveQuality, Traffic};

/// A session lifecycle event, fanned out to admin Watch and WatchSessions.
#[derive(Debug, Clone)]
pub enum NodeEvent {
    /// Created.
    Created(Arc<SessionShared>),
    /// Destroyed.
    Destroyed(Arc<SessionShared>),
    /// RTP stopped arriving.
    TimedOut(Arc<SessionShared>),
    /// Draining changed.
    Status,
    /// A DTMF digit arrived as RFC 4733 (see [`crate::relay::dtmf`]).
    Dtmf {
        /// The session it arrived on.
        session: Arc<SessionShared>,
        /// `0`-`9`, `*`, `#`, `A`-`D`.
        digit: char,
        /// Duration the sender gave.
        duration_ms: u32,
        /// Passed on to the bridge peer as RFC 4733.
        relayed: bool,
    },
}

/// Node-wide counters (atomics; no lock on the packet path).
#[derive(Debug, Default)]
pub struct NodeCounters {
    /// Packets relayed between bridged sessions.
    pub relayed: AtomicU64,
    /// Packets dropped (malformed, stranger, unbridged).
    pub dropped: AtomicU64,
    /// RTP timeouts.
    pub timeouts: AtomicU64,
    /// Sessions destroyed because their lease lapsed.
    pub leases_expired: AtomicU64,
    /// Sessions destroyed because their owner restarted (ReconcileOwner).
    pub stale_owner_dropped: AtomicU64,
    /// Time the relay adds per relayed RTP packet (media tasks flush into it).
    pub latency: RelayLatency,
    /// What destroyed sessions counted (metrics; see `session/traffic.rs`).
    pub ended: EndedSessions,
}

/// What every media task needs from the node.
#[derive(Debug)]
pub struct MediaContext {
    /// Event fan-out.
    pub events: broadcast::Sender<NodeEvent>,
    /// Node counters.
    pub counters: NodeCounters,
    /// RTP inactivity timeout.
    pub rtp_timeout: Option<Duration>,
    /// Packets a new source needs to latch.
    pub latch_packets: u32,
}

/// Settings of a node (from the config).
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// Node id.
    pub node_id: String,
    /// Address advertised in SDP.
    pub public_address: IpAddr,
    /// Address advertised in SDP for legs of the other family (IPv6 next
    /// to an IPv4 `public_address`), when the node has a pool for them.
    pub public_address_v6: Option<IpAddr>,
    /// Play resolves files here.
    pub audio_dir: PathBuf,
    /// RTP inactivity timeout (None: off).
    pub rtp_timeout: Option<Duration>,
    /// See `Config::latch_packets`.
    pub latch_packets: u32,
    /// Lease of an owned session until its owner says otherwise
    /// (`Config::session_lease_secs`).
    pub default_lease: Duration,
}

#[derive(Debug)]
struct SdpState {
    origin: LocalOrigin,
    pending_offer: Option<Offer>,
    /// Direction of our pending offer (sendrecv but for a re-offer that holds).
    offered_direction: sdp_types::Direction,
    /// Our pending re-offer's SDP: it becomes `local_sdp` once answered.
    reoffer_sdp: Option<String>,
    remote_origin: Option<(String, u64)>,
    local_sdp: String,
    negotiated: Option<Negotiated>,
}

#[derive(Debug)]
struct Entry {
    shared: Arc<SessionShared>,
    worker: mpsc::Sender<Cmd>,
    sdp: SdpState,
    peer: Option<String>,
}

/// Size of one session table entry (for [`crate::relay::memory_per_session`]).
pub fn entry_size() -> usize {
    std::mem::size_of::<Entry>()
}

#[derive(Debug, Default)]
struct Table {
    sessions: BTreeMap<String, Entry>,
    next_id: u64,
}

#[derive(Debug)]
struct NodeInner {
    settings: NodeSettings,
    pool: PortPool,
    /// Ports of IPv6 legs next to an IPv4 `pool` (see [`Family`]).
    pool_v6: Option<PortPool>,
    table: Mutex<Table>,
    ops: tokio::sync::Mutex<()>,
    draining: AtomicBool,
    ctx: Arc<MediaContext>,
    started_at: SystemTime,
    playback_ids: AtomicU64,
    /// Set when the daemon shuts down; ends every watch stream.
    closing: tokio::sync::watch::Sender<bool>,
    /// Lease length each owner last asked for (RenewLeases,
    /// ReconcileOwner); short critical sections, never held across `.await`.
    lease_lengths: Mutex<HashMap<Owner, Duration>>,
    /// Open Control streams per owner: an owner with one is alive, so
    /// ReconcileOwner never drops its sessions (two swbd sharing a node_id).
    live_owners: Mutex<HashMap<Owner, u32>>,
}

/// The node: session table, port pool, events. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

/// How a session starts its SDP exchange.
#[derive(Debug, Clone)]
pub enum Negotiation {
    /// Answer this remote offer.
    Answer(String),
    /// Make an offer.
    Offer(Offer),
}

/// Proto view of negotiated media.
fn media_proto(n: Option<&Negotiated>, local: SocketAddr) -> pb::NegotiatedMedia {
    match n {
        Some(n) => pb::NegotiatedMedia {
            codec: n.codec.to_proto() as i32,
            payload_type: u32::from(n.pt),
            telephone_event_payload_type: n.te_pt.map(u32::from).unwrap_or(0),
            ptime_ms: n.ptime,
            direction: sdp::direction_to_proto(n.direction) as i32,
            local_rtp_address: local.to_string(),
            remote_rtp_address: n.remote_rtp.map(|a| a.to_string()).unwrap_or_default(),
        },
        None => pb::NegotiatedMedia {
            direction: pb::Direction::Sendrecv as i32,
            local_rtp_address: local.to_string(),
            ..Default::default()
        },
    }
}

fn leg_media(n: Option<&Negotiated>, offer: Option<&Offer>) -> LegMedia {
    match n {
        Some(n) => LegMedia {
            codec: Some(n.codec),
            pt: n.pt,
            te_pt: n.te_pt,
            ptime: n.ptime,
            direction: n.direction,
        },
        None => LegMedia {
            codec: None,
            pt: offer
                .and_then(|o| o.codecs.first())
                .map(|c| c.static_pt())
                .unwrap_or(0),
            te_pt: offer.and_then(|o| o.te_pt),
            ptime: offer.map(|o| o.ptime).unwrap_or(sdp::DEFAULT_PTIME_MS),
            direction: sdp_types::Direction::SendRecv,
        },
    }
}

impl Node {
    /// A node over `pool`.
    pub fn new(settings: NodeSettings, pool: PortPool) -> Self {
        Self::with_pools(settings, pool, None)
    }

    /// A node over `pool` (the family of `public_address`) and, for IPv6
    /// legs next to an IPv4 pool, `pool_v6` (advertised as
    /// `settings.public_address_v6`).
    pub fn with_pools(settings: NodeSettings, pool: PortPool, pool_v6: Option<PortPool>) -> Self {
        let (events, _) = broadcast::channel(1024);
        let ctx = Arc::new(MediaContext {
            events,
            counters: NodeCounters::default(),
            rtp_timeout: settings.rtp_timeout,
            latch_packets: settings.latch_packets,
        });
        Self {
            inner: Arc::new(NodeInner {
                settings,
                pool,
                pool_v6,
                table: Mutex::new(Table::default()),
                ops: tokio::sync::Mutex::new(()),
                draining: AtomicBool::new(false),
                ctx,
                started_at: SystemTime::now(),
                playback_ids: AtomicU64::new(1),
                closing: tokio::sync::watch::channel(false).0,
                lease_lengths: Mutex::new(HashMap::new()),
                live_owners: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // A poisoned table means a panic elsewhere; the data is still consistent
        // enough to serve (every mutation is a single insert/remove).
        match self.inner.table.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        }
    }

    /// Subscribe to session events.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.inner.ctx.events.subscribe()
    }

    /// Node settings.
    pub fn settings(&self) -> &NodeSettings {
        &self.inner.settings
    }

    /// The port pool.
    pub fn pool(&self) -> &PortPool {
        &self.inner.pool
    }

    /// Whether new sessions are refused.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }

    /// Start or stop draining.
    pub fn set_draining(&self, draining: bool) {
        let was = self.inner.draining.swap(draining, Ordering::Relaxed);
        if was != draining {
            let _ = self.inner.ctx.events.send(NodeEvent::Status);
        }
    }

    /// Every session, oldest first.
    pub fn sessions(&self) -> Vec<Arc<SessionShared>> {
        self.table()
            .sessions
            .values()
            .map(|e| e.shared.clone())
            .collect()
    }

    /// Create a session without an owner (no lease).
    pub fn create(
        &self,
        call_id: &str,
        leg: &str,
        negotiation: Negotiation,
    ) -> Result<(String, String, pb::NegotiatedMedia)> {
        self.create_owned(None, call_id, leg, negotiation)
    }

    /// The lease length of `owner`'s sessions.
    fn lease_length(&self, owner: &Owner) -> Duration {
        self.inner
            .lease_lengths
            .lock()
            .ok()
            .and_then(|l| l.get(owner).copied())
            .unwrap_or(self.inner.settings.default_lease)
    }

    /// Create a session: allocate ports, negotiate, start its media task.
    /// An owned session gets a lease (see [`crate::lease`]).
    pub fn create_owned(
        &self,
        owner: Option<&Owner>,
        call_id: &str,
        leg: &str,
        negotiation: Negotiation,
    ) -> Result<(String, String, pb::NegotiatedMedia)> {
        self.create_in(owner, call_id, leg, negotiation, None)
    }

    /// [`create_owned`](Self::create_owned), an offer on the IP `family`
    /// (`None`: the node's primary one); an answer follows the offer's `c=`.
    pub fn create_in(
        &self,
        owner: Option<&Owner>,
        call_id: &str,
        leg: &str,
        negotiation: Negotiation,
        family: Option<Family>,
    ) -> Result<(String, String, pb::NegotiatedMedia)> {
        if self.is_draining() {
            return Err(Error::Draining(self.inner.settings.node_id.clone()));
        }
        // Parse before allocating: garbage must not cost a port.
        let remote = match &negotiation {
            Negotiation::Answer(text) => Some(sdp::parse(text)?),
            Negotiation::Offer(_) => None,
        };
        let family = match &remote {
            Some(r) => Family::of(r.connection),
            None => family.unwrap_or_else(|| Family::of(self.inner.settings.public_address)),
        };
        let (pool, address) = self.media_address(family)?;
        let ports = pool.allocate()?;
        let port = ports.port();
        let origin = LocalOrigin {
            sess_id: u64::from(rand::random::<u32>()),
            version: 1,
            address,
            port,
        };
        let (local_sdp, negotiated, pending_offer, remote_origin) = match (&negotiation, remote) {
            (Negotiation::Answer(_), Some(remote)) => {
                let (text, n) = sdp::answer(&remote, &origin, &[])?;
                (
                    text,
                    Some(n),
                    None,
                    Some((remote.origin_id.clone(), remote.origin_version)),
                )
            }
            (Negotiation::Offer(o), _) => (sdp::offer(&origin, o), None, Some(o.clone()), None),
            (Negotiation::Answer(_), None) => return Err(Error::Internal("answer without offer")),
        };
        let local_addr = SocketAddr::new(address, port);
        let media = media_proto(negotiated.as_ref(), local_addr);
        let lease_until = owner.map(|o| tokio::time::Instant::now() + self.lease_length(o));

        let mut table = self.table();
        table.next_id += 1;
        let id = format!("s{:012x}", table.next_id);
        let shared = Arc::new(SessionShared {
            id: id.clone(),
            call_id: call_id.to_string(),
            leg: leg.to_string(),
            created_at: SystemTime::now(),
            rtp_port: port,
            rx: DirectionCounters::default(),
            tx: DirectionCounters::default(),
            dropped: AtomicU64::new(0),
            timed_out: AtomicBool::new(false),
            owner: owner.cloned(),
            view: Mutex::new(View {
                media: media.clone(),
                remote_address: negotiated
                    .and_then(|n| n.remote_rtp)
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                lease_until,
                ..Default::default()
            }),
        });
        let leg_state = Leg::new(
            shared.clone(),
            ports,
            leg_media(negotiated.as_ref(), pending_offer.as_ref()),
            negotiated.and_then(|n| n.remote_rtp),
            negotiated.and_then(|n| n.remote_rtcp),
        );
        let worker = relay::spawn(vec![leg_state], self.inner.ctx.clone());
        table.sessions.insert(
            id.clone(),
            Entry {
                shared: shared.clone(),
                worker,
                sdp: SdpState {
                    origin,
                    pending_offer,
                    offered_direction: sdp_types::Direction::SendRecv,
                    reoffer_sdp: None,
                    remote_origin,
                    local_sdp: local_sdp.clone(),
                    negotiated,
                },
                peer: None,
            },
        );
        drop(table);
        let _ = self.inner.ctx.events.send(NodeEvent::Created(shared));
        Ok((id, local_sdp, media))
    }

    /// Apply remote SDP: the answer to our offer, or a (re-)offer to answer.
    pub async fn update(&self, id: &str, text: &str) -> Result<(String, pb::NegotiatedMedia)> {
        let remote = sdp::parse(text)?;
        let _ops = self.inner.ops.lock().await;
        let (worker, cmd, reply_sdp, media) = {
            let mut table = self.table();
            let entry = table
                .sessions
                .get_mut(id)
                .ok_or_else(|| Error::NotFound(id.into()))?;
            let state = &mut entry.sdp;
            family::check_same(state.origin.address, &remote)?;
            let same_origin = state.remote_origin.as_ref()
                == Some(&(remote.origin_id.clone(), remote.origin_version));
            let (reply_sdp, negotiated, changed) = if let Some(offer) = &state.pending_offer {
                let mut n = sdp::apply_answer(offer, &remote)?;
                n.direction = hold::intersect(state.offered_direction, n.direction);
                state.pending_offer = None;
                state.offered_direction = sdp_types::Direction::SendRecv;
                if let Some(text) = state.reoffer_sdp.take() {
                    state.local_sdp = text;
                }
                (String::new(), n, true)
            } else if same_origin && state.negotiated.is_some() {
                // RFC 3264 §8: an unchanged version means an unchanged offer.
                let n = state
                    .negotiated
                    .ok_or(Error::Internal("negotiated state vanished"))?;
                (state.local_sdp.clone(), n, false)
            } else {
                let mut origin = state.origin.clone();
                origin.version += 1;
                let (text, n) = sdp::answer(&remote, &origin, &[])?;
                state.origin = origin;
                state.local_sdp = text.clone();
                (text, n, true)
            };
            state.remote_origin = Some((remote.origin_id.clone(), remote.origin_version));
            let relatch = state.negotiated.map(|n| n.remote_rtp) != Some(negotiated.remote_rtp);
            state.negotiated = Some(negotiated);
            let local = SocketAddr::new(state.origin.address, state.origin.port);
            let media = media_proto(Some(&negotiated), local);
            entry.shared.edit(|v| v.media = media.clone());
            let cmd = changed.then(|| Cmd::Update {
                id: id.to_string(),
                media: leg_media(Some(&negotiated), None),
                sdp_rtp: negotiated.remote_rtp,
                sdp_rtcp: negotiated.remote_rtcp,
                relatch,
            });
            (entry.worker.clone(), cmd, reply_sdp, media)
        };
        if let Some(cmd) = cmd {
            // A gone worker means the session timed out; nothing to update.
            let _ = worker.send(cmd).await;
        }
        Ok((reply_sdp, media))
    }

    /// Make a new offer on a negotiated session with `direction` from our
    /// side (see [`crate::hold`]); media goes on as negotiated until the
    /// answer arrives through [`Node::update`]. With `withdraw`, drop an
    /// unanswered re-offer instead (empty SDP back).
    pub async fn reoffer_direction(
        &self,
        id: &str,
        direction: sdp_types::Direction,
        withdraw: bool,
    ) -> Result<(String, pb::NegotiatedMedia)> {
        let _ops = self.inner.ops.lock().await;
        let mut table = self.table();
        let entry = table
            .sessions
            .get_mut(id)
            .ok_or_else(|| Error::NotFound(id.into()))?;
        let state = &mut entry.sdp;
        let negotiated = state
            .negotiated
            .ok_or_else(|| Error::NotNegotiated(id.into()))?;
        let local = SocketAddr::new(state.origin.address, state.origin.port);
        let media = media_proto(Some(&negotiated), local);
        if withdraw {
            if state.reoffer_sdp.take().is_some() {
                state.pending_offer = None;
                state.offered_direction = sdp_types::Direction::SendRecv;
            }
            return Ok((String::new(), media));
        }
        let mut origin = state.origin.clone();
        origin.version += 1;
        let (text, offer) = hold::reoffer(&origin, &negotiated, direction);
        state.origin = origin;
        state.pending_offer = Some(offer);
        state.offered_direction = direction;
        state.reoffer_sdp = Some(text.clone());
        Ok((text, media))
    }

    /// Destroy a session and release its ports; returns its final stats.
    pub async fn destroy(&self, id: &str) -> Result<pb::SessionStats> {
        let _ops = self.inner.ops.lock().await;
        let (entry, taken) = {
            let mut table = self.table();
            let entry = table
                .sessions
                .remove(id)
                .ok_or_else(|| Error::NotFound(id.into()))?;
            let taken = self.inner.ctx.counters.ended.take_over(&entry.shared);
            if let Some(peer) = &entry.peer
                && let Some(p) = table.sessions.get_mut(peer)
            {
                p.peer = None;
                p.shared.edit(|v| v.bridged_with.clear());
            }
            (entry, taken)
        };
        let leg = detach(&entry.worker, id, "session destroyed").await;
        drop(leg); // sockets close, then the ports return to the pool
        self.inner.ctx.counters.ended.finish(&entry.shared, taken);
        let stats = entry.shared.stats();
        let _ = self
            .inner
            .ctx
            .events
            .send(NodeEvent::Destroyed(entry.shared.clone()));
        Ok(stats)
    }

    /// Health as swbd sees it.
    pub fn health(&self) -> pb::HealthResponse {
        let sessions = self.sessions();
        pb::HealthResponse {
            node_id: self.inner.settings.node_id.clone(),
            active_sessions: sessions.len() as u32,
            free_port_pairs: self.inner.pool.free(),
            total_port_pairs: self.inner.pool.total(),
            draining: self.is_draining(),
            timed_out_sessions: sessions
                .iter()
                .filter(|s| s.timed_out.load(Ordering::Relaxed))
                .map(|s| s.id.clone())
                .collect(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// Admin status.
    pub fn status(&self) -> admin_pb::MediaStatus {
        let (sessions, bridges, playbacks) = {
            let table = self.table();
            let bridges = table.sessions.values().filter(|e| e.peer.is_some()).count() / 2;
            let playbacks = table
                .sessions
                .values()
                .filter(|e| {
                    e.shared
                        .view
                        .lock()
                        .map(|v| !v.playing.is_empty())
                        .unwrap_or(false)
                })
                .count();
            (table.sessions.len(), bridges, playbacks)
        };
        let range = self.inner.pool.range();
        let c = &self.inner.ctx.counters;
        admin_pb::MediaStatus {
            node_id: self.inner.settings.node_id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_at: Some(switchboard_proto::timestamp(self.inner.started_at)),
            active_sessions: sessions as u32,
            active_bridges: bridges as u32,
            active_playbacks: playbacks as u32,
            free_port_pairs: self.inner.pool.free(),
            total_port_pairs: self.inner.pool.total(),
            port_min: u32::from(range.min),
            port_max: u32::from(range.max),
            draining: self.is_draining(),
            public_address: self.inner.settings.public_address.to_string(),
            packets_relayed: c.relayed.load(Ordering::Relaxed),
            packets_dropped: c.dropped.load(Ordering::Relaxed),
            rtp_timeouts: c.timeouts.load(Ordering::Relaxed),
            relay_latency: Some(c.latency.to_proto()),
            leases_expired: c.leases_expired.load(Ordering::Relaxed),
            stale_owner_sessions_dropped: c.stale_owner_dropped.load(Ordering::Relaxed),
        }
    }

    /// Resolves once the node shuts down.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.inner.closing.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }

    /// Destroy every session (daemon shutdown): playbacks stop, ports return,
    /// watch streams end.
    pub async fn shutdown(&self) {
        self.inner.closing.send_replace(true);
        self.set_draining(true);
        let ids: Vec<String> = self.table().sessions.keys().cloned().collect();
        for id in ids {
            let _ = self.destroy(&id).await;
        }
    }
}

async fn detach(worker: &mpsc::Sender<Cmd>, id: &str, reason: &'static str) -> Option<Box<Leg>> {
    let (reply, leg) = oneshot::channel();
    worker
        .send(Cmd::Detach {
            id: id.into(),
            reason,
            reply,
        })
        .await
        .ok()?;
    leg.await.ok().flatten()
}
