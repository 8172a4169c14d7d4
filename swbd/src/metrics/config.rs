//! `metrics:` in swbd's config: the Prometheus endpoint.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use switchboard_proto::support::metrics_http;

/// swbd's default metrics address (swrtp's is 9461).
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9460);

/// The Prometheus `/metrics` endpoint (docs/features/metrics.md).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics` (on by default, on loopback). A listener that
    /// cannot be bound is logged and swbd runs on without it.
    pub enabled: bool,
    /// Where (`127.0.0.1:9460`). Beyond loopback it needs `token_file`:
    /// metrics tell call volumes, user counts and node names.
    pub listen: SocketAddr,
    /// File holding the bearer token Prometheus must send
    /// (`authorization: { type: Bearer, credentials_file: FILE }` in its
    /// scrape config). Created (0600, random) when missing; refused unless
    /// owned by this user with mode 0600 or stricter. When set, it is
    /// required on loopback too.
    pub token_file: Option<PathBuf>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: DEFAULT_LISTEN,
            token_file: None,
        }
    }
}

impl MetricsConfig {
    /// The cross-field rule: beyond loopback needs a token file.
    pub fn validate(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        metrics_http::check_listen(
            self.listen,
            self.token_file.is_some(),
            "metrics.listen",
            "metrics.token_file",
        )
    }
}
