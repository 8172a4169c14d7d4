//! What swctl prints: plain structs with stable field names, built from the
//! protobuf messages. `-o json|yaml` serializes these; `swctl/JSON.md` documents
//! every field. Tables, `swctl top` and `swctl web` read the same values, so the
//! three surfaces never disagree.

pub mod events;
pub mod ladder;

use serde::Serialize;
use switchboard_proto::admin::v1 as pb;
use switchboard_proto::media::v1 as media;

/// RFC 3339 UTC (`2026-11-27T10:04:31.250Z`), or `None` when unset.
pub fn rfc3339(t: Option<&prost_types::Timestamp>) -> Option<String> {
    let t = t?;
    if t.seconds == 0 && t.nanos == 0 {
        return None;
    }
    let (y, mo, d, h, mi, s) = civil(t.seconds);
    let ms = t.nanos.clamp(0, 999_999_999) / 1_000_000;
    Some(format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z"
    ))
}

/// `HH:MM:SS` UTC of a timestamp (`-` when unset).
pub fn clock(t: Option<&prost_types::Timestamp>) -> String {
    match t {
        Some(t) if t.seconds != 0 => {
            let (_, _, _, h, mi, s) = civil(t.seconds);
            format!("{h:02}:{mi:02}:{s:02}")
        }
        _ => "-".into(),
    }
}

/// `HH:MM:SS.mmm` UTC of a timestamp.
pub fn clock_ms(t: Option<&prost_types::Timestamp>) -> String {
    match t {
        Some(t) if t.seconds != 0 => {
            let (_, _, _, h, mi, s) = civil(t.seconds);
            let ms = t.nanos.clamp(0, 999_999_999) / 1_000_000;
            format!("{h:02}:{mi:02}:{s:02}.{ms:03}")
        }
        _ => "-".into(),
    }
}

/// Seconds since the Unix epoch to (year, month, day, hour, minute, second), UTC.
/// Howard Hinnant's `civil_from_days`.
fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

/// Seconds as `MM:SS` or `H:MM:SS`.
pub fn mmss(secs: i64) -> String {
    let secs = secs.max(0);
    if secs >= 3600 {
        format!("{}:{:02}:{:02}", secs / 3600, (secs % 3600) / 60, secs % 60)
    } else {
        format!("{:02}:{:02}", secs / 60, secs % 60)
    }
}

/// Seconds between two timestamps (`to - from`), 0 when either is unset.
pub fn secs_between(from: Option<&prost_types::Timestamp>, to: &prost_types::Timestamp) -> i64 {
    match from {
        Some(f) if f.seconds != 0 => to.seconds.saturating_sub(f.seconds),
        _ => 0,
    }
}

/// Lowercase name of a call state (`bridged`).
pub fn call_state(v: i32) -> &'static str {
    match pb::CallState::try_from(v).unwrap_or_default() {
        pb::CallState::Unspecified => "unknown",
        pb::CallState::Routing => "routing",
        pb::CallState::Ringing => "ringing",
        pb::CallState::EarlyMedia => "early-media",
        pb::CallState::Answered => "answered",
        pb::CallState::Bridged => "bridged",
        pb::CallState::Ending => "ending",
        pb::CallState::Ended => "ended",
    }
}

/// Lowercase name of a leg state.
pub fn leg_state(v: i32) -> &'static str {
    match pb::LegState::try_from(v).unwrap_or_default() {
        pb::LegState::Unspecified => "unknown",
        pb::LegState::Trying => "trying",
        pb::LegState::Early => "early",
        pb::LegState::Confirmed => "confirmed",
        pb::LegState::Terminated => "terminated",
    }
}

/// `a`, `b` or `?`.
pub fn leg_role(v: i32) -> &'static str {
    match pb::LegRole::try_from(v).unwrap_or_default() {
        pb::LegRole::A => "a",
        pb::LegRole::B => "b",
        pb::LegRole::Unspecified => "?",
    }
}

/// Lowercase name of a media node state.
pub fn node_state(v: i32) -> &'static str {
    match pb::MediaNodeState::try_from(v).unwrap_or_default() {
        pb::MediaNodeState::Unspecified => "unknown",
        pb::MediaNodeState::Up => "up",
        pb::MediaNodeState::Down => "down",
        pb::MediaNodeState::Draining => "draining",
    }
}

/// Codec name (`PCMU`), empty when not negotiated.
pub fn codec(v: i32) -> &'static str {
    match media::Codec::try_from(v).unwrap_or_default() {
        media::Codec::Unspecified => "",
        media::Codec::Pcmu => "PCMU",
        media::Codec::Pcma => "PCMA",
    }
}

