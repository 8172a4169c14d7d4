//! swbd's internal event bus: one typed broadcast that the admin `Watch`
//! stream, metrics and logs consume.
//!
//! Publishing never blocks: a subscriber that falls behind loses events and
//! is told so by `broadcast::error::RecvError::Lagged`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::broadcast;

use crate::config::Transport;

/// How many events a slow subscriber may fall behind before it lags.
const CAPACITY: usize = 4096;

/// A registrar binding as seen by observers.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingInfo {
    /// Address of record (`sip:1001@example.com`).
    pub aor: String,
    /// Contact URI as registered.
    pub contact: String,
    /// Transport the REGISTER came over.
    pub transport: Transport,
    /// Real source address of the REGISTER (NAT-aware).
    pub source: SocketAddr,
    /// q-value, 1.0 when absent.
    pub q: f32,
    /// When it expires.
    pub expires_at: SystemTime,
    /// When it was first registered.
    pub registered_at: SystemTime,
    /// User-Agent of the last REGISTER.
    pub user_agent: String,
    /// Call-ID of the registering UA.
    pub call_id: String,
}

/// What happened to a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationChange {
    /// New binding.
    Added,
    /// Refreshed binding.
    Refreshed,
    /// Removed by the UA (Expires: 0 or `Contact: *`).
    Removed,
    /// Expired without refresh.
    Expired,
}

/// What happened to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallChange {
    /// INVITE accepted for routing.
    Created,
    /// A B-leg rings.
    Ringing,
    /// A-leg answered.
    Answered,
    /// Media bridged between legs.
    Bridged,
    /// Over.
    Ended,
    /// Anything else.
    Updated,
}

/// Every event swbd publishes.
#[derive(Debug, Clone)]
pub enum Event {
    /// A registrar binding changed.
    Registration {
        /// What happened.
        change: RegistrationChange,
        /// The binding.
        binding: BindingInfo,
    },
    /// A call changed (the admin view of the call after the change).
    Call {
        /// What happened.
        change: CallChange,
        /// The call.
        call: Box<switchboard_proto::admin::v1::Call>,
    },
    /// A media node changed (health, drain, ...).
    MediaNode(crate::media::MediaNodeInfo),
    /// A new dialplan is in force.
    DialplanApplied {
        /// Its version.
        version: String,
        /// Where it came from.
        source: String,
    },
    /// A reload was refused; the old plan stays.
    DialplanRefused {
        /// Version still in force.
        version: String,
        /// What was tried.
        source: String,
        /// Why.
        errors: Vec<switchboard_proto::support::yaml::FileError>,
    },
}

/// Cheap-clone handle to the bus.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<(SystemTime, Event)>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A new bus.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Self { tx }
    }

    /// Publish an event, stamped now. Never blocks; no subscriber is fine.
    pub fn publish(&self, event: Event) {
        let _ = self.tx.send(Arc::new((SystemTime::now(), event)));
    }

    /// Whether anyone listens (publishers may skip building events then).
    pub fn has_subscribers(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Subscribe to events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<(SystemTime, Event)>> {
        self.tx.subscribe()
    }
}
