//! G.711 PCMU media at 50 packets/s per stream (20 ms, 160-byte payload)
//! from a few shared sockets, and receivers that measure loss, RFC 3550
//! interarrival jitter and one-way delay.
//!
//! Every payload starts with a magic, the stream id, a sequence number and
//! the send time (ns since the generator's start), so a receiver needs no
//! per-call socket or SSRC mapping: one socket serves every call of a side,
//! and a relay that rewrites RTP headers does not confuse the stats.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::UdpSocket;

use crate::stats::{Histogram, LatencySummary};

pub const PAYLOAD_LEN: usize = 160;
pub const HEADER_LEN: usize = 12;
const MAGIC: &[u8; 4] = b"SWB1";
/// The sender wakes every 2 ms; streams start when their calls do, so
/// their packets spread over the 20 ms packet time.
const TICK: Duration = Duration::from_millis(2);
/// 20 ms of audio per packet (G.711: 160 samples at 8 kHz).
const PTIME: Duration = Duration::from_millis(20);

/// Build one RTP packet: PCMU header + payload carrying our probe fields.
pub fn packet(stream: u32, seq: u32, sent_ns: u64) -> [u8; HEADER_LEN + PAYLOAD_LEN] {
    let mut p = [0xffu8; HEADER_LEN + PAYLOAD_LEN]; // 0xff: PCMU silence
    p[0] = 0x80;
    p[1] = 0; // PT 0 = PCMU
    p[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
    p[4..8].copy_from_slice(&seq.wrapping_mul(160).to_be_bytes());
    p[8..12].copy_from_slice(&stream.to_be_bytes()); // SSRC = stream id
    p[12..16].copy_from_slice(MAGIC);
    p[16..20].copy_from_slice(&stream.to_be_bytes());
    p[20..24].copy_from_slice(&seq.to_be_bytes());
    p[24..32].copy_from_slice(&sent_ns.to_be_bytes());
    p
}

/// `(stream, seq, sent_ns)` from a received packet, if it is one of ours.
pub fn parse_probe(pkt: &[u8]) -> Option<(u32, u32, u64)> {
    let p = pkt.get(HEADER_LEN..HEADER_LEN + 20)?;
    if p.get(..4)? != MAGIC {
        return None;
    }
    let u32_at =
        |i: usize| -> Option<u32> { Some(u32::from_be_bytes(p.get(i..i + 4)?.try_into().ok()?)) };
    let sent = u64::from_be_bytes(p.get(12..20)?.try_into().ok()?);
    Some((u32_at(4)?, u32_at(8)?, sent))
}

/// Per-stream receive state (RFC 3550 §6.4.1 / A.8 jitter).
#[derive(Debug, Clone, Default)]
pub struct RecvStream {
    pub received: u64,
    pub first_seq: Option<u32>,
    pub max_seq: u32,
    last_transit: Option<i64>,
    /// Interarrival jitter in ns (the RFC's J, unscaled).
    pub jitter_ns: f64,
}

impl RecvStream {
    pub fn on_packet(&mut self, seq: u32, transit_ns: i64) {
        self.received += 1;
        self.first_seq = Some(self.first_seq.map_or(seq, |f| f.min(seq)));
        self.max_seq = self.max_seq.max(seq);
        if let Some(prev) = self.last_transit {
            let d = (transit_ns - prev).unsigned_abs() as f64;
            self.jitter_ns += (d - self.jitter_ns) / 16.0;
        }
        self.last_transit = Some(transit_ns);
    }
}

struct SendStream {
    id: u32,
    sock: usize,
    dest: SocketAddr,
    seq: u32,
    start: Instant,
    /// Packets to send: the stream's length / 20 ms.
    total: u32,
}

/// Media engine: shared sockets, one sender task, one receiver per socket.
pub struct Media {
    pub socks: Vec<Arc<UdpSocket>>,
    base: Instant,
    streams: Mutex<Vec<SendStream>>,
    /// Packets each finished stream sent, and from which socket.
    finished: Mutex<HashMap<u32, (u32, usize)>>,
    next_id: AtomicU64,
    pub sent: AtomicU64,
    pub send_errors: AtomicU64,
    pub received: AtomicU64,
    stop: AtomicBool,
    recv: Mutex<Vec<tokio::task::JoinHandle<Receiver>>>,
    drops_at_start: u64,
}

impl std::fmt::Debug for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Media")
            .field("socks", &self.socks.len())
            .finish()
    }
}

#[derive(Default)]
struct Receiver {
    streams: HashMap<u32, RecvStream>,
    delay: Histogram,
}

