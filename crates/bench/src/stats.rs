//! Percentiles and summaries of latency samples (milliseconds).

use serde::{Deserialize, Serialize};

/// The nearest-rank percentile (`p` in 0..=100) of `samples`: the smallest
/// sample such that at least p% of the samples are <= it. With 50 samples,
/// p99 is the maximum, which is the honest reading of so few runs.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() || !(0.0..=100.0).contains(&p) {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    pub fn of(samples: &[f64]) -> Option<Summary> {
        let pct = |p| percentile(samples, p);
        Some(Summary {
            n: samples.len(),
            min: pct(0.0)?,
            p50: pct(50.0)?,
            p90: pct(90.0)?,
            p99: pct(99.0)?,
            max: pct(100.0)?,
            mean: samples.iter().sum::<f64>() / samples.len() as f64,
        })
    }
}

/// The empirical CDF as (value, fraction <= value) points, for plotting.
pub fn cdf(samples: &[f64]) -> Vec<(f64, f64)> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    sorted
        .into_iter()
        .enumerate()
        .map(|(i, v)| (v, (i + 1) as f64 / n))
        .collect()
}

/// `a / b`, or None when b is not a positive number (a peer that could not
/// run the scenario).
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), Some(5.0));
        assert_eq!(percentile(&samples, 90.0), Some(9.0));
        assert_eq!(percentile(&samples, 91.0), Some(10.0));
        assert_eq!(percentile(&samples, 0.0), Some(1.0));
        assert_eq!(percentile(&samples, 100.0), Some(10.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[1.0], 101.0), None);
    }

    #[test]
    fn p99_of_fifty_runs_is_the_maximum() {
        let samples: Vec<f64> = (1..=50).map(f64::from).collect();
        let s = Summary::of(&samples).unwrap();
        assert_eq!((s.p50, s.p90, s.p99, s.max), (25.0, 45.0, 50.0, 50.0));
        assert_eq!(s.mean, 25.5);
        assert_eq!(s.n, 50);
    }

    #[test]
    fn cdf_reaches_one_in_sorted_order() {
        let points = cdf(&[3.0, 1.0, 2.0, 4.0]);
        assert_eq!(
            points,
            vec![(1.0, 0.25), (2.0, 0.5), (3.0, 0.75), (4.0, 1.0)]
        );
    }

    #[test]
    fn ratio_needs_a_positive_denominator() {
        assert_eq!(ratio(1.0, 4.0), Some(0.25));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 2.0), None);
    }
}
