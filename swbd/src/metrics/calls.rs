//! Call counters and histograms, fed by the call table at three moments of
//! a call: created, answered (the 200 to A), ended. Everything else about
//! calls (how many are in each state) is read from the table at scrape
//! time.
//!
//! CPS, ASR and ACD derive from these (docs/features/metrics.md):
//! `rate(swbd_calls_started_total[1m])`,
//! `increase(swbd_calls_answered_total[15m]) / increase(swbd_calls_started_total[15m])`,
//! `rate(swbd_call_duration_seconds_sum[15m]) / rate(swbd_call_duration_seconds_count[15m])`.

use std::time::SystemTime;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::sip::code_label;
use crate::b2bua::record::CallRecord;

/// Buckets of the setup time (INVITE in -> 200 to A), seconds: ringing is
/// part of it, so they reach two minutes.
const SETUP_BUCKETS: [f64; 14] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];
/// Buckets of an answered call's duration (answer -> end), seconds.
const DURATION_BUCKETS: [f64; 12] = [
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
];

/// The call metrics of one call table (cheap to clone: every field is a
/// shared handle).
#[derive(Debug, Clone)]
pub struct CallMetrics {
    started: Counter,
    answered: Counter,
    /// Calls that ended unanswered, by the final code A got (`none` when
    /// A got none from the call, e.g. a caller's CANCEL answered 487 by
    /// the transaction).
    failed: Family<[(&'static str, String); 1], Counter>,
    setup: Histogram,
    duration: Histogram,
}

impl Default for CallMetrics {
    fn default() -> Self {
        Self {
            started: Counter::default(),
            answered: Counter::default(),
            failed: Family::default(),
            setup: Histogram::new(SETUP_BUCKETS),
            duration: Histogram::new(DURATION_BUCKETS),
        }
    }
}

impl CallMetrics {
    /// A call attempt was accepted for routing.
    pub fn started(&self) {
        self.started.inc();
    }

    /// A was answered (`record.answered_at` is set).
    pub fn answered(&self, record: &CallRecord) {
        self.answered.inc();
        if let Some(at) = record.answered_at {
            self.setup.observe(seconds_between(record.created_at, at));
        }
    }

    /// The call is over.
    pub fn ended(&self, record: &CallRecord) {
        match record.answered_at {
            Some(answered) => {
                let end = record.ended_at.unwrap_or_else(SystemTime::now);
                self.duration.observe(seconds_between(answered, end));
            }
            None => {
                let code = match record.end_status {
                    0 => "none".to_string(),
                    c => code_label(c),
                };
                self.failed.get_or_create(&[("code", code)]).inc();
            }
        }
    }

    /// Calls started so far.
    pub fn started_total(&self) -> u64 {
        self.started.get()
    }

    /// Register everything in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "swbd_calls_started",
            "Call attempts accepted for routing (INVITEs past authentication); CPS is its rate",
            self.started.clone(),
        );
        registry.register(
            "swbd_calls_answered",
            "Calls whose caller got a 200 (by a callee or the dialplan); ASR is answered over started",
            self.answered.clone(),
        );
        registry.register(
            "swbd_calls_failed",
            "Calls that ended without an answer, by the final code the caller got (none: no final response from the call; codes outside the IANA registry: other)",
            self.failed.clone(),
        );
        registry.register(
            "swbd_call_setup_seconds",
            "Time from the caller's INVITE to the 200 sent to it (ringing included), answered calls",
            self.setup.clone(),
        );
        registry.register(
            "swbd_call_duration_seconds",
            "Duration of answered calls, answer to end; ACD is its sum over its count",
            self.duration.clone(),
        );
    }
}

fn seconds_between(from: SystemTime, to: SystemTime) -> f64 {
    to.duration_since(from).unwrap_or_default().as_secs_f64()
}
