//! The routing table: which sessions are online for which account, and how to reach them.
//!
//! Each session is a task owning its connection; everything else reaches it through the
//! bounded queue in its [`SessionEntry`]. The table maps an [`Account`] (bare JID) to its
//! bound resources. It is a sharded concurrent map, so lookups on the hot path take only
//! the lock of one shard, never a global one. [`hosted`] holds the domains features
//! serve inside the server, and [`route`] turns a `to` address into a [`Route`].
//!
//! In a cluster the table also holds the sessions of the other nodes (entries whose
//! queue leads to their node, [`RemoteSink`]), kept current by the cluster layer, so a
//! routing decision never waits on the network; a [`SessionWatcher`] hears about the
//! local ones.

mod entry;
pub mod hosted;
pub mod placement;
pub mod route;

use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use serde::Serialize;

use crate::storage::Account;
use heliograph_xmpp::AccountHasher;

pub use entry::{
    Mail, Mailbox, MailboxRx, NotQueued, PresenceState, Receipt, RemoteSink, SessionEntry,
    SessionMsg, SessionWatcher, Transport, UserFacts, next_session_id,
};
pub use hosted::{HostedDomain, HostedDomains, HostedResolver, RegisterError};
pub use placement::Placement;
pub use route::{
    HostedTarget, Route, Sender, classify, classify_as, classify_from_remote, local_account,
};

/// What the admin API shows about one online session.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SessionInfo {
    /// Full JID of the session.
    pub jid: String,
    /// `tcp`, `tls` (direct TLS or after STARTTLS), later `bosh` and `websocket`.
    pub transport: String,
    /// Client address as seen by the server.
    pub address: String,
    /// Presence priority.
    pub priority: i8,
    /// Whether the session has sent available presence.
    pub available: bool,
    /// The connection is gone and the session waits for a stream management resumption.
    pub detached: bool,
    /// The cluster node holding the session, when it is not this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Seconds since the Unix epoch when the session was bound.
    pub since: u64,
    /// The features' per-session settings that are on (`carbons`), as this node knows
    /// them (for another node's session: as the cluster registry carries them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

/// The routing table.
#[derive(Default)]
pub struct Router {
    accounts: DashMap<Account, Vec<Arc<SessionEntry>>, AccountHasher>,
    /// Told about local sessions (clustering); set once at startup.
    watcher: OnceLock<Arc<dyn SessionWatcher>>,
}

impl Router {
    /// Sets who is told about local sessions binding, changing and ending (once).
    pub fn set_watcher(&self, watcher: Arc<dyn SessionWatcher>) {
        let _ = self.watcher.set(watcher);
    }

    /// Adds a bound session. If the account already has a session with the same resource,
    /// that older session is removed from the table and returned so the caller can close it
    /// with `<conflict/>` (the newer session wins).
    pub fn register(&self, entry: Arc<SessionEntry>) -> Option<Arc<SessionEntry>> {
        let watcher = self.watcher.get().filter(|_| !entry.is_remote());
        if let Some(w) = watcher {
            entry.set_watcher(w.clone());
        }
        let replaced = self.put(entry.clone());
        if let Some(w) = watcher {
            w.bound(&entry);
        }
        replaced
    }

    fn put(&self, entry: Arc<SessionEntry>) -> Option<Arc<SessionEntry>> {
        let mut slot = self.accounts.entry(entry.account.clone()).or_default();
        let replaced = slot
            .iter()
            .position(|e| e.resource == entry.resource)
            .map(|i| slot.swap_remove(i));
        slot.push(entry);
        replaced
    }

    /// Adds the entry of a session another node holds unless the table has a newer
    /// session of the same full JID (bound later; ties go to the greater node name):
    /// `Ok` with the older entry it replaced, or `Err` with the newer one that stays.
    /// `this_node` is this node's name (for ties with a local session).
    pub fn register_remote(
        &self,
        entry: Arc<SessionEntry>,
        this_node: &str,
    ) -> Result<Option<Arc<SessionEntry>>, Arc<SessionEntry>> {
        let mut slot = self.accounts.entry(entry.account.clone()).or_default();
        let existing = slot.iter().position(|e| e.resource == entry.resource);
        if let Some(i) = existing {
            let current = &slot[i];
            let key = |e: &SessionEntry| (e.since, e.node().unwrap_or(this_node).to_string());
            if !Arc::ptr_eq(current, &entry) && key(current) > key(&entry) {
                return Err(current.clone());
            }
        }
        let replaced = existing.map(|i| slot.swap_remove(i));
        slot.push(entry);
        Ok(replaced)
    }

    /// Puts `entry` in the place of the account's session `old_id`, telling no watcher: a
    /// session handed to another node leaves an entry forwarding there, and the node keeps
    /// announcing it until the new node's own announcement has replaced it everywhere.
    /// False if `old_id` is not in the table (nothing is changed then).
    pub fn replace(&self, old_id: u64, entry: Arc<SessionEntry>) -> bool {
        let Some(mut slot) = self.accounts.get_mut(&entry.account) else {
            return false;
        };
        match slot.iter().position(|e| e.id == old_id) {
            Some(i) => {
                slot[i] = entry;
                true
            }
            None => false,
        }
    }

