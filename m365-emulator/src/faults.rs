//! Seeded, reproducible fault injection for Graph requests: 503/504 (503 sometimes with
//! `Retry-After`), a connection reset in the middle of the body, a truncated body and slow answers.
//!
//! Whether a request meets a fault depends only on the seed, the request (method, path and query)
//! and how many times that same request was seen before. So a client that asks for the same things
//! meets the same faults on the same requests, whatever its concurrency or ordering.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use crate::FaultConfig;

/// What to do to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Answer 503 Service Unavailable, with `Retry-After: secs` when given.
    ServiceUnavailable {
        /// `Retry-After` seconds.
        retry_after: Option<u64>,
    },
    /// Answer 504 Gateway Timeout.
    GatewayTimeout,
    /// Send part of the body, then reset the connection.
    Reset,
    /// Announce the full `Content-Length`, send part of the body, then close.
    Truncate,
}

/// The decision for one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FaultPlan {
    /// The fault, if any.
    pub(crate) fault: Option<Fault>,
    /// Extra delay before the answer.
    pub(crate) delay: Duration,
}

/// Rates plus the per-request occurrence counters.
#[derive(Debug)]
pub(crate) struct FaultInjector {
    seed: u64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    config: FaultConfig,
    /// Occurrences per request key (only counted while some rate is non-zero).
    seen: HashMap<u64, u32>,
}

fn clamp(rate: f64) -> f64 {
    if rate.is_nan() {
        0.0
    } else {
        rate.clamp(0.0, 1.0)
    }
}

/// SplitMix64 finaliser: a well-mixed 64-bit value from any input.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a: stable across runs and platforms (std's hasher is randomly keyed).
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn unit(value: u64) -> f64 {
    // 53 random bits into [0, 1).
    #[allow(clippy::cast_precision_loss)]
    let unit = (value >> 11) as f64 / (1u64 << 53) as f64;
    unit
}

impl FaultInjector {
    /// An injector seeded with the tenant seed.
    pub(crate) fn new(seed: u64, config: FaultConfig) -> Self {
        let injector = Self {
            seed,
            inner: Mutex::new(Inner::default()),
        };
        injector.set(config);
        injector
    }

    /// Replaces the rates (clamped to 0..=1). Occurrence counters restart so that the same
    /// requests meet the same faults after each change.
    pub(crate) fn set(&self, config: FaultConfig) {
        let clamped = FaultConfig {
            status_503: clamp(config.status_503),
            status_504: clamp(config.status_504),
            reset: clamp(config.reset),
            truncate: clamp(config.truncate),
            slow_ms: config.slow_ms,
        };
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.config = clamped;
        inner.seen.clear();
    }

    /// The current rates.
    pub(crate) fn config(&self) -> FaultConfig {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .config
    }

    /// Decides the fate of one request, identified by its method and path with query.
    pub(crate) fn plan(&self, method: &str, path_and_query: &str) -> FaultPlan {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let config = inner.config;
        let delay = Duration::from_millis(config.slow_ms);
        let total = config.status_503 + config.status_504 + config.reset + config.truncate;
        if total <= 0.0 {
            return FaultPlan { fault: None, delay };
        }
        let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
        method.hash(&mut hasher);
        path_and_query.hash(&mut hasher);
        let key = hasher.finish();
        let occurrence = {
            let seen = inner.seen.entry(key).or_insert(0);
            *seen = seen.saturating_add(1);
            *seen
        };
        drop(inner);
        let draw = mix(self.seed ^ mix(key ^ mix(u64::from(occurrence))));
        let roll = unit(draw);
        let mut edge = config.status_503;
        let fault = if roll < edge {
            // Half of the 503s tell the client when to come back.
            let retry_after = mix(draw).is_multiple_of(2).then_some(1 + mix(draw ^ 1) % 3);
            Some(Fault::ServiceUnavailable { retry_after })
        } else if roll < {
            edge += config.status_504;
            edge
        } {
            Some(Fault::GatewayTimeout)
        } else if roll < {
            edge += config.reset;
            edge
        } {
            Some(Fault::Reset)
        } else if roll < {
            edge += config.truncate;
            edge
        } {
            Some(Fault::Truncate)
        } else {
            None
        };
        FaultPlan { fault, delay }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plans(injector: &FaultInjector, n: usize) -> Vec<Option<Fault>> {
        (0..n)
            .map(|i| {
                injector
                    .plan("GET", &format!("/v1.0/users/a/messages/{}/$value", i % 7))
                    .fault
            })
            .collect()
    }

    #[test]
    fn same_seed_same_faults_and_rates_roughly_hold() {
        let config = FaultConfig {
            status_503: 0.1,
            status_504: 0.05,
            reset: 0.05,
            truncate: 0.05,
            slow_ms: 0,
        };
        let a = plans(&FaultInjector::new(7, config), 4000);
        let b = plans(&FaultInjector::new(7, config), 4000);
        let c = plans(&FaultInjector::new(8, config), 4000);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let count = |f: fn(&Fault) -> bool| a.iter().flatten().filter(|x| f(x)).count();
        let s503 = count(|f| matches!(f, Fault::ServiceUnavailable { .. }));
        let resets = count(|f| matches!(f, Fault::Reset));
        assert!((300..500).contains(&s503), "503s: {s503}");
        assert!((120..280).contains(&resets), "resets: {resets}");
    }

    #[test]
    fn zero_rates_never_fault_and_setting_restarts_the_sequence() {
        let injector = FaultInjector::new(1, FaultConfig::default());
        assert!(plans(&injector, 100).iter().all(Option::is_none));
        let config = FaultConfig {
            status_503: 0.5,
            ..FaultConfig::default()
        };
        injector.set(config);
        let first = plans(&injector, 50);
        injector.set(config);
        assert_eq!(first, plans(&injector, 50));
        assert!(first.iter().any(Option::is_some));
    }
}
