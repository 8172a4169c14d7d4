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
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use switchboard_proto::admin::v1 as admin_pb;
use switchboard_proto::media::v1 as pb;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::error::{Error, Result};
use crate::hold;
use crate::lease::Owner;
use crate::player::{self, Playback};
use crate::ports::PortPool;
use crate::relay::{self, Cmd, Leg, LegMedia};
use crate::sdp::{self, AudioCodec, LocalOrigin, Negotiated, Offer};
use crate::stats::{DirectionCounters, RelayLatency};

mod dtmf;
mod family;
mod reoffer;
mod restart;
mod traffic;

pub use restart::MAX_KEEP;

pub use family::Family;
pub use traffic::{EndedSessions, LiveQuality, Traffic};

/// What admin and health can read about a session without asking its task.
#[derive(Debug)]
pub struct SessionShared {
    /// Session id.
    pub id: String,
    /// Call id from swbd.
    pub call_id: String,
    /// Leg label from swbd.
    pub leg: String,
    /// Creation time.
    pub created_at: SystemTime,
    /// Local RTP port.
    pub rtp_port: u16,
    /// Received from the remote peer.
    pub rx: DirectionCounters,
    /// Sent to the remote peer.
    pub tx: DirectionCounters,
    /// Malformed or stranger packets dropped.
    pub dropped: AtomicU64,
    /// No RTP for the configured timeout; the ports are released.
    pub timed_out: AtomicBool,
    /// Who created it (None: an older client; no lease).
    pub owner: Option<Owner>,
    /// Control-plane view; written on negotiation, latching and playback
    /// changes (rare), read by admin. Per session, so never shared by calls.
    pub view: Mutex<View>,
}

/// The slow-changing part of a session.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Negotiated media.
    pub media: pb::NegotiatedMedia,
    /// Bridge peer session id.
    pub bridged_with: String,
    /// File being played.
    pub playing: String,
    /// Where media is sent now (latched, or the SDP address).
    pub remote_address: String,
    /// When the owner's lease lapses (None without an owner).
    pub lease_until: Option<tokio::time::Instant>,
}

impl SessionShared {
    fn view(&self) -> View {
        self.view.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Update the view.
    pub fn edit(&self, f: impl FnOnce(&mut View)) {
        if let Ok(mut v) = self.view.lock() {
            f(&mut v);
        }
    }

    /// Statistics snapshot.
    pub fn stats(&self) -> pb::SessionStats {
        pb::SessionStats {
            rx: Some(self.rx.to_proto()),
            tx: Some(self.tx.to_proto()),
            remote_address: self.view().remote_address,
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    /// Admin view.
    pub fn info(&self) -> admin_pb::MediaSessionInfo {
        let view = self.view();
        admin_pb::MediaSessionInfo {
            session_id: self.id.clone(),
            call_id: self.call_id.clone(),
            leg: self.leg.clone(),
            created_at: Some(switchboard_proto::timestamp(self.created_at)),
            media: Some(view.media.clone()),
            bridged_with: view.bridged_with.clone(),
            playing: view.playing.clone(),
            stats: Some(self.stats()),
            timed_out: self.timed_out.load(Ordering::Relaxed),
            rtp_port: u32::from(self.rtp_port),
            owner: self
                .owner
                .as_ref()
                .map(Owner::to_string)
                .unwrap_or_default(),
            lease_remaining_ms: view
                .lease_until
                .map(|t| {
                    let left = t.saturating_duration_since(tokio::time::Instant::now());
                    u64::try_from(left.as_millis()).unwrap_or(u64::MAX)
                })
                .unwrap_or(0),
        }
    }
}

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

/// Resolve `file` under `dir`, refusing absolute paths and `..`.
pub fn resolve_audio_path(dir: &Path, file: &str) -> Result<PathBuf> {
    let rel = Path::new(file);
    if file.is_empty() {
        return Err(Error::BadPath {
            file: file.into(),
            reason: "empty file name",
        });
    }
    for c in rel.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(Error::BadPath {
                    file: file.into(),
                    reason: "\"..\" would escape the audio directory",
                });
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(Error::BadPath {
                    file: file.into(),
                    reason: "absolute paths are refused; give a path relative to the audio directory",
                });
            }
        }
    }
    Ok(dir.join(rel))
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

