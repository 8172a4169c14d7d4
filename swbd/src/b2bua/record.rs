//! What the admin sees of a call: a record the call task updates at each
//! state change, plus its SIP message ladder.

use std::collections::VecDeque;
use std::time::SystemTime;

use switchboard_proto::admin::v1 as pb;

/// Ladder entries kept per call (oldest dropped first).
const LADDER_MAX: usize = 48;
/// Bytes of a message kept in the ladder (the rest is cut).
const RAW_MAX: usize = 2048;
/// Ladder slots reserved up front: a bridged call logs ~8 messages and one
/// that ended ~11; growing by doubling would reserve 16.
const LADDER_START: usize = 12;

/// A provisional response or an ACK, without a body: nothing in it that
/// the ladder's summary line does not show.
fn summary_says_it_all(raw: &[u8]) -> bool {
    let bodiless = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .is_some_and(|end| raw.len() <= end + 4);
    bodiless && (raw.starts_with(b"SIP/2.0 1") || raw.starts_with(b"ACK "))
}

/// Overall call state (mirrors `switchboard.admin.v1.CallState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// Dialplan running.
    Routing,
    /// A B-leg rings.
    Ringing,
    /// Early media bridged.
    EarlyMedia,
    /// Answered by the dialplan (playback), no B-leg.
    Answered,
    /// Both legs up and bridged.
    Bridged,
    /// Teardown in progress.
    Ending,
    /// Over.
    Ended,
}

impl CallState {
    /// The admin enum.
    pub fn to_proto(self) -> pb::CallState {
        match self {
            CallState::Routing => pb::CallState::Routing,
            CallState::Ringing => pb::CallState::Ringing,
            CallState::EarlyMedia => pb::CallState::EarlyMedia,
            CallState::Answered => pb::CallState::Answered,
            CallState::Bridged => pb::CallState::Bridged,
            CallState::Ending => pb::CallState::Ending,
            CallState::Ended => pb::CallState::Ended,
        }
    }
}

/// Leg state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegState {
    /// INVITE sent/received.
    Trying,
    /// 1xx.
    Early,
    /// 2xx.
    Confirmed,
    /// Over.
    Terminated,
}

impl LegState {
    /// The admin enum.
    pub fn to_proto(self) -> pb::LegState {
        match self {
            LegState::Trying => pb::LegState::Trying,
            LegState::Early => pb::LegState::Early,
            LegState::Confirmed => pb::LegState::Confirmed,
            LegState::Terminated => pb::LegState::Terminated,
        }
    }
}

fn role(is_a: bool) -> pb::LegRole {
    if is_a { pb::LegRole::A } else { pb::LegRole::B }
}

/// One leg, for admin.
#[derive(Debug, Clone)]
pub struct LegRecord {
    /// A (inbound) or B (outbound).
    pub is_a: bool,
    /// SIP Call-ID of the leg.
    pub sip_call_id: String,
    /// Remote party URI.
    pub remote_uri: String,
    /// "udp 127.0.0.1:5071".
    pub remote_address: String,
    /// State.
    pub state: LegState,
    /// Media session id.
    pub media_session_id: String,
    /// Codec name.
    pub codec: String,
    /// Dial target (B-legs).
    pub target: String,
}

/// One ladder line.
#[derive(Debug, Clone)]
pub struct LadderEntry {
    /// When.
    pub at: SystemTime,
    /// Which leg.
    pub is_a: bool,
    /// Received (true) or sent.
    pub inbound: bool,
    /// "INVITE", "180 Ringing".
    pub summary: Box<str>,
    /// The message (cut at 2 KiB). Exact-size: a live call keeps ~8 of
    /// these. Empty for provisional responses and ACKs without a body:
    /// the summary says all they carry, and they are a third of a call's
    /// ladder.
    pub raw: Box<str>,
}

/// A call as the admin sees it.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// swbd call id.
    pub id: String,
    /// State.
    pub state: CallState,
    /// From user.
    pub caller: String,
    /// Request-URI user.
    pub destination: String,
    /// Route matched.
    pub route_id: String,
    /// Dialplan version.
    pub dialplan_version: String,
    /// Media node.
    pub media_node: String,
    /// INVITE arrival.
    pub created_at: SystemTime,
    /// A answered.
    pub answered_at: Option<SystemTime>,
    /// Ended.
    pub ended_at: Option<SystemTime>,
    /// Legs.
    pub legs: Vec<LegRecord>,
    /// End cause.
    pub end_cause: String,
    /// Final status to A when it failed.
    pub end_status: u16,
    /// SIP ladder.
    pub ladder: VecDeque<LadderEntry>,
    /// What the call's CDR needs beyond this record (cdr/facts.rs).
    pub cdr: crate::cdr::CallFacts,
}

