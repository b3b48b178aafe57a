//! XEP-0160 offline messages: stored while an account has no available resource and
//! delivered, with a XEP-0203 delay stamp, when it next sends initial presence. A message
//! stays stored until the client has it (stream management acknowledged it, or the
//! session that got it ended cleanly), so a crash mid-delivery loses none.
//!
//! A message stored after a session of its account read the stored ones (the storing
//! node did not know the session yet: it was becoming available meanwhile, or in a
//! cluster it is on another node whose announcement had not arrived) is delivered at
//! once too: after storing, this node and every other one hear of it, and each node
//! holding an available session of the account delivers what is stored to one of them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::hooks::{Address, Feature, Registrar, SessionEvent, Stored};
use crate::router::{Receipt, SessionEntry};
use crate::storage::{self, Account, OfflineMessage};
use crate::time::xep82_millis;
use crate::xml::{Element, ns, parser};
use heliograph_core::Core;

/// The `offline` feature.
#[derive(Default)]
pub struct Offline {
    in_flight: InFlight,
}

impl Feature for Offline {
    fn name(&self) -> &'static str {
        "offline"
    }

    fn register(self: Arc<Self>, r: &mut Registrar<'_>) {
        r.undeliverable(|core, account, msg| {
            crate::boxed(async move { store(&core, &account, &msg).await })
        });
        let this = self.clone();
        r.on_session(SessionEvent::InitialPresence, move |core, entry| {
            this.deliver(&core, &entry);
            crate::boxed(async {})
        });
        let this = self.clone();
        r.on_offline_stored(move |core, account| this.deliver_again(core, account));
        r.disco_feature(Address::Host, ns::OFFLINE);
    }
}

/// Stored messages on their way to a session of their account, by id: another session
/// of the account becoming available meanwhile does not get them too.
#[derive(Default)]
struct InFlight(Mutex<HashMap<Account, HashSet<u64>>>);

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Account, HashSet<u64>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True if the message was not in flight already (now it is).
    fn claim(&self, account: &Account, id: u64) -> bool {
        self.lock().entry(account.clone()).or_default().insert(id)
    }

    fn release(&self, account: &Account, ids: &[u64]) {
        let mut map = self.lock();
        if let Some(set) = map.get_mut(account) {
            for id in ids {
                set.remove(id);
            }
            if set.is_empty() {
                map.remove(account);
            }
        }
    }
}

/// Stores a message for later: [`Stored::Yes`] once it is durable, [`Stored::Refused`] when
/// the account's queue is full, [`Stored::Failed`] when storage failed (the caller bounces
/// the message with the matching error).
pub async fn store(core: &Arc<Core>, account: &Account, msg: &Element) -> Stored {
    let max = core.config().c2s.max_offline_messages;
    let stamp_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let stored = OfflineMessage {
        stanza: msg.to_string_in(ns::CLIENT),
        stamp_ms,
    };
    let store = core.storage.offline.clone();
    let account = account.clone();
    storage::blocking(move || {
        let pushed = store.count(&account).and_then(|n| {
            if n >= max {
                return Ok(false);
            }
            store.push(&account, &stored).map(|_| true)
        });
        match pushed {
            Ok(true) => Stored::Yes,
            Ok(false) => Stored::Refused,
            Err(e) => {
                tracing::error!(jid = %account, error = %e, "offline storage failed");
                Stored::Failed
            }
        }
    })
    .await
}

/// Stored messages read at a time.
const PAGE: usize = 256;
/// Confirmed messages removed from storage at a time.
const REMOVE_BATCH: usize = 1024;

impl Offline {
    /// Delivers every stored message to a session that just became available, from a
    /// task of its own: it waits for room in the session's queue, so an account with more
    /// stored messages than the queue holds gets them all instead of being closed as a
    /// slow client. A message leaves storage only once the session confirms the client
    /// has it (see [`Receipt`]): a crash or a lost connection mid-delivery loses nothing,
    /// and at worst a message comes twice.
    pub fn deliver(self: &Arc<Self>, core: &Arc<Core>, entry: &Arc<SessionEntry>) {
        let (this, core, entry) = (self.clone(), core.clone(), entry.clone());
        tokio::spawn(async move { this.deliver_now(&core, &entry).await });
    }

