//! Overload control: new calls are admitted by measured load.
//!
//! # Why
//!
//! Offered twice what it could serve, swbd used to take every INVITE: the
//! UDP receive queue (8 MiB) and the runtime's run queue filled, every
//! message (the ACKs and BYEs of calls already up included) waited behind
//! the new INVITEs, setup took seconds, callers retransmitted, timers fired
//! inside the system and fewer calls completed than at the clean capacity.
//! A fixed queue size does not help: the queue that grows is the kernel's
//! and the scheduler's, not swbd's INVITE channel.
//!
//! # What is measured
//!
//! Queueing delay inside the platform, from three of its own queues, never
//! from a peer (a slow callee or trunk is not overload):
//! - **receive backlog**: how long a datagram waits in a UDP socket's
//!   receive queue before swbd reads it, timed with marker datagrams swbd
//!   sends itself ([`crate::transport::backlog`]), the longest over sockets;
//! - **scheduling lag**: how late a probe task wakes from a timer (every
//!   [`PROBE_INTERVAL`]), the least of each [`controller::UPDATE_INTERVAL`];
//!   a lagging runtime delays every task a message wakes (call tasks,
//!   transactions, media replies). One wake-up late by `max_delay_ms` or
//!   more is a stall: it counts in full, at once;
//! - **media queueing**: the least media command round trip of each update
//!   above the least of the last ten minutes ([`round_trip`]), the
//!   slowest node's: the node's queues (swrtp sharing the CPU, or a busy remote
//!   node) and swbd's own on the way to it and back.
//!
//! Each enters as its least value over the last [`monitor::STANDING`]
//! (50 ms): a delay counts once it stands, not when a process was
//! preempted for one scheduler slice (CoDel takes the minimum over an
//! interval for the same reason, RFC 8289 §3.2). The largest of the three is the
//! delay. Every [`controller::UPDATE_INTERVAL`] it goes through the
//! [`controller::Controller`]: while it stands above
//! `sip.overload.target_delay_ms`, new INVITEs are admitted at a limited
//! rate (70% of what was admitted, then cut by 15% every 100 ms until the
//! delay is back under the target); under it the limit grows again (~35%
//! a second) and is lifted once the offered load stays under it (the
//! law's comment says why a rate and not a refused share).
//! Two backstops act on each INVITE at once, without waiting for the law:
//! a probe overdue by `max_delay_ms` (the runtime stalled: a paused VM, a
//! burst far beyond the law's pace) refuses it, and so does a count of
//! `max_calls_in_setup` INVITE server transactions without a final answer
//! (a media node that stopped answering piles calls up without loading
//! the CPU).
//!
//! # What is refused, and how
//!
//! Only new INVITEs (no To tag): the front door answers them
//! `503 Service Unavailable` with `Retry-After` statelessly, before any
//! transaction, `100 Trying` or table entry exists, at about the cost of
//! parsing them. ACK, CANCEL, BYE and every in-dialog request, responses,
//! REGISTER and OPTIONS always pass: calls already admitted keep the
//! capacity the refused ones free. REGISTER is not refused: a phone that
//! cannot refresh its binding loses its incoming calls, phones retry on
//! their own schedule whatever `Retry-After` says, and a registration
//! storm from one place is what `sip.rate_limit` is for.
//!
//! The limit spaces admissions evenly over time (no state per source); a
//! retransmitted INVITE is screened again like a new one. `GetStatus`
//! (`swctl status`) shows the limit, the refused share, the delay and its
//! parts, the calls in setup and how many INVITEs were refused; the start
//! and the end of each overload episode are logged once.

pub mod controller;
pub mod monitor;
pub mod round_trip;
pub mod ticket;
pub mod work;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::Deserialize;
use switchboard_proto::support::shutdown::Shutdown;

use crate::transport::backlog::ReceiveBacklog;
use controller::RateGate;
pub use work::SetupWork;
use work::WorkCounters;

/// How often the scheduling-lag probe wakes.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(2);

