//! The state store: what must outlive one swbd process or be shared by
//! several (issue #18): registrations, media-node drain flags, and records
//! other modules keep (dialogs), in memory or in Redis.
//!
//! # Layout
//! - [`StateStore`]: cheap-clone handle; backend chosen by `state.backend`;
//!   typed async methods ([`StateStore::put_binding`],
//!   [`StateStore::write_bindings`], [`StateStore::set_drain`], [`StateStore::put_json`] for other kinds);
//!   [`StateStore::health`] (connected, last error, failed operations);
//!   [`StateStore::subscribe`] for what other instances changed.
//! - [`bindings`] - registrations: keys, index, change messages.
//! - [`config`] - `state:` ([`StateConfig`]).
//! - [`drain_sync`] - media-node drain flags kept in the store.
//! - [`record`] - [`StoredBinding`].
//! - [`memory`] - the in-process backend (default).
//! - [`redis`] - the Redis backend (key layout in its docs).
//! - [`status`] - health for admin `GetStatus` and `/metrics`.
//!
//! Records of other kinds: `put_json("dialog", id, &record, ttl)`,
//! `get_json`, `delete`, `scan_json("dialog")`. A kind is a short
//! lowercase name (`[a-z0-9_-]`, a new kind needs no change here); keys
//! are any text (escaped, or hashed when long).
//!
//! Failure: an operation that fails (Redis down, slow) returns
//! [`Error`], marks the store down (`swctl status`, metric
//! `swbd_state_store_up`) and counts in `swbd_state_store_errors_total`;
//! a health task pings every second and marks it up again, then tells
//! subscribers to resynchronise ([`Change::Resync`]).

pub mod bindings;
pub mod config;
pub mod drain_sync;
pub mod memory;
pub mod record;
pub mod redis;
pub mod status;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::Digest;
use switchboard_proto::support::shutdown::Shutdown;
use tokio::sync::broadcast;

pub use bindings::BindingWrite;
pub use config::{BackendKind, StateConfig};
pub use record::StoredBinding;

use memory::MemoryStore;
use redis::RedisStore;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// No answer within `state.redis.timeout_ms`.
    #[error("redis did not answer in time")]
    Timeout,
    /// A record that does not (de)serialise.
    #[error("record encoding: {0}")]
    Codec(#[from] serde_json::Error),
    /// The memory backend holds its maximum.
    #[error("state store full ({0} entries)")]
    Full(usize),
    /// A kind outside `[a-z0-9_-]{1,32}`.
    #[error("bad record kind {0:?}")]
    BadKind(String),
    /// A lock was poisoned by a panic elsewhere.
    #[error("state store lock poisoned")]
    Poisoned,
    /// Configuration (URL).
    #[error("{0}")]
    Config(String),
}

/// `Result` of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What another instance changed (or, for [`Change::Resync`], that the
/// store came back and caches should reload).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Registrations another instance wrote (puts and removals, in
    /// order).
    BindingWrites(Arc<[BindingWrite]>),
    /// The bindings of this user changed: read them again (from an
    /// instance of an earlier version, or a message too long to carry).
    Bindings(String),
    /// Drain flags.
    Drains,
    /// Reload everything (reconnected, or messages may have been missed).
    Resync,
}

/// The store's state for `swctl status` and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// `memory` or `redis`.
    pub backend: BackendKind,
    /// Reachable (always true for memory).
    pub up: bool,
    /// The last failure, if any (kept after recovery).
    pub last_error: Option<String>,
    /// When `up` last changed.
    pub since: SystemTime,
    /// Operations failed since start.
    pub failed_ops: u64,
    /// This instance's id.
    pub instance_id: String,
}

#[derive(Debug)]
enum Backend {
    Memory(MemoryStore),
    Redis(RedisStore),
}

/// Cheap-clone handle to the store.
#[derive(Clone, Debug)]
pub struct StateStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    backend: Backend,
    instance: String,
    /// Up/down and the last error. std Mutex: short, never across `.await`.
    health: Mutex<HealthState>,
    failed: AtomicU64,
    changes: broadcast::Sender<Change>,
}

#[derive(Debug)]
struct HealthState {
    up: bool,
    last_error: Option<String>,
    since: SystemTime,
}

