//! Prometheus metrics: swbd's `/metrics` endpoint (`metrics.listen`,
//! loopback by default; see docs/features/metrics.md for every metric).
//!
//! # Layout
//! - [`config`]: the `metrics:` config section.
//! - [`sip`]: SIP requests and responses by method and code, counted on
//!   the wire paths with fixed atomic arrays (no lock, no hash per message).
//! - [`calls`]: call counters and the setup time and duration histograms,
//!   fed by the call table when a call starts, is answered and ends.
//! - [`collector`]: what a scrape reads from state swbd keeps anyway
//!   (counters, registrar, transactions, dialplan, media nodes, calls by
//!   state).
//!
//! The hot paths only add to atomics; the registry is encoded at scrape
//! time, in the Prometheus text format (0.0.4) `promtool` checks.

pub mod calls;
pub mod collector;
pub mod config;
pub mod sip;

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use switchboard_proto::support::metrics_http;
use switchboard_proto::support::secret::{self, Token};
use switchboard_proto::support::shutdown::Shutdown;

pub use calls::CallMetrics;
pub use collector::Sources;
pub use config::MetricsConfig;
pub use sip::MessageCounters;

/// The registry of everything swbd exports.
pub fn registry(sources: Sources) -> Registry {
    let mut registry = Registry::default();
    sources.calls.metrics().register(&mut registry);
    registry.register_collector(Box::new(collector::SwbdCollector(sources)));
    registry.register(
        "swbd_build",
        "swbd's version",
        prometheus_client::metrics::info::Info::new([("version", env!("CARGO_PKG_VERSION"))]),
    );
    registry
}

/// The exposition text of `registry`.
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(16 * 1024);
    if prometheus_client::encoding::prometheus_text::encode(&mut out, registry).is_err() {
        // Writing into a String cannot fail; a collector that did is a bug.
        tracing::warn!("metrics encoding failed");
    }
    out
}

/// The metrics token (`metrics.token_file`), read or created.
pub fn token(cfg: &MetricsConfig) -> anyhow::Result<Option<Token>> {
    match &cfg.token_file {
        Some(file) if cfg.enabled => secret::load_or_create_token(file)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("metrics.token_file: {e}")),
        _ => Ok(None),
    }
}

/// Serve `/metrics` when enabled. A listener that cannot be bound is
/// logged and `None` returned: swbd carries calls without it.
pub async fn start(
    cfg: &MetricsConfig,
    token: Option<Token>,
    sources: Sources,
    shutdown: Shutdown,
) -> Option<SocketAddr> {
    if !cfg.enabled {
        tracing::info!("metrics endpoint disabled (metrics.enabled: false)");
        return None;
    }
    let registry = Arc::new(registry(sources));
    let render: metrics_http::Render = Arc::new(move || render(&registry));
    let authed = token.is_some();
    match metrics_http::serve(cfg.listen, token, render, shutdown).await {
        Ok(addr) => {
            tracing::info!(url = %format!("http://{addr}/metrics"), bearer_token = authed, "metrics listening");
            Some(addr)
        }
        Err(e) => {
            tracing::warn!(
                listen = %cfg.listen,
                error = %switchboard_proto::support::yaml::io_reason(&e),
                "cannot serve metrics (metrics.listen); running without them"
            );
            None
        }
    }
}
