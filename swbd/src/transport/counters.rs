//! Counters readable for admin status. Relaxed atomics: these are
//! statistics, not synchronisation.

use std::sync::atomic::{AtomicU64, Ordering};

/// SIP-level counters of one endpoint.
#[derive(Debug, Default)]
pub struct SipCounters {
    /// Messages that could not be parsed (answered 400 or dropped).
    pub sip_parse_errors: AtomicU64,
    /// Unparseable messages dropped because no response could be formed.
    pub sip_dropped_unanswerable: AtomicU64,
    /// Oversize UDP datagrams dropped / TCP messages refused.
    pub oversize_dropped: AtomicU64,
    /// UDP datagrams dropped because their worker's queue was full
    /// (`sip.udp_workers`, [`super::workers`]).
    pub udp_queue_dropped: AtomicU64,
    /// Messages received (both transports).
    pub messages_received: AtomicU64,
    /// Responses that matched no client transaction.
    pub stray_responses: AtomicU64,
    /// Requests refused because their source is blocked (auth failures).
    pub blocked_requests: AtomicU64,
    /// Failed digest attempts.
    pub auth_failures: AtomicU64,
    /// Requests answered statelessly by the front door (challenges, 403,
    /// 420, 483, 501, 400, 503), keeping no transaction.
    pub stateless_replies: AtomicU64,
    /// Messages dropped because their source is outside `acl.allow`.
    pub acl_dropped: AtomicU64,
    /// INVITEs refused because their From named someone other than the
    /// authenticated user (`auth.identity: reject`).
    pub identity_refused: AtomicU64,
    /// Requests over their source's `sip.rate_limit` (answered 503 or dropped).
    pub rate_limited: AtomicU64,
    /// TCP connections accepted or opened.
    pub tcp_connections: AtomicU64,
    /// TCP connections closed at accept (or not opened) because the TCP
    /// cap in force (`sip.tcp_max_connections`, lowered to fit the
    /// open-file limit) was reached.
    pub tcp_refused: AtomicU64,
    /// TCP connections closed at accept because their source had
    /// `sip.tcp_max_connections_per_source` open.
    pub tcp_refused_per_source: AtomicU64,
    /// TCP connections closed because a message head (or body) was not
    /// complete within `sip.tcp_head_timeout_secs` (`tcp_body_timeout_secs`).
    pub tcp_message_timeouts: AtomicU64,
    /// Sends that failed.
    pub send_errors: AtomicU64,
    /// Sources blocked after repeated authentication failures.
    pub sources_blocked: AtomicU64,
    /// INVITEs answered 503 because the B2BUA's queue was full.
    pub overload_shed: AtomicU64,
    /// New INVITEs refused by overload control with a `503` built from
    /// their raw head in the UDP receive loop, before any parse
    /// ([`super::shed`]).
    pub early_shed: AtomicU64,
    /// ACKs of those `503`s, recognised by their To tag and dropped there.
    pub shed_acks_absorbed: AtomicU64,
    /// Security events published (see [`crate::events::security`]).
    pub security_events: AtomicU64,
    /// Security incidents folded into a summary instead of an event.
    pub security_events_suppressed: AtomicU64,
    /// SIP messages by method and code, overload shedding (metrics only).
    pub messages: crate::metrics::MessageCounters,
}

/// A plain copy of [`SipCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// See [`SipCounters::sip_parse_errors`].
    pub sip_parse_errors: u64,
    /// See [`SipCounters::sip_dropped_unanswerable`].
    pub sip_dropped_unanswerable: u64,
    /// See [`SipCounters::oversize_dropped`].
    pub oversize_dropped: u64,
    /// See [`SipCounters::udp_queue_dropped`].
    pub udp_queue_dropped: u64,
    /// See [`SipCounters::messages_received`].
    pub messages_received: u64,
    /// See [`SipCounters::stray_responses`].
    pub stray_responses: u64,
    /// See [`SipCounters::blocked_requests`].
    pub blocked_requests: u64,
    /// See [`SipCounters::auth_failures`].
    pub auth_failures: u64,
    /// See [`SipCounters::stateless_replies`].
    pub stateless_replies: u64,
    /// See [`SipCounters::acl_dropped`].
    pub acl_dropped: u64,
    /// See [`SipCounters::identity_refused`].
    pub identity_refused: u64,
    /// See [`SipCounters::rate_limited`].
    pub rate_limited: u64,
    /// See [`SipCounters::tcp_connections`].
    pub tcp_connections: u64,
    /// See [`SipCounters::tcp_refused`].
    pub tcp_refused: u64,
    /// See [`SipCounters::tcp_refused_per_source`].
    pub tcp_refused_per_source: u64,
    /// See [`SipCounters::tcp_message_timeouts`].
    pub tcp_message_timeouts: u64,
    /// See [`SipCounters::send_errors`].
    pub send_errors: u64,
    /// See [`SipCounters::sources_blocked`].
    pub sources_blocked: u64,
    /// See [`SipCounters::overload_shed`].
    pub overload_shed: u64,
    /// See [`SipCounters::early_shed`].
    pub early_shed: u64,
    /// See [`SipCounters::shed_acks_absorbed`].
    pub shed_acks_absorbed: u64,
    /// See [`SipCounters::security_events`].
    pub security_events: u64,
    /// See [`SipCounters::security_events_suppressed`].
    pub security_events_suppressed: u64,
}

impl SipCounters {
    /// Add one.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Read all.
    pub fn snapshot(&self) -> CountersSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersSnapshot {
            sip_parse_errors: g(&self.sip_parse_errors),
            sip_dropped_unanswerable: g(&self.sip_dropped_unanswerable),
            oversize_dropped: g(&self.oversize_dropped),
            udp_queue_dropped: g(&self.udp_queue_dropped),
            messages_received: g(&self.messages_received),
            stray_responses: g(&self.stray_responses),
            blocked_requests: g(&self.blocked_requests),
            auth_failures: g(&self.auth_failures),
            stateless_replies: g(&self.stateless_replies),
            acl_dropped: g(&self.acl_dropped),
            identity_refused: g(&self.identity_refused),
            rate_limited: g(&self.rate_limited),
            tcp_connections: g(&self.tcp_connections),
            tcp_refused: g(&self.tcp_refused),
            tcp_refused_per_source: g(&self.tcp_refused_per_source),
            tcp_message_timeouts: g(&self.tcp_message_timeouts),
            send_errors: g(&self.send_errors),
            sources_blocked: g(&self.sources_blocked),
            overload_shed: g(&self.overload_shed),
            early_shed: g(&self.early_shed),
            shed_acks_absorbed: g(&self.shed_acks_absorbed),
            security_events: g(&self.security_events),
            security_events_suppressed: g(&self.security_events_suppressed),
        }
    }
}
