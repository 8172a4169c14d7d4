//! `~/.config/swctl/config.yaml`: named contexts, each a list of swbd and
//! swrtp hosts.
//!
//! ```yaml
//! current_context: pbx1        # used when neither --host nor --context is given
//! contexts:
//!   pbx1:
//!     swbd: ["ssh://ops@pbx1"]
//!     swrtp: ["ssh://ops@pbx1/run/switchboard/swrtp.sock", "tcp://10.0.0.8:7071"]
//!   lab:
//!     swbd: ["unix:///run/switchboard/swbd.sock"]
//!   tcp-lab:
//!     swbd: ["tcp://127.0.0.1:7070"]
//!     token_file: lab-admin.token   # relative to this file; --token-file wins
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::connect::Host;

/// The config file.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Context used when none is named on the command line.
    pub current_context: Option<String>,
    /// Contexts by name.
    pub contexts: BTreeMap<String, Context>,
}

/// One context: the daemons of one installation.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Context {
    /// swbd admin endpoints.
    pub swbd: Vec<String>,
    /// swrtp admin endpoints.
    pub swrtp: Vec<String>,
    /// Bearer token file for this context's TCP admin listeners (relative
    /// to the config file's directory). `--token-file`, `$SWCTL_TOKEN_FILE`
    /// and `$SWCTL_TOKEN` take precedence.
    pub token_file: Option<PathBuf>,
}

/// A config problem, with the file named.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable or invalid YAML.
    #[error("{file}: {message}")]
    File {
        /// Path.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// `--context` names no context.
    #[error("no context {name:?} in {file} (known: {known})")]
    UnknownContext {
        /// Asked for.
        name: String,
        /// Path.
        file: String,
        /// Names defined.
        known: String,
    },
}

/// Default config path: `$XDG_CONFIG_HOME/swctl/config.yaml`, else
/// `$HOME/.config/swctl/config.yaml`.
pub fn default_path() -> Option<PathBuf> {
    match std::env::var_os("XDG_CONFIG_HOME") {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d).join("swctl/config.yaml")),
        _ => std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".config/swctl/config.yaml")),
    }
}

impl Config {
    /// Load `path`. A missing file at the default path is an empty config;
    /// a missing file named with `--config` is an error (`required`).
    pub fn load(path: &Path, required: bool) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Self::default());
            }
            Err(e) => {
                return Err(ConfigError::File {
                    file,
                    message: switchboard_proto::support::yaml::io_reason(&e),
                });
            }
        };
        Self::parse(&file, &text)
    }

    /// Parse YAML text; `file` names it in errors. Every host must parse.
    pub fn parse(file: &str, text: &str) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let cfg: Config = serde_saphyr::from_str(text).map_err(|e| ConfigError::File {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        for (name, ctx) in &cfg.contexts {
            for h in ctx.swbd.iter().chain(&ctx.swrtp) {
                h.parse::<Host>().map_err(|e| ConfigError::File {
                    file: file.to_string(),
                    message: format!("context {name}: {e}"),
                })?;
            }
        }
        Ok(cfg)
    }

    /// The context named `name`, or the current one when `name` is `None`.
    /// `Ok(None)`: no context asked for and none current.
    pub fn context(&self, file: &str, name: Option<&str>) -> Result<Option<&Context>, ConfigError> {
        let Some(name) = name.or(self.current_context.as_deref()) else {
            return Ok(None);
        };
        match self.contexts.get(name) {
            Some(c) => Ok(Some(c)),
            None => Err(ConfigError::UnknownContext {
                name: name.to_string(),
                file: file.to_string(),
                known: if self.contexts.is_empty() {
                    "none".to_string()
                } else {
                    self.contexts.keys().cloned().collect::<Vec<_>>().join(", ")
                },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_parse_and_resolve() {
        let cfg = Config::parse(
            "c.yaml",
            "current_context: lab\ncontexts:\n  lab:\n    swbd: [\"unix:///tmp/a.sock\"]\n  pbx1:\n    swbd: [\"ssh://ops@pbx1\"]\n    swrtp: [\"tcp://10.0.0.8:7071\"]\n",
        )
        .unwrap();
        assert_eq!(
            cfg.context("c.yaml", None).unwrap().unwrap().swbd,
            ["unix:///tmp/a.sock"]
        );
        assert_eq!(
            cfg.context("c.yaml", Some("pbx1")).unwrap().unwrap().swrtp,
            ["tcp://10.0.0.8:7071"]
        );
        let e = cfg.context("c.yaml", Some("nope")).unwrap_err().to_string();
        assert_eq!(e, "no context \"nope\" in c.yaml (known: lab, pbx1)");
    }

    #[test]
    fn bad_config_names_the_file() {
        let e = Config::parse("c.yaml", "contexts:\n  x:\n    swbd: [\"pbx1\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.yaml: context x: invalid --host"), "{e}");
        let e = Config::parse("c.yaml", "contextz: {}\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.yaml: "), "{e}");
        assert!(Config::load(Path::new("/nonexistent/swctl.yaml"), false).is_ok());
        assert!(Config::load(Path::new("/nonexistent/swctl.yaml"), true).is_err());
    }
}
