//! Benchmark support: a relay over two bridged legs on real loopback
//! sockets, driven packet by packet without its task loop.

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
