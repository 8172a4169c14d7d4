//! `swbench calls`: the UAC places calls at a rate, the UAS answers them
//! (180, 200 with SDP, waits for ACK, answers BYE), optionally with RTP both
//! ways. The UAS registers its callee users first, so the server routes the
//! calls back to us; it answers any INVITE for an unknown Call-ID (a B2BUA
//! makes a new one for its B leg).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use switchboard_proto::admin::v1::RelayLatency;
use switchboard_proto::admin::v1::media_admin_client::MediaAdminClient;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::endpoint::Endpoint;
use crate::procstat::{Sample, sample};
use crate::register::{Counters as RegCounters, ProcDelta, RegOutcome, proc_deltas, register_user};
use crate::relay_stats::{self, RelayLatencyReport, RelayLatencySummary};
use crate::rtp::{Media, RtpReport};
use crate::runner::{Common, SetupError, UserRange, pace, progress};
use crate::stats::{Failures, Histogram, LatencySummary, rate};

mod uac;
mod uas;

use uac::{uac_call, uac_handler};
use uas::uas_handler;

/// A stepped search for the sustained rate.
#[derive(Debug, Clone, Copy)]
pub struct Ramp {
    pub start: f64,
    pub step: f64,
    pub max: f64,
    pub step_duration: Duration,
}

impl std::str::FromStr for Ramp {
    type Err = String;
    /// `START:STEP:MAX:SECONDS`, e.g. `100:100:3000:10`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v: Vec<f64> = s
            .split(':')
            .map(|x| x.parse::<f64>().map_err(|_| format!("bad number in {s:?}")))
            .collect::<Result<_, _>>()?;
        match v.as_slice() {
            &[start, step, max, secs]
                if start > 0.0 && step > 0.0 && max >= start && secs > 0.0 =>
            {
                Ok(Ramp {
                    start,
                    step,
                    max,
                    step_duration: Duration::from_secs_f64(secs),
                })
            }
            _ => Err("expected START:STEP:MAX:SECONDS with positive numbers".into()),
        }
    }
}

/// Options of `swbench calls`.
#[derive(Debug, Clone)]
pub struct CallsOpts {
    pub callers: UserRange,
    pub callees: UserRange,
    /// REGISTER the callees from the UAS socket (with digest auth) first.
    pub register_callees: bool,
    pub rate: f64,
    pub total: Option<u64>,
    pub duration: Option<Duration>,
    pub hold: Duration,
    pub max_concurrent: usize,
    pub rtp: bool,
    pub ramp: Option<Ramp>,
    /// Delay between the UAS's 180 and 200.
    pub answer_delay: Duration,
    /// swrtp's admin endpoint (`unix:///path` or `tcp://ip:port`): read its
    /// own relay latency over the plateau and the whole run.
    pub relay_stats: Option<String>,
}

/// Live counters.
#[derive(Debug, Default)]
pub struct Live {
    pub started: AtomicU64,
    pub answered: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub ended: AtomicU64,
    pub retransmits: AtomicU64,
    pub uas_calls: AtomicU64,
}

#[derive(Debug, Default)]
struct PhaseStats {
    setup: Histogram,
    ringing: Histogram,
    failures: Failures,
    first_answer: Option<Instant>,
}

struct Ctx {
    common: Common,
    opts: CallsOpts,
    /// The UAC endpoint for `Common::server`.
    uac: Arc<Endpoint>,
    /// One UAC endpoint per server (`Common::servers`, `uac` first); call
    /// `i` uses `uacs[i % n]`.
    uacs: Vec<Arc<Endpoint>>,
    uas: Arc<Endpoint>,
    media: Option<Arc<Media>>,
    live: Live,
    phase: Mutex<PhaseStats>,
    relay_admin: Option<MediaAdminClient<Channel>>,
    relay_errors: Mutex<Vec<String>>,
}

