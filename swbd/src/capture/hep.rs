//! HEP v3 (HEP-EEP, <https://github.com/sipcapture/HEP>): every SIP message
//! swbd sends or receives, copied over UDP to a Homer / heplify-server
//! collector (`capture.hep`).
//!
//! A packet is `"HEP3"`, its total length (u16), then chunks of
//! `vendor (u16) | type (u16) | length (u16, header included) | value`, all
//! big-endian, vendor 0 (generic). swbd sends: 0x0001 IP family (2 IPv4,
//! 10 IPv6), 0x0002 IP protocol (17 UDP, 6 TCP), 0x0003/0x0004 IPv4 or
//! 0x0005/0x0006 IPv6 source and destination, 0x0007/0x0008 ports,
//! 0x0009/0x000a time (seconds, microseconds), 0x000b protocol type (1 SIP),
//! 0x000c capture agent id (u32, `capture.hep_id`), 0x000e auth key
//! (`capture.hep_password`, when set), 0x0011 correlation id (swbd's call
//! id, when the message belongs to a captured call, so a collector can tie
//! the two legs of a B2BUA call together), 0x000f the message.
//!
//! Never in the SIP path's way: the tap encodes into a bounded queue
//! (`capture.hep_queue`) with `try_send`; a full queue drops the packet and
//! counts it (`hep_dropped`, and a warning at most every 10 s). One task
//! sends; a collector that cannot be resolved or reached costs counted send
//! errors, and its name is looked up again at most every 5 s.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use switchboard_proto::support::shutdown::Shutdown;
use tokio::sync::mpsc;

use super::Counters;
use crate::config::Transport;

/// Chunk types (vendor 0).
pub mod chunk {
    /// IP protocol family (u8).
    pub const IP_FAMILY: u16 = 0x0001;
    /// IP protocol id (u8).
    pub const IP_PROTO: u16 = 0x0002;
    /// IPv4 source address.
    pub const IPV4_SRC: u16 = 0x0003;
    /// IPv4 destination address.
    pub const IPV4_DST: u16 = 0x0004;
    /// IPv6 source address.
    pub const IPV6_SRC: u16 = 0x0005;
    /// IPv6 destination address.
    pub const IPV6_DST: u16 = 0x0006;
    /// Source port (u16).
    pub const SRC_PORT: u16 = 0x0007;
    /// Destination port (u16).
    pub const DST_PORT: u16 = 0x0008;
    /// Timestamp, seconds (u32).
    pub const TIME_SEC: u16 = 0x0009;
    /// Timestamp, microseconds (u32).
    pub const TIME_USEC: u16 = 0x000a;
    /// Protocol type (u8, 1 = SIP).
    pub const PROTO_TYPE: u16 = 0x000b;
    /// Capture agent id (u32).
    pub const CAPTURE_ID: u16 = 0x000c;
    /// Authentication key.
    pub const AUTH_KEY: u16 = 0x000e;
    /// Captured payload.
    pub const PAYLOAD: u16 = 0x000f;
    /// Correlation id.
    pub const CORRELATION_ID: u16 = 0x0011;
}

/// `AF_INET` / `AF_INET6` as HEP carries them.
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// HEP protocol type of SIP.
const PROTO_SIP: u8 = 1;

/// One message to encode.
#[derive(Debug, Clone, Copy)]
pub struct Captured<'a> {
    /// When.
    pub at: SystemTime,
    /// Transport.
    pub transport: Transport,
    /// Sender.
    pub source: SocketAddr,
    /// Receiver.
    pub destination: SocketAddr,
    /// The SIP message.
    pub payload: &'a [u8],
    /// swbd's call id, when known.
    pub correlation: Option<&'a str>,
}

