//! The media relay's own added latency, read from swrtp (admin `GetStatus`,
//! `relay_latency`: receive returned -> send completed, per relayed RTP
//! packet) so reports can show it next to the one-way delay the generator
//! measures, which also contains the generator's own socket and scheduling
//! time. Other relays (rtpengine) have no such figure.
//!
//! Two reads of the histogram are subtracted bucket by bucket to get the
//! figure for a window (the plateau).

use serde::Serialize;
use switchboard_proto::admin::v1::GetMediaStatusRequest;
use switchboard_proto::admin::v1::RelayLatency;
use switchboard_proto::admin::v1::media_admin_client::MediaAdminClient;
use tonic::transport::{Channel, Endpoint as TonicEndpoint, Uri};

/// Why swrtp's figures could not be read (reported, never fatal to a run).
#[derive(Debug, thiserror::Error)]
pub enum RelayStatsError {
    /// Not `unix:///path` or `tcp://ip:port`.
    #[error("{0:?} is not an admin endpoint (expected unix:///path/to.sock or tcp://IP:PORT)")]
    Endpoint(String),
    /// Connect failed.
    #[error("cannot reach swrtp admin at {0}: {1}")]
    Connect(String, tonic::transport::Error),
    /// The call failed.
    #[error("swrtp GetStatus failed: {0}")]
    Status(#[from] tonic::Status),
    /// An swrtp without the field (older build).
    #[error("swrtp reports no relay_latency (older swrtp?)")]
    Missing,
}

/// Percentiles of the relay's added latency, milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RelayLatencySummary {
    pub packets: u64,
    pub mean_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// What a calls run reports about swrtp's own latency.
#[derive(Debug, Clone, Serialize)]
pub struct RelayLatencyReport {
    /// Since swrtp started, read ~1 s after the last call ended.
    pub whole_run: Option<RelayLatencySummary>,
    /// Over the plateau window (all calls up).
    pub window: Option<RelayLatencySummary>,
    /// Read errors, if any.
    pub errors: Vec<String>,
}

/// A connected admin client.
pub async fn connect(endpoint: &str) -> Result<MediaAdminClient<Channel>, RelayStatsError> {
    let channel = if let Some(path) = endpoint.strip_prefix("unix://") {
        let path = std::path::PathBuf::from(path);
        // The URI is ignored by the connector; tonic needs one anyway.
        TonicEndpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    tokio::net::UnixStream::connect(path)
                        .await
                        .map(hyper_util::rt::TokioIo::new)
                }
            }))
            .await
    } else {
        let addr = endpoint.strip_prefix("tcp://").unwrap_or(endpoint);
        if addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(RelayStatsError::Endpoint(endpoint.into()));
        }
        TonicEndpoint::from_shared(format!("http://{addr}"))
            .map_err(|_| RelayStatsError::Endpoint(endpoint.into()))?
            .connect()
            .await
    };
    channel
        .map(MediaAdminClient::new)
        .map_err(|e| RelayStatsError::Connect(endpoint.into(), e))
}

/// One read of the histogram.
pub async fn read(client: &mut MediaAdminClient<Channel>) -> Result<RelayLatency, RelayStatsError> {
    client
        .get_status(GetMediaStatusRequest {})
        .await?
        .into_inner()
        .relay_latency
        .ok_or(RelayStatsError::Missing)
}

/// Summary of one read (everything since swrtp started).
pub fn summary(l: &RelayLatency) -> RelayLatencySummary {
    window(&RelayLatency::default(), l, Some(l.max_ns))
}

/// `after - before`, bucket by bucket. `max_ns`: the exact maximum when
/// known (a whole-run read), else the upper bound of the highest bucket.
pub fn window(
    before: &RelayLatency,
    after: &RelayLatency,
    max_ns: Option<u64>,
) -> RelayLatencySummary {
    let earlier = |upper: u64| -> u64 {
        before
            .bucket_upper_ns
            .iter()
            .zip(&before.bucket_counts)
            .find(|(u, _)| **u == upper)
            .map_or(0, |(_, c)| *c)
    };
    let buckets: Vec<(u64, u64)> = after
        .bucket_upper_ns
        .iter()
        .zip(&after.bucket_counts)
        .map(|(u, c)| (*u, c.saturating_sub(earlier(*u))))
        .filter(|(_, c)| *c > 0)
        .collect();
    let packets: u64 = buckets.iter().map(|(_, c)| c).sum();
    let top = buckets.last().map(|(u, _)| *u);
    let max_ns = match (max_ns, top) {
        (Some(m), Some(t)) => Some(m.min(t)),
        (m, t) => m.filter(|_| packets > 0).or(t),
    };
    let pct = |p: f64| -> Option<u64> {
        let rank = ((p / 100.0) * packets as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (u, c) in &buckets {
            seen += c;
            if seen >= rank {
                return Some(max_ns.map_or(*u, |m| (*u).min(m)));
            }
        }
        None
    };
    let ms = |ns: Option<u64>| ns.map(|v| v as f64 / 1e6);
    let sum = after.sum_ns.saturating_sub(before.sum_ns);
    RelayLatencySummary {
        packets,
        mean_ms: (packets > 0).then(|| sum as f64 / packets as f64 / 1e6),
        p50_ms: ms(pct(50.0)),
        p90_ms: ms(pct(90.0)),
        p99_ms: ms(pct(99.0)),
        p999_ms: ms(pct(99.9)),
        max_ms: ms(max_ns.filter(|_| packets > 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(b: &[(u64, u64)], sum_ns: u64, max_ns: u64) -> RelayLatency {
        RelayLatency {
            packets: b.iter().map(|(_, c)| c).sum(),
            sum_ns,
            max_ns,
            bucket_upper_ns: b.iter().map(|(u, _)| *u).collect(),
            bucket_counts: b.iter().map(|(_, c)| *c).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn window_subtracts_bucket_by_bucket() {
        let before = hist(&[(1_000, 90), (2_000, 10)], 110_000, 2_000);
        let after = hist(
            &[(1_000, 100), (2_000, 109), (900_000, 1)],
            1_228_000,
            880_000,
        );
        let w = window(&before, &after, None);
        assert_eq!(w.packets, 110);
        assert_eq!(w.p50_ms, Some(0.002));
        assert_eq!(w.p99_ms, Some(0.002));
        assert_eq!(w.max_ms, Some(0.9));
        let whole = summary(&after);
        assert_eq!(whole.packets, 210);
        assert_eq!(whole.max_ms, Some(0.88));
        assert_eq!(whole.p999_ms, Some(0.88));
    }

    #[test]
    fn empty_histogram_has_no_percentiles() {
        let w = summary(&RelayLatency::default());
        assert_eq!(w.packets, 0);
        assert_eq!(w.p99_ms, None);
        assert_eq!(w.max_ms, None);
        assert_eq!(w.mean_ms, None);
    }

    #[tokio::test]
    async fn bad_endpoint_is_refused() {
        assert!(matches!(
            connect("not an endpoint").await,
            Err(RelayStatsError::Endpoint(_))
        ));
    }
}
