//! The retry policy of the spec §3 step 5, as a pure component (no clock, no sleeping) so it can
//! be tested exhaustively and shared by every caller.
//!
//! * up to `max_retries` retries after the first attempt, waiting 1 s, 2 s, 4 s, … between them;
//! * failures that provably did not reach OtomaX are retried; ambiguous ones (OtomaX may have
//!   acted on them) only with `retry_ambiguous` (`OTOMAX_RETRY_AMBIGUOUS`), because sending a
//!   purchase again may insert it twice; final ones never (see [`crate::FailureClass`]);
//! * each attempt's timeout is the smaller of the configured timeout and the time left before
//!   `_exp`; with no time left nothing is sent;
//! * a retry whose wait would end at or after `_exp` is not scheduled.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::FailureClass;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub first_backoff: Duration,
    pub attempt_timeout: Duration,
    /// Also retry attempts OtomaX may have acted on (timeouts, lost answers, HTTP 500/504).
    pub retry_ambiguous: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            first_backoff: Duration::from_secs(1),
            attempt_timeout: Duration::from_secs(30),
            retry_ambiguous: false,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// The failure is final (not retriable under this policy, or no retries left).
    GiveUp,
    /// A retry would start at or after `_exp`: the message is expired.
    Expired,
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based): 1 s, 2 s, 4 s, …
    pub fn backoff(&self, retry: u32) -> Duration {
        self.first_backoff
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
    }

    /// Timeout for an attempt starting `now`, or `None` when `_exp` has passed (do not send).
    pub fn attempt_timeout(
        &self,
        now: DateTime<Utc>,
        deadline: Option<DateTime<Utc>>,
    ) -> Option<Duration> {
        match deadline {
            None => Some(self.attempt_timeout),
            Some(deadline) => {
                let left = (deadline - now).to_std().ok().filter(|d| !d.is_zero())?;
                Some(left.min(self.attempt_timeout))
            }
        }
    }

    /// Decision after attempt number `attempt` (0 = the first) failed at `now`.
    pub fn after_failure(
        &self,
        attempt: u32,
        class: FailureClass,
        now: DateTime<Utc>,
        deadline: Option<DateTime<Utc>>,
    ) -> RetryDecision {
        let retriable = match class {
            FailureClass::NotSent => true,
            FailureClass::Ambiguous => self.retry_ambiguous,
            FailureClass::Final => false,
        };
        if !retriable || attempt >= self.max_retries {
            return RetryDecision::GiveUp;
        }
        let wait = self.backoff(attempt + 1);
        if let Some(deadline) = deadline {
            let resume = now + chrono::Duration::from_std(wait).unwrap_or(chrono::TimeDelta::MAX);
            if resume >= deadline {
                return RetryDecision::Expired;
            }
        }
        RetryDecision::RetryAfter(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use FailureClass::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }
    fn secs(s: i64) -> chrono::Duration {
        chrono::Duration::seconds(s)
    }

    #[test]
    fn backoff_doubles_from_one_second() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_secs(1));
        assert_eq!(p.backoff(2), Duration::from_secs(2));
        assert_eq!(p.backoff(3), Duration::from_secs(4));
    }

    #[test]
    fn three_retries_then_give_up() {
        let p = RetryPolicy::default();
        let far = Some(t0() + secs(3600));
        assert_eq!(
            p.after_failure(0, NotSent, t0(), far),
            RetryDecision::RetryAfter(Duration::from_secs(1))
        );
        assert_eq!(
            p.after_failure(1, NotSent, t0(), far),
            RetryDecision::RetryAfter(Duration::from_secs(2))
        );
        assert_eq!(
            p.after_failure(2, NotSent, t0(), far),
            RetryDecision::RetryAfter(Duration::from_secs(4))
        );
        assert_eq!(
            p.after_failure(3, NotSent, t0(), far),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn final_errors_are_not_retried() {
        let p = RetryPolicy::default();
        assert_eq!(p.after_failure(0, Final, t0(), None), RetryDecision::GiveUp);
    }

    #[test]
    fn ambiguous_failures_are_retried_only_when_allowed() {
        let far = Some(t0() + secs(3600));
        let p = RetryPolicy::default();
        assert_eq!(
            p.after_failure(0, Ambiguous, t0(), far),
            RetryDecision::GiveUp,
            "a purchase OtomaX may have must not be sent again by default"
        );
        let p = RetryPolicy {
            retry_ambiguous: true,
            ..Default::default()
        };
        assert_eq!(
            p.after_failure(0, Ambiguous, t0(), far),
            RetryDecision::RetryAfter(Duration::from_secs(1))
        );
        assert_eq!(p.after_failure(0, Final, t0(), far), RetryDecision::GiveUp);
    }

    #[test]
    fn zero_retries_configured() {
        let p = RetryPolicy {
            max_retries: 0,
            ..Default::default()
        };
        assert_eq!(
            p.after_failure(0, NotSent, t0(), None),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn attempt_timeout_is_bounded_by_exp() {
        let p = RetryPolicy::default();
        assert_eq!(p.attempt_timeout(t0(), None), Some(Duration::from_secs(30)));
        assert_eq!(
            p.attempt_timeout(t0(), Some(t0() + secs(5))),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            p.attempt_timeout(t0(), Some(t0() + secs(60))),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            p.attempt_timeout(t0(), Some(t0())),
            None,
            "no time left: never send"
        );
        assert_eq!(p.attempt_timeout(t0(), Some(t0() - secs(1))), None);
    }

    #[test]
    fn no_retry_scheduled_past_exp() {
        let p = RetryPolicy::default();
        // 1.5 s left: a 2 s wait would end after _exp.
        let deadline = Some(t0() + chrono::Duration::milliseconds(1500));
        assert_eq!(
            p.after_failure(1, NotSent, t0(), deadline),
            RetryDecision::Expired
        );
        assert_eq!(
            p.after_failure(0, NotSent, t0(), deadline),
            RetryDecision::RetryAfter(Duration::from_secs(1))
        );
        // exactly at the deadline counts as too late.
        assert_eq!(
            p.after_failure(0, NotSent, t0(), Some(t0() + secs(1))),
            RetryDecision::Expired
        );
    }
}