    /// Relay media between two sessions.
    pub async fn bridge(&self, a: &str, b: &str) -> Result<()> {
        if a == b {
            return Err(Error::SelfBridge(a.into()));
        }
        let _ops = self.inner.ops.lock().await;
        let (wa, wb) = {
            let table = self.table();
            let ea = table
                .sessions
                .get(a)
                .ok_or_else(|| Error::NotFound(a.into()))?;
            let eb = table
                .sessions
                .get(b)
                .ok_or_else(|| Error::NotFound(b.into()))?;
            if ea.peer.as_deref() == Some(b) {
                return Ok(());
            }
            for e in [ea, eb] {
                if let Some(p) = &e.peer {
                    return Err(Error::AlreadyBridged {
                        session: e.shared.id.clone(),
                        peer: p.clone(),
                    });
                }
                if e.shared.timed_out.load(Ordering::Relaxed) {
                    return Err(Error::TimedOut(e.shared.id.clone()));
                }
            }
            (ea.worker.clone(), eb.worker.clone())
        };
        let leg_b = detach(&wb, b, "bridged")
            .await
            .ok_or_else(|| Error::TimedOut(b.into()))?;
        if let Err(mpsc::error::SendError(Cmd::Attach(leg))) = wa.send(Cmd::Attach(leg_b)).await {
            // A's task is gone (timed out): give B a task of its own again.
            let w = relay::spawn(vec![*leg], self.inner.ctx.clone());
            if let Some(e) = self.table().sessions.get_mut(b) {
                e.worker = w;
            }
            return Err(Error::TimedOut(a.into()));
        }
        let mut table = self.table();
        if let Some(e) = table.sessions.get_mut(b) {
            e.worker = wa;
            e.peer = Some(a.into());
            e.shared.edit(|v| v.bridged_with = a.into());
        }
        if let Some(e) = table.sessions.get_mut(a) {
            e.peer = Some(b.into());
            e.shared.edit(|v| v.bridged_with = b.into());
        }
        Ok(())
    }

    /// Stop relaying between `id` and its peer.
    pub async fn unbridge(&self, id: &str) -> Result<()> {
        let _ops = self.inner.ops.lock().await;
        let (worker, peer) = {
            let table = self.table();
            let e = table
                .sessions
                .get(id)
                .ok_or_else(|| Error::NotFound(id.into()))?;
            match &e.peer {
                Some(p) => (e.worker.clone(), p.clone()),
                None => return Err(Error::NotBridged(id.into())),
            }
        };
        // The peer moves to a task of its own; `id` stays where it is.
        let leg = detach(&worker, &peer, "unbridged").await;
        let new_worker = leg.map(|l| relay::spawn(vec![*l], self.inner.ctx.clone()));
        let mut table = self.table();
        if let Some(e) = table.sessions.get_mut(&peer) {
            if let Some(w) = new_worker {
                e.worker = w;
            }
            e.peer = None;
            e.shared.edit(|v| v.bridged_with.clear());
        }
        if let Some(e) = table.sessions.get_mut(id) {
            e.peer = None;
            e.shared.edit(|v| v.bridged_with.clear());
        }
        Ok(())
    }

