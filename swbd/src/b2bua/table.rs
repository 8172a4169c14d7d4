//! The call table: every call's admin record, the routes from dialogs to
//! call tasks, and the index from media sessions to calls.
//!
//! Shared read-mostly state behind std mutexes with short critical
//! sections, never held across `.await` (mini-redis `db.rs` style).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use super::record::{CallRecord, CallState};
use crate::dialog::DialogId;
use crate::events::{CallChange, Event, EventBus};
use crate::sip::Request;
use crate::transaction::{ServerInviteTransaction, ServerTransaction};

/// A call found by id: its record and its command channel (if live).
type Found = (Arc<Mutex<CallRecord>>, Option<CommandSender>);

/// Ended calls kept for inspection.
const ENDED_KEEP: usize = 200;
/// How long an ended call stays listed.
const ENDED_TTL: Duration = Duration::from_secs(300);

/// A request inside one of a call's dialogs.
#[derive(Debug)]
pub enum LegInput {
    /// BYE, INFO, UPDATE, OPTIONS... with its server transaction.
    Request(ServerTransaction),
    /// re-INVITE.
    Invite(ServerInviteTransaction),
    /// ACK for a 2xx.
    Ack(Request),
    /// Another call's request concerning this dialog (attended transfer,
    /// INVITE with Replaces; see [`super::transfer`]).
    Transfer(Box<super::transfer::TransferInput>),
}

/// What a dialog route carries: the dialog and the request in it, boxed so
/// a call's channel costs its first block of 32 pointers, not 32 inline
/// transactions (~10 KiB per call).
pub type DialogInput = Box<(DialogId, LegInput)>;

/// The sending end of a call's dialog route.
pub type DialogSender = mpsc::UnboundedSender<DialogInput>;

/// The sending end of a call's command channel. Boxed payloads: the
/// channel's first block is 32 pointers, not 32 commands, and commands are rare.
pub type CommandSender = mpsc::UnboundedSender<Box<CallCommand>>;

/// Out-of-band orders to a call task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallCommand {
    /// Operator hangup.
    Hangup(String),
    /// The call's media died (RTP timeout, node lost).
    MediaLost(String),
    /// One of the call's media sessions received a DTMF digit (RFC 4733).
    Dtmf(crate::media::MediaDtmf),
}

#[derive(Debug)]
struct Entry {
    record: Arc<Mutex<CallRecord>>,
    commands: Option<CommandSender>,
    ended_at: Option<Instant>,
    /// Dialog routes this call added (removed exactly, not by scanning).
    dialogs: Vec<DialogId>,
    /// Media sessions this call indexed.
    sessions: Vec<(String, String)>,
}

#[derive(Debug, Default)]
struct Tables {
    calls: HashMap<String, Entry>,
    ended: VecDeque<String>,
    dialogs: HashMap<DialogId, (String, DialogSender)>,
    sessions: HashMap<(String, String), String>,
    created: VecDeque<Instant>,
}

#[derive(Debug)]
struct Inner {
    tables: Mutex<Tables>,
    total: AtomicU64,
    events: EventBus,
    /// Started, answered, failed; setup time and duration (Prometheus).
    metrics: crate::metrics::CallMetrics,
}

/// Cheap-clone handle to the table.
#[derive(Debug, Clone)]
pub struct CallTable {
    inner: Arc<Inner>,
}

/// A call task's handle on its entry. Dropping it marks the call ended and
/// removes its dialog routes and media index entries.
#[derive(Debug)]
pub struct CallHandle {
    table: CallTable,
    id: String,
    record: Arc<Mutex<CallRecord>>,
}

