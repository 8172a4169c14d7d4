//! Security events: what the trust boundary refused (authentication
//! failures, blocks, ACL drops, rate limits, overload, identity refusals),
//! published on the event bus (admin `Watch`, `swctl events`), counted, and
//! logged with the source address.
//!
//! # Bounded
//! A flood must not become a flood of events or log lines, so incidents are
//! aggregated per kind and source (an IPv4 address or an IPv6 /64, like
//! the blocklist's [`SourceKey`]) over `events.security_interval_secs`
//! (10 s by default):
//!
//! 1. The first incident of a (kind, source) is published and logged at
//!    once, with `count: 1`.
//! 2. Later ones are only counted until the interval that started with the
//!    last published event ends. Then, if any came, one summary is
//!    published and logged (`summary: true`, `count` = how many were folded
//!    in) and a new interval starts; if none came, the source is forgotten
//!    and its next incident is published at once again.
//!
//! A source flooding for a minute therefore costs one event and one log line,
//! then one summary per interval, per kind. Many sources at once (a spoofed
//! flood) are bounded too: at most [`NEW_SOURCES_PER_INTERVAL`] new sources
//! get an event of their own per interval and at most [`MAX_SOURCES`] are
//! tracked; incidents of the others are folded into one `(other sources)`
//! summary per kind and interval.
//!
//! A block ([`SecurityKind::SourceBlocked`]) is followed by a
//! [`SecurityKind::SourceUnblocked`] event when it runs out (for at most
//! [`MAX_BLOCKS`] blocks tracked at once).
//!
//! Counters: every published event adds to `security_events`, every folded
//! incident to `security_events_suppressed` ([`SipCounters`]); the
//! per-kind counters (`auth_failures`, `acl_dropped`, ...) count every
//! incident where it happens.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::RandomState;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_proto::admin::v1 as pb;
use switchboard_proto::support::shutdown::Shutdown;
use tokio::time::Instant;

use super::{Event, EventBus};
use crate::transport::{SipCounters, Source, SourceKey};

/// Most (kind, source) pairs tracked at once.
pub const MAX_SOURCES: usize = 1024;
/// Most new sources that get an event of their own per interval.
pub const NEW_SOURCES_PER_INTERVAL: usize = 64;
/// Most blocks tracked for their `source-unblocked` event.
pub const MAX_BLOCKS: usize = 4096;
/// Peer text (user names, reasons quoting a header) kept per event, in bytes.
const MAX_TEXT: usize = 128;
/// The source of the summary of sources beyond the table.
pub const OTHER_SOURCES: &str = "(other sources)";

/// What the trust boundary refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityKind {
    /// A digest that did not authenticate.
    AuthFailure,
    /// A source blocked after repeated failures.
    SourceBlocked,
    /// A block that ran out.
    SourceUnblocked,
    /// A request from a blocked source (403).
    BlockedRequest,
    /// A message from outside `acl.allow` (dropped).
    AclDropped,
    /// A request over `sip.rate_limit`.
    RateLimited,
    /// An INVITE refused because the B2BUA was overloaded (503).
    Overload,
    /// An INVITE whose From named someone else (403).
    IdentityRefused,
}

impl SecurityKind {
    /// Stable lowercase name (logs, `swctl events`).
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityKind::AuthFailure => "auth-failure",
            SecurityKind::SourceBlocked => "source-blocked",
            SecurityKind::SourceUnblocked => "source-unblocked",
            SecurityKind::BlockedRequest => "blocked-request",
            SecurityKind::AclDropped => "acl-dropped",
            SecurityKind::RateLimited => "rate-limited",
            SecurityKind::Overload => "overload",
            SecurityKind::IdentityRefused => "identity-refused",
        }
    }

    /// The admin enum.
    pub fn to_proto(self) -> pb::SecurityEventKind {
        match self {
            SecurityKind::AuthFailure => pb::SecurityEventKind::AuthFailure,
            SecurityKind::SourceBlocked => pb::SecurityEventKind::SourceBlocked,
            SecurityKind::SourceUnblocked => pb::SecurityEventKind::SourceUnblocked,
            SecurityKind::BlockedRequest => pb::SecurityEventKind::BlockedRequest,
            SecurityKind::AclDropped => pb::SecurityEventKind::AclDropped,
            SecurityKind::RateLimited => pb::SecurityEventKind::RateLimited,
            SecurityKind::Overload => pb::SecurityEventKind::Overload,
            SecurityKind::IdentityRefused => pb::SecurityEventKind::IdentityRefused,
        }
    }
}

