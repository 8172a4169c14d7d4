//! The control law: how many new calls a second to admit, from the
//! measured queueing delay.
//!
//! A call server's delay is a knee, not a slope: below its capacity its
//! queues are empty whatever the load (the delay says nothing about how
//! far below), above it they grow at once (a call admitted now also brings
//! its answer a few milliseconds later and its teardown a hold time
//! later). A law that refuses a *share* of the offered INVITEs (PIE, RFC
//! 8033, tried first) keeps crossing that knee: with the delay at zero it
//! lowers the share until the queues explode, then raises it; on the test
//! VM that was a two-second cycle between "refuse everything" and "admit
//! everything", and after the offered load fell it went on refusing until
//! the share had decayed. So the law limits the admitted **rate** instead,
//! TCP's way (additive increase, multiplicative decrease):
//!
//! - off (no limit) while the delay stays under the target;
//! - when it stands above the target: a limit at [`FIRST_DECREASE`] of the
//!   admitted rate of the last ~50 ms, cut to [`DECREASE`] of itself at
//!   most every [`CUT_EVERY`] while the delay stays up (a cut needs that
//!   long to show in the queues);
//! - under the target: the limit grows by [`INCREASE`] per update (about
//!   35% a second), so it climbs back to the knee within half a second and
//!   sits just under it;
//! - a limit the offered load stayed under for [`RELEASE_AFTER`] is lifted.
//!
//! The limit is a rate, so when the offered load drops below it every
//! INVITE is admitted at once, and at five times the capacity it admits
//! what it admitted at two. Admission spaces calls evenly ([`RateGate`],
//! GCRA with [`BURST`] of tolerance) instead of letting bursts through.
//! At or above `max_delay` every new INVITE is refused (the backstop for a
//! burst faster than the law) and the limit keeps its cuts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often the law runs.
pub const UPDATE_INTERVAL: Duration = Duration::from_millis(10);

/// The first limit of an episode is this share of the admitted rate: a
/// deep cut, as the delay has only just been seen (TCP halves).
pub const FIRST_DECREASE: f64 = 0.7;
/// Later cuts take the limit to this share of itself.
pub const DECREASE: f64 = 0.85;
/// The limit grows by this share per update while the delay is under the
/// target.
pub const INCREASE: f64 = 0.003;
/// ...and by this share while the delay is under half the target and the
/// limit is under [`FAST_UP_TO`] of the calls a second swbd has recently
/// *completed* (the capacity hint, [`Controller::set_capacity_hint`]; about
/// 130x a second, TCP's slow start up to its threshold): a limit far below
/// what the server has just shown it can do (set at the start of a load
/// from a rate average that had not caught up, or cut by a hiccup of a
/// shared machine) comes back in a fraction of a second instead of
/// refusing most calls for seconds. Completions, not admissions: a burst
/// admitted before the delay showed is not capacity.
pub const FAST_INCREASE: f64 = 0.05;
/// See [`FAST_INCREASE`].
/// Half: a law cutting around the knee at twice the capacity stays above
/// it and grows slowly there (0.8 was measured: more overshoot, setup p50
/// 106 ms instead of 44 at 2x); only a limit cut far below what swbd
/// completes comes back fast.
pub const FAST_UP_TO: f64 = 0.5;

/// Least time between two cuts.
pub const CUT_EVERY: Duration = Duration::from_millis(100);
/// A limit the offered load stayed under (by half) this long is lifted.
pub const RELEASE_AFTER: Duration = Duration::from_secs(1);
/// The gate lets a burst of this much time's worth of calls through...
pub const BURST: Duration = Duration::from_millis(20);
/// ...and never fewer than this many calls: at a low limit (a small
/// system, or a noisy one that set a limit at a low rate) a handful of
/// INVITEs arriving together all pass.
pub const MIN_BURST_CALLS: u64 = 10;
/// The limit never goes below this (calls/s): a trickle keeps the law
/// measuring.
pub const FLOOR: f64 = 10.0;
/// A first limit is set only from this many new calls a second (admitted
/// or recently completed) up: below it the delay is not the new calls'
/// doing (a REGISTER burst, a neighbour on the machine) and refusing them
/// would not bring it down; `max_delay` and the setup-work cap still act.
pub const MIN_LIMITED_RATE: f64 = 100.0;
/// Weight of the newest update in the rate averages (about 50 ms).
const EWMA: f64 = 0.2;

/// What the law decided for the next update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// New calls a second to admit at most; `None`: no limit.
    pub limit: Option<f64>,
    /// Refuse every new INVITE (`max_delay` reached).
    pub refuse_all: bool,
}

