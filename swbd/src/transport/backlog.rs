//! The queueing delay of a UDP socket's receive queue, measured in band:
//! how long a datagram waits in the kernel (and for a receive loop to be
//! scheduled) before swbd reads it.
//!
//! The kernel does not say when a queued datagram arrived without
//! `SO_TIMESTAMP` and `recvmsg`, which swbd cannot set up without `unsafe`
//! (neither tokio, socket2 nor rustix offer it). So swbd times its own
//! datagrams: every time overload control samples ([`ReceiveBacklog::probe`],
//! every 10 ms) it sends a small **marker** to the socket from a socket of
//! its own, stamped with the time; the receive loops recognise markers
//! ([`ReceiveBacklog::take_marker`]) and note how long they took. A marker
//! queues behind every SIP message that arrived before it, so its sojourn
//! is theirs: CoDel's sojourn time (RFC 8289 §3), not a guess from the
//! queue's length. While markers are still queued, the oldest one's age is
//! the delay: a receive path that has stopped reading is seen at once,
//! not when it reads again.
//!
//! With UDP workers ([`super::workers`]) the receive loop does not note a
//! marker itself: it hands one copy to every worker, in line with the SIP
//! messages, and the marker counts as read when the last worker reaches
//! it. Its sojourn is then the socket's queue plus the slowest worker's
//! queue: the wait of a message before it is handled, wherever it waited.
//! A copy a full worker queue refused is lost like a marker the kernel
//! dropped (the next one that gets through clears it; until then the
//! oldest one's age shows).
//!
//! A marker is a datagram of [`MARKER_LEN`] bytes starting with a zero
//! byte (no SIP message does) from the marker socket's own address,
//! carrying a random per-socket token: a peer cannot make swbd take its
//! datagram for a marker (its source would have to be swbd's own loopback
//! socket). Markers are not counted as SIP messages and never reach the
//! transaction layer. Costs: one datagram per socket per 10 ms.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Length of a marker: zero byte, "SWB", token, sequence, sent stamp.
pub const MARKER_LEN: usize = 28;
const MAGIC: [u8; 4] = [0, b'S', b'W', b'B'];
/// Markers remembered while unread; older ones count as lost (the socket
/// buffer overflowed, which the age of the newest already shows).
const MAX_OUTSTANDING: usize = 1024;

/// A marker read off the socket ([`ReceiveBacklog::read_marker`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    seq: u64,
    /// Its stamp when sent.
    sent: u64,
}

/// The receive-queue delay of one UDP socket.
#[derive(Debug)]
pub struct ReceiveBacklog {
    /// Where markers go: the socket's address (loopback for a wildcard bind).
    target: SocketAddr,
    /// The socket markers leave from, and its address; `None` when it
    /// could not be made (the delay then reads zero).
    sender: Option<(UdpSocket, SocketAddr)>,
    token: u64,
    /// Highest marker sequence read.
    received: AtomicU64,
    /// Longest sojourn of the markers read since the last probe, ns.
    sojourn_ns: AtomicU64,
    /// Markers sent and not known to be read: (sequence, sent at). Only
    /// the prober touches it (a std Mutex, never contended).
    outstanding: Mutex<VecDeque<(u64, Instant)>>,
    next_seq: AtomicU64,
}

/// The process-wide origin of the stamps in markers.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn stamp(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

impl ReceiveBacklog {
    /// For the socket bound at `local`.
    pub fn new(local: SocketAddr) -> Self {
        let target_ip = match local.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let target = SocketAddr::new(target_ip, local.port());
        let sender = UdpSocket::bind(SocketAddr::new(target_ip, 0))
            .and_then(|s| {
                s.set_nonblocking(true)?;
                let addr = s.local_addr()?;
                Ok((s, addr))
            })
            .map_err(|e| {
                tracing::warn!(%local, error = %e, "no receive-queue markers for this socket: its delay is not measured");
            })
            .ok();
        Self {
            target,
            sender,
            token: rand::random(),
            received: AtomicU64::new(0),
            sojourn_ns: AtomicU64::new(0),
            outstanding: Mutex::new(VecDeque::new()),
            next_seq: AtomicU64::new(1),
        }
    }

    /// Called by a receive loop for each datagram: `true` when it is one of
    /// our markers (noted, and not to be handed on). One byte compare for
    /// anything else.
    pub fn take_marker(&self, data: &[u8], from: SocketAddr) -> bool {
        match self.read_marker(data, from) {
            Some(marker) => {
                self.note(marker);
                true
            }
            None => false,
        }
    }

