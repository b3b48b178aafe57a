//! Sessions on their way to this node (see [`crate::handoff`]): while a session is
//! fetched from the node its client left, what reaches this node for it from other nodes
//! is held; once it is bound here, that goes to it after what it sends again, and what a
//! fetch that failed leaves is routed again (other resources, offline storage).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::core::Core;
use crate::core::router::SessionEntry;
use crate::xml::Element;
use crate::xmpp::Account;

/// What waits for the sessions of one account being fetched.
#[derive(Default)]
struct Waiting {
    /// Fetches in progress for the account.
    fetches: usize,
    /// (full JID, stanza) that reached this node for a session not bound here yet.
    held: Vec<(String, Element)>,
}

/// The accounts with a session on its way here.
pub struct Arriving {
    core: Arc<Core>,
    accounts: Mutex<HashMap<Account, Waiting>>,
    /// Entries of `accounts` (read without the lock for every stanza from NATS).
    count: AtomicUsize,
}

impl Arriving {
    pub fn new(core: Arc<Core>) -> Arriving {
        Arriving {
            core,
            accounts: Mutex::new(HashMap::new()),
            count: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Account, Waiting>> {
        self.accounts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A session of `account` is being fetched.
    pub fn start(&self, account: &Account) {
        let mut accounts = self.lock();
        accounts.entry(account.clone()).or_default().fetches += 1;
        self.count.store(accounts.len(), Ordering::Release);
    }

    /// Holds `stanza` for `jid` (of `account`, resource `resource`) if a session of the
    /// account is being fetched and `jid` is not bound here; hands it back otherwise.
    pub fn hold(
        &self,
        account: &Account,
        resource: &str,
        jid: &str,
        stanza: Element,
    ) -> Result<(), Element> {
        if self.count.load(Ordering::Acquire) == 0 {
            return Err(stanza);
        }
        let mut accounts = self.lock();
        // Looked up under the lock: `adopt` registers the session under it.
        let bound_here = self
            .core
            .router
            .resource(account, resource)
            .is_some_and(|e| !e.is_remote());
        match accounts.get_mut(account) {
            Some(w) if !bound_here => {
                w.held.push((jid.to_string(), stanza));
                Ok(())
            }
            _ => Err(stanza),
        }
    }

    /// Registers the fetched session in the routing table and queues for it what was
    /// held; returns the entry it replaced.
    pub fn adopt(&self, entry: &Arc<SessionEntry>) -> Option<Arc<SessionEntry>> {
        let mut undelivered = Vec::new();
        let replaced;
        {
            // Under the lock: a stanza from NATS is either held (and queued here, after
            // what the session sends again) or finds the session registered.
            let mut accounts = self.lock();
            replaced = self.core.router.register(entry.clone());
            if let Some(w) = accounts.get_mut(&entry.account) {
                let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut w.held)
                    .into_iter()
                    .partition(|(jid, _)| *jid == entry.full_jid);
                w.held = others;
                for (jid, stanza) in mine {
                    if let Err(stanza) = entry.try_deliver(stanza) {
                        undelivered.push((jid, stanza));
                    }
                }
            }
        }
        self.end(&entry.account, undelivered);
        replaced
    }

    /// One fetch for `account` is over (`undelivered`: what its session could not
    /// take); what the last one leaves is routed again.
    pub fn end(&self, account: &Account, undelivered: Vec<(String, Element)>) {
        let mut rest = undelivered;
        {
            let mut accounts = self.lock();
            if let Some(w) = accounts.get_mut(account) {
                w.fetches = w.fetches.saturating_sub(1);
                if w.fetches == 0 {
                    rest.extend(accounts.remove(account).map(|w| w.held).unwrap_or_default());
                }
            }
            self.count.store(accounts.len(), Ordering::Release);
        }
        if rest.is_empty() {
            return;
        }
        let core = self.core.clone();
        let account = account.clone();
        tokio::spawn(async move {
            for (_, stanza) in rest {
                if stanza.name() == "message" {
                    crate::core::pipeline::message::redeliver(&core, &account, stanza).await;
                }
            }
        });
    }
}
