//! `swctl status`: a summary of every daemon named by `--host`.
//! Each host is asked as swbd first, then as swrtp.

use serde::Serialize;
use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::media_admin_client::MediaAdminClient;
use switchboard_proto::admin::v1::signaling_admin_client::SignalingAdminClient;

use super::{Backend, Kind, Targets, table_width};
use crate::Error;
use crate::cli::Output;
use crate::output;

/// One daemon's summary, as printed (JSON field names are stable).
#[derive(Debug, Serialize)]
pub struct StatusView {
    /// Backend label (`--host` or context entry it came from).
    pub host: String,
    /// "swbd" or "swrtp".
    pub daemon: String,
    /// Node name.
    pub node_id: String,
    /// Version.
    pub version: String,
    /// Seconds since start.
    pub uptime_secs: i64,
    /// swbd: active calls; swrtp: active sessions.
    pub active: u32,
    /// One line of daemon-specific detail.
    pub detail: String,
    /// swbd only: what its trust boundary refused, since start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security: Option<SecurityView>,
    /// swbd only: SIP capture (kept calls, HEP export).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureView>,
    /// swbd only, when its call detail records are on: written and lost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cdr: Option<CdrView>,
    /// swbd only: overload control now, and what it refused since start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overload: Option<OverloadView>,
    /// swbd only: the state store (backend, reachable, failed operations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_store: Option<StateStoreView>,
}

/// swbd's state store, as printed.
#[derive(Debug, Serialize)]
pub struct StateStoreView {
    /// `memory` or `redis`.
    pub backend: String,
    /// Reachable now.
    pub up: bool,
    /// The last failure (empty: none).
    pub last_error: String,
    /// Operations failed since start.
    pub failed_ops: u64,
    /// This instance's id.
    pub instance_id: String,
    /// Registration writes queued for the store.
    pub pending_writes: u32,
    /// Saved call record writes lost since start (those calls would not
    /// survive a restart).
    pub saved_call_writes_lost: u64,
}

impl From<pb::StateStoreStatus> for StateStoreView {
    fn from(s: pb::StateStoreStatus) -> Self {
        Self {
            backend: s.backend,
            up: s.up,
            last_error: s.last_error,
            failed_ops: s.failed_ops,
            instance_id: s.instance_id,
            pending_writes: s.pending_writes,
            saved_call_writes_lost: s.saved_call_writes_lost,
        }
    }
}

impl StateStoreView {
    /// ` state redis up` / ` state redis DOWN queued 3 call-writes-lost 2`;
    /// nothing for the memory backend (always up, nothing saved).
    pub fn summary(&self) -> String {
        if self.backend == "memory" {
            return String::new();
        }
        let mut out = format!(
            " state {} {}",
            self.backend,
            if self.up { "up" } else { "DOWN" }
        );
        if self.pending_writes > 0 {
            out.push_str(&format!(" queued {}", self.pending_writes));
        }
        if self.saved_call_writes_lost > 0 {
            out.push_str(&format!(
                " call-writes-lost {}",
                self.saved_call_writes_lost
            ));
        }
        out
    }
}

/// swbd's SIP capture counters, as printed.
#[derive(Debug, Serialize)]
pub struct CaptureView {
    /// Calls whose SIP messages are kept.
    pub calls_kept: u32,
    /// Bytes kept.
    pub bytes_kept: u64,
    /// Messages not kept (per-call bound).
    pub messages_not_kept: u64,
    /// Calls given up to the bounds.
    pub calls_evicted: u64,
    /// HEP packets sent.
    pub hep_sent: u64,
    /// HEP packets dropped (queue full).
    pub hep_dropped: u64,
    /// HEP packets the socket refused.
    pub hep_send_errors: u64,
}

impl From<pb::CaptureCounters> for CaptureView {
    fn from(c: pb::CaptureCounters) -> Self {
        Self {
            calls_kept: c.calls_kept,
            bytes_kept: c.bytes_kept,
            messages_not_kept: c.messages_not_kept,
            calls_evicted: c.calls_evicted,
            hep_sent: c.hep_sent,
            hep_dropped: c.hep_dropped,
            hep_send_errors: c.hep_send_errors,
        }
    }
}

/// swbd's overload control (`sip.overload`), as printed.
#[derive(Debug, Serialize)]
pub struct OverloadView {
    /// `sip.overload.enabled`.
    pub enabled: bool,
    /// Share of new INVITEs refused over the last ~50 ms (0 to 1).
    pub refused_share: f64,
    /// New INVITEs admitted per second at most now; 0: no limit.
    pub admission_limit: f64,
    /// Queueing delay measured, milliseconds.
    pub delay_ms: f64,
    /// Its part from UDP receive queues, milliseconds.
    pub receive_backlog_ms: f64,
    /// Its part from the runtime's scheduling lag, milliseconds.
    pub scheduling_lag_ms: f64,
    /// Its part from media command round trips, milliseconds.
    pub media_queueing_ms: f64,
    /// Calls in setup (INVITEs without a final answer).
    pub calls_in_setup: u32,
    /// Setup steps swbd owes calls now.
    pub setup_work: u32,
    /// Their cap (0: none).
    pub setup_work_cap: u32,
    /// New INVITEs refused for load since start.
    pub invites_refused: u64,
}

