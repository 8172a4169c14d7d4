//! `cdr:` and `calls:` config sections: where call detail records go, and
//! how long ended calls stay in memory (the history covers older ones).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Call detail records (`cdr:`), one per call attempt (swbd/src/cdr).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CdrConfig {
    /// Records waiting to be written at most. Writing never blocks a call:
    /// a record that finds the queue full is not written, counted
    /// (`swctl status`) and logged at ERROR with the whole record.
    pub queue_size: usize,
    /// JSON-lines file (on by default).
    pub file: CdrFileConfig,
    /// PostgreSQL (off unless `url` is set).
    pub postgres: CdrPostgresConfig,
    /// History reads from the files scan this many bytes at most per
    /// request (newest first); a bigger history needs `postgres`.
    pub history_scan_bytes: u64,
}

impl Default for CdrConfig {
    fn default() -> Self {
        Self {
            queue_size: 10_000,
            file: CdrFileConfig::default(),
            postgres: CdrPostgresConfig::default(),
            history_scan_bytes: 64 * 1024 * 1024,
        }
    }
}

/// `cdr.file`: one JSON object per line, rotated by size.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CdrFileConfig {
    /// Write the file (also the spill of records PostgreSQL cannot take).
    pub enabled: bool,
    /// The file. Default: `cdr.jsonl` in the state directory
    /// (`$STATE_DIRECTORY`, set by systemd's `StateDirectory=`; else
    /// `$XDG_STATE_HOME/switchboard`; else `~/.local/state/switchboard`).
    /// Relative paths are relative to the config file.
    pub path: Option<PathBuf>,
    /// Rotate when the file would grow past this many bytes: `cdr.jsonl`
    /// becomes `cdr.jsonl.1` (`.1` becomes `.2`, ...).
    pub max_bytes: u64,
    /// Rotated files kept (`cdr.jsonl.1` .. `.N`); older ones are deleted.
    pub keep: u32,
    /// `fdatasync` each batch before counting it written: a record then
    /// survives a power loss, not only a crash of swbd (a record is
    /// counted written once `write(2)` returned, which a `kill -9`
    /// cannot undo). Costs a disk flush per batch.
    pub fsync: bool,
}

impl Default for CdrFileConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: None,
            max_bytes: 64 * 1024 * 1024,
            keep: 10,
            fsync: false,
        }
    }
}

/// `cdr.postgres`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CdrPostgresConfig {
    /// Connection string (`postgresql://swbd@127.0.0.1:5432/switchboard`
    /// or `host=... user=... dbname=...`). No TLS: keep the database on
    /// loopback or a private network. Set: records are inserted into
    /// table `swbd_cdr` (created or migrated at start) and the history
    /// reads from it.
    pub url: Option<String>,
    /// Records per INSERT transaction at most.
    pub batch_size: usize,
    /// Attempts per batch before it spills to the file.
    pub max_attempts: u32,
}

impl CdrPostgresConfig {
    /// `batch_size`, at least 1 (the default 100 when unset).
    pub fn batch(&self) -> usize {
        if self.batch_size == 0 {
            100
        } else {
            self.batch_size
        }
    }

    /// `max_attempts`, at least 1 (the default 5 when unset).
    pub fn attempts(&self) -> u32 {
        if self.max_attempts == 0 {
            5
        } else {
            self.max_attempts
        }
    }
}

/// `calls:`: the in-memory list of ended calls (`swctl calls list -a`,
/// `calls show`); `swctl calls history` covers the older ones.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct CallsConfig {
    /// Ended calls kept at most (each keeps its SIP ladder, a few KiB).
    pub keep_ended: usize,
    /// How long an ended call stays listed, seconds.
    pub keep_ended_secs: u64,
}

impl Default for CallsConfig {
    fn default() -> Self {
        Self {
            keep_ended: 200,
            keep_ended_secs: 300,
        }
    }
}

impl CallsConfig {
    /// `keep_ended_secs` as a duration.
    pub fn keep_ended_for(&self) -> Duration {
        Duration::from_secs(self.keep_ended_secs)
    }
}

impl CdrConfig {
    /// The CDR file in force (`cdr.file.path` or the state directory's).
    pub fn file_path(&self) -> PathBuf {
        self.file
            .path
            .clone()
            .unwrap_or_else(|| state_dir().join("cdr.jsonl"))
    }

    /// Make a relative `cdr.file.path` relative to `base` (the config file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(p) = &mut self.file.path
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
    }

    /// Errors naming the key.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.queue_size == 0 {
            errors.push("cdr.queue_size: must be at least 1".into());
        }
        if self.file.enabled && self.file.max_bytes < 4096 {
            errors.push("cdr.file.max_bytes: must be at least 4096".into());
        }
        if let Some(url) = &self.postgres.url {
            if url.trim().is_empty() {
                errors.push(
                    "cdr.postgres.url: must not be empty (remove the key to turn PostgreSQL off)"
                        .into(),
                );
            } else if let Err(e) = url.parse::<tokio_postgres::Config>() {
                errors.push(format!("cdr.postgres.url: not a connection string: {e}"));
            }
        }
        errors
    }
}

/// swbd's state directory: `$STATE_DIRECTORY` (systemd), else
/// `$XDG_STATE_HOME/switchboard`, else `$HOME/.local/state/switchboard`,
/// else the runtime directory.
pub fn state_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = var("STATE_DIRECTORY") {
        // systemd may list several, separated by ':'.
        let first = d
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string();
        return PathBuf::from(first);
    }
    if let Some(d) = var("XDG_STATE_HOME") {
        return PathBuf::from(d).join("switchboard");
    }
    if let Some(h) = var("HOME") {
        return PathBuf::from(h).join(".local/state/switchboard");
    }
    switchboard_proto::support::paths::runtime_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_bad_values_are_named() {
        let c: crate::config::Config = switchboard_proto::support::yaml::from_str(
            "c.yaml",
            "cdr:\n  queue_size: 5\n  file: { path: cdr/x.jsonl, max_bytes: 10000, keep: 2, fsync: true }\n  postgres: { url: \"host=127.0.0.1 user=swbd\" }\ncalls: { keep_ended: 7, keep_ended_secs: 9 }\n",
        )
        .expect("parses");
        assert_eq!(c.cdr.queue_size, 5);
        assert!(c.cdr.file.fsync);
        assert_eq!(c.calls.keep_ended, 7);
        assert_eq!(c.calls.keep_ended_for(), Duration::from_secs(9));
        let mut c = c;
        c.resolve_paths(Path::new("/etc/sb"));
        assert_eq!(c.cdr.file_path(), PathBuf::from("/etc/sb/cdr/x.jsonl"));
        assert_eq!(c.validate("c.yaml"), Ok(()));
        c.cdr.queue_size = 0;
        c.cdr.postgres.url = Some("postgresql://[bad".into());
        let errs = c.validate("c.yaml").expect_err("refused");
        let text = format!("{errs:?}");
        assert!(text.contains("cdr.queue_size"), "{text}");
        assert!(text.contains("cdr.postgres.url"), "{text}");
    }
}
