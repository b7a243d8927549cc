//! When to try a failed delivery again.

use std::time::Duration;

/// Exponential back-off with a cap and jitter.
///
/// The default (30 s base, 10 attempts) waits 30 s, 90 s, 270 s, 13.5 min, 40.5 min,
/// ~2 h, then 6 h three times: the ten attempts span about 21 hours. That rides out a
/// receiver's deploy or short outage within minutes, still reaches one that is down
/// overnight, and gives up within a day, when the event behind the message has usually
/// gone stale. The cap keeps the late attempts from drifting days apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay after the first failure; later delays grow from it.
    pub base: Duration,
    /// Attempts in total, the first one included.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { base: Duration::from_secs(30), max_attempts: 10 }
    }
}

/// Growth stops at `base * 720` (6 h for a 30 s base), so a long outage is probed four
/// times a day rather than ever more rarely.
const CAP_FACTOR: f64 = 720.0;

/// ±20 %: enough to spread a burst of messages that failed together (one receiver down)
/// so they do not all retry in the same second, small enough to keep the schedule readable.
const JITTER_SPAN: f64 = 0.2;

impl RetryPolicy {
    /// Delay before attempt number `failed_attempts + 1`, after `failed_attempts` failed
    /// attempts (counted from 1; 0 is treated as 1): `base * 3^(failed_attempts - 1)`,
    /// capped at `base * 720`, then scaled by `0.8 + 0.4 * jitter`.
    ///
    /// `jitter` is a caller-supplied uniform number in `[0, 1)` rather than drawn here, so
    /// the schedule is deterministic under test; values outside the range are clamped and
    /// a NaN counts as 0.5 (no jitter).
    pub fn delay_after(&self, failed_attempts: u32, jitter: f64) -> Duration {
        let exponent = failed_attempts.saturating_sub(1).min(64);
        // 3^exponent as f64 is exact far beyond the cap, so the min() is exact too.
        let factor = 3f64.powi(i32::try_from(exponent).unwrap_or(64)).min(CAP_FACTOR);
        let jitter = if jitter.is_nan() { 0.5 } else { jitter.clamp(0.0, 1.0) };
        let scale = 1.0 - JITTER_SPAN + 2.0 * JITTER_SPAN * jitter;
        self.base.mul_f64(factor * scale)
    }

    /// True when no attempt follows `failed_attempts` failures, i.e. the message has used
    /// all `max_attempts` and the outbox should mark it failed for good.
    pub fn gives_up_after(&self, failed_attempts: u32) -> bool {
        failed_attempts >= self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(policy: &RetryPolicy, jitter: f64) -> Vec<Duration> {
        (1..).take_while(|&n| !policy.gives_up_after(n)).map(|n| policy.delay_after(n, jitter)).collect()
    }

    #[test]
    fn default_schedule_spans_about_a_day() {
        let policy = RetryPolicy::default();
        let delays = schedule(&policy, 0.5);
        // Ten attempts means nine waits between them.
        assert_eq!(delays.len(), 9);
        let secs: Vec<u64> = delays.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [30, 90, 270, 810, 2430, 7290, 21_600, 21_600, 21_600]);
        let total: Duration = delays.iter().sum();
        assert!(total > Duration::from_secs(18 * 3600), "{total:?}");
        assert!(total < Duration::from_secs(30 * 3600), "{total:?}");
    }

    #[test]
    fn the_cap_holds_for_late_and_huge_attempt_numbers() {
        let policy = RetryPolicy::default();
        let cap = Duration::from_secs(6 * 3600);
        assert_eq!(policy.delay_after(7, 0.5), cap);
        assert_eq!(policy.delay_after(50, 0.5), cap);
        assert_eq!(policy.delay_after(u32::MAX, 0.5), cap);
        assert_eq!(policy.delay_after(0, 0.5), policy.delay_after(1, 0.5));
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let policy = RetryPolicy::default();
        for attempt in 1..=12 {
            let nominal = policy.delay_after(attempt, 0.5).as_secs_f64();
            for jitter in [0.0, 0.1, 0.25, 0.5, 0.75, 0.999_999, 1.0, -3.0, 7.0, f64::NAN] {
                let d = policy.delay_after(attempt, jitter).as_secs_f64();
                assert!(d >= nominal * 0.8 - 1e-9, "attempt {attempt} jitter {jitter}: {d}");
                assert!(d <= nominal * 1.2 + 1e-9, "attempt {attempt} jitter {jitter}: {d}");
            }
        }
        // The extremes really use the whole span, so retries do spread out.
        assert!((policy.delay_after(1, 0.0).as_secs_f64() - 24.0).abs() < 1e-6);
        assert!((policy.delay_after(1, 1.0).as_secs_f64() - 36.0).abs() < 1e-6);
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let policy = RetryPolicy { base: Duration::from_secs(1), max_attempts: 3 };
        assert!(!policy.gives_up_after(1));
        assert!(!policy.gives_up_after(2));
        assert!(policy.gives_up_after(3));
        assert!(policy.gives_up_after(4));
    }
}
