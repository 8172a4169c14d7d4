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

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use rtp_types::{RtpPacket, RtpPacketBuilder, RtpPacketMut};
use sdp_types::Direction;
use switchboard_proto::media::v1 as pb;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::hold;
use crate::player::Playback;
use crate::ports::PortPair;
use crate::sdp::AudioCodec;
use crate::session::{MediaContext, NodeEvent, SessionShared};
use crate::stats::{LocalLatency, ReceiverState, now_ms};

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

/// Symmetric-RTP latching state (see the module docs for the rule).
#[derive(Debug, Clone, Default)]
pub struct Latch {
    current: Option<(SocketAddr, u32)>,
    candidate: Option<(SocketAddr, u32, u32)>,
}

impl Latch {
    /// Whether a packet from `src` with `ssrc` is accepted; latches or moves
    /// the latch as the rule says. `sdp` is the address from the SDP.
    pub fn accept(
        &mut self,
        src: SocketAddr,
        ssrc: u32,
        sdp: Option<SocketAddr>,
        need: u32,
    ) -> bool {
        match self.current {
            Some((addr, _)) if addr == src => {
                self.candidate = None;
                self.current = Some((addr, ssrc));
                true
            }
            None if sdp == Some(src) => {
                self.current = Some((src, ssrc));
                self.candidate = None;
                true
            }
            Some((_, latched_ssrc)) if ssrc != latched_ssrc => false,
            _ => {
                let count = match self.candidate {
                    Some((a, s, n)) if a == src && s == ssrc => n + 1,
                    _ => 1,
                };
                if count >= need {
                    self.current = Some((src, ssrc));
                    self.candidate = None;
                    true
                } else {
                    self.candidate = Some((src, ssrc, count));
                    false
                }
            }
        }
    }

    /// Forget the latch (re-offer with a new address).
    pub fn reset(&mut self) {
        *self = Latch::default();
    }

    /// The latched address.
    pub fn address(&self) -> Option<SocketAddr> {
        self.current.map(|(a, _)| a)
    }
}

/// Header rewriting state of what we send on a leg: our SSRC, and the
/// offsets mapping the relayed stream's sequence numbers and timestamps onto
/// ours, so the peer sees one continuous stream across playbacks and bridges.
#[derive(Debug, Clone)]
pub struct TxState {
    /// Our SSRC on this leg.
    pub ssrc: u32,
    /// Next sequence number.
    pub next_seq: u16,
    /// Timestamp of the last packet sent.
    pub last_ts: u32,
    /// Samples per packet of the last packet sent.
    pub last_step: u32,
    /// `(source SSRC, seq offset, ts offset)` of the stream relayed now.
    pub mapping: Option<(u32, u16, u32)>,
}

impl TxState {
    fn new() -> Self {
        Self {
            ssrc: rand::random(),
            next_seq: rand::random(),
            last_ts: rand::random(),
            last_step: 0,
            mapping: None,
        }
    }

    /// Map an incoming `(ssrc, seq, ts)` onto our stream; `true` in the
    /// result means "new stream": set the marker bit.
    pub fn map(&mut self, ssrc: u32, seq: u16, ts: u32, step: u32) -> (u16, u32, bool) {
        let (seq_off, ts_off, fresh) = match self.mapping {
            Some((s, so, to)) if s == ssrc => (so, to, false),
            _ => {
                let so = self.next_seq.wrapping_sub(seq);
                let to = self
                    .last_ts
                    .wrapping_add(self.last_step.max(step))
                    .wrapping_sub(ts);
                self.mapping = Some((ssrc, so, to));
                (so, to, true)
            }
        };
        let out_seq = seq.wrapping_add(seq_off);
        let out_ts = ts.wrapping_add(ts_off);
        // Only move forward: reordered packets keep their mapped numbers.
        if out_seq.wrapping_sub(self.next_seq) < 0x8000 {
            self.next_seq = out_seq.wrapping_add(1);
            self.last_ts = out_ts;
            self.last_step = step;
        }
        (out_seq, out_ts, fresh)
    }

