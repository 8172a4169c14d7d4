//! The media task: one tokio task owns one session, or both sessions of a
//! bridge, with their sockets, latching state, header rewriting state and
//! playback. It is one hand-written poll loop ([`Relay`]'s `poll_run`): on
//! each wake-up it reads every queued command, drains every ready socket
//! until `WouldBlock` (up to 64 datagrams per socket, then it yields), and
//! arms its single timer only for the earliest of the playback deadline and
//! the one-second RTP-timeout check (none when neither applies), re-arming
//! it only when that deadline moved. Nothing is re-created per packet.
//!
//! The per-packet path ([`Relay::on_rtp`] / [`Relay::on_rtcp`]) reads into a
//! buffer the task allocated once, parses and rewrites the header in place
//! with `rtp-types` (zero-copy), updates atomics, and sends: no allocation,
//! no lock shared with other calls. The time from the receive returning to
//! the send completing is recorded per relayed RTP packet in a task-local
//! histogram ([`crate::stats::LocalLatency`]) that reaches the node's
//! (admin `GetStatus`, `relay_latency`) about once a second and when the task
//! ends.
//!
//! # Latching (symmetric RTP)
//!
//! Media is sent where the peer's packets really come from, with the SDP
//! address only as the starting point. The rule:
//!
//! 1. Packets from the address we are latched to are accepted.
//! 2. Before the session is latched (at start, and again after a re-offer that
//!    changes the remote address), a packet from the exact SDP address latches
//!    at once. Any other source must send `latch_packets` (default 3)
//!    consecutive valid RTP packets with the same SSRC; a packet from another
//!    source or with another SSRC restarts the count.
//! 3. Once latched, a new source may take over only by sending `latch_packets`
//!    consecutive packets *with the latched SSRC* (NAT rebinding keeps the
//!    SSRC), with no packet from the latched address in between. A stranger
//!    spraying the port range (RTP bleed) cannot guess the 32-bit SSRC and its
//!    packets are dropped and counted in `dropped`.
//! 4. RTCP is accepted only from the IP address RTP is latched to (or the SDP
//!    address before latching); the RTCP destination latches to its source.
//! 5. **Early latching**: a leg whose remote address is not known yet (we
//!    sent an offer and no answer has arrived, so there is no SDP address to
//!    compare with) latches to the first valid RTP packet on its port. This
//!    is for callees that start sending on their 200 OK, before swbd has
//!    passed their SDP answer on: without it their first packets would be
//!    dropped while they count towards `latch_packets`. When the answer then
//!    arrives, the latch is reset as for any new remote address, and rules
//!    1-3 apply strictly from then on: a packet from the SDP address latches
//!    at once, any other source needs `latch_packets` packets again.
//!
//!    Security trade-off: between our offer and the answer (typically the
//!    ringing time), a stranger that sprays the port range (RTP bleed) and
//!    hits this port first is latched, and until the answer arrives, media
//!    the leg is bridged to (early media) would be sent to it instead of the
//!    SDP address; there is no SDP address to send to yet anyway, so what
//!    leaks is early media only. The stranger's latch never survives the
//!    answer (the reset above), and once the address is known a stranger has
//!    to guess the 32-bit SSRC as before.
//!
//! Packets from a source that has not latched yet are dropped, not relayed.
//!
//! # Before the first bridge
//!
//! A leg that has never been bridged keeps the last [`HOLD_PACKETS`] (8)
//! RTP packets it accepted, and its first bridge relays those no older than
//! [`HOLD_MAX_AGE`] (200 ms) before anything else. swbd bridges the legs only
//! after the callee's 200 OK has been ACKed, and a callee that sends on its
//! 200 OK would otherwise lose its first packet(s) to that gap. After a leg
//! was bridged once, unbridged packets are dropped (and counted) as before.

pub mod dtmf;
#[doc(hidden)]
pub mod fixture;
mod latch;
mod packet;
mod playback;
mod tx_state;

pub use latch::Latch;
pub use tx_state::TxState;

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use sdp_types::Direction;
use switchboard_proto::media::v1 as pb;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::hold;
use crate::player::Playback;
use crate::ports::PortPair;
use crate::sdp::AudioCodec;
use crate::session::{MediaContext, NodeEvent, SessionShared};
use crate::stats::{LocalLatency, ReceiverState};

/// Largest datagram we read; bigger ones are truncated and dropped.
pub const BUF_LEN: usize = 2048;

