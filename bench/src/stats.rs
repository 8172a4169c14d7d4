//! Counters and latency percentiles shared by the scenarios.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Latency samples in microseconds; percentiles by nearest rank.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    samples: Vec<u64>,
    sorted: bool,
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        self.record_us(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn record_us(&mut self, us: u64) {
        self.samples.push(us);
        self.sorted = false;
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn merge(&mut self, other: &Histogram) {
        self.samples.extend_from_slice(&other.samples);
        self.sorted = false;
    }

    /// Nearest-rank percentile (`p` in 0..=100), in microseconds.
    pub fn percentile(&mut self, p: f64) -> Option<u64> {
        if self.samples.is_empty() {
            return None;
        }
        if !self.sorted {
            self.samples.sort_unstable();
            self.sorted = true;
        }
        let n = self.samples.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.samples.get(rank.clamp(1, n) - 1).copied()
    }

    pub fn summary(&mut self) -> LatencySummary {
        let mean = if self.samples.is_empty() {
            None
        } else {
            Some(self.samples.iter().sum::<u64>() as f64 / self.samples.len() as f64 / 1000.0)
        };
        let ms = |v: Option<u64>| v.map(|us| us as f64 / 1000.0);
        LatencySummary {
            count: self.samples.len() as u64,
            mean_ms: mean,
            p50_ms: ms(self.percentile(50.0)),
            p95_ms: ms(self.percentile(95.0)),
            p99_ms: ms(self.percentile(99.0)),
            max_ms: ms(self.percentile(100.0)),
        }
    }
}

/// Percentiles in milliseconds, for reports.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// Failures by reason: a SIP status code ("486"), or "timeout", "not-started" ...
#[derive(Debug, Clone, Default, Serialize)]
pub struct Failures(pub BTreeMap<String, u64>);

impl Failures {
    pub fn add(&mut self, reason: impl Into<String>) {
        *self.0.entry(reason.into()).or_default() += 1;
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn merge(&mut self, other: &Failures) {
        for (k, v) in &other.0 {
            *self.0.entry(k.clone()).or_default() += v;
        }
    }
}

/// `a/b` per second, `None` for an empty window.
pub fn rate(count: u64, elapsed: Duration) -> Option<f64> {
    let s = elapsed.as_secs_f64();
    (s > 0.0).then(|| count as f64 / s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut h = Histogram::default();
        for us in (1..=100).rev() {
            h.record_us(us * 1000);
        }
        assert_eq!(h.percentile(50.0), Some(50_000));
        assert_eq!(h.percentile(95.0), Some(95_000));
        assert_eq!(h.percentile(99.0), Some(99_000));
        assert_eq!(h.percentile(100.0), Some(100_000));
        assert_eq!(h.percentile(0.0), Some(1_000));
        let s = h.summary();
        assert_eq!(s.count, 100);
        assert_eq!(s.p50_ms, Some(50.0));
        assert_eq!(s.mean_ms, Some(50.5));
    }

    #[test]
    fn small_and_empty_sets() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile(99.0), None);
        assert_eq!(h.summary().p99_ms, None);
        h.record(Duration::from_millis(3));
        assert_eq!(h.percentile(1.0), Some(3000));
        assert_eq!(h.percentile(99.0), Some(3000));
        let mut other = Histogram::default();
        other.record_us(1);
        h.merge(&other);
        assert_eq!(h.percentile(50.0), Some(1));
    }

    #[test]
    fn failures_and_rates() {
        let mut f = Failures::default();
        f.add("486");
        f.add("486");
        f.add("timeout");
        let mut g = Failures::default();
        g.add("timeout");
        f.merge(&g);
        assert_eq!(f.total(), 4);
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"486":2,"timeout":2}"#
        );
        assert_eq!(rate(10, Duration::from_secs(2)), Some(5.0));
        assert_eq!(rate(10, Duration::ZERO), None);
    }
}