impl From<pb::OverloadStatus> for OverloadView {
    fn from(o: pb::OverloadStatus) -> Self {
        let ms = |d: Option<prost_types::Duration>| {
            d.map_or(0.0, |d| d.seconds as f64 * 1e3 + f64::from(d.nanos) / 1e6)
        };
        Self {
            enabled: o.enabled,
            refused_share: o.refused_share,
            admission_limit: o.admission_limit,
            delay_ms: ms(o.delay),
            receive_backlog_ms: ms(o.receive_backlog),
            scheduling_lag_ms: ms(o.scheduling_lag),
            media_queueing_ms: ms(o.media_queueing),
            calls_in_setup: o.calls_in_setup,
            setup_work: o.setup_work,
            setup_work_cap: o.setup_work_cap,
            invites_refused: o.invites_refused,
        }
    }
}

/// swbd's call detail record counters, as printed.
#[derive(Debug, Serialize)]
pub struct CdrView {
    /// Records handed to the writer.
    pub submitted: u64,
    /// Acknowledged in the file.
    pub written_file: u64,
    /// Committed to PostgreSQL.
    pub written_postgres: u64,
    /// PostgreSQL could not take them; in the file instead.
    pub spilled_to_file: u64,
    /// Lost (queue full, no store): each logged by swbd at ERROR.
    pub failed: u64,
    /// Waiting in the queue.
    pub queued: u64,
}

impl From<pb::CdrCounters> for CdrView {
    fn from(c: pb::CdrCounters) -> Self {
        Self {
            submitted: c.submitted,
            written_file: c.written_file,
            written_postgres: c.written_postgres,
            spilled_to_file: c.spilled_to_file,
            failed: c.failed,
            queued: c.queued,
        }
    }
}

impl CdrView {
    /// ` cdr-lost N cdr-spilled N` for the detail column: only what needs
    /// an operator's eye.
    fn summary(&self) -> String {
        let mut out = String::new();
        if self.failed > 0 {
            out.push_str(&format!(" cdr-lost {}", self.failed));
        }
        if self.spilled_to_file > 0 {
            out.push_str(&format!(" cdr-spilled {}", self.spilled_to_file));
        }
        out
    }
}

impl OverloadView {
    /// ` OVERLOAD limit 1950/s refusing 45% (delay 12ms)` while limiting,
    /// ` overload-refused N` once anything was refused, else nothing.
    fn summary(&self) -> String {
        let mut out = String::new();
        if self.admission_limit > 0.0 || self.refused_share >= 0.005 {
            out.push_str(" OVERLOAD");
            if self.admission_limit > 0.0 {
                out.push_str(&format!(" limit {:.0}/s", self.admission_limit));
            }
            out.push_str(&format!(
                " refusing {:.0}% (delay {:.0}ms)",
                self.refused_share * 100.0,
                self.delay_ms
            ));
        }
        if !self.enabled {
            out.push_str(" overload-control off");
        }
        if self.invites_refused > 0 {
            out.push_str(&format!(" overload-refused {}", self.invites_refused));
        }
        out
    }
}

/// swbd's trust-boundary counters (`docs/SECURITY.md`), as printed.
#[derive(Debug, Serialize)]
pub struct SecurityView {
    /// Failed digest attempts.
    pub auth_failures: u64,
    /// Requests refused because their source is blocked.
    pub blocked_requests: u64,
    /// Requests answered without a transaction.
    pub stateless_replies: u64,
    /// Messages from outside `acl.allow`, dropped.
    pub acl_dropped: u64,
    /// Requests over `sip.rate_limit`.
    pub rate_limited: u64,
    /// INVITEs refused for naming someone else in From.
    pub identity_refused: u64,
    /// TCP connections refused: total cap.
    pub tcp_refused: u64,
    /// TCP connections refused: per-source cap.
    pub tcp_refused_per_source: u64,
    /// TCP connections closed for a slow message.
    pub tcp_message_timeouts: u64,
    /// Sources blocked after repeated authentication failures.
    pub sources_blocked: u64,
    /// INVITEs answered 503 because swbd was overloaded.
    pub overload_shed: u64,
    /// Security events published (see `swctl events --kind security`).
    pub security_events: u64,
    /// Security incidents folded into summaries.
    pub security_events_suppressed: u64,
}

