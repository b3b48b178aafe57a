//! The drain flag: set once when the node starts draining (see the control layer), seen
//! by the listeners (which refuse new sessions; the HTTP listener still serves existing
//! BOSH sessions until each has its terminate) and the health check (not ready).

use tokio::sync::watch;

/// The drain flag.
pub struct Drain {
    tx: watch::Sender<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            tx: watch::channel(false).0,
        }
    }
}

impl Drain {
    /// Starts draining; false if already draining.
    pub fn start(&self) -> bool {
        self.tx.send_if_modified(|d| !std::mem::replace(d, true))
    }

    pub fn is_draining(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once draining has started.
    pub async fn started(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }
}
