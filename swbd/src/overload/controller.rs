//! The control law: what share of new INVITEs to refuse, from the measured
//! queueing delay.
//!
//! A proportional-integral controller in the shape of PIE (RFC 8033 §4.2),
//! run every [`UPDATE_INTERVAL`]:
//!
//! ```text
//! p += ALPHA * (delay - target) + BETA * (delay - previous delay)
//! ```
//!
//! clamped to `0..=1`, each step to at most [`MAX_STEP`]. The first term
//! integrates: while the delay sits above the target, the refused share
//! keeps growing, so it settles where the admitted load is what swbd can
//! serve at the target delay, whatever the offered load. The second term
//! reacts to the delay's direction before it has gone far (without it the
//! refused share overshoots and the admitted rate swings; see
//! `a_proportional_law_alone_swings` below). RFC 8033's gains are tuned
//! for TCP, which needs a drop probability around 1%; a call server at
//! twice its capacity needs to refuse half, within a few hundred
//! milliseconds, so the gains here are larger: 10 ms above the target
//! adds 5% per update (ALPHA), a delay growing 1 ms per update adds 2.5%
//! (BETA). The bounded step keeps one noisy sample from swinging the
//! share by more than 10%, and below the target the share never grows
//! (below capacity the delay jitters between 0 and a few milliseconds,
//! which the derivative term alone would turn into refusals).
//!
//! At or above `max_delay` every new INVITE is refused (the backstop, for
//! a burst faster than the law), while the law keeps integrating.

use std::time::Duration;

/// How often the law runs.
pub const UPDATE_INTERVAL: Duration = Duration::from_millis(10);

/// Share added per update per second of delay above the target.
const ALPHA: f64 = 5.0;
/// Share added per update per second the delay grew since the last update.
const BETA: f64 = 25.0;
/// Largest change of the share in one update.
const MAX_STEP: f64 = 0.1;

/// The controller's state.
#[derive(Debug, Clone)]
pub struct Controller {
    alpha: f64,
    beta: f64,
    target: f64,
    max_delay: f64,
    share: f64,
    previous: f64,
}

impl Controller {
    /// A controller holding the delay at `target`, refusing everything at
    /// `max_delay` and above.
    pub fn new(target: Duration, max_delay: Duration) -> Self {
        Self {
            alpha: ALPHA,
            beta: BETA,
            target: target.as_secs_f64(),
            max_delay: max_delay.as_secs_f64(),
            share: 0.0,
            previous: 0.0,
        }
    }

    /// Feed the delay measured over the last [`UPDATE_INTERVAL`]; returns
    /// the share of new INVITEs to refuse until the next update (1.0 at or
    /// above `max_delay`).
    pub fn update(&mut self, delay: Duration) -> f64 {
        let d = delay.as_secs_f64();
        let mut step = self.alpha * (d - self.target) + self.beta * (d - self.previous);
        if d < self.target {
            // Below the target the share only falls: a delay jumping
            // between 0 and a few milliseconds (normal below capacity)
            // must not refuse anything through the derivative term.
            step = step.min(0.0);
        }
        self.share = (self.share + step.clamp(-MAX_STEP, MAX_STEP)).clamp(0.0, 1.0);
        self.previous = d;
        if d >= self.max_delay { 1.0 } else { self.share }
    }

    /// The share the law holds (without the `max_delay` backstop).
    pub fn share(&self) -> f64 {
        self.share
    }
}

#[cfg(test)]
mod tests {
    //! The law against a simulated server: a queue of CPU work drained at
    //! one second per second (with the CPU share it gets changing every
    //! millisecond, as on a shared machine), fed by Poisson INVITE
    //! arrivals; each admitted call adds its setup work at once and its
    //! teardown work a "hold" later. The delay the law sees is the queue's
    //! from a few milliseconds before (measurement lag). Deterministic
    //! (seeded); simulated time, not the clock.

    use super::*;

    /// Capacity: calls per second the simulated server completes.
    const CAPACITY: f64 = 2600.0;

    struct Run {
        /// Admitted calls per second after the warm-up, over capacity.
        utilisation: f64,
        /// Delay seen by admitted calls (p50, p99), seconds.
        p50: f64,
        p99: f64,
        /// Seconds after the offered load fell until the refused share
        /// was below 5% (when it fell).
        recovery: Option<f64>,
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
        fn poisson(&mut self, mean: f64) -> u64 {
            // Sum of per-sub-step Bernoulli trials: fine for means of a few.
            let n = (mean * 4.0).ceil().max(1.0) as u64;
            let p = mean / n as f64;
            (0..n).filter(|_| self.next() < p).count() as u64
        }
    }

