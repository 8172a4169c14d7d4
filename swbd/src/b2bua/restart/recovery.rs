//! Getting calls back after a restart, and ending those of a dead
//! instance.
//!
//! At start ([`load`], [`keep_media`], [`restore`]), before the media pool
//! opens its Control streams: this instance's call records are read, each
//! node is told (in the first `ReconcileOwner`, with this instance's
//! stable owner id) which sessions to keep, and one [`restored_call`] task
//! per call takes the dialogs back. Sessions a node no longer has (swbd
//! was away longer than the media lease) end their calls with BYE.
//!
//! Then ([`watch_instances`]): every [`HEARTBEAT_EVERY`] this instance
//! writes its heartbeat (a record that expires after [`HEARTBEAT_TTL`])
//! and reads the others'. Call records of an instance without a heartbeat
//! belong to a dead swbd (kill -9, a host gone): the live instance with the
//! smallest id ends them cleanly, BYE on both legs from the stored dialogs
//! and the media destroyed. Ending, not adopting: the phones' in-dialog
//! requests go to the dead instance's address (its Contact), which nobody
//! answers any more, so an adopted call could not be hung up normally.
//! An instance restarted within [`HEARTBEAT_TTL`] takes its calls back
//! itself.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use switchboard_proto::support::shutdown::Shutdown;
use tokio::sync::oneshot;

use super::restored_call::{self, Mode};
use super::{CALL_KIND, CallRecordBackend, HEARTBEAT_KIND, SavedCall, instance_of};
use crate::b2bua::CallDeps;
use crate::media::MediaPool;

/// How often the heartbeat is written and the others' read.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// How long a heartbeat lives: an instance silent for this long is dead
/// and its calls are ended by a survivor.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(10);

/// Calls restored at most at start (more are left to their leases).
pub const MAX_RESTORED: usize = 100_000;

/// This instance's call records in the store (unreadable ones logged and
/// skipped; a store error means nothing to restore).
pub async fn load(backend: &dyn CallRecordBackend, instance: &str) -> Vec<SavedCall> {
    let records = match backend.scan(CALL_KIND).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read call records from the state store: calls of the previous run are not restored");
            return Vec::new();
        }
    };
    let mut calls = Vec::new();
    for (key, json) in records {
        if instance_of(&key) != Some(instance) {
            continue;
        }
        match SavedCall::from_json(&json) {
            Ok(c) if calls.len() < MAX_RESTORED => calls.push(c),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "call record skipped");
                let _ = backend.del(CALL_KIND, key).await;
            }
        }
    }
    calls
}

/// Tell each node which sessions the restored `calls` keep (their first
/// `ReconcileOwner`; call before the pool starts). Returns, per node, the
/// answer: the kept sessions it no longer has.
pub fn keep_media(
    media: &MediaPool,
    calls: &[SavedCall],
) -> Vec<(String, oneshot::Receiver<Vec<String>>)> {
    // A node with none of our calls still learns we restarted: our other
    // sessions there (calls that were ringing) go at once.
    let mut per_node: BTreeMap<String, Vec<String>> = media
        .list()
        .into_iter()
        .map(|n| (n.name, Vec::new()))
        .collect();
    for c in calls {
        per_node
            .entry(c.node.clone())
            .or_default()
            .extend([c.a_session.clone(), c.b_session.clone()]);
    }
    per_node
        .into_iter()
        .filter_map(|(node, keep)| media.keep_after_restart(&node, keep).map(|rx| (node, rx)))
        .collect()
}

/// Run the restored calls; a session a node no longer has ends its call.
pub fn restore(
    deps: &CallDeps,
    calls: Vec<SavedCall>,
    answers: Vec<(String, oneshot::Receiver<Vec<String>>)>,
) {
    if !calls.is_empty() {
        tracing::info!(
            calls = calls.len(),
            "restoring the calls of the previous run"
        );
    }
    for call in calls {
        tokio::spawn(restored_call::run(deps.clone(), call, Mode::Continue));
    }
    for (node, rx) in answers {
        let table = deps.calls.clone();
        tokio::spawn(async move {
            let Ok(missing) = rx.await else { return };
            for session in missing {
                table.media_lost(
                    &node,
                    &session,
                    "media session lost during the swbd restart",
                );
            }
        });
    }
}