impl CallRecord {
    /// A new call in Routing.
    pub fn new(id: String, caller: String, destination: String) -> Self {
        Self {
            id,
            state: CallState::Routing,
            caller,
            destination,
            route_id: String::new(),
            dialplan_version: String::new(),
            media_node: String::new(),
            created_at: SystemTime::now(),
            answered_at: None,
            ended_at: None,
            legs: Vec::new(),
            end_cause: String::new(),
            end_status: 0,
            ladder: VecDeque::new(),
            cdr: Default::default(),
        }
    }

    /// Append a ladder line.
    pub fn log_message(&mut self, is_a: bool, inbound: bool, summary: String, raw: &[u8]) {
        if self.ladder.len() >= LADDER_MAX {
            self.ladder.pop_front();
        }
        if self.ladder.capacity() == 0 {
            self.ladder.reserve_exact(LADDER_START);
        }
        let raw = if summary_says_it_all(raw) {
            &[][..]
        } else {
            raw
        };
        let cut = raw.len().min(RAW_MAX);
        self.ladder.push_back(LadderEntry {
            at: SystemTime::now(),
            is_a,
            inbound,
            summary: summary.into_boxed_str(),
            raw: String::from_utf8_lossy(raw.get(..cut).unwrap_or_default()).into(),
        });
    }

    /// The leg with this SIP Call-ID.
    pub fn leg_mut(&mut self, sip_call_id: &str) -> Option<&mut LegRecord> {
        self.legs.iter_mut().find(|l| l.sip_call_id == sip_call_id)
    }

    fn duration(&self) -> std::time::Duration {
        match (self.answered_at, self.ended_at) {
            (Some(a), Some(e)) => e.duration_since(a).unwrap_or_default(),
            (Some(a), None) => a.elapsed().unwrap_or_default(),
            (None, Some(e)) => e.duration_since(self.created_at).unwrap_or_default(),
            (None, None) => self.created_at.elapsed().unwrap_or_default(),
        }
    }

    /// The admin view with the ladder, the record's strings moved into it
    /// instead of copied: what an ended call leaves behind (the record is
    /// hollow afterwards: only its times, state and status stay). Shows
    /// the same as [`CallRecord::to_proto`]`(true)` (a test holds them
    /// to it).
    pub fn take_proto(&mut self) -> pb::Call {
        let duration = self.duration();
        let take = std::mem::take::<String>;
        pb::Call {
            call_id: take(&mut self.id),
            state: self.state.to_proto() as i32,
            caller: take(&mut self.caller),
            destination: take(&mut self.destination),
            route_id: take(&mut self.route_id),
            dialplan_version: take(&mut self.dialplan_version),
            media_node: take(&mut self.media_node),
            created_at: Some(switchboard_proto::timestamp(self.created_at)),
            answered_at: self.answered_at.map(switchboard_proto::timestamp),
            ended_at: self.ended_at.map(switchboard_proto::timestamp),
            duration: Some(switchboard_proto::duration(duration)),
            legs: std::mem::take(&mut self.legs)
                .into_iter()
                .map(|l| pb::Leg {
                    role: role(l.is_a) as i32,
                    sip_call_id: l.sip_call_id,
                    remote_uri: l.remote_uri,
                    remote_address: l.remote_address,
                    state: l.state.to_proto() as i32,
                    media_session_id: l.media_session_id,
                    codec: l.codec,
                    target: l.target,
                })
                .collect(),
            end_cause: take(&mut self.end_cause),
            end_status: u32::from(self.end_status),
            ladder: std::mem::take(&mut self.ladder)
                .into_iter()
                .map(|e| pb::SipMessageRecord {
                    at: Some(switchboard_proto::timestamp(e.at)),
                    leg: role(e.is_a) as i32,
                    inbound: e.inbound,
                    summary: e.summary.into_string(),
                    raw: e.raw.into_string(),
                })
                .collect(),
        }
    }