/// SDP direction name.
pub fn direction(v: i32) -> &'static str {
    match media::Direction::try_from(v).unwrap_or_default() {
        media::Direction::Unspecified | media::Direction::Sendrecv => "sendrecv",
        media::Direction::Sendonly => "sendonly",
        media::Direction::Recvonly => "recvonly",
        media::Direction::Inactive => "inactive",
    }
}

/// Loss percentage of a receive direction (lost / (received + lost)).
pub fn loss_percent(rx: &media::DirectionStats) -> f64 {
    switchboard_proto::quality::loss_percent(rx.packets, rx.packets_lost)
}

/// One call (`swctl calls list|show`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CallView {
    /// Backend label (which swbd).
    pub backend: String,
    /// swbd's call id.
    pub call_id: String,
    /// routing, ringing, early-media, answered, bridged, ending, ended, unknown.
    pub state: String,
    /// From user of the A-leg.
    pub caller: String,
    /// Request-URI user of the A-leg.
    pub destination: String,
    /// Route that matched.
    pub route_id: String,
    /// Dialplan version the call runs under.
    pub dialplan_version: String,
    /// Media node carrying the call.
    pub media_node: String,
    /// RFC 3339 UTC.
    pub created_at: Option<String>,
    /// RFC 3339 UTC.
    pub answered_at: Option<String>,
    /// RFC 3339 UTC.
    pub ended_at: Option<String>,
    /// Seconds since answer (or total, once ended).
    pub duration_secs: f64,
    /// Why the call ended.
    pub end_cause: String,
    /// SIP status the A-leg got when it ended with an error, else 0.
    pub end_status: u32,
    /// Legs, A first.
    pub legs: Vec<LegView>,
    /// SIP ladder (only `calls show`; empty in lists).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ladder: Vec<LadderView>,
}

/// One leg of a call.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LegView {
    /// `a` or `b`.
    pub role: String,
    /// SIP Call-ID of this leg.
    pub sip_call_id: String,
    /// Remote party URI.
    pub remote_uri: String,
    /// Transport and remote address.
    pub remote_address: String,
    /// trying, early, confirmed, terminated, unknown.
    pub state: String,
    /// Media session on the node.
    pub media_session_id: String,
    /// Negotiated codec, empty until known.
    pub codec: String,
    /// Dial target (B-legs).
    pub target: String,
}

/// One SIP message of a call's ladder.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LadderView {
    /// RFC 3339 UTC.
    pub at: Option<String>,
    /// `a` or `b`.
    pub leg: String,
    /// `in` (received by swbd) or `out` (sent by swbd).
    pub direction: String,
    /// "INVITE", "180 Ringing", ...
    pub summary: String,
    /// The whole message.
    pub raw: String,
}

impl CallView {
    /// Build from a call of `backend`.
    pub fn new(backend: &str, c: &pb::Call) -> Self {
        Self {
            backend: backend.to_string(),
            call_id: c.call_id.clone(),
            state: call_state(c.state).into(),
            caller: c.caller.clone(),
            destination: c.destination.clone(),
            route_id: c.route_id.clone(),
            dialplan_version: c.dialplan_version.clone(),
            media_node: c.media_node.clone(),
            created_at: rfc3339(c.created_at.as_ref()),
            answered_at: rfc3339(c.answered_at.as_ref()),
            ended_at: rfc3339(c.ended_at.as_ref()),
            duration_secs: c
                .duration
                .as_ref()
                .map(|d| d.seconds as f64 + f64::from(d.nanos) / 1e9)
                .unwrap_or(0.0),
            end_cause: c.end_cause.clone(),
            end_status: c.end_status,
            legs: c
                .legs
                .iter()
                .map(|l| LegView {
                    role: leg_role(l.role).into(),
                    sip_call_id: l.sip_call_id.clone(),
                    remote_uri: l.remote_uri.clone(),
                    remote_address: l.remote_address.clone(),
                    state: leg_state(l.state).into(),
                    media_session_id: l.media_session_id.clone(),
                    codec: l.codec.clone(),
                    target: l.target.clone(),
                })
                .collect(),
            ladder: c
                .ladder
                .iter()
                .map(|m| LadderView {
                    at: rfc3339(m.at.as_ref()),
                    leg: leg_role(m.leg).into(),
                    direction: if m.inbound { "in" } else { "out" }.into(),
                    summary: m.summary.clone(),
                    raw: m.raw.clone(),
                })
                .collect(),
        }
    }

    /// Codec of the first leg that has one.
    pub fn codec(&self) -> &str {
        self.legs
            .iter()
            .map(|l| l.codec.as_str())
            .find(|c| !c.is_empty())
            .unwrap_or("")
    }
}

