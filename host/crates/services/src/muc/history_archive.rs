//! A persistent room's discussion history read back from the room's archive (XEP-0313
//! for rooms, in the shared storage) when the room is loaded: after a restart, or on
//! another cluster node when the node hosting it died. The archive holds every groupchat
//! message with a body as the room broadcast it, which is exactly what the history keeps;
//! the last `history_length` of them become the history again, stamped with the time
//! they were archived. Without the archive (MAM off for the tenant) the history starts
//! empty, as before.

use std::time::{Duration, UNIX_EPOCH};

use heliograph_core::Core;

use super::history::History;
use crate::storage::{self, Account, ArchiveQuery, Page, PageAt};
use crate::xml::{ns, parser};

/// The room archive's last `capacity` messages as a history (empty when the tenant has
/// no archive, or it cannot be read: logged).
pub async fn load(core: &Core, tenant_domain: &str, owner: Account, capacity: usize) -> History {
    let mut history = History::new(capacity);
    let archived = core
        .tenant_of(tenant_domain)
        .is_some_and(|t| t.spec.feature_enabled(crate::mam::FEATURE));
    if capacity == 0 || !archived {
        return history;
    }
    let store = core.storage.archive.clone();
    let query = ArchiveQuery {
        page: Page {
            max: capacity,
            at: PageAt::Last,
        },
        ..Default::default()
    };
    let room = owner.to_string();
    let page = match storage::blocking(move || store.query(&owner, &query)).await {
        Ok(page) => page,
        Err(e) => {
            tracing::error!(room, error = %e, "reading the room's history from its archive failed");
            return history;
        }
    };
    let limits = core.parser_limits();
    for m in page.messages {
        match parser::parse_element(m.stanza.as_bytes(), ns::CLIENT, limits) {
            Ok(stanza) => history.push(&stanza, UNIX_EPOCH + Duration::from_millis(m.id.ms())),
            Err(e) => tracing::warn!(room, error = %e, "an archived room message does not parse"),
        }
    }
    history
}
