//! The registrar over the state store (`state.backend: redis`): the
//! in-process table stays the one the SIP path reads and writes (no store
//! round trip on a REGISTER or an INVITE), and this file keeps it and the
//! store in step.
//!
//! - Write-through, answer-and-queue: a REGISTER is answered from the
//!   table; what it changed is queued here, coalesced per binding (a
//!   phone refreshing twice while Redis is down is written once), and
//!   written by one task. A write that fails stays queued and is retried
//!   when the store is back, so an outage never logs a phone out of the
//!   instance it registered with; the other instances see it once Redis
//!   is back. The queue holds at most one entry per binding the table
//!   holds (plus removals), so it is bounded by the table.
//! - Read: at start every stored binding is loaded; afterwards a change
//!   published by another instance is applied as it comes (the message
//!   carries the binding: no read back), and a
//!   resynchronisation (the store came back) flushes the queue and reloads
//!   everything.
//! - Expiry: Redis expires a binding's key itself (PEXPIRE at its
//!   expiry), so an instance that died leaves its bindings valid until
//!   then, and nobody has to delete them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use switchboard_proto::support::shutdown::Shutdown;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Binding, Registrar};
use crate::config::Transport;
use crate::sip::Uri;
use crate::sip::uri::same_uri;
use crate::state::bindings::MAX_BATCH;
use crate::state::{BindingWrite, Change, StateStore, StoredBinding, from_unix_ms, unix_ms};
use crate::transport::Source;

/// How long the writer lets queued writes gather before a flush.
const GATHER: Duration = Duration::from_millis(5);

/// One queued store write.
pub(super) type Write = BindingWrite;

/// The registrar's link to the store: the store and the write queue.
#[derive(Debug)]
pub(super) struct StoreLink {
    pub(super) store: StateStore,
    /// Pending writes by `(user, contact)`; std Mutex, never across
    /// `.await`.
    pending: Mutex<HashMap<(String, String), Write>>,
    wake: Notify,
}

impl StoreLink {
    pub(super) fn new(store: StateStore) -> Self {
        Self {
            store,
            pending: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        }
    }

    /// Queue writes (the latest per binding wins) and wake the writer.
    pub(super) fn queue(&self, writes: Vec<Write>) {
        if writes.is_empty() {
            return;
        }
        if let Ok(mut p) = self.pending.lock() {
            for w in writes {
                let (u, c) = w.key();
                p.insert((u.to_string(), c.to_string()), w);
            }
        }
        self.wake.notify_one();
    }

