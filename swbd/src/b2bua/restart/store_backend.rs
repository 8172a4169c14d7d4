//! [`CallRecordBackend`] over the state store (`swbd/src/state`): call
//! records and heartbeats are JSON text kept as records of their kind.

use std::time::Duration;

use futures::future::BoxFuture;

use super::CallRecordBackend;
use crate::state::StateStore;

/// The state store as the call records' backend.
#[derive(Debug, Clone)]
pub struct StoreBackend(pub StateStore);

impl CallRecordBackend for StoreBackend {
    fn put(
        &self,
        kind: &'static str,
        key: String,
        value: String,
        ttl: Option<Duration>,
    ) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.0
                .put_json(kind, &key, &value, ttl)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn del(&self, kind: &'static str, key: String) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.0.delete(kind, &key).await.map_err(|e| e.to_string()) })
    }

    fn write_many(
        &self,
        kind: &'static str,
        ops: Vec<(String, Option<String>)>,
    ) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.0
                .write_records(kind, &ops)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn scan(&self, kind: &'static str) -> BoxFuture<'_, Result<Vec<(String, String)>, String>> {
        Box::pin(async move {
            self.0
                .scan_json::<String>(kind)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
