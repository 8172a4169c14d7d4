//! The Redis backend: one `ConnectionManager` (multiplexed, reconnects by
//! itself) for commands, one pub/sub connection for the change channel.
//!
//! Layout in Redis (every key starts with `state.redis.prefix`):
//! - `reg:USER:CONTACT` - a binding (JSON), `PEXPIRE`d at its expiry, so
//!   Redis itself forgets an expired registration, whichever swbd wrote it.
//! - `aor:USER` - a set of that user's binding keys (the lookup index;
//!   members whose key expired are pruned on read).
//! - `drain` - a set of drained media-node names.
//! - `rec:KIND:KEY` - other records (dialogs), JSON, optional TTL.
//! - channel `changes` - `INSTANCE KIND DETAIL` after every write, so the
//!   other instances refresh what they cache (a binding's message carries
//!   the binding: `super::bindings`).
//!
//! Every command is bounded by `state.redis.timeout_ms`; the manager is
//! created lazily, so swbd starts (and serves from memory) while Redis is
//! down, and connects when it comes.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Client};

use super::config::{RedisConfig, redact};
use super::{Error, Result};

/// Redis connection and key prefix.
#[derive(Clone)]
pub struct RedisStore {
    client: Client,
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// One registration write for [`RedisStore::apply`]; keys and index
/// without the prefix.
#[derive(Debug)]
pub(super) enum Op {
    /// `SET key value PX ttl`, the key added to `index`.
    Put {
        key: String,
        value: String,
        ttl_ms: u64,
        index: String,
    },
    /// `key` deleted and taken out of `index`.
    Remove { key: String, index: String },
}

/// `*?[]\` escaped for a SCAN MATCH pattern.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl RedisStore {
    /// A store for `cfg`; connects on first use (needs a tokio runtime).
    pub fn new(cfg: &RedisConfig) -> Result<Self> {
        let client = Client::open(cfg.url.as_str())
            .map_err(|e| Error::Config(format!("state.redis.url {}: {e}", redact(&cfg.url))))?;
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let mcfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), mcfg)
            .map_err(|e| Error::Config(format!("state.redis: {e}")))?;
        Ok(Self {
            client,
            conn,
            prefix: cfg.prefix.clone(),
            timeout,
        })
    }

    fn key(&self, k: &str) -> String {
        format!("{}{k}", self.prefix)
    }

    /// The change channel's full name.
    pub fn channel(&self) -> String {
        self.key("changes")
    }

    /// Run `f` on a connection within the timeout.
    async fn run<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.timeout, f(self.conn.clone())).await {
            Ok(r) => r.map_err(Error::from),
            Err(_) => Err(Error::Timeout),
        }
    }

    pub(super) async fn ping(&self) -> Result<()> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(|_| ())
    }

    pub(super) async fn put(&self, key: &str, value: String, ttl: Option<Duration>) -> Result<()> {
        let k = self.key(key);
        self.run(|mut c| async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(&k).arg(value);
            if let Some(t) = ttl {
                cmd.arg("PX").arg(t.as_millis().max(1) as u64);
            }
            cmd.query_async::<()>(&mut c).await
        })
        .await
    }

    pub(super) async fn get(&self, key: &str) -> Result<Option<String>> {
        let k = self.key(key);
        self.run(|mut c| async move { c.get::<_, Option<String>>(k).await })
            .await
    }

    pub(super) async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<String>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let full: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        self.run(|mut c| async move {
            redis::cmd("MGET")
                .arg(&full)
                .query_async::<Vec<Option<String>>>(&mut c)
                .await
        })
        .await
    }

    pub(super) async fn del(&self, key: &str) -> Result<()> {
        let k = self.key(key);
        self.run(|mut c| async move { c.del::<_, ()>(k).await })
            .await
    }

    /// `(key without the global prefix, value)` for keys starting with
    /// `prefix`: SCAN (never KEYS, which blocks the server) then MGET.
    pub(super) async fn scan(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let pattern = format!("{}*", glob_escape(&self.key(prefix)));
        let mut cursor = 0u64;
        let mut keys: Vec<String> = Vec::new();
        loop {
            let pattern = pattern.clone();
            let (next, batch): (u64, Vec<String>) = self
                .run(|mut c| async move {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        let plen = self.prefix.len();
        let short: Vec<String> = keys
            .iter()
            .filter_map(|k| k.get(plen..).map(str::to_string))
            .collect();
        let mut out = Vec::with_capacity(short.len());
        for chunk in short.chunks(500) {
            let values = self.get_many(chunk).await?;
            out.extend(
                chunk
                    .iter()
                    .zip(values)
                    .filter_map(|(k, v)| v.map(|v| (k.clone(), v))),
            );
        }
        Ok(out)
    }

    pub(super) async fn index_add(&self, set: &str, member: &str, ttl: Duration) -> Result<()> {
        let s = self.key(set);
        let member = member.to_string();
        let ms = ttl.as_millis().max(1) as u64;
        self.run(|mut c| async move {
            // The index lives as long as its longest binding (GT: never
            // shortened by a shorter one).
            redis::pipe()
                .cmd("SADD")
                .arg(&s)
                .arg(member)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&s)
                .arg(ms)
                .arg("GT")
                .ignore()
                .cmd("PEXPIRE")
                .arg(&s)
                .arg(ms)
                .arg("NX")
                .ignore()
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    pub(super) async fn set_add(&self, set: &str, member: &str) -> Result<()> {
        let s = self.key(set);
        let member = member.to_string();
        self.run(|mut c| async move { c.sadd::<_, _, ()>(s, member).await })
            .await
    }

    pub(super) async fn index_remove(&self, set: &str, members: &[String]) -> Result<()> {
        if members.is_empty() {
            return Ok(());
        }
        let s = self.key(set);
        let members = members.to_vec();
        self.run(|mut c| async move { c.srem::<_, _, ()>(s, members).await })
            .await
    }

    pub(super) async fn index_members(&self, set: &str) -> Result<Vec<String>> {
        let s = self.key(set);
        self.run(|mut c| async move { c.smembers::<_, Vec<String>>(s).await })
            .await
    }

    /// Run `ops` then publish `message`, as one pipeline (one round
    /// trip; not a transaction: a
    /// batch that fails part-way is retried whole, and every part is
    /// idempotent).
    pub(super) async fn apply(&self, ops: Vec<Op>, message: String) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let channel = self.channel();
        let mut p = redis::pipe();
        for op in &ops {
            match op {
                Op::Put {
                    key,
                    value,
                    ttl_ms,
                    index,
                } => {
                    let set = self.key(index);
                    let ttl = (*ttl_ms).max(1);
                    p.cmd("SET")
                        .arg(self.key(key))
                        .arg(value)
                        .arg("PX")
                        .arg(ttl)
                        .ignore()
                        .cmd("SADD")
                        .arg(&set)
                        .arg(key)
                        .ignore()
                        // The index lives as long as its longest binding.
                        .cmd("PEXPIRE")
                        .arg(&set)
                        .arg(ttl)
                        .arg("GT")
                        .ignore()
                        .cmd("PEXPIRE")
                        .arg(&set)
                        .arg(ttl)
                        .arg("NX")
                        .ignore();
                }
                Op::Remove { key, index } => {
                    p.cmd("DEL")
                        .arg(self.key(key))
                        .ignore()
                        .cmd("SREM")
                        .arg(self.key(index))
                        .arg(key)
                        .ignore();
                }
            }
        }
        p.cmd("PUBLISH").arg(&channel).arg(message).ignore();
        self.run(|mut c| async move { p.query_async::<()>(&mut c).await })
            .await
    }

    /// `SET` (no expiry) or `DEL` each key (without the prefix), as one
    /// pipeline.
    pub(super) async fn set_or_del(&self, ops: Vec<(String, Option<String>)>) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut p = redis::pipe();
        for (key, value) in ops {
            match value {
                Some(v) => p.cmd("SET").arg(self.key(&key)).arg(v).ignore(),
                None => p.cmd("DEL").arg(self.key(&key)).ignore(),
            };
        }
        self.run(|mut c| async move { p.query_async::<()>(&mut c).await })
            .await
    }

    pub(super) async fn publish(&self, message: String) -> Result<()> {
        let ch = self.channel();
        self.run(|mut c| async move { c.publish::<_, _, ()>(ch, message).await })
            .await
    }

    /// A fresh pub/sub connection subscribed to the change channel.
    pub(super) async fn subscribe(&self) -> Result<redis::aio::PubSub> {
        let fut = async {
            let mut ps = self.client.get_async_pubsub().await?;
            ps.subscribe(self.channel()).await?;
            Ok::<_, redis::RedisError>(ps)
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.map_err(Error::from),
            Err(_) => Err(Error::Timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob_escape;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
