//! Time as the machines see it: a value handed in by the caller, never read from a clock.

use std::time::Duration;

/// A point in time: the duration since an epoch the caller chooses (e.g. the Unix epoch,
/// or the start of a test). The machines only compare and add times.
pub type Time = Duration;

/// Metal3's backoff after the `error_count`-th consecutive failure
/// (`calculateBackoff`): `2^n` minutes with `n = min(error_count, 9)`, reduced by
/// `jitter * 50%`, so the delay lies in `(2^(n-1), 2^n]` minutes.
///
/// `jitter` is a random number in `[0, 1)` chosen by the caller (the machine has no
/// randomness); values outside are clamped.
pub fn backoff(error_count: u32, jitter: f64) -> Duration {
    let n = error_count.min(MAX_BACKOFF_COUNT);
    let base_ms = (1u64 << n) * 60_000;
    let jitter = if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(0.0, 1.0)
    };
    // At most half of the base is taken off; rounding keeps the result in bounds.
    let reduction = ((base_ms as f64) * 0.5 * jitter) as u64;
    Duration::from_millis(base_ms - reduction.min(base_ms / 2))
}

/// The exponent cap of [`backoff`] (about 8.5 hours).
pub const MAX_BACKOFF_COUNT: u32 = 9;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_backoff_table() {
        let m = |n: u64| Duration::from_secs(60 * n);
        for (count, lo, hi) in [
            (1, m(1), m(2)),
            (2, m(2), m(4)),
            (3, m(4), m(8)),
            (5, m(16), m(32)),
            (9, m(256), m(512)),
            (20, m(256), m(512)),
        ] {
            assert_eq!(backoff(count, 0.0), hi, "{count}");
            assert_eq!(backoff(count, 1.0), lo, "{count}");
            assert!((lo..=hi).contains(&backoff(count, 0.37)));
        }
        assert_eq!(backoff(3, f64::NAN), m(8));
        assert_eq!(backoff(3, -4.0), m(8));
        assert_eq!(backoff(3, 7.0), m(4));
    }
}
