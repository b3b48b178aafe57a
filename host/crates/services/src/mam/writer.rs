//! The archive writer: message hooks queue entries here without waiting, and one task
//! writes them in batches (one storage write, one flush for many messages), applying each
//! owner's preferences (loaded once and cached) and the roster where they ask for it.
//! Retractions go through the same queue, so they apply after the message they retract.
//! A query first waits on a [`Writer::barrier`]: what was queued before it is on disk.
//!
//! Writes are group-committed: the task collects for up to [`GROUP_COMMIT`] before one
//! write and one flush, except that a query's barrier is served at once.
//!
//! Every write queued counts in the core's backlog until it is written (or failed): past
//! its bound, messages wait for the writer instead of piling up here (see
//! `heliograph_core::backlog`).
//!
//! The task starts with the first job (hooks run inside the runtime), along with the
//! retention purge.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot};

use super::prefs;
use crate::storage::{self, Account, ArchivePrefs, ArchivedMessage};
use crate::xml::Element;
use heliograph_core::Core;

/// Jobs written in one batch at most. A busy writer takes this many at once: each batch
/// rewrites the index pages its owners' messages touch, so larger batches write fewer
/// pages per message (SQLite alone, 200 owners: 6.0 µs per message copy in batches of
/// 2,000, 3.8 µs in batches of 16,000). The core's backlog lets two batches queue.
const BATCH: usize = 16_384;
/// How long the writer keeps collecting before it writes (group commit): one storage
/// write and one flush for everything archived meanwhile. A query's barrier ends the
/// wait at once, so a client never waits for it; a crash may lose at most this much of
/// the archive (never a message: delivery and offline storage do not wait for it).
const GROUP_COMMIT: Duration = Duration::from_millis(25);

enum Job {
    Append(Account, ArchivedMessage),
    Retract {
        owner: Account,
        with: String,
        id: String,
        outgoing: bool,
        tombstone: String,
    },
    Barrier(oneshot::Sender<()>),
}

/// The queue to the writer task.
pub struct Writer {
    tx: OnceLock<mpsc::UnboundedSender<Job>>,
    /// Owners' preferences, shared with the feature.
    prefs: Arc<DashMap<Account, Arc<ArchivePrefs>>>,
}

impl Writer {
    /// A writer consulting (and filling) `prefs`.
    pub fn new(prefs: Arc<DashMap<Account, Arc<ArchivePrefs>>>) -> Writer {
        Writer {
            tx: OnceLock::new(),
            prefs,
        }
    }

    fn sender(&self, core: &Arc<Core>) -> &mpsc::UnboundedSender<Job> {
        self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run(core.clone(), self.prefs.clone(), rx));
            tokio::spawn(super::retention::run(Arc::downgrade(core)));
            tx
        })
    }

    /// Queues a message for an owner's archive (subject to the owner's preferences).
    pub fn append(&self, core: &Arc<Core>, owner: Account, entry: ArchivedMessage) {
        heliograph_metrics::archive("queued", 1);
        self.queue(core, Job::Append(owner, entry));
    }

    /// Queues a write, counted in the core's backlog until it is done.
    fn queue(&self, core: &Arc<Core>, job: Job) {
        core.backlog.add(1);
        if self.sender(core).send(job).is_err() {
            // The writer is gone (the runtime is shutting down): nothing will write it.
            core.backlog.done(1);
        }
    }

    /// Queues the retraction of the owner's message `id` with `with`.
    pub fn retract(
        &self,
        core: &Arc<Core>,
        owner: Account,
        with: String,
        id: String,
        outgoing: bool,
        retraction: &Element,
    ) {
        let tombstone = super::tombstone(retraction).to_string_in(crate::xml::ns::CLIENT);
        self.queue(
            core,
            Job::Retract {
                owner,
                with,
                id,
                outgoing,
                tombstone,
            },
        );
    }

    /// Waits until everything queued before is written.
    pub async fn barrier(&self, core: &Arc<Core>) {
        let (tx, rx) = oneshot::channel();
        if self.sender(core).send(Job::Barrier(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(
    core: Arc<Core>,
    cache: Arc<DashMap<Account, Arc<ArchivePrefs>>>,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    let mut jobs = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut jobs, BATCH).await > 0 {
        let deadline = tokio::time::Instant::now() + GROUP_COMMIT;
        while jobs.len() < BATCH && !jobs.iter().any(|j| matches!(j, Job::Barrier(_))) {
            let room = BATCH - jobs.len();
            match tokio::time::timeout_at(deadline, rx.recv_many(&mut jobs, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let batch = std::mem::take(&mut jobs);
        // Done in the backlog once written, even if the write panics.
        let _written = Written(
            core.clone(),
            batch
                .iter()
                .filter(|j| !matches!(j, Job::Barrier(_)))
                .count(),
        );
        let (core2, cache2) = (core.clone(), cache.clone());
        let barriers = storage::blocking(move || write(&core2, &cache2, batch)).await;
        for b in barriers {
            let _ = b.send(());
        }
    }
}

/// A batch's writes, counted as done in the core's backlog when dropped.
struct Written(Arc<Core>, usize);

impl Drop for Written {
    fn drop(&mut self) {
        self.0.backlog.done(self.1);
    }
}

/// Writes one batch in order; returns the barriers to release.
fn write(
    core: &Core,
    cache: &DashMap<Account, Arc<ArchivePrefs>>,
    batch: Vec<Job>,
) -> Vec<oneshot::Sender<()>> {
    let store = &core.storage.archive;
    let mut appends: Vec<(Account, ArchivedMessage)> = Vec::new();
    let mut barriers = Vec::new();
    let flush = |appends: &mut Vec<(Account, ArchivedMessage)>| {
        if appends.is_empty() {
            return;
        }
        let n = appends.len();
        match store.append(appends) {
            Ok(()) => heliograph_metrics::archive("written", n),
            Err(e) => {
                heliograph_metrics::archive("failed", n);
                tracing::error!(error = %e, messages = n, "archiving failed");
            }
        }
        appends.clear();
    };
    for job in batch {
        match job {
            Job::Append(owner, entry) => {
                let p = prefs::cached(core, cache, &owner);
                let in_roster = || {
                    core.storage
                        .rosters
                        .item(&owner, &entry.with)
                        .ok()
                        .flatten()
                        .is_some()
                };
                if prefs::decide(&p, &entry.with, Some(&in_roster)) == Some(true) {
                    appends.push((owner, entry));
                } else {
                    heliograph_metrics::archive("skipped", 1);
                }
            }
            Job::Retract {
                owner,
                with,
                id,
                outgoing,
                tombstone,
            } => {
                flush(&mut appends);
                if let Err(e) = store.retract(&owner, &with, &id, outgoing, &tombstone) {
                    tracing::error!(jid = %owner, error = %e, "retraction failed");
                }
            }
            Job::Barrier(b) => barriers.push(b),
        }
    }
    flush(&mut appends);
    barriers
}