/// RTP results.
#[derive(Debug, Clone, Serialize)]
pub struct RtpReport {
    pub streams: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub send_errors: u64,
    pub loss_ratio: Option<f64>,
    /// Where the lost packets were: before a stream's first received packet
    /// (relay not forwarding yet), after its last (teardown), in between.
    pub lost_at_start: u64,
    /// `lost_at_start` by sender: [UAC -> UAS (caller's audio), UAS -> UAC].
    pub lost_at_start_by_sender: [u64; 2],
    pub lost_at_end: u64,
    pub lost_in_middle: u64,
    /// Streams of which nothing arrived.
    pub silent_streams: u64,
    /// Of the lost packets, dropped by the kernel at the generator's own
    /// receive sockets (buffer full: the generator, not the relay, lost them).
    pub dropped_at_generator: u64,
    pub one_way_delay: LatencySummary,
    pub jitter_mean_ms: Option<f64>,
    pub jitter_max_ms: Option<f64>,
}

impl Media {
    /// `n` sockets on `ip`, each with a `rcvbuf`-byte receive buffer.
    pub fn start(ip: std::net::IpAddr, n: usize, rcvbuf: usize) -> std::io::Result<Arc<Media>> {
        let mut socks = Vec::new();
        for _ in 0..n.max(1) {
            socks.push(Arc::new(crate::endpoint::bind_udp(
                SocketAddr::new(ip, 0),
                rcvbuf,
            )?));
        }
        let ports: Vec<u16> = socks
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .map(|a| a.port())
            .collect();
        let drops_at_start = crate::procstat::udp_drops(&ports);
        let media = Arc::new(Media {
            drops_at_start,
            socks,
            base: Instant::now(),
            streams: Mutex::new(Vec::new()),
            finished: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            sent: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            received: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            recv: Mutex::new(Vec::new()),
        });
        let mut handles = Vec::new();
        for i in 0..media.socks.len() {
            let m = Arc::clone(&media);
            handles.push(tokio::spawn(async move { m.receive(i).await }));
        }
        *media.recv.lock().unwrap_or_else(|e| e.into_inner()) = handles;
        let m = Arc::clone(&media);
        tokio::spawn(async move { m.send_loop().await });
        Ok(media)
    }

    pub fn port(&self, sock: usize) -> u16 {
        self.socks
            .get(sock % self.socks.len())
            .and_then(|s| s.local_addr().ok())
            .map_or(0, |a| a.port())
    }

