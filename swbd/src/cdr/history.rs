//! The call history: filters ([`HistoryQuery`], from the admin request)
//! and reading the CDR files back newest first within a byte budget. The
//! PostgreSQL side of the same query is in `postgres.rs`.

use std::path::Path;
use std::time::SystemTime;

use switchboard_proto::admin::v1 as pb;

use super::file;
use super::record::{CallStatus, Cdr};

/// Records returned when the request names no limit.
pub const DEFAULT_LIMIT: usize = 50;
/// Records returned at most.
pub const MAX_LIMIT: usize = 1000;
/// Longest filter string accepted (ids and users are far shorter).
const MAX_FILTER: usize = 256;

/// What a history lists; unset fields do not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryQuery {
    /// Started at or after.
    pub since: Option<SystemTime>,
    /// Started before.
    pub until: Option<SystemTime>,
    /// Caller, exact.
    pub caller: Option<String>,
    /// Destination, exact.
    pub destination: Option<String>,
    /// Answered or failed.
    pub status: Option<CallStatus>,
    /// Final status to the caller.
    pub sip_code: Option<u16>,
    /// swbd call id or any leg's SIP Call-ID, exact.
    pub call_id: Option<String>,
    /// Media node, exact.
    pub media_node: Option<String>,
    /// Records at most.
    pub limit: usize,
}

fn time(t: Option<prost_types::Timestamp>) -> Result<Option<SystemTime>, String> {
    match t {
        None => Ok(None),
        Some(t) => SystemTime::try_from(t)
            .map(Some)
            .map_err(|_| "a time is out of range".to_string()),
    }
}

fn text(name: &str, s: String) -> Result<Option<String>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    if s.len() > MAX_FILTER {
        return Err(format!("{name}: longer than {MAX_FILTER} bytes"));
    }
    Ok(Some(s))
}

impl HistoryQuery {
    /// The query of an admin request; `Err` names the bad field.
    pub fn from_proto(r: pb::ListCallHistoryRequest) -> Result<Self, String> {
        let status = match pb::CallHistoryStatus::try_from(r.status) {
            Ok(pb::CallHistoryStatus::Unspecified) => None,
            Ok(pb::CallHistoryStatus::Answered) => Some(CallStatus::Answered),
            Ok(pb::CallHistoryStatus::Failed) => Some(CallStatus::Failed),
            Err(_) => return Err(format!("status: unknown value {}", r.status)),
        };
        let sip_code = match r.sip_code {
            0 => None,
            c @ 100..=699 => Some(c as u16),
            c => return Err(format!("sip_code: {c} is not a SIP status (100-699)")),
        };
        let limit = match r.limit as usize {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        };
        Ok(Self {
            since: time(r.since)?,
            until: time(r.until)?,
            caller: text("caller", r.caller)?,
            destination: text("destination", r.destination)?,
            status,
            sip_code,
            call_id: text("call_id", r.call_id)?,
            media_node: text("media_node", r.media_node)?,
            limit,
        })
    }

    /// Whether `c` passes every filter.
    pub fn matches(&self, c: &Cdr) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        self.since.is_none_or(|s| c.start_time >= s)
            && self.until.is_none_or(|u| c.start_time < u)
            && eq(&self.caller, &c.caller)
            && eq(&self.destination, &c.destination)
            && self.status.is_none_or(|s| s == c.status)
            && self.sip_code.is_none_or(|code| code == c.sip_code)
            && eq(&self.media_node, &c.media_node)
            && self
                .call_id
                .as_deref()
                .is_none_or(|id| c.call_id == id || c.legs.iter().any(|l| l.sip_call_id == id))
    }
}