/// The law's state.
#[derive(Debug, Clone)]
pub struct Controller {
    target: Duration,
    max_delay: Duration,
    limit: Option<f64>,
    /// Since the last cut (None: no cut yet).
    since_cut: Option<Duration>,
    /// How long the offered rate has stayed under half the limit.
    calm: Duration,
    admitted_rate: f64,
    /// Calls a second recently completed (0: unknown).
    capacity_hint: f64,
    offered_rate: f64,
}

impl Controller {
    /// A law holding the delay under `target`, refusing everything at
    /// `max_delay` and above.
    pub fn new(target: Duration, max_delay: Duration) -> Self {
        Self {
            target,
            max_delay,
            limit: None,
            since_cut: None,
            calm: Duration::ZERO,
            admitted_rate: 0.0,
            capacity_hint: 0.0,
            offered_rate: 0.0,
        }
    }

    /// What swbd has recently shown it completes, calls a second (the
    /// setup-work law's peak, `work.rs`).
    pub fn set_capacity_hint(&mut self, calls_per_sec: f64) {
        self.capacity_hint = calls_per_sec;
    }

    /// One update: `delay` measured over the last [`UPDATE_INTERVAL`],
    /// `offered` new INVITEs screened and `admitted` of them let in meanwhile.
    pub fn update(&mut self, delay: Duration, offered: u64, admitted: u64) -> Decision {
        let per_sec = 1.0 / UPDATE_INTERVAL.as_secs_f64();
        self.offered_rate += EWMA * (offered as f64 * per_sec - self.offered_rate);
        let admitted_now = admitted as f64 * per_sec;
        self.admitted_rate += EWMA * (admitted_now - self.admitted_rate);
        self.since_cut = self.since_cut.map(|d| d + UPDATE_INTERVAL);
        if delay > self.target {
            self.calm = Duration::ZERO;
            if self.since_cut.is_none_or(|d| d >= CUT_EVERY) {
                // The first cut starts from what was admitted; later ones
                // from the limit itself (the admitted rate also fell for
                // the refusals of `max_delay`, which are not the law's).
                // At the start of a load the average still lags the rate
                // just admitted: take the larger.
                let cut = match self.limit {
                    None => {
                        let base = self.admitted_rate.max(admitted_now).max(self.capacity_hint);
                        (base >= MIN_LIMITED_RATE).then_some(base * FIRST_DECREASE)
                    }
                    Some(l) => Some(l * DECREASE),
                };
                if let Some(cut) = cut {
                    self.limit = Some(cut.max(FLOOR));
                    self.since_cut = Some(Duration::ZERO);
                }
            }
        } else if let Some(l) = self.limit {
            let step = if delay < self.target / 2 && l < FAST_UP_TO * self.capacity_hint {
                FAST_INCREASE
            } else {
                INCREASE
            };
            let grown = l * (1.0 + step);
            if self.offered_rate < grown / 2.0 {
                self.calm += UPDATE_INTERVAL;
            } else {
                self.calm = Duration::ZERO;
            }
            self.limit = (self.calm < RELEASE_AFTER).then_some(grown);
        }
        Decision {
            limit: self.limit,
            refuse_all: delay >= self.max_delay,
        }
    }
}

/// The admission gate: GCRA (the "virtual scheduling" form of a token
/// bucket, ITU-T I.371) over one atomic, so the receive loops decide
/// without a lock. Times are nanoseconds on a clock of the caller's.
#[derive(Debug, Default)]
pub struct RateGate {
    /// Nanoseconds between two admissions; 0: no limit.
    interval_ns: AtomicU64,
    /// The theoretical arrival time of the next admission.
    tat_ns: AtomicU64,
}

impl RateGate {
    /// Admit at most `limit` a second from now on (`None`: all).
    pub fn set(&self, limit: Option<f64>) {
        let ns = match limit {
            Some(l) if l > 0.0 => (1e9 / l).clamp(1.0, 1e12) as u64,
            _ => 0,
        };
        self.interval_ns.store(ns, Ordering::Relaxed);
    }

