//! Writes queued behind the message path (the message archive's): a feature that stores
//! a message's copy after the message went on counts it here while it waits, and while too
//! many do, messages to and from the tenants that have such a feature on wait for routing
//! (`Registrar::writes_behind`; other tenants' messages queue nothing here and go on). Without the bound, a store slower than the chat
//! would let its queue grow without end in memory, and lose it at shutdown: the senders
//! are slowed down instead, as for a recipient who does not keep up (their stanzas wait,
//! then their sockets are no longer read). The shutdown waits until the queue is written.

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Entries waiting to be written at most before messages wait: two of the archive
/// writer's largest batches, about 16 MiB of messages.
pub const DEFAULT_LIMIT: usize = 32_768;

/// Writes queued and not yet done (see the module's doc).
pub struct Backlog {
    pending: AtomicUsize,
    limit: usize,
    /// Woken when the queue falls to the limit.
    room: Notify,
    /// Woken when the queue is empty.
    empty: Notify,
}

impl Default for Backlog {
    fn default() -> Self {
        Backlog::with_limit(DEFAULT_LIMIT)
    }
}

impl Backlog {
    /// A backlog that makes messages wait past `limit` queued entries.
    pub fn with_limit(limit: usize) -> Backlog {
        Backlog {
            pending: AtomicUsize::new(0),
            limit,
            room: Notify::new(),
            empty: Notify::new(),
        }
    }

    /// `n` entries were queued.
    pub fn add(&self, n: usize) {
        self.pending.fetch_add(n, Ordering::AcqRel);
    }

    /// `n` queued entries were written (or failed for good): they no longer count.
    pub fn done(&self, n: usize) {
        let before = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                Some(p.saturating_sub(n))
            })
            .unwrap_or_default();
        let now = before.saturating_sub(n);
        if before > self.limit && now <= self.limit {
            self.room.notify_waiters();
        }
        if now == 0 && before > 0 {
            self.empty.notify_waiters();
        }
    }

    /// Entries queued and not yet written.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Whether messages must wait ([`Backlog::room`]) before they are routed.
    pub fn is_over(&self) -> bool {
        self.pending() > self.limit
    }

    /// Waits until the queue is at or under its limit.
    pub async fn room(&self) {
        loop {
            let mut woken = pin!(self.room.notified());
            // Registered before the check, so a `done` between the two is not missed.
            woken.as_mut().enable();
            if !self.is_over() {
                return;
            }
            woken.await;
        }
    }

    /// Waits until nothing is queued, at most `limit`; returns how many entries still are.
    pub async fn wait_empty(&self, limit: Duration) -> usize {
        let drained = async {
            loop {
                let mut woken = pin!(self.empty.notified());
                woken.as_mut().enable();
                if self.pending() == 0 {
                    return;
                }
                woken.await;
            }
        };
        let _ = tokio::time::timeout(limit, drained).await;
        self.pending()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn messages_wait_past_the_limit_until_the_writer_catches_up() {
        let backlog = Arc::new(Backlog::with_limit(3));
        backlog.add(3);
        assert!(!backlog.is_over(), "at the limit, nothing waits");
        backlog.room().await;
        backlog.add(2);
        assert!(backlog.is_over());
        let waiter = {
            let b = backlog.clone();
            tokio::spawn(async move { b.room().await })
        };
        tokio::task::yield_now().await;
        backlog.done(1);
        assert!(backlog.is_over(), "4 of 3 still queued");
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        backlog.done(1);
        tokio::time::timeout(Duration::from_secs(30), waiter)
            .await
            .expect("the waiter goes on once the queue is at its limit")
            .unwrap();
        assert_eq!(backlog.pending(), 3);
    }

    #[tokio::test]
    async fn the_shutdown_waits_until_everything_queued_is_written() {
        let backlog = Arc::new(Backlog::with_limit(10));
        assert_eq!(backlog.wait_empty(Duration::from_secs(5)).await, 0);
        backlog.add(5);
        // Not written yet: the wait gives up at its limit and says how many are left.
        assert_eq!(backlog.wait_empty(Duration::from_millis(20)).await, 5);
        let waiter = {
            let b = backlog.clone();
            tokio::spawn(async move { b.wait_empty(Duration::from_secs(30)).await })
        };
        backlog.done(4);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        backlog.done(1);
        assert_eq!(waiter.await.unwrap(), 0);
    }

    #[test]
    fn more_done_than_queued_counts_nothing_below_zero() {
        let backlog = Backlog::with_limit(1);
        backlog.add(1);
        backlog.done(3);
        assert_eq!(backlog.pending(), 0);
    }
}
