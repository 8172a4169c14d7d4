//! What `swctl top` knows, fed by the Watch streams of every backend.
//!
//! Calls live in a `HashMap` keyed by (backend, call id) so an event costs
//! O(1); screens keep their own sorted index and rebuild it only when
//! [`Store::calls_version`] moved (see `screens::calls`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::SystemTime;

use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::media_admin_event::Event as MediaEvent;
use switchboard_proto::admin::v1::signaling_event::Event as SigEvent;

use super::event::{ConnState, Update};
use super::history::History;
use crate::cmd::Kind;
use crate::views;
use crate::views::events::EventView;

/// (backend index, call id).
pub type CallKey = (usize, String);

/// One backend as the header shows it.
#[derive(Debug, Clone)]
pub struct BackendInfo {
    /// Short name.
    pub label: String,
    /// swbd, swrtp or not known yet.
    pub kind: Kind,
    /// Connection state.
    pub conn: ConnState,
    /// Last swbd status (GetStatus at connect, or polled when Watch is missing).
    pub status: Option<pb::Status>,
    /// Last swrtp status.
    pub media_status: Option<pb::MediaStatus>,
    /// Initial snapshot received (SnapshotDone seen, or first live media event).
    pub synced: bool,
}

/// Kept events for the Events screen.
pub const EVENT_LOG: usize = 1000;
/// Ended calls kept (with their final media statistics), over all backends.
pub const ENDED_KEEP: usize = 1000;

/// How much an event line matters (its colour on the Events screen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Routine and frequent (registrations).
    Quiet,
    /// Calls, dialplans applied, nodes up.
    Info,
    /// Something to look at: a failed call, a node down, an RTP timeout.
    Warn,
    /// Security events, refused dialplans, lost connections.
    Bad,
}

/// One line of the Events screen.
#[derive(Debug, Clone, PartialEq)]
pub struct EventLine {
    /// `HH:MM:SS  backend  text`, control characters replaced.
    pub text: String,
    /// Its colour.
    pub severity: Severity,
}
/// Seconds of call-rate history.
pub const RATE_SECONDS: usize = 120;

/// Everything shown.
#[derive(Debug)]
pub struct Store {
    /// Backends, indexed as in the feeds.
    pub backends: Vec<BackendInfo>,
    /// Calls (active, and ended ones kept by swbd).
    pub calls: HashMap<CallKey, pb::Call>,
    /// Bumped on every change of `calls` (lazy index rebuilds).
    pub calls_version: u64,
    /// Media sessions by session id, with their backend.
    pub sessions: HashMap<String, (usize, pb::MediaSessionInfo)>,
    /// Bindings by (backend, aor, contact).
    pub registrations: BTreeMap<(usize, String, String), pb::Registration>,
    /// Bumped on every change of `registrations`.
    pub registrations_version: u64,
    /// swbd pool nodes by (backend, name).
    pub nodes: BTreeMap<(usize, String), pb::MediaNode>,
    /// New calls per second, newest last; the last bucket is the current second.
    pub rate: VecDeque<u64>,
    /// Second (Unix) of the last bucket.
    pub rate_second: i64,
    /// Recent events, newest last.
    pub events: VecDeque<EventLine>,
    /// Dialplan version per backend (from Watch).
    pub dialplans: HashMap<usize, String>,
    /// The last dialplan reload per backend (from GetStatus, then live
    /// dialplan events).
    pub reloads: HashMap<usize, pb::DialplanReload>,
    /// Call detail records (loaded at connect and as calls end).
    pub history: History,
    /// Ended calls in the order they ended (bounds them to [`ENDED_KEEP`]).
    ended_order: VecDeque<CallKey>,
    /// Final statistics of destroyed media sessions of ended calls, by
    /// session id (bounded like the ended calls).
    pub ended_sessions: HashMap<String, (usize, pb::MediaSessionInfo)>,
    ended_sessions_order: VecDeque<String>,
    /// Wall clock used for durations (set by the tick; fixed in tests).
    pub now: SystemTime,
}

impl Store {
    /// An empty store for these backends.
    pub fn new(backends: Vec<(String, Kind)>, now: SystemTime) -> Self {
        Self {
            backends: backends
                .into_iter()
                .map(|(label, kind)| BackendInfo {
                    label,
                    kind,
                    conn: ConnState::Connecting,
                    status: None,
                    media_status: None,
                    synced: false,
                })
                .collect(),
            calls: HashMap::new(),
            calls_version: 0,
            sessions: HashMap::new(),
            registrations: BTreeMap::new(),
            registrations_version: 0,
            nodes: BTreeMap::new(),
            rate: VecDeque::from(vec![0; RATE_SECONDS]),
            rate_second: unix(now),
            events: VecDeque::new(),
            dialplans: HashMap::new(),
            reloads: HashMap::new(),
            history: History::default(),
            ended_order: VecDeque::new(),
            ended_sessions: HashMap::new(),
            ended_sessions_order: VecDeque::new(),
            now,
        }
    }

