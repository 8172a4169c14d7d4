//! What admin and health read about a session without asking its media
//! task ([`SessionShared`]), and the slow-changing part of it ([`View`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use switchboard_proto::admin::v1 as admin_pb;
use switchboard_proto::media::v1 as pb;

use crate::lease::Owner;
use crate::stats::DirectionCounters;

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
