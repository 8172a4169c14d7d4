//! The `events:` section of swbd's config.

use serde::Deserialize;

/// Most events the ring may be asked to keep.
pub const MAX_RECENT: usize = 100_000;

/// Recent events and security-event aggregation.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Events of every kind kept for `swctl events` (calls, registrations,
    /// security, dialplan, nodes), the oldest dropped first; 0 keeps none.
    /// A call event carries the call's summary (~1 KiB), so the default
    /// 2000 costs a few MiB at most.
    pub recent: usize,
    /// Security events are aggregated per kind and source over this many
    /// seconds: the first incident is an event (and a log line) at once,
    /// the rest of the interval is one summary with a count.
    pub security_interval_secs: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            recent: 2000,
            security_interval_secs: 10,
        }
    }
}

impl EventsConfig {
    /// Cross-field rules; each error names its key.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.recent > MAX_RECENT {
            errors.push(format!("events.recent: at most {MAX_RECENT}"));
        }
        if !(1..=3600).contains(&self.security_interval_secs) {
            errors.push("events.security_interval_secs: must be between 1 and 3600".into());
        }
        errors
    }
}
