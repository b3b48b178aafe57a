//! Roster management (RFC 6121 §2) with versioning (XEP-0237): roster get and set, roster
//! pushes to interested resources, and the storage helpers [`super::presence`] uses to apply
//! subscription changes.
//!
//! **Pending-only items.** RFC 6121 §3.1.3 says an inbound subscription request must not
//! add the requester to the contact's roster, yet the server has to remember the request
//! (pending-in) until the contact answers. `RosterItem` has no separate flag for this, so
//! such requests are stored as items the user never touched and filtered out of roster
//! results and pushes: an item is *hidden* when it has no name (`None`), no groups, no
//! subscription, no pending-out and no pre-approval (see [`is_hidden`]). Everything the
//! user puts in the roster (roster set, outgoing subscribe/subscribed) is marked by giving
//! it a name, `Some("")` standing for "in the roster, without a name" (never sent to clients).
//! A hidden item with nothing pending is deleted rather than stored.
//!
//! **Concurrency.** A subscription change reads and writes the items of two accounts; all
//! roster writes run under per-account striped locks ([`lock_accounts`]) taken in a fixed
//! order, so concurrent changes cannot lose each other's updates nor deadlock.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};

use tokio::sync::{Mutex, MutexGuard};

use heliograph_core::Core;

use crate::hooks::{Address, Feature, IqType, Registrar, StreamStage};
use crate::presence::subscription::Kind as SubKind;
use crate::router::SessionEntry;
use crate::stanza::{self, Condition};
use crate::storage::{self, Account, Roster, RosterItem, StorageResult};
use crate::xml::{Element, ns};

/// The `roster` feature.
pub struct Rosters;

impl Feature for Rosters {
    fn name(&self) -> &'static str {
        "roster"
    }

    fn register(self: Arc<Self>, r: &mut Registrar<'_>) {
        for ty in [IqType::Get, IqType::Set] {
            r.iq(ty, ns::ROSTER, &[Address::Own], |req| {
                crate::boxed(async move {
                    let entry = req.origin.session()?.clone();
                    handle_iq(&req.core, &entry, &req.iq).await
                })
            });
        }
        r.stream_feature(StreamStage::Authenticated, |_| {
            Some(Element::new("ver", ns::ROSTER_VER))
        });
        r.disco_feature(Address::Host, ns::ROSTER);
        r.disco_feature(Address::Host, ns::ROSTER_VER);
    }
}

const STRIPES: usize = 64;

static LOCKS: LazyLock<Vec<Mutex<()>>> =
    LazyLock::new(|| (0..STRIPES).map(|_| Mutex::new(())).collect());

fn stripe(account: &Account) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    account.hash(&mut h);
    (h.finish() % STRIPES as u64) as usize
}

/// Locks the rosters of these accounts against concurrent changes (held until the guards
/// are dropped). Locks are taken in stripe order, so callers never deadlock each other.
pub(crate) async fn lock_accounts(accounts: &[&Account]) -> Vec<MutexGuard<'static, ()>> {
    let mut idx: Vec<usize> = accounts.iter().map(|a| stripe(a)).collect();
    idx.sort_unstable();
    idx.dedup();
    let mut guards = Vec::with_capacity(idx.len());
    for i in idx {
        guards.push(LOCKS[i].lock().await);
    }
    guards
}

/// True for an item that only records a pending inbound request: not part of the roster
/// the user sees (see the module docs).
pub fn is_hidden(item: &RosterItem) -> bool {
    item.name.is_none()
        && item.groups.is_empty()
        && item.subscription == storage::Subscription::None
        && !item.ask
        && !item.approved
}

/// Marks an item as being in the user's roster (see the module docs).
pub(crate) fn mark_in_roster(item: &mut RosterItem) {
    if item.name.is_none() {
        item.name = Some(String::new());
    }
}

