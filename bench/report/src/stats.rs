//! Percentiles and ratios.
//!
//! Percentiles are nearest-rank: the p-th percentile of n values is the value of rank
//! ⌈p/100 · n⌉ (at least 1) in ascending order. It is always a measured trial, never an
//! interpolation between two, and with 20 trials p90 is the 18th fastest.

use crate::results::{ETCD3, TFS, Writes};

/// The nearest-rank `p`-th percentile (0 < p ≤ 100) of `values`; `None` when there are none.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    assert!(p > 0.0 && p <= 100.0, "percentile {p} is outside (0, 100]");
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (p / 100.0 * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

/// `a / b`, or `None` when either is missing or `b` is zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

/// The median of `v` (the mean of the middle two when their number is even); `None` when empty.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// The middle value as measured (the lower of the two middles of an even count), unlike [`median`]
/// which averages them: a point measured in rounds reports one of its rounds, latencies included.
pub fn median_round(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len().checked_sub(1)? / 2).copied()
}

/// The highest ops/s of `system` over all its concurrencies.
pub fn best_ops(writes: &Writes, system: &str) -> Option<f64> {
    writes.points.iter().filter(|p| p.system == system).map(|p| p.ops_per_s).max_by(f64::total_cmp)
}

/// tfs p99 ÷ etcd-3 p99 at each concurrency both were measured at, ascending.
pub fn p99_ratios(writes: &Writes) -> Vec<(u32, f64)> {
    p99_ratios_of(writes, TFS)
}

/// `system`'s p99 ÷ etcd-3 p99 at each concurrency both were measured at, ascending.
pub fn p99_ratios_of(writes: &Writes, system: &str) -> Vec<(u32, f64)> {
    writes
        .series(system)
        .into_iter()
        .filter_map(|t| {
            let e = writes.point(ETCD3, t.concurrency)?;
            Some((t.concurrency, ratio(Some(t.p99_ms), Some(e.p99_ms))?))
        })
        .collect()
}

/// The distribution of a set of trial times.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub p50: f64,
    pub p90: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Self> {
        Some(Spread {
            p50: percentile(values, 50.0)?,
            p90: percentile(values, 90.0)?,
            max: percentile(values, 100.0)?,
            n: values.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::fakes::point;

    #[test]
    fn nearest_rank_percentiles() {
        let v = [15.0, 20.0, 35.0, 40.0, 50.0];
        assert_eq!(percentile(&v, 5.0), Some(15.0));
        assert_eq!(percentile(&v, 30.0), Some(20.0));
        assert_eq!(percentile(&v, 40.0), Some(20.0));
        assert_eq!(percentile(&v, 50.0), Some(35.0));
        assert_eq!(percentile(&v, 100.0), Some(50.0));
        // Order of the input does not matter.
        assert_eq!(percentile(&[50.0, 15.0, 40.0, 35.0, 20.0], 50.0), Some(35.0));
    }

    #[test]
    fn percentiles_of_twenty_trials() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(10.0));
        assert_eq!(percentile(&v, 90.0), Some(18.0));
        assert_eq!(percentile(&v, 100.0), Some(20.0));
    }

    #[test]
    fn percentiles_of_one_and_of_none() {
        assert_eq!(percentile(&[0.4], 50.0), Some(0.4));
        assert_eq!(percentile(&[0.4], 90.0), Some(0.4));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[3.0, 1.0, 2.0]), Some(Spread { p50: 2.0, p90: 3.0, max: 3.0, n: 3 }));
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn a_percentile_above_100_is_a_bug() {
        percentile(&[1.0], 101.0);
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(Some(10.0), Some(4.0)), Some(2.5));
        assert_eq!(ratio(Some(10.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(ratio(Some(1.0), None), None);
    }

    #[test]
    fn best_ops_and_p99_ratios_use_only_shared_concurrencies() {
        let w = Writes {
            command: String::new(),
            request: String::new(),
            rounds: None,
            points: vec![
                point("tfs", 1, 100.0, 2.0),
                point("tfs", 8, 700.0, 4.0),
                point("tfs", 64, 500.0, 9.0),
                point("etcd-3", 1, 10.0, 4.0),
                point("etcd-3", 64, 60.0, 6.0),
                point("etcd-3", 256, 65.0, 30.0),
            ],
        };
        assert_eq!(best_ops(&w, "tfs"), Some(700.0));
        assert_eq!(best_ops(&w, "etcd-3"), Some(65.0));
        assert_eq!(best_ops(&w, "etcd-1"), None);
        assert_eq!(p99_ratios(&w), [(1, 0.5), (64, 1.5)]);
    }
}
