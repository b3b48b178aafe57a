//! Resumable sessions by resumption id (XEP-0198 §5): where a `<resume/>` finds the
//! session it names, and what it is told when that session is gone (`<failed h='…'/>`).
//! A lookup answers only for the account that owns the id, so guessing or replaying
//! another user's id learns nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::router::SessionMsg;
use crate::storage::Account;

/// How long the `h` of an ended session is kept for a late `<resume/>`.
const ENDED_KEPT: Duration = Duration::from_secs(15 * 60);
/// At most this many ended sessions are remembered (oldest forgotten first).
const ENDED_MAX: usize = 100_000;

/// A resumable session that is still alive (attached or waiting for a new link).
#[derive(Clone)]
pub struct LiveSession {
    pub account: Account,
    pub full_jid: String,
    pub mailbox: mpsc::Sender<SessionMsg>,
}

/// What a `<resume previd='…'/>` finds.
pub enum Lookup {
    /// The session is alive: hand the new link to it.
    Live(LiveSession),
    /// The session ended having handled this many of its client's stanzas (the `h` of
    /// `<failed/>`, so the client knows what to send again).
    Ended { handled: u32 },
    /// The session moved to another cluster node (its client resumed there).
    Moved { node: String },
    /// Never existed, expired, or belongs to someone else.
    Unknown,
}

struct Ended {
    account: Account,
    /// `Err(node)`: the session did not end, it moved to that node.
    handled: Result<u32, String>,
}

#[derive(Default)]
struct Inner {
    live: HashMap<String, LiveSession>,
    ended: HashMap<String, Ended>,
    /// Ended ids in the order they ended, for expiry.
    ended_order: VecDeque<(Instant, String)>,
}

/// The registry (see the module docs).
#[derive(Default)]
pub struct Resumptions {
    inner: Mutex<Inner>,
}

impl Resumptions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A session became resumable under `id`.
    pub fn register(&self, id: &str, session: LiveSession) {
        self.lock().live.insert(id.to_string(), session);
    }

    /// The session under `id` ended having handled `handled` stanzas from its client.
    pub fn ended(&self, id: &str, handled: u32) {
        self.forget(id, Ok(handled));
    }

    /// The session under `id` moved to cluster node `node`: a `<resume/>` for it here is
    /// sent there.
    pub fn moved(&self, id: &str, node: &str) {
        self.forget(id, Err(node.to_string()));
    }

    fn forget(&self, id: &str, handled: Result<u32, String>) {
        let now = Instant::now();
        let mut inner = self.lock();
        let Some(live) = inner.live.remove(id) else {
            return;
        };
        inner.ended.insert(
            id.to_string(),
            Ended {
                account: live.account,
                handled,
            },
        );
        inner.ended_order.push_back((now, id.to_string()));
        while let Some((at, _)) = inner.ended_order.front() {
            if now.duration_since(*at) < ENDED_KEPT && inner.ended_order.len() <= ENDED_MAX {
                break;
            }
            if let Some((_, old)) = inner.ended_order.pop_front() {
                inner.ended.remove(&old);
            }
        }
    }

    /// What `account` resuming `id` finds.
    pub fn lookup(&self, id: &str, account: &Account) -> Lookup {
        let inner = self.lock();
        if let Some(live) = inner.live.get(id)
            && &live.account == account
        {
            return Lookup::Live(live.clone());
        }
        if let Some(ended) = inner.ended.get(id)
            && &ended.account == account
        {
            return match &ended.handled {
                Ok(handled) => Lookup::Ended { handled: *handled },
                Err(node) => Lookup::Moved { node: node.clone() },
            };
        }
        Lookup::Unknown
    }

    /// Resumable sessions alive now (metrics, tests).
    pub fn live(&self) -> usize {
        self.lock().live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(account: &Account) -> LiveSession {
        let (tx, _rx) = mpsc::channel(1);
        LiveSession {
            account: account.clone(),
            full_jid: format!("{account}/r"),
            mailbox: tx,
        }
    }

    #[test]
    fn only_the_owner_finds_a_session() {
        let r = Resumptions::default();
        let alice = Account::new("alice", "example.com");
        let mallory = Account::new("mallory", "example.com");
        r.register("id1", session(&alice));
        assert!(matches!(r.lookup("id1", &alice), Lookup::Live(_)));
        assert!(matches!(r.lookup("id1", &mallory), Lookup::Unknown));
        r.ended("id1", 7);
        assert!(matches!(
            r.lookup("id1", &alice),
            Lookup::Ended { handled: 7 }
        ));
        assert!(matches!(r.lookup("id1", &mallory), Lookup::Unknown));
        assert!(matches!(r.lookup("nope", &alice), Lookup::Unknown));
        assert_eq!(r.live(), 0);
        r.register("id2", session(&alice));
        r.moved("id2", "n2");
        assert!(matches!(r.lookup("id2", &alice), Lookup::Moved { node } if node == "n2"));
        assert!(matches!(r.lookup("id2", &mallory), Lookup::Unknown));
    }
}