    /// One of our markers, not yet noted as read: for a receive loop that
    /// hands datagrams on to workers, which notes it with
    /// [`ReceiveBacklog::note`] once every worker has reached it (its
    /// sojourn then covers the workers' queues too). `None` for anything
    /// else, after one byte compare.
    pub fn read_marker(&self, data: &[u8], from: SocketAddr) -> Option<Marker> {
        if data.first() != Some(&0) {
            return None;
        }
        let (_, own) = self.sender.as_ref()?;
        if from != *own || data.len() != MARKER_LEN || data.get(..4) != Some(&MAGIC[..]) {
            return None;
        }
        let field = |at: usize| {
            data.get(at..at + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
        };
        let (Some(token), Some(seq), Some(sent)) = (field(4), field(12), field(20)) else {
            return None;
        };
        (token == self.token).then_some(Marker { seq, sent })
    }

    /// The marker has been read (all the way through): note its sojourn.
    pub fn note(&self, marker: Marker) {
        let sojourn = stamp(Instant::now()).saturating_sub(marker.sent);
        self.sojourn_ns.fetch_max(sojourn, Ordering::Relaxed);
        self.received.fetch_max(marker.seq, Ordering::Relaxed);
    }

    /// The queue's delay now: the longest sojourn of the markers read
    /// since the last probe, or the age of the oldest marker still queued
    /// if that is longer. Then send the next marker.
    pub fn probe(&self, now: Instant) -> Duration {
        let read = Duration::from_nanos(self.sojourn_ns.swap(0, Ordering::Relaxed));
        let Some((socket, _)) = &self.sender else {
            return Duration::ZERO;
        };
        let received = self.received.load(Ordering::Relaxed);
        let Ok(mut outstanding) = self.outstanding.lock() else {
            return read;
        };
        while outstanding.front().is_some_and(|(seq, _)| *seq <= received) {
            outstanding.pop_front();
        }
        let waiting = outstanding
            .front()
            .map(|(_, sent)| now.saturating_duration_since(*sent))
            .unwrap_or_default();
        let _ = self.send_marker(socket, &mut outstanding, now);
        read.max(waiting)
    }

    /// Send a marker now, out of turn, and return its sequence: once
    /// [`ReceiveBacklog::has_read`] says it was read, everything queued
    /// before it was too. `None` without markers.
    pub fn mark(&self, now: Instant) -> Option<u64> {
        let (socket, _) = self.sender.as_ref()?;
        let mut outstanding = self.outstanding.lock().ok()?;
        self.send_marker(socket, &mut outstanding, now)
    }

    /// Whether the marker `seq` (or a later one) has been read.
    pub fn has_read(&self, seq: u64) -> bool {
        self.received.load(Ordering::Relaxed) >= seq
    }

    fn send_marker(
        &self,
        socket: &UdpSocket,
        outstanding: &mut VecDeque<(u64, Instant)>,
        now: Instant,
    ) -> Option<u64> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let mut marker = [0u8; MARKER_LEN];
        marker[..4].copy_from_slice(&MAGIC);
        marker[4..12].copy_from_slice(&self.token.to_be_bytes());
        marker[12..20].copy_from_slice(&seq.to_be_bytes());
        marker[20..28].copy_from_slice(&stamp(now).to_be_bytes());
        // A full send buffer: no marker this time; the queue's age shows
        // through the ones already in it.
        socket.send_to(&marker, self.target).ok()?;
        if outstanding.len() == MAX_OUTSTANDING {
            outstanding.pop_front();
        }
        outstanding.push_back((seq, now));
        Some(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_one(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 128];
        let (n, from) = socket.recv_from(&mut buf).expect("a marker");
        (buf[..n].to_vec(), from)
    }

    #[test]
    fn a_marker_read_at_once_shows_no_delay_and_one_left_queued_shows_its_age() {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let b = ReceiveBacklog::new(socket.local_addr().expect("addr"));
        let t = Instant::now();
        assert_eq!(b.probe(t), Duration::ZERO, "nothing sent yet");
        let (data, from) = read_one(&socket);
        assert!(b.take_marker(&data, from));
        assert!(b.probe(Instant::now()) < Duration::from_secs(1));
        // Two markers out now; read neither: the oldest one's age counts.
        let later = Instant::now() + Duration::from_secs(3);
        assert!(b.probe(later) >= Duration::from_secs(2));
        // Reading the newest clears the older one too (it was lost, say).
        let _older = read_one(&socket);
        let (data, from) = read_one(&socket);
        assert!(b.take_marker(&data, from));
        assert!(b.probe(Instant::now()) < Duration::from_secs(1));
    }

    #[test]
    fn sip_and_forged_markers_are_not_markers() {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let b = ReceiveBacklog::new(socket.local_addr().expect("addr"));
        let _ = b.probe(Instant::now());
        let (data, from) = read_one(&socket);
        assert!(!b.take_marker(b"INVITE sip:a@b SIP/2.0\r\n", from), "SIP");
        let stranger: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        assert!(!b.take_marker(&data, stranger), "right bytes, other source");
        let mut forged = data.clone();
        forged[5] ^= 1;
        assert!(!b.take_marker(&forged, from), "wrong token");
        assert!(!b.take_marker(&data[..20], from), "short");
        assert!(b.take_marker(&data, from));
    }

    #[test]
    fn a_wildcard_socket_gets_its_markers_over_loopback() {
        let b = ReceiveBacklog::new("0.0.0.0:5060".parse().expect("addr"));
        assert_eq!(b.target, "127.0.0.1:5060".parse().expect("addr"));
        let b = ReceiveBacklog::new("[::]:5060".parse().expect("addr"));
        assert_eq!(b.target, "[::1]:5060".parse().expect("addr"));
    }
}