/// The packet for `m`, or `None` when source and destination are of
/// different families (cannot be: a socket has one family). A payload that
/// would not fit in a 64 KiB packet is cut.
pub fn encode(m: &Captured<'_>, capture_id: u32, auth_key: Option<&str>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(m.payload.len() + 128);
    out.extend_from_slice(b"HEP3");
    out.extend_from_slice(&[0, 0]); // total length, set at the end
    let put = |out: &mut Vec<u8>, kind: u16, value: &[u8]| {
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&kind.to_be_bytes());
        let len = u16::try_from(value.len() + 6).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(value);
    };
    match (
        m.source.ip().to_canonical(),
        m.destination.ip().to_canonical(),
    ) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            put(&mut out, chunk::IP_FAMILY, &[AF_INET]);
            put(&mut out, chunk::IP_PROTO, &[proto(m.transport)]);
            put(&mut out, chunk::IPV4_SRC, &s.octets());
            put(&mut out, chunk::IPV4_DST, &d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            put(&mut out, chunk::IP_FAMILY, &[AF_INET6]);
            put(&mut out, chunk::IP_PROTO, &[proto(m.transport)]);
            put(&mut out, chunk::IPV6_SRC, &s.octets());
            put(&mut out, chunk::IPV6_DST, &d.octets());
        }
        _ => return None,
    }
    put(&mut out, chunk::SRC_PORT, &m.source.port().to_be_bytes());
    put(
        &mut out,
        chunk::DST_PORT,
        &m.destination.port().to_be_bytes(),
    );
    let since =
        m.at.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
    let secs = u32::try_from(since.as_secs()).unwrap_or(u32::MAX);
    put(&mut out, chunk::TIME_SEC, &secs.to_be_bytes());
    put(
        &mut out,
        chunk::TIME_USEC,
        &since.subsec_micros().to_be_bytes(),
    );
    put(&mut out, chunk::PROTO_TYPE, &[PROTO_SIP]);
    put(&mut out, chunk::CAPTURE_ID, &capture_id.to_be_bytes());
    if let Some(key) = auth_key {
        put(&mut out, chunk::AUTH_KEY, key.as_bytes());
    }
    if let Some(id) = m.correlation {
        put(&mut out, chunk::CORRELATION_ID, id.as_bytes());
    }
    // What is left of 65535 for the payload chunk.
    let room = usize::from(u16::MAX).saturating_sub(out.len() + 6);
    let payload = m
        .payload
        .get(..m.payload.len().min(room))
        .unwrap_or_default();
    put(&mut out, chunk::PAYLOAD, payload);
    let total = u16::try_from(out.len()).ok()?;
    if let Some(len) = out.get_mut(4..6) {
        len.copy_from_slice(&total.to_be_bytes());
    }
    Some(out)
}

fn proto(t: Transport) -> u8 {
    match t {
        Transport::Udp => 17,
        Transport::Tcp => 6,
    }
}

/// The tap's end of the queue.
#[derive(Debug)]
pub struct HepSender {
    tx: mpsc::Sender<Vec<u8>>,
    capture_id: u32,
    auth_key: Option<String>,
    counters: Arc<Counters>,
    /// Unix second of the last "queue full" warning.
    warned_at: AtomicU64,
}

impl HepSender {
    /// Start the sending task toward `collector` (`host:port`) with a
    /// queue of `queue` packets; it runs until `shutdown`.
    pub fn start(
        collector: (String, u16),
        capture_id: u32,
        auth_key: Option<String>,
        queue: usize,
        counters: Arc<Counters>,
        shutdown: Shutdown,
    ) -> Self {
        let (tx, rx) = mpsc::channel(queue.max(1));
        tokio::spawn(send_loop(collector, rx, counters.clone(), shutdown));
        Self {
            tx,
            capture_id,
            auth_key,
            counters,
            warned_at: AtomicU64::new(0),
        }
    }

    /// Queue `m` for the collector; never waits.
    pub fn offer(&self, m: &Captured<'_>) {
        let Some(packet) = encode(m, self.capture_id, self.auth_key.as_deref()) else {
            return;
        };
        if self.tx.try_send(packet).is_err() {
            self.counters.hep_dropped.fetch_add(1, Ordering::Relaxed);
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let last = self.warned_at.load(Ordering::Relaxed);
            if now >= last + 10
                && self
                    .warned_at
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                tracing::warn!(
                    dropped = self.counters.hep_dropped.load(Ordering::Relaxed),
                    "HEP queue full (capture.hep_queue): packets dropped"
                );
            }
        }
    }
}

