//! `swbench`: SIP load generator. See bench/README.md.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use swbench::calls::{CallsOpts, Ramp};
use swbench::endpoint::Timers;
use swbench::procstat::Watch;
use swbench::register::RegisterOpts;
use swbench::runner::{Common, UserRange};

#[derive(Parser, Debug)]
#[command(
    name = "swbench",
    version,
    about = "SIP load generator (UAC + UAS) for loopback benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// REGISTER with digest auth for a range of users at a rate.
    Register {
        #[command(flatten)]
        common: CommonArgs,
        /// Users to register, FIRST-LAST (round robin).
        #[arg(long, default_value = "1000-1999")]
        users: String,
        /// Registrations started per second; 0 = as fast as --max-concurrent allows.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Stop after this many registrations.
        #[arg(long)]
        total: Option<u64>,
        /// Stop starting registrations after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
        #[arg(long, default_value_t = 200)]
        max_concurrent: usize,
        #[arg(long, default_value_t = 3600)]
        expires: u32,
    },
    /// Calls from a UAC to callees the UAS registered (or that the server
    /// routes to the UAS), optionally with RTP both ways.
    Calls {
        #[command(flatten)]
        common: CommonArgs,
        /// Callee users, FIRST-LAST (the i-th call goes to the i-th, wrapping).
        #[arg(long, default_value = "1000-1999")]
        callees: String,
        /// Caller users, FIRST-LAST (used for From and 407 answers).
        #[arg(long, default_value = "1000-1999")]
        callers: String,
        /// Do not REGISTER the callees first (the server routes to us already).
        #[arg(long)]
        no_register: bool,
        /// Calls started per second.
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        #[arg(long)]
        total: Option<u64>,
        #[arg(long)]
        duration: Option<f64>,
        /// Seconds each answered call stays up.
        #[arg(long, default_value_t = 1.0)]
        hold: f64,
        #[arg(long, default_value_t = 5000)]
        max_concurrent: usize,
        /// RTP both ways at 50 packets/s (PCMU, 20 ms, 160 bytes).
        #[arg(long)]
        rtp: bool,
        /// Stepped search for the sustained rate: START:STEP:MAX:SECONDS;
        /// stops at the first step with a failure.
        #[arg(long)]
        ramp: Option<Ramp>,
        /// Milliseconds between the UAS's 180 and 200.
        #[arg(long, default_value_t = 0)]
        answer_delay_ms: u64,
        /// swrtp's admin endpoint (unix:///path or tcp://IP:PORT): report
        /// swrtp's own added latency per relayed packet next to the
        /// generator-measured delay (plateau window and whole run).
        #[arg(long)]
        relay_stats: Option<String>,
    },
}

