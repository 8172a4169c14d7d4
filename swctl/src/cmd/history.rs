//! `swctl calls history` (alias `swctl cdr`): call detail records of ended
//! calls, read by swbd from its CDR file or PostgreSQL (`ListCallHistory`),
//! so it works over `ssh://` like every admin call. Several swbd: their
//! records merged, newest first.

use std::time::{Duration, SystemTime};

use serde::Serialize;
use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::signaling_admin_client::SignalingAdminClient;

use super::{Kind, Targets, gather, table_width};
use crate::Error;
use crate::cli::{HistoryArgs, HistoryStatus, Output};
use crate::output;
use crate::views::rfc3339;

/// One direction's RTP counters.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DirectionView {
    /// Packets.
    pub packets: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Packets lost (receive direction).
    pub lost: i64,
    /// Jitter, ms (receive direction).
    pub jitter_ms: f64,
}

/// A leg's final RTP statistics.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RtpView {
    /// What the party sent swbd.
    pub rx: DirectionView,
    /// What swbd sent the party.
    pub tx: DirectionView,
    /// Estimated MOS of `rx`, `null` when none.
    pub mos: Option<f64>,
}

/// One leg of a recorded call.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HistoryLegView {
    /// `a` or `b`.
    pub role: String,
    /// SIP Call-ID.
    pub sip_call_id: String,
    /// Remote party URI.
    pub remote_uri: String,
    /// Transport and remote address.
    pub remote_address: String,
    /// Dial target (B-legs).
    pub target: String,
    /// Final status of the leg's INVITE (0: none).
    pub final_code: u32,
    /// How the leg ended.
    pub end: String,
    /// Codec.
    pub codec: String,
    /// Media session.
    pub media_session_id: String,
    /// Final RTP statistics, `null` when none.
    pub rtp: Option<RtpView>,
}

/// A dial target that never became a leg.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FailedTargetView {
    /// `user/1029`, ...
    pub target: String,
    /// Its status.
    pub code: u32,
}

/// One call detail record, as printed (`swctl/JSON.md`): the fields of
/// swbd's CDR file plus `backend`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HistoryView {
    /// Which swbd answered.
    pub backend: String,
    /// swbd's call id.
    pub call_id: String,
    /// swbd node that handled it.
    pub node_id: String,
    /// `answered` or `failed`.
    pub status: String,
    /// Final status the caller got.
    pub sip_code: u32,
    /// Caller (authenticated identity).
    pub caller: String,
    /// Destination.
    pub destination: String,
    /// Route that matched.
    pub route_id: String,
    /// Dialplan version.
    pub dialplan_version: String,
    /// RFC 3339 UTC.
    pub start_time: Option<String>,
    /// RFC 3339 UTC, `null` when never answered.
    pub answer_time: Option<String>,
    /// RFC 3339 UTC.
    pub end_time: Option<String>,
    /// End minus start, ms.
    pub duration_ms: i64,
    /// End minus answer, ms.
    pub billsec_ms: i64,
    /// Human end cause.
    pub end_cause: String,
    /// Machine end reason.
    pub end_reason: String,
    /// Who ended the call.
    pub hangup_by: String,
    /// Media node.
    pub media_node: String,
    /// Codec.
    pub codec: String,
    /// Media one way only.
    pub one_way: bool,
    /// No media at all.
    pub silent: bool,
    /// Worst leg's estimated MOS, `null` when none.
    pub mos: Option<f64>,
    /// Legs, A first.
    pub legs: Vec<HistoryLegView>,
    /// Dial targets that never became legs.
    pub failed_targets: Vec<FailedTargetView>,
}

fn ms_between(a: Option<&prost_types::Timestamp>, b: Option<&prost_types::Timestamp>) -> i64 {
    match (a, b) {
        (Some(a), Some(b)) if a.seconds != 0 => {
            (b.seconds - a.seconds) * 1000 + i64::from(b.nanos - a.nanos) / 1_000_000
        }
        _ => 0,
    }
}

fn mos(m: f64) -> Option<f64> {
    (m > 0.0).then_some(m)
}

fn direction(d: Option<&pb::CdrDirection>) -> DirectionView {
    let d = d.cloned().unwrap_or_default();
    DirectionView {
        packets: d.packets,
        bytes: d.bytes,
        lost: d.lost,
        jitter_ms: d.jitter_ms,
    }
}

