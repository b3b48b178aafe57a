//! Fair scheduling of plugin calls across tenants (issue 22, item 4).
//!
//! Every call needs one of the host's permits (`min(max_concurrent_calls, CPUs)`). A
//! single FIFO semaphore let one tenant whose plugin is slow (or loops until its
//! deadline) under a flood of calls fill the queue, so every other tenant's calls waited
//! behind the flood. Here:
//!
//! - while other tenants' calls wait, a tenant holds at most `per_tenant` permits (half
//!   of them, at least one), so another tenant always finds room while there are two
//!   permits or more; a tenant alone may use them all (no permit idles while calls
//!   wait), and the next permit freed goes to a newcomer under its share;
//! - waiting calls queue per tenant (in order within a tenant), and a freed permit goes to
//!   the next tenant in turn (round robin over the tenants that wait), not to the oldest
//!   waiter overall.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The permits, shared by every call (see the module docs).
pub(crate) struct FairPermits {
    per_tenant: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    free: usize,
    /// Permits held, per tenant (only tenants holding some).
    running: HashMap<Arc<str>, usize>,
    /// Calls waiting, per tenant, in order (only tenants with waiters).
    waiting: HashMap<Arc<str>, VecDeque<oneshot::Sender<()>>>,
    /// Tenants with waiters, in the order they are served.
    turn: VecDeque<Arc<str>>,
}

/// A permit to run one call; given back on drop.
pub(crate) struct FairPermit {
    owner: Arc<FairPermits>,
    tenant: Arc<str>,
}

impl Drop for FairPermit {
    fn drop(&mut self) {
        self.owner.release(&self.tenant);
    }
}

impl FairPermits {
    /// `total` permits (at least one), at most half of them (at least one) per tenant.
    pub(crate) fn new(total: usize) -> Arc<FairPermits> {
        let total = total.max(1);
        Arc::new(FairPermits {
            per_tenant: (total / 2).max(1),
            state: Mutex::new(State {
                free: total,
                ..State::default()
            }),
        })
    }

    /// Waits for a permit for a call of `tenant`'s. Cancel-safe: a waiter dropped before
    /// or just after it was granted gives the permit back.
    pub(crate) async fn acquire(self: &Arc<Self>, tenant: &str) -> FairPermit {
        let tenant: Arc<str> = Arc::from(tenant);
        let rx = {
            let mut st = self.state.lock().unwrap();
            let running = st.running.get(&tenant).copied().unwrap_or(0);
            // Within its share, or above it while nobody else waits.
            let may_take = running < self.per_tenant || st.turn.is_empty();
            if st.free > 0 && may_take && !st.waiting.contains_key(&tenant) {
                st.free -= 1;
                *st.running.entry(tenant.clone()).or_default() += 1;
                return FairPermit {
                    owner: self.clone(),
                    tenant,
                };
            }
            let (tx, rx) = oneshot::channel();
            match st.waiting.get_mut(&tenant) {
                Some(queue) => queue.push_back(tx),
                None => {
                    st.waiting.insert(tenant.clone(), VecDeque::from([tx]));
                    st.turn.push_back(tenant.clone());
                }
            }
            rx
        };
        let mut waiter = Waiter {
            rx,
            owner: self.clone(),
            tenant: tenant.clone(),
            granted: false,
        };
        // The sender is only dropped by a grant (which sends first) or never: the state
        // keeps it until then.
        let _ = (&mut waiter.rx).await;
        waiter.granted = true;
        FairPermit {
            owner: self.clone(),
            tenant,
        }
    }

    fn release(&self, tenant: &Arc<str>) {
        let mut st = self.state.lock().unwrap();
        if let Some(n) = st.running.get_mut(tenant) {
            *n -= 1;
            if *n == 0 {
                st.running.remove(tenant);
            }
        }
        st.free += 1;
        self.dispatch(&mut st);
    }

