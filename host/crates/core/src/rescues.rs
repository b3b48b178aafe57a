//! Rescues in progress: a session that ends routes again what it accepted and did not
//! deliver (to another resource, or to offline storage). The shutdown waits for every
//! rescue under way before it flushes storage and exits, however long its grace for slow
//! clients was: a rescue cut short loses accepted messages. A rescue is bounded work (a
//! session's queue, written to storage) that never waits on a client.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// How many sessions are rescuing now.
#[derive(Clone)]
pub struct Rescues(Arc<watch::Sender<usize>>);

impl Default for Rescues {
    fn default() -> Self {
        Rescues(Arc::new(watch::channel(0).0))
    }
}

/// One rescue under way; it ends when dropped.
#[must_use = "the rescue counts as under way while this is held"]
pub struct Rescuing(Arc<watch::Sender<usize>>);

impl Drop for Rescuing {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Rescues {
    /// Counts a rescue as under way until the returned guard is dropped.
    pub fn start(&self) -> Rescuing {
        self.0.send_modify(|n| *n += 1);
        Rescuing(self.0.clone())
    }

    /// Rescues under way now.
    pub fn active(&self) -> usize {
        *self.0.borrow()
    }

    /// Waits until no rescue is under way, at most `limit`; returns how many still are.
    pub async fn wait_idle(&self, limit: Duration) -> usize {
        let mut rx = self.0.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|n| *n == 0)).await;
        self.active()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_every_rescue_and_no_longer() {
        let rescues = Rescues::default();
        assert_eq!(rescues.wait_idle(Duration::from_secs(5)).await, 0);
        let a = rescues.start();
        let b = rescues.start();
        assert_eq!(rescues.active(), 2);
        // Still under way: the wait gives up at its limit and says how many are left.
        assert_eq!(rescues.wait_idle(Duration::from_millis(20)).await, 2);
        let waiter = {
            let rescues = rescues.clone();
            tokio::spawn(async move { rescues.wait_idle(Duration::from_secs(30)).await })
        };
        drop(a);
        assert_eq!(rescues.active(), 1);
        drop(b);
        assert_eq!(waiter.await.unwrap(), 0);
    }
}