    /// Removes a session by id (no-op if it was already replaced).
    pub fn unregister(&self, account: &Account, session_id: u64) {
        let mut removed = None;
        let now_empty = match self.accounts.get_mut(account) {
            Some(mut v) => {
                if let Some(i) = v.iter().position(|e| e.id == session_id) {
                    removed = Some(v.swap_remove(i));
                }
                v.is_empty()
            }
            None => false,
        };
        if now_empty {
            self.accounts.remove_if(account, |_, v| v.is_empty());
        }
        if let (Some(entry), Some(w)) = (removed, self.watcher.get())
            && !entry.is_remote()
        {
            w.unbound(&entry);
        }
    }

    /// Every bound session of an account.
    pub fn resources(&self, account: &Account) -> Vec<Arc<SessionEntry>> {
        self.accounts
            .get(account)
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    /// The session bound to `resource`, if any.
    pub fn resource(&self, account: &Account, resource: &str) -> Option<Arc<SessionEntry>> {
        self.accounts
            .get(account)?
            .iter()
            .find(|e| e.resource == resource)
            .cloned()
    }

    /// True if the account has at least one bound session.
    pub fn is_online(&self, account: &Account) -> bool {
        self.accounts.get(account).is_some_and(|v| !v.is_empty())
    }

    /// Number of sessions bound on this node.
    pub fn session_count(&self) -> usize {
        self.accounts
            .iter()
            .map(|e| e.value().iter().filter(|s| !s.is_remote()).count())
            .sum()
    }

    /// Number of sessions other nodes of the cluster hold.
    pub fn remote_session_count(&self) -> usize {
        self.accounts
            .iter()
            .map(|e| e.value().iter().filter(|s| s.is_remote()).count())
            .sum()
    }

    /// The entries of sessions `node` holds.
    pub fn node_entries(&self, node: &str) -> Vec<Arc<SessionEntry>> {
        self.accounts
            .iter()
            .flat_map(|e| {
                e.value()
                    .iter()
                    .filter(|s| s.node() == Some(node))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// All online sessions, optionally only those of one domain, sorted by JID.
    pub fn sessions(&self, domain: Option<&str>) -> Vec<SessionInfo> {
        self.sessions_with_flags(domain, |_| Vec::new())
    }

    /// Like [`Router::sessions`], with each session's per-session settings as `flags`
    /// tells them (see [`crate::hooks::Hooks::session_flags`]).
    pub fn sessions_with_flags(
        &self,
        domain: Option<&str>,
        flags: impl Fn(&SessionEntry) -> Vec<String>,
    ) -> Vec<SessionInfo> {
        let mut out: Vec<SessionInfo> = self
            .accounts
            .iter()
            .filter(|e| domain.is_none_or(|d| e.key().domain == d))
            .flat_map(|e| {
                e.value()
                    .iter()
                    .map(|s| SessionInfo {
                        flags: flags(s),
                        ..s.info()
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort_by(|a, b| a.jid.cmp(&b.jid));
        out
    }

    /// Stanzas waiting in all sessions' outgoing queues, and the deepest queue (metrics).
    pub fn queue_depths(&self) -> (usize, usize) {
        let mut total = 0;
        let mut deepest = 0;
        for e in self.accounts.iter() {
            for s in e.value() {
                let q = s.queued();
                total += q;
                deepest = deepest.max(q);
            }
        }
        (total, deepest)
    }

    /// Every session bound on this node (shutdown, drain); not other nodes' sessions.
    pub fn all_entries(&self) -> Vec<Arc<SessionEntry>> {
        self.accounts
            .iter()
            .flat_map(|e| {
                e.value()
                    .iter()
                    .filter(|s| !s.is_remote())
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Ends every session of these domains with a stream error; returns how many were
    /// told to close.
    pub fn close_domains(
        &self,
        domains: &[String],
        cond: crate::session::StreamErrorCondition,
        text: Option<&str>,
    ) -> usize {
        if domains.is_empty() {
            return 0;
        }
        let sessions: Vec<Arc<SessionEntry>> = self
            .accounts
            .iter()
            .filter(|e| domains.contains(&e.key().domain))
            // Every node closes its own sessions of a removed tenant.
            .flat_map(|e| {
                e.value()
                    .iter()
                    .filter(|s| !s.is_remote())
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect();
        for s in &sessions {
            s.close(cond, text);
        }
        sessions.len()
    }

    /// Ends every session of an account (the account was deleted or its password changed
    /// by an administrator); returns how many were told to close.
    pub fn kick_account(&self, account: &Account) -> usize {
        let sessions = self.resources(account);
        for s in &sessions {
            s.close(
                crate::session::StreamErrorCondition::NotAuthorized,
                Some("account changed by an administrator"),
            );
        }
        sessions.len()
    }
}
