//! Call history in `swctl top`: the call detail records of ended calls,
//! read from swbd over the admin API (`ListCallHistory`, the RPC of
//! `swctl calls history`).
//!
//! # Loading and following
//!
//! When a swbd's Watch opens, its feed loads the newest [`LOAD`] records
//! (so the failed-calls view has something the moment top starts, and a
//! reconnect fills what was missed). Then, for every call the Watch says
//! ended, the feed asks for that call's record: swbd writes CDRs off the
//! call path, so the record may not exist yet when the `Ended` event
//! arrives. The follower batches: it waits [`BATCH`], asks for the newest
//! records (as many as calls are waiting, they are the newest by end
//! time), and asks again with a growing delay, [`ATTEMPTS`] times at most,
//! for the ones still missing. At most [`PENDING`] calls wait; beyond
//! that the oldest are given up (their row keeps swbd's `end_cause`).
//!
//! # Kept
//!
//! [`History`] keeps [`KEEP`] records over all backends, dropping the
//! oldest by end time, so a top left running for a week stays small.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::signaling_admin_client::SignalingAdminClient;
use switchboard_proto::support::grpc::AuthedChannel;
use tokio::sync::mpsc;

use super::event::Update;
use super::store::CallKey;

/// Records loaded when a Watch opens.
pub const LOAD: u32 = 200;
/// Records kept over all backends.
pub const KEEP: usize = 2000;
/// Ended calls waiting for their record, at most.
pub const PENDING: usize = 1000;
/// Tries per waiting call.
pub const ATTEMPTS: u8 = 5;
/// First wait before asking (records are written in batches).
pub const BATCH: Duration = Duration::from_millis(300);

/// What top knows of a backend's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryState {
    /// Not asked yet / asking.
    Loading,
    /// Loaded; `truncated`: swbd's scan stopped at its bound.
    Loaded {
        /// Older matches may exist.
        truncated: bool,
    },
    /// This swbd cannot list its history (CDRs off, too old a swbd, an
    /// error): the reason, shown in the failed-calls view.
    Unavailable(String),
}

/// End time of a record as a sortable key.
fn end_key(r: &pb::CallDetailRecord) -> (i64, i32) {
    r.end_time
        .as_ref()
        .map(|t| (t.seconds, t.nanos))
        .unwrap_or((0, 0))
}

/// Call detail records of every backend, bounded, newest kept.
#[derive(Debug, Default)]
pub struct History {
    records: HashMap<CallKey, pb::CallDetailRecord>,
    /// (end time, key): eviction order and newest-first iteration.
    order: BTreeSet<((i64, i32), CallKey)>,
    /// Bumped on every change (lazy index rebuilds).
    pub version: u64,
    /// Per backend.
    pub state: HashMap<usize, HistoryState>,
}

impl History {
    /// Add (or replace) records of `backend`.
    pub fn insert(&mut self, backend: usize, records: Vec<pb::CallDetailRecord>) {
        for r in records {
            let key = (backend, r.call_id.clone());
            if let Some(old) = self.records.get(&key) {
                self.order.remove(&(end_key(old), key.clone()));
            }
            self.order.insert((end_key(&r), key.clone()));
            self.records.insert(key, r);
        }
        while self.records.len() > KEEP {
            let Some(oldest) = self.order.pop_first() else {
                break;
            };
            self.records.remove(&oldest.1);
        }
        self.version += 1;
    }

    /// The record of a call, when known.
    pub fn get(&self, key: &CallKey) -> Option<&pb::CallDetailRecord> {
        self.records.get(key)
    }

    /// Records kept.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// No record kept.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Records newest (by end time) first.
    pub fn newest_first(&self) -> impl Iterator<Item = (&CallKey, &pb::CallDetailRecord)> {
        self.order
            .iter()
            .rev()
            .filter_map(|(_, k)| self.records.get(k).map(|r| (k, r)))
    }
}

/// `404 Not Found`: a status with its usual reason phrase (RFC 3261 §21),
/// the bare code for others.
pub fn status_text(code: u32) -> String {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        _ => "",
    };
    if reason.is_empty() {
        code.to_string()
    } else {
        format!("{code} {reason}")
    }
}

/// Why a call failed, most specific first: each dial target or B-leg that
/// failed with its status (`user/1029 404 Not Found`), then swbd's end
/// cause (`dial failed: Failed(404)`).
pub fn failure_cause(r: &pb::CallDetailRecord) -> String {
    let mut parts: Vec<String> = r
        .failed_targets
        .iter()
        .map(|t| format!("{} {}", t.target, status_text(t.code)))
        .collect();
    for l in r
        .legs
        .iter()
        .filter(|l| l.role == "b" && l.final_code >= 300)
    {
        let who = if l.target.is_empty() {
            &l.remote_uri
        } else {
            &l.target
        };
        parts.push(format!("{who} {}", status_text(l.final_code)));
    }
    if !r.end_cause.is_empty() {
        parts.push(r.end_cause.clone());
    } else if !r.end_reason.is_empty() {
        parts.push(r.end_reason.clone());
    }
    parts.join(" · ")
}

/// How one leg ended, for the call detail: `bye received`,
/// `rejected 486 Busy Here`, `cancelled 487 Request Terminated`.
pub fn leg_end(l: &pb::CdrLeg) -> String {
    let how = l.end.replace('_', " ");
    match (how.is_empty(), l.final_code) {
        (true, 0) => "-".into(),
        (true, c) => status_text(c),
        (false, c) if c >= 300 => format!("{how} {}", status_text(c)),
        (false, _) => how,
    }
}