impl HistoryView {
    /// Build from a record of `backend`.
    pub fn new(backend: &str, r: &pb::CallDetailRecord) -> Self {
        Self {
            backend: backend.to_string(),
            call_id: r.call_id.clone(),
            node_id: r.node_id.clone(),
            status: r.status.clone(),
            sip_code: r.sip_code,
            caller: r.caller.clone(),
            destination: r.destination.clone(),
            route_id: r.route_id.clone(),
            dialplan_version: r.dialplan_version.clone(),
            start_time: rfc3339(r.start_time.as_ref()),
            answer_time: rfc3339(r.answer_time.as_ref()),
            end_time: rfc3339(r.end_time.as_ref()),
            duration_ms: ms_between(r.start_time.as_ref(), r.end_time.as_ref()).max(0),
            billsec_ms: ms_between(r.answer_time.as_ref(), r.end_time.as_ref()).max(0),
            end_cause: r.end_cause.clone(),
            end_reason: r.end_reason.clone(),
            hangup_by: r.hangup_by.clone(),
            media_node: r.media_node.clone(),
            codec: r.codec.clone(),
            one_way: r.one_way,
            silent: r.silent,
            mos: mos(r.mos),
            legs: r
                .legs
                .iter()
                .map(|l| HistoryLegView {
                    role: l.role.clone(),
                    sip_call_id: l.sip_call_id.clone(),
                    remote_uri: l.remote_uri.clone(),
                    remote_address: l.remote_address.clone(),
                    target: l.target.clone(),
                    final_code: l.final_code,
                    end: l.end.clone(),
                    codec: l.codec.clone(),
                    media_session_id: l.media_session_id.clone(),
                    rtp: l.rtp.as_ref().map(|r| RtpView {
                        rx: direction(r.rx.as_ref()),
                        tx: direction(r.tx.as_ref()),
                        mos: mos(r.mos),
                    }),
                })
                .collect(),
            failed_targets: r
                .failed_targets
                .iter()
                .map(|t| FailedTargetView {
                    target: t.target.clone(),
                    code: t.code,
                })
                .collect(),
        }
    }

    fn a_leg(&self) -> Option<&HistoryLegView> {
        self.legs.iter().find(|l| l.role == "a")
    }

    /// The B-leg that answered, else the last one tried.
    fn b_leg(&self) -> Option<&HistoryLegView> {
        self.legs
            .iter()
            .filter(|l| l.role == "b")
            .find(|l| l.final_code == 200)
            .or_else(|| self.legs.iter().rfind(|l| l.role == "b"))
    }

    /// `4.40`, `one-way`, `silent` or `-`.
    fn quality(&self) -> String {
        if self.silent {
            "silent".into()
        } else if self.one_way {
            "one-way".into()
        } else {
            self.mos.map_or("-".into(), |m| format!("{m:.2}"))
        }
    }

    /// The end reason, with the dial targets that failed (`dial_failed
    /// user/1029=404`).
    fn cause(&self) -> String {
        let mut s = self.end_reason.clone();
        for t in &self.failed_targets {
            s.push_str(&format!(" {}={}", t.target, t.code));
        }
        s
    }
}

/// Parse `--since`/`--until`: a duration back from `now` (`90s`, `15m`,
/// `1h30m`, `2d`, `1w`) or an RFC 3339 time.
pub fn parse_when(s: &str, now: SystemTime) -> Result<SystemTime, String> {
    if let Some(t) = switchboard_proto::support::time::parse_rfc3339(s) {
        return Ok(t);
    }
    let bad = || {
        format!(
            "{s:?} is neither a duration (90s, 15m, 1h, 2d, 1w, 1h30m) nor an RFC 3339 time (2026-12-01T08:00:00Z)"
        )
    };
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if !digits.is_empty() || total == 0 {
        return Err(bad());
    }
    now.checked_sub(Duration::from_secs(total)).ok_or_else(bad)
}

