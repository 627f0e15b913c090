//! What every Graph client of the workspace shares: the retry policy (fault backoff
//! with jitter, a separate throttling budget, a cap on `Retry-After`) and the one
//! `Retry-After` parser (delay-seconds, fractional accepted, or an HTTP date).
//! Invariant: no wait computed here exceeds the policy's caps.

use std::time::{Duration, SystemTime};

use rand::Rng;

/// Limits and delays of a Graph client's retry loop.
///
/// Two budgets, because the causes differ: *faults* (5xx, resets, truncated bodies,
/// timeouts) back off exponentially with jitter and give up after a few attempts, while
/// *throttling* (429) is the service asking us to wait: we wait what `Retry-After` says
/// (capped) and allow many more rounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request when it fails with 5xx, I/O errors, truncated bodies or
    /// timeouts (the first attempt included).
    pub max_attempts: u32,
    /// How many 429 answers one request may receive before giving up.
    pub max_throttled: u32,
    /// First backoff delay; doubles with each fault.
    pub base_delay: Duration,
    /// Longest backoff delay.
    pub max_delay: Duration,
    /// Longest `Retry-After` honoured; longer values are cut to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// The mailbox client's limits: 8 attempts, 60 throttled answers, 200 ms doubling
    /// up to 30 s, `Retry-After` up to 5 minutes.
    fn default() -> Self {
        Self {
            max_attempts: 8,
            max_throttled: 60,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `retry` (1 for the first retry) after a fault:
    /// exponential, with "equal jitter" (half fixed, half random) so that many tasks hit
    /// by the same fault do not come back in lockstep, yet each waits a little.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(20);
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let half = ceiling / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        let extra = if jitter_ms == 0 {
            0
        } else {
            rand::thread_rng().gen_range(0..=jitter_ms)
        };
        (half + Duration::from_millis(extra)).min(ceiling)
    }

    /// The wait a `Retry-After` value asks for, capped at [`RetryPolicy::max_retry_after`].
    pub fn retry_after(&self, header: &str, now: SystemTime) -> Option<Duration> {
        parse_retry_after(header, now).map(|d| d.min(self.max_retry_after))
    }

    /// The capped wait the `Retry-After` header of `headers` asks for, if any.
    pub fn retry_after_header(&self, headers: &reqwest::header::HeaderMap) -> Option<Duration> {
        headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| self.retry_after(v, SystemTime::now()))
    }
}

/// Parses a `Retry-After` value: delay-seconds (`120`, fractional accepted) or an HTTP
/// date (`Wed, 21 Oct 2015 07:28:00 GMT`, a date in the past meaning "now").
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Duration::try_from_secs_f64(secs.min(1.0e9)).ok();
        }
        return None;
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(value: &str, now: SystemTime, expected: Option<Duration>) {
        assert_eq!(parse_retry_after(value, now), expected, "{value:?}");
    }

    #[test]
    fn retry_after_seconds() {
        let now = SystemTime::now();
        check("7", now, Some(Duration::from_secs(7)));
        check(" 0 ", now, Some(Duration::ZERO));
        check("0.25", now, Some(Duration::from_millis(250)));
        check("1.5", now, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn retry_after_http_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        check(
            "Wed, 21 Oct 2015 07:28:30 GMT",
            now,
            Some(Duration::from_secs(30)),
        );
        check("Wed, 21 Oct 2015 07:27:00 GMT", now, Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_garbage_is_ignored() {
        let now = SystemTime::now();
        for v in ["", "soon", "-3", "NaN", "inf", "12abc"] {
            check(v, now, None);
        }
    }

    #[test]
    fn retry_after_is_capped() {
        let policy = RetryPolicy {
            max_retry_after: Duration::from_secs(60),
            ..RetryPolicy::default()
        };
        let now = SystemTime::now();
        assert_eq!(
            policy.retry_after("86400", now),
            Some(Duration::from_secs(60))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(3600));
        assert_eq!(
            policy.retry_after(&date, now),
            Some(Duration::from_secs(60))
        );
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, "0.5".parse().unwrap());
        assert_eq!(
            policy.retry_after_header(&headers),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            policy.retry_after_header(&reqwest::header::HeaderMap::new()),
            None
        );
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            ..RetryPolicy::default()
        };
        for retry in 1..40 {
            let d = policy.backoff(retry);
            let ceiling = (Duration::from_millis(100) * 2u32.pow((retry - 1).min(20)))
                .min(Duration::from_secs(2));
            assert!(d >= ceiling / 2 && d <= ceiling, "retry {retry}: {d:?}");
        }
    }

    proptest! {
        #[test]
        fn retry_after_never_panics(v in ".*") {
            let _ = parse_retry_after(&v, SystemTime::now());
        }

        #[test]
        fn retry_after_round_trips_seconds(n in 0u64..10_000_000) {
            prop_assert_eq!(parse_retry_after(&n.to_string(), SystemTime::now()), Some(Duration::from_secs(n)));
        }

        #[test]
        fn capped_waits_never_exceed_the_cap(v in ".*", cap in 0u64..1000) {
            let policy = RetryPolicy { max_retry_after: Duration::from_secs(cap), ..RetryPolicy::default() };
            if let Some(wait) = policy.retry_after(&v, SystemTime::now()) {
                prop_assert!(wait <= Duration::from_secs(cap));
            }
        }
    }
}
