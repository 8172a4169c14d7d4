//! Registrations in the store: one key per binding (`reg:USER:CONTACT`,
//! expiring with it), a per-user index (`aor:USER`), and a change message
//! that carries the binding itself.
//!
//! The message carries the writes themselves (`INSTANCE W [write, ...]`:
//! one message per batch the writer flushes, each write a binding put or
//! a `(user, contact)` removal), so another instance applies them to its
//! table without reading Redis back, and at load one message stands for
//! many REGISTERs: with two swbd
//! sharing the REGISTER load, a read-back per published change cost each
//! of them a Redis round trip per REGISTER the other one handled
//! (docs/BENCHMARKS.md, "Shared state"). The older `INSTANCE b USER`
//! form (reload that user from the store) is still understood, so
//! instances of two versions can share a store during an upgrade.
//!
//! On Redis a batch of writes is one pipeline: each put is `SET PX`,
//! `SADD` to the index and its `PEXPIRE`s, each removal `DEL` and `SREM`,
//! then one `PUBLISH`; one round trip for the batch, not four per binding.

use std::time::{Duration, SystemTime};

use super::redis::Op;
use super::{Backend, Change, Result, StateStore, StoredBinding, aor_key, binding_key, unix_ms};

/// One registration write (serialised in change messages).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum BindingWrite {
    /// Add or refresh (until its expiry).
    Put(Box<StoredBinding>),
    /// Remove `(user, contact)`.
    Remove(String, String),
}

impl BindingWrite {
    /// `(user, contact)`: the binding it writes.
    pub fn key(&self) -> (&str, &str) {
        match self {
            Self::Put(b) => (&b.user, &b.contact),
            Self::Remove(u, c) => (u, c),
        }
    }
}

/// Writes in one Redis pipeline at most (bounded by the command timeout:
/// a few hundred small commands take well under a millisecond).
pub const MAX_BATCH: usize = 128;

impl StateStore {
    /// Store (add or refresh) a binding until its expiry.
    pub async fn put_binding(&self, b: &StoredBinding) -> Result<()> {
        self.write_bindings(&[BindingWrite::Put(Box::new(b.clone()))])
            .await
    }

    /// Remove the binding of `user` at `contact`.
    pub async fn remove_binding(&self, user: &str, contact: &str) -> Result<()> {
        self.write_bindings(&[BindingWrite::Remove(user.into(), contact.into())])
            .await
    }

    /// Apply `writes` in order (a put already expired is skipped); on
    /// Redis, [`MAX_BATCH`] at a time, each batch one round trip, and the
    /// other instances told of each write with the binding itself.
    pub async fn write_bindings(&self, writes: &[BindingWrite]) -> Result<()> {
        let now_ms = unix_ms(SystemTime::now());
        match &self.inner.backend {
            Backend::Memory(m) => {
                for w in writes {
                    let r = match w {
                        BindingWrite::Put(b) => {
                            if b.expires_at_ms <= now_ms {
                                continue;
                            }
                            let ttl = Duration::from_millis(b.expires_at_ms - now_ms);
                            let key = binding_key(&b.user, &b.contact);
                            serde_json::to_string(b)
                                .map_err(Into::into)
                                .and_then(|v| m.put(&key, v, Some(ttl)))
                                .and_then(|()| m.index_add(&aor_key(&b.user), &key))
                        }
                        BindingWrite::Remove(u, c) => {
                            let key = binding_key(u, c);
                            m.del(&key)
                                .and_then(|()| m.index_remove(&aor_key(u), &[key]))
                        }
                    };
                    self.note(r)?;
                }
                Ok(())
            }
            Backend::Redis(r) => {
                for chunk in writes.chunks(MAX_BATCH) {
                    let live: Vec<&BindingWrite> = chunk
                        .iter()
                        .filter(|w| match w {
                            BindingWrite::Put(b) => b.expires_at_ms > now_ms,
                            BindingWrite::Remove(..) => true,
                        })
                        .collect();
                    if live.is_empty() {
                        continue;
                    }
                    let ops = live
                        .iter()
                        .map(|w| redis_op(w, now_ms))
                        .collect::<Result<Vec<Op>>>()?;
                    let message = format!(
                        "{} W {}",
                        self.inner.instance,
                        serde_json::to_string(&live)?
                    );
                    let res = r.apply(ops, message).await;
                    self.note(res)?;
                }
                Ok(())
            }
        }
    }