/// A key component: safe characters kept, others `%XX`; longer than 96
/// bytes after escaping: `h` + 32 hex digits of its SHA-256.
pub fn key_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.@+=".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.len() > 96 {
        let d = sha2::Sha256::digest(s.as_bytes());
        format!("h{}", hex::encode(d.get(..16).unwrap_or_default()))
    } else {
        out
    }
}

fn check_kind(kind: &str) -> Result<()> {
    if (1..=32).contains(&kind.len())
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        Ok(())
    } else {
        Err(Error::BadKind(kind.to_string()))
    }
}

fn binding_key(user: &str, contact: &str) -> String {
    format!("reg:{}:{}", key_part(user), key_part(contact))
}

fn aor_key(user: &str) -> String {
    format!("aor:{}", key_part(user))
}

/// A record as stored: the caller's key kept beside the value (the store
/// key may be a hash of it).
#[derive(Serialize, serde::Deserialize)]
struct Envelope<T> {
    key: String,
    value: T,
}

const DRAIN_SET: &str = "drain";

impl StateStore {
    /// The in-process store.
    pub fn memory(instance: &str) -> Self {
        Self::with_backend(Backend::Memory(MemoryStore::default()), instance)
    }

    /// The store `cfg` asks for. Redis connects lazily: a server that is
    /// down now is not an error (swbd serves from memory meanwhile).
    pub fn from_config(cfg: &StateConfig, node_id: &str) -> Result<Self> {
        let instance = cfg.instance_id(node_id);
        Ok(match cfg.backend {
            BackendKind::Memory => Self::memory(&instance),
            BackendKind::Redis => {
                Self::with_backend(Backend::Redis(RedisStore::new(&cfg.redis)?), &instance)
            }
        })
    }

    fn with_backend(backend: Backend, instance: &str) -> Self {
        let up = matches!(backend, Backend::Memory(_));
        Self {
            inner: Arc::new(Inner {
                backend,
                instance: instance.to_string(),
                health: Mutex::new(HealthState {
                    up,
                    last_error: None,
                    since: SystemTime::now(),
                }),
                failed: AtomicU64::new(0),
                changes: broadcast::channel(1024).0,
            }),
        }
    }

    /// Which backend.
    pub fn backend(&self) -> BackendKind {
        match self.inner.backend {
            Backend::Memory(_) => BackendKind::Memory,
            Backend::Redis(_) => BackendKind::Redis,
        }
    }

    /// Whether other processes see what this one writes (Redis): the
    /// registrar writes through only then.
    pub fn is_shared(&self) -> bool {
        matches!(self.inner.backend, Backend::Redis(_))
    }

    /// This instance's id (`state.instance_id`, default `node_id`).
    pub fn instance_id(&self) -> &str {
        &self.inner.instance
    }

    /// Current health.
    pub fn health(&self) -> Health {
        let (up, last_error, since) = self
            .inner
            .health
            .lock()
            .map(|h| (h.up, h.last_error.clone(), h.since))
            .unwrap_or((
                false,
                Some("health lock poisoned".into()),
                SystemTime::now(),
            ));
        Health {
            backend: self.backend(),
            up,
            last_error,
            since,
            failed_ops: self.inner.failed.load(Ordering::Relaxed),
            instance_id: self.inner.instance.clone(),
        }
    }

    /// Whether the store is reachable now.
    pub fn is_up(&self) -> bool {
        self.inner.health.lock().map(|h| h.up).unwrap_or(false)
    }

