//! Quantiles of the bench's figures: nearest rank (the value at `round((n - 1) * p)` of the
//! sorted values), the one definition every report uses.

use std::time::Duration;

/// The `p` quantile (0 to 1) of `sorted`; `None` when there are no values.
pub fn of_sorted<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    let last = sorted.len().checked_sub(1)?;
    sorted.get(((last as f64 * p.clamp(0.0, 1.0)).round() as usize).min(last)).copied()
}

/// p50, p95 and p99 of `values` (zeros when there are none).
pub fn p50_95_99(mut values: Vec<f64>) -> [f64; 3] {
    values.sort_by(f64::total_cmp);
    [0.5, 0.95, 0.99].map(|p| of_sorted(&values, p).unwrap_or(0.0))
}

/// p50, p95 and p99 of `durations`, in milliseconds.
pub fn ms_p50_95_99(durations: impl IntoIterator<Item = Duration>) -> [f64; 3] {
    p50_95_99(durations.into_iter().map(ms).collect())
}

/// A duration in milliseconds.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_of_sorted_values() {
        assert_eq!(of_sorted::<u32>(&[], 0.5), None);
        assert_eq!(of_sorted(&[7], 0.99), Some(7));
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(of_sorted(&v, 0.5), Some(51), "round(99 * 0.5) = 50 -> the 51st");
        assert_eq!(of_sorted(&v, 0.95), Some(95));
        assert_eq!(of_sorted(&v, 0.99), Some(99));
        assert_eq!(of_sorted(&v, 1.0), Some(100));
        assert_eq!(p50_95_99(vec![3.0, 1.0, 2.0]), [2.0, 3.0, 3.0], "sorted first");
        assert_eq!(p50_95_99(Vec::new()), [0.0; 3]);
        assert_eq!(ms_p50_95_99([Duration::from_millis(5)]), [5.0; 3]);
    }
}
