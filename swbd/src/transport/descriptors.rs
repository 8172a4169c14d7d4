//! File descriptors: raise `RLIMIT_NOFILE` at start and size the TCP
//! connection cap so it runs out before descriptors do.
//!
//! Every TCP connection is a descriptor. If connections could take all of
//! them, the next `accept` on the admin socket, a gRPC connection to a media
//! node or a UDP socket would fail with `EMFILE`, and an attacker holding
//! TCP connections would lock the operator out. So the soft limit is raised
//! to the hard limit (systemd and most distributions start daemons at 1024
//! soft), and the TCP cap is `min(sip.tcp_max_connections, soft - reserve)`
//! where the reserve, `max(64, soft / 10)`, is kept for everything else:
//! UDP sockets, listeners, admin clients, media-node channels, files.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors never given to SIP TCP connections, at least.
pub const MIN_RESERVE: u64 = 64;

/// What start-up found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// Soft limit before raising (None: unlimited).
    pub before: Option<u64>,
    /// Soft limit in force now (None: unlimited).
    pub soft: Option<u64>,
    /// Hard limit (None: unlimited).
    pub hard: Option<u64>,
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit (to `want` when the hard
/// limit is unlimited, since the kernel refuses an unlimited soft limit).
/// A refusal leaves the limit as it was; the caller sizes to what is in
/// force either way.
pub fn raise_nofile(want: u64) -> NofileLimit {
    let limit = getrlimit(Resource::Nofile);
    let before = limit.current;
    let target = match limit.maximum {
        Some(hard) => Some(hard),
        None => before.map(|b| b.max(want)),
    };
    let mut soft = before;
    if let Some(target) = target
        && before.is_some_and(|b| b < target)
    {
        let new = Rlimit {
            current: Some(target),
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, new) {
            Ok(()) => soft = Some(target),
            Err(e) => {
                tracing::warn!(target, error = %e, "could not raise the open-file limit");
            }
        }
    }
    NofileLimit {
        before,
        soft,
        hard: limit.maximum,
    }
}

/// Descriptors kept back from TCP connections out of a soft limit of `soft`.
pub fn reserve(soft: u64) -> u64 {
    (soft / 10).max(MIN_RESERVE)
}

/// The TCP connection cap in force: `configured` (0 = no limit) lowered to
/// `soft - reserve(soft)` when the descriptors would not stretch that far
/// (at least 1, so a tiny limit still serves something).
pub fn tcp_cap(configured: usize, soft: Option<u64>) -> usize {
    let by_descriptors = soft.map_or(usize::MAX, |s| {
        usize::try_from(s.saturating_sub(reserve(s)).max(1)).unwrap_or(usize::MAX)
    });
    match configured {
        0 => by_descriptors,
        n => n.min(by_descriptors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_a_reserve_for_everything_else() {
        assert_eq!(tcp_cap(4096, Some(1024)), 1024 - 102);
        assert_eq!(tcp_cap(4096, Some(256)), 256 - 64);
        assert_eq!(tcp_cap(4096, Some(1_048_576)), 4096);
        assert_eq!(tcp_cap(0, Some(20_000)), 18_000);
        assert_eq!(tcp_cap(0, None), usize::MAX);
        assert_eq!(tcp_cap(100, Some(10)), 1, "never zero");
    }

    #[test]
    fn raising_never_lowers_and_reports_what_is_in_force() {
        let l = raise_nofile(4096);
        assert!(l.soft >= l.before || l.soft.is_none());
        assert_eq!(getrlimit(Resource::Nofile).current, l.soft);
    }
}