    /// Admin view; `with_ladder` for GetCall.
    pub fn to_proto(&self, with_ladder: bool) -> pb::Call {
        let duration = self.duration();
        pb::Call {
            call_id: self.id.clone(),
            state: self.state.to_proto() as i32,
            caller: self.caller.clone(),
            destination: self.destination.clone(),
            route_id: self.route_id.clone(),
            dialplan_version: self.dialplan_version.clone(),
            media_node: self.media_node.clone(),
            created_at: Some(switchboard_proto::timestamp(self.created_at)),
            answered_at: self.answered_at.map(switchboard_proto::timestamp),
            ended_at: self.ended_at.map(switchboard_proto::timestamp),
            duration: Some(switchboard_proto::duration(duration)),
            legs: self
                .legs
                .iter()
                .map(|l| pb::Leg {
                    role: role(l.is_a) as i32,
                    sip_call_id: l.sip_call_id.clone(),
                    remote_uri: l.remote_uri.clone(),
                    remote_address: l.remote_address.clone(),
                    state: l.state.to_proto() as i32,
                    media_session_id: l.media_session_id.clone(),
                    codec: l.codec.clone(),
                    target: l.target.clone(),
                })
                .collect(),
            end_cause: self.end_cause.clone(),
            end_status: u32::from(self.end_status),
            ladder: if with_ladder {
                self.ladder
                    .iter()
                    .map(|e| pb::SipMessageRecord {
                        at: Some(switchboard_proto::timestamp(e.at)),
                        leg: role(e.is_a) as i32,
                        inbound: e.inbound,
                        summary: e.summary.to_string(),
                        raw: e.raw.to_string(),
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_keeps_raw_messages_except_bodiless_provisionals_and_acks() {
        let mut r = CallRecord::new("c".into(), "a".into(), "b".into());
        r.log_message(
            true,
            true,
            "INVITE".into(),
            b"INVITE sip:b SIP/2.0\r\n\r\nv=0\r\n",
        );
        r.log_message(
            false,
            true,
            "180 Ringing".into(),
            b"SIP/2.0 180 Ringing\r\n\r\n",
        );
        r.log_message(
            false,
            true,
            "183".into(),
            b"SIP/2.0 183 Progress\r\n\r\nv=0\r\n",
        );
        r.log_message(false, false, "ACK".into(), b"ACK sip:b SIP/2.0\r\n\r\n");
        r.log_message(true, true, "BYE".into(), b"BYE sip:b SIP/2.0\r\n\r\n");
        let raws: Vec<&str> = r.ladder.iter().map(|e| &*e.raw).collect();
        assert_eq!(
            raws,
            [
                "INVITE sip:b SIP/2.0\r\n\r\nv=0\r\n",
                "",
                "SIP/2.0 183 Progress\r\n\r\nv=0\r\n",
                "",
                "BYE sip:b SIP/2.0\r\n\r\n",
            ]
        );
        let shown = r.to_proto(true);
        assert_eq!(shown.ladder.len(), 5);
        assert_eq!(shown.ladder[1].summary, "180 Ringing");
    }

    #[test]
    fn a_bodiless_provisional_logs_as_if_it_was_not_printed() {
        // The call skips printing those for the ladder (call/mod.rs
        // `ladder_bytes_of_response`): the entry must be the same.
        let mut printed = CallRecord::new("c".into(), "a".into(), "b".into());
        printed.log_message(false, true, "180".into(), b"SIP/2.0 180 Ringing\r\n\r\n");
        printed.log_message(false, false, "ACK".into(), b"ACK sip:b SIP/2.0\r\n\r\n");
        let mut skipped = CallRecord::new("c".into(), "a".into(), "b".into());
        skipped.log_message(false, true, "180".into(), b"");
        skipped.log_message(false, false, "ACK".into(), b"");
        let raws = |r: &CallRecord| r.ladder.iter().map(|e| e.raw.clone()).collect::<Vec<_>>();
        assert_eq!(raws(&printed), raws(&skipped));
    }

    #[test]
    fn take_proto_shows_what_to_proto_shows() {
        let mut r = CallRecord::new("c".into(), "alice".into(), "1002".into());
        r.route_id = "local".into();
        r.dialplan_version = "v1".into();
        r.media_node = "rtp-a".into();
        r.answered_at = Some(r.created_at + std::time::Duration::from_secs(1));
        r.ended_at = Some(r.created_at + std::time::Duration::from_secs(3));
        r.end_cause = "caller hung up".into();
        r.end_status = 486;
        r.state = CallState::Ended;
        for (is_a, state) in [(true, LegState::Confirmed), (false, LegState::Terminated)] {
            r.legs.push(LegRecord {
                is_a,
                sip_call_id: format!("leg-{is_a}"),
                remote_uri: "sip:b@h".into(),
                remote_address: "udp 127.0.0.1:5071".into(),
                state,
                media_session_id: "s1".into(),
                codec: "PCMU".into(),
                target: "1002".into(),
            });
        }
        r.log_message(
            true,
            true,
            "INVITE".into(),
            b"INVITE sip:b SIP/2.0\r\n\r\nv=0\r\n",
        );
        r.log_message(false, true, "180".into(), b"SIP/2.0 180 Ringing\r\n\r\n");
        let shown = r.to_proto(true);
        assert_eq!(r.take_proto(), shown);
        assert!(r.ladder.is_empty() && r.legs.is_empty() && r.caller.is_empty());
    }

    #[test]
    fn ladder_is_bounded() {
        let mut r = CallRecord::new("c".into(), "a".into(), "b".into());
        for i in 0..LADDER_MAX + 5 {
            r.log_message(true, true, format!("m{i}"), &[b'x'; RAW_MAX + 10]);
        }
        assert_eq!(r.ladder.len(), LADDER_MAX);
        assert_eq!(&*r.ladder[0].summary, "m5");
        assert!(r.ladder.iter().all(|e| e.raw.len() == RAW_MAX));
    }
}
