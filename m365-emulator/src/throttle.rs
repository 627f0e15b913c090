//! Outlook's limits per app and mailbox, as Microsoft documents them: at most 4 requests in flight
//! (a 5th gets 429 `ApplicationThrottled`, "MailboxConcurrency") and at most 10,000 requests in
//! any 10 minutes (429 with `Retry-After` = seconds until enough of the window has passed).
//!
//! The 10-minute window is a sliding window of 600 buckets; `time_scale` divides the window (and so
//! every `Retry-After`), letting benchmarks exercise the limits in seconds. A slot taken by an
//! admitted request is released when its response body has been sent or dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Requests served at once per app and mailbox.
pub(crate) const MAX_CONCURRENT: u32 = 4;
/// Requests per window per app and mailbox.
pub(crate) const MAX_REQUESTS_PER_WINDOW: u32 = 10_000;
/// The window, unscaled.
const WINDOW: Duration = Duration::from_secs(600);
/// Buckets of the sliding window.
const BUCKETS: u64 = 600;
/// `Retry-After` of a concurrency refusal, unscaled seconds.
const CONCURRENCY_RETRY_SECS: f64 = 1.0;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Already [`MAX_CONCURRENT`] requests in flight.
    Concurrency {
        /// `Retry-After` seconds.
        retry_after: u64,
    },
    /// [`MAX_REQUESTS_PER_WINDOW`] requests in the window.
    Rate {
        /// `Retry-After` seconds.
        retry_after: u64,
    },
}

impl Refusal {
    /// `Retry-After` seconds.
    pub(crate) fn retry_after(self) -> u64 {
        match self {
            Refusal::Concurrency { retry_after } | Refusal::Rate { retry_after } => retry_after,
        }
    }

    /// The message Outlook sends.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Refusal::Concurrency { .. } => "Application is over its MailboxConcurrency limit.",
            Refusal::Rate { .. } => "Application is over its MailboxRequestRate limit.",
        }
    }
}

#[derive(Debug, Default)]
struct MailboxWindow {
    in_flight: u32,
    /// (bucket index, requests) of non-empty buckets, oldest first.
    buckets: VecDeque<(u64, u32)>,
    total: u32,
}

type Key = (String, String);

#[derive(Debug)]
struct Shared {
    enabled: bool,
    /// Length of one bucket (window / BUCKETS / time_scale).
    bucket: Duration,
    origin: Instant,
    scale: f64,
    windows: Mutex<HashMap<Key, MailboxWindow>>,
}

/// The limiter.
#[derive(Debug, Clone)]
pub(crate) struct Throttle {
    shared: Arc<Shared>,
}

/// A slot held by an admitted request; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Slot {
    shared: Arc<Shared>,
    key: Key,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut windows = self
            .shared
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(window) = windows.get_mut(&self.key) {
            window.in_flight = window.in_flight.saturating_sub(1);
        }
    }
}

/// An admitted request: its slot and how many were in flight with it.
#[derive(Debug)]
pub(crate) struct Admission {
    /// Hold until the response body is done.
    pub(crate) slot: Slot,
    /// Requests of this app on this mailbox in flight, this one included.
    pub(crate) concurrency: u32,
}

