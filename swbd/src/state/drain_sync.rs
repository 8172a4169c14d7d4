//! Media-node drain flags in the state store: a `swctl nodes drain` on any
//! instance is written to the store, and every instance (this one after a
//! restart too) applies what the store holds to its media pool.
//!
//! The pool stays the one the call path reads; this task looks at the
//! pool's admin drains twice a second (a few nodes: cheaper than a bus
//! subscription, which would make every publisher build its events) and
//! follows the store's change channel for drains set elsewhere. A drain set here while the store is down is
//! remembered and written when it returns (then it wins over the store's
//! older set); otherwise the store's set wins on resynchronisation.

use std::collections::BTreeSet;
use std::time::Duration;

use switchboard_proto::support::shutdown::Shutdown;

use super::{Change, StateStore};
use crate::media::MediaPool;

fn pool_drains(media: &MediaPool) -> BTreeSet<String> {
    media
        .list()
        .into_iter()
        .filter(|n| n.drained_by_admin)
        .map(|n| n.name)
        .collect()
}

/// Make the pool's admin drains equal `want` (unknown names ignored).
fn apply(media: &MediaPool, want: &BTreeSet<String>) {
    for n in media.list() {
        let drained = want.contains(&n.name);
        if n.drained_by_admin != drained {
            tracing::info!(node = %n.name, drained, "media node drain taken from the state store");
            let _ = media.set_drained(&n.name, drained);
        }
    }
}

/// Load the drains from the store (bounded wait), then follow both sides
/// until `shutdown`. Nothing to do for the memory backend.
pub async fn start(store: StateStore, media: MediaPool, shutdown: Shutdown) {
    if !store.is_shared() {
        return;
    }
    let changes = store.subscribe();
    let mut known = BTreeSet::new();
    match tokio::time::timeout(Duration::from_secs(3), store.drains()).await {
        Ok(Ok(v)) => {
            known = v.into_iter().collect();
            apply(&media, &known);
        }
        _ => tracing::warn!("drain flags not loaded from the state store; loading when it returns"),
    }
    tokio::spawn(follow(store, media, known, changes, shutdown));
}

async fn follow(
    store: StateStore,
    media: MediaPool,
    mut known: BTreeSet<String>,
    mut changes: tokio::sync::broadcast::Receiver<Change>,
    mut shutdown: Shutdown,
) {
    use tokio::sync::broadcast::error::RecvError;
    // A local change not yet written (the store was down).
    let mut dirty = false;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {
                let now = pool_drains(&media);
                if now != known {
                    dirty = !write(&store, &known, &now).await;
                    known = now;
                } else if dirty {
                    // Retry the write the outage refused.
                    if let Ok(v) = store.drains().await {
                        let stored: BTreeSet<String> = v.into_iter().collect();
                        dirty = !write(&store, &stored, &now).await;
                    }
                }
            },
            c = changes.recv() => match c {
                Ok(Change::Drains) | Ok(Change::Resync) | Err(RecvError::Lagged(_)) => {
                    if dirty {
                        let now = pool_drains(&media);
                        let stored: BTreeSet<String> = match store.drains().await {
                            Ok(v) => v.into_iter().collect(),
                            Err(_) => continue,
                        };
                        dirty = !write(&store, &stored, &now).await;
                        known = now;
                    } else if let Ok(v) = store.drains().await {
                        known = v.into_iter().collect();
                        apply(&media, &known);
                    }
                }
                Ok(_) => {}
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// Write the difference from `old` to `new`; false when a write failed.
async fn write(store: &StateStore, old: &BTreeSet<String>, new: &BTreeSet<String>) -> bool {
    let mut ok = true;
    for n in new.difference(old) {
        ok &= store.set_drain(n, true).await.is_ok();
    }
    for n in old.difference(new) {
        ok &= store.set_drain(n, false).await.is_ok();
    }
    if !ok {
        tracing::warn!(
            "drain flag not written to the state store (unreachable); writing it when it returns"
        );
    }
    ok
}
