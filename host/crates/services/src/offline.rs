//! XEP-0160 offline messages: stored while an account has no available resource and
//! delivered, with a XEP-0203 delay stamp, when it next sends initial presence.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::hooks::{Address, Feature, Registrar, SessionEvent, Stored};
use crate::router::SessionEntry;
use crate::storage::{self, Account, OfflineMessage};
use crate::time::xep82_millis;
use crate::xml::{Element, ns, parser};
use heliograph_core::Core;

/// The `offline` feature.
pub struct Offline;

impl Feature for Offline {
    fn name(&self) -> &'static str {
        "offline"
    }

    fn register(self: Arc<Self>, r: &mut Registrar<'_>) {
        r.undeliverable(|core, account, msg| {
            crate::boxed(async move { store(&core, &account, &msg).await })
        });
        r.on_session(SessionEvent::InitialPresence, |core, entry| {
            deliver(&core, &entry);
            crate::boxed(async {})
        });
        r.disco_feature(Address::Host, ns::OFFLINE);
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

/// Delivers every stored message to a session that just became available, from a task
/// of its own: it waits for room in the session's queue, so an account with more stored
/// messages than the queue holds gets them all instead of being closed as a slow client.
pub fn deliver(core: &Arc<Core>, entry: &Arc<SessionEntry>) {
    let (core, entry) = (core.clone(), entry.clone());
    tokio::spawn(async move { deliver_now(&core, &entry).await });
}

async fn deliver_now(core: &Arc<Core>, entry: &Arc<SessionEntry>) {
    let store = core.storage.offline.clone();
    let account = entry.account.clone();
    let messages = storage::blocking(move || store.take_all(&account)).await;
    let messages = match messages {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(jid = %entry.account, error = %e, "reading offline messages failed");
            return;
        }
    };
    let limits = core.parser_limits();
    let wait = Duration::from_secs(core.config().c2s.write_timeout.max(1));
    let mut messages = messages.into_iter();
    while let Some(m) = messages.next() {
        let Ok(mut el) = parser::parse_element(m.stanza.as_bytes(), ns::CLIENT, limits) else {
            tracing::error!(jid = %entry.account, "dropping unreadable offline message");
            continue;
        };
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
        if entry.send_waiting(el, wait).await.is_err() {
            // The session went away (or stopped reading) mid-delivery: put this message
            // and the rest back, in order.
            for m in std::iter::once(m).chain(messages) {
                let _ = store_raw(core, &entry.account, m).await;
            }
            return;
        }
    }
}

async fn store_raw(core: &Arc<Core>, account: &Account, m: OfflineMessage) -> bool {
    let store = core.storage.offline.clone();
    let account = account.clone();
    storage::blocking(move || store.push(&account, &m).is_ok()).await
}