impl Ctx {
    /// The UAC endpoint of call `i` (round-robin over the servers).
    fn uac_for(&self, i: u64) -> Arc<Endpoint> {
        let n = self.uacs.len().max(1) as u64;
        let at = usize::try_from(i % n).unwrap_or(0);
        Arc::clone(self.uacs.get(at).unwrap_or(&self.uac))
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, PhaseStats> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Read swrtp's relay latency, if asked to; errors are kept for the report.
    async fn relay_latency(&self) -> Option<RelayLatency> {
        let mut client = self.relay_admin.clone()?;
        match relay_stats::read(&mut client).await {
            Ok(l) => Some(l),
            Err(e) => {
                self.relay_errors
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(e.to_string());
                None
            }
        }
    }

    fn fail(&self, why: impl Into<String>) {
        self.live.failed.fetch_add(1, Ordering::Relaxed);
        self.phase().failures.add(why);
    }
}

/// One rate step (or the whole run without a ramp).
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub offered_rate: f64,
    pub started: u64,
    /// Calls started per second over the start window (below the offered
    /// rate when the generator or the concurrency cap held it back).
    pub attempted_rate: Option<f64>,
    pub succeeded: u64,
    pub failed: u64,
    pub unfinished: u64,
    /// Successful calls per second of the start window.
    pub sustained_rate: Option<f64>,
    pub failures: Failures,
    /// INVITE sent to 200 received (auth round included).
    pub setup_latency: LatencySummary,
    /// INVITE sent to the first 180.
    pub ringing_latency: LatencySummary,
    pub window_s: f64,
}

/// The steady state with every call up: daemon cost per call and packet.
#[derive(Debug, Clone, Serialize)]
pub struct Plateau {
    pub calls_up: u64,
    pub window_s: f64,
    pub rtp_packets_received: u64,
    pub rtp_packets_sent: u64,
    /// Packets the kernel dropped at the generator's RTP sockets in the window.
    pub rtp_dropped_at_generator: u64,
    pub rtp_pps: f64,
    pub processes: Vec<PlateauProc>,
    /// swrtp's own added latency over the window (`--relay-stats`).
    pub relay_latency: Option<RelayLatencySummary>,
}

/// One daemon over the plateau.
#[derive(Debug, Clone, Serialize)]
pub struct PlateauProc {
    pub name: String,
    pub baseline: Sample,
    pub loaded: Sample,
    pub cpu_s: f64,
    pub cpu_us_per_packet: Option<f64>,
    pub rss_kib_per_call: f64,
    pub pss_kib_per_call: f64,
}

/// Report of `swbench calls`.
#[derive(Debug, Clone, Serialize)]
pub struct CallsReport {
    pub scenario: &'static str,
    pub server: String,
    pub hold_s: f64,
    pub rtp: bool,
    pub registered_callees: u64,
    pub register_failures: Failures,
    pub phases: Vec<PhaseReport>,
    /// The highest offered rate of a step with zero failures (ramp), or the
    /// run's sustained rate.
    pub sustained_rate: Option<f64>,
    pub rtp_report: Option<RtpReport>,
    /// swrtp's own added latency (`--relay-stats`), next to the generator's
    /// one-way delay in `rtp_report`.
    pub relay_latency: Option<RelayLatencyReport>,
    pub plateau: Option<Plateau>,
    pub processes: Vec<ProcDelta>,
    pub retransmissions: u64,
    pub bad_datagrams: u64,
    pub generator_cpu_s: Option<f64>,
}

