//! Admission control per remote resource (for Graph mail: one mailbox), shared by every task
//! of the process.
//!
//! Each resource gets one [`ResourceGate`] in a process-wide [`GateRegistry`]: a
//! semaphore (requests in flight, held until the response body is fully read), a
//! sliding-window request budget, and a "closed until" instant set from `Retry-After`,
//! before which no request to that resource leaves the process. Every client of the
//! process keyed to the same resource shares one gate.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The limits a gate enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateLimits {
    /// Requests in flight at once.
    pub max_in_flight: usize,
    /// Requests per [`GateLimits::window`].
    pub budget: usize,
    /// Length of the sliding budget window.
    pub window: Duration,
}

impl Default for GateLimits {
    /// Exchange Online's per-mailbox allowance for one app (4 in flight, 10,000 requests
    /// per 10 minutes), the budget kept with a margin: the tightest Graph limit this
    /// workspace meets.
    fn default() -> Self {
        Self {
            max_in_flight: 4,
            budget: 9_000,
            window: Duration::from_secs(600),
        }
    }
}

/// Process-wide map from resource key to its gate.
#[derive(Debug, Default)]
pub struct GateRegistry {
    gates: Mutex<HashMap<String, Arc<ResourceGate>>>,
}

impl GateRegistry {
    /// A registry of its own (for isolation in tests, or several apps in one process:
    /// service limits are per app and resource).
    pub fn new() -> Self {
        Self::default()
    }

    /// The registry shared by the whole process.
    pub fn global() -> Arc<GateRegistry> {
        static GLOBAL: OnceLock<Arc<GateRegistry>> = OnceLock::new();
        GLOBAL.get_or_init(|| Arc::new(GateRegistry::new())).clone()
    }

    /// The gate for `key`, created with `limits` if it does not exist yet (an existing
    /// gate keeps the limits it was created with).
    pub fn gate(&self, key: &str, limits: &GateLimits) -> Arc<ResourceGate> {
        let mut gates = lock(&self.gates);
        gates
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(ResourceGate::new(limits.clone())))
            .clone()
    }
}