    /// Start playing `file` into a session. Problems with the file itself
    /// arrive as a `PlaybackError` event on the returned stream.
    pub async fn play(
        &self,
        id: &str,
        file: &str,
        looped: bool,
    ) -> Result<mpsc::Receiver<pb::PlayEvent>> {
        let path = resolve_audio_path(&self.inner.settings.audio_dir, file)?;
        let _ops = self.inner.ops.lock().await;
        let (worker, codec) = {
            let table = self.table();
            let e = table
                .sessions
                .get(id)
                .ok_or_else(|| Error::NotFound(id.into()))?;
            if let Some(peer) = &e.peer {
                return Err(Error::PlayWhileBridged {
                    session: id.into(),
                    peer: peer.clone(),
                });
            }
            if e.shared.timed_out.load(Ordering::Relaxed) {
                return Err(Error::TimedOut(id.into()));
            }
            let codec = e
                .sdp
                .negotiated
                .map(|n| n.codec)
                .ok_or_else(|| Error::NotNegotiated(id.into()))?;
            (e.worker.clone(), codec)
        };
        let playback_id = format!(
            "p{}",
            self.inner.playback_ids.fetch_add(1, Ordering::Relaxed)
        );
        let (tx, rx) = mpsc::channel(64);
        let law = AudioCodec::law(codec);
        let loaded = tokio::task::spawn_blocking(move || player::load(&path, law)).await;
        let audio = match loaded {
            Ok(Ok(audio)) => audio,
            Ok(Err(e)) => {
                let _ = tx.try_send(player::error_event(&playback_id, &e.to_string()));
                return Ok(rx);
            }
            Err(_) => {
                let _ = tx.try_send(player::error_event(&playback_id, "decoder task failed"));
                return Ok(rx);
            }
        };
        let playback = Playback::new(
            playback_id.clone(),
            file.to_string(),
            audio,
            looped,
            tx.clone(),
        );
        let (reply, done) = oneshot::channel();
        let sent = worker
            .send(Cmd::Play {
                id: id.into(),
                playback: Box::new(playback),
                reply,
            })
            .await;
        if sent.is_err() || !done.await.unwrap_or(false) {
            let _ = tx.try_send(player::error_event(
                &playback_id,
                "session is gone (timed out or destroyed)",
            ));
        }
        Ok(rx)
    }

