//! The in-process backend: today's single-box behaviour. Keys and index
//! sets in maps; a restart loses everything. Bounded: at most
//! [`MAX_ENTRIES`] keys (expired ones are purged before refusing).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::{Error, Result};

/// Keys held at most (records of every kind together).
pub const MAX_ENTRIES: usize = 1_000_000;

#[derive(Debug)]
struct Entry {
    value: String,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|e| e > now)
    }
}

/// Maps behind one std Mutex: every access is a short critical section,
/// never held across an `.await` (mini-redis `db.rs`).
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Maps>,
}

#[derive(Debug, Default)]
struct Maps {
    keys: HashMap<String, Entry>,
    sets: HashMap<String, HashSet<String>>,
}

impl MemoryStore {
    fn maps(&self) -> Result<std::sync::MutexGuard<'_, Maps>> {
        self.inner.lock().map_err(|_| Error::Poisoned)
    }

    pub(super) fn put(&self, key: &str, value: String, ttl: Option<Duration>) -> Result<()> {
        let now = Instant::now();
        let mut m = self.maps()?;
        if m.keys.len() >= MAX_ENTRIES && !m.keys.contains_key(key) {
            m.keys.retain(|_, e| e.live(now));
            if m.keys.len() >= MAX_ENTRIES {
                return Err(Error::Full(MAX_ENTRIES));
            }
        }
        m.keys.insert(
            key.to_string(),
            Entry {
                value,
                expires: ttl.map(|t| now + t),
            },
        );
        Ok(())
    }

    pub(super) fn get(&self, key: &str) -> Result<Option<String>> {
        let now = Instant::now();
        let m = self.maps()?;
        Ok(m.keys
            .get(key)
            .filter(|e| e.live(now))
            .map(|e| e.value.clone()))
    }

    pub(super) fn get_many(&self, keys: &[String]) -> Result<Vec<Option<String>>> {
        let now = Instant::now();
        let m = self.maps()?;
        Ok(keys
            .iter()
            .map(|k| {
                m.keys
                    .get(k)
                    .filter(|e| e.live(now))
                    .map(|e| e.value.clone())
            })
            .collect())
    }

    pub(super) fn del(&self, key: &str) -> Result<()> {
        self.maps()?.keys.remove(key);
        Ok(())
    }

    /// Live `(key, value)` pairs whose key starts with `prefix`.
    pub(super) fn scan(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let now = Instant::now();
        let mut m = self.maps()?;
        m.keys.retain(|_, e| e.live(now));
        Ok(m.keys
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, e)| (k.clone(), e.value.clone()))
            .collect())
    }

    pub(super) fn index_add(&self, set: &str, member: &str) -> Result<()> {
        let mut m = self.maps()?;
        if m.sets.len() >= MAX_ENTRIES && !m.sets.contains_key(set) {
            return Err(Error::Full(MAX_ENTRIES));
        }
        m.sets
            .entry(set.to_string())
            .or_default()
            .insert(member.to_string());
        Ok(())
    }

    pub(super) fn index_remove(&self, set: &str, members: &[String]) -> Result<()> {
        let mut m = self.maps()?;
        if let Some(s) = m.sets.get_mut(set) {
            for k in members {
                s.remove(k);
            }
            if s.is_empty() {
                m.sets.remove(set);
            }
        }
        Ok(())
    }

    pub(super) fn index_members(&self, set: &str) -> Result<Vec<String>> {
        Ok(self
            .maps()?
            .sets
            .get(set)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default())
    }
}