    /// The live bindings of `user`.
    pub async fn bindings_for(&self, user: &str) -> Result<Vec<StoredBinding>> {
        let index = aor_key(user);
        let keys = self.index_members(&index).await?;
        let values = self.get_many(&keys).await?;
        let mut gone = Vec::new();
        let mut out = Vec::new();
        for (k, v) in keys.into_iter().zip(values) {
            match v.map(|v| serde_json::from_str::<StoredBinding>(&v)) {
                Some(Ok(b)) => out.push(b),
                Some(Err(e)) => {
                    tracing::warn!(key = %k, error = %e, "unreadable binding in the state store; ignored");
                }
                None => gone.push(k),
            }
        }
        if !gone.is_empty() {
            self.index_remove(&index, &gone).await?;
        }
        Ok(out)
    }

    /// Every live binding (start-up, resynchronisation, admin).
    pub async fn all_bindings(&self) -> Result<Vec<StoredBinding>> {
        Ok(self
            .scan("reg:")
            .await?
            .into_iter()
            .filter_map(|(k, v)| match serde_json::from_str(&v) {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!(key = %k, error = %e, "unreadable binding in the state store; ignored");
                    None
                }
            })
            .collect())
    }
}

/// The pipeline part of one write.
fn redis_op(w: &BindingWrite, now_ms: u64) -> Result<Op> {
    Ok(match w {
        BindingWrite::Put(b) => Op::Put {
            key: binding_key(&b.user, &b.contact),
            value: serde_json::to_string(b)?,
            ttl_ms: b.expires_at_ms.saturating_sub(now_ms),
            index: aor_key(&b.user),
        },
        BindingWrite::Remove(u, c) => Op::Remove {
            key: binding_key(u, c),
            index: aor_key(u),
        },
    })
}

/// A registration change message's `KIND DETAIL` as a [`Change`]
/// (`None`: not a registration kind, or unreadable).
pub(super) fn parse(kind: &str, detail: &str) -> Option<Change> {
    match kind {
        "W" => match serde_json::from_str::<Vec<BindingWrite>>(detail) {
            Ok(writes) => Some(Change::BindingWrites(writes.into())),
            Err(e) => {
                tracing::debug!(error = %e, "unreadable registrations in a state change message; ignored");
                None
            }
        },
        "b" => Some(Change::Bindings(super::unescape(detail))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(user: &str, contact: &str) -> StoredBinding {
        let now = unix_ms(SystemTime::now());
        StoredBinding {
            aor: format!("sip:{user}@example.com"),
            user: user.into(),
            contact: contact.into(),
            transport: "udp".into(),
            remote: "192.0.2.1:5060".parse().expect("addr"),
            local: "192.0.2.9:5060".parse().expect("addr"),
            q: 1.0,
            expires_at_ms: now + 60_000,
            registered_at_ms: now,
            call_id: "c".into(),
            cseq: 1,
            user_agent: "ua \"x\" \r\n y".into(),
            params: Vec::new(),
            instance: "i1".into(),
        }
    }

    #[tokio::test]
    async fn a_batch_round_trips_through_its_message() {
        let b = binding("alice bob", "sip:a@192.0.2.1:5 ;x=\"y\"");
        let writes = vec![
            BindingWrite::Put(Box::new(b)),
            BindingWrite::Remove("u 1".into(), "sip:x@y".into()),
        ];
        let text = serde_json::to_string(&writes).expect("encode");
        assert_eq!(
            parse("W", &text),
            Some(Change::BindingWrites(writes.clone().into()))
        );
        // Applied to the memory backend: the put is there, the removal
        // of a binding never written is harmless.
        let s = StateStore::memory("i1");
        s.write_bindings(&writes).await.expect("write");
        assert_eq!(s.bindings_for("alice bob").await.expect("read").len(), 1);
    }

    #[tokio::test]
    async fn an_expired_put_is_not_written_and_garbage_is_ignored() {
        let s = StateStore::memory("i1");
        let mut b = binding("a", "sip:a@h");
        b.expires_at_ms = 5;
        s.write_bindings(&[BindingWrite::Put(Box::new(b))])
            .await
            .expect("write");
        assert!(s.all_bindings().await.expect("all").is_empty());
        assert_eq!(parse("W", "{not json"), None);
        assert_eq!(parse("W", "[{\"Remove\":[1]}]"), None);
        assert_eq!(
            parse("b", "al%20ice"),
            Some(Change::Bindings("al ice".into()))
        );
    }
}
