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

/// A call found by id: a live call's record and command channel, or an
/// ended call's encoded admin view.
enum Found {
    Live(Arc<Mutex<CallRecord>>, Option<CommandSender>),
    Ended(Box<[u8]>),
}

/// Ended calls kept for inspection, and for how long (`calls.keep_ended`,
/// `calls.keep_ended_secs`; the CDR history covers older ones).
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Ended calls kept at most.
    pub keep: usize,
    /// How long an ended call stays listed.
    pub ttl: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        let c = crate::cdr::config::CallsConfig::default();
        Self {
            keep: c.keep_ended,
            ttl: c.keep_ended_for(),
        }
    }
}

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
    /// Move the call's media to another node (drain with migration,
    /// `super::migrate`); the outcome goes back on the order.
    Migrate(super::migrate::MigrateOrder),
}

/// What the table keeps of a call.
#[derive(Debug)]
enum Kept {
    /// A call in progress: the record its task updates.
    Live(Arc<Mutex<CallRecord>>),
    /// An ended call, for the console: its admin view (ladder included),
    /// protobuf-encoded in one allocation. A record is a few dozen small
    /// allocations made while its call ran; scattered among everything a
    /// burst allocated, `calls.keep_ended` (200 by default) of them pinned ~10 MiB of pages
    /// after a 500 calls/s burst for ~1 MiB of data (issue #14).
    Ended(Box<[u8]>),
}

