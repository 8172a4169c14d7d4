//! The call detail record: one per call attempt, built from the call's
//! [`CallRecord`] when it ends. Its JSON (one object per line of the CDR
//! file, the `record` column in PostgreSQL) is documented field by field
//! in `swctl/JSON.md`, "swctl calls history"; fields may be added, none
//! renamed. Strings that came from peers (caller, URIs, Call-IDs) are
//! JSON-escaped like any string; nothing here is trusted on read either.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use switchboard_proto::admin::v1 as pb;
use switchboard_proto::media::v1 as media;

use super::cause;
use super::quality;
use crate::b2bua::record::{CallRecord, LegState};

/// Version of the record's shape (the `v` field).
pub const VERSION: u32 = 1;

/// Answered or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallStatus {
    /// The caller got a 2xx.
    Answered,
    /// Never answered: rejected, cancelled, failed.
    #[default]
    Failed,
}

impl CallStatus {
    /// `"answered"` / `"failed"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Answered => "answered",
            CallStatus::Failed => "failed",
        }
    }
}

/// One direction's final RTP counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Direction {
    /// Packets.
    pub packets: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Packets lost (receive direction only).
    pub lost: i64,
    /// Interarrival jitter, ms (receive direction only).
    pub jitter_ms: f64,
}

/// A leg's final RTP statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rtp {
    /// What the party sent us.
    pub rx: Direction,
    /// What we sent the party.
    pub tx: Direction,
    /// Estimated MOS of `rx` (quality.rs); `null` when nothing was received.
    pub mos: Option<f64>,
}

/// One leg.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Leg {
    /// `"a"` or `"b"`.
    pub role: String,
    /// SIP Call-ID of the leg.
    pub sip_call_id: String,
    /// Remote party URI.
    pub remote_uri: String,
    /// `"udp 127.0.0.1:5071"`.
    pub remote_address: String,
    /// Dial target (B-legs).
    pub target: String,
    /// Final status of the leg's INVITE (sent to A; received from B; 487
    /// for a B-leg swbd cancelled; 0 when none).
    pub final_code: u16,
    /// `bye_received`, `bye_sent`, `rejected`, `cancelled`, `transferred`, `failed`.
    pub end: String,
    /// Negotiated codec.
    pub codec: String,
    /// Media session on the node.
    pub media_session_id: String,
    /// Final RTP statistics; `null` when the node never reported them
    /// (node lost, no media session).
    pub rtp: Option<Rtp>,
}

/// A dial target that never became a leg.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailedTarget {
    /// `user/1029`, `gateway/NAME`, a SIP URI.
    pub target: String,
    /// Its status.
    pub code: u16,
}

/// The call detail record (module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cdr {
    /// Shape version ([`VERSION`]).
    pub v: u32,
    /// swbd's call id.
    pub call_id: String,
    /// swbd node (`node_id`) that handled the call.
    pub node_id: String,
    /// Answered or failed.
    pub status: CallStatus,
    /// Final status the caller got (200 when answered).
    pub sip_code: u16,
    /// Caller: the authenticated identity.
    pub caller: String,
    /// Destination (Request-URI user).
    pub destination: String,
    /// Route that matched.
    pub route_id: String,
    /// Dialplan version.
    pub dialplan_version: String,
    /// INVITE arrival.
    #[serde(with = "time")]
    pub start_time: SystemTime,
    /// Answer.
    #[serde(with = "opt_time")]
    pub answer_time: Option<SystemTime>,
    /// End.
    #[serde(with = "time")]
    pub end_time: SystemTime,
    /// End minus start, ms.
    pub duration_ms: u64,
    /// End minus answer, ms (0 when never answered).
    pub billsec_ms: u64,
    /// Human end cause.
    pub end_cause: String,
    /// Machine end reason (cause.rs).
    pub end_reason: String,
    /// Who ended the call (cause.rs).
    pub hangup_by: String,
    /// Media node.
    pub media_node: String,
    /// Codec of the caller's leg.
    pub codec: String,
    /// Media flowed one way only (quality.rs).
    pub one_way: bool,
    /// No media either way (quality.rs).
    pub silent: bool,
    /// The worst leg's estimated MOS; `null` when none was estimated.
    pub mos: Option<f64>,
    /// Legs, A first.
    pub legs: Vec<Leg>,
    /// Dial targets that never became legs.
    pub failed_targets: Vec<FailedTarget>,
}