/// How long swbd must admit without a limit before an episode is
/// logged as over (so a load hovering at capacity logs once, not per
/// update).
const EPISODE_END: Duration = Duration::from_secs(2);

/// `sip.overload`: admission of new calls by measured load (on by default).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct OverloadConfig {
    /// Refuse new INVITEs under overload (`503` + `Retry-After`). Off,
    /// swbd takes every INVITE whatever its load (the behaviour before
    /// overload control) and still measures the delay for `GetStatus`.
    pub enabled: bool,
    /// The queueing delay swbd holds new calls under, milliseconds:
    /// while the measured delay stands above it, new INVITEs are admitted
    /// at a limited rate (the rest get `503`), cut until the delay is
    /// under it again. Below capacity the measured delay stays around
    /// 1 ms on the 2-core test VM (docs/BENCHMARKS.md, "Overload"); a
    /// call's setup crosses swbd's and swrtp's queues several times, so
    /// 10 ms keeps the setup of admitted calls in tens of milliseconds.
    pub target_delay_ms: u64,
    /// At this delay every new INVITE is refused at once (the law has not
    /// caught up with a sudden burst, or the runtime stalled).
    pub max_delay_ms: u64,
    /// INVITE server transactions waiting for their final answer (calls in
    /// setup, ringing included) at most; more are refused. 0: no cap.
    /// This bounds the memory and media sessions a stuck dependency can
    /// pile up; it is not the load measure (a ringing call costs nothing),
    /// so keep it well above ringing calls at the busiest hour.
    pub max_calls_in_setup: usize,
    /// The `Retry-After` of a refusal, seconds. Short: overload is
    /// measured and ends when the load drops; an upstream proxy may avoid
    /// swbd altogether for this long (RFC 3261 §21.5.4).
    pub retry_after_secs: u32,
    /// How long a call's setup step may wait inside swbd and its media
    /// node, milliseconds: new INVITEs are refused while the setup work in
    /// flight exceeds what swbd completes in this long at its recent peak
    /// rate (and at least 64 pieces), so admitted calls never queue behind
    /// more ([`work`]). 0: no such cap.
    pub setup_budget_ms: u64,
    /// The least setup-work cap: this many calls may be in setup steps
    /// swbd owes at once whatever the measured rate (a burst after a quiet
    /// spell). At least 1.
    pub min_setup_work: usize,
    /// Refuse new UDP INVITEs early: a refused one is answered `503` from
    /// its raw head in the UDP receive loop, before any parse, and the ACK
    /// of that `503` is dropped there ([`crate::transport::shed`]); odd
    /// heads still go the normal way. Off: every INVITE is parsed and
    /// refused by the front door (as before; for comparison). Not used
    /// while `sip.rate_limit` or `capture.hep` is on.
    pub early_shed: bool,
}

impl Default for OverloadConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            target_delay_ms: 10,
            max_delay_ms: 100,
            max_calls_in_setup: 10_000,
            retry_after_secs: 2,
            setup_budget_ms: 15,
            min_setup_work: work::WORK_FLOOR,
            early_shed: true,
        }
    }
}

impl OverloadConfig {
    /// Errors naming the key.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.target_delay_ms == 0 {
            errors.push("sip.overload.target_delay_ms: must be at least 1".into());
        }
        if self.max_delay_ms <= self.target_delay_ms {
            errors.push(
                "sip.overload.max_delay_ms: must be above sip.overload.target_delay_ms".into(),
            );
        }
        if self.min_setup_work == 0 {
            errors.push("sip.overload.min_setup_work: must be at least 1".into());
        }
        if !(1..=3600).contains(&self.retry_after_secs) {
            errors.push("sip.overload.retry_after_secs: must be between 1 and 3600".into());
        }
        errors
    }
}

/// Why an INVITE was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The rate limit, `max_delay_ms` or a stall.
    Delay,
    /// `max_calls_in_setup` reached.
    CallsInSetup,
    /// The setup work in flight is at its cap ([`work`]).
    SetupWork,
    /// The INVITE queue to the B2BUA was full (after the transaction
    /// existed).
    Queue,
}

