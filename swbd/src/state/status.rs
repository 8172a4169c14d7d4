//! The store's health as admin and `/metrics` show it.

use switchboard_proto::admin::v1 as pb;

use super::StateStore;
use crate::b2bua::restart::SavedCalls;
use crate::registrar::Registrar;

/// `Status.state_store` for `swctl status`.
pub fn to_proto(
    store: &StateStore,
    registrar: &Registrar,
    saved_calls: &SavedCalls,
) -> pb::StateStoreStatus {
    let h = store.health();
    pb::StateStoreStatus {
        backend: h.backend.to_string(),
        up: h.up,
        last_error: h.last_error.unwrap_or_default(),
        since: Some(switchboard_proto::timestamp(h.since)),
        failed_ops: h.failed_ops,
        instance_id: h.instance_id,
        pending_writes: u32::try_from(registrar.store_pending()).unwrap_or(u32::MAX),
        saved_call_writes_lost: saved_call_writes_lost(saved_calls),
    }
}

/// Saved call record writes lost since start: dropped plus failed
/// ([`SavedCalls::lost_writes`]).
pub fn saved_call_writes_lost(saved_calls: &SavedCalls) -> u64 {
    let (dropped, failed) = saved_calls.lost_writes();
    dropped.saturating_add(failed)
}
