//! swbd's internal event bus: one typed broadcast that the admin `Watch`
//! stream, metrics and logs consume.
//!
//! Publishing never blocks: a subscriber that falls behind loses events and
//! is told so by `broadcast::error::RecvError::Lagged`.
//!
//! The bus also keeps the last `events.recent` events in a ring
//! ([`EventBus::recent_then_live`], for `swctl events`): publishing records
//! into the ring and broadcasts under one short lock, so a reader that takes
//! the ring and subscribes under the same lock misses nothing and sees
//! nothing twice.
//!
//! # Layout
//! - [`config`]: the `events:` config section.
//! - [`security`]: what the trust boundary refuses, as aggregated events.

pub mod config;
pub mod security;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

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
    /// The trust boundary refused something, or a summary of many refusals
    /// ([`security`]).
    Security(security::SecurityEvent),
    /// Drain with migration progress (`swbd/src/b2bua/migrate.rs`), in its
    /// admin form: it goes out as is.
    Migration(switchboard_proto::admin::v1::MigrationEvent),
}

/// One published event with its time.
pub type Stamped = Arc<(SystemTime, Event)>;

/// Cheap-clone handle to the bus.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Stamped>,
    /// The last events, oldest first; a std Mutex held only to push (and
    /// broadcast) or to copy, never across an await.
    recent: Arc<Mutex<Recent>>,
    /// The ring keeps anything (capacity above 0).
    keeps_recent: bool,
}

/// The ring of recent events.
#[derive(Debug)]
struct Recent {
    events: VecDeque<Stamped>,
    capacity: usize,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A new bus keeping the default number of recent events
    /// ([`config::EventsConfig`]).
    pub fn new() -> Self {
        Self::with_recent(config::EventsConfig::default().recent)
    }

    /// A new bus keeping the last `capacity` events (0: none).
    pub fn with_recent(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Self {
            tx,
            recent: Arc::new(Mutex::new(Recent {
                events: VecDeque::with_capacity(capacity.min(1024)),
                capacity,
            })),
            keeps_recent: capacity > 0,
        }
    }

    /// Publish an event, stamped now. Never blocks; no subscriber is fine.
    pub fn publish(&self, event: Event) {
        let event = Arc::new((SystemTime::now(), event));
        if !self.keeps_recent {
            let _ = self.tx.send(event);
            return;
        }
        match self.recent.lock() {
            Ok(mut recent) => {
                if recent.events.len() >= recent.capacity {
                    recent.events.pop_front();
                }
                recent.events.push_back(event.clone());
                // Under the lock: see `recent_then_live`.
                let _ = self.tx.send(event);
            }
            Err(_) => {
                let _ = self.tx.send(event);
            }
        }
    }

    /// Whether anyone listens (publishers may skip building events then):
    /// a subscriber, or the ring of recent events.
    pub fn has_subscribers(&self) -> bool {
        self.keeps_recent || self.tx.receiver_count() > 0
    }

    /// The recent events not older than `since` (all of them for `None`),
    /// oldest first, and a subscription to every event published after
    /// them: none missed, none repeated.
    pub fn recent_then_live(
        &self,
        since: Option<Duration>,
    ) -> (Vec<Stamped>, broadcast::Receiver<Stamped>) {
        let cutoff = since.and_then(|d| SystemTime::now().checked_sub(d));
        match self.recent.lock() {
            Ok(recent) => {
                let events = recent
                    .events
                    .iter()
                    .filter(|e| cutoff.is_none_or(|c| e.0 >= c))
                    .cloned()
                    .collect();
                (events, self.tx.subscribe())
            }
            Err(_) => (Vec::new(), self.tx.subscribe()),
        }
    }

    /// Subscribe to events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Stamped> {
        self.tx.subscribe()
    }
}
