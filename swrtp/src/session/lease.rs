//! Session leases and owners: renewing the leases of an owner's sessions,
//! reclaiming those whose lease lapsed, and dropping the sessions of a
//! restarted owner ([`Node::reconcile_owner`]) unless it is still connected
//! ([`LiveOwner`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Node, SessionShared};
use crate::lease::Owner;

impl Node {
    /// Renew the lease of every session of `owner` for `length` (None: the
    /// node's default), which also becomes the lease of its next sessions.
    /// Returns how many were renewed.
    pub fn renew_leases(&self, owner: &Owner, length: Option<Duration>) -> u32 {
        let length = length.unwrap_or(self.inner.settings.default_lease);
        if let Ok(mut l) = self.inner.lease_lengths.lock() {
            l.insert(owner.clone(), length);
        }
        let until = tokio::time::Instant::now() + length;
        let table = self.table();
        let mut renewed = 0u32;
        for e in table.sessions.values() {
            if e.shared.owner.as_ref() == Some(owner) {
                e.shared.edit(|v| v.lease_until = Some(until));
                renewed = renewed.saturating_add(1);
            }
        }
        renewed
    }

    /// A Control stream of `owner` opened; it counts as alive until the
    /// returned guard drops (the stream ended).
    pub fn owner_connected(&self, owner: &Owner) -> LiveOwner {
        if let Ok(mut l) = self.inner.live_owners.lock() {
            *l.entry(owner.clone()).or_insert(0) += 1;
        }
        LiveOwner {
            node: self.clone(),
            owner: owner.clone(),
        }
    }

    fn is_connected(&self, owner: &Owner) -> bool {
        self.inner
            .live_owners
            .lock()
            .map(|l| l.get(owner).is_some_and(|n| *n > 0))
            .unwrap_or(false)
    }

    /// `owner` (re)connected: destroy the sessions of previous instances of
    /// its node id (nobody will ever end them), renew its own. Sessions of
    /// other node ids are left to their leases, and so are those of an
    /// instance still connected (two live swbd configured with one node_id:
    /// logged). Returns (dropped, renewed, kept because connected).
    pub async fn reconcile_owner(
        &self,
        owner: &Owner,
        length: Option<Duration>,
    ) -> (u32, u32, u32) {
        let mut alive: Vec<String> = Vec::new();
        let mut kept = 0u32;
        let stale: Vec<(String, String, String)> = {
            let table = self.table();
            table
                .sessions
                .values()
                .filter_map(|e| {
                    let o = e.shared.owner.as_ref()?;
                    if o.node_id != owner.node_id || o.instance_id == owner.instance_id {
                        return None;
                    }
                    if self.is_connected(o) {
                        kept = kept.saturating_add(1);
                        let name = o.to_string();
                        if !alive.contains(&name) {
                            alive.push(name);
                        }
                        return None;
                    }
                    Some((e.shared.id.clone(), e.shared.call_id.clone(), o.to_string()))
                })
                .collect()
        };
        for other in alive {
            tracing::warn!(%owner, %other, "another instance of this node_id is still connected: its sessions are kept (two swbd with the same node_id?)");
        }
        let mut dropped = 0u32;
        for (id, call_id, old) in stale {
            if self.destroy(&id).await.is_ok() {
                dropped = dropped.saturating_add(1);
                self.inner
                    .ctx
                    .counters
                    .stale_owner_dropped
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(session = %id, call_id = %call_id, old_owner = %old, owner = %owner, "session dropped: its owner restarted");
            }
        }
        if let Ok(mut l) = self.inner.lease_lengths.lock() {
            // Previous instances will never renew again.
            l.retain(|o, _| o.node_id != owner.node_id || o.instance_id == owner.instance_id);
        }
        let renewed = self.renew_leases(owner, length);
        (dropped, renewed, kept)
    }

    /// Destroy every session whose lease lapsed; returns how many.
    pub async fn reap_expired_leases(&self) -> u32 {
        let now = tokio::time::Instant::now();
        let lapsed: Vec<Arc<SessionShared>> = self
            .table()
            .sessions
            .values()
            .filter(|e| {
                e.shared
                    .view
                    .lock()
                    .ok()
                    .and_then(|v| v.lease_until)
                    .is_some_and(|t| t <= now)
            })
            .map(|e| e.shared.clone())
            .collect();
        let mut reaped = 0u32;
        for s in lapsed {
            // Renewed in between: keep it.
            let still_lapsed = s
                .view
                .lock()
                .ok()
                .and_then(|v| v.lease_until)
                .is_some_and(|t| t <= tokio::time::Instant::now());
            if !still_lapsed || self.destroy(&s.id).await.is_err() {
                continue;
            }
            reaped = reaped.saturating_add(1);
            self.inner
                .ctx
                .counters
                .leases_expired
                .fetch_add(1, Ordering::Relaxed);
            let owner = s.owner.as_ref().map(Owner::to_string).unwrap_or_default();
            tracing::warn!(session = %s.id, call_id = %s.call_id, leg = %s.leg, %owner, "session reclaimed: its owner's lease lapsed");
        }
        reaped
    }
}

/// An open Control stream of an owner (see [`Node::owner_connected`]).
#[derive(Debug)]
pub struct LiveOwner {
    node: Node,
    owner: Owner,
}

impl Drop for LiveOwner {
    fn drop(&mut self) {
        if let Ok(mut l) = self.node.inner.live_owners.lock()
            && let Some(n) = l.get_mut(&self.owner)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                l.remove(&self.owner);
            }
        }
    }
}