    /// `now` as a protobuf timestamp.
    pub fn now_ts(&self) -> prost_types::Timestamp {
        prost_types::Timestamp::from(self.now)
    }

    /// Label of a backend (`?` for an unknown index).
    pub fn label(&self, backend: usize) -> &str {
        self.backends
            .get(backend)
            .map(|b| b.label.as_str())
            .unwrap_or("?")
    }

    /// Move the clock (shifts the call-rate buckets).
    pub fn set_now(&mut self, now: SystemTime) {
        self.now = now;
        self.roll_rate(unix(now));
    }

    fn roll_rate(&mut self, sec: i64) {
        if sec <= self.rate_second {
            return;
        }
        let steps = sec
            .saturating_sub(self.rate_second)
            .min(RATE_SECONDS as i64);
        for _ in 0..steps {
            self.rate.pop_front();
            self.rate.push_back(0);
        }
        self.rate_second = sec;
    }

    /// Calls per second over the last 10 full seconds.
    pub fn calls_per_second(&self) -> f64 {
        let n = self.rate.len();
        let sum: u64 = self.rate.iter().skip(n.saturating_sub(11)).take(10).sum();
        sum as f64 / 10.0
    }

    fn log(
        &mut self,
        backend: usize,
        at: Option<&prost_types::Timestamp>,
        text: String,
        severity: Severity,
    ) {
        let text: String = format!("{}  {:<8} {}", views::clock(at), self.label(backend), text)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if self.events.len() >= EVENT_LOG {
            self.events.pop_front();
        }
        self.events.push_back(EventLine { text, severity });
    }

    /// Log a swbd event as `swctl events` shows it (kind, event, subject,
    /// detail), coloured by what it means.
    fn log_event(&mut self, backend: usize, ev: &pb::SignalingEvent) {
        let Some(v) = EventView::new(self.label(backend), ev) else {
            return;
        };
        let severity = match (&ev.event, v.kind) {
            (_, "security") => Severity::Bad,
            (_, "registration") => Severity::Quiet,
            (Some(SigEvent::Dialplan(d)), _) if !d.applied => Severity::Bad,
            (Some(SigEvent::Call(c)), _)
                if c.call.as_ref().is_some_and(|c| c.end_status >= 300) =>
            {
                Severity::Warn
            }
            (Some(SigEvent::MediaNode(n)), _)
                if n.node
                    .as_ref()
                    .is_some_and(|n| n.state != pb::MediaNodeState::Up as i32) =>
            {
                Severity::Warn
            }
            _ => Severity::Info,
        };
        let subject = if v.kind == "call" {
            short_id(&v.subject).to_string()
        } else {
            v.subject.clone()
        };
        let text = format!("{} {} {}: {}", v.kind, v.event, subject, v.detail);
        self.log(backend, ev.at.as_ref(), text, severity);
    }

    /// Apply one update from a feed.
    pub fn apply(&mut self, u: Update) {
        match u {
            Update::Conn { backend, state } => {
                if let Some(b) = self.backends.get_mut(backend) {
                    if let ConnState::Reconnecting { error, .. } = &state
                        && !matches!(b.conn, ConnState::Reconnecting { .. })
                    {
                        let text = format!("disconnected: {error}");
                        b.conn = state;
                        b.synced = false;
                        self.log(
                            backend,
                            Some(&prost_types::Timestamp::from(self.now)),
                            text,
                            Severity::Bad,
                        );
                        return;
                    }
                    b.conn = state;
                }
            }
            Update::Kind { backend, kind } => {
                if let Some(b) = self.backends.get_mut(backend) {
                    b.kind = kind;
                }
            }
            Update::SwbdStatus { backend, status } => {
                if let Some(r) = &status.last_dialplan_reload {
                    self.reloads.insert(backend, r.clone());
                }
                if let Some(b) = self.backends.get_mut(backend) {
                    b.status = Some(*status);
                }
            }
            Update::History {
                backend,
                records,
                state,
            } => {
                if let Some(st) = state {
                    self.history.state.insert(backend, st);
                }
                self.history.insert(backend, records);
            }
            Update::RecentEvents { backend, events } => {
                for ev in &events {
                    self.log_event(backend, ev);
                }
            }
            Update::Nodes { backend, nodes } => {
                for n in nodes {
                    self.nodes.insert((backend, n.name.clone()), n);
                }
            }
            Update::Reset { backend } => self.reset(backend),
            Update::Signaling { backend, event } => self.apply_signaling(backend, event),
            Update::Media { backend, event } => self.apply_media(backend, event),
            Update::Batch(v) => {
                for u in v {
                    self.apply(u);
                }
            }
            Update::CallDetail { .. } | Update::CallCapture { .. } | Update::Flash(_) => {}
        }
    }