/// Negotiated media of one leg, as the media task needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegMedia {
    /// Codec, `None` until an answer to our offer arrives.
    pub codec: Option<AudioCodec>,
    /// Audio payload type.
    pub pt: u8,
    /// telephone-event payload type.
    pub te_pt: Option<u8>,
    /// Packetization time (ms).
    pub ptime: u32,
    /// Direction from our side.
    pub direction: Direction,
}

/// RTP packets a leg received before its first bridge, with arrival times.
type Held = VecDeque<(Instant, Vec<u8>)>;

/// One session as its media task holds it.
#[derive(Debug)]
pub struct Leg {
    shared: Arc<SessionShared>,
    media: LegMedia,
    sdp_rtp: Option<SocketAddr>,
    sdp_rtcp: Option<SocketAddr>,
    latch: Latch,
    rtcp_dest: Option<SocketAddr>,
    rx: ReceiverState,
    tx: TxState,
    playback: Option<Box<Playback>>,
    last_rx: Instant,
    /// The inactivity timeout runs only once media flowed or the leg was
    /// bridged (a ringing leg legitimately receives nothing).
    armed: bool,
    /// Has been bridged at least once (packets are held only before that).
    bridged_once: bool,
    /// RTP received before the first bridge, with arrival times (at most
    /// [`HOLD_PACKETS`]; allocated by the first such packet).
    held: Option<Box<Held>>,
    /// DTMF sent and received ([`dtmf`]; allocated by the first one).
    dtmf: Option<Box<dtmf::LegDtmf>>,
    epoch: Instant,
    /// Last: the sockets close before the ports return to the pool.
    ports: PortPair,
}

impl Leg {
    /// A leg over bound `ports`.
    pub fn new(
        shared: Arc<SessionShared>,
        ports: PortPair,
        media: LegMedia,
        sdp_rtp: Option<SocketAddr>,
        sdp_rtcp: Option<SocketAddr>,
    ) -> Self {
        let now = Instant::now();
        Self {
            shared,
            media,
            sdp_rtp,
            sdp_rtcp,
            latch: Latch::default(),
            rtcp_dest: None,
            rx: ReceiverState::default(),
            tx: TxState::new(),
            playback: None,
            last_rx: now,
            armed: false,
            bridged_once: false,
            held: None,
            dtmf: None,
            epoch: now,
            ports,
        }
    }

    fn id(&self) -> &str {
        &self.shared.id
    }

    /// No remote SDP has told us the peer's address yet (we offered and no
    /// answer arrived): see rule 5 of the latching rule.
    fn awaiting_address(&self) -> bool {
        self.sdp_rtp.is_none() && self.media.codec.is_none()
    }

    fn rtp_dest(&self) -> Option<SocketAddr> {
        self.latch.address().or(self.sdp_rtp)
    }

    fn stop_playback(&mut self, reason: &str) -> bool {
        match self.playback.take() {
            Some(p) => {
                p.emit(pb::play_event::Event::Stopped(pb::PlaybackStopped {
                    reason: reason.into(),
                }));
                self.shared.edit(|v| v.playing.clear());
                true
            }
            None => false,
        }
    }

    fn publish_remote(&self) {
        let addr = self.rtp_dest().map(|a| a.to_string()).unwrap_or_default();
        self.shared.edit(|v| v.remote_address = addr);
    }

    /// Keep `data` for the first bridge; `true` when that pushed out the
    /// oldest held packet (which is then a dropped one).
    fn hold(&mut self, data: &[u8], now: Instant) -> bool {
        let held = self.held.get_or_insert_with(Box::default);
        let (evicted, mut buf) = if held.len() >= HOLD_PACKETS {
            (true, held.pop_front().map(|(_, b)| b).unwrap_or_default())
        } else {
            (false, Vec::new())
        };
        buf.clear();
        buf.extend_from_slice(data);
        held.push_back((now, buf));
        evicted
    }