/// The request for `args`, times relative to `now`.
pub fn request(args: &HistoryArgs, now: SystemTime) -> Result<pb::ListCallHistoryRequest, Error> {
    let when = |flag: &str, v: &Option<String>| -> Result<Option<prost_types::Timestamp>, Error> {
        v.as_deref()
            .map(|s| {
                parse_when(s, now)
                    .map(prost_types::Timestamp::from)
                    .map_err(|e| Error::Usage(format!("--{flag}: {e}")))
            })
            .transpose()
    };
    if let Some(code) = args.code
        && !(100..=699).contains(&code)
    {
        return Err(Error::Usage(format!(
            "--code: {code} is not a SIP status (100-699)"
        )));
    }
    Ok(pb::ListCallHistoryRequest {
        since: when("since", &args.since)?,
        until: when("until", &args.until)?,
        caller: args.from.clone().unwrap_or_default(),
        destination: args.to.clone().unwrap_or_default(),
        status: match args.status {
            None => pb::CallHistoryStatus::Unspecified,
            Some(HistoryStatus::Answered) => pb::CallHistoryStatus::Answered,
            Some(HistoryStatus::Failed) => pb::CallHistoryStatus::Failed,
        } as i32,
        sip_code: args.code.map(u32::from).unwrap_or(0),
        call_id: args.call_id.clone().unwrap_or_default(),
        media_node: args.node.clone().unwrap_or_default(),
        limit: args.limit,
    })
}

/// `swctl calls history`.
pub async fn run(t: &Targets, format: Output, args: &HistoryArgs) -> Result<(), Error> {
    let req = request(args, SystemTime::now())?;
    let got = gather(t, Kind::Swbd, |ch| {
        let req = req.clone();
        async move {
            SignalingAdminClient::new(ch)
                .list_call_history(req)
                .await
                .map(|r| r.into_inner())
        }
    })
    .await?;
    for (b, resp) in &got {
        if resp.truncated {
            eprintln!(
                "swctl: warning: {}: the CDR files were scanned to their bound (cdr.history_scan_bytes); older calls may match too",
                b.label
            );
        }
    }
    let several = got.len() > 1;
    let mut views: Vec<HistoryView> = got
        .iter()
        .flat_map(|(b, resp)| resp.records.iter().map(|r| HistoryView::new(&b.label, r)))
        .collect();
    // Merged backends: newest first, the limit over all of them.
    views.sort_by(|a, b| b.end_time.cmp(&a.end_time));
    let limit = if args.limit == 0 {
        50
    } else {
        args.limit as usize
    };
    views.truncate(limit);
    print!("{}", render(&views, format, several, table_width())?);
    Ok(())
}

/// `2026-12-07T13:44:43.893Z` as `12-07 13:44:43`.
fn short_time(t: &Option<String>) -> String {
    t.as_deref()
        .and_then(|t| Some(format!("{} {}", t.get(5..10)?, t.get(11..19)?)))
        .unwrap_or_else(|| "-".into())
}