/// What `GetStatus` shows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OverloadSnapshot {
    /// `sip.overload.enabled`.
    pub enabled: bool,
    /// Share of new INVITEs refused over the last ~50 ms (0..=1).
    pub refused_share: f64,
    /// New calls a second admitted at most now; `None`: no limit.
    pub admission_limit: Option<f64>,
    /// The delay the limit was last computed from.
    pub delay: Duration,
    /// Its part from the UDP receive queues.
    pub receive_backlog: Duration,
    /// Its part from the runtime's scheduling lag.
    pub scheduling_lag: Duration,
    /// Its part from media command round trips (above their base).
    pub media_queueing: Duration,
    /// INVITE server transactions without a final answer.
    pub calls_in_setup: usize,
    /// Setup steps swbd owes now ([`work`]).
    pub setup_work: usize,
    /// Their cap now; 0: none.
    pub setup_work_cap: usize,
    /// INVITEs refused since start.
    pub invites_refused: u64,
}

/// Cheap-clone handle: the admission decision for the front door, the
/// numbers for admin.
#[derive(Debug, Clone)]
pub struct Overload {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: OverloadConfig,
    /// The admission rate limit (set by the monitor).
    gate: RateGate,
    /// `max_delay_ms` reached: refuse every new INVITE.
    refuse_all: AtomicBool,
    /// New INVITEs screened and admitted since the monitor's last update.
    screened: AtomicU64,
    admitted: AtomicU64,
    /// The refused share of the last ~50 ms, as `f64` bits (for status).
    refused_share: AtomicU64,
    /// Last delay and its parts, nanoseconds (for status).
    delay_ns: AtomicU64,
    backlog_ns: AtomicU64,
    lag_ns: AtomicU64,
    media_ns: AtomicU64,
    /// Where the least media command round trip since the last update
    /// comes from (set once the media pool exists).
    media: OnceLock<MediaRoundTrips>,
    /// When the probe is due next, nanoseconds after `epoch`; 0 before
    /// the probe runs. An INVITE screened `max_delay` after it is refused.
    probe_due_ns: AtomicU64,
    epoch: Instant,
    /// INVITE server transactions in Proceeding (the transaction layer's).
    in_setup: Arc<AtomicUsize>,
    /// Setup steps in flight and their cap.
    work: Arc<WorkCounters>,
    refused: AtomicU64,
    /// An episode is in progress (for the two log lines).
    episode: AtomicBool,
}

impl Overload {
    /// Start measuring: `backlogs` of the UDP sockets, `in_setup` the
    /// transaction layer's count of INVITEs without a final answer. The
    /// probe runs until `shutdown`.
    pub fn start(
        config: OverloadConfig,
        backlogs: Vec<Arc<ReceiveBacklog>>,
        in_setup: Arc<AtomicUsize>,
        shutdown: Shutdown,
    ) -> Self {
        let overload = Self::idle(config, in_setup);
        tokio::spawn(monitor::run(overload.inner.clone(), backlogs, shutdown));
        overload
    }