/// Run the scenario.
pub async fn run(common: Common, opts: CallsOpts) -> Result<CallsReport, SetupError> {
    let deadline = Instant::now() + common.max_seconds;
    let bind = SocketAddr::new(common.bind_ip, 0);
    let uac = Endpoint::bind(bind, common.server, common.rcvbuf)?;
    let mut uacs = vec![Arc::clone(&uac)];
    for server in &common.also_servers {
        uacs.push(Endpoint::bind(bind, *server, common.rcvbuf)?);
    }
    let uas = Endpoint::bind(bind, common.server, common.rcvbuf)?;
    let media = if opts.rtp {
        Some(Media::start(common.bind_ip, 2, common.rcvbuf)?)
    } else {
        None
    };
    let mut relay_errors = Vec::new();
    let relay_admin = match &opts.relay_stats {
        Some(ep) => match relay_stats::connect(ep).await {
            Ok(c) => Some(c),
            Err(e) => {
                relay_errors.push(e.to_string());
                None
            }
        },
        None => None,
    };
    let ctx = Arc::new(Ctx {
        common,
        opts: opts.clone(),
        uac,
        uacs: uacs.clone(),
        uas: Arc::clone(&uas),
        media,
        live: Live::default(),
        phase: Mutex::new(PhaseStats::default()),
        relay_admin,
        relay_errors: Mutex::new(relay_errors),
    });
    for uac in &uacs {
        uac.spawn_receiver(uac_handler());
    }
    uas.spawn_receiver(uas_handler(Arc::downgrade(&ctx)));
    let gen_before = sample(std::process::id());

    // 1. Register the callees at the UAS address.
    let mut register_failures = Failures::default();
    let mut registered = 0u64;
    if opts.register_callees {
        let reg = Arc::new(RegCounters::default());
        let mut set = tokio::task::JoinSet::new();
        for i in 0..opts.callees.len() {
            let (ctx, reg) = (Arc::clone(&ctx), Arc::clone(&reg));
            set.spawn(async move {
                let user = ctx.opts.callees.nth(i);
                let contact = format!("sip:{user}@{}", ctx.uas.local);
                // Drop bindings of earlier runs first: a registrar forks
                // to every binding of the AOR.
                let _ = register_user(&ctx.uas, &ctx.common, &user, None, 0, &reg).await;
                register_user(&ctx.uas, &ctx.common, &user, Some(&contact), 3600, &reg).await
            });
            // At most 200 registrations in flight.
            while set.len() >= 200 {
                if let Some(Ok(o)) = set.join_next().await {
                    tally(o, &mut registered, &mut register_failures);
                }
            }
        }
        while let Ok(Some(Ok(o))) = tokio::time::timeout_at(deadline, set.join_next()).await {
            tally(o, &mut registered, &mut register_failures);
        }
    }

    let before: Vec<Option<Sample>> = ctx.common.watch.iter().map(|w| sample(w.pid)).collect();
    let c2 = Arc::clone(&ctx);
    let t_start = Instant::now();
    let _progress = progress(ctx.common.progress, move || {
        let l = &c2.live;
        let up = l.answered.load(Ordering::Relaxed)
            - l.ended
                .load(Ordering::Relaxed)
                .min(l.answered.load(Ordering::Relaxed));
        format!(
            "[calls] {:>5.1}s started {} ok {} failed {} up {} retrans {}{}",
            t_start.elapsed().as_secs_f64(),
            l.started.load(Ordering::Relaxed),
            l.ok.load(Ordering::Relaxed),
            l.failed.load(Ordering::Relaxed),
            up,
            l.retransmits.load(Ordering::Relaxed),
            c2.media
                .as_ref()
                .map(|m| format!(
                    " rtp tx {} rx {}",
                    m.sent.load(Ordering::Relaxed),
                    m.received.load(Ordering::Relaxed)
                ))
                .unwrap_or_default(),
        )
    });

    // 2. The plateau monitor (single-phase runs): every call up at once.
    let plateau = Arc::new(Mutex::new(None::<Plateau>));
    let target_up = opts.total.map_or(opts.max_concurrent as u64, |t| {
        t.min(opts.max_concurrent as u64)
    });
    let monitor = (opts.ramp.is_none()).then(|| {
        let (ctx, plateau, before) = (Arc::clone(&ctx), Arc::clone(&plateau), before.clone());
        tokio::spawn(async move { watch_plateau(ctx, target_up, before, plateau).await })
    });

    // 3. The phases.
    let steps: Vec<(f64, Option<Duration>, Option<u64>)> = match opts.ramp {
        Some(r) => {
            let mut v = Vec::new();
            let mut x = r.start;
            while x <= r.max + 1e-9 {
                v.push((x, Some(r.step_duration), None));
                x += r.step;
            }
            v
        }
        None => vec![(opts.rate, opts.duration, opts.total)],
    };
    let mut phases = Vec::new();
    let mut sustained = None;
    for (rate_cps, duration, total) in steps {
        if Instant::now() >= deadline {
            break;
        }
        *ctx.phase() = PhaseStats::default();
        let ok0 = ctx.live.ok.load(Ordering::Relaxed);
        let failed0 = ctx.live.failed.load(Ordering::Relaxed);
        let phase_len = duration.unwrap_or(Duration::ZERO)
            + total.map_or(Duration::ZERO, |t| {
                Duration::from_secs_f64(t as f64 / rate_cps.max(1.0))
            });
        let drain =
            (Instant::now() + phase_len + opts.hold + ctx.common.timers.t1 * 80).min(deadline);
        let c3 = Arc::clone(&ctx);
        let paced = pace(
            rate_cps,
            total,
            duration,
            opts.max_concurrent,
            deadline,
            drain,
            move |i, permit| {
                let ctx = Arc::clone(&c3);
                tokio::spawn(async move {
                    uac_call(ctx, i).await;
                    drop(permit);
                });
            },
        )
        .await;
        let mut p = std::mem::take(&mut *ctx.phase());
        if paced.unfinished > 0 {
            for _ in 0..paced.unfinished {
                p.failures.add("unfinished");
            }
        }
        let succeeded = ctx.live.ok.load(Ordering::Relaxed) - ok0;
        let failed = ctx.live.failed.load(Ordering::Relaxed) - failed0;
        let attempted = rate(paced.started, paced.window);
        let report = PhaseReport {
            offered_rate: rate_cps,
            started: paced.started,
            attempted_rate: attempted,
            succeeded,
            failed,
            unfinished: paced.unfinished,
            sustained_rate: rate(succeeded, paced.window),
            failures: p.failures.clone(),
            setup_latency: p.setup.summary(),
            ringing_latency: p.ringing.summary(),
            window_s: paced.window.as_secs_f64(),
        };
        let clean = p.failures.total() == 0 && paced.started > 0;
        // A step counts only if the generator really offered ~the rate.
        let offered = attempted.is_some_and(|a| a >= 0.95 * rate_cps) || rate_cps == 0.0;
        phases.push(report);
        if opts.ramp.is_some() {
            if !(clean && offered) {
                break;
            }
            sustained = Some(rate_cps);
        } else {
            sustained = clean
                .then(|| phases.last().and_then(|p| p.sustained_rate))
                .flatten();
        }
    }
    if let Some(m) = monitor {
        m.abort();
    }
    let rtp_report = match &ctx.media {
        Some(m) => Some(m.finish().await),
        None => None,
    };
    let plateau = plateau.lock().unwrap_or_else(|e| e.into_inner()).take();
    let processes = proc_deltas(&ctx.common, &before);
    let relay_latency = match &opts.relay_stats {
        Some(_) => {
            // Media tasks hand their figures to the node about once a second.
            if ctx.relay_admin.is_some() {
                tokio::time::sleep(Duration::from_millis(1200)).await;
            }
            let whole_run = ctx.relay_latency().await.map(|l| relay_stats::summary(&l));
            Some(RelayLatencyReport {
                whole_run,
                window: plateau.as_ref().and_then(|p| p.relay_latency.clone()),
                errors: std::mem::take(
                    &mut *ctx.relay_errors.lock().unwrap_or_else(|e| e.into_inner()),
                ),
            })
        }
        None => None,
    };
    if opts.register_callees {
        // Leave the registrar as we found it.
        let reg = RegCounters::default();
        for i in 0..opts.callees.len() {
            if Instant::now() >= deadline {
                break;
            }
            let user = opts.callees.nth(i);
            let _ = register_user(&ctx.uas, &ctx.common, &user, None, 0, &reg).await;
        }
    }
    for uac in &uacs {
        uac.shutdown();
    }
    uas.shutdown();
    let gen_cpu = gen_before
        .zip(sample(std::process::id()))
        .map(|(b, a)| a.cpu_seconds - b.cpu_seconds);
    Ok(CallsReport {
        scenario: "calls",
        server: ctx.common.server.to_string(),
        hold_s: opts.hold.as_secs_f64(),
        rtp: opts.rtp,
        registered_callees: registered,
        register_failures,
        phases,
        sustained_rate: sustained,
        rtp_report,
        relay_latency,
        plateau,
        processes,
        retransmissions: ctx.live.retransmits.load(Ordering::Relaxed),
        bad_datagrams: uacs
            .iter()
            .map(|u| u.bad.load(Ordering::Relaxed))
            .sum::<u64>()
            + uas.bad.load(Ordering::Relaxed),
        generator_cpu_s: gen_cpu,
    })
}