async fn send_loop(
    (host, port): (String, u16),
    mut rx: mpsc::Receiver<Vec<u8>>,
    counters: Arc<Counters>,
    mut shutdown: Shutdown,
) {
    let mut target: Option<(SocketAddr, tokio::net::UdpSocket)> = None;
    let mut next_lookup = tokio::time::Instant::now();
    loop {
        let packet = tokio::select! {
            _ = shutdown.wait() => return,
            p = rx.recv() => match p {
                Some(p) => p,
                None => return,
            },
        };
        if target.is_none() && tokio::time::Instant::now() >= next_lookup {
            next_lookup = tokio::time::Instant::now() + Duration::from_secs(5);
            target = connect(&host, port).await;
        }
        let Some((addr, sock)) = &target else {
            counters.hep_send_errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        match sock.send_to(&packet, *addr).await {
            Ok(_) => {
                counters.hep_sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                counters.hep_send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(collector = %addr, error = %e, "HEP send failed");
            }
        }
    }
}

/// Resolve the collector and bind a socket of its family.
async fn connect(host: &str, port: u16) -> Option<(SocketAddr, tokio::net::UdpSocket)> {
    let addr = match tokio::net::lookup_host((host, port)).await {
        Ok(mut addrs) => addrs.next(),
        Err(e) => {
            tracing::warn!(collector = %host, error = %e, "capture.hep: cannot resolve the collector");
            None
        }
    }?;
    let bind: SocketAddr = match addr {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
    };
    match tokio::net::UdpSocket::bind(bind).await {
        Ok(sock) => {
            tracing::info!(collector = %addr, "sending SIP capture as HEP v3");
            Some((addr, sock))
        }
        Err(e) => {
            tracing::warn!(error = %e, "capture.hep: cannot bind a UDP socket");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks of a packet as (type, value).
    fn chunks(p: &[u8]) -> Vec<(u16, Vec<u8>)> {
        assert_eq!(&p[..4], b"HEP3");
        assert_eq!(usize::from(u16::from_be_bytes([p[4], p[5]])), p.len());
        let mut out = Vec::new();
        let mut i = 6;
        while i < p.len() {
            assert_eq!(u16::from_be_bytes([p[i], p[i + 1]]), 0, "vendor 0");
            let kind = u16::from_be_bytes([p[i + 2], p[i + 3]]);
            let len = usize::from(u16::from_be_bytes([p[i + 4], p[i + 5]]));
            out.push((kind, p[i + 6..i + len].to_vec()));
            i += len;
        }
        assert_eq!(i, p.len());
        out
    }

    #[test]
    fn an_ipv4_udp_message_with_every_chunk() {
        let m = Captured {
            at: SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_000),
            transport: Transport::Udp,
            source: "192.0.2.1:5060".parse().expect("addr"),
            destination: "192.0.2.2:5070".parse().expect("addr"),
            payload: b"OPTIONS sip:x SIP/2.0\r\n\r\n",
            correlation: Some("c1"),
        };
        let p = encode(&m, 7, Some("pw")).expect("packet");
        let c = chunks(&p);
        let get = |k: u16| c.iter().find(|(t, _)| *t == k).map(|(_, v)| v.clone());
        assert_eq!(get(chunk::IP_FAMILY), Some(vec![2]));
        assert_eq!(get(chunk::IP_PROTO), Some(vec![17]));
        assert_eq!(get(chunk::IPV4_SRC), Some(vec![192, 0, 2, 1]));
        assert_eq!(get(chunk::IPV4_DST), Some(vec![192, 0, 2, 2]));
        assert_eq!(get(chunk::SRC_PORT), Some(5060u16.to_be_bytes().to_vec()));
        assert_eq!(get(chunk::DST_PORT), Some(5070u16.to_be_bytes().to_vec()));
        assert_eq!(
            get(chunk::TIME_SEC),
            Some(1_700_000_000u32.to_be_bytes().to_vec())
        );
        assert_eq!(
            get(chunk::TIME_USEC),
            Some(123_456u32.to_be_bytes().to_vec())
        );
        assert_eq!(get(chunk::PROTO_TYPE), Some(vec![1]));
        assert_eq!(get(chunk::CAPTURE_ID), Some(7u32.to_be_bytes().to_vec()));
        assert_eq!(get(chunk::AUTH_KEY), Some(b"pw".to_vec()));
        assert_eq!(get(chunk::CORRELATION_ID), Some(b"c1".to_vec()));
        assert_eq!(get(chunk::PAYLOAD), Some(m.payload.to_vec()));
    }

    #[test]
    fn ipv6_tcp_and_a_payload_too_big_for_one_packet() {
        let big = vec![b'x'; 70_000];
        let m = Captured {
            at: SystemTime::UNIX_EPOCH,
            transport: Transport::Tcp,
            source: "[2001:db8::1]:5060".parse().expect("addr"),
            destination: "[2001:db8::2]:5060".parse().expect("addr"),
            payload: &big,
            correlation: None,
        };
        let p = encode(&m, 1, None).expect("packet");
        assert!(p.len() <= 65_535);
        let c = chunks(&p);
        assert!(c.contains(&(chunk::IP_FAMILY, vec![10])));
        assert!(c.contains(&(chunk::IP_PROTO, vec![6])));
        assert!(
            c.iter()
                .any(|(t, v)| *t == chunk::IPV6_SRC && v.len() == 16)
        );
        assert!(
            !c.iter()
                .any(|(t, _)| *t == chunk::AUTH_KEY || *t == chunk::CORRELATION_ID)
        );
    }
}