    /// A handle with no probe running (tools and tests of the front door).
    pub fn idle(config: OverloadConfig, in_setup: Arc<AtomicUsize>) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                gate: RateGate::default(),
                refuse_all: AtomicBool::new(false),
                screened: AtomicU64::new(0),
                admitted: AtomicU64::new(0),
                refused_share: AtomicU64::new(0f64.to_bits()),
                delay_ns: AtomicU64::new(0),
                backlog_ns: AtomicU64::new(0),
                lag_ns: AtomicU64::new(0),
                media_ns: AtomicU64::new(0),
                media: OnceLock::new(),
                probe_due_ns: AtomicU64::new(0),
                epoch: Instant::now(),
                in_setup,
                work: Arc::default(),
                refused: AtomicU64::new(0),
                episode: AtomicBool::new(false),
            }),
        }
    }

    /// Whether a new INVITE may start a call now; a refusal is counted.
    /// Called for every new out-of-dialog INVITE: a few atomic loads. When
    /// the UDP receive path already decided for this INVITE before its
    /// parse ([`ticket`]), that decision is the answer, counted once.
    pub fn admit_invite(&self) -> Result<(), Refusal> {
        if let Some(decided) = ticket::take() {
            return decided;
        }
        self.admit_invite_now()
    }

    /// A setup step swbd owes a call begins; it ends when the guard is
    /// dropped ([`work`] says which steps count).
    pub fn setup_work(&self) -> SetupWork {
        self.inner.work.begin()
    }

    /// Count a refusal decided elsewhere (the INVITE queue was full).
    pub fn count_refused(&self, _why: Refusal) {
        self.inner.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Measure the media path too: `round_trip` returns the least media
    /// command round trip since it was last called (the media pool's
    /// [`crate::media::MediaPool::take_command_round_trip`]). Once.
    pub fn watch_media(&self, round_trip: impl Fn() -> Option<Duration> + Send + Sync + 'static) {
        let _ = self.inner.media.set(MediaRoundTrips(Box::new(round_trip)));
    }

    /// Decide a new INVITE's admission before its parse (the UDP receive
    /// path, [`crate::transport::shed`]): counted like
    /// [`Self::admit_invite`]; an admitted INVITE carries the returned
    /// ticket to the front door ([`ticket::with_ticket`]).
    pub fn decide_early(&self) -> ticket::Ticket {
        ticket::Ticket::new(self.admit_invite_now())
    }

    fn admit_invite_now(&self) -> Result<(), Refusal> {
        let inner = &self.inner;
        if !inner.config.enabled {
            return Ok(());
        }
        inner.screened.fetch_add(1, Ordering::Relaxed);
        let refusal = inner.refusal(Instant::now());
        if let Some(r) = refusal {
            self.count_refused(r);
            return Err(r);
        }
        inner.admitted.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Whether new INVITEs are to be refused early, before their parse
    /// (`sip.overload.enabled` and `sip.overload.early_shed`).
    pub fn sheds_early(&self) -> bool {
        self.inner.config.enabled && self.inner.config.early_shed
    }

    /// `Retry-After` of a refusal, seconds.
    pub fn retry_after_secs(&self) -> u32 {
        self.inner.config.retry_after_secs
    }

    /// The numbers for `GetStatus`.
    pub fn snapshot(&self) -> OverloadSnapshot {
        let i = &self.inner;
        let ns = |a: &AtomicU64| Duration::from_nanos(a.load(Ordering::Relaxed));
        OverloadSnapshot {
            enabled: i.config.enabled,
            refused_share: f64::from_bits(i.refused_share.load(Ordering::Relaxed)),
            admission_limit: i.gate.limit().filter(|_| i.config.enabled),
            delay: ns(&i.delay_ns),
            receive_backlog: ns(&i.backlog_ns),
            scheduling_lag: ns(&i.lag_ns),
            media_queueing: ns(&i.media_ns),
            calls_in_setup: i.in_setup.load(Ordering::Relaxed),
            setup_work: i.work.in_flight(),
            setup_work_cap: i.work.cap(),
            invites_refused: i.refused.load(Ordering::Relaxed),
        }
    }
}

impl Inner {
    fn refusal(&self, now: Instant) -> Option<Refusal> {
        let cap = self.config.max_calls_in_setup;
        if cap > 0 && self.in_setup.load(Ordering::Relaxed) >= cap {
            return Some(Refusal::CallsInSetup);
        }
        if self.refuse_all.load(Ordering::Relaxed) {
            return Some(Refusal::Delay);
        }
        if self.work.full() {
            return Some(Refusal::SetupWork);
        }
        // The runtime has not run the probe for max_delay: whatever the
        // last update said, this INVITE waited at least that long.
        let now_ns = self.nanos(now);
        let due = self.probe_due_ns.load(Ordering::Relaxed);
        if due > 0
            && now_ns.saturating_sub(due)
                >= duration_ns(Duration::from_millis(self.config.max_delay_ms))
        {
            return Some(Refusal::Delay);
        }
        if !self.gate.admit(now_ns) {
            return Some(Refusal::Delay);
        }
        None
    }

    fn nanos(&self, t: Instant) -> u64 {
        duration_ns(t.saturating_duration_since(self.epoch)).max(1)
    }
}

/// See [`Overload::watch_media`].
struct MediaRoundTrips(Box<dyn Fn() -> Option<Duration> + Send + Sync>);

impl std::fmt::Debug for MediaRoundTrips {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MediaRoundTrips")
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_name_their_key() {
        assert!(OverloadConfig::default().validate().is_empty());
        let bad = OverloadConfig {
            target_delay_ms: 0,
            max_delay_ms: 0,
            retry_after_secs: 0,
            ..OverloadConfig::default()
        };
        let errors = bad.validate();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors.iter().all(|e| e.starts_with("sip.overload.")));
    }

    #[test]
    fn the_setup_cap_refuses_and_counts() {
        let in_setup = Arc::new(AtomicUsize::new(0));
        let o = Overload::idle(
            OverloadConfig {
                max_calls_in_setup: 2,
                ..OverloadConfig::default()
            },
            in_setup.clone(),
        );
        assert_eq!(o.admit_invite(), Ok(()));
        in_setup.store(2, Ordering::Relaxed);
        assert_eq!(o.admit_invite(), Err(Refusal::CallsInSetup));
        assert_eq!(o.snapshot().invites_refused, 1);
        assert_eq!(o.snapshot().calls_in_setup, 2);
    }

    #[test]
    fn disabled_admits_everything() {
        let o = Overload::idle(
            OverloadConfig {
                enabled: false,
                max_calls_in_setup: 1,
                ..OverloadConfig::default()
            },
            Arc::new(AtomicUsize::new(5)),
        );
        o.inner.refuse_all.store(true, Ordering::Relaxed);
        assert_eq!(o.admit_invite(), Ok(()));
        assert_eq!(o.snapshot().invites_refused, 0);
    }

    #[test]
    fn refuse_all_refuses_and_a_limit_admits_about_its_rate() {
        let o = Overload::idle(OverloadConfig::default(), Arc::new(AtomicUsize::new(0)));
        assert!((0..100).all(|_| o.admit_invite().is_ok()), "no limit");
        o.inner.refuse_all.store(true, Ordering::Relaxed);
        assert!((0..100).all(|_| o.admit_invite() == Err(Refusal::Delay)));
        assert_eq!(o.snapshot().invites_refused, 100);
        o.inner.refuse_all.store(false, Ordering::Relaxed);
        // 10 a second: a burst of ten (and one) at once, then one per 100 ms.
        o.inner.gate.set(Some(10.0));
        let admitted = (0..100).filter(|_| o.admit_invite().is_ok()).count();
        assert!((11..=12).contains(&admitted), "{admitted}");
        assert_eq!(o.snapshot().admission_limit.map(f64::round), Some(10.0));
    }

    #[test]
    fn an_overdue_probe_refuses() {
        let o = Overload::idle(OverloadConfig::default(), Arc::new(AtomicUsize::new(0)));
        let inner = &o.inner;
        let now = Instant::now();
        assert_eq!(inner.refusal(now), None, "no probe yet");
        inner
            .probe_due_ns
            .store(inner.nanos(now + PROBE_INTERVAL), Ordering::Relaxed);
        assert_eq!(inner.refusal(now), None);
        assert_eq!(inner.refusal(now + Duration::from_millis(50)), None);
        assert_eq!(
            inner.refusal(now + PROBE_INTERVAL + Duration::from_millis(100)),
            Some(Refusal::Delay),
            "the runtime did not run the probe for max_delay_ms"
        );
    }
}