/// One published security event.
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityEvent {
    /// What happened.
    pub kind: SecurityKind,
    /// "udp 203.0.113.5:5060" (the last one seen, for a summary), or
    /// [`OTHER_SOURCES`].
    pub source: String,
    /// The user the request named, as the peer sent it (cut at 128 bytes).
    pub user: String,
    /// Why, in words.
    pub reason: String,
    /// Incidents this event stands for.
    pub count: u64,
    /// A summary of `count` incidents folded in over `interval`.
    pub summary: bool,
    /// The aggregation interval.
    pub interval: Duration,
}

impl SecurityEvent {
    /// The admin form.
    pub fn to_proto(&self) -> pb::SecurityEvent {
        pb::SecurityEvent {
            kind: self.kind.to_proto() as i32,
            source: self.source.clone(),
            user: self.user.clone(),
            reason: self.reason.clone(),
            count: self.count,
            summary: self.summary,
            interval: Some(switchboard_proto::duration(self.interval)),
        }
    }
}

/// Cheap-clone handle: report incidents, get bounded events.
#[derive(Debug, Clone)]
pub struct SecurityEvents {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    bus: EventBus,
    counters: Arc<SipCounters>,
    interval: Duration,
    /// A std Mutex: one short lookup per incident, never across an await.
    table: Mutex<Table>,
}

/// Key of an aggregation entry: `None` is "other sources".
type Key = (SecurityKind, Option<SourceKey>);

#[derive(Debug)]
struct Table {
    entries: HashMap<Key, Entry, RandomState>,
    /// New sources given an event of their own since `budget_from`.
    new_sources: usize,
    budget_from: Instant,
    blocks: HashMap<SourceKey, Block, RandomState>,
}

#[derive(Debug)]
struct Entry {
    /// End of the current interval.
    until: Instant,
    /// Incidents folded in since the last published event.
    folded: u64,
    /// The last incident's source, user and reason (buffers reused).
    source: String,
    user: String,
    reason: String,
}

#[derive(Debug)]
struct Block {
    until: Instant,
    source: String,
    user: String,
}

