//! Resumable sessions by resumption id (XEP-0198 §5): where a `<resume/>` finds the
//! session it names, and what it is told when that session is gone (`<failed h='…'/>`).
//! A lookup answers only for the account that owns the id, so guessing or replaying
//! another user's id learns nothing.
//!
//! Ended sessions are remembered for [`ENDED_KEPT`] without a heap allocation of their
//! own: the id as a 128-bit keyed hash, the owner as a 64-bit one. Small blocks that live
//! this long, allocated among the short-lived ones of stanza handling, keep most of an
//! allocator page each in use: the four blocks an entry used to have cost about 17 KiB of
//! RSS per entry in the soak (tests/load/README.md, "The memory criterion").

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::router::Mailbox;
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
    pub mailbox: Mailbox,
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

/// An ended session: its owner's [`Inner::owner_key`] and its `h`; no heap allocation
/// unless it moved to another cluster node.
struct Ended {
    owner: u64,
    handled: u32,
    /// The session did not end: it moved to this cluster node (rare; no allocation
    /// otherwise).
    moved_to: Option<Box<str>>,
}

#[derive(Default)]
struct Inner {
    live: HashMap<String, LiveSession>,
    ended: HashMap<u128, Ended>,
    /// Ended ids in the order they ended, for expiry.
    ended_order: VecDeque<(Instant, u128)>,
    /// Keys the id and owner hashes (random per process, so they cannot be predicted).
    hasher: RandomState,
}

impl Inner {
    /// An ended session's key: two independent 64-bit hashes of its id (two ids sharing
    /// one by chance, about 1 in 2^128, would only mix up their `h`).
    fn ended_key(&self, id: &str) -> u128 {
        let high = self.hasher.hash_one((0u8, id));
        let low = self.hasher.hash_one((1u8, id));
        (u128::from(high) << 64) | u128::from(low)
    }

    fn owner_key(&self, account: &Account) -> u64 {
        self.hasher.hash_one(account)
    }
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
        self.forget(id, handled, None);
    }

    /// The session under `id` moved to cluster node `node`: a `<resume/>` for it here is
    /// sent there.
    pub fn moved(&self, id: &str, node: &str) {
        self.forget(id, 0, Some(node.into()));
    }

    fn forget(&self, id: &str, handled: u32, moved_to: Option<Box<str>>) {
        let now = Instant::now();
        let mut inner = self.lock();
        let Some(live) = inner.live.remove(id) else {
            return;
        };
        let key = inner.ended_key(id);
        let owner = inner.owner_key(&live.account);
        drop(live);
        inner.ended.insert(
            key,
            Ended {
                owner,
                handled,
                moved_to,
            },
        );
        inner.ended_order.push_back((now, key));
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
        if let Some(ended) = inner.ended.get(&inner.ended_key(id))
            && ended.owner == inner.owner_key(account)
        {
            return match &ended.moved_to {
                None => Lookup::Ended {
                    handled: ended.handled,
                },
                Some(node) => Lookup::Moved {
                    node: node.to_string(),
                },
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
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
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

    #[test]
    fn ended_sessions_are_found_by_their_generated_ids() {
        let r = Resumptions::default();
        let alice = Account::new("alice", "example.com");
        let bob = Account::new("bob", "example.com");
        let (a, b) = (
            crate::session::sm::new_resume_id(),
            crate::session::sm::new_resume_id(),
        );
        r.register(&a, session(&alice));
        r.register(&b, session(&bob));
        r.ended(&a, 3);
        r.ended(&b, 9);
        assert!(matches!(r.lookup(&a, &alice), Lookup::Ended { handled: 3 }));
        assert!(matches!(r.lookup(&b, &bob), Lookup::Ended { handled: 9 }));
        // Each id answers only for its owner, whichever way round.
        assert!(matches!(r.lookup(&a, &bob), Lookup::Unknown));
        assert!(matches!(r.lookup(&b, &alice), Lookup::Unknown));
        // An id differing in one digit, or a prefix of one, is another id.
        let other = format!("{}{}", &a[..31], if a.ends_with('0') { '1' } else { '0' });
        assert!(matches!(r.lookup(&other, &alice), Lookup::Unknown));
        assert!(matches!(r.lookup(&a[..31], &alice), Lookup::Unknown));
    }

    #[test]
    fn ended_sessions_are_forgotten_oldest_first_beyond_the_cap() {
        let r = Resumptions::default();
        let alice = Account::new("alice", "example.com");
        let ids: Vec<String> = (0..=ENDED_MAX + 1)
            .map(|_| crate::session::sm::new_resume_id())
            .collect();
        for (n, id) in ids.iter().enumerate() {
            r.register(id, session(&alice));
            r.ended(id, n as u32);
        }
        assert!(matches!(r.lookup(&ids[0], &alice), Lookup::Unknown));
        let last = ids.len() - 1;
        assert!(matches!(
            r.lookup(&ids[last], &alice),
            Lookup::Ended { handled } if handled as usize == last
        ));
        let inner = r.lock();
        assert_eq!(inner.ended.len(), ENDED_MAX);
        assert_eq!(inner.ended_order.len(), ENDED_MAX);
    }
}
