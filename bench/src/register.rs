//! `swbench register`: REGISTER with digest auth for N users at a rate.
//! One registration = REGISTER, 401/407 challenge, REGISTER with
//! credentials, 200 (two transactions); a fresh Call-ID each time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::digest::{Challenge, authorization};
use crate::endpoint::{Endpoint, client_transaction};
use crate::procstat::{Sample, sample};
use crate::runner::{Common, SetupError, UserRange, pace, progress, token};
use crate::stats::{Failures, Histogram, LatencySummary, rate};

/// Live counters (for the progress line and the report).
#[derive(Debug, Default)]
pub struct Counters {
    pub started: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub transactions: AtomicU64,
    pub retransmits: AtomicU64,
}

/// How one registration ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegOutcome {
    Ok,
    /// A final status other than 200, or "timeout".
    Failed(String),
}

/// Register `user` with `contact` (e.g. `sip:1000@127.0.0.1:7000`) through
/// `ep`, answering one digest challenge. `contact: None` removes every
/// binding of the user (`Contact: *`, RFC 3261 §10.2.2; give `expires` 0).
pub async fn register_user(
    ep: &Endpoint,
    common: &Common,
    user: &str,
    contact: Option<&str>,
    expires: u32,
    counters: &Counters,
) -> RegOutcome {
    let call_id = token();
    let from_tag = token();
    let aor = format!("sip:{user}@{}", common.domain);
    let uri = format!("sip:{}", common.domain);
    let mut rx = ep.route(&call_id);
    let mut extra = vec![format!("Expires: {expires}")];
    if contact.is_none() {
        extra.push("Contact: *".to_string());
    }
    let mut outcome = RegOutcome::Failed("timeout".into());
    for cseq in 1..=2u32 {
        let branch = format!("z9hG4bK{}", token());
        let text = crate::sip::RequestSpec {
            method: "REGISTER",
            uri: &uri,
            via_host: ep.local,
            branch: &branch,
            from: &aor,
            from_tag: &from_tag,
            to: &aor,
            to_tag: None,
            call_id: &call_id,
            cseq,
            contact,
            routes: &[],
            extra: &extra,
            body: None,
        }
        .build();
        let r = client_transaction(
            ep,
            &mut rx,
            &text,
            cseq,
            "REGISTER",
            common.timers,
            &counters.retransmits,
            |_| {},
        )
        .await;
        counters.transactions.fetch_add(1, Ordering::Relaxed);
        let Ok(resp) = r else {
            outcome = RegOutcome::Failed("timeout".into());
            break;
        };
        let code = resp.code().unwrap_or(0);
        if code == 200 {
            outcome = RegOutcome::Ok;
            break;
        }
        let hdr = if code == 401 {
            "www-authenticate"
        } else {
            "proxy-authenticate"
        };
        let ch = (cseq == 1 && (code == 401 || code == 407))
            .then(|| {
                // Not header_all: a challenge holds commas.
                Challenge::pick(
                    resp.headers
                        .iter()
                        .filter(|(n, _)| n == hdr)
                        .map(|(_, v)| v.as_str()),
                )
            })
            .flatten();
        let Some(ch) = ch else {
            outcome = RegOutcome::Failed(code.to_string());
            break;
        };
        let name = if code == 401 {
            "Authorization"
        } else {
            "Proxy-Authorization"
        };
        let cred = authorization(
            &ch,
            user,
            &common.password_for(user),
            "REGISTER",
            &uri,
            &token(),
        );
        extra.push(format!("{name}: {cred}"));
    }
    ep.unroute(&call_id);
    outcome
}

/// Options of `swbench register`.
#[derive(Debug, Clone)]
pub struct RegisterOpts {
    pub users: UserRange,
    /// Registrations started per second; 0 = as fast as `max_concurrent` allows.
    pub rate: f64,
    pub total: Option<u64>,
    pub duration: Option<Duration>,
    pub max_concurrent: usize,
    pub expires: u32,
}

/// Report of `swbench register`.
#[derive(Debug, Clone, Serialize)]
pub struct RegisterReport {
    pub scenario: &'static str,
    pub server: String,
    pub users: u64,
    pub offered_rate: f64,
    pub started: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub unfinished: u64,
    pub elapsed_s: f64,
    /// Successful registrations (each two transactions) per second.
    pub registrations_per_s: Option<f64>,
    /// Completed REGISTER transactions (any final response) per second.
    pub transactions_per_s: Option<f64>,
    pub retransmissions: u64,
    pub failures: Failures,
    /// From the first REGISTER sent to the 200 (challenge round included).
    pub latency: LatencySummary,
    pub processes: Vec<ProcDelta>,
    pub generator_cpu_s: Option<f64>,
}

