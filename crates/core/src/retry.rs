//! The one retry policy: exponential backoff, capped, with full jitter.
//!
//! The n-th retry waits a random time in `[0, min(max_delay, base_delay * 2^n)]` ("full jitter"), which
//! spreads retries of many workers hitting one throttled sink. A wait the service asked for
//! (`Retry-After`, a throttling hint) is a floor. `max_attempts = None` retries for as long as it takes:
//! every attempt is logged and counted, so a sink that is down is visible, and backpressure stops
//! fetching meanwhile.

use std::time::Duration;

use rand::Rng;

/// Backoff settings; see the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first retry's upper bound.
    pub base_delay: Duration,
    /// The cap of every wait.
    pub max_delay: Duration,
    /// Total attempts (the first try included) before giving up; `None` for no limit.
    pub max_attempts: Option<u32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
            max_attempts: None,
        }
    }
}

impl RetryPolicy {
    /// Short waits for tests: 1 ms base, 20 ms cap, unlimited attempts.
    pub fn for_test() -> Self {
        Self {
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(20),
            max_attempts: None,
        }
    }

    /// The upper bound of the wait before retry number `retry` (0 for the first retry).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The wait before retry number `retry`, with full jitter, at least `hint` when the service gave one.
    pub fn delay(&self, retry: u32, hint: Option<Duration>) -> Duration {
        let ceiling = self.ceiling(retry);
        let jittered = if ceiling.is_zero() {
            Duration::ZERO
        } else {
            let nanos =
                rand::rng().random_range(0..=ceiling.as_nanos().min(u64::MAX as u128) as u64);
            Duration::from_nanos(nanos)
        };
        match hint {
            Some(h) => jittered.max(h),
            None => jittered,
        }
    }

    /// Whether another attempt is allowed after `attempts` attempts were made.
    pub fn allows(&self, attempts: u32) -> bool {
        self.max_attempts.is_none_or(|max| attempts < max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_and_caps() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_attempts: Some(5),
        };
        assert_eq!(p.ceiling(0), Duration::from_millis(100));
        assert_eq!(p.ceiling(1), Duration::from_millis(200));
        assert_eq!(p.ceiling(3), Duration::from_millis(800));
        assert_eq!(p.ceiling(4), Duration::from_secs(1));
        assert_eq!(p.ceiling(200), Duration::from_secs(1));
    }

    #[test]
    fn delay_is_jittered_within_the_ceiling_and_honours_hints() {
        let p = RetryPolicy::default();
        for retry in 0..40 {
            let d = p.delay(retry, None);
            assert!(d <= p.ceiling(retry));
        }
        let d = p.delay(0, Some(Duration::from_secs(2)));
        assert!(d >= Duration::from_secs(2));
        // A spread, not a constant: 50 draws of the 10th retry are not all equal.
        let draws: std::collections::HashSet<_> = (0..50).map(|_| p.delay(10, None)).collect();
        assert!(draws.len() > 1);
    }

    #[test]
    fn attempts_are_limited_only_when_configured() {
        let limited = RetryPolicy {
            max_attempts: Some(3),
            ..RetryPolicy::default()
        };
        assert!(limited.allows(2));
        assert!(!limited.allows(3));
        assert!(RetryPolicy::default().allows(u32::MAX - 1));
    }
}