    /// Stop the playback of a session; whether one was running.
    pub async fn stop_playback(&self, id: &str) -> Result<bool> {
        let worker = {
            let table = self.table();
            table
                .sessions
                .get(id)
                .ok_or_else(|| Error::NotFound(id.into()))?
                .worker
                .clone()
        };
        let (reply, done) = oneshot::channel();
        if worker
            .send(Cmd::Stop {
                id: id.into(),
                reason: "requested",
                reply,
            })
            .await
            .is_err()
        {
            return Ok(false);
        }
        Ok(done.await.unwrap_or(false))
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

    /// Renew the lease of every session of `owner` for `length` (None: the
    /// node's default), which also becomes the lease of its next sessions.
    /// Returns how many were renewed.
    pub fn renew_leases(&self, owner: &Owner, length: Option<Duration>) -> u32 {
        let length = length.unwrap_or(self.inner.settings.default_lease);
        if let Ok(mut l) = self.inner.lease_lengths.lock() {
            l.insert(owner.clone(), length);
        }
        let until = tokio::time::Instant::now() + length;
        let table = self.table();
        let mut renewed = 0u32;
        for e in table.sessions.values() {
            if e.shared.owner.as_ref() == Some(owner) {
                e.shared.edit(|v| v.lease_until = Some(until));
                renewed = renewed.saturating_add(1);
            }
        }
        renewed
    }

    /// A Control stream of `owner` opened; it counts as alive until the
    /// returned guard drops (the stream ended).
    pub fn owner_connected(&self, owner: &Owner) -> LiveOwner {
        if let Ok(mut l) = self.inner.live_owners.lock() {
            *l.entry(owner.clone()).or_insert(0) += 1;
        }
        LiveOwner {
            node: self.clone(),
            owner: owner.clone(),
        }
    }

    fn is_connected(&self, owner: &Owner) -> bool {
        self.inner
            .live_owners
            .lock()
            .map(|l| l.get(owner).is_some_and(|n| *n > 0))
            .unwrap_or(false)
    }

    /// `owner` (re)connected: destroy the sessions of previous instances of
    /// its node id (nobody will ever end them), renew its own. Sessions of
    /// other node ids are left to their leases, and so are those of an
    /// instance still connected (two live swbd configured with one node_id:
    /// logged). Returns (dropped, renewed, kept because connected).
    pub async fn reconcile_owner(
        &self,
        owner: &Owner,
        length: Option<Duration>,
    ) -> (u32, u32, u32) {
        let mut alive: Vec<String> = Vec::new();
        let mut kept = 0u32;
        let stale: Vec<(String, String, String)> = {
            let table = self.table();
            table
                .sessions
                .values()
                .filter_map(|e| {
                    let o = e.shared.owner.as_ref()?;
                    if o.node_id != owner.node_id || o.instance_id == owner.instance_id {
                        return None;
                    }
                    if self.is_connected(o) {
                        kept = kept.saturating_add(1);
                        let name = o.to_string();
                        if !alive.contains(&name) {
                            alive.push(name);
                        }
                        return None;
                    }
                    Some((e.shared.id.clone(), e.shared.call_id.clone(), o.to_string()))
                })
                .collect()
        };
        for other in alive {
            tracing::warn!(%owner, %other, "another instance of this node_id is still connected: its sessions are kept (two swbd with the same node_id?)");
        }
        let mut dropped = 0u32;
        for (id, call_id, old) in stale {
            if self.destroy(&id).await.is_ok() {
                dropped = dropped.saturating_add(1);
                self.inner
                    .ctx
                    .counters
                    .stale_owner_dropped
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(session = %id, call_id = %call_id, old_owner = %old, owner = %owner, "session dropped: its owner restarted");
            }
        }
        if let Ok(mut l) = self.inner.lease_lengths.lock() {
            // Previous instances will never renew again.
            l.retain(|o, _| o.node_id != owner.node_id || o.instance_id == owner.instance_id);
        }
        let renewed = self.renew_leases(owner, length);
        (dropped, renewed, kept)
    }

    /// Destroy every session whose lease lapsed; returns how many.
    pub async fn reap_expired_leases(&self) -> u32 {
        let now = tokio::time::Instant::now();
        let lapsed: Vec<Arc<SessionShared>> = self
            .table()
            .sessions
            .values()
            .filter(|e| {
                e.shared
                    .view
                    .lock()
                    .ok()
                    .and_then(|v| v.lease_until)
                    .is_some_and(|t| t <= now)
            })
            .map(|e| e.shared.clone())
            .collect();
        let mut reaped = 0u32;
        for s in lapsed {
            // Renewed in between: keep it.
            let still_lapsed = s
                .view
                .lock()
                .ok()
                .and_then(|v| v.lease_until)
                .is_some_and(|t| t <= tokio::time::Instant::now());
            if !still_lapsed || self.destroy(&s.id).await.is_err() {
                continue;
            }
            reaped = reaped.saturating_add(1);
            self.inner
                .ctx
                .counters
                .leases_expired
                .fetch_add(1, Ordering::Relaxed);
            let owner = s.owner.as_ref().map(Owner::to_string).unwrap_or_default();
            tracing::warn!(session = %s.id, call_id = %s.call_id, leg = %s.leg, %owner, "session reclaimed: its owner's lease lapsed");
        }
        reaped
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

/// An open Control stream of an owner (see [`Node::owner_connected`]).
#[derive(Debug)]
pub struct LiveOwner {
    node: Node,
    owner: Owner,
}

impl Drop for LiveOwner {
    fn drop(&mut self) {
        if let Ok(mut l) = self.node.inner.live_owners.lock()
            && let Some(n) = l.get_mut(&self.owner)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                l.remove(&self.owner);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_paths_cannot_escape() {
        let dir = Path::new("/srv/audio");
        assert_eq!(
            resolve_audio_path(dir, "prompts/hello.wav").ok(),
            Some(PathBuf::from("/srv/audio/prompts/hello.wav"))
        );
        for bad in ["../etc/passwd", "a/../../b.wav", "/etc/passwd", ""] {
            assert!(resolve_audio_path(dir, bad).is_err(), "{bad}");
        }
    }
}
