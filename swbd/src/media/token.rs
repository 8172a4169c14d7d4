//! The media token swbd presents to each swrtp node.
//!
//! swrtp answers MediaService calls only with `authorization: Bearer
//! TOKEN`; the token comes from a file both daemons read (`media.token_file`
//! here, `media_token_file` on the node). A node may have a file of its own
//! (`media.nodes[].token_file`). Files are read once at start; a file that
//! is missing is created (0600, random), so a swbd and a swrtp of one user
//! on one host that start together agree on one token.

use std::collections::HashMap;
use std::path::PathBuf;

use switchboard_proto::support::paths;
use switchboard_proto::support::secret::{self, Token};

use crate::config::MediaConfig;

/// The token for every configured node.
#[derive(Debug, Clone)]
pub struct MediaTokens {
    by_node: HashMap<String, Token>,
    fallback: Option<Token>,
}

impl MediaTokens {
    /// Read (or create) every token file `cfg` names; the shared default
    /// file only when some node has no file of its own. Errors name the key
    /// and the file, never its contents.
    pub fn load(cfg: &MediaConfig) -> Result<Self, String> {
        let mut fallback = None;
        let mut by_node = HashMap::new();
        for node in &cfg.nodes {
            let token = match &node.token_file {
                Some(file) => secret::load_or_create_token(file)
                    .map_err(|e| format!("media.nodes.{}.token_file: {e}", node.name))?,
                None => match &fallback {
                    Some(t) => Clone::clone(t),
                    None => {
                        let t = shared(cfg.token_file.clone())?;
                        fallback = Some(t.clone());
                        t
                    }
                },
            };
            by_node.insert(node.name.clone(), token);
        }
        Ok(Self { by_node, fallback })
    }

    /// One token for every node (tests, tools).
    pub fn fixed(token: Token) -> Self {
        Self {
            by_node: HashMap::new(),
            fallback: Some(token),
        }
    }

    /// The token to send to `node`.
    pub fn for_node(&self, node: &str) -> Option<&Token> {
        self.by_node.get(node).or(self.fallback.as_ref())
    }
}

fn shared(file: Option<PathBuf>) -> Result<Token, String> {
    let file = match file {
        Some(f) => f,
        None => {
            let dir = paths::runtime_dir();
            paths::ensure_runtime_dir(&dir)
                .map_err(|e| format!("media.token_file (default): runtime directory: {e}"))?;
            paths::media_token()
        }
    };
    secret::load_or_create_token(&file).map_err(|e| format!("media.token_file: {e}"))
}