impl CallTable {
    /// An empty table publishing on `events`.
    pub fn new(events: EventBus) -> Self {
        Self {
            inner: Arc::new(Inner {
                tables: Mutex::new(Tables::default()),
                total: AtomicU64::new(0),
                events,
                metrics: crate::metrics::CallMetrics::default(),
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Tables) -> T) -> Option<T> {
        self.inner.tables.lock().ok().map(|mut t| f(&mut t))
    }

    /// Register a new call.
    pub fn insert(&self, record: CallRecord, commands: CommandSender) -> CallHandle {
        let id = record.id.clone();
        // Admin watchers are the only readers of call events: no snapshot
        // (a proto copy of the call) when nobody watches.
        let snapshot = self
            .inner
            .events
            .has_subscribers()
            .then(|| record.to_proto(false));
        let record = Arc::new(Mutex::new(record));
        self.with(|t| {
            let now = Instant::now();
            t.created.push_back(now);
            while t
                .created
                .front()
                .is_some_and(|c| now.duration_since(*c) > Duration::from_secs(10))
            {
                t.created.pop_front();
            }
            t.calls.insert(
                id.clone(),
                Entry {
                    record: record.clone(),
                    commands: Some(commands),
                    ended_at: None,
                    dialogs: Vec::new(),
                    sessions: Vec::new(),
                },
            );
        });
        self.inner.total.fetch_add(1, Ordering::Relaxed);
        self.inner.metrics.started();
        if let Some(snapshot) = snapshot {
            self.inner.events.publish(Event::Call {
                change: CallChange::Created,
                call: Box::new(snapshot),
            });
        }
        CallHandle {
            table: self.clone(),
            id,
            record,
        }
    }

    /// Where an in-dialog request goes.
    pub fn dialog_route(&self, id: &DialogId) -> Option<DialogSender> {
        self.with(|t| t.dialogs.get(id).map(|(_, tx)| tx.clone()))
            .flatten()
    }

    /// Active (and optionally recently ended) calls, oldest first.
    pub fn list(&self, include_ended: bool) -> Vec<switchboard_proto::admin::v1::Call> {
        let records: Vec<Arc<Mutex<CallRecord>>> = self
            .with(|t| {
                prune_ended(t);
                t.calls
                    .values()
                    .filter(|e| include_ended || e.ended_at.is_none())
                    .map(|e| e.record.clone())
                    .collect()
            })
            .unwrap_or_default();
        let mut calls: Vec<_> = records
            .iter()
            .filter_map(|r| r.lock().ok().map(|r| (r.created_at, r.to_proto(false))))
            .collect();
        calls.sort_by_key(|(at, _)| *at);
        calls.into_iter().map(|(_, c)| c).collect()
    }

    /// Find a call by id or unique id prefix.
    pub fn get(
        &self,
        id_or_prefix: &str,
    ) -> Result<switchboard_proto::admin::v1::Call, LookupError> {
        let record = self.find(id_or_prefix)?.0;
        record
            .lock()
            .map(|r| r.to_proto(true))
            .map_err(|_| LookupError::NotFound(id_or_prefix.to_string()))
    }

    fn find(&self, id_or_prefix: &str) -> Result<Found, LookupError> {
        if id_or_prefix.is_empty() {
            return Err(LookupError::NotFound(String::new()));
        }
        self.with(|t| {
            if let Some(e) = t.calls.get(id_or_prefix) {
                return Ok((e.record.clone(), e.commands.clone()));
            }
            let matches: Vec<&Entry> = t
                .calls
                .iter()
                .filter(|(k, _)| k.starts_with(id_or_prefix))
                .map(|(_, e)| e)
                .collect();
            match matches.as_slice() {
                [e] => Ok((e.record.clone(), e.commands.clone())),
                [] => Err(LookupError::NotFound(id_or_prefix.to_string())),
                _ => Err(LookupError::Ambiguous(id_or_prefix.to_string())),
            }
        })
        .unwrap_or_else(|| Err(LookupError::NotFound(id_or_prefix.to_string())))
    }

    /// Ask a call to hang up; returns its state when asked.
    pub fn hangup(&self, id_or_prefix: &str, reason: &str) -> Result<CallState, LookupError> {
        let (record, commands) = self.find(id_or_prefix)?;
        let state = record
            .lock()
            .map(|r| r.state)
            .map_err(|_| LookupError::NotFound(id_or_prefix.to_string()))?;
        match commands {
            Some(tx) if state != CallState::Ended => {
                let _ = tx.send(Box::new(CallCommand::Hangup(reason.to_string())));
                Ok(state)
            }
            _ => Err(LookupError::AlreadyEnded(id_or_prefix.to_string())),
        }
    }

    /// Tell the call owning a media session that its media died.
    pub fn media_lost(&self, node: &str, session_id: &str, reason: &str) {
        let tx = self
            .with(|t| {
                let call = t
                    .sessions
                    .get(&(node.to_string(), session_id.to_string()))?;
                t.calls.get(call)?.commands.clone()
            })
            .flatten();
        if let Some(tx) = tx {
            let _ = tx.send(Box::new(CallCommand::MediaLost(reason.to_string())));
        }
    }

    /// Give a DTMF digit a media session received to the call owning it.
    pub fn dtmf(&self, node: &str, dtmf: crate::media::MediaDtmf) {
        let tx = self
            .with(|t| {
                let call = t
                    .sessions
                    .get(&(node.to_string(), dtmf.session_id.clone()))?;
                t.calls.get(call)?.commands.clone()
            })
            .flatten();
        if let Some(tx) = tx {
            let _ = tx.send(Box::new(CallCommand::Dtmf(dtmf)));
        }
    }

    /// Tell every call on `node` that its media died.
    pub fn node_lost(&self, node: &str) {
        let txs: Vec<_> = self
            .with(|t| {
                let ids: std::collections::HashSet<&String> = t
                    .sessions
                    .iter()
                    .filter(|((n, _), _)| n == node)
                    .map(|(_, c)| c)
                    .collect();
                ids.into_iter()
                    .filter_map(|c| t.calls.get(c).and_then(|e| e.commands.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for tx in txs {
            let _ = tx.send(Box::new(CallCommand::MediaLost(format!(
                "media node {node} lost"
            ))));
        }
    }

    /// Ask every call in progress to hang up; returns how many were asked.
    pub fn hangup_all(&self, reason: &str) -> usize {
        let txs: Vec<_> = self
            .with(|t| {
                t.calls
                    .values()
                    .filter_map(|e| e.commands.clone())
                    .collect()
            })
            .unwrap_or_default();
        let n = txs.len();
        for tx in txs {
            let _ = tx.send(Box::new(CallCommand::Hangup(reason.to_string())));
        }
        n
    }

    /// Calls in progress.
    pub fn active(&self) -> usize {
        self.with(|t| t.calls.values().filter(|e| e.ended_at.is_none()).count())
            .unwrap_or(0)
    }

    /// Calls since start.
    pub fn total(&self) -> u64 {
        self.inner.total.load(Ordering::Relaxed)
    }

    /// New calls per second over the last 10 s.
    pub fn calls_per_second(&self) -> f64 {
        self.with(|t| {
            let now = Instant::now();
            let n = t
                .created
                .iter()
                .filter(|c| now.duration_since(**c) <= Duration::from_secs(10))
                .count();
            n as f64 / 10.0
        })
        .unwrap_or(0.0)
    }

    /// The call metrics this table feeds.
    pub fn metrics(&self) -> &crate::metrics::CallMetrics {
        &self.inner.metrics
    }

    /// Calls in progress per state (states with none left out).
    pub fn count_by_state(&self) -> Vec<(CallState, usize)> {
        let records: Vec<Arc<Mutex<CallRecord>>> = self
            .with(|t| {
                t.calls
                    .values()
                    .filter(|e| e.ended_at.is_none())
                    .map(|e| e.record.clone())
                    .collect()
            })
            .unwrap_or_default();
        let mut counts: Vec<(CallState, usize)> = Vec::new();
        for state in records
            .iter()
            .filter_map(|r| r.lock().ok().map(|r| r.state))
        {
            match counts.iter_mut().find(|(s, _)| *s == state) {
                Some((_, n)) => *n += 1,
                None => counts.push((state, 1)),
            }
        }
        counts
    }

    /// Live dialog routes (for leak checks).
    pub fn dialog_count(&self) -> usize {
        self.with(|t| t.dialogs.len()).unwrap_or(0)
    }
}

fn prune_ended(t: &mut Tables) {
    while t.ended.len() > ENDED_KEEP
        || t.ended.front().is_some_and(|id| {
            t.calls
                .get(id)
                .and_then(|e| e.ended_at)
                .is_none_or(|at| at.elapsed() > ENDED_TTL)
        })
    {
        if let Some(id) = t.ended.pop_front() {
            t.calls.remove(&id);
        }
    }
}

/// Admin lookups that fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No such call.
    #[error("no call {0:?}")]
    NotFound(String),
    /// Prefix matches several calls.
    #[error("{0:?} matches several calls; give more of the id")]
    Ambiguous(String),
    /// The call is over.
    #[error("call {0:?} has already ended")]
    AlreadyEnded(String),
}

impl From<LookupError> for tonic::Status {
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::NotFound(_) => tonic::Status::not_found(e.to_string()),
            LookupError::Ambiguous(_) => tonic::Status::invalid_argument(e.to_string()),
            LookupError::AlreadyEnded(_) => tonic::Status::failed_precondition(e.to_string()),
        }
    }
}

impl CallHandle {
    /// The call id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Change the record; publish `change` when given.
    pub fn update(&self, change: Option<CallChange>, f: impl FnOnce(&mut CallRecord)) {
        let snapshot = match self.record.lock() {
            Ok(mut r) => {
                f(&mut r);
                if change == Some(CallChange::Answered) {
                    self.table.inner.metrics.answered(&r);
                }
                change
                    .filter(|_| self.table.inner.events.has_subscribers())
                    .map(|_| r.to_proto(false))
            }
            Err(_) => None,
        };
        if let (Some(change), Some(call)) = (change, snapshot) {
            self.table.inner.events.publish(Event::Call {
                change,
                call: Box::new(call),
            });
        }
    }

    /// Route in-dialog requests of `dialog` to `tx`.
    pub fn route_dialog(&self, dialog: DialogId, tx: DialogSender) {
        let id = self.id.clone();
        self.table.with(|t| t.dialogs.insert(dialog, (id, tx)));
    }

    /// Stop routing `dialog`.
    pub fn unroute_dialog(&self, dialog: &DialogId) {
        self.table.with(|t| t.dialogs.remove(dialog));
    }

    /// Index a media session of this call.
    pub fn add_session(&self, node: &str, session_id: &str) {
        let id = self.id.clone();
        self.table.with(|t| {
            t.sessions
                .insert((node.to_string(), session_id.to_string()), id)
        });
    }

    /// Forget a media session.
    pub fn remove_session(&self, node: &str, session_id: &str) {
        self.table.with(|t| {
            t.sessions
                .remove(&(node.to_string(), session_id.to_string()))
        });
    }
}

impl Drop for CallHandle {
    fn drop(&mut self) {
        let snapshot = match self.record.lock() {
            Ok(mut r) => {
                r.state = CallState::Ended;
                if r.ended_at.is_none() {
                    r.ended_at = Some(SystemTime::now());
                }
                self.table.inner.metrics.ended(&r);
                self.table
                    .inner
                    .events
                    .has_subscribers()
                    .then(|| r.to_proto(false))
            }
            Err(_) => None,
        };
        let id = self.id.clone();
        self.table.with(|t| {
            if let Some(e) = t.calls.get_mut(&id) {
                e.commands = None;
                e.ended_at = Some(Instant::now());
                for d in std::mem::take(&mut e.dialogs) {
                    t.dialogs.remove(&d);
                }
                for k in std::mem::take(&mut e.sessions) {
                    t.sessions.remove(&k);
                }
            }
            t.ended.push_back(id.clone());
            prune_ended(t);
        });
        if let Some(call) = snapshot {
            self.table.inner.events.publish(Event::Call {
                change: CallChange::Ended,
                call: Box::new(call),
            });
        }
    }
}