/// Admission control for one resource.
#[derive(Debug)]
pub struct ResourceGate {
    limits: GateLimits,
    permits: Arc<Semaphore>,
    state: Mutex<GateState>,
    /// Sum over admitted requests of the time each held its slot, in nanoseconds.
    busy_nanos: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
struct GateState {
    /// Send times of the requests inside the budget window, oldest first.
    sent: VecDeque<Instant>,
    /// No request may be sent before this instant (`Retry-After`).
    closed_until: Option<Instant>,
}

/// Permission to have one request in flight; release it (drop) once the response body
/// has been read completely or abandoned.
#[derive(Debug)]
pub struct Admission {
    _permit: OwnedSemaphorePermit,
    /// Time spent waiting for admission.
    pub waited: Duration,
    admitted: Instant,
    busy_nanos: Arc<AtomicU64>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let held = u64::try_from(self.admitted.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.busy_nanos.fetch_add(held, Ordering::Relaxed);
    }
}

impl ResourceGate {
    /// A gate with these limits.
    pub fn new(limits: GateLimits) -> Self {
        let permits = Arc::new(Semaphore::new(limits.max_in_flight.max(1)));
        Self {
            limits,
            permits,
            state: Mutex::new(GateState::default()),
            busy_nanos: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The limits of this gate.
    pub fn limits(&self) -> &GateLimits {
        &self.limits
    }

    /// Waits until a request may be sent: the resource is not closed by a `Retry-After`,
    /// a slot is free, and the budget window has room. The request counts against the
    /// budget from now on.
    pub async fn admit(&self) -> Admission {
        self.admit_many(1, 1).await
    }

    /// Like [`ResourceGate::admit`], for a request that occupies `slots` slots at once (a
    /// `$batch`, whose inner requests the service runs in parallel): waits for all of them
    /// together (never one by one, so two batches cannot each hold part) and counts
    /// `cost` requests (a batch's inner requests) against the budget. At most every slot
    /// of the gate and the whole budget.
    pub async fn admit_many(&self, slots: usize, cost: usize) -> Admission {
        let slots = slots.clamp(1, self.limits.max_in_flight.max(1));
        let cost = cost.clamp(1, self.limits.budget.max(1));
        let wanted = u32::try_from(slots).unwrap_or(1);
        let started = Instant::now();
        loop {
            // Wait out a Retry-After before queueing for a slot.
            if let Some(until) = self.closed_until() {
                tokio::time::sleep_until(until).await;
                continue;
            }
            let Ok(permit) = self.permits.clone().acquire_many_owned(wanted).await else {
                // The semaphore is never closed; stay correct regardless.
                tokio::task::yield_now().await;
                continue;
            };
            let wait_until = {
                let mut state = lock(&self.state);
                let now = Instant::now();
                match state.closed_until {
                    Some(until) if until > now => Some(until),
                    _ => {
                        state.closed_until = None;
                        while state
                            .sent
                            .front()
                            .is_some_and(|&t| now.duration_since(t) >= self.limits.window)
                        {
                            state.sent.pop_front();
                        }
                        if state.sent.len() + cost > self.limits.budget.max(1) {
                            state.sent.front().map(|&t| t + self.limits.window)
                        } else {
                            for _ in 0..cost {
                                state.sent.push_back(now);
                            }
                            None
                        }
                    }
                }
            };
            match wait_until {
                None => {
                    return Admission {
                        _permit: permit,
                        waited: started.elapsed(),
                        admitted: Instant::now(),
                        busy_nanos: self.busy_nanos.clone(),
                    };
                }
                Some(until) => {
                    drop(permit);
                    tokio::time::sleep_until(until).await;
                }
            }
        }
    }

    /// Closes the resource for `delay` (a `Retry-After`): no request is admitted before it
    /// expires. A later expiry wins over an earlier one.
    pub fn close_for(&self, delay: Duration) {
        let until = Instant::now() + delay;
        let mut state = lock(&self.state);
        if state.closed_until.is_none_or(|t| t < until) {
            state.closed_until = Some(until);
        }
    }

    /// When the resource reopens, if it is closed now.
    pub fn closed_until(&self) -> Option<Instant> {
        let state = lock(&self.state);
        state.closed_until.filter(|&t| t > Instant::now())
    }

    /// Requests counted in the current budget window.
    pub fn used_budget(&self) -> usize {
        let state = lock(&self.state);
        let now = Instant::now();
        state
            .sent
            .iter()
            .filter(|&&t| now.duration_since(t) < self.limits.window)
            .count()
    }

    /// Total time slots were held (the sum over requests of their time in flight). Divided
    /// by `max_in_flight` × elapsed time, it tells how much of the allowance was used.
    pub fn busy_time(&self) -> Duration {
        Duration::from_nanos(self.busy_nanos.load(Ordering::Relaxed))
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.limits
            .max_in_flight
            .max(1)
            .saturating_sub(self.permits.available_permits())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn never_more_than_max_in_flight() {
        let gate = Arc::new(ResourceGate::new(GateLimits {
            max_in_flight: 4,
            ..GateLimits::default()
        }));
        let current = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let (gate, current, peak) = (gate.clone(), current.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..20 {
                    let _a = gate.admit().await;
                    let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    current.fetch_sub(1, Ordering::SeqCst);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 4);
        assert_eq!(gate.used_budget(), 640);
        assert_eq!(gate.in_flight(), 0);
    }

    #[tokio::test]
    async fn budget_window_delays_the_request_over_budget() {
        let window = Duration::from_millis(300);
        let gate = ResourceGate::new(GateLimits {
            max_in_flight: 4,
            budget: 3,
            window,
        });
        let start = Instant::now();
        for _ in 0..3 {
            let a = gate.admit().await;
            assert!(a.waited < window);
        }
        let fourth = gate.admit().await;
        assert!(start.elapsed() >= window);
        assert!(fourth.waited > Duration::ZERO);
        assert!(gate.used_budget() <= 3);
    }

    #[tokio::test]
    async fn retry_after_closes_the_resource_for_everyone() {
        let gate = Arc::new(ResourceGate::new(GateLimits::default()));
        gate.close_for(Duration::from_millis(500));
        gate.close_for(Duration::from_millis(200)); // an earlier expiry does not shorten it
        let start = Instant::now();
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move {
                    let _a = gate.admit().await;
                    Instant::now()
                })
            })
            .collect();
        for w in waiters {
            let admitted = w.await.unwrap();
            assert!(admitted.duration_since(start) >= Duration::from_millis(500));
        }
        assert!(gate.closed_until().is_none());
    }

    #[tokio::test]
    async fn a_batch_holds_every_slot_and_pays_for_its_inner_requests() {
        let gate = ResourceGate::new(GateLimits {
            max_in_flight: 4,
            budget: 100,
            window: Duration::from_secs(600),
        });
        let one = gate.admit().await;
        // All four slots at once: not while one is taken.
        let batch = tokio::time::timeout(Duration::from_millis(50), gate.admit_many(4, 18)).await;
        assert!(batch.is_err());
        drop(one);
        let batch = gate.admit_many(4, 18).await;
        assert_eq!(gate.in_flight(), 4);
        assert_eq!(gate.used_budget(), 1 + 18);
        let single = tokio::time::timeout(Duration::from_millis(50), gate.admit()).await;
        assert!(
            single.is_err(),
            "a request was admitted while a batch held every slot"
        );
        drop(batch);
        let _single = gate.admit().await;
        assert_eq!(gate.in_flight(), 1);
    }

    #[test]
    fn registry_shares_gates_per_key() {
        let registry = GateRegistry::new();
        let a = registry.gate("https://g/|a@x", &GateLimits::default());
        let b = registry.gate("https://g/|a@x", &GateLimits::default());
        let c = registry.gate("https://g/|b@x", &GateLimits::default());
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert!(Arc::ptr_eq(
            &GateRegistry::global(),
            &GateRegistry::global()
        ));
    }
}
