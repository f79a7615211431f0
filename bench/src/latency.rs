//! Latency histograms (HDR, nanoseconds, 3 significant digits) and how they
//! travel from worker processes to the parent: as `(value, count)` pairs of
//! the recorded buckets, which merge back into a histogram without loss of
//! precision beyond the histogram's own.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest value a histogram holds (60 s); larger samples are clamped to it.
const HIGHEST_NS: u64 = 60_000_000_000;

/// A latency histogram in nanoseconds.
pub struct Latency {
    hist: Histogram<u64>,
}

/// Percentiles in microseconds, as reported.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Latency {
        // 1 ns .. 60 s with 3 significant digits: valid bounds, cannot fail.
        let hist = Histogram::new_with_bounds(1, HIGHEST_NS, 3).unwrap_or_else(|_| unreachable!());
        Latency { hist }
    }

    /// Records one sample (clamped into 1 ns ..= 60 s).
    pub fn record(&mut self, ns: u64) {
        self.hist.saturating_record(ns.clamp(1, HIGHEST_NS));
    }

    /// Number of samples.
    #[cfg(test)]
    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    /// The recorded buckets, for sending to the parent.
    pub fn to_pairs(&self) -> Vec<(u64, u64)> {
        self.hist.iter_recorded().map(|v| (v.value_iterated_to(), v.count_since_last_iteration())).collect()
    }

    /// Adds buckets received from a worker.
    pub fn add_pairs(&mut self, pairs: &[(u64, u64)]) {
        for &(value, count) in pairs {
            let _ = self.hist.record_n(value.clamp(1, HIGHEST_NS), count);
        }
    }

    /// Percentiles in microseconds, `None` when nothing was recorded.
    pub fn percentiles(&self) -> Option<Percentiles> {
        if self.hist.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Some(Percentiles {
            p50: us(self.hist.value_at_quantile(0.5)),
            p90: us(self.hist.value_at_quantile(0.9)),
            p99: us(self.hist.value_at_quantile(0.99)),
            p999: us(self.hist.value_at_quantile(0.999)),
            max: us(self.hist.max()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_merge_back_into_the_same_percentiles() {
        let mut a = Latency::new();
        for i in 1..=10_000u64 {
            a.record(i * 1_000);
        }
        let mut merged = Latency::new();
        merged.add_pairs(&a.to_pairs());
        assert_eq!(merged.len(), 10_000);
        assert_eq!(merged.percentiles(), a.percentiles());
        let p = merged.percentiles().unwrap();
        assert!(p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.p999 && p.p999 <= p.max);
        assert!((4_990.0..=5_010.0).contains(&p.p50), "p50 {}", p.p50);
    }

    #[test]
    fn empty_histogram_has_no_percentiles() {
        assert!(Latency::new().percentiles().is_none());
    }
}
