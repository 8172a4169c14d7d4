//! Prometheus metrics: swrtp's `/metrics` endpoint (`metrics_listen`,
//! loopback by default; every metric is in docs/features/metrics.md).
//!
//! The relay path stays as it is: a scrape reads what the media tasks
//! already keep for admin `GetStatus` (per-session atomics, node counters,
//! the relay latency histogram they flush about once a second), sums the
//! live sessions under the table lock, and adds what destroyed sessions
//! counted ([`crate::session::EndedSessions`]). Nothing per packet is added.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use switchboard_proto::support::metrics_http;
use switchboard_proto::support::secret::{self, Token};
use switchboard_proto::support::shutdown::Shutdown;

use crate::config::Config;
use crate::session::Node;

/// Prometheus buckets of the relay latency, seconds. The relay's own
/// histogram is finer (8 buckets per power of two); a relay bucket counts
/// towards `le` only when all of it is at or below `le`, so a count is
/// never placed below its true value.
const LATENCY_BUCKETS: [f64; 14] = [
    5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3,
    100e-3,
];

#[derive(Debug)]
struct NodeCollector(Node);

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge<N: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: N,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let node = &self.0;
        let status = node.status();
        let e = &mut encoder;
        gauge(
            e,
            "swrtp_sessions",
            "Media sessions (call legs) on the node",
            status.active_sessions,
        )?;
        gauge(
            e,
            "swrtp_bridges",
            "Pairs of sessions relaying to each other",
            status.active_bridges,
        )?;
        gauge(
            e,
            "swrtp_playbacks",
            "Sessions playing a file (prompt, tone, music on hold)",
            status.active_playbacks,
        )?;
        gauge(
            e,
            "swrtp_draining",
            "1 while the node refuses new sessions",
            i64::from(status.draining),
        )?;

        let primary = if node.settings().public_address.is_ipv6() {
            "ipv6"
        } else {
            "ipv4"
        };
        let mut pools = vec![(primary, node.pool().free(), node.pool().total())];
        if let Some(v6) = node.pool_v6() {
            pools.push(("ipv6", v6.free(), v6.total()));
        }
        for (name, help, free) in [
            (
                "swrtp_port_pairs_free",
                "RTP/RTCP port pairs free, by address family",
                true,
            ),
            (
                "swrtp_port_pairs",
                "RTP/RTCP port pairs in the range, by address family",
                false,
            ),
        ] {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (family, f, total) in &pools {
                let v = if free { *f } else { *total };
                ConstGauge::new(v).encode(m.encode_family(&[("family", *family)])?)?;
            }
        }

        let t = node.traffic();
        let mut m = e.encode_descriptor(
            "swrtp_rtp_packets",
            "RTP packets by direction: received from peers, sent to peers (relayed or played)",
            None,
            MetricType::Counter,
        )?;
        for (dir, n) in [("received", t.rx_packets), ("sent", t.tx_packets)] {
            ConstCounter::new(n).encode(m.encode_family(&[("direction", dir)])?)?;
        }
        let mut m = e.encode_descriptor(
            "swrtp_rtp_payload_bytes",
            "RTP payload bytes by direction (headers not included)",
            None,
            MetricType::Counter,
        )?;
        for (dir, n) in [("received", t.rx_bytes), ("sent", t.tx_bytes)] {
            ConstCounter::new(n).encode(m.encode_family(&[("direction", dir)])?)?;
        }
        counter(
            e,
            "swrtp_packets_relayed",
            "RTP packets relayed between bridged sessions",
            status.packets_relayed,
        )?;
        counter(
            e,
            "swrtp_packets_dropped",
            "Packets dropped: malformed, from a stranger (not latched), or unbridged",
            status.packets_dropped,
        )?;
        counter(
            e,
            "swrtp_rtp_timeouts",
            "Sessions that received no RTP for rtp_timeout_secs",
            status.rtp_timeouts,
        )?;
        counter(
            e,
            "swrtp_leases_expired",
            "Sessions destroyed because their owner's lease lapsed (an swbd gone)",
            status.leases_expired,
        )?;
        counter(
            e,
            "swrtp_stale_owner_sessions_reclaimed",
            "Sessions destroyed because their owner restarted (reconciled on reconnect)",
            status.stale_owner_sessions_dropped,
        )?;

        let q = node.live_quality();
        gauge(
            e,
            "swrtp_receiving_sessions",
            "Live sessions that have received RTP",
            i64::try_from(q.receiving).unwrap_or(i64::MAX),
        )?;
        gauge(
            e,
            "swrtp_receive_jitter_max_seconds",
            "Worst RFC 3550 interarrival jitter among live sessions that received RTP",
            q.jitter_max,
        )?;
        gauge(
            e,
            "swrtp_receive_jitter_mean_seconds",
            "Mean RFC 3550 interarrival jitter of live sessions that received RTP",
            q.jitter_mean,
        )?;
        gauge(
            e,
            "swrtp_receive_loss_max_ratio",
            "Worst receive loss (lost over expected) among live sessions that received RTP",
            q.loss_max,
        )?;

        self.latency(e, &status)
    }
}

