//! Calls that outlive their swbd process (issue #18,
//! docs/features/restart.md).
//!
//! # Layout
//! - [`saved_call`]: [`SavedCall`], what the state store keeps of a bridged
//!   call (both dialogs, media node and sessions), bounded.
//! - [`SavedCalls`] (here): the call tasks' handle on the store. A bridged
//!   call saves its record, saves it again when its dialogs change
//!   (re-INVITE, a request we sent) and deletes it when it ends. Writes go
//!   through one writer task in order, never blocking a call: the queue is
//!   bounded and a write that does not fit is dropped and counted (that
//!   call would not survive a restart; it still works).
//! - [`restored_call`]: the task that runs a call read back from the store:
//!   minimal dialog state so a BYE from either phone ends both legs.
//! - [`recovery`]: at start, read this instance's records, keep their media
//!   sessions on the nodes and restore the calls; meanwhile, beat this
//!   instance's heartbeat and end the calls of instances whose heartbeat
//!   lapsed (they died: kill -9, power loss).
//!
//! Only with a shared store (`state.backend: redis`): with the memory
//! backend nothing is saved, and SIGTERM ends calls with BYE as before.

pub mod recovery;
pub mod restored_call;
pub mod saved_call;
pub mod store_backend;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::mpsc;

pub use saved_call::{SavedCall, SavedCallError, SavedDialog};
pub use store_backend::StoreBackend;

/// Writes waiting for the store at most; beyond, a write is dropped.
pub const QUEUE: usize = 8192;

/// The store operations call records need: JSON text under a kind and a
/// key (implemented over the state store, `swbd/src/state`, by
/// [`StoreBackend`]; by a map in tests).
pub trait CallRecordBackend: Send + Sync + std::fmt::Debug + 'static {
    /// Set `kind`/`key` to `value`, expiring after `ttl` when given.
    fn put(
        &self,
        kind: &'static str,
        key: String,
        value: String,
        ttl: Option<Duration>,
    ) -> BoxFuture<'_, Result<(), String>>;
    /// Remove `kind`/`key`.
    fn del(&self, kind: &'static str, key: String) -> BoxFuture<'_, Result<(), String>>;
    /// Every live `(key, value)` of `kind`.
    fn scan(&self, kind: &'static str) -> BoxFuture<'_, Result<Vec<(String, String)>, String>>;
    /// Several writes of `kind` in order: `(key, Some(value))` sets (no
    /// expiry), `(key, None)` removes. One after the other unless the
    /// backend can do better (the state store: one Redis pipeline).
    fn write_many(
        &self,
        kind: &'static str,
        ops: Vec<(String, Option<String>)>,
    ) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            for (key, value) in ops {
                match value {
                    Some(v) => self.put(kind, key, v, None).await?,
                    None => self.del(kind, key).await?,
                }
            }
            Ok(())
        })
    }
}

/// Record writes the writer task sends in one batch at most.
const BATCH: usize = 256;

/// Kind of the call records; key `<instance>/<call id>`.
pub const CALL_KIND: &str = "call";

/// Kind of the instance heartbeats; key: the instance id.
pub const HEARTBEAT_KIND: &str = "heartbeat";

/// Key of a call record.
pub fn call_key(instance: &str, call: &str) -> String {
    format!("{instance}/{call}")
}

/// The instance a call record's key names.
pub fn instance_of(key: &str) -> Option<&str> {
    key.split_once('/').map(|(i, _)| i)
}

#[derive(Debug)]
enum Op {
    Put(String, String),
    Delete(String),
}

#[derive(Debug)]
struct Inner {
    tx: mpsc::Sender<Op>,
    instance: String,
    dropped: AtomicU64,
    failed: Arc<AtomicU64>,
}

/// The call tasks' handle on their records in the store; cheap to clone.
/// [`SavedCalls::off`] (the memory backend) saves nothing.
#[derive(Debug, Clone, Default)]
pub struct SavedCalls {
    inner: Option<Arc<Inner>>,
}

/// `ops` as store writes, the latest per key kept, in first-seen order.
fn coalesce(ops: Vec<Op>) -> Vec<(String, Option<String>)> {
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut out: Vec<(String, Option<String>)> = Vec::with_capacity(ops.len());
    for op in ops {
        let (key, value) = match op {
            Op::Put(k, v) => (k, Some(v)),
            Op::Delete(k) => (k, None),
        };
        match at.get(&key).and_then(|&i| out.get_mut(i)) {
            Some(slot) => slot.1 = value,
            None => {
                at.insert(key.clone(), out.len());
                out.push((key, value));
            }
        }
    }
    out
}

impl SavedCalls {
    /// Nothing is saved (the memory backend: a restart loses calls).
    pub fn off() -> Self {
        Self { inner: None }
    }

