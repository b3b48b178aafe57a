//! Per-tenant retention (`[tenants.NAME.archive] retention_days`): a background task
//! removes archived messages older than that from every domain of tenants that set it,
//! once shortly after the archive starts and then hourly.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use heliograph_core::Core;

use crate::storage::{self, ArchiveId};

/// Time between purges.
const EVERY: Duration = Duration::from_secs(3600);
/// Delay of the first purge after the archive starts.
const FIRST: Duration = Duration::from_secs(10);

/// Purges now and then until the server is gone.
pub async fn run(core: Weak<Core>) {
    tokio::time::sleep(FIRST).await;
    loop {
        let Some(c) = core.upgrade() else { return };
        purge_once(&c, SystemTime::now()).await;
        drop(c);
        tokio::time::sleep(EVERY).await;
    }
}

/// Removes what every tenant's retention allows as of `now`; returns how many messages.
pub async fn purge_once(core: &Arc<Core>, now: SystemTime) -> usize {
    let mut removed = 0;
    let snapshot = core.tenants.snapshot();
    for tenant in snapshot.tenants() {
        let days = tenant.spec.archive.retention_days;
        if days == 0 || !tenant.spec.feature_enabled(super::FEATURE) {
            continue;
        }
        let cutoff = now - Duration::from_secs(u64::from(days) * 86_400);
        let ms = cutoff
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        for domain in tenant.spec.domains.clone() {
            let store = core.storage.archive.clone();
            let d = domain.clone();
            match storage::blocking(move || store.remove_before(&d, ArchiveId::at_ms(ms))).await {
                Ok(n) => {
                    removed += n;
                    heliograph_metrics::archive("purged", n);
                    if n > 0 {
                        tracing::info!(domain, messages = n, days, "archive retention purge");
                    }
                }
                Err(e) => tracing::error!(domain, error = %e, "archive retention purge failed"),
            }
        }
    }
    removed
}