/// Matching records of the CDR files (`path` and its rotated files),
/// newest first, reading at most `budget` bytes. `true`: the budget ran out
/// before the files (or `since`) did.
pub fn scan_files(path: &Path, keep: u32, q: &HistoryQuery, budget: u64) -> (Vec<Cdr>, bool) {
    let mut out = Vec::new();
    let mut left = budget;
    for f in file::files_newest_first(path, keep) {
        let mut reached_since = false;
        let result = file::lines_backwards(&f, left, |line| {
            let Ok(c) = serde_json::from_slice::<Cdr>(line) else {
                return true;
            };
            // Lines are in end-time order: once a call ended before
            // `since`, every older line started before it too.
            if q.since.is_some_and(|s| c.end_time < s) {
                reached_since = true;
                return false;
            }
            if q.matches(&c) {
                out.push(c);
            }
            out.len() < q.limit
        });
        let (used, truncated) = match result {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(file = %f.display(), error = %e, "CDR history: cannot read a file");
                (0, false)
            }
        };
        left = left.saturating_sub(used);
        if truncated {
            return (out, true);
        }
        if reached_since || out.len() >= q.limit {
            break;
        }
    }
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::record::Leg;
    use std::time::Duration;

    fn cdr(n: u64, status: CallStatus, code: u16) -> Cdr {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + n * 10);
        Cdr {
            call_id: format!("c{n}"),
            status,
            sip_code: code,
            caller: if n.is_multiple_of(2) { "1001" } else { "1002" }.into(),
            destination: "1003".into(),
            media_node: "rtp-a".into(),
            start_time: at,
            end_time: at + Duration::from_secs(5),
            legs: vec![Leg {
                role: "a".into(),
                sip_call_id: format!("sip-{n}@host"),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn write(path: &Path, records: &[Cdr]) {
        let mut w = file::FileWriter::new(path.to_path_buf(), 5000, 5, false);
        let lines: Vec<String> = records
            .iter()
            .map(|c| serde_json::to_string(c).expect("json"))
            .collect();
        w.append(&lines).expect("append");
    }

    /// The file scan agrees with filtering the whole list (the obvious
    /// slow way) for every filter, across rotated files.
    #[test]
    fn file_scan_agrees_with_a_linear_filter() {
        let d = std::env::temp_dir().join(format!("swbd-history-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let path = d.join("cdr.jsonl");
        let all: Vec<Cdr> = (0..40)
            .map(|n| match n % 3 {
                0 => cdr(n, CallStatus::Answered, 200),
                1 => cdr(n, CallStatus::Failed, 404),
                _ => cdr(n, CallStatus::Failed, 486),
            })
            .collect();
        write(&path, &all);
        assert!(
            file::rotated(&path, 1).exists(),
            "the test spans rotated files"
        );
        let base = HistoryQuery {
            limit: 1000,
            ..Default::default()
        };
        let t = |n: u64| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + n * 10));
        let queries = [
            base.clone(),
            HistoryQuery {
                status: Some(CallStatus::Failed),
                ..base.clone()
            },
            HistoryQuery {
                sip_code: Some(486),
                ..base.clone()
            },
            HistoryQuery {
                caller: Some("1002".into()),
                ..base.clone()
            },
            HistoryQuery {
                call_id: Some("sip-7@host".into()),
                ..base.clone()
            },
            HistoryQuery {
                call_id: Some("c8".into()),
                ..base.clone()
            },
            HistoryQuery {
                since: t(30),
                ..base.clone()
            },
            HistoryQuery {
                since: t(10),
                until: t(20),
                ..base.clone()
            },
            HistoryQuery {
                media_node: Some("rtp-b".into()),
                ..base.clone()
            },
            HistoryQuery {
                limit: 3,
                ..base.clone()
            },
        ];
        for q in queries {
            let (got, truncated) = scan_files(&path, 5, &q, u64::MAX);
            assert!(!truncated);
            let want: Vec<&str> = all
                .iter()
                .rev()
                .filter(|c| q.matches(c))
                .take(q.limit)
                .map(|c| c.call_id.as_str())
                .collect();
            let got: Vec<&str> = got.iter().map(|c| c.call_id.as_str()).collect();
            assert_eq!(got, want, "{q:?}");
        }
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn bad_filters_are_named() {
        let e = HistoryQuery::from_proto(pb::ListCallHistoryRequest {
            sip_code: 42,
            ..Default::default()
        })
        .expect_err("refused");
        assert!(e.contains("sip_code"), "{e}");
        let q = HistoryQuery::from_proto(pb::ListCallHistoryRequest {
            limit: 1_000_000,
            ..Default::default()
        })
        .expect("ok");
        assert_eq!(q.limit, MAX_LIMIT);
    }
}