impl From<pb::SecurityCounters> for SecurityView {
    fn from(c: pb::SecurityCounters) -> Self {
        Self {
            auth_failures: c.auth_failures,
            blocked_requests: c.blocked_requests,
            stateless_replies: c.stateless_replies,
            acl_dropped: c.acl_dropped,
            rate_limited: c.rate_limited,
            identity_refused: c.identity_refused,
            tcp_refused: c.tcp_refused,
            tcp_refused_per_source: c.tcp_refused_per_source,
            tcp_message_timeouts: c.tcp_message_timeouts,
            sources_blocked: c.sources_blocked,
            overload_shed: c.overload_shed,
            security_events: c.security_events,
            security_events_suppressed: c.security_events_suppressed,
        }
    }
}

impl SecurityView {
    /// ` auth-fail N blocked N ...` for the table's detail column: only the
    /// counters that moved, so a quiet system shows nothing.
    fn summary(&self) -> String {
        let mut out = String::new();
        for (label, n) in [
            ("auth-fail", self.auth_failures),
            ("blocked", self.blocked_requests),
            ("acl-drop", self.acl_dropped),
            ("rate-ltd", self.rate_limited),
            ("id-refused", self.identity_refused),
            (
                "tcp-refused",
                self.tcp_refused + self.tcp_refused_per_source,
            ),
            ("tcp-slow", self.tcp_message_timeouts),
            ("src-blocked", self.sources_blocked),
            ("overload", self.overload_shed),
        ] {
            if n > 0 {
                out.push_str(&format!(" {label} {n}"));
            }
        }
        out
    }
}

/// Run `swctl status`: every backend, concurrently; an unreachable one is an
/// error (exit 3) unless it is an optional local default.
pub async fn run(t: &Targets, format: Output) -> Result<(), Error> {
    let mut views = Vec::new();
    let mut first_err = None;
    for r in status_views(t).await {
        match r {
            Ok(v) => views.push(v),
            Err(e) if first_err.is_none() => first_err = Some(e),
            Err(e) => eprintln!("swctl: {e}"),
        }
    }
    if !views.is_empty() || !matches!(format, Output::Table | Output::Wide) {
        print!("{}", render(&views, format, table_width())?);
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Status of every backend, concurrently, in backend order; optional
/// defaults that are not there are left out.
pub async fn status_views(t: &Targets) -> Vec<Result<StatusView, Error>> {
    let results = futures::future::join_all(t.backends.iter().map(|b| status_of(t, b))).await;
    t.backends
        .iter()
        .zip(results)
        .filter(|(b, r)| !(b.optional && matches!(r, Err(Error::Connect(_)))))
        .map(|(_, r)| r)
        .collect()
}

/// Render status lines.
pub fn render(views: &[StatusView], format: Output, width: usize) -> anyhow::Result<String> {
    Ok(match format {
        Output::Table | Output::Wide => output::fit(
            &[
                "HOST", "DAEMON", "NODE", "VERSION", "UPTIME", "ACTIVE", "DETAIL",
            ],
            &views
                .iter()
                .map(|v| {
                    vec![
                        v.host.clone(),
                        v.daemon.clone(),
                        v.node_id.clone(),
                        v.version.clone(),
                        format!("{}s", v.uptime_secs),
                        v.active.to_string(),
                        v.detail.clone(),
                    ]
                })
                .collect::<Vec<_>>(),
            (format == Output::Table).then_some(width),
        ),
        _ => output::structured(format, &views)?,
    })
}

async fn status_of(t: &Targets, b: &Backend) -> Result<StatusView, Error> {
    let what = match b.kind {
        Kind::Swbd => "swbd",
        Kind::Swrtp => "swrtp",
        Kind::Any => "daemon",
    };
    let channel = t.channel(b, what).await?;
    let host = &b.label;
    let now = std::time::SystemTime::now();
    let uptime = |t: Option<prost_types::Timestamp>| -> i64 {
        let now = prost_types::Timestamp::from(now);
        t.map(|t| now.seconds.saturating_sub(t.seconds))
            .unwrap_or(0)
    };
    let signaling = if b.kind == Kind::Swrtp {
        Err(tonic::Status::unimplemented("swrtp"))
    } else {
        SignalingAdminClient::new(channel.clone())
            .get_status(pb::GetStatusRequest {})
            .await
    };
    match signaling {
        Ok(resp) => {
            let s = resp.into_inner();
            let security = s.security.map(SecurityView::from);
            let cdr = s.cdr.map(CdrView::from);
            let overload = s.overload.map(OverloadView::from);
            let state_store = s.state_store.map(StateStoreView::from);
            Ok(StatusView {
                host: host.clone(),
                daemon: "swbd".into(),
                node_id: s.node_id,
                version: s.version,
                uptime_secs: uptime(s.started_at),
                active: s.active_calls,
                detail: format!(
                    "regs {} nodes {}/{} sip {}{}{}",
                    s.registrations,
                    s.media_nodes_up,
                    s.media_nodes_total,
                    s.sip_listeners.join(","),
                    overload
                        .as_ref()
                        .map(OverloadView::summary)
                        .unwrap_or_default(),
                    security
                        .as_ref()
                        .map(SecurityView::summary)
                        .unwrap_or_default()
                ) + &cdr.as_ref().map(CdrView::summary).unwrap_or_default()
                    + &state_store
                        .as_ref()
                        .map(StateStoreView::summary)
                        .unwrap_or_default(),
                security,
                capture: s.capture.map(CaptureView::from),
                cdr,
                overload,
                state_store,
            })
        }
        Err(st) if st.code() == tonic::Code::Unimplemented => {
            let s = MediaAdminClient::new(channel)
                .get_status(pb::GetMediaStatusRequest {})
                .await
                .map_err(|e| Error::from_status("swrtp", e))?
                .into_inner();
            Ok(StatusView {
                host: host.clone(),
                daemon: "swrtp".into(),
                node_id: s.node_id,
                version: s.version,
                uptime_secs: uptime(s.started_at),
                active: s.active_sessions,
                detail: format!(
                    "ports {}/{} free{}{}",
                    s.free_port_pairs,
                    s.total_port_pairs,
                    if s.draining { " draining" } else { "" },
                    relay_latency(s.relay_latency.as_ref())
                ),
                security: None,
                capture: None,
                cdr: None,
                overload: None,
                state_store: None,
            })
        }
        Err(st) => Err(Error::from_status("swbd", st)),
    }
}

/// ` relay p99 12us max 1.2ms` from swrtp's own latency histogram, or
/// nothing before it has relayed a packet (or when it is too old to say).
fn relay_latency(r: Option<&pb::RelayLatency>) -> String {
    match r {
        Some(r) if r.packets > 0 => format!(
            " relay p99 {} max {}",
            duration_ns(r.p99_ns),
            duration_ns(r.max_ns)
        ),
        _ => String::new(),
    }
}

fn duration_ns(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns}ns"),
        1_000..1_000_000 => format!("{}us", ns / 1_000),
        1_000_000..1_000_000_000 => format!("{:.1}ms", ns as f64 / 1e6),
        _ => format!("{:.1}s", ns as f64 / 1e9),
    }
}