    /// A message was stored for `account`: this node's preferred session of the account,
    /// if it has one, gets what is stored. Messages already on their way to a session
    /// here are not sent twice; a session that reads its stored messages for the first
    /// time meanwhile shares them the same way. Every node holding a session of the
    /// account does this (their registries may disagree for a moment about the others'
    /// sessions; each is sure of its own), so in a race two devices may both get a
    /// message, and none misses it.
    fn deliver_again(self: &Arc<Self>, core: &Arc<Core>, account: &Account) {
        let sessions = core.router.resources(account);
        if let Some(entry) = preferred_here(&sessions) {
            self.deliver(core, entry);
        }
    }

    async fn deliver_now(&self, core: &Arc<Core>, entry: &Arc<SessionEntry>) {
        let account = &entry.account;
        let (tx, mut confirmed) = mpsc::unbounded_channel();
        let mut claimed = Vec::new();
        let mut after = None;
        let limits = core.parser_limits();
        let wait = Duration::from_secs(core.config().c2s.write_timeout.max(1));
        'pages: loop {
            let store = core.storage.offline.clone();
            let acct = account.clone();
            let page = match core
                .storage
                .read(move || store.peek(&acct, after, PAGE))
                .await
            {
                Ok(page) if page.is_empty() => break,
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(jid = %account, error = %e, "reading offline messages failed");
                    break;
                }
            };
            for queued in page {
                after = Some(queued.id);
                if !self.in_flight.claim(account, queued.id) {
                    continue;
                }
                claimed.push(queued.id);
                let Some(el) = prepare(entry, &queued.message, limits) else {
                    tracing::error!(jid = %account, "removing an unreadable offline message");
                    remove(core, account, vec![queued.id]).await;
                    continue;
                };
                let receipt = Receipt::new(queued.id, tx.clone());
                if entry.send_stored(el, receipt, wait).await.is_err() {
                    // The session went away (or stopped reading): the rest stays stored.
                    break 'pages;
                }
            }
            let mut done = Vec::new();
            while let Ok(id) = confirmed.try_recv() {
                done.push(id);
            }
            remove(core, account, done).await;
        }
        // Until the session has confirmed or dropped the last receipt.
        drop(tx);
        let mut done = Vec::new();
        while confirmed.recv_many(&mut done, REMOVE_BATCH).await > 0 {
            remove(core, account, std::mem::take(&mut done)).await;
        }
        self.in_flight.release(account, &claimed);
    }
}

/// The session of this node that stored messages go to when several could take them:
/// one that takes messages to the bare JID (available, priority not negative: the
/// others are why a message was stored), the highest priority, then the first full JID.
fn preferred_here(sessions: &[Arc<SessionEntry>]) -> Option<&Arc<SessionEntry>> {
    sessions
        .iter()
        .filter(|e| !e.is_remote() && e.accepts_bare_messages())
        .min_by(|a, b| {
            b.priority()
                .cmp(&a.priority())
                .then_with(|| a.full_jid.cmp(&b.full_jid))
        })
}

/// The stored message as it goes to `entry`: addressed to the session, with a XEP-0203
/// delay stamp of when it was stored. `None` if it cannot be read.
fn prepare(
    entry: &SessionEntry,
    m: &OfflineMessage,
    limits: crate::xml::ParserLimits,
) -> Option<Element> {
    let mut el = parser::parse_element(m.stanza.as_bytes(), ns::CLIENT, limits).ok()?;
    el.set_attr("to", entry.full_jid.clone());
    let stamp = UNIX_EPOCH + Duration::from_millis(m.stamp_ms);
    // A message stamped by this server already (one stream management rescued after a
    // session ended) keeps that stamp: the earlier time is the truer one.
    let domain = entry.account.domain.as_str();
    let stamped = el
        .children()
        .any(|c| c.is("delay", ns::DELAY) && c.attr("from") == Some(domain));
    if !stamped {
        el.push_child(
            Element::new("delay", ns::DELAY)
                .with_attr("from", entry.account.domain.clone())
                .with_attr("stamp", xep82_millis(stamp))
                .with_text("Offline storage"),
        );
    }
    Some(el)
}

/// Removes messages the client has from storage.
async fn remove(core: &Arc<Core>, account: &Account, ids: Vec<u64>) {
    if ids.is_empty() {
        return;
    }
    let store = core.storage.offline.clone();
    let acct = account.clone();
    if let Err(e) = storage::blocking(move || store.remove(&acct, &ids)).await {
        // They stay stored and come again next time: twice rather than never.
        tracing::error!(jid = %account, error = %e, "removing delivered offline messages failed");
    }
}