    /// Changes made by other instances, and [`Change::Resync`].
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.changes.subscribe()
    }

    /// Record the outcome of an operation in the health state.
    fn note<T>(&self, r: Result<T>) -> Result<T> {
        match &r {
            Ok(_) => self.set_up(true, None),
            Err(e) => {
                self.inner.failed.fetch_add(1, Ordering::Relaxed);
                self.set_up(false, Some(e.to_string()));
            }
        }
        r
    }

    fn set_up(&self, up: bool, error: Option<String>) {
        let changed = match self.inner.health.lock() {
            Ok(mut h) => {
                let changed = h.up != up;
                if changed {
                    h.up = up;
                    h.since = SystemTime::now();
                }
                if error.is_some() {
                    h.last_error = error.clone();
                }
                changed
            }
            Err(_) => false,
        };
        if changed {
            match (up, error) {
                (true, _) => {
                    tracing::info!(backend = %self.backend(), "state store reachable");
                    let _ = self.inner.changes.send(Change::Resync);
                }
                (false, e) => tracing::warn!(
                    backend = %self.backend(),
                    error = e.as_deref().unwrap_or(""),
                    "state store unreachable: serving from memory until it returns"
                ),
            }
        }
    }

    async fn put(&self, key: &str, value: String, ttl: Option<Duration>) -> Result<()> {
        let r = match &self.inner.backend {
            Backend::Memory(m) => m.put(key, value, ttl),
            Backend::Redis(r) => r.put(key, value, ttl).await,
        };
        self.note(r)
    }

    async fn get(&self, key: &str) -> Result<Option<String>> {
        let r = match &self.inner.backend {
            Backend::Memory(m) => m.get(key),
            Backend::Redis(r) => r.get(key).await,
        };
        self.note(r)
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<String>>> {
        let r = match &self.inner.backend {
            Backend::Memory(m) => m.get_many(keys),
            Backend::Redis(r) => r.get_many(keys).await,
        };
        self.note(r)
    }

    async fn del(&self, key: &str) -> Result<()> {
        let r = match &self.inner.backend {
            Backend::Memory(m) => m.del(key),
            Backend::Redis(r) => r.del(key).await,
        };
        self.note(r)
    }

    async fn scan(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let r = match &self.inner.backend {
            Backend::Memory(m) => m.scan(prefix),
            Backend::Redis(r) => r.scan(prefix).await,
        };
        self.note(r)
    }

    async fn index_add(&self, set: &str, member: &str, ttl: Option<Duration>) -> Result<()> {
        let r = match &self.inner.backend {
            Backend::Memory(m) => m.index_add(set, member),
            Backend::Redis(r) => match ttl {
                Some(ttl) => r.index_add(set, member, ttl).await,
                None => r.set_add(set, member).await,
            },
        };
        self.note(r)
    }

    async fn index_remove(&self, set: &str, members: &[String]) -> Result<()> {
        let r = match &self.inner.backend {
            Backend::Memory(m) => m.index_remove(set, members),
            Backend::Redis(r) => r.index_remove(set, members).await,
        };
        self.note(r)
    }

    async fn index_members(&self, set: &str) -> Result<Vec<String>> {
        let r = match &self.inner.backend {
            Backend::Memory(m) => m.index_members(set),
            Backend::Redis(r) => r.index_members(set).await,
        };
        self.note(r)
    }

    /// Tell the other instances (Redis only; best effort: they also
    /// resynchronise on reconnect).
    async fn publish(&self, kind: &str, detail: &str) {
        if let Backend::Redis(r) = &self.inner.backend {
            let msg = format!("{} {kind} {detail}", self.inner.instance);
            let res = r.publish(msg).await;
            let _ = self.note(res);
        }
    }

    // ---- media-node drain flags ----

    /// Drain (`true`) or undrain a media node, for every instance.
    pub async fn set_drain(&self, node: &str, drained: bool) -> Result<()> {
        if drained {
            self.index_add(DRAIN_SET, node, None).await?;
        } else {
            self.index_remove(DRAIN_SET, &[node.to_string()]).await?;
        }
        self.publish("d", "-").await;
        Ok(())
    }

    /// Names of the drained media nodes.
    pub async fn drains(&self) -> Result<Vec<String>> {
        let mut v = self.index_members(DRAIN_SET).await?;
        v.sort();
        Ok(v)
    }

    // ---- records of other kinds ----

    /// Store `value` as JSON under `kind`/`key`, for `ttl` (or until
    /// deleted).
    pub async fn put_json<T: Serialize>(
        &self,
        kind: &str,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<()> {
        check_kind(kind)?;
        let text = serde_json::to_string(&Envelope {
            key: key.to_string(),
            value,
        })?;
        let k = format!("rec:{kind}:{}", key_part(key));
        // Not announced: no instance caches records (a restart or a
        // sweep reads them), and a message per call write cost every
        // instance a wake-up per call.
        self.put(&k, text, ttl).await
    }

    /// Several records of `kind` at once, in order: `(key, Some(value))`
    /// stores `value` (no expiry) as [`StateStore::put_json`] would,
    /// `(key, None)` removes. On Redis one pipeline: one round trip.
    pub async fn write_records(&self, kind: &str, ops: &[(String, Option<String>)]) -> Result<()> {
        check_kind(kind)?;
        let mut raw = Vec::with_capacity(ops.len());
        for (key, value) in ops {
            let k = format!("rec:{kind}:{}", key_part(key));
            let text = match value {
                Some(v) => Some(serde_json::to_string(&Envelope {
                    key: key.clone(),
                    value: v,
                })?),
                None => None,
            };
            raw.push((k, text));
        }
        let r = match &self.inner.backend {
            Backend::Memory(m) => raw.into_iter().try_for_each(|(k, v)| match v {
                Some(v) => m.put(&k, v, None),
                None => m.del(&k),
            }),
            Backend::Redis(r) => r.set_or_del(raw).await,
        };
        self.note(r)
    }

    /// The record `kind`/`key`, if any.
    pub async fn get_json<T: DeserializeOwned>(&self, kind: &str, key: &str) -> Result<Option<T>> {
        check_kind(kind)?;
        let k = format!("rec:{kind}:{}", key_part(key));
        match self.get(&k).await? {
            Some(text) => Ok(Some(serde_json::from_str::<Envelope<T>>(&text)?.value)),
            None => Ok(None),
        }
    }

    /// Remove the record `kind`/`key`.
    pub async fn delete(&self, kind: &str, key: &str) -> Result<()> {
        check_kind(kind)?;
        let k = format!("rec:{kind}:{}", key_part(key));
        self.del(&k).await
    }

    /// Every record of `kind` as `(key, value)`; unreadable ones are
    /// logged and skipped.
    pub async fn scan_json<T: DeserializeOwned>(&self, kind: &str) -> Result<Vec<(String, T)>> {
        check_kind(kind)?;
        Ok(self
            .scan(&format!("rec:{kind}:"))
            .await?
            .into_iter()
            .filter_map(
                |(k, v)| match serde_json::from_str::<Envelope<T>>(&v) {
                    Ok(e) => Some((e.key, e.value)),
                    Err(e) => {
                        tracing::warn!(key = %k, error = %e, "unreadable record in the state store; ignored");
                        None
                    }
                },
            )
            .collect())
    }

    // ---- background ----

    /// Start the health task (a PING a second) and the change listener
    /// (Redis only) until `shutdown`.
    pub fn start(&self, shutdown: Shutdown) {
        let Backend::Redis(r) = &self.inner.backend else {
            return;
        };
        let store = self.clone();
        let redis = r.clone();
        let mut sd = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let res = redis.ping().await;
                        let _ = store.note(res);
                    }
                    _ = sd.wait() => return,
                }
            }
        });
        let store = self.clone();
        let redis = r.clone();
        let mut sd = shutdown;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = store.listen(&redis) => {}
                    _ = sd.wait() => return,
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = sd.wait() => return,
                }
            }
        });
    }

    /// One pub/sub session: subscribe, tell caches to resync (messages
    /// may have been missed while not subscribed), forward changes.
    async fn listen(&self, redis: &RedisStore) {
        use futures::StreamExt;
        let mut ps = match redis.subscribe().await {
            Ok(ps) => ps,
            Err(e) => {
                tracing::debug!(error = %e, "state change channel: cannot subscribe");
                return;
            }
        };
        let _ = self.inner.changes.send(Change::Resync);
        let mut messages = ps.on_message();
        while let Some(msg) = messages.next().await {
            let Ok(text) = msg.get_payload::<String>() else {
                continue;
            };
            if let Some(change) = parse_change(&text, &self.inner.instance) {
                let _ = self.inner.changes.send(change);
            }
        }
        tracing::debug!("state change channel closed; resubscribing");
    }
}