    /// Forget what a backend told us (its Watch was reopened; a snapshot follows).
    pub fn reset(&mut self, backend: usize) {
        let before = self.calls.len();
        self.calls.retain(|(b, _), _| *b != backend);
        if self.calls.len() != before {
            self.calls_version += 1;
        }
        self.sessions.retain(|_, (b, _)| *b != backend);
        let before = self.registrations.len();
        self.registrations.retain(|(b, _, _), _| *b != backend);
        if self.registrations.len() != before {
            self.registrations_version += 1;
        }
        self.nodes.retain(|(b, _), _| *b != backend);
        self.ended_order.retain(|(b, _)| *b != backend);
        if let Some(b) = self.backends.get_mut(backend) {
            b.synced = false;
        }
    }

    fn apply_signaling(&mut self, backend: usize, ev: pb::SignalingEvent) {
        let live = !ev.is_snapshot;
        if live {
            self.log_event(backend, &ev);
        }
        let at = ev.at;
        match ev.event {
            Some(SigEvent::Call(ce)) => {
                let Some(call) = ce.call else { return };
                let kind = pb::CallEventKind::try_from(ce.kind).unwrap_or_default();
                if live && kind == pb::CallEventKind::Created {
                    let sec = at.as_ref().map(|t| t.seconds).unwrap_or(self.rate_second);
                    self.roll_rate(sec);
                    let idx = self.rate.len().saturating_sub(
                        usize::try_from(self.rate_second.saturating_sub(sec))
                            .unwrap_or(usize::MAX)
                            .saturating_add(1),
                    );
                    if let Some(b) = self.rate.get_mut(idx) {
                        *b += 1;
                    }
                }
                let key = (backend, call.call_id.clone());
                // Ended calls are kept (with their final state) like swbd keeps
                // them; a Watch reset drops them.
                let ended = call.state == pb::CallState::Ended as i32;
                let was_ended = match self.calls.get_mut(&key) {
                    Some(c) => {
                        let was = c.state == pb::CallState::Ended as i32;
                        let ladder = std::mem::take(&mut c.ladder);
                        *c = call;
                        c.ladder = ladder;
                        was
                    }
                    None => {
                        self.calls.insert(key.clone(), call);
                        false
                    }
                };
                if ended && !was_ended {
                    self.note_ended(key);
                }
                self.calls_version += 1;
            }
            Some(SigEvent::Registration(re)) => {
                let Some(r) = re.registration else { return };
                let kind = pb::RegistrationEventKind::try_from(re.kind).unwrap_or_default();
                let key = (backend, r.aor.clone(), r.contact.clone());
                match kind {
                    pb::RegistrationEventKind::Removed | pb::RegistrationEventKind::Expired => {
                        self.registrations.remove(&key);
                    }
                    _ => {
                        self.registrations.insert(key, r);
                    }
                }
                self.registrations_version += 1;
            }
            Some(SigEvent::MediaNode(ne)) => {
                let Some(n) = ne.node else { return };
                self.nodes.insert((backend, n.name.clone()), n);
            }
            Some(SigEvent::Dialplan(d)) => {
                // The snapshot only says which plan is in force; a live
                // event is a reload's outcome.
                if live {
                    self.reloads.insert(
                        backend,
                        pb::DialplanReload {
                            applied: d.applied,
                            at,
                            version: d.version.clone(),
                            source: d.source.clone(),
                            errors: d.errors.into_iter().take(10).collect(),
                        },
                    );
                }
                self.dialplans.insert(backend, d.version);
            }
            Some(SigEvent::SnapshotDone(_)) => {
                if let Some(b) = self.backends.get_mut(backend) {
                    b.synced = true;
                }
            }
            // Already bounded by swbd (one event, then one summary per
            // source and interval; migrations by the calls of one node);
            // logged above.
            Some(SigEvent::Security(_)) | Some(SigEvent::Migration(_)) | None => {}
        }
    }

    /// A call ended: keep it (and its final statistics) among the last
    /// [`ENDED_KEEP`] ended calls.
    fn note_ended(&mut self, key: CallKey) {
        self.ended_order.push_back(key);
        while self.ended_order.len() > ENDED_KEEP {
            let Some(old) = self.ended_order.pop_front() else {
                break;
            };
            if self
                .calls
                .get(&old)
                .is_some_and(|c| c.state == pb::CallState::Ended as i32)
            {
                self.calls.remove(&old);
            }
        }
    }

    /// Live or final statistics of a media session.
    pub fn session_stats(
        &self,
        session_id: &str,
    ) -> Option<&switchboard_proto::media::v1::SessionStats> {
        self.sessions
            .get(session_id)
            .or_else(|| self.ended_sessions.get(session_id))
            .and_then(|(_, s)| s.stats.as_ref())
    }