    /// Kernel drops on our sockets so far.
    pub fn socket_drops(&self) -> u64 {
        let ports: Vec<u16> = (0..self.socks.len()).map(|i| self.port(i)).collect();
        crate::procstat::udp_drops(&ports)
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Start a stream from socket `sock` to `dest` for `len`.
    pub fn add_stream(&self, sock: usize, dest: SocketAddr, len: Duration) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) as u32;
        let s = SendStream {
            id,
            sock: sock % self.socks.len(),
            dest,
            seq: 0,
            start: Instant::now(),
            total: u32::try_from(len.as_millis() / PTIME.as_millis()).unwrap_or(u32::MAX),
        };
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(s);
    }

    /// Every tick, send each stream's packets that are due (packet k at
    /// start + k*20 ms), so a late tick catches up instead of thinning the
    /// stream; each packet is stamped as it leaves.
    async fn send_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch: Vec<(usize, SocketAddr, u32, u32)> = Vec::new();
        while !self.stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let now = Instant::now();
            {
                let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
                for s in streams.iter_mut() {
                    while s.seq < s.total && s.start + PTIME * s.seq <= now {
                        batch.push((s.sock, s.dest, s.id, s.seq));
                        s.seq += 1;
                    }
                }
                let mut done = self.finished.lock().unwrap_or_else(|e| e.into_inner());
                streams.retain(|s| {
                    let keep = s.seq < s.total;
                    if !keep {
                        done.insert(s.id, (s.seq, s.sock));
                    }
                    keep
                });
            }
            for (sock, dest, id, seq) in batch.drain(..) {
                let Some(sock) = self.socks.get(sock) else {
                    continue;
                };
                let pkt = packet(id, seq, self.now_ns());
                let ok = match sock.try_send_to(&pkt, dest) {
                    Ok(_) => true,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        sock.send_to(&pkt, dest).await.is_ok()
                    }
                    Err(_) => false,
                };
                if ok {
                    self.sent.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.send_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    async fn receive(self: Arc<Self>, i: usize) -> Receiver {
        let mut r = Receiver::default();
        let Some(sock) = self.socks.get(i).cloned() else {
            return r;
        };
        let mut buf = [0u8; 2048];
        loop {
            let got =
                tokio::time::timeout(Duration::from_millis(200), sock.recv_from(&mut buf)).await;
            let n = match got {
                Ok(Ok((n, _))) => n,
                Ok(Err(_)) => continue,
                Err(_) if self.stop.load(Ordering::Relaxed) => return r,
                Err(_) => continue,
            };
            let now = self.now_ns();
            let Some((stream, seq, sent)) = buf.get(..n).and_then(parse_probe) else {
                continue;
            };
            self.received.fetch_add(1, Ordering::Relaxed);
            let transit = now as i64 - sent as i64;
            r.delay.record_us(transit.max(0) as u64 / 1000);
            r.streams.entry(stream).or_default().on_packet(seq, transit);
        }
    }

    /// Stop sending, drain the receivers, and summarise.
    pub async fn finish(&self) -> RtpReport {
        self.stop.store(true, Ordering::Relaxed);
        let handles = std::mem::take(&mut *self.recv.lock().unwrap_or_else(|e| e.into_inner()));
        let mut delay = Histogram::default();
        let mut streams: HashMap<u32, RecvStream> = HashMap::new();
        for h in handles {
            if let Ok(r) = h.await {
                delay.merge(&r.delay);
                streams.extend(r.streams);
            }
        }
        let sent = self.sent.load(Ordering::Relaxed);
        let received = self.received.load(Ordering::Relaxed);
        let mut per_stream =
            std::mem::take(&mut *self.finished.lock().unwrap_or_else(|e| e.into_inner()));
        for s in self
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            per_stream.insert(s.id, (s.seq, s.sock));
        }
        let (mut at_start, mut at_end, mut middle, mut silent) = (0u64, 0u64, 0u64, 0u64);
        let mut start_by_sender = [0u64; 2];
        for (id, (n, sock)) in &per_stream {
            let n = u64::from(*n);
            match streams.get(id) {
                Some(r) => {
                    let first = u64::from(r.first_seq.unwrap_or(0));
                    let end = n.saturating_sub(u64::from(r.max_seq) + 1);
                    at_start += first;
                    if let Some(x) = start_by_sender.get_mut(*sock) {
                        *x += first;
                    }
                    at_end += end;
                    middle += n.saturating_sub(first + end).saturating_sub(r.received);
                }
                None if n > 0 => {
                    silent += 1;
                    at_start += n;
                }
                None => {}
            }
        }
        let jit: Vec<f64> = streams.values().map(|s| s.jitter_ns / 1e6).collect();
        RtpReport {
            streams: self.next_id.load(Ordering::Relaxed).saturating_sub(1),
            packets_sent: sent,
            packets_received: received,
            send_errors: self.send_errors.load(Ordering::Relaxed),
            loss_ratio: (sent > 0).then(|| sent.saturating_sub(received) as f64 / sent as f64),
            lost_at_start: at_start,
            lost_at_start_by_sender: start_by_sender,
            lost_at_end: at_end,
            lost_in_middle: middle,
            silent_streams: silent,
            dropped_at_generator: self.socket_drops().saturating_sub(self.drops_at_start),
            one_way_delay: delay.summary(),
            jitter_mean_ms: (!jit.is_empty()).then(|| jit.iter().sum::<f64>() / jit.len() as f64),
            jitter_max_ms: jit.iter().copied().reduce(f64::max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_round_trip_and_foreign_packets() {
        let p = packet(7, 300, 123_456_789);
        assert_eq!(p.len(), 172);
        assert_eq!(p[0], 0x80);
        assert_eq!(u16::from_be_bytes([p[2], p[3]]), 300);
        assert_eq!(parse_probe(&p), Some((7, 300, 123_456_789)));
        assert_eq!(parse_probe(&[0x80; 40]), None);
        assert_eq!(parse_probe(&p[..20]), None);
    }

    #[test]
    fn jitter_follows_rfc3550() {
        let mut s = RecvStream::default();
        s.on_packet(0, 1000);
        assert_eq!(s.jitter_ns, 0.0);
        s.on_packet(1, 1160);
        assert_eq!(s.jitter_ns, 10.0); // |160 - 0| / 16
        s.on_packet(2, 1160);
        assert_eq!(s.jitter_ns, 10.0 + (0.0 - 10.0) / 16.0);
        assert_eq!(s.received, 3);
        assert_eq!(s.max_seq, 2);
    }

    #[tokio::test]
    async fn loopback_streams_are_measured() {
        let m = Media::start("127.0.0.1".parse().unwrap(), 2, 1 << 20).unwrap();
        let to = SocketAddr::new("127.0.0.1".parse().unwrap(), m.port(1));
        m.add_stream(0, to, Duration::from_millis(200));
        tokio::time::sleep(Duration::from_millis(400)).await;
        let r = m.finish().await;
        assert_eq!(r.packets_sent, 10, "200 ms at 20 ms per packet: {r:?}");
        assert_eq!(r.packets_received, r.packets_sent);
        assert_eq!(r.loss_ratio, Some(0.0));
        assert_eq!(r.streams, 1);
    }
}