/// `s` cut at `MAX_TEXT` bytes (on a character boundary).
fn bounded(s: &str) -> &str {
    if s.len() <= MAX_TEXT {
        return s;
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

fn set(buf: &mut String, s: &str) {
    let s = bounded(s);
    if buf != s {
        buf.clear();
        buf.push_str(s);
    }
}

fn source_text(source: &Source) -> String {
    format!("{} {}", source.transport, source.remote)
}

impl SecurityEvents {
    /// Aggregating over `interval`, publishing on `bus`.
    pub fn new(bus: EventBus, counters: Arc<SipCounters>, interval: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                bus,
                counters,
                interval: interval.max(Duration::from_secs(1)),
                table: Mutex::new(Table {
                    entries: HashMap::default(),
                    new_sources: 0,
                    budget_from: Instant::now(),
                    blocks: HashMap::default(),
                }),
            }),
        }
    }

    /// One incident of `kind` from `source`; `user` is what the request
    /// named (peer text, may be empty), `reason` says why.
    pub fn report(&self, kind: SecurityKind, source: &Source, user: &str, reason: &str) {
        let inner = &*self.inner;
        let now = Instant::now();
        let key = SourceKey::of(source.remote.ip());
        let Ok(mut t) = inner.table.lock() else {
            return;
        };
        if now.duration_since(t.budget_from) >= inner.interval {
            t.budget_from = now;
            t.new_sources = 0;
        }
        if let Some(e) = t.entries.get_mut(&(kind, Some(key))) {
            e.folded += 1;
            set(&mut e.user, user);
            set(&mut e.reason, reason);
            // Into the kept buffer: a flood allocates nothing per incident.
            e.source.clear();
            let _ = write!(e.source, "{} {}", source.transport, source.remote);
            drop(t);
            SipCounters::inc(&inner.counters.security_events_suppressed);
            return;
        }
        if t.entries.len() < MAX_SOURCES && t.new_sources < NEW_SOURCES_PER_INTERVAL {
            t.new_sources += 1;
            let event = SecurityEvent {
                kind,
                source: source_text(source),
                user: bounded(user).to_string(),
                reason: bounded(reason).to_string(),
                count: 1,
                summary: false,
                interval: inner.interval,
            };
            t.entries.insert(
                (kind, Some(key)),
                Entry {
                    until: now + inner.interval,
                    folded: 0,
                    source: event.source.clone(),
                    user: event.user.clone(),
                    reason: event.reason.clone(),
                },
            );
            drop(t);
            self.publish(event);
            return;
        }
        // Too many sources: one summary for all the others.
        let e = t.entries.entry((kind, None)).or_insert_with(|| Entry {
            until: now + inner.interval,
            folded: 0,
            source: String::new(),
            user: String::new(),
            reason: String::new(),
        });
        e.folded += 1;
        set(&mut e.user, user);
        set(&mut e.reason, reason);
        drop(t);
        SipCounters::inc(&inner.counters.security_events_suppressed);
    }

    /// `source` was blocked for `block` after `failures` failures: counted,
    /// reported, and a `source-unblocked` event follows when it runs out.
    pub fn blocked(&self, source: &Source, user: &str, failures: u32, block: Duration) {
        SipCounters::inc(&self.inner.counters.sources_blocked);
        let until = Instant::now() + block;
        if let Ok(mut t) = self.inner.table.lock()
            && (t.blocks.len() < MAX_BLOCKS
                || t.blocks.contains_key(&SourceKey::of(source.remote.ip())))
        {
            t.blocks.insert(
                SourceKey::of(source.remote.ip()),
                Block {
                    until,
                    source: source_text(source),
                    user: bounded(user).to_string(),
                },
            );
        }
        self.report(
            SecurityKind::SourceBlocked,
            source,
            user,
            &format!(
                "{failures} authentication failures: blocked for {} s",
                block.as_secs()
            ),
        );
    }

    /// An INVITE from `source` shed because the B2BUA's queue was full:
    /// counted (`overload_shed`) and reported.
    pub fn overloaded(&self, source: &Source, user: &str) {
        SipCounters::inc(&self.inner.counters.overload_shed);
        self.report(
            SecurityKind::Overload,
            source,
            user,
            "B2BUA queue full: INVITE answered 503",
        );
    }

    /// Publish the summaries and unblock events due at `now`; forget quiet
    /// sources. Run every second by [`SecurityEvents::spawn_flusher`].
    pub fn flush(&self, now: Instant) {
        let inner = &*self.inner;
        let mut due = Vec::new();
        if let Ok(mut t) = inner.table.lock() {
            t.entries.retain(|(kind, key), e| {
                if e.until > now {
                    return true;
                }
                if e.folded == 0 {
                    return false;
                }
                due.push(SecurityEvent {
                    kind: *kind,
                    source: match key {
                        Some(_) => e.source.clone(),
                        None => OTHER_SOURCES.to_string(),
                    },
                    user: e.user.clone(),
                    reason: e.reason.clone(),
                    count: e.folded,
                    summary: true,
                    interval: inner.interval,
                });
                e.folded = 0;
                e.until = now + inner.interval;
                true
            });
            t.blocks.retain(|_, b| {
                if b.until > now {
                    return true;
                }
                due.push(SecurityEvent {
                    kind: SecurityKind::SourceUnblocked,
                    source: std::mem::take(&mut b.source),
                    user: std::mem::take(&mut b.user),
                    reason: "block ran out".into(),
                    count: 1,
                    summary: false,
                    interval: inner.interval,
                });
                false
            });
        }
        for event in due {
            self.publish(event);
        }
    }

    /// Flush every second until `shutdown`.
    pub fn spawn_flusher(&self, mut shutdown: Shutdown) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.wait() => return,
                    now = tick.tick() => this.flush(now),
                }
            }
        });
    }

    fn publish(&self, event: SecurityEvent) {
        SipCounters::inc(&self.inner.counters.security_events);
        // Field values are peer text: the log formatter escapes them
        // (switchboard_proto::support::logging).
        if event.summary {
            tracing::warn!(
                kind = event.kind.as_str(),
                source = %event.source,
                user = %event.user,
                reason = %event.reason,
                count = event.count,
                interval_secs = event.interval.as_secs(),
                "security: {} more {} from this source within the interval",
                event.count,
                event.kind.as_str(),
            );
        } else {
            tracing::warn!(
                kind = event.kind.as_str(),
                source = %event.source,
                user = %event.user,
                reason = %event.reason,
                "security: {}",
                event.kind.as_str(),
            );
        }
        self.inner.bus.publish(Event::Security(event));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Transport;
    use std::net::SocketAddr;

    fn source(ip: &str) -> Source {
        let remote: SocketAddr = format!("{ip}:5060").parse().expect("addr");
        Source {
            transport: Transport::Udp,
            remote,
            local: "127.0.0.1:5060".parse().expect("addr"),
        }
    }

    fn drain(
        rx: &mut tokio::sync::broadcast::Receiver<super::super::Stamped>,
    ) -> Vec<SecurityEvent> {
        let mut out = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            if let Event::Security(s) = &ev.1 {
                out.push(s.clone());
            }
        }
        out
    }

    fn setup() -> (
        SecurityEvents,
        Arc<SipCounters>,
        tokio::sync::broadcast::Receiver<super::super::Stamped>,
    ) {
        let bus = EventBus::with_recent(0);
        let rx = bus.subscribe();
        let counters = Arc::new(SipCounters::default());
        let sec = SecurityEvents::new(bus, counters.clone(), Duration::from_secs(10));
        (sec, counters, rx)
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_is_one_event_then_one_summary_per_interval() {
        let (sec, counters, mut rx) = setup();
        let s = source("192.0.2.7");
        for _ in 0..30 {
            sec.report(SecurityKind::AuthFailure, &s, "1001", "wrong password");
        }
        let first = drain(&mut rx);
        assert_eq!(first.len(), 1, "{first:?}");
        assert_eq!(first[0].count, 1);
        assert!(!first[0].summary);
        assert_eq!(first[0].source, "udp 192.0.2.7:5060");

        tokio::time::advance(Duration::from_secs(5)).await;
        sec.flush(Instant::now());
        assert!(
            drain(&mut rx).is_empty(),
            "nothing before the interval ends"
        );

        tokio::time::advance(Duration::from_secs(5)).await;
        sec.flush(Instant::now());
        let summary = drain(&mut rx);
        assert_eq!(summary.len(), 1, "{summary:?}");
        assert_eq!(summary[0].count, 29);
        assert!(summary[0].summary);
        assert_eq!(summary[0].user, "1001");

        // The flood goes on: one summary per interval.
        for _ in 0..100 {
            sec.report(SecurityKind::AuthFailure, &s, "1002", "unknown user");
        }
        assert!(drain(&mut rx).is_empty());
        tokio::time::advance(Duration::from_secs(10)).await;
        sec.flush(Instant::now());
        let next = drain(&mut rx);
        assert_eq!(next.len(), 1);
        assert_eq!(
            (next[0].count, next[0].reason.as_str()),
            (100, "unknown user")
        );

        // Quiet for an interval: forgotten, the next one is immediate again.
        tokio::time::advance(Duration::from_secs(10)).await;
        sec.flush(Instant::now());
        assert!(drain(&mut rx).is_empty());
        sec.report(SecurityKind::AuthFailure, &s, "1001", "wrong password");
        let again = drain(&mut rx);
        assert_eq!((again.len(), again[0].summary), (1, false));

        let c = counters.snapshot();
        assert_eq!(c.security_events, 4);
        assert_eq!(c.security_events_suppressed, 129);
    }

    #[tokio::test(start_paused = true)]
    async fn kinds_and_sources_are_aggregated_apart() {
        let (sec, _, mut rx) = setup();
        sec.report(SecurityKind::AuthFailure, &source("192.0.2.1"), "", "x");
        sec.report(SecurityKind::AclDropped, &source("192.0.2.1"), "", "x");
        sec.report(SecurityKind::AuthFailure, &source("192.0.2.2"), "", "x");
        // Same IPv6 /64: one source.
        sec.report(SecurityKind::AuthFailure, &source("[2001:db8::1]"), "", "x");
        sec.report(SecurityKind::AuthFailure, &source("[2001:db8::2]"), "", "x");
        assert_eq!(drain(&mut rx).len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn many_sources_fold_into_other_sources() {
        let (sec, counters, mut rx) = setup();
        let n = NEW_SOURCES_PER_INTERVAL as u32 + 500;
        for i in 0..n {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            sec.report(
                SecurityKind::AclDropped,
                &source(&ip.to_string()),
                "",
                "outside acl.allow",
            );
        }
        assert_eq!(drain(&mut rx).len(), NEW_SOURCES_PER_INTERVAL);
        tokio::time::advance(Duration::from_secs(10)).await;
        sec.flush(Instant::now());
        let summaries = drain(&mut rx);
        assert_eq!(summaries.len(), 1, "only the other-sources summary");
        assert_eq!(summaries[0].source, OTHER_SOURCES);
        assert_eq!(summaries[0].count, 500);
        assert_eq!(counters.snapshot().security_events_suppressed, 500);
    }

    #[tokio::test(start_paused = true)]
    async fn a_block_is_followed_by_its_unblock() {
        let (sec, counters, mut rx) = setup();
        let s = source("192.0.2.9");
        sec.blocked(&s, "1001", 5, Duration::from_secs(30));
        let ev = drain(&mut rx);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, SecurityKind::SourceBlocked);
        assert!(
            ev[0].reason.contains("blocked for 30 s"),
            "{}",
            ev[0].reason
        );
        tokio::time::advance(Duration::from_secs(29)).await;
        sec.flush(Instant::now());
        assert!(drain(&mut rx).is_empty());
        tokio::time::advance(Duration::from_secs(1)).await;
        sec.flush(Instant::now());
        let ev = drain(&mut rx);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, SecurityKind::SourceUnblocked);
        assert_eq!(ev[0].source, "udp 192.0.2.9:5060");
        assert_eq!(counters.snapshot().sources_blocked, 1);
    }

    #[test]
    fn peer_text_is_bounded_on_a_char_boundary() {
        let long = "é".repeat(200);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_TEXT);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
