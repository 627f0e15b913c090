//! The upload budget of a mailbox, shared by every task of the process.
//!
//! Outlook limits what one app uploads into one mailbox (150 MB per 5 minutes) and answers
//! 429 beyond it. Every write with a body draws its size from the mailbox's
//! [`UploadBudget`] once the mailbox's gate admitted it, just before each attempt is sent,
//! and waits while the last window's uploads leave no room: the budget is a sliding window, so no window of that length ever holds more than
//! the limit, whether the service counts by window or as a token bucket refilled at
//! limit/window (a bucket that starts full would let twice the limit through in its first
//! window). Budgets live in a process-wide [`UploadBudgets`] registry keyed like the
//! mailbox gates ([`crate::throttle::gate_key`]), so every writer of the process shares one
//! per mailbox. A 429 the service answers anyway is still honoured through the gate.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

/// Bytes uploaded per window into one mailbox.
#[derive(Debug)]
pub struct UploadBudget {
    limit: u64,
    window: Duration,
    /// Draws inside the window, oldest first.
    draws: Mutex<VecDeque<(Instant, u64)>>,
    /// Every byte drawn so far.
    total: AtomicU64,
    /// Time spent waiting for room, in nanoseconds (summed over draws).
    waited_nanos: AtomicU64,
}

impl UploadBudget {
    /// A budget of `limit` bytes per `window` (a `limit` of 0 counts as 1).
    pub fn new(limit: u64, window: Duration) -> Self {
        Self {
            limit: limit.max(1),
            window,
            draws: Mutex::new(VecDeque::new()),
            total: AtomicU64::new(0),
            waited_nanos: AtomicU64::new(0),
        }
    }

    /// Bytes per window.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The window's length.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Waits until `bytes` more fit in the window, then counts them (from now on). A draw
    /// larger than the whole limit waits for an empty window and is counted as the limit.
    /// Answers the time waited.
    pub async fn draw(&self, bytes: u64) -> Duration {
        let bytes = bytes.min(self.limit);
        let started = Instant::now();
        loop {
            let wait_until = {
                let mut draws = lock(&self.draws);
                let now = Instant::now();
                self.expire(&mut draws, now);
                let used: u64 = draws.iter().map(|&(_, n)| n).sum();
                if used + bytes <= self.limit {
                    draws.push_back((now, bytes));
                    None
                } else {
                    // The first instant at which enough of the oldest draws have left.
                    let mut freed = 0u64;
                    let mut until = now;
                    for &(at, n) in draws.iter() {
                        freed += n;
                        until = at + self.window;
                        if used - freed + bytes <= self.limit {
                            break;
                        }
                    }
                    Some(until)
                }
            };
            match wait_until {
                None => break,
                Some(until) => tokio::time::sleep_until(until).await,
            }
        }
        let waited = started.elapsed();
        self.total.fetch_add(bytes, Ordering::Relaxed);
        self.waited_nanos.fetch_add(
            u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        waited
    }

    fn expire(&self, draws: &mut VecDeque<(Instant, u64)>, now: Instant) {
        while draws
            .front()
            .is_some_and(|&(at, _)| now.duration_since(at) >= self.window)
        {
            draws.pop_front();
        }
    }

    /// Bytes counted in the current window.
    pub fn used(&self) -> u64 {
        let mut draws = lock(&self.draws);
        self.expire(&mut draws, Instant::now());
        draws.iter().map(|&(_, n)| n).sum()
    }

    /// Every byte drawn since the budget was created.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Time draws spent waiting for room (summed over draws).
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.waited_nanos.load(Ordering::Relaxed))
    }
}

/// Process-wide map from mailbox key to its upload budget.
#[derive(Debug, Default)]
pub struct UploadBudgets {
    budgets: Mutex<HashMap<String, Arc<UploadBudget>>>,
}

impl UploadBudgets {
    /// A registry of its own (tests, or several apps in one process: the limit is per app
    /// and mailbox).
    pub fn new() -> Self {
        Self::default()
    }

    /// The registry shared by the whole process.
    pub fn global() -> Arc<UploadBudgets> {
        static GLOBAL: OnceLock<Arc<UploadBudgets>> = OnceLock::new();
        GLOBAL
            .get_or_init(|| Arc::new(UploadBudgets::new()))
            .clone()
    }

    /// The budget for `key`, created with `limit` bytes per `window` if it does not exist
    /// yet (an existing budget keeps its limits).
    pub fn budget(&self, key: &str, limit: u64, window: Duration) -> Arc<UploadBudget> {
        lock(&self.budgets)
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(UploadBudget::new(limit, window)))
            .clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn draws_within_the_limit_do_not_wait() {
        let budget = UploadBudget::new(100, Duration::from_secs(60));
        for _ in 0..4 {
            assert!(budget.draw(25).await < Duration::from_millis(50));
        }
        assert_eq!((budget.used(), budget.total()), (100, 100));
    }

    #[tokio::test]
    async fn no_window_ever_holds_more_than_the_limit() {
        let window = Duration::from_millis(300);
        let budget = Arc::new(UploadBudget::new(100, window));
        let log = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let (budget, log) = (budget.clone(), log.clone());
                tokio::spawn(async move {
                    for _ in 0..3 {
                        budget.draw(30).await;
                        lock(&log).push((Instant::now(), 30u64));
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let log = lock(&log).clone();
        assert_eq!(log.len(), 18);
        // 540 bytes at 100 per 300 ms: at least five full windows.
        assert!(start.elapsed() >= window * 5, "{:?}", start.elapsed());
        for &(at, _) in &log {
            let inside: u64 = log
                .iter()
                .filter(|&&(t, _)| t >= at && t.duration_since(at) < window)
                .map(|&(_, n)| n)
                .sum();
            assert!(inside <= 100, "{inside} bytes in one window");
        }
        assert_eq!(budget.total(), 540);
        assert!(budget.waited() > Duration::ZERO);
    }

    #[tokio::test]
    async fn a_draw_over_the_limit_waits_for_an_empty_window() {
        let window = Duration::from_millis(200);
        let budget = UploadBudget::new(100, window);
        budget.draw(10).await;
        let waited = budget.draw(1_000).await;
        assert!(waited >= window - Duration::from_millis(20), "{waited:?}");
        assert_eq!(budget.used(), 100);
    }

    #[test]
    fn registry_shares_budgets_per_key() {
        let registry = UploadBudgets::new();
        let window = Duration::from_secs(300);
        let a = registry.budget("g|a@x", 10, window);
        let b = registry.budget("g|a@x", 99, window);
        let c = registry.budget("g|b@x", 10, window);
        assert!(Arc::ptr_eq(&a, &b) && !Arc::ptr_eq(&a, &c));
        assert_eq!(b.limit(), 10);
        assert!(Arc::ptr_eq(
            &UploadBudgets::global(),
            &UploadBudgets::global()
        ));
    }
}