#[derive(Debug)]
struct Entry {
    record: Kept,
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
    retention: Retention,
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
        Self::with_retention(events, Retention::default())
    }

    /// An empty table keeping ended calls per `retention`.
    pub fn with_retention(events: EventBus, retention: Retention) -> Self {
        Self {
            inner: Arc::new(Inner {
                tables: Mutex::new(Tables {
                    retention,
                    ..Tables::default()
                }),
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
                    record: Kept::Live(record.clone()),
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
        let found: Vec<Found> = self
            .with(|t| {
                prune_ended(t);
                t.calls
                    .values()
                    .filter(|e| include_ended || e.ended_at.is_none())
                    .map(|e| match &e.record {
                        Kept::Live(r) => Found::Live(r.clone(), None),
                        Kept::Ended(b) => Found::Ended(b.clone()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut calls: Vec<_> = found
            .into_iter()
            .filter_map(|f| view(f, false))
            .map(|c| {
                let at = c.created_at.map(|t| (t.seconds, t.nanos));
                (at, c)
            })
            .collect();
        calls.sort_by_key(|(at, _)| *at);
        calls.into_iter().map(|(_, c)| c).collect()
    }

    /// Find a call by id or unique id prefix.
    pub fn get(
        &self,
        id_or_prefix: &str,
    ) -> Result<switchboard_proto::admin::v1::Call, LookupError> {
        view(self.find(id_or_prefix)?, true)
            .ok_or_else(|| LookupError::NotFound(id_or_prefix.to_string()))
    }

    fn find(&self, id_or_prefix: &str) -> Result<Found, LookupError> {
        if id_or_prefix.is_empty() {
            return Err(LookupError::NotFound(String::new()));
        }
        let found = |e: &Entry| match &e.record {
            Kept::Live(r) => Found::Live(r.clone(), e.commands.clone()),
            Kept::Ended(b) => Found::Ended(b.clone()),
        };
        self.with(|t| {
            if let Some(e) = t.calls.get(id_or_prefix) {
                return Ok(found(e));
            }
            let matches: Vec<&Entry> = t
                .calls
                .iter()
                .filter(|(k, _)| k.starts_with(id_or_prefix))
                .map(|(_, e)| e)
                .collect();
            match matches.as_slice() {
                [e] => Ok(found(e)),
                [] => Err(LookupError::NotFound(id_or_prefix.to_string())),
                _ => Err(LookupError::Ambiguous(id_or_prefix.to_string())),
            }
        })
        .unwrap_or_else(|| Err(LookupError::NotFound(id_or_prefix.to_string())))
    }

    /// Ask a call to hang up; returns its state when asked.
    pub fn hangup(&self, id_or_prefix: &str, reason: &str) -> Result<CallState, LookupError> {
        let (record, commands) = match self.find(id_or_prefix)? {
            Found::Live(record, commands) => (record, commands),
            Found::Ended(_) => return Err(LookupError::AlreadyEnded(id_or_prefix.to_string())),
        };
        let state = record
            .lock()
            .map(|r| r.state)
            .map_err(|_| LookupError::NotFound(id_or_prefix.to_string()))?;
        match commands {
            Some(tx) if state != CallState::Ended => {
                // The CDR says an operator ended it, whatever the reason text.
                if let Ok(mut r) = record.lock() {
                    r.cdr.operator_hangup = true;
                }
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

    /// Bridged calls with media sessions on `node`: their ids and command
    /// channels (drain with migration).
    pub fn bridged_on_node(&self, node: &str) -> Vec<(String, CommandSender)> {
        self.with(|t| {
            let ids: std::collections::BTreeSet<&String> = t
                .sessions
                .iter()
                .filter(|((n, _), _)| n == node)
                .map(|(_, c)| c)
                .collect();
            ids.into_iter()
                .filter_map(|c| {
                    let e = t.calls.get(c)?;
                    let bridged = match &e.record {
                        Kept::Live(r) => r.lock().is_ok_and(|r| r.state == CallState::Bridged),
                        Kept::Ended(_) => false,
                    };
                    bridged.then(|| e.commands.clone().map(|tx| (c.clone(), tx)))?
                })
                .collect()
        })
        .unwrap_or_default()
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
                    .filter_map(|e| match &e.record {
                        Kept::Live(r) => Some(r.clone()),
                        Kept::Ended(_) => None,
                    })
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

/// The admin view of a found call (`with_ladder` for GetCall).
fn view(found: Found, with_ladder: bool) -> Option<switchboard_proto::admin::v1::Call> {
    match found {
        Found::Live(r, _) => r.lock().ok().map(|r| r.to_proto(with_ladder)),
        Found::Ended(bytes) => {
            let mut call =
                <switchboard_proto::admin::v1::Call as prost::Message>::decode(&bytes[..]).ok()?;
            if !with_ladder {
                call.ladder = Vec::new();
            }
            Some(call)
        }
    }
}

fn prune_ended(t: &mut Tables) {
    let Retention { keep, ttl } = t.retention;
    while t.ended.len() > keep
        || t.ended.front().is_some_and(|id| {
            t.calls
                .get(id)
                .and_then(|e| e.ended_at)
                .is_none_or(|at| at.elapsed() > ttl)
        })
    {
        if let Some(id) = t.ended.pop_front() {
            t.calls.remove(&id);
        }
    }
}

/// What the call table holds (see [`CallTable::retained`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallsRetained {
    /// Calls in progress.
    pub live: usize,
    /// Ended calls kept for the console: at most `calls.keep_ended` (200 by default), each for
    /// at most `calls.keep_ended_secs` (300).
    pub ended: usize,
    /// Estimated heap bytes of those ended records (bounded by their count).
    pub ended_bytes: usize,
    /// Dialog routes (in-dialog requests to call tasks).
    pub dialogs: usize,
    /// Media-session index entries.
    pub sessions: usize,
    /// Call start times kept for calls/s (the last 10 s).
    pub created: usize,
    /// Estimated heap bytes of the dialog routes, the media index and the
    /// start times: what grows with calls and is not bounded by a count.
    pub bytes: usize,
}

impl CallTable {
    /// What the table holds now, with estimated bytes (for the memory tests
    /// of issue #14: a finished call must leave nothing but its bounded
    /// console record and a start time).
    pub fn retained(&self) -> CallsRetained {
        self.with(|t| {
            let mut r = CallsRetained {
                dialogs: t.dialogs.len(),
                sessions: t.sessions.len(),
                created: t.created.len(),
                ..Default::default()
            };
            for e in t.calls.values() {
                match &e.record {
                    Kept::Ended(b) => {
                        r.ended += 1;
                        r.ended_bytes += b.len();
                    }
                    Kept::Live(_) => r.live += 1,
                }
            }
            r.bytes += t
                .dialogs
                .iter()
                .map(|(d, (id, _))| {
                    std::mem::size_of::<(DialogId, (String, DialogSender))>()
                        + d.call_id.capacity()
                        + d.local_tag.capacity()
                        + d.remote_tag.capacity()
                        + id.capacity()
                })
                .sum::<usize>();
            r.bytes += t
                .sessions
                .iter()
                .map(|((n, s), c)| {
                    std::mem::size_of::<((String, String), String)>()
                        + n.capacity()
                        + s.capacity()
                        + c.capacity()
                })
                .sum::<usize>();
            r.bytes += t.created.len() * std::mem::size_of::<Instant>();
            r
        })
        .unwrap_or_default()
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

    /// Stop routing `dialog` to this call. A dialog handed over to another
    /// call (attended transfer, Replaces) is routed to that call now and
    /// stays: a call's cleanup only removes its own routes.
    pub fn unroute_dialog(&self, dialog: &DialogId) {
        self.table.with(|t| {
            if t.dialogs
                .get(dialog)
                .is_some_and(|(owner, _)| *owner == self.id)
            {
                t.dialogs.remove(dialog);
            }
        });
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
        let wants_snapshot = self.table.inner.events.has_subscribers();
        let id = std::mem::take(&mut self.id);
        let record = &self.record;
        let metrics = &self.table.inner.metrics;
        let mut snapshot = None;
        // Under the table lock (then the record's, the order every lookup
        // takes them in): nobody can take a new reference to the record
        // meanwhile, so when the table and this handle are its only
        // holders its strings are moved into the admin view, not copied
        // (issue #17: the copies were most of a call's end).
        self.table.with(|t| {
            let sole = Arc::strong_count(record) == 2;
            let kept = match record.lock() {
                Ok(mut r) => {
                    r.state = CallState::Ended;
                    if r.ended_at.is_none() {
                        r.ended_at = Some(SystemTime::now());
                    }
                    metrics.ended(&r);
                    let full = if sole {
                        r.take_proto()
                    } else {
                        r.to_proto(true)
                    };
                    let kept = prost::Message::encode_to_vec(&full).into_boxed_slice();
                    snapshot = wants_snapshot.then(|| {
                        let mut call = full;
                        call.ladder = Vec::new();
                        call
                    });
                    Some(kept)
                }
                Err(_) => None,
            };
            if let Some(e) = t.calls.get_mut(&id) {
                e.commands = None;
                e.ended_at = Some(Instant::now());
                if let Some(kept) = kept {
                    e.record = Kept::Ended(kept);
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_proto::admin::v1 as pb;

    #[test]
    fn an_ended_call_is_kept_encoded_and_shown_as_it_was() {
        let table = CallTable::new(EventBus::new());
        let (tx, _rx) = mpsc::unbounded_channel();
        let handle = table.insert(
            CallRecord::new("abc123".into(), "alice".into(), "1002".into()),
            tx,
        );
        handle.update(None, |r| {
            r.log_message(
                true,
                true,
                "INVITE".into(),
                b"INVITE sip:b SIP/2.0\r\n\r\nv=0\r\n",
            );
            r.end_cause = "caller hung up".into();
        });
        assert_eq!(table.active(), 1);
        drop(handle);
        let kept = table.retained();
        assert_eq!((kept.live, kept.ended), (0, 1));
        assert!(kept.ended_bytes > 0);

        assert!(table.list(false).is_empty());
        let listed = table.list(true);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].call_id, "abc123");
        assert_eq!(listed[0].end_cause, "caller hung up");
        assert_eq!(listed[0].state, pb::CallState::Ended as i32);
        assert!(listed[0].ladder.is_empty(), "lists carry no ladder");
        let got = table.get("abc").expect("found by prefix");
        assert_eq!(got.ladder.len(), 1);
        assert_eq!(got.ladder[0].summary, "INVITE");
        assert!(got.ended_at.is_some());
        assert_eq!(
            table.hangup("abc123", "test"),
            Err(LookupError::AlreadyEnded("abc123".into()))
        );
    }
}

#[cfg(test)]
mod retention_tests {
    use super::*;

    fn ended_calls(table: &CallTable, n: usize) {
        for i in 0..n {
            let (tx, _rx) = mpsc::unbounded_channel();
            let record = CallRecord::new(format!("c{i}"), "a".into(), "b".into());
            drop(table.insert(record, tx));
        }
    }

    #[test]
    fn ended_calls_are_kept_as_configured() {
        let keep_two = CallTable::with_retention(
            EventBus::new(),
            Retention {
                keep: 2,
                ttl: Duration::from_secs(300),
            },
        );
        ended_calls(&keep_two, 5);
        let mut ids: Vec<String> = keep_two.list(true).into_iter().map(|c| c.call_id).collect();
        ids.sort();
        assert_eq!(ids, ["c3", "c4"], "the newest two");
        let none = CallTable::with_retention(
            EventBus::new(),
            Retention {
                keep: 200,
                ttl: Duration::ZERO,
            },
        );
        ended_calls(&none, 3);
        std::thread::sleep(Duration::from_millis(5));
        assert!(none.list(true).is_empty(), "past keep_ended_secs");
        let default = CallTable::new(EventBus::new());
        ended_calls(&default, 3);
        assert_eq!(default.list(true).len(), 3);
    }
}
