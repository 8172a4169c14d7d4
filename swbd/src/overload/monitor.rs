//! The measuring task: the probe, the three delays, the law, the log.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use switchboard_proto::support::shutdown::Shutdown;

use super::controller::{Controller, UPDATE_INTERVAL};
use super::round_trip::BaseRoundTrip;
use super::work::WorkLaw;
use super::{EPISODE_END, Inner, PROBE_INTERVAL, duration_ns};
use crate::transport::backlog::ReceiveBacklog;

/// How long a delay must stand before it counts: each signal enters the
/// law as its least value over this window (CoDel's interval, RFC 8289
/// §3.2, shorter here because the law reacts in steps). A process
/// preempted for one scheduler slice (up to a few tens of milliseconds on
/// a busy host) delays everything for that long and then catches up; that
/// is not overload, and refusing calls for it would cost calls below
/// capacity. A queue that does not drain for 50 ms is.
pub const STANDING: Duration = Duration::from_millis(50);

/// After a stall, new INVITEs are refused until what queued during it has
/// been read, for at most this long.
pub const DRAIN_AT_MOST: Duration = Duration::from_secs(1);

/// The least of the last [`STANDING`] worth of per-update samples.
#[derive(Debug)]
struct SlidingMin {
    samples: VecDeque<Duration>,
    len: usize,
}

impl SlidingMin {
    fn new() -> Self {
        let len = usize::try_from(STANDING.as_millis() / UPDATE_INTERVAL.as_millis().max(1))
            .unwrap_or(1)
            .max(1);
        Self {
            samples: VecDeque::with_capacity(len),
            len,
        }
    }

    /// Add a sample; the least of the window.
    fn push(&mut self, d: Duration) -> Duration {
        if self.samples.len() == self.len {
            self.samples.pop_front();
        }
        self.samples.push_back(d);
        self.samples.iter().copied().min().unwrap_or(d)
    }
}

/// The probe and the law: wake every [`PROBE_INTERVAL`], note how late,
/// and every [`UPDATE_INTERVAL`] turn the three delays into the admission
/// limit.
pub(super) async fn run(
    inner: Arc<Inner>,
    backlogs: Vec<Arc<ReceiveBacklog>>,
    mut shutdown: Shutdown,
) {
    let max_delay = Duration::from_millis(inner.config.max_delay_ms);
    let mut law = Controller::new(
        Duration::from_millis(inner.config.target_delay_ms),
        max_delay,
    );
    let mut probe_lag: Option<Duration> = None;
    // After a stall: a marker per socket sent when it was seen, and when;
    // new INVITEs are refused until every one was read (what queued
    // during the stall has been read then), for at most DRAIN_AT_MOST.
    let mut draining: Vec<(usize, u64)> = Vec::new();
    let mut draining_since: Option<Instant> = None;
    let mut next_update = tokio::time::Instant::now() + UPDATE_INTERVAL;
    let mut calm_since: Option<Instant> = None;
    let mut updates = 0u32;
    let mut refused_share = 0.0f64;
    let mut base_round_trip = BaseRoundTrip::default();
    let mut work_law = WorkLaw::new(
        if inner.config.enabled {
            Duration::from_millis(inner.config.setup_budget_ms)
        } else {
            Duration::ZERO
        },
        inner.config.min_setup_work,
    );
    let (mut backlog_min, mut lag_min, mut media_min) =
        (SlidingMin::new(), SlidingMin::new(), SlidingMin::new());
    loop {
        let due = tokio::time::Instant::now() + PROBE_INTERVAL;
        inner
            .probe_due_ns
            .store(inner.nanos(due.into_std()), Ordering::Relaxed);
        tokio::select! {
            _ = shutdown.wait() => return,
            () = tokio::time::sleep_until(due) => {}
        }
        let woke = tokio::time::Instant::now();
        let lag = woke.saturating_duration_since(due);
        probe_lag = Some(probe_lag.map_or(lag, |w| w.min(lag)));
        if lag >= max_delay {
            // A stall (a paused VM, a starved process): whatever queued
            // meanwhile waited this long, and is read right now. Refuse at
            // once, not at the next update (the minimum would hide it).
            inner.refuse_all.store(true, Ordering::Relaxed);
            let now = Instant::now();
            draining = backlogs
                .iter()
                .enumerate()
                .filter_map(|(i, b)| b.mark(now).map(|seq| (i, seq)))
                .collect();
            draining_since = Some(now);
        }
        if woke < next_update {
            continue;
        }
        next_update = woke + UPDATE_INTERVAL;
        let now = Instant::now();
        let backlog = backlogs
            .iter()
            .map(|b| b.probe(now))
            .max()
            .unwrap_or_default();
        let backlog = backlog_min.push(backlog);
        // A stall refuses what queued during it and no more: it is over,
        // and the law is for load that stands.
        draining.retain(|(i, seq)| backlogs.get(*i).is_some_and(|b| !b.has_read(*seq)));
        let stalled = match draining_since {
            Some(since)
                if !draining.is_empty() && now.saturating_duration_since(since) < DRAIN_AT_MOST =>
            {
                true
            }
            Some(_) => {
                draining.clear();
                draining_since = None;
                // This update still refuses (without markers, this is all).
                true
            }
            None => false,
        };
        let lag = lag_min.push(probe_lag.take().unwrap_or_default());
        // No command finished in this update: no news, the window keeps
        // what it had (an idle media path is not a fast one).
        let media = match inner.media.get().and_then(|m| (m.0)()) {
            Some(least) => media_min.push(base_round_trip.queueing(now, least)),
            None => media_min.samples.iter().copied().min().unwrap_or_default(),
        };
        let delay = backlog.max(lag).max(media);
        let screened = inner.screened.swap(0, Ordering::Relaxed);
        let admitted = inner.admitted.swap(0, Ordering::Relaxed);
        let work_cap = work_law.update(&inner.work);
        law.set_capacity_hint(work_law.peak_calls_per_sec());
        let decision = law.update(delay, screened, admitted);
        if inner.config.enabled {
            inner.gate.set(decision.limit);
            inner
                .refuse_all
                .store(decision.refuse_all || stalled, Ordering::Relaxed);
        } else {
            inner.refuse_all.store(false, Ordering::Relaxed);
        }
        if screened > 0 {
            let share = screened.saturating_sub(admitted) as f64 / screened as f64;
            refused_share += 0.2 * (share - refused_share);
        } else {
            refused_share *= 0.8;
        }
        inner
            .refused_share
            .store(refused_share.to_bits(), Ordering::Relaxed);
        inner.delay_ns.store(duration_ns(delay), Ordering::Relaxed);
        inner
            .backlog_ns
            .store(duration_ns(backlog), Ordering::Relaxed);
        inner.lag_ns.store(duration_ns(lag), Ordering::Relaxed);
        inner.media_ns.store(duration_ns(media), Ordering::Relaxed);
        updates = updates.wrapping_add(1);
        if updates.is_multiple_of(10) {
            // Ten a second, for a trace of an episode (RUST_LOG=swbd::overload=debug).
            tracing::debug!(
                limit = decision.limit.unwrap_or(0.0),
                refuse_all = decision.refuse_all,
                refused_share,
                delay_ms = delay.as_secs_f64() * 1e3,
                receive_backlog_ms = backlog.as_secs_f64() * 1e3,
                scheduling_lag_ms = lag.as_secs_f64() * 1e3,
                media_queueing_ms = media.as_secs_f64() * 1e3,
                calls_in_setup = inner.in_setup.load(Ordering::Relaxed),
                setup_work = inner.work.in_flight(),
                work_cap,
                refused = inner.refused.load(Ordering::Relaxed),
                "overload sample"
            );
        }
        if inner.config.enabled {
            let limiting = decision.limit.is_some() || decision.refuse_all;
            log_episode(
                &inner,
                limiting,
                delay,
                [backlog, lag, media],
                now,
                &mut calm_since,
            );
        }
    }
}