    fn drop_packet(&self, ctx: &MediaContext) {
        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        ctx.counters.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Commands from the control plane to a media task.
#[derive(Debug)]
pub enum Cmd {
    /// Take over a leg (bridge).
    Attach(Box<Leg>),
    /// Hand a leg back (destroy, bridge, unbridge); `None` if not here.
    Detach {
        /// Session.
        id: String,
        /// Playback stop reason, if one is running.
        reason: &'static str,
        /// Reply.
        reply: oneshot::Sender<Option<Box<Leg>>>,
    },
    /// New remote SDP applied.
    Update {
        /// Session.
        id: String,
        /// Negotiated media.
        media: LegMedia,
        /// Remote RTP address from the SDP.
        sdp_rtp: Option<SocketAddr>,
        /// Remote RTCP address from the SDP.
        sdp_rtcp: Option<SocketAddr>,
        /// The remote address changed: latch again.
        relatch: bool,
    },
    /// Start a playback (replacing a running one).
    Play {
        /// Session.
        id: String,
        /// The playback.
        playback: Box<Playback>,
        /// Whether it started.
        reply: oneshot::Sender<bool>,
    },
    /// Stop a playback.
    Stop {
        /// Session.
        id: String,
        /// Why.
        reason: &'static str,
        /// Whether one was running.
        reply: oneshot::Sender<bool>,
    },
    /// Queue DTMF digits (RFC 4733 events, see [`dtmf`]).
    SendDtmf {
        /// Session.
        id: String,
        /// Event codes.
        events: Vec<u8>,
        /// Duration of each, clock ticks.
        ticks: u16,
        /// Digits waiting now; `None` when the leg is not here.
        reply: oneshot::Sender<Option<Result<usize, dtmf::DtmfError>>>,
    },
}

/// Start a media task owning `legs`; returns its command channel. The task
/// ends when it owns no leg any more or every sender is gone.
pub fn spawn(legs: Vec<Leg>, ctx: Arc<MediaContext>) -> mpsc::Sender<Cmd> {
    let (tx, rx) = mpsc::channel(32);
    let relay = Relay::new(legs, ctx, vec![0u8; BUF_LEN].into_boxed_slice());
    tokio::spawn(relay.run(rx));
    tx
}

/// The state of one media task.
#[derive(Debug)]
pub struct Relay {
    legs: Vec<Leg>,
    ctx: Arc<MediaContext>,
    buf: Box<[u8]>,
    /// Relay latency recorded by this task since its last flush into the
    /// node's histogram; allocated by the first relayed packet.
    latency: Option<Box<LocalLatency>>,
    last_flush: Instant,
    /// Next RTP-timeout check (only with a timeout configured).
    housekeeping: Option<Instant>,
}

/// How often the RTP timeout is checked, and at most how long relay latency
/// figures stay in a task before they reach the node's histogram.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// RTP packets a leg keeps from before its first bridge.
pub const HOLD_PACKETS: usize = 8;
/// Held packets older than this at the bridge are dropped, not relayed.
pub const HOLD_MAX_AGE: Duration = Duration::from_millis(200);
/// Datagrams read from one socket per wake-up before the others get a turn.
const DRAIN_BUDGET: usize = 64;
/// Rounds over commands, sockets and timers in one poll before the task
/// yields to the scheduler (it wakes itself up again at once).
const ROUNDS: usize = 8;

impl Drop for Relay {
    fn drop(&mut self) {
        self.flush_latency();
    }
}

impl Relay {
    fn new(legs: Vec<Leg>, ctx: Arc<MediaContext>, buf: Box<[u8]>) -> Self {
        let now = Instant::now();
        let housekeeping = ctx.rtp_timeout.map(|_| now + HOUSEKEEPING);
        Self {
            legs,
            ctx,
            buf,
            latency: None,
            last_flush: now,
            housekeeping,
        }
    }

    /// The task: one hand-written poll loop instead of a `select!`, so that
    /// nothing is re-armed per packet. Each wake-up drains every ready socket
    /// until `WouldBlock` (which re-registers its waker), reads every queued
    /// command, and arms the one timer only for the earliest of the playback
    /// deadline and the RTP-timeout check, and only when that deadline moved.
    async fn run(mut self, mut cmds: mpsc::Receiver<Cmd>) {
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        let closed =
            std::future::poll_fn(|cx| self.poll_run(cx, &mut cmds, timer.as_mut(), &mut armed))
                .await;
        if closed {
            for leg in &mut self.legs {
                leg.stop_playback("shutdown");
            }
        }
    }

    /// `Ready(true)`: every command sender is gone; `Ready(false)`: no leg
    /// left.
    fn poll_run(
        &mut self,
        cx: &mut Context<'_>,
        cmds: &mut mpsc::Receiver<Cmd>,
        mut timer: Pin<&mut tokio::time::Sleep>,
        armed: &mut Option<Instant>,
    ) -> Poll<bool> {
        for _ in 0..ROUNDS {
            let mut again = false;
            loop {
                match cmds.poll_recv(cx) {
                    Poll::Ready(Some(cmd)) => self.on_cmd(cmd),
                    Poll::Ready(None) => return Poll::Ready(true),
                    Poll::Pending => break,
                }
            }
            if self.legs.is_empty() {
                return Poll::Ready(false);
            }
            for i in 0..self.legs.len() {
                for rtcp in [false, true] {
                    // Ready: the budget ran out with datagrams still queued.
                    again |= self.poll_socket(cx, i, rtcp).is_ready();
                }
            }
            let wake_at = self.next_deadline();
            let housekeeping = self.housekeeping;
            if wake_at.is_some() || housekeeping.is_some() {
                let now = Instant::now();
                if wake_at.is_some_and(|d| d <= now) {
                    self.play_due();
                    again = true;
                }
                if housekeeping.is_some_and(|d| d <= now) {
                    self.check_timeouts();
                    self.flush_latency();
                    self.housekeeping = Some(now + HOUSEKEEPING);
                    again = true;
                }
                if self.legs.is_empty() {
                    return Poll::Ready(false);
                }
            }
            if again {
                continue;
            }
            let deadline = match (wake_at, housekeeping) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if let Some(d) = deadline {
                if *armed != Some(d) {
                    timer.as_mut().reset(d);
                    *armed = Some(d);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    *armed = None;
                    continue;
                }
            }
            return Poll::Pending;
        }
        // Busy: let other tasks run, then carry on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Read what is queued on one socket. `Pending` once it is empty (its
    /// waker is then registered); `Ready` when the budget ran out first.
    fn poll_socket(&mut self, cx: &mut Context<'_>, i: usize, rtcp: bool) -> Poll<()> {
        loop {
            let Some(leg) = self.legs.get(i) else {
                return Poll::Pending;
            };
            let sock = if rtcp {
                &leg.ports.rtcp
            } else {
                &leg.ports.rtp
            };
            match sock.poll_recv_ready(cx) {
                Poll::Ready(Ok(())) => {}
                // Only when the I/O driver is gone (runtime shutdown).
                Poll::Ready(Err(_)) | Poll::Pending => return Poll::Pending,
            }
            if !self.drain(i, rtcp) {
                return Poll::Ready(());
            }
        }
    }

    /// Add this task's latency figures to the node's histogram.
    fn flush_latency(&mut self) {
        if let Some(l) = self.latency.as_mut() {
            l.flush_into(&self.ctx.counters.latency);
        }
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.legs.iter().position(|l| l.id() == id)
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Attach(leg) => {
                for l in &mut self.legs {
                    l.stop_playback("bridged");
                }
                self.legs.push(*leg);
                let now = Instant::now();
                for l in &mut self.legs {
                    if !l.armed {
                        l.armed = true;
                        l.last_rx = now;
                    }
                }
                self.reset_mappings();
                self.relay_held();
                for l in &mut self.legs {
                    l.bridged_once = true;
                }
            }
            Cmd::Detach { id, reason, reply } => {
                let leg = self.position(&id).map(|i| {
                    let mut leg = self.legs.remove(i);
                    leg.stop_playback(reason);
                    Box::new(leg)
                });
                self.reset_mappings();
                let _ = reply.send(leg);
            }
            Cmd::Update {
                id,
                media,
                sdp_rtp,
                sdp_rtcp,
                relatch,
            } => {
                if let Some(i) = self.position(&id)
                    && let Some(leg) = self.legs.get_mut(i)
                {
                    leg.media = media;
                    leg.sdp_rtp = sdp_rtp;
                    leg.sdp_rtcp = sdp_rtcp;
                    leg.last_rx = Instant::now();
                    if relatch {
                        leg.latch.reset();
                        leg.rtcp_dest = None;
                    }
                    leg.publish_remote();
                }
            }
            Cmd::Play {
                id,
                playback,
                reply,
            } => {
                let ok = match self.position(&id).and_then(|i| self.legs.get_mut(i)) {
                    Some(leg) => {
                        leg.stop_playback("replaced");
                        let mut playback = playback;
                        playback.start = Some(Instant::now());
                        playback.emit(pb::play_event::Event::Started(pb::PlaybackStarted {
                            duration: Some(switchboard_proto::duration(playback.audio.duration())),
                        }));
                        let file = playback.file.clone();
                        leg.shared.edit(|v| v.playing = file);
                        leg.playback = Some(playback);
                        true
                    }
                    None => false,
                };
                let _ = reply.send(ok);
            }
            Cmd::Stop { id, reason, reply } => {
                let was = self
                    .position(&id)
                    .and_then(|i| self.legs.get_mut(i))
                    .map(|l| l.stop_playback(reason))
                    .unwrap_or(false);
                let _ = reply.send(was);
            }
            Cmd::SendDtmf {
                id,
                events,
                ticks,
                reply,
            } => {
                let _ = reply.send(self.queue_dtmf(&id, &events, ticks));
            }
        }
    }

    fn reset_mappings(&mut self) {
        for l in &mut self.legs {
            l.tx.mapping = None;
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.legs
            .iter()
            .filter_map(|l| l.playback.as_ref().and_then(|p| p.deadline(l.media.ptime)))
            .chain(self.dtmf_deadline())
            .min()
    }

    /// Read the datagrams waiting on one socket, at most [`DRAIN_BUDGET`].
    /// `true` when the socket is empty (`WouldBlock` cleared its readiness),
    /// `false` when the budget ran out first.
    fn drain(&mut self, i: usize, rtcp: bool) -> bool {
        for _ in 0..DRAIN_BUDGET {
            let Some(leg) = self.legs.get(i) else {
                return true;
            };
            let sock = if rtcp {
                &leg.ports.rtcp
            } else {
                &leg.ports.rtp
            };
            match sock.try_recv_from(&mut self.buf) {
                Ok((n, src)) => {
                    // RTCP multiplexed on the RTP port (RFC 5761) is RTCP.
                    if rtcp || self.buf.get(..n).is_some_and(hold::is_muxed_rtcp) {
                        self.on_rtcp(i, n, src, !rtcp);
                    } else {
                        self.on_rtp(i, n, src);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                // ICMP errors surface on the next recv; the socket is fine.
                Err(_) => continue,
            }
        }
        false
    }

    fn check_timeouts(&mut self) {
        let Some(timeout) = self.ctx.rtp_timeout else {
            return;
        };
        let now = Instant::now();
        let mut i = 0;
        while i < self.legs.len() {
            let expired = self.legs.get(i).is_some_and(|l| {
                l.armed
                    && hold::expects_rtp(&l.media, l.sdp_rtp)
                    && now.duration_since(l.last_rx) >= timeout
            });
            if expired {
                let mut leg = self.legs.remove(i);
                leg.stop_playback("rtp timeout");
                leg.shared.timed_out.store(true, Ordering::Relaxed);
                self.ctx.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::info!(session = %leg.shared.id, "RTP timeout; ports released");
                let _ = self
                    .ctx
                    .events
                    .send(NodeEvent::TimedOut(leg.shared.clone()));
                self.reset_mappings();
                drop(leg); // sockets close, ports return to the pool
            } else {
                i += 1;
            }
        }
    }
}

/// Memory a session costs, in bytes, by component (for docs/BENCHMARKS).
/// Kernel socket buffers are not included.
pub fn memory_per_session() -> Vec<(&'static str, usize)> {
    let (tx, rx) = mpsc::channel::<Cmd>(32);
    let relay = Relay::new(
        Vec::new(),
        Arc::new(MediaContext {
            events: tokio::sync::broadcast::channel(1).0,
            counters: crate::session::NodeCounters::default(),
            rtp_timeout: None,
            latch_packets: 3,
        }),
        Box::new([]),
    );
    let task = std::mem::size_of_val(&relay.run(rx));
    drop(tx);
    vec![
        (
            "Leg (media task state of one session, incl. sockets)",
            std::mem::size_of::<Leg>(),
        ),
        (
            "SessionShared (stats atomics + admin view)",
            std::mem::size_of::<SessionShared>(),
        ),
        (
            "session table entry (SDP state, command sender)",
            crate::session::entry_size(),
        ),
        ("media task future (one per session or bridge)", task),
        ("receive buffer (one per media task)", BUF_LEN),
        (
            "relay latency histogram (one per media task that relayed)",
            std::mem::size_of::<LocalLatency>(),
        ),
        (
            "command channel (32 slots of Cmd)",
            32 * std::mem::size_of::<Cmd>(),
        ),
    ]
}

/// Split the legs into `(legs[i], the other one)`.
fn split(legs: &mut [Leg], i: usize) -> (Option<&mut Leg>, Option<&mut Leg>) {
    match (i, legs) {
        (0, [a]) => (Some(a), None),
        (0, [a, b]) => (Some(a), Some(b)),
        (1, [a, b]) => (Some(b), Some(a)),
        _ => (None, None),
    }
}