/// Beat this instance's heartbeat and end the calls of dead instances,
/// until shutdown.
pub fn watch_instances(
    backend: Arc<dyn CallRecordBackend>,
    deps: CallDeps,
    instance: String,
    mut shutdown: Shutdown,
) {
    tokio::spawn(async move {
        // Calls this instance already ends for a dead one (their records
        // go when that is done); forgotten once their record is gone.
        let mut ending: HashSet<String> = HashSet::new();
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tick.tick() => {}
            }
            let beat = super::saved_call::unix_ms(std::time::SystemTime::now()).to_string();
            if let Err(e) = backend
                .put(HEARTBEAT_KIND, instance.clone(), beat, Some(HEARTBEAT_TTL))
                .await
            {
                tracing::debug!(error = %e, "heartbeat not written");
                continue;
            }
            let Ok(live) = backend.scan(HEARTBEAT_KIND).await else {
                continue;
            };
            let live: HashSet<String> = live.into_iter().map(|(k, _)| k).collect();
            // One survivor acts: the live instance with the smallest id.
            if live.iter().min().is_some_and(|m| *m != instance) {
                continue;
            }
            let Ok(records) = backend.scan(CALL_KIND).await else {
                continue;
            };
            let keys: HashSet<&str> = records.iter().map(|(k, _)| k.as_str()).collect();
            ending.retain(|k| keys.contains(k.as_str()));
            for (key, json) in &records {
                let Some(owner) = instance_of(key) else {
                    continue;
                };
                if owner == instance || live.contains(owner) || ending.contains(key) {
                    continue;
                }
                match SavedCall::from_json(json) {
                    Ok(call) => {
                        tracing::warn!(dead_instance = %owner, call = %call.id, "swbd instance has no heartbeat: ending its call");
                        ending.insert(key.clone());
                        tokio::spawn(restored_call::run(deps.clone(), call, Mode::End));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "a dead instance's call record is unreadable; deleted");
                        let _ = backend.del(CALL_KIND, key.clone()).await;
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::super::saved_call::tests::{call, dialog};
    use super::super::test_backend::MapBackend;
    use super::super::{SavedCalls, SavedDialog};
    use super::*;

    #[tokio::test]
    async fn a_saved_call_is_loaded_by_its_instance_only_and_deleted_when_it_ends() {
        let backend = Arc::new(MapBackend::default());
        let saved = SavedCalls::start(backend.clone(), "swbd-1");
        let d = SavedDialog::of(&dialog()).expect("fits");
        let mut c = call(d.clone(), d);
        c.instance = "swbd-1".into();
        saved.save(&c);
        let mut other = c.clone();
        other.id = "other".into();
        SavedCalls::start(backend.clone(), "swbd-2").save(&other);
        backend
            .put(CALL_KIND, "swbd-1/broken".into(), "{".into(), None)
            .await
            .expect("put");
        // The writer task runs in order; wait for it on the paused-free clock.
        for _ in 0..100 {
            if backend.map.lock().map(|m| m.len()).unwrap_or(0) == 3 {
                break;
            }
            tokio::task::yield_now().await;
        }
        let loaded = load(backend.as_ref(), "swbd-1").await;
        assert_eq!(loaded, vec![c.clone()], "its own readable record only");
        let left: Vec<String> = backend.map.lock().expect("map").keys().cloned().collect();
        assert!(
            !left.iter().any(|k| k.ends_with("broken")),
            "unreadable record deleted: {left:?}"
        );
        saved.delete(&c.id);
        for _ in 0..100 {
            if load(backend.as_ref(), "swbd-1").await.is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(load(backend.as_ref(), "swbd-1").await.is_empty());
        assert_eq!(load(backend.as_ref(), "swbd-2").await.len(), 1);
        assert_eq!(saved.lost_writes(), (0, 0));
    }
}