fn tally(o: RegOutcome, ok: &mut u64, failures: &mut Failures) {
    match o {
        RegOutcome::Ok => *ok += 1,
        RegOutcome::Failed(why) => failures.add(why),
    }
}

/// Wait until `target` calls are up, settle 1 s, then measure the daemons
/// until just before the first call hangs up.
async fn watch_plateau(
    ctx: Arc<Ctx>,
    target: u64,
    baseline: Vec<Option<Sample>>,
    out: Arc<Mutex<Option<Plateau>>>,
) {
    let up = || {
        let a = ctx.live.answered.load(Ordering::Relaxed);
        a - ctx.live.ended.load(Ordering::Relaxed).min(a)
    };
    while up() < target {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pkts = |c: &Ctx| {
        c.media
            .as_ref()
            .map_or(0, |m| m.received.load(Ordering::Relaxed))
    };
    let sent = |c: &Ctx| {
        c.media
            .as_ref()
            .map_or(0, |m| m.sent.load(Ordering::Relaxed))
    };
    let drops = |c: &Ctx| c.media.as_ref().map_or(0, |m| m.socket_drops());
    let s1: Vec<Option<Sample>> = ctx.common.watch.iter().map(|w| sample(w.pid)).collect();
    let relay1 = ctx.relay_latency().await;
    let p1 = pkts(&ctx);
    let (sent1, drops1) = (sent(&ctx), drops(&ctx));
    let t1 = Instant::now();
    let first = ctx.phase().first_answer.unwrap_or(t1);
    let end = first + ctx.opts.hold - Duration::from_millis(300);
    if end > t1 + Duration::from_millis(500) {
        tokio::time::sleep_until(end).await;
    }
    let calls_up = up();
    let s2: Vec<Option<Sample>> = ctx.common.watch.iter().map(|w| sample(w.pid)).collect();
    let relay2 = ctx.relay_latency().await;
    let packets = pkts(&ctx) - p1;
    let (sent2, drops2) = (sent(&ctx), drops(&ctx));
    let window = t1.elapsed();
    let n = target.max(1) as f64;
    let processes = ctx
        .common
        .watch
        .iter()
        .zip(baseline.iter().zip(s1.iter().zip(&s2)))
        .filter_map(|(w, (b, (a, z)))| {
            let (b, a, z) = ((*b)?, (*a)?, (*z)?);
            let cpu = z.cpu_seconds - a.cpu_seconds;
            Some(PlateauProc {
                name: w.name.clone(),
                baseline: b,
                loaded: a,
                cpu_s: cpu,
                cpu_us_per_packet: (packets > 0).then(|| cpu * 1e6 / packets as f64),
                rss_kib_per_call: (a.rss_kib as f64 - b.rss_kib as f64) / n,
                pss_kib_per_call: (a.pss_kib as f64 - b.pss_kib as f64) / n,
            })
        })
        .collect();
    *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(Plateau {
        calls_up,
        window_s: window.as_secs_f64(),
        rtp_packets_received: packets,
        rtp_packets_sent: sent2 - sent1,
        rtp_dropped_at_generator: drops2.saturating_sub(drops1),
        rtp_pps: packets as f64 / window.as_secs_f64().max(1e-9),
        processes,
        relay_latency: relay1
            .zip(relay2)
            .map(|(a, b)| relay_stats::window(&a, &b, None)),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_syntax() {
        let r: Ramp = "100:100:3000:10".parse().unwrap();
        assert_eq!(r.start, 100.0);
        assert_eq!(r.max, 3000.0);
        assert_eq!(r.step_duration, Duration::from_secs(10));
        assert!("100:100:3000".parse::<Ramp>().is_err());
        assert!("0:100:3000:10".parse::<Ramp>().is_err());
        assert!("500:100:100:10".parse::<Ramp>().is_err());
    }
}