    /// Save this `instance`'s calls in `backend`, through a writer task.
    pub fn start(backend: Arc<dyn CallRecordBackend>, instance: &str) -> Self {
        let (tx, mut rx) = mpsc::channel::<Op>(QUEUE);
        let failed = Arc::new(AtomicU64::new(0));
        let failures = failed.clone();
        tokio::spawn(async move {
            let mut ops = Vec::with_capacity(BATCH);
            // What queued while the last batch was written goes in the
            // next one (one store round trip for many calls); a record
            // written twice in a batch is written once, its latest form.
            while rx.recv_many(&mut ops, BATCH).await > 0 {
                let batch = coalesce(std::mem::take(&mut ops));
                let n = batch.len() as u64;
                if let Err(e) = backend.write_many(CALL_KIND, batch).await {
                    failures.fetch_add(n, Ordering::Relaxed);
                    tracing::warn!(error = %e, records = n, "cannot write call records to the state store; those calls would not survive a restart");
                }
            }
        });
        Self {
            inner: Some(Arc::new(Inner {
                tx,
                instance: instance.to_string(),
                dropped: AtomicU64::new(0),
                failed,
            })),
        }
    }

    /// Whether calls are saved.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// This instance's id (empty when off).
    pub fn instance(&self) -> &str {
        self.inner
            .as_ref()
            .map(|i| i.instance.as_str())
            .unwrap_or("")
    }

    fn send(&self, op: Op) {
        if let Some(i) = &self.inner
            && i.tx.try_send(op).is_err()
        {
            i.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("call record queue full: a record write was dropped");
        }
    }

    /// Save (or overwrite) `call`.
    pub fn save(&self, call: &SavedCall) {
        let Some(i) = &self.inner else { return };
        match call.to_json() {
            Ok(json) => self.send(Op::Put(call_key(&i.instance, &call.id), json)),
            Err(e) => {
                i.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "call not saved: it will not survive a restart");
            }
        }
    }

    /// The call `id` (of this instance) ended.
    pub fn delete(&self, id: &str) {
        if let Some(i) = &self.inner {
            self.send(Op::Delete(call_key(&i.instance, id)));
        }
    }

    /// Delete another instance's record (a call this one ended for it).
    pub fn delete_of(&self, instance: &str, id: &str) {
        self.send(Op::Delete(call_key(instance, id)));
    }

    /// Writes dropped (queue full, record too large) and failed (store
    /// error) since start.
    pub fn lost_writes(&self) -> (u64, u64) {
        self.inner
            .as_ref()
            .map(|i| {
                (
                    i.dropped.load(Ordering::Relaxed),
                    i.failed.load(Ordering::Relaxed),
                )
            })
            .unwrap_or((0, 0))
    }
}

#[cfg(test)]
pub(crate) mod test_backend {
    //! A map as the backend, for unit tests.
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;

    #[derive(Debug, Default)]
    pub struct MapBackend {
        pub map: Mutex<BTreeMap<String, String>>,
    }

    impl CallRecordBackend for MapBackend {
        fn put(
            &self,
            kind: &'static str,
            key: String,
            value: String,
            _ttl: Option<Duration>,
        ) -> BoxFuture<'_, Result<(), String>> {
            if let Ok(mut m) = self.map.lock() {
                m.insert(format!("{kind}|{key}"), value);
            }
            Box::pin(async { Ok(()) })
        }
        fn del(&self, kind: &'static str, key: String) -> BoxFuture<'_, Result<(), String>> {
            if let Ok(mut m) = self.map.lock() {
                m.remove(&format!("{kind}|{key}"));
            }
            Box::pin(async { Ok(()) })
        }
        fn scan(&self, kind: &'static str) -> BoxFuture<'_, Result<Vec<(String, String)>, String>> {
            let prefix = format!("{kind}|");
            let found = self
                .map
                .lock()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| {
                            k.strip_prefix(&prefix).map(|k| (k.to_string(), v.clone()))
                        })
                        .collect()
                })
                .unwrap_or_default();
            Box::pin(async move { Ok(found) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_keeps_the_latest_write_of_each_record_in_first_seen_order() {
        let ops = vec![
            Op::Put("a".into(), "1".into()),
            Op::Put("b".into(), "1".into()),
            Op::Put("a".into(), "2".into()),
            Op::Delete("b".into()),
            Op::Delete("c".into()),
        ];
        assert_eq!(
            coalesce(ops),
            vec![
                ("a".to_string(), Some("2".to_string())),
                ("b".to_string(), None),
                ("c".to_string(), None),
            ]
        );
    }

    #[tokio::test]
    async fn records_written_in_a_batch_read_back_like_single_ones() {
        let store = crate::state::StateStore::memory("i1");
        let backend = StoreBackend(store.clone());
        backend
            .write_many(
                CALL_KIND,
                vec![
                    ("i1/x".into(), Some("{\"v\":1}".into())),
                    ("i1/y".into(), Some("{\"v\":2}".into())),
                    ("i1/y".into(), None),
                ],
            )
            .await
            .expect("write");
        let found = backend.scan(CALL_KIND).await.expect("scan");
        assert_eq!(found, vec![("i1/x".to_string(), "{\"v\":1}".to_string())]);
        // The same form put_json writes: a single put reads back alike.
        backend
            .put(CALL_KIND, "i1/z".into(), "{}".into(), None)
            .await
            .expect("put");
        assert_eq!(backend.scan(CALL_KIND).await.expect("scan").len(), 2);
    }
}