impl NodeCollector {
    fn latency(
        &self,
        encoder: &mut DescriptorEncoder,
        status: &switchboard_proto::admin::v1::MediaStatus,
    ) -> Result<(), std::fmt::Error> {
        let Some(l) = &status.relay_latency else {
            return Ok(());
        };
        // Per-bucket counts (encode_histogram accumulates them); the relay's
        // buckets come in ascending order of their upper bound.
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len());
        let mut relay = l.bucket_upper_ns.iter().zip(&l.bucket_counts).peekable();
        for le in LATENCY_BUCKETS {
            let le_ns = (le * 1e9).round() as u64;
            let mut n = 0u64;
            while let Some((_, count)) = relay.next_if(|(upper, _)| **upper <= le_ns) {
                n = n.saturating_add(*count);
            }
            buckets.push((le, n));
        }
        let mut m = encoder.encode_descriptor(
            "swrtp_relay_latency_seconds",
            "Time swrtp adds to each relayed RTP packet, receive returned to send completed (flushed by media tasks about once a second)",
            None,
            MetricType::Histogram,
        )?;
        m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            l.sum_ns as f64 / 1e9,
            l.packets,
            &buckets,
            None,
        )
    }
}

/// The registry of everything swrtp exports.
pub fn registry(node: &Node) -> Registry {
    let mut registry = Registry::default();
    let ended = node.ended_sessions();
    registry.register(
        "swrtp_session_receive_loss_ratio",
        "Receive loss (lost over expected) of each destroyed session that received RTP",
        ended.loss.clone(),
    );
    registry.register(
        "swrtp_session_receive_jitter_seconds",
        "Receive jitter (RFC 3550) of each destroyed session that received RTP, at its end",
        ended.jitter.clone(),
    );
    registry.register(
        "swrtp_build",
        "swrtp's version",
        prometheus_client::metrics::info::Info::new([("version", env!("CARGO_PKG_VERSION"))]),
    );
    registry.register_collector(Box::new(NodeCollector(node.clone())));
    registry
}

/// The exposition text of `registry`.
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(8 * 1024);
    if prometheus_client::encoding::prometheus_text::encode(&mut out, registry).is_err() {
        tracing::warn!("metrics encoding failed");
    }
    out
}

/// The metrics token (`metrics_token_file`), read or created.
pub fn token(config: &Config) -> anyhow::Result<Option<Token>> {
    match &config.metrics_token_file {
        Some(file) if config.metrics_enabled => secret::load_or_create_token(file)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("metrics_token_file: {e}")),
        _ => Ok(None),
    }
}

/// Serve `/metrics` when enabled; a listener that cannot be bound is
/// logged and the node runs on without it.
pub async fn start(
    config: &Config,
    token: Option<Token>,
    node: &Node,
    shutdown: Shutdown,
) -> Option<SocketAddr> {
    if !config.metrics_enabled {
        tracing::info!("metrics endpoint disabled (metrics_enabled: false)");
        return None;
    }
    let registry = Arc::new(registry(node));
    let render: metrics_http::Render = Arc::new(move || render(&registry));
    let authed = token.is_some();
    match metrics_http::serve(config.metrics_listen, token, render, shutdown).await {
        Ok(addr) => {
            tracing::info!(url = %format!("http://{addr}/metrics"), bearer_token = authed, "metrics listening");
            Some(addr)
        }
        Err(e) => {
            tracing::warn!(
                listen = %config.metrics_listen,
                error = %switchboard_proto::support::yaml::io_reason(&e),
                "cannot serve metrics (metrics_listen); running without them"
            );
            None
        }
    }
}