    /// Take the next `(seq, ts)` for a locally generated packet of `step`
    /// samples; the relayed mapping restarts afterwards.
    pub fn next_local(&mut self, step: u32) -> (u16, u32) {
        let seq = self.next_seq;
        let ts = self.last_ts.wrapping_add(self.last_step);
        self.next_seq = seq.wrapping_add(1);
        self.last_ts = ts;
        self.last_step = step;
        self.mapping = None;
        (seq, ts)
    }
}

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

    /// The per-packet path for RTP from leg `i`: check, account, rewrite
    /// in place, send to the bridge peer. Call right after the receive
    /// returned: the relay latency is measured from here to the send's end.
    pub fn on_rtp(&mut self, i: usize, n: usize, src: SocketAddr) {
        let received = Instant::now();
        let Some((dest, payload_len, at)) = self.prepare_rtp_at(i, n, src, received) else {
            return;
        };
        let (_, to) = split(&mut self.legs, i);
        if let Some(to) = to
            && let Some(data) = self.buf.get(..n)
            && to.ports.rtp.try_send_to(data, dest).is_ok()
        {
            let sent = Instant::now();
            to.shared.tx.count(payload_len, at);
            self.ctx.counters.relayed.fetch_add(1, Ordering::Relaxed);
            let took = sent.saturating_duration_since(received);
            let latency = self.latency.get_or_insert_with(Box::default);
            latency.record(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
            if sent.saturating_duration_since(self.last_flush) >= HOUSEKEEPING {
                latency.flush_into(&self.ctx.counters.latency);
                self.last_flush = sent;
            }
        }
    }

    /// Everything `on_rtp` does before the send, on the `n` bytes in the
    /// task's buffer: parse, latch, stats, header rewrite (and transcoding).
    /// Returns where to send and the payload length, or `None` when the
    /// packet is dropped or has nowhere to go.
    pub fn prepare_rtp(
        &mut self,
        i: usize,
        n: usize,
        src: SocketAddr,
    ) -> Option<(SocketAddr, usize, u64)> {
        self.prepare_rtp_at(i, n, src, Instant::now())
    }

    fn prepare_rtp_at(
        &mut self,
        i: usize,
        n: usize,
        src: SocketAddr,
        now: Instant,
    ) -> Option<(SocketAddr, usize, u64)> {
        let (from, to) = split(&mut self.legs, i);
        let from = from?;
        // Early latching (module docs, rule 5): a leg that has no remote
        // address yet latches to the first valid packet.
        let need = if from.awaiting_address() && from.latch.address().is_none() {
            1
        } else {
            self.ctx.latch_packets
        };
        let data = self.buf.get(..n)?;
        let (ssrc, seq, ts, pt, payload_len) = match RtpPacket::parse(data) {
            Ok(p) => (
                p.ssrc(),
                p.sequence_number(),
                p.timestamp(),
                p.payload_type(),
                p.payload_len(),
            ),
            Err(_) => {
                from.drop_packet(&self.ctx);
                return None;
            }
        };
        let known_pt =
            from.media.codec.is_none() || pt == from.media.pt || Some(pt) == from.media.te_pt;
        if n == BUF_LEN || !known_pt {
            from.drop_packet(&self.ctx);
            return None;
        }
        let was = from.latch.address();
        if !from.latch.accept(src, ssrc, from.sdp_rtp, need) {
            from.drop_packet(&self.ctx);
            return None;
        }
        if from.latch.address() != was {
            from.publish_remote();
        }
        from.last_rx = now;
        from.armed = true;
        if from.shared.timed_out.load(Ordering::Relaxed) {
            from.shared.timed_out.store(false, Ordering::Relaxed);
        }
        let at = now_ms();
        from.shared.rx.count(payload_len, at);
        if Some(pt) == from.media.te_pt
            && let Some(data) = self.buf.get(..n)
        {
            dtmf::on_event_packet(from, to.as_deref(), ts, data, &self.ctx);
        }
        if Some(pt) != from.media.te_pt {
            let arrival = (now.duration_since(from.epoch).as_micros() as u64 * 8 / 1000) as u32;
            let (lost, jitter) = from.rx.on_packet(ssrc, seq, ts, arrival);
            from.shared.rx.set_quality(lost, jitter / 8.0);
        }
        let Some(to) = to else {
            // Not bridged. Before its first bridge a leg keeps its last few
            // packets for the bridge to relay (module docs, "Before the
            // first bridge"); otherwise they are counted, then dropped.
            let evicted = match (from.bridged_once, self.buf.get(..n)) {
                (false, Some(data)) => from.hold(data, now),
                _ => true,
            };
            if evicted {
                self.ctx.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            return None;
        };
        let header = Header { ssrc, seq, ts, pt };
        let dest = rewrite(from, to, &self.ctx, self.buf.get_mut(..n)?, header)?;
        Some((dest, payload_len, at))
    }

    /// On the first bridge: relay what the legs received before it (at most
    /// [`HOLD_PACKETS`] each, none older than [`HOLD_MAX_AGE`]).
    fn relay_held(&mut self) {
        let now = Instant::now();
        for i in 0..self.legs.len() {
            let Some(held) = self.legs.get_mut(i).and_then(|l| l.held.take()) else {
                continue;
            };
            for (at, packet) in held.iter() {
                if now.saturating_duration_since(*at) > HOLD_MAX_AGE {
                    self.ctx.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let n = packet.len().min(self.buf.len());
                let (Some(dst), Some(src)) = (self.buf.get_mut(..n), packet.get(..n)) else {
                    continue;
                };
                dst.copy_from_slice(src);
                let Ok(p) = RtpPacket::parse(&*dst) else {
                    continue;
                };
                let header = Header {
                    ssrc: p.ssrc(),
                    seq: p.sequence_number(),
                    ts: p.timestamp(),
                    pt: p.payload_type(),
                };
                let payload_len = p.payload_len();
                let (Some(from), Some(to)) = split(&mut self.legs, i) else {
                    break;
                };
                if let Some(dest) = rewrite(from, to, &self.ctx, dst, header)
                    && to.ports.rtp.try_send_to(dst, dest).is_ok()
                {
                    to.shared.tx.count(payload_len, now_ms());
                    self.ctx.counters.relayed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// The per-packet path for RTCP from leg `i`: sanity-check, source-check
    /// and forward unchanged. Accepted RTCP is a sign of life for the RTP
    /// timeout ([`hold`]). `muxed`: it came on the RTP port (RFC 5761); it
    /// is forwarded as any RTCP, but does not move where we send RTCP.
    pub fn on_rtcp(&mut self, i: usize, n: usize, src: SocketAddr, muxed: bool) {
        let (from, to) = split(&mut self.legs, i);
        let Some(from) = from else { return };
        let Some(data) = self.buf.get(..n) else {
            return;
        };
        let valid = (8..BUF_LEN).contains(&n)
            && n.is_multiple_of(4)
            && data.first().map(|b| b >> 6) == Some(2)
            && data.get(1).is_some_and(|pt| (192..=223).contains(pt));
        let expected_ip = from.latch.address().or(from.sdp_rtp).map(|a| a.ip());
        if !valid || expected_ip != Some(src.ip()) {
            return from.drop_packet(&self.ctx);
        }
        from.last_rx = Instant::now();
        if !muxed {
            from.rtcp_dest = Some(src);
        }
        let Some(to) = to else { return };
        let dest = to.rtcp_dest.or(to.sdp_rtcp);
        if let Some(dest) = dest
            && to.ports.rtcp.try_send_to(data, dest).is_ok()
        {
            self.ctx.counters.relayed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Send every playback (and DTMF) packet that is due.
    fn play_due(&mut self) {
        self.dtmf_due();
        let now = Instant::now();
        for leg in &mut self.legs {
            // Catch up if we were late, so the stream never drifts.
            while let Some(p) = leg.playback.as_ref()
                && p.deadline(leg.media.ptime).is_some_and(|d| d <= now)
            {
                play_one(leg, &mut self.buf);
            }
        }
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

/// RTP header fields the sending half of the relay path needs.
#[derive(Debug, Clone, Copy)]
struct Header {
    ssrc: u32,
    seq: u16,
    ts: u32,
    pt: u8,
}

/// The sending half of the relay path, `from` -> `to`, on the packet in
/// `data`: direction check, destination, payload type mapping, header rewrite
/// and transcoding, in place. Returns where to send it.
fn rewrite(
    from: &Leg,
    to: &mut Leg,
    ctx: &MediaContext,
    data: &mut [u8],
    h: Header,
) -> Option<SocketAddr> {
    if !to.media.direction.has_send() || !from.media.direction.has_recv() || to.dtmf_busy() {
        return None;
    }
    let dest = to.rtp_dest()?;
    let out_pt = if Some(h.pt) == from.media.te_pt {
        match to.media.te_pt {
            Some(p) => p,
            None => {
                from.drop_packet(ctx);
                return None;
            }
        }
    } else {
        to.media.pt
    };
    let step = to.media.ptime * 8;
    let (out_seq, out_ts, fresh) = to.tx.map(h.ssrc, h.seq, h.ts, step);
    let Ok(mut p) = RtpPacketMut::parse(data) else {
        return None;
    };
    if p.set_payload_type(out_pt).is_err() {
        from.drop_packet(ctx);
        return None;
    }
    p.set_sequence_number(out_seq);
    p.set_timestamp(out_ts);
    p.set_ssrc(to.tx.ssrc);
    if fresh {
        p.set_marker_bit(true);
    }
    if out_pt == to.media.pt
        && let (Some(a), Some(b)) = (from.media.codec, to.media.codec)
        && a != b
    {
        a.law().transcode_in_place(b.law(), p.payload_mut());
    }
    Some(dest)
}

/// Build and send one playback packet on `leg`.
fn play_one(leg: &mut Leg, buf: &mut [u8]) {
    let samples = (leg.media.ptime * 8) as usize;
    let Some(playback) = leg.playback.as_mut() else {
        return;
    };
    let first = playback.packets == 0;
    let (head, rest) = buf.split_at_mut(12.min(buf.len()));
    let Some(frame) = rest.get_mut(..samples) else {
        return;
    };
    if !playback.next_frame(frame) {
        return finish(leg);
    }
    let (seq, ts) = leg.tx.next_local(samples as u32);
    let header = RtpPacketBuilder::<&[u8], &[u8]>::new()
        .payload_type(leg.media.pt)
        .sequence_number(seq)
        .timestamp(ts)
        .ssrc(leg.tx.ssrc)
        .marker_bit(first);
    if header.write_into(head).is_ok()
        && let Some(dest) = leg.rtp_dest()
        && let Some(data) = buf.get(..12 + samples)
        && leg.ports.rtp.try_send_to(data, dest).is_ok()
    {
        leg.shared.tx.count(samples, now_ms());
    }
    let Some(playback) = leg.playback.as_ref() else {
        return;
    };
    if playback.packets % 50 == 0 {
        playback.emit(pb::play_event::Event::Progress(pb::PlaybackProgress {
            position: Some(switchboard_proto::duration(playback.position())),
            packets_sent: playback.packets,
        }));
    }
    if playback.finished() {
        finish(leg);
    }
}

fn finish(leg: &mut Leg) {
    if let Some(p) = leg.playback.take() {
        p.emit(pb::play_event::Event::Completed(pb::PlaybackCompleted {
            packets_sent: p.packets,
        }));
        leg.shared.edit(|v| v.playing.clear());
    }
}

/// Benchmark support: a relay over two bridged legs on real loopback
/// sockets, driven packet by packet without its task loop.
#[doc(hidden)]
pub mod fixture {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::sync::{Arc, Mutex};
    use std::time::SystemTime;

    use sdp_types::Direction;
    use tokio::sync::broadcast;

    use super::{BUF_LEN, Leg, LegMedia, Relay};
    use crate::ports::PortPool;
    use crate::sdp::AudioCodec;
    use crate::session::{MediaContext, NodeCounters, SessionShared, View};
    use crate::stats::DirectionCounters;

    fn shared(id: &str, port: u16) -> Arc<SessionShared> {
        Arc::new(SessionShared {
            id: id.into(),
            call_id: "bench".into(),
            leg: id.into(),
            created_at: SystemTime::now(),
            rtp_port: port,
            rx: DirectionCounters::default(),
            tx: DirectionCounters::default(),
            dropped: AtomicU64::new(0),
            timed_out: AtomicBool::new(false),
            owner: None,
            view: Mutex::new(View::default()),
        })
    }

    /// Two bridged legs: A (remote `peer_a`, `codec_a`) and B (`codec_b`).
    /// Call inside a tokio runtime; `pool` must have two free pairs.
    pub fn bridged(
        pool: &PortPool,
        peer_a: SocketAddr,
        peer_b: SocketAddr,
        codec_a: AudioCodec,
        codec_b: AudioCodec,
    ) -> Option<Relay> {
        let media = |c: AudioCodec| LegMedia {
            codec: Some(c),
            pt: c.static_pt(),
            te_pt: Some(101),
            ptime: 20,
            direction: Direction::SendRecv,
        };
        let pa = pool.allocate().ok()?;
        let pb = pool.allocate().ok()?;
        let a = Leg::new(
            shared("a", pa.port()),
            pa,
            media(codec_a),
            Some(peer_a),
            None,
        );
        let b = Leg::new(
            shared("b", pb.port()),
            pb,
            media(codec_b),
            Some(peer_b),
            None,
        );
        Some(Relay::new(
            vec![a, b],
            Arc::new(MediaContext {
                events: broadcast::channel(16).0,
                counters: NodeCounters::default(),
                rtp_timeout: None,
                latch_packets: 3,
            }),
            vec![0u8; BUF_LEN].into_boxed_slice(),
        ))
    }

    impl Relay {
        /// Put `packet` in the receive buffer, as `recv_from` would; returns its length.
        pub fn load(&mut self, packet: &[u8]) -> usize {
            let n = packet.len().min(self.buf.len());
            if let (Some(dst), Some(src)) = (self.buf.get_mut(..n), packet.get(..n)) {
                dst.copy_from_slice(src);
            }
            n
        }

        /// The rewritten packet after `prepare_rtp`.
        pub fn buffer(&self, n: usize) -> &[u8] {
            self.buf.get(..n).unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([198, 51, 100, 1], p))
    }

    #[test]
    fn sdp_address_latches_at_once() {
        let mut l = Latch::default();
        assert!(l.accept(addr(4000), 1, Some(addr(4000)), 3));
        assert_eq!(l.address(), Some(addr(4000)));
    }

    #[test]
    fn other_source_needs_consecutive_packets() {
        let mut l = Latch::default();
        assert!(!l.accept(addr(5000), 1, Some(addr(4000)), 3));
        assert!(!l.accept(addr(5000), 1, Some(addr(4000)), 3));
        assert!(l.accept(addr(5000), 1, Some(addr(4000)), 3));
        assert_eq!(l.address(), Some(addr(5000)));
    }

    #[test]
    fn interleaved_sources_never_latch() {
        let mut l = Latch::default();
        for _ in 0..10 {
            assert!(!l.accept(addr(5000), 1, None, 3));
            assert!(!l.accept(addr(6000), 2, None, 3));
        }
        assert_eq!(l.address(), None);
    }

    #[test]
    fn stranger_with_other_ssrc_cannot_hijack() {
        let mut l = Latch::default();
        assert!(l.accept(addr(4000), 7, Some(addr(4000)), 3));
        for _ in 0..100 {
            assert!(!l.accept(addr(6666), 8, Some(addr(4000)), 3));
        }
        assert_eq!(l.address(), Some(addr(4000)));
    }

    #[test]
    fn nat_rebinding_with_same_ssrc_moves_the_latch() {
        let mut l = Latch::default();
        assert!(l.accept(addr(4000), 7, Some(addr(4000)), 3));
        assert!(!l.accept(addr(4001), 7, Some(addr(4000)), 3));
        // The old address speaking again resets the candidate.
        assert!(l.accept(addr(4000), 7, Some(addr(4000)), 3));
        assert!(!l.accept(addr(4001), 7, Some(addr(4000)), 3));
        assert!(!l.accept(addr(4001), 7, Some(addr(4000)), 3));
        assert!(l.accept(addr(4001), 7, Some(addr(4000)), 3));
        assert_eq!(l.address(), Some(addr(4001)));
    }

    #[test]
    fn tx_mapping_is_continuous_across_streams() {
        let mut tx = TxState::new();
        let (s0, t0) = tx.next_local(160);
        let (s1, t1, fresh) = tx.map(99, 1000, 5000, 160);
        assert!(fresh);
        assert_eq!(s1, s0.wrapping_add(1));
        assert_eq!(t1, t0.wrapping_add(160));
        let (s2, t2, fresh) = tx.map(99, 1001, 5160, 160);
        assert!(!fresh);
        assert_eq!(s2, s1.wrapping_add(1));
        assert_eq!(t2, t1.wrapping_add(160));
    }
}