/// One line when refusing starts, one when it has been over for
/// [`EPISODE_END`].
fn log_episode(
    inner: &Inner,
    limiting: bool,
    delay: Duration,
    [backlog, lag, media]: [Duration; 3],
    now: Instant,
    calm_since: &mut Option<Instant>,
) {
    let in_episode = inner.episode.load(Ordering::Relaxed);
    if limiting {
        *calm_since = None;
        if !in_episode {
            inner.episode.store(true, Ordering::Relaxed);
            tracing::warn!(
                delay_ms = delay.as_secs_f64() * 1e3,
                receive_backlog_ms = backlog.as_secs_f64() * 1e3,
                scheduling_lag_ms = lag.as_secs_f64() * 1e3,
                media_queueing_ms = media.as_secs_f64() * 1e3,
                target_ms = inner.config.target_delay_ms,
                "overload: new INVITEs are admitted at a limited rate, the rest get 503"
            );
        }
        return;
    }
    if !in_episode {
        return;
    }
    let since = *calm_since.get_or_insert(now);
    if now.saturating_duration_since(since) >= EPISODE_END {
        inner.episode.store(false, Ordering::Relaxed);
        *calm_since = None;
        tracing::info!(
            invites_refused_since_start = inner.refused.load(Ordering::Relaxed),
            "overload over: new INVITEs are all admitted again"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_slice_long_spike_does_not_stand_but_a_queue_does() {
        let mut w = SlidingMin::new();
        for _ in 0..10 {
            assert_eq!(w.push(MS), MS);
        }
        // Preempted for 30 ms: three updates see it, the window does not.
        for _ in 0..3 {
            assert_eq!(w.push(30 * MS), MS);
        }
        assert_eq!(w.push(MS), MS);
        // A queue that stands for the whole window counts.
        let mut last = Duration::ZERO;
        for _ in 0..w.len {
            last = w.push(20 * MS);
        }
        assert_eq!(last, 20 * MS);
    }
}
