//! The password derivation pool: PBKDF2 over a PLAIN login's password (to compare with
//! the stored SCRAM keys) is the one expensive step of a login, about a millisecond of
//! CPU at the default 4096 iterations. Run on the async workers it stalls every session
//! sharing the worker; run without a bound, a login flood spreads them over hundreds of
//! threads that all finish late. Here at most one derivation per core runs at once, the
//! others wait their turn in arrival order (a fair semaphore), and past a bound on those
//! waiting a login is answered `temporary-auth-failure` at once rather than late.
//!
//! Logins that need no derivation — a password verified recently (`sasl::verified`),
//! SCRAM (the client derives), tokens, plugins — never enter the pool, so they never
//! wait behind one that does.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

/// Derivations allowed to wait for a turn, by default, per running one.
const WAITING_PER_WORKER: usize = 512;

/// Too many derivations are waiting: the login is refused as temporarily failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks are waiting")]
pub struct Busy;

/// See the module docs.
pub struct DerivationPool {
    turns: Arc<Semaphore>,
    workers: usize,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl Default for DerivationPool {
    /// One worker per core, [`WAITING_PER_WORKER`] waiting per worker.
    fn default() -> Self {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        DerivationPool::new(workers, workers * WAITING_PER_WORKER)
    }
}

impl DerivationPool {
    /// A pool running at most `workers` derivations at once with at most `max_waiting`
    /// waiting.
    pub fn new(workers: usize, max_waiting: usize) -> Self {
        let workers = workers.max(1);
        DerivationPool {
            turns: Arc::new(Semaphore::new(workers)),
            workers,
            waiting: AtomicUsize::new(0),
            max_waiting,
        }
    }

    /// Derivations running at most at once.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Derivations waiting for a turn now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Runs `derive` on a blocking thread when its turn comes.
    pub async fn run<T, F>(&self, derive: F) -> Result<T, Busy>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(Busy);
        }
        let turn = self.turns.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        let turn = turn.expect("the pool's semaphore is never closed");
        let result = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            derive()
        })
        .await;
        match result {
            Ok(v) => Ok(v),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_workers_run_at_once() {
        let pool = Arc::new(DerivationPool::new(2, 100));
        let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
                tokio::spawn(async move {
                    pool.run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(()));
        }
        assert_eq!(
            peak.load(Ordering::SeqCst),
            2,
            "never more than the workers"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_ones_run_in_arrival_order_and_past_the_bound_are_refused() {
        let pool = Arc::new(DerivationPool::new(1, 3));
        let order = Arc::new(Mutex::new(Vec::new()));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let started = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        {
            let (pool, order, started) = (pool.clone(), order.clone(), started.clone());
            tasks.push(tokio::spawn(async move {
                pool.run(move || {
                    started.store(1, Ordering::SeqCst);
                    hold.recv().unwrap();
                    order.lock().unwrap().push(0);
                })
                .await
            }));
        }
        while started.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for i in 1..4 {
            let (pool2, order) = (pool.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                pool2.run(move || order.lock().unwrap().push(i)).await
            }));
            while pool.waiting() < i {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        assert_eq!(
            pool.run(|| ()).await,
            Err(Busy),
            "three are waiting already"
        );
        release.send(()).unwrap();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(()));
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3]);
        assert_eq!(pool.waiting(), 0);
    }
}