    fn simulate(
        make: impl Fn() -> Controller,
        offered: f64,
        seconds: f64,
        drop_to: Option<(f64, f64)>,
    ) -> Run {
        let mut c = make();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let work = 1.0 / CAPACITY;
        let teardown = 0.3;
        let hold_ms = 1000usize;
        let lag_ms = 5usize;
        let warm_up_ms = 2000usize;
        let total_ms = (seconds * 1000.0) as usize;
        let mut later = vec![0.0f64; total_ms + hold_ms + 1];
        let mut history = Vec::with_capacity(total_ms);
        let mut backlog = 0.0f64;
        let mut share = 0.0;
        let mut admitted = 0u64;
        let mut seen = Vec::new();
        let mut recovery = None;
        let update_ms = UPDATE_INTERVAL.as_millis() as usize;
        for ms in 0..total_ms {
            let t = ms as f64 / 1000.0;
            let rate = match drop_to {
                Some((at, to)) if t >= at => to,
                _ => offered,
            };
            let arrivals = rng.poisson(rate / 1000.0);
            let mut admitted_now = 0;
            for _ in 0..arrivals {
                if rng.next() >= share {
                    admitted_now += 1;
                }
            }
            if ms >= warm_up_ms && drop_to.is_none_or(|(at, _)| t < at) {
                admitted += admitted_now;
                seen.extend(std::iter::repeat_n(backlog, admitted_now as usize));
            }
            backlog += admitted_now as f64 * work * (1.0 - teardown);
            if let Some(slot) = later.get_mut(ms + hold_ms) {
                *slot += admitted_now as f64 * work * teardown;
            }
            backlog += later.get(ms).copied().unwrap_or(0.0);
            let cpu = [0.3, 1.0, 1.0, 1.7][(rng.next() * 4.0) as usize % 4];
            backlog = (backlog - cpu / 1000.0).max(0.0);
            history.push(backlog);
            if ms % update_ms == update_ms - 1 {
                let measured = history[ms.saturating_sub(lag_ms)];
                share = c.update(Duration::from_secs_f64(measured));
                if let Some((at, _)) = drop_to
                    && t >= at
                    && recovery.is_none()
                    && share < 0.05
                {
                    recovery = Some(t - at);
                }
            }
        }
        seen.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            seen.get(((seen.len() as f64) * q) as usize)
                .copied()
                .unwrap_or(0.0)
        };
        let end = drop_to.map_or(seconds, |(at, _)| at);
        Run {
            utilisation: admitted as f64 / (end - warm_up_ms as f64 / 1000.0) / CAPACITY,
            p50: pick(0.5),
            p99: pick(0.99),
            recovery,
        }
    }

    fn standard() -> Controller {
        Controller::new(Duration::from_millis(10), Duration::from_millis(100))
    }

    #[test]
    fn at_twice_the_capacity_it_admits_about_the_capacity_at_the_target_delay() {
        let run = simulate(standard, 2.0 * CAPACITY, 12.0, None);
        assert!(
            run.utilisation > 0.93,
            "admitted {:.3} of capacity",
            run.utilisation
        );
        assert!(run.p50 < 0.015, "p50 {:.4}", run.p50);
        assert!(run.p99 < 0.040, "p99 {:.4}", run.p99);
    }

    #[test]
    fn at_five_times_the_capacity_it_still_admits_about_the_capacity() {
        let run = simulate(standard, 5.0 * CAPACITY, 8.0, None);
        assert!(run.utilisation > 0.9, "admitted {:.3}", run.utilisation);
        assert!(run.p99 < 0.050, "p99 {:.4}", run.p99);
    }

    #[test]
    fn below_the_capacity_nothing_is_refused() {
        let mut c = standard();
        let mut rng = Rng(7);
        // A light load: the queue is empty or a few milliseconds long.
        for _ in 0..10_000 {
            let delay = Duration::from_secs_f64(rng.next() * 0.004);
            assert_eq!(c.update(delay), 0.0);
        }
    }

    #[test]
    fn the_share_falls_to_nothing_soon_after_the_load_drops() {
        let run = simulate(standard, 2.0 * CAPACITY, 8.0, Some((6.0, 0.5 * CAPACITY)));
        let recovery = run.recovery.expect("the refused share fell below 5%");
        assert!(recovery < 0.3, "recovered after {recovery:.3} s");
    }

    #[test]
    fn at_max_delay_everything_is_refused_and_the_law_keeps_its_state() {
        let mut c = standard();
        assert_eq!(c.update(Duration::from_millis(150)), 1.0);
        assert!(c.share() <= MAX_STEP + f64::EPSILON, "one bounded step");
        assert!(c.update(Duration::from_millis(20)) < 1.0);
    }

    #[test]
    fn a_proportional_law_alone_swings() {
        // Why BETA: the same run without the derivative term admits less
        // and queues longer.
        let with = simulate(standard, 2.0 * CAPACITY, 12.0, None);
        let without = simulate(
            || Controller {
                beta: 0.0,
                ..standard()
            },
            2.0 * CAPACITY,
            12.0,
            None,
        );
        assert!(
            with.utilisation > without.utilisation + 0.03,
            "with {:.3}, without {:.3}",
            with.utilisation,
            without.utilisation
        );
        assert!(
            with.p99 < without.p99,
            "p99 with {:.4}, without {:.4}",
            with.p99,
            without.p99
        );
    }
}