#[cfg(test)]
mod relay_tests {
    use super::*;

    #[test]
    fn overload_is_shown_while_refusing_and_once_it_refused() {
        let mut o = pb::OverloadStatus {
            enabled: true,
            ..Default::default()
        };
        assert_eq!(
            OverloadView::from(o).summary(),
            "",
            "a calm swbd shows nothing"
        );
        o.invites_refused = 42;
        assert_eq!(OverloadView::from(o).summary(), " overload-refused 42");
        o.refused_share = 0.456;
        o.admission_limit = 1950.4;
        o.delay = Some(prost_types::Duration {
            seconds: 0,
            nanos: 12_300_000,
        });
        assert_eq!(
            OverloadView::from(o).summary(),
            " OVERLOAD limit 1950/s refusing 46% (delay 12ms) overload-refused 42"
        );
        o.enabled = false;
        o.refused_share = 0.0;
        o.admission_limit = 0.0;
        o.invites_refused = 0;
        assert_eq!(OverloadView::from(o).summary(), " overload-control off");
    }

    #[test]
    fn lost_call_record_writes_are_shown_for_a_shared_store() {
        let mut s = pb::StateStoreStatus {
            backend: "redis".into(),
            up: true,
            ..Default::default()
        };
        assert_eq!(StateStoreView::from(s.clone()).summary(), " state redis up");
        s.up = false;
        s.pending_writes = 3;
        s.saved_call_writes_lost = 2;
        assert_eq!(
            StateStoreView::from(s).summary(),
            " state redis DOWN queued 3 call-writes-lost 2"
        );
    }

    #[test]
    fn relay_latency_is_shown_once_packets_were_measured() {
        assert_eq!(relay_latency(None), "");
        let mut r = pb::RelayLatency::default();
        assert_eq!(relay_latency(Some(&r)), "", "no packets yet");
        r.packets = 10;
        r.p99_ns = 12_345;
        r.max_ns = 1_234_567;
        assert_eq!(relay_latency(Some(&r)), " relay p99 12us max 1.2ms");
        assert_eq!(duration_ns(999), "999ns");
        assert_eq!(duration_ns(2_500_000_000), "2.5s");
    }
}