/// CPU and memory of one watched process over the run.
#[derive(Debug, Clone, Serialize)]
pub struct ProcDelta {
    pub name: String,
    pub before: Sample,
    pub after: Sample,
    pub cpu_s: f64,
}

pub fn proc_deltas(common: &Common, before: &[Option<Sample>]) -> Vec<ProcDelta> {
    common
        .watch
        .iter()
        .zip(before)
        .filter_map(|(w, b)| {
            let b = (*b)?;
            let a = sample(w.pid)?;
            Some(ProcDelta {
                name: w.name.clone(),
                before: b,
                after: a,
                cpu_s: a.cpu_seconds - b.cpu_seconds,
            })
        })
        .collect()
}

pub async fn run(common: Common, opts: RegisterOpts) -> Result<RegisterReport, SetupError> {
    let deadline = Instant::now() + common.max_seconds;
    // One endpoint per server; user `i` registers through `eps[i % n]`.
    let eps = common
        .servers()
        .into_iter()
        .map(|server| {
            Endpoint::bind(
                std::net::SocketAddr::new(common.bind_ip, 0),
                server,
                common.rcvbuf,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    for ep in &eps {
        ep.spawn_receiver(Arc::new(|_, _, _| {}));
    }
    let eps = Arc::new(eps);
    let common = Arc::new(common);
    let counters = Arc::new(Counters::default());
    let latency = Arc::new(Mutex::new(Histogram::default()));
    let failures = Arc::new(Mutex::new(Failures::default()));
    let before: Vec<Option<Sample>> = common.watch.iter().map(|w| sample(w.pid)).collect();
    let gen_before = sample(std::process::id());
    let c2 = Arc::clone(&counters);
    let t_start = Instant::now();
    let _progress = progress(common.progress, move || {
        format!(
            "[register] {:>5.1}s started {} ok {} failed {} retrans {}",
            t_start.elapsed().as_secs_f64(),
            c2.started.load(Ordering::Relaxed),
            c2.ok.load(Ordering::Relaxed),
            c2.failed.load(Ordering::Relaxed),
            c2.retransmits.load(Ordering::Relaxed),
        )
    });
    let paced = {
        let (eps, common, counters, latency, failures) = (
            Arc::clone(&eps),
            Arc::clone(&common),
            Arc::clone(&counters),
            Arc::clone(&latency),
            Arc::clone(&failures),
        );
        let users = opts.users;
        let expires = opts.expires;
        pace(
            opts.rate,
            opts.total,
            opts.duration,
            opts.max_concurrent,
            deadline,
            deadline,
            move |i, permit| {
                let n = eps.len().max(1) as u64;
                let Some(ep) = eps.get(usize::try_from(i % n).unwrap_or(0)).cloned() else {
                    return;
                };
                let (common, counters, latency, failures) = (
                    Arc::clone(&common),
                    Arc::clone(&counters),
                    Arc::clone(&latency),
                    Arc::clone(&failures),
                );
                let user = users.nth(i);
                counters.started.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let t0 = Instant::now();
                    let contact = format!("sip:{user}@{}", ep.local);
                    match register_user(&ep, &common, &user, Some(&contact), expires, &counters)
                        .await
                    {
                        RegOutcome::Ok => {
                            counters.ok.fetch_add(1, Ordering::Relaxed);
                            latency
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .record(t0.elapsed());
                        }
                        RegOutcome::Failed(why) => {
                            counters.failed.fetch_add(1, Ordering::Relaxed);
                            failures.lock().unwrap_or_else(|e| e.into_inner()).add(why);
                        }
                    }
                    drop(permit);
                });
            },
        )
        .await
    };
    let elapsed = t_start.elapsed();
    let processes = proc_deltas(&common, &before);
    for ep in eps.iter() {
        ep.shutdown();
    }
    let gen_cpu = gen_before
        .zip(sample(std::process::id()))
        .map(|(b, a)| a.cpu_seconds - b.cpu_seconds);
    let ok = counters.ok.load(Ordering::Relaxed);
    let tx = counters.transactions.load(Ordering::Relaxed);
    let mut failures = failures.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if paced.unfinished > 0 {
        failures.add("unfinished");
    }
    let summary = latency.lock().unwrap_or_else(|e| e.into_inner()).summary();
    Ok(RegisterReport {
        scenario: "register",
        server: common.server.to_string(),
        users: opts.users.len(),
        offered_rate: opts.rate,
        started: paced.started,
        succeeded: ok,
        failed: counters.failed.load(Ordering::Relaxed),
        unfinished: paced.unfinished,
        elapsed_s: elapsed.as_secs_f64(),
        registrations_per_s: rate(ok, elapsed),
        transactions_per_s: rate(tx, elapsed),
        retransmissions: counters.retransmits.load(Ordering::Relaxed),
        failures,
        latency: summary,
        processes,
        generator_cpu_s: gen_cpu,
    })
}