/// Load the newest [`LOAD`] records of backend `idx`.
pub async fn load(client: &mut SignalingAdminClient<AuthedChannel>, idx: usize) -> Update {
    match client
        .list_call_history(pb::ListCallHistoryRequest {
            limit: LOAD,
            ..Default::default()
        })
        .await
    {
        Ok(r) => {
            let r = r.into_inner();
            Update::History {
                backend: idx,
                records: r.records,
                state: Some(HistoryState::Loaded {
                    truncated: r.truncated,
                }),
            }
        }
        Err(st) => Update::History {
            backend: idx,
            records: Vec::new(),
            state: Some(HistoryState::Unavailable(unavailable(&st))),
        },
    }
}

fn unavailable(st: &tonic::Status) -> String {
    match st.code() {
        tonic::Code::Unimplemented => "this swbd has no call history (too old)".into(),
        _ => format!("call history: {}", st.message()),
    }
}

/// Follow ended calls (their swbd call ids arrive on `ended`) and send
/// their records as they become readable. Returns only when the screen
/// went away (`tx` closed); without a history to follow it just waits, so
/// it never ends a connection by itself.
pub async fn follow(
    mut client: SignalingAdminClient<AuthedChannel>,
    idx: usize,
    mut ended: mpsc::Receiver<String>,
    tx: mpsc::Sender<Update>,
) {
    // call id -> tries so far, oldest first.
    let mut pending: VecDeque<(String, u8)> = VecDeque::new();
    let mut wait = BATCH;
    loop {
        if pending.is_empty() {
            let Some(id) = ended.recv().await else {
                return std::future::pending().await;
            };
            pending.push_back((id, 0));
            wait = BATCH;
        }
        // Gather what else ends meanwhile.
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, ended.recv()).await {
                Ok(Some(id)) => {
                    if pending.len() >= PENDING {
                        pending.pop_front();
                    }
                    pending.push_back((id, 0));
                }
                Ok(None) => return std::future::pending().await,
                Err(_) => break,
            }
        }
        let limit = u32::try_from(pending.len() + 10).unwrap_or(1000).min(1000);
        let got = client
            .list_call_history(pb::ListCallHistoryRequest {
                limit,
                ..Default::default()
            })
            .await;
        let records = match got {
            Ok(r) => r.into_inner().records,
            // The history is not there (CDRs off, old swbd): nothing to follow.
            Err(st)
                if matches!(
                    st.code(),
                    tonic::Code::Unimplemented | tonic::Code::FailedPrecondition
                ) =>
            {
                return std::future::pending().await;
            }
            Err(_) => Vec::new(),
        };
        let found: Vec<pb::CallDetailRecord> = records
            .into_iter()
            .filter(|r| pending.iter().any(|(id, _)| *id == r.call_id))
            .collect();
        pending.retain(|(id, _)| !found.iter().any(|r| r.call_id == *id));
        for p in pending.iter_mut() {
            p.1 = p.1.saturating_add(1);
        }
        pending.retain(|(_, tries)| *tries < ATTEMPTS);
        if !found.is_empty()
            && tx
                .send(Update::History {
                    backend: idx,
                    records: found,
                    state: None,
                })
                .await
                .is_err()
        {
            return;
        }
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, end: i64) -> pb::CallDetailRecord {
        pb::CallDetailRecord {
            call_id: id.into(),
            end_time: Some(prost_types::Timestamp {
                seconds: end,
                nanos: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn keeps_the_newest_and_replaces_by_call() {
        let mut h = History::default();
        h.insert(
            0,
            (0..KEEP as i64 + 5)
                .map(|i| rec(&format!("c{i}"), i))
                .collect(),
        );
        assert_eq!(h.len(), KEEP);
        assert!(h.get(&(0, "c0".into())).is_none(), "oldest dropped");
        assert!(h.get(&(0, format!("c{}", KEEP + 4))).is_some());
        // The same call again replaces it (a reconnect reloads history).
        h.insert(0, vec![rec("c10", 1_000_000)]);
        assert_eq!(h.len(), KEEP);
        let first = h.newest_first().next().map(|(k, _)| k.1.clone());
        assert_eq!(first.as_deref(), Some("c10"));
        // Backends do not mix.
        h.insert(1, vec![rec("c10", 5)]);
        assert!(h.get(&(1, "c10".into())).is_some());
    }

    #[test]
    fn causes_name_the_target_and_its_status() {
        let mut r = rec("x", 1);
        r.end_cause = "dial failed: Failed(404)".into();
        r.failed_targets = vec![pb::CdrTarget {
            target: "user/1029".into(),
            code: 404,
        }];
        assert_eq!(
            failure_cause(&r),
            "user/1029 404 Not Found · dial failed: Failed(404)"
        );
        r.failed_targets.clear();
        r.legs = vec![pb::CdrLeg {
            role: "b".into(),
            target: "user/1002".into(),
            final_code: 486,
            end: "rejected".into(),
            ..Default::default()
        }];
        assert!(failure_cause(&r).starts_with("user/1002 486 Busy Here"));
        assert_eq!(leg_end(&r.legs[0]), "rejected 486 Busy Here");
        assert_eq!(status_text(499), "499");
    }
}