/// The `<item/>` element for a roster item (pending-in is internal and not shown).
pub fn item_element(item: &RosterItem) -> Element {
    let mut el = Element::new("item", ns::ROSTER).with_attr("jid", item.jid.clone());
    if let Some(name) = item.name.as_deref().filter(|n| !n.is_empty()) {
        el.set_attr("name", name);
    }
    el.set_attr("subscription", item.subscription.as_str());
    if item.ask {
        el.set_attr("ask", "subscribe");
    }
    if item.approved {
        el.set_attr("approved", "true");
    }
    for g in &item.groups {
        el.push_child(Element::new("group", ns::ROSTER).with_text(g.clone()));
    }
    el
}

/// Sends a roster push with this item to every interested resource of the account.
pub async fn push_item(core: &Arc<Core>, account: &Account, item: &RosterItem, version: u64) {
    push(core, account, item_element(item), version);
}

/// Roster push of a removal.
fn push_removed(core: &Core, account: &Account, jid: &str, version: u64) {
    let item = Element::new("item", ns::ROSTER)
        .with_attr("jid", jid)
        .with_attr("subscription", "remove");
    push(core, account, item, version);
}

fn push(core: &Core, account: &Account, item: Element, version: u64) {
    for s in core.router.resources(account) {
        if !s.presence().roster_requested {
            continue;
        }
        let query = Element::new("query", ns::ROSTER)
            .with_attr("ver", version.to_string())
            .with_child(item.clone());
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", format!("push-{:08x}", rand::random::<u32>()))
            .with_attr("to", s.full_jid.clone())
            .with_child(query);
        s.send(iq);
    }
}

/// One stored item.
pub(crate) async fn load_item(
    core: &Arc<Core>,
    account: &Account,
    contact: &str,
) -> StorageResult<Option<RosterItem>> {
    let store = core.storage.rosters.clone();
    let (acc, contact) = (account.clone(), contact.to_string());
    core.storage.read(move || store.item(&acc, &contact)).await
}

/// The whole stored roster (including hidden items); empty, with the error logged, if
/// storage fails.
pub(crate) async fn load_roster(core: &Arc<Core>, account: &Account) -> Roster {
    let store = core.storage.rosters.clone();
    let acc = account.clone();
    match core.storage.read(move || store.roster(&acc)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(jid = %account, error = %e, "reading roster failed");
            Roster::default()
        }
    }
}

/// Stores a changed item (`before` is the stored one, if any) and pushes the change to
/// the account's interested resources when the user can see it. Hidden items with nothing
/// pending are deleted. Callers hold [`lock_accounts`] for the account.
pub(crate) async fn save(
    core: &Arc<Core>,
    account: &Account,
    before: Option<&RosterItem>,
    after: RosterItem,
) -> StorageResult<()> {
    if before == Some(&after) {
        return Ok(());
    }
    let was_visible = before.is_some_and(|b| !is_hidden(b));
    let store = core.storage.rosters.clone();
    let acc = account.clone();
    if is_hidden(&after) && !after.pending_in {
        if before.is_none() {
            return Ok(());
        }
        let jid = after.jid.clone();
        let version = storage::blocking(move || store.remove_item(&acc, &jid)).await?;
        if was_visible {
            push_removed(core, account, &after.jid, version);
        }
        return Ok(());
    }
    let stored = after.clone();
    let version = storage::blocking(move || store.put_item(&acc, &stored)).await?;
    if !is_hidden(&after) {
        // Changes only to internal state (pending-in) look the same to the client: no push.
        if !(was_visible && before.map(item_element) == Some(item_element(&after))) {
            push_item(core, account, &after, version).await;
        }
    } else if was_visible {
        push_removed(core, account, &after.jid, version);
    }
    Ok(())
}

/// Roster get and set.
pub async fn handle_iq(
    core: &Arc<Core>,
    entry: &Arc<SessionEntry>,
    iq: &Element,
) -> Option<Element> {
    let query = iq.first_child()?;
    if !query.is("query", ns::ROSTER) {
        return stanza::error_reply(iq, Condition::BadRequest, None);
    }
    match stanza::stanza_type(iq) {
        "get" => Some(get(core, entry, iq, query).await),
        "set" => set(core, entry, iq, query).await,
        _ => None,
    }
}