    fn apply_media(&mut self, backend: usize, ev: pb::MediaAdminEvent) {
        let live = !ev.is_snapshot;
        if live && let Some(b) = self.backends.get_mut(backend) {
            b.synced = true;
        }
        match ev.event {
            Some(MediaEvent::SessionCreated(s)) | Some(MediaEvent::SessionStats(s)) => {
                self.sessions.insert(s.session_id.clone(), (backend, s));
            }
            Some(MediaEvent::SessionTimedOut(s)) => {
                self.log(
                    backend,
                    ev.at.as_ref(),
                    format!(
                        "media timeout {}: call {} got no RTP",
                        s.session_id,
                        short_id(&s.call_id)
                    ),
                    Severity::Warn,
                );
                self.sessions.insert(s.session_id.clone(), (backend, s));
            }
            Some(MediaEvent::SessionDestroyed(s)) => {
                self.sessions.remove(&s.session_id);
                // Its final statistics outlive it, with the ended calls.
                if s.stats.is_some() {
                    let id = s.session_id.clone();
                    if self
                        .ended_sessions
                        .insert(id.clone(), (backend, s))
                        .is_none()
                    {
                        self.ended_sessions_order.push_back(id);
                    }
                    while self.ended_sessions_order.len() > 2 * ENDED_KEEP {
                        if let Some(old) = self.ended_sessions_order.pop_front() {
                            self.ended_sessions.remove(&old);
                        }
                    }
                }
            }
            Some(MediaEvent::SnapshotDone(_)) => {
                if let Some(b) = self.backends.get_mut(backend) {
                    b.synced = true;
                }
            }
            Some(MediaEvent::Status(st)) => {
                let Some(b) = self.backends.get_mut(backend) else {
                    return;
                };
                let changed = b.media_status.as_ref().map(|m| m.draining) != Some(st.draining);
                let text = format!(
                    "swrtp {} {}",
                    st.node_id,
                    if st.draining {
                        "draining"
                    } else {
                        "accepting sessions"
                    }
                );
                let severity = if st.draining {
                    Severity::Warn
                } else {
                    Severity::Info
                };
                b.media_status = Some(st);
                if live && changed {
                    self.log(backend, ev.at.as_ref(), text, severity);
                }
            }
            None => {}
        }
    }

    /// Worst receive loss (%) and jitter (ms) over a call's legs, and
    /// whether its media is one-way or silent (`tui::health`).
    pub fn call_quality(&self, key: &CallKey, call: &pb::Call) -> Option<super::health::Health> {
        super::health::call_health(self, key, call)
    }

    /// Seconds a call has lasted at `now`: since answer, else since creation;
    /// ended calls use their final duration.
    pub fn call_secs(&self, c: &pb::Call) -> i64 {
        Self::call_secs_at(c, &self.now_ts())
    }

    /// [`Store::call_secs`] at a given `now` (sorting computes it once).
    pub fn call_secs_at(c: &pb::Call, now: &prost_types::Timestamp) -> i64 {
        if c.state == pb::CallState::Ended as i32 {
            return c.duration.as_ref().map(|d| d.seconds).unwrap_or(0);
        }
        let from = c
            .answered_at
            .as_ref()
            .filter(|t| t.seconds != 0)
            .or(c.created_at.as_ref());
        views::secs_between(from, now)
    }

    /// Header numbers: (active calls, registrations, nodes up, nodes total, draining).
    /// Backends without a Watch stream contribute their polled status.
    pub fn totals(&self) -> (usize, usize, usize, usize, usize) {
        let mut calls = self
            .calls
            .values()
            .filter(|c| c.state != pb::CallState::Ended as i32)
            .count();
        let mut regs = self.registrations.len();
        let mut up = self
            .nodes
            .values()
            .filter(|n| {
                n.state == pb::MediaNodeState::Up as i32
                    || n.state == pb::MediaNodeState::Draining as i32
            })
            .count();
        let mut total = self.nodes.len();
        let draining = self
            .nodes
            .values()
            .filter(|n| n.state == pb::MediaNodeState::Draining as i32)
            .count();
        for b in &self.backends {
            if let (Some(s), ConnState::Connected { watching: false }) = (&b.status, &b.conn) {
                calls += s.active_calls as usize;
                regs += s.registrations as usize;
                up += s.media_nodes_up as usize;
                total += s.media_nodes_total as usize;
            }
        }
        (calls, regs, up, total, draining)
    }
}

/// First 8 characters of an id, for narrow columns.
pub fn short_id(id: &str) -> &str {
    match id.char_indices().nth(8) {
        Some((i, _)) => id.get(..i).unwrap_or(id),
        None => id,
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
