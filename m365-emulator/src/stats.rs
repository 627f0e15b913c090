//! Counters of what the emulator served: totals, per mailbox and per route. Tests and benchmarks
//! read them (through [`crate::Emulator::stats`] or `GET {admin_url}/stats`) to prove a client kept
//! to the limits and to count its requests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// A snapshot of the emulator's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmulatorStats {
    /// Graph requests received (a `$batch` counts once here; its inner requests count per mailbox
    /// and per route).
    pub requests_total: u64,
    /// Requests answered 429 (outer and `$batch` inner).
    pub throttled_total: u64,
    /// Injected faults (503, 504, reset, truncate; slow responses not counted).
    pub faults_total: u64,
    /// Response body bytes the Graph listener sent.
    pub bytes_served: u64,
    /// Calls of the token endpoint (successful or not).
    pub token_requests: u64,
    /// Per mailbox (UPN): Outlook requests, how many were throttled, the highest number served at once.
    pub per_mailbox: BTreeMap<String, MailboxStats>,
    /// Per route (`METHOD /v1.0/template`): requests.
    pub per_route: BTreeMap<String, u64>,
}

/// Counters of one mailbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxStats {
    /// Requests addressed to the mailbox (throttled ones included).
    pub requests: u64,
    /// Requests answered 429.
    pub throttled: u64,
    /// Highest number of requests of one app served concurrently.
    pub max_concurrency: u64,
}

/// The recorder every layer reports to.
#[derive(Debug, Default)]
pub(crate) struct StatsRecorder {
    inner: Mutex<EmulatorStats>,
}

impl StatsRecorder {
    fn with<R>(&self, f: impl FnOnce(&mut EmulatorStats) -> R) -> R {
        let mut guard = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    /// A copy of the counters.
    pub(crate) fn snapshot(&self) -> EmulatorStats {
        self.with(|s| s.clone())
    }

    /// One Graph request arrived on the listener.
    pub(crate) fn request(&self) {
        self.with(|s| s.requests_total += 1);
    }

    /// One request reached a route (outer or `$batch` inner).
    pub(crate) fn route(&self, route: &str) {
        self.with(|s| match s.per_route.get_mut(route) {
            Some(count) => *count += 1,
            None => {
                s.per_route.insert(route.to_owned(), 1);
            }
        });
    }

    /// Response body bytes sent.
    pub(crate) fn bytes(&self, n: u64) {
        self.with(|s| s.bytes_served += n);
    }

    /// A fault was injected.
    pub(crate) fn fault(&self) {
        self.with(|s| s.faults_total += 1);
    }

    /// The token endpoint was called.
    pub(crate) fn token_request(&self) {
        self.with(|s| s.token_requests += 1);
    }

    /// A request already admitted (and counted) on `mailbox` was answered 429 after all (the
    /// upload budget).
    pub(crate) fn throttled_after_admission(&self, mailbox: &str) {
        self.with(|s| {
            s.throttled_total += 1;
            if let Some(entry) = s.per_mailbox.get_mut(mailbox) {
                entry.throttled += 1;
            }
        });
    }

    /// A request was addressed to `mailbox`; `throttled` when it was answered 429;
    /// `concurrency` is the number in flight once it was admitted.
    pub(crate) fn mailbox_request(&self, mailbox: &str, throttled: bool, concurrency: u64) {
        self.with(|s| {
            if throttled {
                s.throttled_total += 1;
            }
            let entry = match s.per_mailbox.get_mut(mailbox) {
                Some(entry) => entry,
                None => s.per_mailbox.entry(mailbox.to_owned()).or_default(),
            };
            entry.requests += 1;
            if throttled {
                entry.throttled += 1;
            }
            entry.max_concurrency = entry.max_concurrency.max(concurrency);
        });
    }
}