/// One registrar binding (`swctl registrations list`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RegistrationView {
    /// Backend label.
    pub backend: String,
    /// Address of record.
    pub aor: String,
    /// Contact URI.
    pub contact: String,
    /// Where the REGISTER came from.
    pub source: String,
    /// q-value.
    pub q: f32,
    /// RFC 3339 UTC.
    pub expires_at: Option<String>,
    /// Seconds left (relative to when swctl printed it).
    pub expires_in_secs: i64,
    /// RFC 3339 UTC.
    pub registered_at: Option<String>,
    /// User-Agent.
    pub user_agent: String,
    /// Call-ID of the registering UA.
    pub sip_call_id: String,
}

impl RegistrationView {
    /// Build from a binding of `backend`, `now` for `expires_in_secs`.
    pub fn new(backend: &str, r: &pb::Registration, now: &prost_types::Timestamp) -> Self {
        Self {
            backend: backend.to_string(),
            aor: r.aor.clone(),
            contact: r.contact.clone(),
            source: r.source.clone(),
            q: r.q,
            expires_at: rfc3339(r.expires_at.as_ref()),
            expires_in_secs: r
                .expires_at
                .as_ref()
                .map(|e| e.seconds.saturating_sub(now.seconds).max(0))
                .unwrap_or(0),
            registered_at: rfc3339(r.registered_at.as_ref()),
            user_agent: r.user_agent.clone(),
            sip_call_id: r.sip_call_id.clone(),
        }
    }
}

/// One media node of swbd's pool (`swctl nodes list`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeView {
    /// Backend label (which swbd's pool).
    pub backend: String,
    /// Node name.
    pub name: String,
    /// gRPC address.
    pub address: String,
    /// up, down, draining, unknown.
    pub state: String,
    /// Calls of this swbd on the node.
    pub active_calls: u32,
    /// Sessions on the node.
    pub sessions: u32,
    /// Free RTP port pairs.
    pub free_port_pairs: u32,
    /// RFC 3339 UTC of the last good health check.
    pub last_seen: Option<String>,
    /// Draining and empty: safe to stop.
    pub drained: bool,
    /// Last health check error.
    pub last_error: String,
    /// Drain with migration: calls still to move, moved, not moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migration: Option<String>,
}

/// A node's drain-with-migration progress in words ("migrating 3: 5
/// moved, 1 not moved"); `None` when no migration ran.
pub fn migration_progress(n: &pb::MediaNode) -> Option<String> {
    if n.migrating == 0 && n.migrated == 0 && n.migration_failed == 0 {
        return None;
    }
    let head = if n.migrating > 0 {
        format!("migrating {}: ", n.migrating)
    } else {
        "migrated: ".to_string()
    };
    Some(format!(
        "{head}{} moved, {} not moved",
        n.migrated, n.migration_failed
    ))
}

impl NodeView {
    /// Build from a node of `backend`.
    pub fn new(backend: &str, n: &pb::MediaNode) -> Self {
        Self {
            backend: backend.to_string(),
            name: n.name.clone(),
            address: n.address.clone(),
            state: node_state(n.state).into(),
            active_calls: n.active_calls,
            sessions: n.sessions,
            free_port_pairs: n.free_port_pairs,
            last_seen: rfc3339(n.last_seen.as_ref()),
            drained: n.drained,
            last_error: n.last_error.clone(),
            migration: migration_progress(n),
        }
    }
}

/// Counters of one RTP direction.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct DirectionView {
    /// Packets.
    pub packets: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Lost packets (receive direction).
    pub packets_lost: i64,
    /// Loss in percent (receive direction).
    pub loss_percent: f64,
    /// Interarrival jitter in ms (receive direction).
    pub jitter_ms: f64,
    /// RFC 3339 UTC of the last packet.
    pub last_packet_at: Option<String>,
}

impl DirectionView {
    fn new(d: Option<&media::DirectionStats>) -> Self {
        match d {
            Some(d) => Self {
                packets: d.packets,
                bytes: d.bytes,
                packets_lost: d.packets_lost,
                loss_percent: loss_percent(d),
                jitter_ms: d.jitter_ms,
                last_packet_at: rfc3339(d.last_packet_at.as_ref()),
            },
            None => Self::default(),
        }
    }
}

