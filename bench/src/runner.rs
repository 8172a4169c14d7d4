//! What every scenario shares: target and limits, the pacer that starts
//! work at a rate under a concurrency cap, the live progress line, ids.

use std::io::{IsTerminal, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::endpoint::Timers;
use crate::procstat::Watch;

/// Why a run is refused before it starts.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0} is not a loopback address; pass --allow-non-loopback to send traffic to it")]
    NotLoopback(IpAddr),
    #[error("give --total or --duration (or both)")]
    Unbounded,
    #[error("invalid user range {0:?}: expected FIRST-LAST, e.g. 1000-1999")]
    UserRange(String),
    #[error("binding a socket: {0}")]
    Bind(#[from] std::io::Error),
}

/// Target, identity and limits common to every scenario.
#[derive(Debug, Clone)]
pub struct Common {
    pub server: SocketAddr,
    /// More addresses of the same service (several swbd sharing their
    /// state): new calls and REGISTERs go round-robin over `server` and
    /// these.
    pub also_servers: Vec<SocketAddr>,
    /// Our SIP/RTP address (loopback by default).
    pub bind_ip: IpAddr,
    /// Host part of AORs and request URIs.
    pub domain: String,
    /// Password for user U: `{user}` is replaced by U.
    pub password: String,
    pub timers: Timers,
    /// Hard cap on the whole run.
    pub max_seconds: Duration,
    pub rcvbuf: usize,
    pub progress: bool,
    pub watch: Vec<Watch>,
}

impl Common {
    pub fn check_loopback(&self, allow_non_loopback: bool) -> Result<(), SetupError> {
        let also = self.also_servers.iter().map(SocketAddr::ip);
        for ip in [self.server.ip(), self.bind_ip].into_iter().chain(also) {
            if !ip.is_loopback() && !allow_non_loopback {
                return Err(SetupError::NotLoopback(ip));
            }
        }
        Ok(())
    }

    /// `server` then `also_servers`.
    pub fn servers(&self) -> Vec<SocketAddr> {
        std::iter::once(self.server)
            .chain(self.also_servers.iter().copied())
            .collect()
    }

    pub fn password_for(&self, user: &str) -> String {
        self.password.replace("{user}", user)
    }
}

/// `FIRST-LAST` inclusive range of numeric user names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserRange {
    pub first: u64,
    pub last: u64,
}

impl UserRange {
    pub fn parse(s: &str) -> Result<UserRange, SetupError> {
        let bad = || SetupError::UserRange(s.to_string());
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let first: u64 = a.trim().parse().map_err(|_| bad())?;
        let last: u64 = b.trim().parse().map_err(|_| bad())?;
        if last < first {
            return Err(bad());
        }
        Ok(UserRange { first, last })
    }

    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The i-th user, wrapping around.
    pub fn nth(&self, i: u64) -> String {
        (self.first + i % self.len()).to_string()
    }
}

/// Unique tokens for Call-IDs, tags and branches.
pub fn token() -> String {
    static N: AtomicU64 = AtomicU64::new(1);
    static SALT: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let salt = SALT.get_or_init(rand::random::<u32>);
    format!("{salt:08x}{:x}", N.fetch_add(1, Ordering::Relaxed))
}

/// Result of pacing one phase.
#[derive(Debug, Clone, Copy)]
pub struct Paced {
    pub started: u64,
    /// From the first start to the last one (or the phase end).
    pub window: Duration,
    /// Work still running when the drain deadline passed.
    pub unfinished: u64,
}