#[derive(Args, Debug)]
struct CommonArgs {
    /// The SIP server (UDP).
    #[arg(long, default_value = "127.0.0.1:5060")]
    server: SocketAddr,
    /// Another address of the same service (another swbd on the same
    /// shared state; repeatable): new calls and REGISTERs are spread
    /// round-robin over --server and these, from one generator.
    #[arg(long = "also-server")]
    also_server: Vec<SocketAddr>,
    /// Local address for our SIP and RTP sockets.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Host part of AORs and request URIs (default: the server's IP).
    #[arg(long)]
    domain: Option<String>,
    /// Password of each user; `{user}` is replaced by the user name.
    #[arg(long, default_value = "pw{user}")]
    password: String,
    /// RFC 3261 T1 in milliseconds (retransmission base).
    #[arg(long, default_value_t = 500)]
    t1_ms: u64,
    /// Hard cap on the run, seconds.
    #[arg(long, default_value_t = 120.0)]
    max_seconds: f64,
    /// SO_RCVBUF/SO_SNDBUF per socket, bytes.
    #[arg(long, default_value_t = 8 << 20)]
    rcvbuf: usize,
    /// Watch a daemon's CPU and memory (with its child processes): NAME=PID.
    #[arg(long = "watch")]
    watch: Vec<Watch>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Allow a non-loopback server or bind address.
    #[arg(long)]
    allow_non_loopback: bool,
    /// Worker threads for the generator's runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

impl CommonArgs {
    fn common(&self) -> anyhow::Result<Common> {
        let c = Common {
            server: self.server,
            also_servers: self.also_server.clone(),
            bind_ip: self.bind,
            domain: self
                .domain
                .clone()
                .unwrap_or_else(|| self.server.ip().to_string()),
            password: self.password.clone(),
            timers: Timers {
                t1: Duration::from_millis(self.t1_ms.max(1)),
                t2: Duration::from_millis(self.t1_ms.max(1) * 8),
            },
            max_seconds: Duration::from_secs_f64(self.max_seconds.clamp(0.1, 86_400.0)),
            rcvbuf: self.rcvbuf,
            progress: true, // drawn only when stderr is a terminal
            watch: self.watch.clone(),
        };
        c.check_loopback(self.allow_non_loopback)?;
        Ok(c)
    }
}

fn secs(v: Option<f64>) -> Option<Duration> {
    v.map(|s| Duration::from_secs_f64(s.clamp(0.0, 86_400.0)))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match &cli.cmd {
        Cmd::Register { common, .. } | Cmd::Calls { common, .. } => common,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let json = args.json;
    let out = rt.block_on(async {
        match &cli.cmd {
            Cmd::Register {
                common,
                users,
                rate,
                total,
                duration,
                max_concurrent,
                expires,
            } => {
                if total.is_none() && duration.is_none() {
                    anyhow::bail!(swbench::runner::SetupError::Unbounded);
                }
                let opts = RegisterOpts {
                    users: UserRange::parse(users)?,
                    rate: *rate,
                    total: *total,
                    duration: secs(*duration),
                    max_concurrent: *max_concurrent,
                    expires: *expires,
                };
                let r = swbench::register::run(common.common()?, opts).await?;
                let human = format!(
                    "register: {} ok, {} failed {:?}, {:.0} registrations/s, {:.0} transactions/s, latency p50 {:?} p95 {:?} p99 {:?} ms, retransmissions {}",
                    r.succeeded,
                    r.failed,
                    r.failures.0,
                    r.registrations_per_s.unwrap_or(0.0),
                    r.transactions_per_s.unwrap_or(0.0),
                    r.latency.p50_ms,
                    r.latency.p95_ms,
                    r.latency.p99_ms,
                    r.retransmissions
                );
                Ok((serde_json::to_string_pretty(&r)?, human))
            }
            Cmd::Calls {
                common,
                callees,
                callers,
                no_register,
                rate,
                total,
                duration,
                hold,
                max_concurrent,
                rtp,
                ramp,
                answer_delay_ms,
                relay_stats,
            } => {
                if total.is_none() && duration.is_none() && ramp.is_none() {
                    anyhow::bail!(swbench::runner::SetupError::Unbounded);
                }
                let opts = CallsOpts {
                    callers: UserRange::parse(callers)?,
                    callees: UserRange::parse(callees)?,
                    register_callees: !no_register,
                    rate: *rate,
                    total: *total,
                    duration: secs(*duration),
                    hold: Duration::from_secs_f64(hold.clamp(0.0, 3600.0)),
                    max_concurrent: *max_concurrent,
                    rtp: *rtp,
                    ramp: *ramp,
                    answer_delay: Duration::from_millis(*answer_delay_ms),
                    relay_stats: relay_stats.clone(),
                };
                let r = swbench::calls::run(common.common()?, opts).await?;
                let mut human = format!(
                    "calls: registered {} callees (failures {:?}); sustained {:?} calls/s; retransmissions {}\n",
                    r.registered_callees, r.register_failures.0, r.sustained_rate, r.retransmissions
                );
                for p in &r.phases {
                    human.push_str(&format!(
                        "  offered {:.0}/s attempted {:.1}/s: {} ok, {} failed {:?}, setup p50 {:?} p95 {:?} p99 {:?} ms\n",
                        p.offered_rate,
                        p.attempted_rate.unwrap_or(0.0),
                        p.succeeded,
                        p.failed,
                        p.failures.0,
                        p.setup_latency.p50_ms,
                        p.setup_latency.p95_ms,
                        p.setup_latency.p99_ms
                    ));
                }
                if let Some(rtp) = &r.rtp_report {
                    human.push_str(&format!(
                        "  rtp: sent {} received {} loss {:?} (start {} [caller->callee, callee->caller: {:?}], middle {}, end {}, silent streams {}, dropped at the generator {}) delay p50 {:?} p99 {:?} ms jitter mean {:?} ms\n",
                        rtp.packets_sent,
                        rtp.packets_received,
                        rtp.loss_ratio,
                        rtp.lost_at_start,
                        rtp.lost_at_start_by_sender,
                        rtp.lost_in_middle,
                        rtp.lost_at_end,
                        rtp.silent_streams,
                        rtp.dropped_at_generator,
                        rtp.one_way_delay.p50_ms,
                        rtp.one_way_delay.p99_ms,
                        rtp.jitter_mean_ms
                    ));
                }
                if let Some(l) = &r.relay_latency {
                    for (what, s) in [("plateau", &l.window), ("whole run", &l.whole_run)] {
                        if let Some(s) = s {
                            human.push_str(&format!(
                                "  swrtp added latency ({what}): {} packets, p50 {:?} p99 {:?} p99.9 {:?} max {:?} ms\n",
                                s.packets, s.p50_ms, s.p99_ms, s.p999_ms, s.max_ms
                            ));
                        }
                    }
                    for e in &l.errors {
                        human.push_str(&format!("  swrtp relay stats: {e}\n"));
                    }
                }
                if let Some(p) = &r.plateau {
                    human.push_str(&format!("  plateau: {} calls up, {:.0} pps over {:.1}s\n", p.calls_up, p.rtp_pps, p.window_s));
                    for d in &p.processes {
                        human.push_str(&format!(
                            "    {}: cpu {:.2}s ({:?} us/packet), {:.1} KiB RSS/call, {:.1} KiB PSS/call\n",
                            d.name, d.cpu_s, d.cpu_us_per_packet, d.rss_kib_per_call, d.pss_kib_per_call
                        ));
                    }
                }
                Ok((serde_json::to_string_pretty(&r)?, human))
            }
        }
    })?;
    if json {
        println!("{}", out.0);
    } else {
        print!("{}", out.1);
        if !out.1.ends_with('\n') {
            println!();
        }
    }
    // Leave without waiting for lingering tasks.
    rt.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}