/// `INSTANCE KIND DETAIL` from another instance as a [`Change`] (our own
/// messages and malformed ones: `None`).
fn parse_change(text: &str, me: &str) -> Option<Change> {
    let mut parts = text.splitn(3, ' ');
    let (from, kind, detail) = (parts.next()?, parts.next()?, parts.next()?);
    if from == me {
        return None;
    }
    match kind {
        "W" | "b" => bindings::parse(kind, detail),
        "d" => Some(Change::Drains),
        _ => None,
    }
}

/// Undo [`key_part`]'s escaping (a hashed part stays as it is; the
/// registrar then resynchronises that user by a full read).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let Some(h) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(h, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unix milliseconds of `t` (0 before the epoch).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The `SystemTime` of Unix milliseconds `ms`.
pub fn from_unix_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(user: &str, port: u16, secs: u64) -> StoredBinding {
        let now = unix_ms(SystemTime::now());
        StoredBinding {
            aor: format!("sip:{user}@example.com"),
            user: user.into(),
            contact: format!("sip:{user}@192.0.2.1:{port}"),
            transport: "udp".into(),
            remote: "192.0.2.1:5060".parse().expect("addr"),
            local: "192.0.2.9:5060".parse().expect("addr"),
            q: 1.0,
            expires_at_ms: now + secs * 1000,
            registered_at_ms: now,
            call_id: "c".into(),
            cseq: 1,
            user_agent: String::new(),
            params: Vec::new(),
            instance: "i1".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn memory_bindings_expire_and_are_found_by_user() {
        let s = StateStore::memory("i1");
        s.put_binding(&binding("alice", 1, 60)).await.expect("put");
        s.put_binding(&binding("alice", 2, 120)).await.expect("put");
        s.put_binding(&binding("bob", 1, 60)).await.expect("put");
        assert_eq!(s.bindings_for("alice").await.expect("read").len(), 2);
        assert_eq!(s.all_bindings().await.expect("all").len(), 3);
        s.remove_binding("alice", "sip:alice@192.0.2.1:1")
            .await
            .expect("remove");
        assert_eq!(s.bindings_for("alice").await.expect("read").len(), 1);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(s.bindings_for("bob").await.expect("read").is_empty());
        assert!(s.health().up);
    }

    #[tokio::test]
    async fn records_keep_their_key_and_kinds_are_checked() {
        let s = StateStore::memory("i1");
        let long = "x".repeat(300);
        s.put_json("dialog", &long, &42u32, None)
            .await
            .expect("put");
        s.put_json("dialog", "a:b c", &7u32, None)
            .await
            .expect("put");
        assert_eq!(
            s.get_json::<u32>("dialog", &long).await.expect("get"),
            Some(42)
        );
        let mut all = s.scan_json::<u32>("dialog").await.expect("scan");
        all.sort();
        assert_eq!(all, vec![("a:b c".to_string(), 7), (long.clone(), 42)]);
        s.delete("dialog", &long).await.expect("delete");
        assert_eq!(s.get_json::<u32>("dialog", &long).await.expect("get"), None);
        assert!(matches!(
            s.put_json("Dialog!", "k", &1u32, None).await,
            Err(Error::BadKind(_))
        ));
    }

    #[tokio::test]
    async fn drains_round_trip() {
        let s = StateStore::memory("i1");
        s.set_drain("rtp-b", true).await.expect("drain");
        s.set_drain("rtp-a", true).await.expect("drain");
        s.set_drain("rtp-b", false).await.expect("undrain");
        assert_eq!(s.drains().await.expect("drains"), vec!["rtp-a".to_string()]);
    }

    #[test]
    fn key_parts_escape_and_bound() {
        assert_eq!(key_part("alice"), "alice");
        assert_eq!(key_part("a:b*c"), "a%3Ab%2Ac");
        assert_eq!(unescape(&key_part("a:b* c")), "a:b* c");
        let long = key_part(&"y".repeat(500));
        assert!(long.starts_with('h') && long.len() == 33, "{long}");
    }

    #[test]
    fn changes_from_others_parse_and_our_own_are_ignored() {
        assert_eq!(
            parse_change("i2 b a%3Ab", "i1"),
            Some(Change::Bindings("a:b".into()))
        );
        assert_eq!(parse_change("i1 b alice", "i1"), None);
        assert_eq!(parse_change("i2 d -", "i1"), Some(Change::Drains));
        assert_eq!(parse_change("garbage", "i1"), None);
    }
}
