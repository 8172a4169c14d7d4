//! `state:` config section: where registrations, drain flags and other
//! engineers' records (dialogs) live (`state/mod.rs`).

use serde::Deserialize;

/// Which store backs the shared state.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// In this process only (the default for a single box): a restart
    /// loses registrations, drain flags and dialog records.
    #[default]
    Memory,
    /// A Redis 7 (or Valkey) server shared by every swbd instance.
    Redis,
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendKind::Memory => "memory",
            BackendKind::Redis => "redis",
        })
    }
}

/// The state store (`state:`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// `memory` (default) or `redis`. With `redis`, registrations and
    /// media-node drain flags survive a restart and are shared by every
    /// swbd on the same server and prefix.
    pub backend: BackendKind,
    /// This instance's name in the store: which swbd holds a TCP flow, who
    /// wrote a record. Default: `node_id`. Every swbd sharing one Redis
    /// needs its own (give each a distinct `node_id`, or set this);
    /// restarting an instance with the same id takes its records back.
    pub instance_id: Option<String>,
    /// Redis settings (used with `backend: redis`).
    pub redis: RedisConfig,
}

/// `state.redis`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Server URL (`redis://127.0.0.1:6379`, `redis://:PASSWORD@host/0`,
    /// `redis+unix:///run/redis.sock`).
    pub url: String,
    /// Prepended to every key and the change channel, so several
    /// Switchboard systems (or a test) can share one server.
    pub prefix: String,
    /// A store operation not answered within this many milliseconds fails
    /// (counted in `swbd_state_store_errors_total`; swbd goes on from what
    /// it has in memory).
    pub timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            prefix: "swbd:".into(),
            timeout_ms: 1000,
        }
    }
}

impl StateConfig {
    /// The instance id: `state.instance_id`, else `node_id` when it is a
    /// valid id, else one derived from it (see [`derived_instance_id`]).
    pub fn instance_id(&self, node_id: &str) -> String {
        self.instance_id
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| derived_instance_id(node_id))
    }

    /// Errors, each naming its key.
    pub fn validate(&self, node_id: &str) -> Vec<String> {
        let mut errors = Vec::new();
        let id = self.instance_id(node_id);
        if !valid_instance_id(&id) {
            errors.push(format!(
                "state.instance_id: {id:?} must be 1-64 characters of letters, digits, - _ . @ (default: node_id)"
            ));
        }
        if self.backend == BackendKind::Redis {
            let url = self.redis.url.as_str();
            if !(url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("redis+unix://")
                || url.starts_with("unix://"))
            {
                errors.push(format!(
                    "state.redis.url: {:?} is not a redis:// or redis+unix:// URL",
                    redact(url)
                ));
            }
            if url.starts_with("rediss://") {
                errors.push(
                    "state.redis.url: rediss:// (TLS) is not built in; reach Redis over loopback or a unix socket".into(),
                );
            }
            if self.redis.prefix.len() > 64 {
                errors.push("state.redis.prefix: at most 64 bytes".into());
            }
            if !(10..=60_000).contains(&self.redis.timeout_ms) {
                errors.push("state.redis.timeout_ms: must be between 10 and 60000".into());
            }
        }
        errors
    }
}

/// `url` with any password replaced (for logs and errors).
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// 1-64 characters of letters, digits, `- _ . @`.
fn valid_instance_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
}

/// The default instance id: `node_id` itself when it is a valid id; else
/// its valid characters (others as `_`, at most 47) and `-` and a stable
/// hash of all of it (FNV-1a: the same `node_id` gives the same id after
/// a restart or an upgrade, which restart without loss depends on), so any
/// `node_id` works and two different ones do not collide in practice.
pub fn derived_instance_id(node_id: &str) -> String {
    if valid_instance_id(node_id) {
        return node_id.to_string();
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node_id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let head: String = node_id
        .chars()
        .take(47)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let head = if head.is_empty() {
        "swbd".to_string()
    } else {
        head
    };
    format!("{head}-{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_proto::support::yaml;

    #[test]
    fn defaults_are_memory_and_the_node_id() {
        let c = StateConfig::default();
        assert_eq!(c.backend, BackendKind::Memory);
        assert_eq!(c.instance_id("swbd-1"), "swbd-1");
        assert_eq!(c.redis.prefix, "swbd:");
        assert!(c.validate("swbd-1").is_empty());
    }

    #[test]
    fn redis_section_parses_and_bad_values_name_their_key() {
        let c: StateConfig = yaml::from_str(
            "c.yaml",
            "backend: redis\ninstance_id: a-1\nredis: { url: \"redis://127.0.0.1:7000\", prefix: \"t:\" }\n",
        )
        .expect("parses");
        assert_eq!(c.backend, BackendKind::Redis);
        assert_eq!(c.instance_id("x"), "a-1");
        assert!(c.validate("x").is_empty());
        let mut bad = c.clone();
        bad.redis.url = "http://x".into();
        assert!(bad.validate("x")[0].starts_with("state.redis.url"));
        let mut bad = c;
        bad.instance_id = Some("a b".into());
        assert!(bad.validate("x")[0].starts_with("state.instance_id"));
        assert!(yaml::from_str::<StateConfig>("c.yaml", "backend: etcd\n").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("redis://:secret@10.0.0.1:6379/0"),
            "redis://***@10.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }

    #[test]
    fn any_node_id_gives_a_valid_stable_instance_id() {
        assert_eq!(derived_instance_id("swbd-1"), "swbd-1");
        let hostile = "<img src=x onerror=alert(1)>";
        let id = derived_instance_id(hostile);
        assert!(valid_instance_id(&id), "{id}");
        assert_eq!(id, derived_instance_id(hostile), "stable");
        assert_ne!(id, derived_instance_id("<img src=y onerror=alert(1)>"));
        assert!(valid_instance_id(&derived_instance_id("")));
        assert!(valid_instance_id(&derived_instance_id(&"é".repeat(100))));
        // Only an explicit bad id is refused.
        let c = StateConfig::default();
        assert!(c.validate(hostile).is_empty());
    }
}
