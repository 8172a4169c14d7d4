//! An owner that restarted keeping its instance id (swbd with a shared
//! state store, issue #18): its calls survive the restart, so the node
//! keeps the sessions the new process still has calls for and destroys
//! the rest of that owner's sessions (calls that were ringing when it
//! stopped: nobody will ever end them).
//!
//! The owner says which sessions it keeps rather than which to drop: what
//! it cannot list (it did not know about them) is exactly what must go.
//! The kept sessions keep their owner, so their leases, DTMF events and
//! admin listing carry on unchanged.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use super::Node;
use crate::lease::Owner;

/// Longest keep list a restarted owner may send: more than any node holds
/// sessions (the port range is at most 32k pairs).
pub const MAX_KEEP: usize = 65_536;

impl Node {
    /// `owner` restarted with its instance id: destroy its sessions not in
    /// `keep`. Returns (destroyed, ids of `keep` the node does not hold
    /// for this owner).
    pub async fn keep_after_restart(&self, owner: &Owner, keep: &[String]) -> (u32, Vec<String>) {
        let wanted: HashSet<&str> = keep.iter().map(String::as_str).collect();
        let (unlisted, held): (Vec<(String, String)>, HashSet<String>) = {
            let table = self.table();
            let mut unlisted = Vec::new();
            let mut held = HashSet::new();
            for e in table.sessions.values() {
                if e.shared.owner.as_ref() != Some(owner) {
                    continue;
                }
                if wanted.contains(e.shared.id.as_str()) {
                    held.insert(e.shared.id.clone());
                } else {
                    unlisted.push((e.shared.id.clone(), e.shared.call_id.clone()));
                }
            }
            (unlisted, held)
        };
        let mut dropped = 0u32;
        for (id, call_id) in unlisted {
            if self.destroy(&id).await.is_ok() {
                dropped = dropped.saturating_add(1);
                self.inner
                    .ctx
                    .counters
                    .stale_owner_dropped
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(session = %id, call_id = %call_id, %owner, "session dropped: its owner restarted without this call");
            }
        }
        let mut missing: Vec<String> = keep
            .iter()
            .filter(|id| !held.contains(id.as_str()))
            .cloned()
            .collect();
        missing.sort();
        missing.dedup();
        (dropped, missing)
    }
}
