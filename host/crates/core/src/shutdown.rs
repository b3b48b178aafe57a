//! The shutdown signal every session and listener waits on.

use tokio::sync::watch;

/// A shutdown signal every task can wait on.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub fn new() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown(rx))
    }

    /// Resolves once shutdown has been requested (or the sender is gone).
    pub async fn requested(&mut self) {
        while !*self.0.borrow() {
            if self.0.changed().await.is_err() {
                return;
            }
        }
    }

    /// True once shutdown has been requested.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }
}