impl Default for Cdr {
    fn default() -> Self {
        Cdr {
            v: VERSION,
            call_id: String::new(),
            node_id: String::new(),
            status: CallStatus::Failed,
            sip_code: 0,
            caller: String::new(),
            destination: String::new(),
            route_id: String::new(),
            dialplan_version: String::new(),
            start_time: SystemTime::UNIX_EPOCH,
            answer_time: None,
            end_time: SystemTime::UNIX_EPOCH,
            duration_ms: 0,
            billsec_ms: 0,
            end_cause: String::new(),
            end_reason: String::new(),
            hangup_by: String::new(),
            media_node: String::new(),
            codec: String::new(),
            one_way: false,
            silent: false,
            mos: None,
            legs: Vec::new(),
            failed_targets: Vec::new(),
        }
    }
}

fn direction(d: Option<&media::DirectionStats>) -> Direction {
    d.map(|d| Direction {
        packets: d.packets,
        bytes: d.bytes,
        lost: d.packets_lost,
        jitter_ms: if d.jitter_ms.is_finite() {
            (d.jitter_ms * 100.0).round() / 100.0
        } else {
            0.0
        },
    })
    .unwrap_or_default()
}

fn rtp(stats: &media::SessionStats) -> Rtp {
    Rtp {
        rx: direction(stats.rx.as_ref()),
        tx: direction(stats.tx.as_ref()),
        mos: quality::session_mos(stats),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Cdr {
    /// The record of an ended call.
    pub fn from_call(r: &CallRecord, node_id: &str) -> Cdr {
        let end_time = r.ended_at.unwrap_or_else(SystemTime::now);
        let answered = r.answered_at.is_some();
        let facts = &r.cdr;
        let b_failed = r
            .legs
            .iter()
            .any(|l| !l.is_a && facts.leg_code(&l.sip_call_id).is_some());
        let (reason, by) = cause::classify(&r.end_cause, facts, b_failed);
        let legs: Vec<Leg> = r
            .legs
            .iter()
            .map(|l| {
                let (final_code, end) = leg_end(l, r, reason);
                Leg {
                    role: if l.is_a { "a" } else { "b" }.into(),
                    sip_call_id: l.sip_call_id.clone(),
                    remote_uri: l.remote_uri.clone(),
                    remote_address: l.remote_address.clone(),
                    target: l.target.clone(),
                    final_code,
                    end: end.into(),
                    codec: l.codec.clone(),
                    media_session_id: l.media_session_id.clone(),
                    rtp: facts.stats_of(&l.media_session_id).map(rtp),
                }
            })
            .collect();
        let a_stats = r
            .legs
            .iter()
            .find(|l| l.is_a)
            .and_then(|l| facts.stats_of(&l.media_session_id));
        let (one_way, silent) = match a_stats {
            Some(s) if answered => quality::flags(s),
            _ => (false, false),
        };
        let mos = legs
            .iter()
            .filter_map(|l| l.rtp.as_ref().and_then(|r| r.mos))
            .min_by(f64::total_cmp);
        let codec = r
            .legs
            .iter()
            .find(|l| l.is_a && !l.codec.is_empty())
            .or_else(|| r.legs.iter().find(|l| !l.codec.is_empty()))
            .map(|l| l.codec.clone())
            .unwrap_or_default();
        Cdr {
            v: VERSION,
            call_id: r.id.clone(),
            node_id: node_id.to_string(),
            status: if answered {
                CallStatus::Answered
            } else {
                CallStatus::Failed
            },
            sip_code: if answered { 200 } else { r.end_status },
            caller: r.caller.clone(),
            destination: r.destination.clone(),
            route_id: r.route_id.clone(),
            dialplan_version: r.dialplan_version.clone(),
            start_time: r.created_at,
            answer_time: r.answered_at,
            end_time,
            duration_ms: millis(end_time.duration_since(r.created_at).unwrap_or_default()),
            billsec_ms: r
                .answered_at
                .map(|a| millis(end_time.duration_since(a).unwrap_or_default()))
                .unwrap_or(0),
            end_cause: r.end_cause.clone(),
            end_reason: reason.into(),
            hangup_by: by.into(),
            media_node: r.media_node.clone(),
            codec,
            one_way,
            silent,
            mos,
            legs,
            failed_targets: facts
                .failed_targets()
                .iter()
                .map(|(target, code)| FailedTarget {
                    target: target.clone(),
                    code: *code,
                })
                .collect(),
        }
    }

    /// Every SIP Call-ID of the call's legs.
    pub fn sip_call_ids(&self) -> Vec<String> {
        self.legs.iter().map(|l| l.sip_call_id.clone()).collect()
    }

    /// The admin view.
    pub fn to_proto(&self) -> pb::CallDetailRecord {
        let dir = |d: &Direction| pb::CdrDirection {
            packets: d.packets,
            bytes: d.bytes,
            lost: d.lost,
            jitter_ms: d.jitter_ms,
        };
        pb::CallDetailRecord {
            call_id: self.call_id.clone(),
            node_id: self.node_id.clone(),
            status: self.status.as_str().into(),
            sip_code: u32::from(self.sip_code),
            caller: self.caller.clone(),
            destination: self.destination.clone(),
            route_id: self.route_id.clone(),
            dialplan_version: self.dialplan_version.clone(),
            start_time: Some(switchboard_proto::timestamp(self.start_time)),
            answer_time: self.answer_time.map(switchboard_proto::timestamp),
            end_time: Some(switchboard_proto::timestamp(self.end_time)),
            end_cause: self.end_cause.clone(),
            end_reason: self.end_reason.clone(),
            hangup_by: self.hangup_by.clone(),
            media_node: self.media_node.clone(),
            codec: self.codec.clone(),
            one_way: self.one_way,
            silent: self.silent,
            mos: self.mos.unwrap_or(0.0),
            legs: self
                .legs
                .iter()
                .map(|l| pb::CdrLeg {
                    role: l.role.clone(),
                    sip_call_id: l.sip_call_id.clone(),
                    remote_uri: l.remote_uri.clone(),
                    remote_address: l.remote_address.clone(),
                    target: l.target.clone(),
                    final_code: u32::from(l.final_code),
                    end: l.end.clone(),
                    codec: l.codec.clone(),
                    media_session_id: l.media_session_id.clone(),
                    rtp: l.rtp.as_ref().map(|r| pb::CdrRtp {
                        rx: Some(dir(&r.rx)),
                        tx: Some(dir(&r.tx)),
                        mos: r.mos.unwrap_or(0.0),
                    }),
                })
                .collect(),
            failed_targets: self
                .failed_targets
                .iter()
                .map(|t| pb::CdrTarget {
                    target: t.target.clone(),
                    code: u32::from(t.code),
                })
                .collect(),
        }
    }
}

/// `(final_code, end)` of one leg (see [`Leg`]).
fn leg_end(
    l: &crate::b2bua::record::LegRecord,
    r: &CallRecord,
    reason: &str,
) -> (u16, &'static str) {
    let transfer = reason == "transfer";
    if l.is_a {
        if r.answered_at.is_some() {
            let end = match reason {
                "caller_bye" => "bye_received",
                _ if transfer => "transferred",
                _ => "bye_sent",
            };
            return (200, end);
        }
        let code = r.end_status;
        let end = match (reason, code) {
            ("caller_cancel", _) => "cancelled",
            (_, c) if c >= 300 => "rejected",
            _ => "failed",
        };
        return (code, end);
    }
    if let Some(code) = r.cdr.leg_code(&l.sip_call_id) {
        return (code, if code == 487 { "cancelled" } else { "rejected" });
    }
    match l.state {
        LegState::Confirmed => (
            200,
            match reason {
                "callee_bye" => "bye_received",
                _ if transfer => "transferred",
                _ => "bye_sent",
            },
        ),
        LegState::Terminated if transfer => (200, "transferred"),
        LegState::Terminated => (0, "failed"),
        // Still ringing when the call ended: swbd CANCELled it.
        LegState::Trying | LegState::Early => (487, "cancelled"),
    }
}

/// `SystemTime` as RFC 3339 (`2026-11-27T10:04:31.250Z`) in JSON.
mod time {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};
    use switchboard_proto::support::time::{format_rfc3339, parse_rfc3339};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_rfc3339(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        parse_rfc3339(&text).ok_or_else(|| serde::de::Error::custom("not an RFC 3339 time"))
    }
}

/// `Option<SystemTime>` as RFC 3339 or `null`.
mod opt_time {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};
    use switchboard_proto::support::time::{format_rfc3339, parse_rfc3339};

    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&format_rfc3339(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => parse_rfc3339(&text)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom("not an RFC 3339 time")),
            None => Ok(None),
        }
    }
}
