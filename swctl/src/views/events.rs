//! Events as `swctl events` prints them (and `swctl top` logs security
//! events): one view for every kind, stable JSON field names (JSON.md).

use serde::Serialize;
use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::signaling_event::Event as SigEvent;

use super::{call_state, clock, node_state, rfc3339};

/// One event.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventView {
    /// Which swbd.
    pub backend: String,
    /// When it happened.
    pub at: Option<String>,
    /// `call`, `registration`, `security`, `dialplan` or `node`.
    pub kind: &'static str,
    /// What happened, by kind: `created`.. `ended`; `added`.. `expired`;
    /// `auth-failure`..; `applied`, `refused`; the node state.
    pub event: String,
    /// What it happened to: call id, address of record, source address,
    /// dialplan version, node name.
    pub subject: String,
    /// One human line.
    pub detail: String,
    /// Security events only: every field of the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security: Option<SecurityEventView>,
    /// `HH:MM:SS` for tables (not serialized).
    #[serde(skip)]
    pub clock: String,
}

/// A security event's fields.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SecurityEventView {
    /// `auth-failure`, `source-blocked`, `source-unblocked`,
    /// `blocked-request`, `acl-dropped`, `rate-limited`, `overload`,
    /// `identity-refused`, `unknown`.
    pub kind: &'static str,
    /// `udp 203.0.113.5:5060`, or `(other sources)`.
    pub source: String,
    /// User named by the request (peer text), may be empty.
    pub user: String,
    /// Why.
    pub reason: String,
    /// Incidents this event stands for.
    pub count: u64,
    /// A summary of `count` incidents within `interval_secs`.
    pub summary: bool,
    /// Aggregation interval.
    pub interval_secs: i64,
}

/// Lowercase name of a security event kind.
pub fn security_kind(v: i32) -> &'static str {
    match pb::SecurityEventKind::try_from(v).unwrap_or_default() {
        pb::SecurityEventKind::Unspecified => "unknown",
        pb::SecurityEventKind::AuthFailure => "auth-failure",
        pb::SecurityEventKind::SourceBlocked => "source-blocked",
        pb::SecurityEventKind::SourceUnblocked => "source-unblocked",
        pb::SecurityEventKind::BlockedRequest => "blocked-request",
        pb::SecurityEventKind::AclDropped => "acl-dropped",
        pb::SecurityEventKind::RateLimited => "rate-limited",
        pb::SecurityEventKind::Overload => "overload",
        pb::SecurityEventKind::IdentityRefused => "identity-refused",
    }
}

impl SecurityEventView {
    /// From the admin message.
    pub fn new(s: &pb::SecurityEvent) -> Self {
        Self {
            kind: security_kind(s.kind),
            source: s.source.clone(),
            user: s.user.clone(),
            reason: s.reason.clone(),
            count: s.count,
            summary: s.summary,
            interval_secs: s.interval.as_ref().map(|d| d.seconds).unwrap_or(0),
        }
    }

    /// `wrong password (user 1001)`, or for a summary
    /// `29 more in 10 s, last: wrong password (user 1001)`.
    pub fn detail(&self) -> String {
        let user = if self.user.is_empty() {
            String::new()
        } else {
            format!(" (user {:?})", self.user)
        };
        if self.summary {
            format!(
                "{} more in {} s, last: {}{user}",
                self.count, self.interval_secs, self.reason
            )
        } else {
            format!("{}{user}", self.reason)
        }
    }
}

/// `security auth-failure udp 1.2.3.4:5060: wrong password (user "1001")`:
/// the line `swctl top` logs.
pub fn security_text(s: &pb::SecurityEvent) -> String {
    let v = SecurityEventView::new(s);
    format!("security {} {}: {}", v.kind, v.source, v.detail())
}

/// What a migration event says: `call abc moved rtp-a -> rtp-b`, `call
/// abc stays on rtp-a: B leg refused (488)`, `rtp-a: 12 calls to move`,
/// `rtp-a done: 11 moved, 1 not moved`.
pub fn migration_text(m: &pb::MigrationEvent) -> String {
    use pb::MigrationEventKind as K;
    match K::try_from(m.kind).unwrap_or_default() {
        K::Begun => format!("{}: {} calls to move", m.node, m.calls),
        K::Started => format!("call {} moving off {}", m.call_id, m.node),
        K::Moved => format!("call {} moved {} -> {}", m.call_id, m.node, m.target),
        K::Failed => format!("call {} stays on {}: {}", m.call_id, m.node, m.detail),
        K::Done => format!("{} done: {} moved, {} not moved", m.node, m.moved, m.failed),
        K::Unspecified => format!("{}: {}", m.node, m.detail),
    }
}

fn lower(name: &str) -> String {
    name.to_ascii_lowercase()
}