fn secs(ms: i64) -> String {
    crate::views::mmss(ms / 1000)
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

/// Render records. `several`: add the BACKEND column to tables.
pub fn render(
    views: &[HistoryView],
    format: Output,
    several: bool,
    width: usize,
) -> anyhow::Result<String> {
    Ok(match format {
        Output::Table => {
            let mut header = vec!["START", "FROM", "TO", "CODE", "DUR", "CAUSE", "MOS"];
            if several {
                header.insert(0, "BACKEND");
            }
            let rows = views
                .iter()
                .map(|v| {
                    let mut r = vec![
                        short_time(&v.start_time),
                        dash(&v.caller),
                        dash(&v.destination),
                        v.sip_code.to_string(),
                        secs(v.duration_ms),
                        v.cause(),
                        v.quality(),
                    ];
                    if several {
                        r.insert(0, v.backend.clone());
                    }
                    r
                })
                .collect::<Vec<_>>();
            output::fit(&header, &rows, Some(width))
        }
        Output::Wide => {
            let header = [
                "BACKEND",
                "ID",
                "START",
                "END",
                "FROM",
                "TO",
                "STATUS",
                "CODE",
                "DUR",
                "BILL",
                "REASON",
                "BY",
                "CAUSE",
                "NODE",
                "CODEC",
                "MOS",
                "SIP-CALL-ID",
            ];
            let rows = views
                .iter()
                .map(|v| {
                    vec![
                        v.backend.clone(),
                        v.call_id.clone(),
                        v.start_time.clone().unwrap_or_else(|| "-".into()),
                        v.end_time.clone().unwrap_or_else(|| "-".into()),
                        dash(&v.caller),
                        dash(&v.destination),
                        v.status.clone(),
                        v.sip_code.to_string(),
                        secs(v.duration_ms),
                        secs(v.billsec_ms),
                        v.cause(),
                        dash(&v.hangup_by),
                        dash(&v.end_cause),
                        dash(&v.media_node),
                        dash(&v.codec),
                        v.quality(),
                        v.a_leg().map(|l| l.sip_call_id.clone()).unwrap_or_default(),
                    ]
                })
                .collect::<Vec<_>>();
            output::fit(&header, &rows, None)
        }
        Output::Csv => csv(views),
        Output::Json | Output::Yaml => output::structured(format, &views)?,
    })
}

/// The CSV columns (one row per call; the answering B-leg's stats).
const CSV_HEADER: &[&str] = &[
    "backend",
    "call_id",
    "node_id",
    "status",
    "sip_code",
    "caller",
    "destination",
    "route_id",
    "dialplan_version",
    "start_time",
    "answer_time",
    "end_time",
    "duration_ms",
    "billsec_ms",
    "end_reason",
    "hangup_by",
    "end_cause",
    "media_node",
    "codec",
    "one_way",
    "silent",
    "mos",
    "a_sip_call_id",
    "a_remote_address",
    "a_rx_packets",
    "a_rx_lost",
    "a_rx_jitter_ms",
    "a_tx_packets",
    "b_target",
    "b_sip_call_id",
    "b_final_code",
    "b_rx_packets",
    "b_rx_lost",
    "b_rx_jitter_ms",
    "b_tx_packets",
    "failed_targets",
];

fn csv(views: &[HistoryView]) -> String {
    use output::CsvCell::{Num, Text};
    let mut rows = Vec::with_capacity(views.len());
    for v in views {
        let a = v.a_leg();
        let b = v.b_leg();
        let rtp = |l: Option<&HistoryLegView>| l.and_then(|l| l.rtp.clone());
        let (ar, br) = (rtp(a), rtp(b));
        let num = |n: Option<String>| Num(n.unwrap_or_default());
        rows.push(vec![
            Text(v.backend.clone()),
            Text(v.call_id.clone()),
            Text(v.node_id.clone()),
            Text(v.status.clone()),
            Num(v.sip_code.to_string()),
            Text(v.caller.clone()),
            Text(v.destination.clone()),
            Text(v.route_id.clone()),
            Text(v.dialplan_version.clone()),
            Num(v.start_time.clone().unwrap_or_default()),
            Num(v.answer_time.clone().unwrap_or_default()),
            Num(v.end_time.clone().unwrap_or_default()),
            Num(v.duration_ms.to_string()),
            Num(v.billsec_ms.to_string()),
            Text(v.end_reason.clone()),
            Text(v.hangup_by.clone()),
            Text(v.end_cause.clone()),
            Text(v.media_node.clone()),
            Text(v.codec.clone()),
            Num(v.one_way.to_string()),
            Num(v.silent.to_string()),
            num(v.mos.map(|m| format!("{m:.2}"))),
            Text(a.map(|l| l.sip_call_id.clone()).unwrap_or_default()),
            Text(a.map(|l| l.remote_address.clone()).unwrap_or_default()),
            num(ar.as_ref().map(|r| r.rx.packets.to_string())),
            num(ar.as_ref().map(|r| r.rx.lost.to_string())),
            num(ar.as_ref().map(|r| format!("{:.2}", r.rx.jitter_ms))),
            num(ar.as_ref().map(|r| r.tx.packets.to_string())),
            Text(b.map(|l| l.target.clone()).unwrap_or_default()),
            Text(b.map(|l| l.sip_call_id.clone()).unwrap_or_default()),
            num(b.map(|l| l.final_code.to_string())),
            num(br.as_ref().map(|r| r.rx.packets.to_string())),
            num(br.as_ref().map(|r| r.rx.lost.to_string())),
            num(br.as_ref().map(|r| format!("{:.2}", r.rx.jitter_ms))),
            num(br.as_ref().map(|r| r.tx.packets.to_string())),
            Text(
                v.failed_targets
                    .iter()
                    .map(|t| format!("{}={}", t.target, t.code))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        ]);
    }
    output::csv(CSV_HEADER, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_rfc3339_times() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let back = |s| {
            now.duration_since(parse_when(s, now).expect(s))
                .expect("past")
                .as_secs()
        };
        assert_eq!(back("90s"), 90);
        assert_eq!(back("15m"), 900);
        assert_eq!(back("1h30m"), 5400);
        assert_eq!(back("2d"), 172_800);
        assert_eq!(back("1w"), 604_800);
        assert_eq!(
            parse_when("2026-12-01T08:00:00Z", now),
            Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_112_000))
        );
        for bad in ["", "1", "h", "1y", "-1h", "0s", "yesterday", "2026-12-01"] {
            assert!(parse_when(bad, now).is_err(), "{bad:?}");
        }
    }
}
