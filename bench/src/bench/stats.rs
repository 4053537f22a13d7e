//! Order statistics of a sample: nearest-rank percentiles, no interpolation, so every figure
//! the bench prints is one that was measured.

/// The `p`-th percentile (0 < p ≤ 100) by nearest rank: the smallest value at least `p`% of
/// the sample is at or below. `NaN` for an empty sample.
pub fn percentile(sample: &[f64], p: f64) -> f64 {
    if sample.is_empty() {
        return f64::NAN;
    }
    let mut sorted = sample.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The lower median for an even count: a value from the sample, as for any percentile.
pub fn median(sample: &[f64]) -> f64 {
    percentile(sample, 50.0)
}

pub fn max(sample: &[f64]) -> f64 {
    sample.iter().copied().fold(f64::NAN, f64::max)
}

/// `a / b`, or `NaN` when there is nothing to divide by.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 || !a.is_finite() || !b.is_finite() {
        f64::NAN
    } else {
        a / b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let sample: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&sample, 50.0), 100.0);
        assert_eq!(percentile(&sample, 99.0), 198.0);
        assert_eq!(percentile(&sample, 100.0), 200.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.0);
        assert_eq!(max(&[1.0, 5.0, 2.0]), 5.0);
        assert!(median(&[]).is_nan());
        assert!(ratio(1.0, 0.0).is_nan());
        assert_eq!(ratio(1.0, 4.0), 0.25);
    }
}