async fn get(
    core: &Arc<Core>,
    entry: &Arc<SessionEntry>,
    iq: &Element,
    query: &Element,
) -> Element {
    entry.update_presence(|p| p.roster_requested = true);
    let roster = load_roster(core, &entry.account).await;
    let version = roster.version.to_string();
    if query.attr("ver") == Some(version.as_str()) {
        // XEP-0237 §2.4: the cached roster is current; changes come as pushes.
        return stanza::iq_result(iq);
    }
    let mut out = Element::new("query", ns::ROSTER).with_attr("ver", version);
    let mut items: Vec<&RosterItem> = roster.items.iter().filter(|i| !is_hidden(i)).collect();
    items.sort_by(|a, b| a.jid.cmp(&b.jid));
    for item in items {
        out.push_child(item_element(item));
    }
    stanza::iq_result_with(iq, out)
}

/// A parsed roster set.
struct SetRequest {
    jid: String,
    remove: bool,
    name: Option<String>,
    groups: Vec<String>,
}

/// The tenant's limits for `account` (the defaults when it has no tenant).
fn limits_of(core: &Core, account: &Account) -> crate::tenants::Limits {
    core.tenant_of(&account.domain)
        .map(|t| t.spec.limits)
        .unwrap_or_default()
}

/// Over `max` (0: no limit).
fn over(n: usize, max: u32) -> bool {
    max > 0 && n > max as usize
}

/// A refusal of a roster set: the condition and its text.
type Refusal = (Condition, String);

fn parse_set(query: &Element, limits: &crate::tenants::Limits) -> Result<SetRequest, Refusal> {
    let refuse = |cond, text: &str| (cond, text.to_string());
    let mut items = query.children().filter(|c| c.is("item", ns::ROSTER));
    let (Some(item), None) = (items.next(), items.next()) else {
        return Err(refuse(
            Condition::BadRequest,
            "a roster set has exactly one item",
        ));
    };
    let raw = item
        .attr("jid")
        .ok_or_else(|| refuse(Condition::BadRequest, "the item has no jid"))?;
    let jid = jid::Jid::new(raw).map_err(|_| refuse(Condition::JidMalformed, "invalid jid"))?;
    let jid = jid.to_bare().to_string();
    let remove = item.attr("subscription") == Some("remove");
    let name = item.attr("name").map(str::to_string);
    // RFC 6121 §2.3.3: names and groups longer than the server allows are not-acceptable.
    let max_name = limits.max_roster_name_length;
    if name
        .as_ref()
        .is_some_and(|n| over(n.chars().count(), max_name))
    {
        let text = format!("the name is longer than {max_name} characters");
        return Err((Condition::NotAcceptable, text));
    }
    let max_groups = limits.max_roster_groups;
    let max_group = limits.max_roster_group_length;
    let mut groups: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for g in item.children().filter(|c| c.is("group", ns::ROSTER)) {
        let group = g.text();
        if group.is_empty() {
            return Err(refuse(Condition::NotAcceptable, "empty group name"));
        }
        if over(group.chars().count(), max_group) {
            let text = format!("a group name is longer than {max_group} characters");
            return Err((Condition::NotAcceptable, text));
        }
        if !seen.insert(group.clone()) {
            return Err(refuse(Condition::BadRequest, "duplicate group"));
        }
        if over(groups.len() + 1, max_groups) {
            let text = format!("an item may be in at most {max_groups} groups");
            return Err((Condition::PolicyViolation, text));
        }
        groups.push(group);
    }
    Ok(SetRequest {
        jid,
        remove,
        name,
        groups,
    })
}

/// True when `account`'s roster holds the tenant's `max_roster_items` already: a new
/// item would pass the limit.
pub(crate) async fn roster_full(core: &Arc<Core>, account: &Account) -> StorageResult<bool> {
    let max = limits_of(core, account).max_roster_items;
    if max == 0 {
        return Ok(false);
    }
    let store = core.storage.rosters.clone();
    let acc = account.clone();
    let roster = storage::blocking(move || store.roster(&acc)).await?;
    Ok(roster.items.len() >= max as usize)
}