    /// Hands free permits to waiting calls, one tenant after the other: first to tenants
    /// under their share, then, if permits are still free (every waiting tenant is at its
    /// share), to them anyway, so that no permit idles while calls wait.
    fn dispatch(&self, st: &mut State) {
        self.dispatch_within(st, self.per_tenant);
        self.dispatch_within(st, usize::MAX);
    }

    /// Grants free permits round robin to waiting tenants holding fewer than `cap`.
    fn dispatch_within(&self, st: &mut State, cap: usize) {
        // Tenants passed over (at their cap) since the last grant: once all were, stop.
        let mut passed = 0;
        while st.free > 0 && passed < st.turn.len() {
            let Some(tenant) = st.turn.pop_front() else {
                break;
            };
            let running = st.running.get(&tenant).copied().unwrap_or(0);
            if running >= cap {
                st.turn.push_back(tenant);
                passed += 1;
                continue;
            }
            let queue = st.waiting.get_mut(&tenant).expect("a waiting tenant");
            let mut granted = false;
            while let Some(tx) = queue.pop_front() {
                // A waiter that went away (its call was cancelled) is skipped.
                if tx.send(()).is_ok() {
                    granted = true;
                    break;
                }
            }
            let empty = queue.is_empty();
            if empty {
                st.waiting.remove(&tenant);
            } else {
                st.turn.push_back(tenant.clone());
            }
            if granted {
                st.free -= 1;
                *st.running.entry(tenant).or_default() += 1;
                passed = 0;
            }
        }
    }
}

/// A call waiting for its permit.
struct Waiter {
    rx: oneshot::Receiver<()>,
    owner: Arc<FairPermits>,
    tenant: Arc<str>,
    granted: bool,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.granted {
            return;
        }
        // Granted between the send and this drop: the permit goes back.
        self.rx.close();
        if self.rx.try_recv().is_ok() {
            self.owner.release(&self.tenant);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_tenant_holds_at_most_half_while_another_waits() {
        let p = FairPermits::new(4);
        // Alone, a tenant may use every permit.
        let a1 = p.acquire("a").await;
        let a2 = p.acquire("a").await;
        let a3 = p.acquire("a").await;
        let _a4 = p.acquire("a").await;
        // Now b waits, and so does a's fifth call.
        let (pa, pb) = (p.clone(), p.clone());
        let a5 = tokio::spawn(async move { pa.acquire("a").await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let b1 = tokio::spawn(async move { pb.acquire("b").await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The first permit freed goes to b (under its share), not to a (above it), even
        // though a asked first.
        drop(a1);
        let _b1 = tokio::time::timeout(Duration::from_secs(5), b1)
            .await
            .unwrap()
            .unwrap();
        assert!(!a5.is_finished());
        // With b served and nobody else waiting, a's call takes the next permit.
        drop(a2);
        let _a5 = tokio::time::timeout(Duration::from_secs(5), a5)
            .await
            .unwrap()
            .unwrap();
        drop(a3);
    }

    #[tokio::test]
    async fn freed_permits_go_round_robin() {
        let p = FairPermits::new(2);
        // per_tenant = 1.
        let a = p.acquire("a").await;
        let b = p.acquire("b").await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for t in ["a", "a", "a", "c"] {
            let (p, order) = (p.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let permit = p.acquire(t).await;
                order.lock().unwrap().push(t);
                tokio::time::sleep(Duration::from_millis(5)).await;
                drop(permit);
            }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(a);
        drop(b);
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .unwrap()
                .unwrap();
        }
        let order = order.lock().unwrap().clone();
        // c queued after a's three calls but is served before the last two of them.
        let c = order.iter().position(|t| *t == "c").unwrap();
        assert!(c <= 1, "{order:?}");
    }

    #[tokio::test]
    async fn a_cancelled_waiter_gives_its_turn_back() {
        let p = FairPermits::new(1);
        let held = p.acquire("a").await;
        let p2 = p.clone();
        let waiting = tokio::spawn(async move { p2.acquire("b").await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        waiting.abort();
        let _ = waiting.await;
        drop(held);
        let _again = tokio::time::timeout(Duration::from_secs(5), p.acquire("b"))
            .await
            .expect("the permit came back");
    }
}