/// Start `start(i, permit)` `rate` times per second (0: as fast as the
/// concurrency cap allows) until `total` have started or `duration` has
/// passed or `deadline` comes; at most `max_concurrent` hold a permit at
/// once. Then wait (until `drain_deadline`) for every permit to come back.
pub async fn pace(
    rate: f64,
    total: Option<u64>,
    duration: Option<Duration>,
    max_concurrent: usize,
    deadline: Instant,
    drain_deadline: Instant,
    mut start: impl FnMut(u64, OwnedSemaphorePermit),
) -> Paced {
    let sem = Arc::new(Semaphore::new(max_concurrent.max(1)));
    let t0 = Instant::now();
    let end = duration.map_or(deadline, |d| (t0 + d).min(deadline));
    let total = total.unwrap_or(u64::MAX);
    let mut i = 0u64;
    while i < total {
        if rate > 0.0 {
            let at = t0 + Duration::from_secs_f64(i as f64 / rate);
            if at >= end {
                break;
            }
            tokio::time::sleep_until(at).await;
        } else if Instant::now() >= end {
            break;
        }
        let permit = match tokio::time::timeout_at(end, Arc::clone(&sem).acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => break,
        };
        start(i, permit);
        i += 1;
    }
    let window = if rate > 0.0 && i < total && duration.is_some() {
        end.saturating_duration_since(t0)
    } else {
        t0.elapsed()
    };
    let all = u32::try_from(max_concurrent.max(1)).unwrap_or(u32::MAX);
    let unfinished = match tokio::time::timeout_at(drain_deadline, sem.acquire_many(all)).await {
        Ok(_) => 0,
        Err(_) => (max_concurrent.max(1) - sem.available_permits()) as u64,
    };
    Paced {
        started: i,
        window,
        unfinished,
    }
}

/// Prints `line()` on stderr every half second while running, only when
/// stderr is a terminal; returns a guard that clears the line on drop.
pub fn progress(enabled: bool, line: impl Fn() -> String + Send + 'static) -> ProgressGuard {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressGuard(None);
    }
    let h = tokio::spawn(async move {
        let mut t = tokio::time::interval(Duration::from_millis(500));
        loop {
            t.tick().await;
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[2K{}", line());
            let _ = e.flush();
        }
    });
    ProgressGuard(Some(h))
}

/// Stops the progress line.
#[derive(Debug)]
pub struct ProgressGuard(Option<tokio::task::JoinHandle<()>>);

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
            eprint!("\r\x1b[2K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ranges() {
        let r = UserRange::parse("1000-1999").unwrap();
        assert_eq!(r.len(), 1000);
        assert_eq!(r.nth(0), "1000");
        assert_eq!(r.nth(1001), "1001");
        assert_eq!(UserRange::parse("7").unwrap().len(), 1);
        assert!(UserRange::parse("9-1").is_err());
        assert!(UserRange::parse("a-b").is_err());
    }

    #[test]
    fn loopback_is_enforced() {
        let mut c = Common {
            server: "10.0.0.1:5060".parse().unwrap(),
            also_servers: Vec::new(),
            bind_ip: "127.0.0.1".parse().unwrap(),
            domain: "127.0.0.1".into(),
            password: "pw{user}".into(),
            timers: Timers::default(),
            max_seconds: Duration::from_secs(1),
            rcvbuf: 1,
            progress: false,
            watch: Vec::new(),
        };
        assert!(matches!(
            c.check_loopback(false),
            Err(SetupError::NotLoopback(_))
        ));
        assert!(c.check_loopback(true).is_ok());
        c.server = "127.0.0.1:5060".parse().unwrap();
        c.also_servers = vec!["10.0.0.2:5060".parse().unwrap()];
        assert!(c.check_loopback(false).is_err());
        c.also_servers = vec!["127.0.0.1:5061".parse().unwrap()];
        assert!(c.check_loopback(false).is_ok());
        assert_eq!(c.password_for("1001"), "pw1001");
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_is_bounded_by_total_rate_and_concurrency() {
        let far = Instant::now() + Duration::from_secs(100);
        let n = Arc::new(AtomicU64::new(0));
        let n2 = Arc::clone(&n);
        let p = pace(100.0, Some(50), None, 10, far, far, move |_, permit| {
            n2.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                drop(permit);
            });
        })
        .await;
        assert_eq!(p.started, 50);
        assert_eq!(n.load(Ordering::Relaxed), 50);
        assert_eq!(p.unfinished, 0);
        assert!(p.window >= Duration::from_millis(490));

        // Duration bound; work that never ends is reported as unfinished.
        let now = Instant::now();
        let p = pace(
            10.0,
            None,
            Some(Duration::from_secs(1)),
            100,
            now + Duration::from_secs(100),
            now + Duration::from_secs(2),
            |_, permit| std::mem::forget(permit),
        )
        .await;
        assert_eq!(p.started, 10);
        assert_eq!(p.unfinished, 10);
    }
}