/// One media session on a swrtp node (`swctl media sessions`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SessionView {
    /// Backend label (which swrtp).
    pub backend: String,
    /// Session id.
    pub session_id: String,
    /// Call id given by swbd.
    pub call_id: String,
    /// Leg label.
    pub leg: String,
    /// RFC 3339 UTC.
    pub created_at: Option<String>,
    /// PCMU, PCMA or empty.
    pub codec: String,
    /// sendrecv, sendonly, recvonly, inactive.
    pub direction: String,
    /// Local RTP port.
    pub rtp_port: u32,
    /// Our RTP address in SDP.
    pub local_rtp_address: String,
    /// Remote RTP address from SDP.
    pub remote_rtp_address: String,
    /// Where the peer's packets come from (latched).
    pub latched_address: String,
    /// Bridge peer session, empty if none.
    pub bridged_with: String,
    /// File playing, empty if none.
    pub playing: String,
    /// No RTP for the timeout.
    pub timed_out: bool,
    /// Owning swbd as `node_id/instance_id`; empty when the session has no
    /// owner (created by an older swbd: no lease).
    pub owner: String,
    /// Milliseconds until the lease lapses and the node reclaims the
    /// session; `None` (null) without an owner.
    pub lease_remaining_ms: Option<u64>,
    /// Received from the peer.
    pub rx: DirectionView,
    /// Sent to the peer.
    pub tx: DirectionView,
    /// Packets dropped (malformed, stranger).
    pub dropped: u64,
}

impl SessionView {
    /// Build from a session of `backend`.
    pub fn new(backend: &str, s: &pb::MediaSessionInfo) -> Self {
        let m = s.media.as_ref();
        let st = s.stats.as_ref();
        Self {
            backend: backend.to_string(),
            session_id: s.session_id.clone(),
            call_id: s.call_id.clone(),
            leg: s.leg.clone(),
            created_at: rfc3339(s.created_at.as_ref()),
            codec: m.map(|m| codec(m.codec)).unwrap_or("").into(),
            direction: m
                .map(|m| direction(m.direction))
                .unwrap_or("sendrecv")
                .into(),
            rtp_port: s.rtp_port,
            local_rtp_address: m.map(|m| m.local_rtp_address.clone()).unwrap_or_default(),
            remote_rtp_address: m.map(|m| m.remote_rtp_address.clone()).unwrap_or_default(),
            latched_address: st.map(|s| s.remote_address.clone()).unwrap_or_default(),
            bridged_with: s.bridged_with.clone(),
            playing: s.playing.clone(),
            timed_out: s.timed_out,
            owner: s.owner.clone(),
            lease_remaining_ms: (!s.owner.is_empty()).then_some(s.lease_remaining_ms),
            rx: DirectionView::new(st.and_then(|s| s.rx.as_ref())),
            tx: DirectionView::new(st.and_then(|s| s.tx.as_ref())),
            dropped: st.map(|s| s.dropped).unwrap_or(0),
        }
    }
}

/// One dialplan file error.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FileErrorView {
    /// File.
    pub file: String,
    /// 1-based line, 0 when unknown.
    pub line: u32,
    /// 1-based column, 0 when unknown.
    pub column: u32,
    /// What is wrong.
    pub message: String,
}

impl FileErrorView {
    /// Build from the proto.
    pub fn new(e: &pb::FileError) -> Self {
        Self {
            file: e.file.clone(),
            line: e.line,
            column: e.column,
            message: e.message.clone(),
        }
    }
}

impl std::fmt::Display for FileErrorView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        let t = prost_types::Timestamp {
            seconds: 1_795_774_471,
            nanos: 250_000_000,
        };
        assert_eq!(rfc3339(Some(&t)).unwrap(), "2026-11-27T10:14:31.250Z");
        assert_eq!(clock(Some(&t)), "10:14:31");
        let epoch_leap = prost_types::Timestamp {
            seconds: 951_782_400,
            nanos: 0,
        };
        assert_eq!(
            rfc3339(Some(&epoch_leap)).unwrap(),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(rfc3339(None), None);
    }

    #[test]
    fn durations_and_loss() {
        assert_eq!(mmss(133), "02:13");
        assert_eq!(mmss(3725), "1:02:05");
        assert_eq!(mmss(-4), "00:00");
        let rx = media::DirectionStats {
            packets: 990,
            packets_lost: 10,
            ..Default::default()
        };
        assert!((loss_percent(&rx) - 1.0).abs() < 1e-9);
        assert_eq!(loss_percent(&media::DirectionStats::default()), 0.0);
    }

    #[test]
    fn unknown_enum_values_are_named_not_panicked() {
        assert_eq!(call_state(99), "unknown");
        assert_eq!(leg_role(-1), "?");
        assert_eq!(node_state(42), "unknown");
        assert_eq!(codec(7), "");
    }
}