    /// The limit in force (calls a second).
    pub fn limit(&self) -> Option<f64> {
        match self.interval_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(1e9 / ns as f64),
        }
    }

    /// Whether a call arriving at `now_ns` may be admitted (and if so it is
    /// counted against the rate).
    pub fn admit(&self, now_ns: u64) -> bool {
        let interval = self.interval_ns.load(Ordering::Relaxed);
        if interval == 0 {
            return true;
        }
        let burst = u64::try_from(BURST.as_nanos())
            .unwrap_or(u64::MAX)
            .max(interval.saturating_mul(MIN_BURST_CALLS));
        let mut tat = self.tat_ns.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now_ns);
            if start - now_ns > burst {
                return false;
            }
            match self.tat_ns.compare_exchange_weak(
                tat,
                start.saturating_add(interval),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now_tat) => tat = now_tat,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The law and the gate against a simulated server: a queue of work
    //! drained at one second per second (the CPU share it gets changes
    //! every millisecond, as on a shared machine), fed by Poisson INVITE
    //! arrivals; each admitted call adds 40% of its work at once, 30% a
    //! few milliseconds later (the answer) and 30% a "hold" later (the
    //! teardown). The law sees the queue's delay as the least over
    //! 50 ms, as the monitor gives it. Deterministic (seeded); simulated
    //! time, not the clock.

    use super::*;

    /// Calls a second the simulated server completes.
    const CAPACITY: f64 = 2000.0;
    const MS: Duration = Duration::from_millis(1);

    struct Run {
        /// Admitted calls a second after the warm-up, over the capacity.
        utilisation: f64,
        /// Queue delay met by admitted calls (p50, p99), seconds.
        p99: f64,
        /// INVITEs refused in the two seconds after the offered load fell.
        refused_after_drop: u64,
    }

    /// xorshift64*: enough randomness for arrivals, no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        }
        fn arrivals(&mut self, mean: f64) -> u64 {
            let whole = mean.floor();
            whole as u64 + u64::from(self.next() < mean - whole)
        }
    }

    fn simulate(offered: f64, seconds: f64, drop_at: Option<f64>) -> Run {
        let mut law = Controller::new(10 * MS, 100 * MS);
        let gate = RateGate::default();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let work = 1.0 / CAPACITY;
        let total_ms = (seconds * 1000.0) as usize;
        let (answer_ms, hold_ms, warm_up_ms) = (5usize, 1000usize, 3000usize);
        let mut later = vec![0.0f64; total_ms + hold_ms + 1];
        let mut history: Vec<f64> = Vec::with_capacity(total_ms);
        let mut window: std::collections::VecDeque<f64> = Default::default();
        let (mut backlog, mut refuse_all) = (0.0f64, false);
        let (mut offered_n, mut admitted_n) = (0u64, 0u64);
        let (mut measured, mut seen) = (0u64, Vec::new());
        let mut refused_after_drop = 0u64;
        for ms in 0..total_ms {
            let t = ms as f64 / 1000.0;
            let dropped = drop_at.is_some_and(|at| t >= at);
            let rate = if dropped { CAPACITY / 2.0 } else { offered };
            let mut admitted_now = 0;
            for i in 0..rng.arrivals(rate / 1000.0) {
                offered_n += 1;
                // Spread the millisecond's arrivals over it.
                let now_ns = ms as u64 * 1_000_000 + i * 1000;
                if !refuse_all && gate.admit(now_ns) {
                    admitted_now += 1;
                } else if dropped && t < drop_at.unwrap_or(0.0) + 2.0 {
                    refused_after_drop += 1;
                }
            }
            admitted_n += admitted_now;
            if ms >= warm_up_ms && !dropped {
                measured += admitted_now;
                seen.extend(std::iter::repeat_n(backlog, admitted_now as usize));
            }
            backlog += admitted_now as f64 * work * 0.4;
            for (after, part) in [(answer_ms, 0.3), (hold_ms, 0.3)] {
                if let Some(slot) = later.get_mut(ms + after) {
                    *slot += admitted_now as f64 * work * part;
                }
            }
            backlog += later.get(ms).copied().unwrap_or(0.0);
            let cpu = [0.6, 1.0, 1.0, 1.4][(rng.next() * 4.0) as usize % 4];
            backlog = (backlog - cpu / 1000.0).max(0.0);
            history.push(backlog);
            if ms % 10 == 9 {
                let least = history[ms - 9..=ms]
                    .iter()
                    .copied()
                    .fold(f64::MAX, f64::min);
                window.push_back(least);
                if window.len() > 5 {
                    window.pop_front();
                }
                let delay = window.iter().copied().fold(f64::MAX, f64::min);
                let d = law.update(Duration::from_secs_f64(delay), offered_n, admitted_n);
                gate.set(d.limit);
                refuse_all = d.refuse_all;
                offered_n = 0;
                admitted_n = 0;
            }
        }
        seen.sort_by(f64::total_cmp);
        let end = drop_at.unwrap_or(seconds);
        Run {
            utilisation: measured as f64 / (end - warm_up_ms as f64 / 1000.0) / CAPACITY,
            p99: seen
                .get((seen.len() as f64 * 0.99) as usize)
                .copied()
                .unwrap_or(0.0),
            refused_after_drop,
        }
    }

    #[test]
    fn at_twice_the_capacity_it_admits_nine_tenths_of_it_with_short_queues() {
        let run = simulate(2.0 * CAPACITY, 15.0, None);
        assert!(run.utilisation > 0.9, "admitted {:.3}", run.utilisation);
        assert!(run.utilisation < 1.05, "admitted {:.3}", run.utilisation);
        assert!(run.p99 < 0.030, "p99 {:.4}", run.p99);
    }

    #[test]
    fn a_limit_set_low_at_the_start_of_a_load_comes_back_within_a_second() {
        let mut law = Controller::new(10 * MS, 100 * MS);
        // 1,200 calls/s just started (12 per update): the average lags.
        for _ in 0..3 {
            law.update(MS, 12, 12);
        }
        // A 10 ms blip: the first cut takes the rate just admitted.
        let d = law.update(11 * MS, 12, 12);
        let first = d.limit.expect("a limit");
        assert!(first >= 0.7 * 1200.0 * 0.99, "first limit {first}");
        // Even from a far lower limit, with 1,200/s completed recently and
        // the delay low, it is back at half of that within a second.
        law.limit = Some(FLOOR);
        law.set_capacity_hint(1200.0);
        let mut limit = FLOOR;
        for _ in 0..100 {
            limit = law.update(MS, 12, 0).limit.unwrap_or(f64::MAX);
        }
        assert!(limit >= 0.5 * 1200.0, "after 1 s: {limit}");
        // A delay while (almost) no INVITEs came (a REGISTER burst before
        // the calls): no limit on calls.
        let mut quiet = Controller::new(10 * MS, 100 * MS);
        assert_eq!(quiet.update(11 * MS, 0, 0).limit, None);
        assert_eq!(quiet.update(11 * MS, 0, 0).limit, None);
        // Without the hint (nothing completed), only the slow growth.
        let mut slow = Controller::new(10 * MS, 100 * MS);
        slow.limit = Some(FLOOR);
        let mut l = FLOOR;
        for _ in 0..50 {
            l = slow.update(MS, 12, 0).limit.unwrap_or(f64::MAX);
        }
        assert!(l < 2.0 * FLOOR, "{l}");
    }

    #[test]
    fn at_five_times_the_capacity_it_admits_as_much() {
        let run = simulate(5.0 * CAPACITY, 15.0, None);
        assert!(run.utilisation > 0.85, "admitted {:.3}", run.utilisation);
        assert!(run.p99 < 0.040, "p99 {:.4}", run.p99);
    }

    #[test]
    fn when_the_load_falls_under_the_limit_nothing_is_refused() {
        let run = simulate(2.0 * CAPACITY, 12.0, Some(10.0));
        assert_eq!(run.refused_after_drop, 0);
    }

    #[test]
    fn below_capacity_there_is_no_limit() {
        let run = simulate(0.7 * CAPACITY, 8.0, None);
        assert!(run.utilisation > 0.68, "admitted {:.3}", run.utilisation);
        let mut law = Controller::new(10 * MS, 100 * MS);
        let mut rng = Rng(7);
        for _ in 0..10_000 {
            let delay = Duration::from_secs_f64(rng.next() * 0.009);
            assert_eq!(law.update(delay, 14, 14).limit, None);
        }
    }

    #[test]
    fn a_standing_delay_cuts_the_limit_once_per_interval_and_max_delay_refuses_all() {
        let mut law = Controller::new(10 * MS, 100 * MS);
        for _ in 0..20 {
            law.update(MS, 30, 30); // 3,000 a second, settled
        }
        let first = law.update(20 * MS, 30, 30).limit.expect("a limit");
        assert!((first - 3000.0 * FIRST_DECREASE).abs() < 100.0, "{first}");
        // Within CUT_EVERY: no second cut.
        assert_eq!(law.update(20 * MS, 30, 20).limit, Some(first));
        for _ in 0..9 {
            law.update(20 * MS, 30, 20);
        }
        let second = law.update(20 * MS, 30, 20).limit.expect("a limit");
        assert!(second < first, "{second} after {first}");
        assert!(law.update(150 * MS, 30, 0).refuse_all);
        assert!(!law.update(50 * MS, 30, 0).refuse_all);
    }

    #[test]
    fn the_gate_spaces_admissions_at_the_limit_with_a_small_burst() {
        let gate = RateGate::default();
        assert!((0..1000).all(|_| gate.admit(0)), "no limit");
        gate.set(Some(1000.0)); // one a millisecond, 20 ms of burst
        let at_once = (0..100).filter(|_| gate.admit(1_000_000_000)).count();
        assert!((20..=22).contains(&at_once), "{at_once} at once");
        // A low limit still lets a handful through together.
        let low = RateGate::default();
        low.set(Some(10.0));
        let at_once = (0..100).filter(|_| low.admit(5_000_000_000)).count();
        assert_eq!(at_once, MIN_BURST_CALLS as usize + 1);
        // Over a second, about 1,000 (plus the burst).
        let mut n = 0;
        for us in 0..1_000_000u64 {
            if gate.admit(1_000_000_000 + us * 1000 + 1000) {
                n += 1;
            }
        }
        assert!((995..=1025).contains(&n), "{n} in a second");
        assert_eq!(gate.limit().map(f64::round), Some(1000.0));
    }
}