impl Throttle {
    /// A limiter; `enabled: false` admits everything (still counting concurrency).
    pub(crate) fn new(enabled: bool, time_scale: f64) -> Self {
        let scale = if time_scale > 0.0 && time_scale.is_finite() {
            time_scale
        } else {
            1.0
        };
        #[allow(clippy::cast_precision_loss)]
        let bucket = WINDOW
            .div_f64(BUCKETS as f64 * scale)
            .max(Duration::from_micros(1));
        Throttle {
            shared: Arc::new(Shared {
                enabled,
                bucket,
                origin: Instant::now(),
                scale,
                windows: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Tries to admit a request of `app` on `mailbox` (UPN) now.
    pub(crate) fn admit(&self, app: &str, mailbox: &str) -> Result<Admission, Refusal> {
        self.admit_at(app, mailbox, Instant::now())
    }

    /// Whole seconds (at least 1) for a wait of `real` seconds of wall-clock time.
    fn retry_secs(real: f64) -> u64 {
        // Tolerate float noise: 10.000000001 s is 10 s, not 11.
        let secs = (real - 1e-6).ceil().max(1.0);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let secs = secs as u64;
        secs
    }

    /// [`Throttle::admit`] at a given instant (tests drive the clock).
    pub(crate) fn admit_at(
        &self,
        app: &str,
        mailbox: &str,
        now: Instant,
    ) -> Result<Admission, Refusal> {
        let shared = &self.shared;
        let key = (app.to_owned(), mailbox.to_ascii_lowercase());
        let bucket_nanos = shared.bucket.as_nanos().max(1);
        let index =
            u64::try_from(now.saturating_duration_since(shared.origin).as_nanos() / bucket_nanos)
                .unwrap_or(u64::MAX);
        let mut windows = shared
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let window = windows.entry(key.clone()).or_default();
        while let Some(&(oldest, count)) = window.buckets.front() {
            if oldest + BUCKETS <= index {
                window.buckets.pop_front();
                window.total = window.total.saturating_sub(count);
            } else {
                break;
            }
        }
        if shared.enabled {
            if window.in_flight >= MAX_CONCURRENT {
                return Err(Refusal::Concurrency {
                    retry_after: Self::retry_secs(CONCURRENCY_RETRY_SECS / shared.scale),
                });
            }
            if window.total >= MAX_REQUESTS_PER_WINDOW {
                // Free again once the requests of the oldest buckets leave the window.
                let mut freed = 0u32;
                let mut until = index + 1;
                for &(bucket, count) in &window.buckets {
                    freed += count;
                    until = bucket + BUCKETS;
                    if window.total - freed < MAX_REQUESTS_PER_WINDOW {
                        break;
                    }
                }
                let wait = shared
                    .bucket
                    .saturating_mul(u32::try_from(until - index).unwrap_or(u32::MAX));
                let retry_after = Self::retry_secs(wait.as_secs_f64());
                return Err(Refusal::Rate { retry_after });
            }
        }
        window.in_flight += 1;
        match window.buckets.back_mut() {
            Some((bucket, count)) if *bucket == index => *count += 1,
            _ => window.buckets.push_back((index, 1)),
        }
        window.total += 1;
        let concurrency = window.in_flight;
        Ok(Admission {
            slot: Slot {
                shared: Arc::clone(&self.shared),
                key,
            },
            concurrency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifth_concurrent_request_is_refused_until_a_slot_frees() {
        let throttle = Throttle::new(true, 1.0);
        let held: Vec<_> = (0..4)
            .map(|_| throttle.admit("app", "a@x").unwrap())
            .collect();
        assert_eq!(held[3].concurrency, 4);
        let refusal = throttle.admit("app", "A@X").unwrap_err();
        assert!(matches!(refusal, Refusal::Concurrency { retry_after: 1 }));
        // Another mailbox and another app are not affected.
        assert!(throttle.admit("app", "b@x").is_ok());
        assert!(throttle.admit("other-app", "a@x").is_ok());
        drop(held);
        assert_eq!(throttle.admit("app", "a@x").unwrap().concurrency, 1);
    }

    #[test]
    fn rate_limit_retry_after_counts_down_to_the_oldest_bucket() {
        let throttle = Throttle::new(true, 1.0);
        let start = Instant::now();
        for _ in 0..MAX_REQUESTS_PER_WINDOW / 2 {
            throttle.admit_at("app", "a@x", start).unwrap();
        }
        let later = start + Duration::from_secs(100);
        for _ in 0..MAX_REQUESTS_PER_WINDOW / 2 {
            throttle.admit_at("app", "a@x", later).unwrap();
        }
        let refusal = throttle.admit_at("app", "a@x", later).unwrap_err();
        // The first half leaves the window 600 s after `start`: 500 s after `later`.
        assert_eq!(refusal, Refusal::Rate { retry_after: 500 });
        // Once it has left, requests are admitted again.
        assert!(
            throttle
                .admit_at("app", "a@x", start + Duration::from_secs(601))
                .is_ok()
        );
    }

    #[test]
    fn time_scale_divides_the_window() {
        let throttle = Throttle::new(true, 60.0);
        let start = Instant::now();
        for _ in 0..MAX_REQUESTS_PER_WINDOW {
            throttle.admit_at("app", "a@x", start).unwrap();
        }
        let refusal = throttle.admit_at("app", "a@x", start).unwrap_err();
        assert_eq!(refusal, Refusal::Rate { retry_after: 10 });
        assert!(
            throttle
                .admit_at("app", "a@x", start + Duration::from_secs(11))
                .is_ok()
        );
    }

    #[test]
    fn disabled_throttle_admits_everything() {
        let throttle = Throttle::new(false, 1.0);
        let held: Vec<_> = (0..10)
            .map(|_| throttle.admit("app", "a@x").unwrap())
            .collect();
        assert_eq!(held[9].concurrency, 10);
    }
}