impl EventView {
    /// The view of one event from `backend`, or `None` for markers
    /// (`SnapshotDone`) and empty events.
    pub fn new(backend: &str, e: &pb::SignalingEvent) -> Option<Self> {
        let (kind, event, subject, detail, security) = match e.event.as_ref()? {
            SigEvent::Call(c) => {
                let call = c.call.as_ref()?;
                let kind = pb::CallEventKind::try_from(c.kind).unwrap_or_default();
                let mut detail = format!(
                    "{} -> {} {}",
                    call.caller,
                    call.destination,
                    call_state(call.state)
                );
                if call.end_status != 0 {
                    detail.push_str(&format!(" {}", call.end_status));
                }
                if !call.end_cause.is_empty() {
                    detail.push_str(&format!(" ({})", call.end_cause));
                }
                (
                    "call",
                    lower(kind.as_str_name().trim_start_matches("CALL_EVENT_KIND_")),
                    call.call_id.clone(),
                    detail,
                    None,
                )
            }
            SigEvent::Registration(r) => {
                let reg = r.registration.as_ref()?;
                let kind = pb::RegistrationEventKind::try_from(r.kind).unwrap_or_default();
                (
                    "registration",
                    lower(
                        kind.as_str_name()
                            .trim_start_matches("REGISTRATION_EVENT_KIND_"),
                    ),
                    reg.aor.clone(),
                    format!("{} from {}", reg.contact, reg.source),
                    None,
                )
            }
            SigEvent::Dialplan(d) => {
                let detail = if d.applied {
                    format!("in force, from {}", d.source)
                } else {
                    let first = d
                        .errors
                        .first()
                        .map(|e| super::FileErrorView::new(e).to_string())
                        .unwrap_or_default();
                    format!("reload of {} refused: {first}", d.source)
                };
                (
                    "dialplan",
                    if d.applied { "applied" } else { "refused" }.to_string(),
                    d.version.clone(),
                    detail,
                    None,
                )
            }
            SigEvent::MediaNode(n) => {
                let node = n.node.as_ref()?;
                let detail = if node.last_error.is_empty() {
                    format!("{} calls {}", node.address, node.active_calls)
                } else {
                    format!("{}: {}", node.address, node.last_error)
                };
                (
                    "node",
                    node_state(node.state).to_string(),
                    node.name.clone(),
                    detail,
                    None,
                )
            }
            SigEvent::Security(s) => {
                let v = SecurityEventView::new(s);
                (
                    "security",
                    v.kind.to_string(),
                    v.source.clone(),
                    v.detail(),
                    Some(v),
                )
            }
            SigEvent::Migration(m) => (
                "migration",
                lower(
                    pb::MigrationEventKind::try_from(m.kind)
                        .unwrap_or_default()
                        .as_str_name()
                        .trim_start_matches("MIGRATION_EVENT_KIND_"),
                ),
                if m.call_id.is_empty() {
                    m.node.clone()
                } else {
                    m.call_id.clone()
                },
                migration_text(m),
                None,
            ),
            SigEvent::SnapshotDone(_) => return None,
        };
        Some(Self {
            backend: backend.to_string(),
            at: rfc3339(e.at.as_ref()),
            kind,
            event,
            subject,
            detail,
            security,
            clock: clock(e.at.as_ref()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn security(summary: bool, count: u64) -> pb::SignalingEvent {
        pb::SignalingEvent {
            at: Some(prost_types::Timestamp {
                seconds: 1_790_000_000,
                nanos: 0,
            }),
            is_snapshot: false,
            event: Some(SigEvent::Security(pb::SecurityEvent {
                kind: pb::SecurityEventKind::AuthFailure as i32,
                source: "udp 127.0.0.1:5071".into(),
                user: "1001".into(),
                reason: "wrong password".into(),
                count,
                summary,
                interval: Some(prost_types::Duration {
                    seconds: 10,
                    nanos: 0,
                }),
            })),
        }
    }

    #[test]
    fn security_events_read_as_one_line() {
        let first = EventView::new("pbx1", &security(false, 1)).expect("view");
        assert_eq!(first.kind, "security");
        assert_eq!(first.event, "auth-failure");
        assert_eq!(first.subject, "udp 127.0.0.1:5071");
        assert_eq!(first.detail, "wrong password (user \"1001\")");
        let sum = EventView::new("pbx1", &security(true, 29)).expect("view");
        assert_eq!(
            sum.detail,
            "29 more in 10 s, last: wrong password (user \"1001\")"
        );
        let json = serde_json::to_value(&sum).expect("json");
        assert_eq!(json["security"]["count"], 29);
        assert_eq!(json["security"]["summary"], true);
        assert!(json.get("clock").is_none());
    }

    #[test]
    fn markers_are_not_events() {
        let done = pb::SignalingEvent {
            at: None,
            is_snapshot: true,
            event: Some(SigEvent::SnapshotDone(pb::SnapshotDone {})),
        };
        assert_eq!(EventView::new("x", &done), None);
    }
}
