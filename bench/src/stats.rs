//! Percentiles of latency samples.

use std::time::Duration;

use crate::error::{BenchError, Result};

/// Latency summary of one sample set, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median (nearest rank).
    pub p50: f64,
    /// 95th percentile (nearest rank).
    pub p95: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
}

/// The `p`-th percentile (0 < p ≤ 100) of `sorted` by the nearest-rank method.
pub fn percentile(sorted: &[f64], p: f64) -> Result<f64> {
    if sorted.is_empty() {
        return Err(BenchError::NoSamples);
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Ok(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Summarises samples given in milliseconds.
pub fn summarize_ms(samples: &[f64]) -> Result<Summary> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    Ok(Summary {
        n: sorted.len(),
        p50: percentile(&sorted, 50.0)?,
        p95: percentile(&sorted, 95.0)?,
        p99: percentile(&sorted, 99.0)?,
        max: *sorted.last().ok_or(BenchError::NoSamples)?,
    })
}

/// Summarises durations.
pub fn summarize(samples: &[Duration]) -> Result<Summary> {
    summarize_ms(&samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_of_one_to_hundred() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0).unwrap(), 50.0);
        assert_eq!(percentile(&v, 95.0).unwrap(), 95.0);
        assert_eq!(percentile(&v, 99.0).unwrap(), 99.0);
        assert_eq!(percentile(&v, 100.0).unwrap(), 100.0);
    }

    #[test]
    fn nearest_rank_rounds_up_on_small_samples() {
        let v = [10.0, 20.0, 30.0];
        assert_eq!(percentile(&v, 50.0).unwrap(), 20.0);
        assert_eq!(percentile(&v, 95.0).unwrap(), 30.0);
        assert_eq!(percentile(&v, 1.0).unwrap(), 10.0);
    }

    #[test]
    fn summary_sorts_its_input() {
        let s = summarize_ms(&[5.0, 1.0, 4.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.n, s.p50, s.p95, s.max), (5, 3.0, 5.0, 5.0));
        let d = summarize(&[Duration::from_millis(7), Duration::from_millis(3)]).unwrap();
        assert_eq!((d.p50, d.max), (3.0, 7.0));
    }

    #[test]
    fn empty_sample_is_an_error() {
        assert!(matches!(percentile(&[], 50.0), Err(BenchError::NoSamples)));
        assert!(matches!(summarize_ms(&[]), Err(BenchError::NoSamples)));
    }
}