async fn set(
    core: &Arc<Core>,
    entry: &Arc<SessionEntry>,
    iq: &Element,
    query: &Element,
) -> Option<Element> {
    let req = match parse_set(query, &limits_of(core, &entry.account)) {
        Ok(r) => r,
        Err((cond, text)) => return stanza::error_reply(iq, cond, Some(&text)),
    };
    let account = &entry.account;
    if req.jid == account.to_string() {
        return stanza::error_reply(
            iq,
            Condition::NotAllowed,
            Some("the roster cannot contain the user's own JID"),
        );
    }
    let contact = crate::router::local_account(core, account, &req.jid);
    let mut locked = vec![account];
    if let Some(c) = &contact {
        locked.push(c);
    }
    let _guards = lock_accounts(&locked).await;
    let existing = match load_item(core, account, &req.jid).await {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(jid = %account, error = %e, "reading roster failed");
            return stanza::error_reply(iq, Condition::InternalServerError, None);
        }
    };
    if req.remove {
        let Some(item) = existing else {
            return stanza::error_reply(iq, Condition::ItemNotFound, None);
        };
        if let Err(e) = remove(core, account, contact.as_ref(), item).await {
            tracing::error!(jid = %account, error = %e, "removing roster item failed");
            return stanza::error_reply(iq, Condition::InternalServerError, None);
        }
        return Some(stanza::iq_result(iq));
    }
    if existing.is_none() {
        match roster_full(core, account).await {
            Ok(false) => {}
            Ok(true) => {
                let text = "the roster has as many items as it may";
                return stanza::error_reply(iq, Condition::PolicyViolation, Some(text));
            }
            Err(e) => {
                tracing::error!(jid = %account, error = %e, "reading roster failed");
                return stanza::error_reply(iq, Condition::InternalServerError, None);
            }
        }
    }
    let mut item = existing.clone().unwrap_or_else(|| RosterItem {
        jid: req.jid.clone(),
        ..Default::default()
    });
    item.name = Some(req.name.unwrap_or_default());
    item.groups = req.groups;
    // Unchanged items still get a push: the client asked for this state.
    let store = core.storage.rosters.clone();
    let acc = account.clone();
    let stored = item.clone();
    match storage::blocking(move || store.put_item(&acc, &stored)).await {
        Ok(version) => push_item(core, account, &item, version).await,
        Err(e) => {
            tracing::error!(jid = %account, error = %e, "storing roster item failed");
            return stanza::error_reply(iq, Condition::InternalServerError, None);
        }
    }
    Some(stanza::iq_result(iq))
}

/// RFC 6121 §2.5.2: cancels the subscriptions in both directions (and any pending request)
/// with the contact, then deletes the item and pushes the removal.
async fn remove(
    core: &Arc<Core>,
    account: &Account,
    contact: Option<&Account>,
    item: RosterItem,
) -> StorageResult<()> {
    let was_visible = !is_hidden(&item);
    if let Some(contact) = contact {
        let user_jid = account.to_string();
        let stanza = |kind: SubKind| {
            Element::new("presence", ns::CLIENT)
                .with_attr("type", kind.as_str())
                .with_attr("from", user_jid.clone())
                .with_attr("to", item.jid.clone())
        };
        if item.subscription.has_to() || item.ask {
            super::presence::route_inbound(
                core,
                account,
                contact,
                SubKind::Unsubscribe,
                stanza(SubKind::Unsubscribe),
            )
            .await;
        }
        if item.subscription.has_from() || item.pending_in {
            super::presence::route_inbound(
                core,
                account,
                contact,
                SubKind::Unsubscribed,
                stanza(SubKind::Unsubscribed),
            )
            .await;
        }
    }
    if contact.is_none() {
        super::presence::remote::cancel_on_remove(core, account, &item);
    }
    let store = core.storage.rosters.clone();
    let acc = account.clone();
    let jid = item.jid.clone();
    let version = storage::blocking(move || store.remove_item(&acc, &jid)).await?;
    if was_visible {
        push_removed(core, account, &item.jid, version);
    }
    if let Some(contact) = contact {
        // The user no longer sees the contact (the contact's side of the other direction
        // was handled with the `unsubscribed` above).
        if item.subscription.has_to() {
            super::presence::send_unavailable(core, contact, account).await;
        }
    }
    Ok(())
}