    /// Writes waiting for the store.
    pub(super) fn pending(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Write everything queued, [`MAX_BATCH`] at a time (one store round
    /// trip each). An entry leaves the queue only once written (and
    /// unchanged meanwhile), so `pending` counts what is not yet in the
    /// store, in flight included. `Err` when the store failed (the rest
    /// stays queued); `Ok` when every write taken was stored, even if
    /// more were queued meanwhile (the caller flushes again at once: a
    /// busy registrar is not a store outage).
    async fn flush(&self) -> crate::state::Result<()> {
        let all: Vec<((String, String), Write)> = match self.pending.lock() {
            Ok(p) => p.iter().map(|(k, w)| (k.clone(), w.clone())).collect(),
            Err(_) => return Err(crate::state::Error::Poisoned),
        };
        for chunk in all.chunks(MAX_BATCH) {
            let writes: Vec<Write> = chunk.iter().map(|(_, w)| w.clone()).collect();
            if let Err(e) = self.store.write_bindings(&writes).await {
                tracing::debug!(error = %e, "registrations not written to the state store yet; kept queued");
                // The store is down: the rest would fail the same way.
                return Err(e);
            }
            if let Ok(mut p) = self.pending.lock() {
                for (key, w) in chunk {
                    if p.get(key) == Some(w) {
                        p.remove(key);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The stored form of `b`, held by `instance`.
pub(super) fn to_stored(b: &Binding, instance: &str) -> StoredBinding {
    StoredBinding {
        aor: b.aor.clone(),
        user: b.user.clone(),
        contact: b.contact.to_string(),
        transport: b.source.transport.to_string(),
        remote: b.source.remote,
        local: b.source.local,
        q: b.q,
        expires_at_ms: unix_ms(b.expires_at_wall),
        registered_at_ms: unix_ms(b.registered_at),
        call_id: b.call_id.clone(),
        cseq: b.cseq,
        user_agent: b.user_agent.clone(),
        params: b.params.clone(),
        instance: b.instance.clone().unwrap_or_else(|| instance.to_string()),
    }
}

/// The in-process form of a stored binding (`None`: unreadable, or
/// already expired).
pub(super) fn from_stored(s: StoredBinding, me: &str) -> Option<Binding> {
    let now_wall = SystemTime::now();
    let expires_at_wall = from_unix_ms(s.expires_at_ms);
    let left = expires_at_wall.duration_since(now_wall).ok()?;
    let transport = match s.transport.as_str() {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        _ => return None,
    };
    let contact = Uri::parse(&s.contact)?;
    let now = Instant::now();
    Some(Binding {
        aor: s.aor,
        user: s.user,
        contact,
        source: Source {
            transport,
            remote: s.remote,
            local: s.local,
        },
        q: s.q,
        expires_at: now + left,
        expires_at_wall,
        registered_at: from_unix_ms(s.registered_at_ms),
        refreshed_at: now,
        call_id: s.call_id,
        cseq: s.cseq,
        user_agent: s.user_agent,
        params: s.params,
        instance: (s.instance != me).then_some(s.instance),
    })
}

impl Registrar {
    /// Keep the table in step with `store` from now on (Redis: load what
    /// it holds, write through, follow other instances). The memory
    /// backend is the table itself: nothing to do.
    pub async fn attach_store(&self, store: StateStore, shutdown: Shutdown) {
        if !store.is_shared() {
            return;
        }
        let link = Arc::new(StoreLink::new(store.clone()));
        if self.inner.store.set(link.clone()).is_err() {
            return;
        }
        // Subscribe before the first load, so nothing written meanwhile
        // is missed.
        let changes = store.subscribe();
        match tokio::time::timeout(Duration::from_secs(3), self.reload_all(&link)).await {
            Ok(Ok(n)) => tracing::info!(bindings = n, "registrations loaded from the state store"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "registrations not loaded from the state store (unreachable); loading when it returns")
            }
            Err(_) => tracing::warn!(
                "registrations not loaded from the state store in 3 s; loading when it returns"
            ),
        }
        tokio::spawn(self.clone().run_writer(link.clone(), shutdown.clone()));
        tokio::spawn(self.clone().run_follower(link, changes, shutdown));
    }

    /// Writes queued for the store (0 without one).
    pub fn store_pending(&self) -> usize {
        self.inner.store.get().map(|l| l.pending()).unwrap_or(0)
    }

    async fn reload_all(&self, link: &StoreLink) -> crate::state::Result<usize> {
        let stored = link.store.all_bindings().await?;
        let me = link.store.instance_id().to_string();
        let mut by_user: HashMap<String, Vec<Binding>> = HashMap::new();
        for s in stored {
            if let Some(b) = from_stored(s, &me) {
                by_user.entry(b.user.clone()).or_default().push(b);
            }
        }
        let n = by_user.values().map(Vec::len).sum();
        let pending = link.pending();
        if let Ok(mut table) = self.inner.table.lock() {
            if pending == 0 {
                *table = by_user;
            } else {
                // Writes not yet stored: keep our table's users, take the
                // others from the store.
                for (u, v) in by_user {
                    table.entry(u).or_insert(v);
                }
            }
        }
        Ok(n)
    }

    /// Queue a write of every live binding this instance holds.
    fn requeue_own(&self, link: &StoreLink) {
        let me = link.store.instance_id().to_string();
        let now = Instant::now();
        let writes: Vec<Write> = match self.inner.table.lock() {
            Ok(table) => table
                .values()
                .flatten()
                .filter(|b| b.instance.is_none() && b.expires_at > now)
                .map(|b| Write::Put(Box::new(to_stored(b, &me))))
                .collect(),
            Err(_) => return,
        };
        link.queue(writes);
    }

    /// Apply a binding another instance wrote (added or refreshed; one
    /// already expired is removed).
    fn apply_remote(&self, me: &str, stored: StoredBinding) {
        let user = stored.user.clone();
        let Some(contact) = Uri::parse(&stored.contact) else {
            return;
        };
        let fresh = from_stored(stored, me);
        if let Ok(mut table) = self.inner.table.lock() {
            let current = table.entry(user.clone()).or_default();
            let at = current.iter().position(|b| same_uri(&b.contact, &contact));
            match (fresh, at) {
                (Some(b), Some(i)) => {
                    if let Some(slot) = current.get_mut(i) {
                        *slot = b;
                    }
                }
                (Some(b), None) => current.push(b),
                (None, Some(i)) => {
                    current.remove(i);
                }
                (None, None) => {}
            }
            if current.is_empty() {
                table.remove(&user);
            }
        }
    }

    /// Remove a binding another instance removed.
    fn remove_remote(&self, user: &str, contact: &str) {
        let Some(contact) = Uri::parse(contact) else {
            return;
        };
        if let Ok(mut table) = self.inner.table.lock()
            && let Some(current) = table.get_mut(user)
        {
            current.retain(|b| !same_uri(&b.contact, &contact));
            if current.is_empty() {
                table.remove(user);
            }
        }
    }

    async fn reload_user(&self, link: &StoreLink, user: &str) -> crate::state::Result<()> {
        let stored = link.store.bindings_for(user).await?;
        let me = link.store.instance_id().to_string();
        let fresh: Vec<Binding> = stored
            .into_iter()
            .filter_map(|s| from_stored(s, &me))
            .collect();
        if let Ok(mut table) = self.inner.table.lock() {
            if fresh.is_empty() {
                table.remove(user);
            } else {
                table.insert(user.to_string(), fresh);
            }
        }
        Ok(())
    }

    async fn run_writer(self, link: Arc<StoreLink>, mut shutdown: Shutdown) {
        loop {
            tokio::select! {
                _ = link.wake.notified() => {}
                _ = shutdown.wait() => {
                    // A last attempt, bounded: a restart keeps what it can.
                    let _ = tokio::time::timeout(Duration::from_secs(2), link.flush()).await;
                    return;
                }
            }
            loop {
                // Let a busy registrar's writes gather into one batch (one
                // round trip and one change message for many REGISTERs):
                // the other instances learn of a registration this much
                // later.
                tokio::select! {
                    _ = tokio::time::sleep(GATHER) => {}
                    _ = shutdown.wait() => {
                        let _ = tokio::time::timeout(Duration::from_secs(2), link.flush()).await;
                        return;
                    }
                }
                match link.flush().await {
                    // Written; what came meanwhile goes next.
                    Ok(()) if link.pending() > 0 => continue,
                    Ok(()) => break,
                    // The store is down: wait for it (the health task
                    // pings every second), then try again.
                    Err(_) => tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.wait() => return,
                    },
                }
            }
        }
    }

    async fn run_follower(
        self,
        link: Arc<StoreLink>,
        mut changes: tokio::sync::broadcast::Receiver<Change>,
        mut shutdown: Shutdown,
    ) {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let change = tokio::select! {
                c = changes.recv() => c,
                _ = shutdown.wait() => return,
            };
            let res = match change {
                Ok(Change::BindingWrites(writes)) => {
                    let me = link.store.instance_id();
                    for w in writes.iter() {
                        match w {
                            Write::Put(b) => self.apply_remote(me, (**b).clone()),
                            Write::Remove(u, c) => self.remove_remote(u, c),
                        }
                    }
                    Ok(())
                }
                Ok(Change::Bindings(user)) => self.reload_user(&link, &user).await,
                Ok(Change::Resync) | Err(RecvError::Lagged(_)) => {
                    // The store may have come back empty (a Redis restarted
                    // without persistence, a failover): write again every
                    // binding this instance holds before taking the store's
                    // view, or a reload would drop them all (every phone
                    // registered here unreachable until it re-registers).
                    self.requeue_own(&link);
                    match link.flush().await {
                        Ok(()) => self.reload_all(&link).await.map(|_| ()),
                        Err(_) => Ok(()),
                    }
                }
                Ok(_) => Ok(()),
                Err(RecvError::Closed) => return,
            };
            if let Err(e) = res {
                tracing::debug!(error = %e, "registrations not reloaded from the state store");
            }
        }
    }
}
