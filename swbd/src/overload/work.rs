//! Setup work in flight: a concurrency limit on the calls whose next step
//! is swbd's or its media node's, not a peer's.
//!
//! The rate law ([`super::controller`]) reacts to delays that have stood
//! for [`super::monitor::STANDING`] and cuts in steps of
//! [`super::controller::CUT_EVERY`]: each time its limit climbs past the
//! knee, hundreds of calls enter setup before the delay is seen, and those
//! calls wait (setup p99 of admitted calls 0.6 s at twice the capacity,
//! docs/BENCHMARKS.md "Overload"). This bounds that queue directly, per
//! INVITE, with no lag: by Little's law, work in flight divided by the
//! rate work completes is how long each piece waits, so swbd admits a new
//! call only while
//!
//! ```text
//! in flight < max(min_setup_work, peak completion rate × setup_budget_ms)
//! ```
//!
//! The completion rate is the highest smoothed rate of the last seconds
//! (what swbd has shown it can do), so a cap never chokes the pipeline it
//! measures: at twice the capacity the queue stays at about the budget's
//! worth of work and every admitted call sees at most that much ahead of
//! it.
//!
//! A call holds a [`SetupWork`] only while swbd owes the next step: from
//! its call task's start (auth done, dialplan, media session create) until
//! its first B-leg INVITE is out or the caller has an answer, and again
//! from a callee's 2xx (media connect) until the caller's 200 is out.
//! Ringing, a callee thinking, a prompt playing to an answered caller: not
//! work, a call can wait there as long as it likes without refusing
//! others.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use super::controller::UPDATE_INTERVAL;

/// `sip.overload.min_setup_work` by default: the cap never goes below
/// this many pieces of work, so a burst of this many INVITEs at once
/// always passes, however quiet swbd was before.
pub const WORK_FLOOR: usize = 64;

/// Weight of the newest update in the smoothed completion rate (~100 ms).
const EWMA: f64 = 0.1;
/// The remembered peak rate decays by this share per update (half in ~7 s):
/// a capacity shown a minute ago is not promised now.
const PEAK_DECAY: f64 = 0.999;

/// The counters the guards move (shared with [`super::Inner`]).
#[derive(Debug, Default)]
pub(super) struct WorkCounters {
    in_flight: AtomicUsize,
    done: AtomicU64,
    /// The cap now (set by the monitor); 0: no cap.
    cap: AtomicUsize,
}

impl WorkCounters {
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(super) fn cap(&self) -> usize {
        self.cap.load(Ordering::Relaxed)
    }

    /// Whether the cap refuses a new call now.
    pub(super) fn full(&self) -> bool {
        let cap = self.cap();
        cap > 0 && self.in_flight() >= cap
    }

    pub(super) fn begin(self: &Arc<Self>) -> SetupWork {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        SetupWork {
            counters: self.clone(),
        }
    }

    /// Pieces completed since the last call (for the monitor).
    fn take_done(&self) -> u64 {
        self.done.swap(0, Ordering::Relaxed)
    }
}

/// One call's setup step that swbd owes; dropping it ends the step.
#[derive(Debug)]
pub struct SetupWork {
    counters: Arc<WorkCounters>,
}

impl Drop for SetupWork {
    fn drop(&mut self) {
        self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.counters.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// The monitor's side: turns completions per update into the cap.
#[derive(Debug, Clone)]
pub(super) struct WorkLaw {
    budget: Duration,
    floor: usize,
    rate: f64,
    peak: f64,
}

impl WorkLaw {
    /// `budget`: how long work may wait in swbd, at most; zero: no cap.
    /// `floor`: the least cap.
    pub(super) fn new(budget: Duration, floor: usize) -> Self {
        Self {
            budget,
            floor: floor.max(1),
            rate: 0.0,
            peak: 0.0,
        }
    }

    /// Calls a second completed at the recent peak (two setup steps a
    /// call): the rate law's capacity hint.
    pub(super) fn peak_calls_per_sec(&self) -> f64 {
        self.peak / 2.0
    }

    /// One update: read the completions, set the cap; returns it.
    pub(super) fn update(&mut self, counters: &WorkCounters) -> usize {
        let done = counters.take_done();
        let cap = self.next_cap(done);
        counters.cap.store(cap, Ordering::Relaxed);
        cap
    }

    fn next_cap(&mut self, done: u64) -> usize {
        if self.budget.is_zero() {
            return 0;
        }
        let per_sec = done as f64 / UPDATE_INTERVAL.as_secs_f64();
        self.rate += EWMA * (per_sec - self.rate);
        self.peak = (self.peak * PEAK_DECAY).max(self.rate);
        let cap = (self.peak * self.budget.as_secs_f64()).ceil();
        // `as` saturates; the floor keeps a quiet swbd open to bursts.
        (cap as usize).max(self.floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_in_flight_and_completions() {
        let c = Arc::new(WorkCounters::default());
        let a = c.begin();
        let b = c.begin();
        assert_eq!(c.in_flight(), 2);
        drop(a);
        assert_eq!(c.in_flight(), 1);
        drop(b);
        assert_eq!(c.in_flight(), 0);
        assert_eq!(c.take_done(), 2);
        assert_eq!(c.take_done(), 0);
    }

    #[test]
    fn no_cap_until_the_monitor_sets_one_and_the_cap_refuses_at_its_size() {
        let c = Arc::new(WorkCounters::default());
        let held: Vec<_> = (0..WORK_FLOOR + 5).map(|_| c.begin()).collect();
        assert!(!c.full(), "no cap set yet");
        let mut law = WorkLaw::new(Duration::from_millis(15), WORK_FLOOR);
        assert_eq!(law.update(&c), WORK_FLOOR);
        assert!(c.full());
        drop(held);
        assert!(!c.full());
    }

    #[test]
    fn the_cap_follows_the_peak_completion_rate_times_the_budget() {
        let mut law = WorkLaw::new(Duration::from_millis(20), WORK_FLOOR);
        // 6,000 completions a second (60 per 10 ms update) for 2 s.
        let mut cap = 0;
        for _ in 0..200 {
            cap = law.next_cap(60);
        }
        // 6,000/s x 20 ms = 120.
        assert!((115..=121).contains(&cap), "{cap}");
        // The load stops: the cap remembers the capacity for seconds, and
        // decays toward the floor afterwards.
        for _ in 0..100 {
            cap = law.next_cap(0);
        }
        assert!(cap >= 100, "one second later: {cap}");
        for _ in 0..6000 {
            cap = law.next_cap(0);
        }
        assert_eq!(cap, WORK_FLOOR, "a minute later");
    }

    #[test]
    fn a_zero_budget_means_no_cap() {
        let c = Arc::new(WorkCounters::default());
        let _held: Vec<_> = (0..1000).map(|_| c.begin()).collect();
        let mut law = WorkLaw::new(Duration::ZERO, WORK_FLOOR);
        assert_eq!(law.update(&c), 0);
        assert!(!c.full());
    }
}
