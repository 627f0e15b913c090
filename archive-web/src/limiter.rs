//! Sign-in rate limiting: failed attempts are counted per user name and per client
//! address in a sliding window; past the limit, attempts are refused without the
//! password being checked, until the window has moved on.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

/// Limits of failed sign-ins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimiterConfig {
    /// The window failures are counted in.
    pub window: Duration,
    /// Failures per user name within the window before that name is refused.
    pub per_user: usize,
    /// Failures per client address within the window before that address is refused.
    pub per_address: usize,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        Self {
            window: Duration::minutes(15),
            per_user: 5,
            per_address: 20,
        }
    }
}

/// Most keys tracked at once (older failures are forgotten first when full).
const MAX_KEYS: usize = 100_000;

/// Failed sign-ins by key.
#[derive(Debug, Default)]
pub struct SignInLimiter {
    config: LimiterConfig,
    failures: Mutex<HashMap<String, Vec<DateTime<Utc>>>>,
}

impl SignInLimiter {
    /// A limiter with `config`.
    pub fn new(config: LimiterConfig) -> Self {
        Self {
            config,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn keys(user: &str, address: Option<IpAddr>) -> (String, Option<String>) {
        (
            format!("user:{}", user.trim().to_lowercase()),
            address.map(|a| format!("addr:{a}")),
        )
    }

    /// `Err(seconds)` when `user` or `address` has failed too often lately.
    pub fn check(
        &self,
        user: &str,
        address: Option<IpAddr>,
        now: DateTime<Utc>,
    ) -> Result<(), u64> {
        let (user_key, address_key) = Self::keys(user, address);
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let mut retry = 0i64;
        let mut over = |key: &str, limit: usize| {
            if let Some(times) = failures.get_mut(key) {
                times.retain(|t| now - *t < self.config.window);
                if times.len() >= limit
                    && let Some(oldest) = times.first()
                {
                    retry = retry.max((*oldest + self.config.window - now).num_seconds().max(1));
                }
            }
        };
        over(&user_key, self.config.per_user);
        if let Some(key) = &address_key {
            over(key, self.config.per_address);
        }
        if retry > 0 { Err(retry as u64) } else { Ok(()) }
    }

    /// Counts a failed sign-in of `user` from `address`.
    pub fn failed(&self, user: &str, address: Option<IpAddr>, now: DateTime<Utc>) {
        let (user_key, address_key) = Self::keys(user, address);
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_KEYS {
            failures.retain(|_, times| times.last().is_some_and(|t| now - *t < self.config.window));
        }
        for key in std::iter::once(user_key).chain(address_key) {
            failures.entry(key).or_default().push(now);
        }
    }

    /// Forgets `user`'s failures after a successful sign-in (the address keeps its count).
    pub fn succeeded(&self, user: &str) {
        let (user_key, _) = Self::keys(user, None);
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&user_key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default()
    }

    #[test]
    fn a_user_is_refused_after_five_failures_until_the_window_moves_on() {
        let limiter = SignInLimiter::new(LimiterConfig::default());
        let ip: Option<IpAddr> = "10.0.0.1".parse().ok();
        for i in 0..5 {
            assert_eq!(limiter.check("Alice", ip, at(i)), Ok(()));
            limiter.failed("alice", ip, at(i));
        }
        let retry = limiter.check("ALICE", "10.0.0.2".parse().ok(), at(10));
        assert_eq!(
            retry,
            Err(15 * 60 - 10),
            "the name is limited from any address"
        );
        assert_eq!(limiter.check("bob", ip, at(10)), Ok(()));
        assert_eq!(limiter.check("alice", ip, at(15 * 60 + 5)), Ok(()));
    }

    #[test]
    fn an_address_is_refused_after_twenty_failures_over_any_names() {
        let limiter = SignInLimiter::new(LimiterConfig::default());
        let ip: Option<IpAddr> = "10.0.0.9".parse().ok();
        for i in 0..20 {
            limiter.failed(&format!("user{i}"), ip, at(0));
        }
        assert!(limiter.check("someone", ip, at(1)).is_err());
        assert_eq!(limiter.check("someone", None, at(1)), Ok(()));
    }
}
