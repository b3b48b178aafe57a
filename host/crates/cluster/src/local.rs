//! This node's own sessions as the cluster sees them: the list other nodes replicate,
//! numbered events for each change, and the digest heartbeats carry. The router tells
//! it about local sessions ([`SessionWatcher`]); it queues one event per real change for
//! the publisher, in the order the changes happened.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::UNIX_EPOCH;

use tokio::sync::mpsc;

use crate::core::Core;
use crate::core::router::{SessionEntry, SessionWatcher};
use crate::outbox::Outgoing;
use crate::wire::{Event, SessionRecord};

/// The list and its version.
#[derive(Debug, Default)]
struct View {
    sessions: HashMap<String, SessionRecord>,
    /// Number of the last event.
    seq: u64,
    /// XOR of the records' digests.
    digest: u64,
}

/// A full copy of the list, as of event `seq`.
pub struct Snapshot {
    pub seq: u64,
    pub sessions: Vec<SessionRecord>,
}

/// This node's sessions (see the module docs).
#[derive(Debug)]
pub struct LocalSessions {
    node: String,
    /// For the features' per-session settings a record carries (weak: the core's router
    /// holds this list as its watcher).
    core: Weak<Core>,
    incarnation: u64,
    view: Mutex<View>,
    out: mpsc::Sender<Outgoing>,
}

impl LocalSessions {
    pub fn new(
        node: String,
        core: &Arc<Core>,
        incarnation: u64,
        out: mpsc::Sender<Outgoing>,
    ) -> Arc<Self> {
        Arc::new(LocalSessions {
            node,
            core: Arc::downgrade(core),
            incarnation,
            view: Mutex::new(View::default()),
            out,
        })
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// (last event number, session count, digest) for a heartbeat.
    pub fn version(&self) -> (u64, u64, u64) {
        let v = self.view();
        (v.seq, v.sessions.len() as u64, v.digest)
    }

    /// The full list now.
    pub fn snapshot(&self) -> Snapshot {
        let v = self.view();
        Snapshot {
            seq: v.seq,
            sessions: v.sessions.values().cloned().collect(),
        }
    }

    /// Records sessions without announcing each one: the peers learn them from the full
    /// list (their next heartbeat digest asks for it). For benchmarks and tests of the
    /// registry at scale, which have no million real connections.
    pub fn preload(&self, records: impl IntoIterator<Item = SessionRecord>) {
        let mut v = self.view();
        for r in records {
            v.digest ^= r.digest();
            if let Some(old) = v.sessions.insert(r.jid.clone(), r) {
                v.digest ^= old.digest();
            }
        }
        v.seq += 1;
    }

    fn record(&self, entry: &SessionEntry) -> SessionRecord {
        let p = entry.presence();
        let flags = self
            .core
            .upgrade()
            .map(|core| core.hooks.session_flags(&core, entry))
            .unwrap_or_default();
        SessionRecord {
            jid: entry.full_jid.clone(),
            id: entry.id,
            since_us: entry
                .since
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0),
            priority: p.priority,
            presence: p.last.map(|el| el.to_string()),
            flags,
        }
    }

    fn up(&self, record: SessionRecord) {
        let mut v = self.view();
        let old = v.sessions.insert(record.jid.clone(), record.clone());
        if old.as_ref() == Some(&record) {
            return;
        }
        v.digest ^= record.digest() ^ old.map_or(0, |o| o.digest());
        v.seq += 1;
        let event = Event::Up {
            node: self.node.clone(),
            incarnation: self.incarnation,
            seq: v.seq,
            session: record,
        };
        self.queue(event);
    }

    /// Queued while the view is locked, so events leave in the order of their numbers.
    /// A full queue loses the event; the next heartbeat's digest makes the peers ask for
    /// the whole list.
    fn queue(&self, event: Event) {
        if self.out.try_send(Outgoing::Event(event)).is_err() {
            tracing::warn!("cluster: outgoing queue full; peers will resynchronise");
        }
    }
}

impl SessionWatcher for LocalSessions {
    fn bound(&self, entry: &Arc<SessionEntry>) {
        self.up(self.record(entry));
    }

    fn changed(&self, entry: &SessionEntry) {
        // Only sessions still in the list (a change racing the end is not a new session).
        let known = self
            .view()
            .sessions
            .get(&entry.full_jid)
            .is_some_and(|r| r.id == entry.id);
        if known {
            self.up(self.record(entry));
        }
    }

    fn unbound(&self, entry: &SessionEntry) {
        self.forget(&entry.full_jid, entry.id);
    }
}

impl LocalSessions {
    /// The id of the session recorded under `jid`, if any.
    pub fn id_of(&self, jid: &str) -> Option<u64> {
        self.view().sessions.get(jid).map(|r| r.id)
    }

    /// The session `id` of `jid` is no longer this node's (it ended, or moved to another
    /// node that announced it): announced as down.
    pub fn forget(&self, jid: &str, id: u64) {
        let mut v = self.view();
        let Some(old) = v.sessions.get(jid) else {
            return;
        };
        if old.id != id {
            return;
        }
        let old = v.sessions.remove(jid).expect("present");
        v.digest ^= old.digest();
        v.seq += 1;
        let event = Event::Down {
            node: self.node.clone(),
            incarnation: self.incarnation,
            seq: v.seq,
            jid: old.jid,
            id: old.id,
        };
        self.queue(event);
    }
}
