//! The requests of XEP-0060 a PEP service answers: `publish` (with item ids and
//! `publish-options` preconditions, creating the node on first use), `retract`, `items`
//! (latest N, by id, RSM paging) and the entity's own `affiliations`/`subscriptions` in
//! the `pubsub` namespace; `configure` and `affiliations` (get and set), `purge` and
//! `delete` in `pubsub#owner`. Writes go to the owner's own account only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use heliograph_core::Core;

use super::{PUBSUB_ERRORS, PUBSUB_OWNER, Pep, access, affiliations, bookmarks, config, notify};
use crate::hooks::IqRequest;
use crate::stanza::{self, Condition};
use crate::storage::{self, Account, PepItem, PepNode, StorageResult};
use crate::xml::{Element, ns, parser};

/// A refused request: the stanza condition and, if any, the pubsub-specific one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub condition: Condition,
    pub pubsub: Option<&'static str>,
    pub text: Option<&'static str>,
}

pub(super) fn refuse(
    condition: Condition,
    pubsub: Option<&'static str>,
    text: &'static str,
) -> Refusal {
    Refusal {
        condition,
        pubsub,
        text: Some(text),
    }
}

/// The error reply with the pubsub condition added (XEP-0060 §7, §12).
fn error(iq: &Element, r: Refusal) -> Option<Element> {
    let mut reply = stanza::error_reply(iq, r.condition, r.text)?;
    if let Some(app) = r.pubsub
        && let Some(err) = reply.child_mut("error", ns::CLIENT)
    {
        err.push_child(Element::new(app, PUBSUB_ERRORS));
    }
    Some(reply)
}

pub(super) fn internal(e: storage::StorageError) -> Refusal {
    tracing::error!(error = %e, "PEP storage failed");
    refuse(Condition::InternalServerError, None, "storage failed")
}

/// Writing to another account's PEP service.
pub fn not_owner(req: &IqRequest) -> Option<Element> {
    error(
        &req.iq,
        refuse(
            Condition::Forbidden,
            None,
            "only the owner may change a PEP node",
        ),
    )
}

/// Reads PEP storage (see `Storage::read`).
pub(super) async fn load<T: Send + 'static>(
    core: &Arc<Core>,
    f: impl FnOnce(&dyn storage::PepStore) -> StorageResult<T> + Send + 'static,
) -> StorageResult<T> {
    let store = core.storage.pep.clone();
    core.storage.read(move || f(store.as_ref())).await
}

/// Writes PEP storage, off the runtime's threads.
pub(super) async fn save<T: Send + 'static>(
    core: &Arc<Core>,
    f: impl FnOnce(&dyn storage::PepStore) -> StorageResult<T> + Send + 'static,
) -> StorageResult<T> {
    let store = core.storage.pep.clone();
    storage::blocking(move || f(store.as_ref())).await
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The node attribute, required and non-empty.
fn node_name(el: &Element) -> Result<String, Refusal> {
    match el.attr("node") {
        Some(n) if !n.is_empty() && !n.contains('\0') => Ok(n.to_string()),
        _ => Err(refuse(
            Condition::BadRequest,
            Some("nodeid-required"),
            "a node is required",
        )),
    }
}

/// Serializes an item payload for storage (and reads it back: [`parse_payload`]).
pub(super) fn serialize_payload(payload: &Element) -> String {
    payload.to_string_in(ns::PUBSUB)
}

pub(super) fn parse_payload(core: &Core, text: &str) -> Option<Element> {
    parser::parse_element(text.as_bytes(), ns::PUBSUB, core.parser_limits()).ok()
}

/// `<iq type='set'><pubsub xmlns='…pubsub'>`: publish or retract.
pub async fn pubsub_set(pep: &Arc<Pep>, req: IqRequest) -> Option<Element> {
    let owner = req.account.clone()?;
    let result = match req.payload().and_then(|p| p.first_child()) {
        Some(op) if op.is("publish", ns::PUBSUB) => publish(pep, &req, &owner).await,
        Some(op) if op.is("retract", ns::PUBSUB) => retract(pep, &req, &owner).await,
        Some(op) if op.is("create", ns::PUBSUB) => create(pep, &req, &owner).await,
        _ => Err(refuse(
            Condition::FeatureNotImplemented,
            None,
            "only publish, retract and create are supported on a PEP service",
        )),
    };
    result.map_or_else(|r| error(&req.iq, r), Some)
}

/// The form of `publish-options` or `configure`, if any.
fn form_in(parent: Option<&Element>) -> Result<BTreeMap<String, Vec<String>>, Refusal> {
    match parent.and_then(|p| p.child("x", ns::DATA_FORMS)) {
        None => Ok(BTreeMap::new()),
        Some(x) => config::read_form(x).map_err(|_| {
            refuse(
                Condition::BadRequest,
                Some("invalid-options"),
                "unknown or invalid node configuration",
            )
        }),
    }
}

/// Creates a node explicitly (XEP-0060 §8.1), with an optional configuration.
async fn create(pep: &Arc<Pep>, req: &IqRequest, owner: &Account) -> Result<Element, Refusal> {
    let ps = req.payload().expect("checked");
    let create = ps.child("create", ns::PUBSUB).expect("checked");
    let name = node_name(create)?;
    let fields = form_in(ps.child("configure", ns::PUBSUB))?;
    let lock = pep.lock_of(owner);
    let _guard = lock.lock().await;
    let limit = req.tenant.spec.pep.max_nodes as usize;
    let (o, n) = (owner.clone(), name.clone());
    let (exists, count) = load(&req.core, move |s| {
        Ok((s.node(&o, &n)?.is_some(), s.node_names(&o)?.len()))
    })
    .await
    .map_err(internal)?;
    if exists {
        return Err(refuse(Condition::Conflict, None, "the node exists"));
    }
    if count >= limit {
        return Err(refuse(
            Condition::NotAllowed,
            Some("max-nodes-exceeded"),
            "too many PEP nodes",
        ));
    }
    let node = PepNode {
        name,
        config: fields,
        ..Default::default()
    };
    let o = owner.clone();
    save(&req.core, move |s| s.put_node(&o, &node))
        .await
        .map_err(internal)?;
    Ok(stanza::iq_result(&req.iq))
}

async fn publish(pep: &Arc<Pep>, req: &IqRequest, owner: &Account) -> Result<Element, Refusal> {
    let ps = req.payload().expect("checked");
    let publish = ps.child("publish", ns::PUBSUB).expect("checked");
    let name = node_name(publish)?;
    let items: Vec<&Element> = publish
        .children()
        .filter(|c| c.is("item", ns::PUBSUB))
        .collect();
    let [item] = items.as_slice() else {
        return Err(refuse(
            Condition::BadRequest,
            Some("invalid-payload"),
            "publish exactly one item",
        ));
    };
    let payloads: Vec<&Element> = item.children().collect();
    let [payload] = payloads.as_slice() else {
        return Err(refuse(
            Condition::BadRequest,
            Some("invalid-payload"),
            "an item carries exactly one payload element",
        ));
    };
    let payload_text = serialize_payload(payload);
    let settings = req.tenant.spec.pep;
    if payload_text.len() > settings.max_item_bytes as usize {
        return Err(refuse(
            Condition::NotAcceptable,
            Some("payload-too-big"),
            "the item is larger than this server accepts",
        ));
    }
    let options = form_in(ps.child("publish-options", ns::PUBSUB))?;
    let id = match item.attr("id") {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => format!("{:016x}", rand::random::<u64>()),
    };
    let publisher = req
        .origin
        .session()
        .map(|s| s.full_jid.clone())
        .unwrap_or_else(|| owner.to_string());
    let new_item = PepItem {
        id: id.clone(),
        payload: payload_text,
        publisher,
        stamp_ms: now_ms(),
    };

    let lock = pep.lock_of(owner);
    let guard = lock.lock().await;
    let (o, n) = (owner.clone(), name.clone());
    let (existing, count) = load(&req.core, move |s| {
        let node = s.node(&o, &n)?;
        let count = if node.is_none() {
            s.node_names(&o)?.len()
        } else {
            0
        };
        Ok((node, count))
    })
    .await
    .map_err(internal)?;
    let mut node = match existing {
        Some(node) => {
            if config::unmet_precondition(&node, &options).is_some() {
                return Err(refuse(
                    Condition::Conflict,
                    Some("precondition-not-met"),
                    "the node's configuration does not match the publish-options",
                ));
            }
            node
        }
        None => {
            if count >= settings.max_nodes as usize {
                return Err(refuse(
                    Condition::NotAllowed,
                    Some("max-nodes-exceeded"),
                    "too many PEP nodes",
                ));
            }
            PepNode {
                name: name.clone(),
                config: options,
                ..Default::default()
            }
        }
    };
    node.items.retain(|i| i.id != id);
    node.items.push(new_item);
    let keep = config::max_items(&node, settings.max_items);
    if node.items.len() > keep {
        let extra = node.items.len() - keep;
        node.items.drain(..extra);
    }
    let stored = node.clone();
    let o = owner.clone();
    save(&req.core, move |s| s.put_node(&o, &stored))
        .await
        .map_err(internal)?;
    if name == bookmarks::NODE {
        bookmarks::sync_legacy(&req.core, owner, &node).await;
    }
    drop(guard);

    let published = node.items.last().expect("just pushed").clone();
    notify::published(pep, &req.core, owner, &node, &published).await;
    let answer = Element::new("pubsub", ns::PUBSUB).with_child(
        Element::new("publish", ns::PUBSUB)
            .with_attr("node", name)
            .with_child(Element::new("item", ns::PUBSUB).with_attr("id", id)),
    );
    Ok(stanza::iq_result_with(&req.iq, answer))
}

async fn retract(pep: &Arc<Pep>, req: &IqRequest, owner: &Account) -> Result<Element, Refusal> {
    let retract = req
        .payload()
        .and_then(|p| p.child("retract", ns::PUBSUB))
        .expect("checked");
    let name = node_name(retract)?;
    let ids: Vec<String> = retract
        .children()
        .filter(|c| c.is("item", ns::PUBSUB))
        .filter_map(|i| i.attr("id").map(str::to_string))
        .collect();
    if ids.is_empty() {
        return Err(refuse(
            Condition::BadRequest,
            Some("item-required"),
            "name the item to retract",
        ));
    }
    let notify_subscribers = retract
        .attr("notify")
        .is_some_and(|v| v == "1" || v == "true");
    let lock = pep.lock_of(owner);
    let guard = lock.lock().await;
    let (o, n) = (owner.clone(), name.clone());
    let mut node = load(&req.core, move |s| s.node(&o, &n))
        .await
        .map_err(internal)?
        .ok_or(refuse(Condition::ItemNotFound, None, "no such node"))?;
    let before = node.items.len();
    node.items.retain(|i| !ids.contains(&i.id));
    if node.items.len() == before {
        return Err(refuse(Condition::ItemNotFound, None, "no such item"));
    }
    let stored = node.clone();
    let o = owner.clone();
    save(&req.core, move |s| s.put_node(&o, &stored))
        .await
        .map_err(internal)?;
    if name == bookmarks::NODE {
        bookmarks::sync_legacy(&req.core, owner, &node).await;
    }
    drop(guard);
    if notify_subscribers {
        notify::retracted(pep, &req.core, owner, &node, &ids).await;
    }
    Ok(stanza::iq_result(&req.iq))
}

/// `<iq type='get'><pubsub><items node='…'/></pubsub>`: the owner's or a contact's items.
pub async fn pubsub_get(req: IqRequest) -> Option<Element> {
    let owner = req.account.clone()?;
    let requester = req.origin.account().cloned();
    let result = match (req.payload().and_then(|p| p.first_child()), requester) {
        (Some(items), _) if items.is("items", ns::PUBSUB) => get_items(&req, &owner, items).await,
        (Some(op), Some(requester)) if op.is("affiliations", ns::PUBSUB) => {
            affiliations::own_affiliations(&req.core, &owner, &requester, op)
                .await
                .map(|answer| stanza::iq_result_with(&req.iq, answer))
        }
        (Some(op), Some(requester)) if op.is("subscriptions", ns::PUBSUB) => {
            affiliations::own_subscriptions(&req.core, &owner, &requester, op)
                .await
                .map(|answer| stanza::iq_result_with(&req.iq, answer))
        }
        _ => Err(refuse(
            Condition::FeatureNotImplemented,
            None,
            "only items, affiliations and subscriptions requests are supported on a PEP service",
        )),
    };
    result.map_or_else(|r| error(&req.iq, r), Some)
}

async fn get_items(req: &IqRequest, owner: &Account, items: &Element) -> Result<Element, Refusal> {
    let name = node_name(items)?;
    let (o, n) = (owner.clone(), name.clone());
    let node = load(&req.core, move |s| s.node(&o, &n))
        .await
        .map_err(internal)?
        .ok_or(refuse(Condition::ItemNotFound, None, "no such node"))?;
    let allowed = match req.origin.account() {
        Some(requester) if requester == owner => true,
        Some(requester) => {
            let roster = crate::roster::load_roster(&req.core, owner).await;
            access::may_read(owner, &roster, &node, requester)
        }
        None => config::access_model(&node) == config::AccessModel::Open,
    };
    let outcast = req
        .origin
        .account()
        .and_then(|r| access::affiliation(&node, r))
        == Some(storage::PepAffiliation::Outcast);
    if outcast {
        return Err(refuse(
            Condition::Forbidden,
            None,
            "the owner banned you from this node",
        ));
    }
    if !allowed {
        let (cond, app) = match config::access_model(&node) {
            config::AccessModel::Presence => {
                (Condition::NotAuthorized, "presence-subscription-required")
            }
            config::AccessModel::Roster => (Condition::NotAuthorized, "not-in-roster-group"),
            _ => (Condition::NotAllowed, "closed-node"),
        };
        return Err(refuse(cond, Some(app), "you may not see this node"));
    }
    let wanted: Vec<&str> = items
        .children()
        .filter(|c| c.is("item", ns::PUBSUB))
        .filter_map(|i| i.attr("id"))
        .collect();
    let rsm = req.payload().and_then(|p| p.child("set", ns::RSM));
    let mut selected: Vec<&PepItem> = node.items.iter().collect();
    let mut set = None;
    if !wanted.is_empty() {
        selected.retain(|i| wanted.contains(&i.id.as_str()));
    } else if let Some(rsm) = rsm {
        let (page, answer) = rsm_page(&node.items, rsm)?;
        selected = page;
        set = Some(answer);
    } else if let Some(max) = items.attr("max_items") {
        let max: usize = max
            .parse()
            .map_err(|_| refuse(Condition::BadRequest, None, "max_items must be a number"))?;
        let skip = selected.len().saturating_sub(max);
        selected.drain(..skip);
    }
    let mut out = Element::new("items", ns::PUBSUB).with_attr("node", name);
    for item in selected {
        out.push_child(item_element(&req.core, item, ns::PUBSUB));
    }
    let mut pubsub = Element::new("pubsub", ns::PUBSUB).with_child(out);
    if let Some(set) = set {
        pubsub.push_child(set);
    }
    Ok(stanza::iq_result_with(&req.iq, pubsub))
}

/// An item as sent in `items` answers (`pubsub`) and events (`pubsub#event`).
pub(super) fn item_element(core: &Core, item: &PepItem, namespace: &str) -> Element {
    let mut el = Element::new("item", namespace).with_attr("id", item.id.clone());
    if namespace == super::PUBSUB_EVENT {
        el.set_attr("publisher", heliograph_xmpp::jid::bare(&item.publisher));
    }
    if let Some(payload) = parse_payload(core, &item.payload) {
        el.push_child(payload);
    }
    el
}

/// XEP-0059 paging over the items (oldest first): `after`/`before` an id, `max` items;
/// an empty `before` asks for the last page.
fn rsm_page<'a>(
    items: &'a [PepItem],
    rsm: &Element,
) -> Result<(Vec<&'a PepItem>, Element), Refusal> {
    let max = match rsm.child_text("max", ns::RSM) {
        Some(m) => m
            .trim()
            .parse::<usize>()
            .map_err(|_| refuse(Condition::BadRequest, None, "RSM max must be a number"))?,
        None => usize::MAX,
    };
    let position = |id: &str| {
        items.iter().position(|i| i.id == id).ok_or(refuse(
            Condition::ItemNotFound,
            None,
            "no item with that RSM id",
        ))
    };
    let (start, end) = match (
        rsm.child_text("after", ns::RSM),
        rsm.child_text("before", ns::RSM),
    ) {
        (Some(after), _) => {
            let s = position(after.trim())? + 1;
            (s, (s.saturating_add(max)).min(items.len()))
        }
        (None, Some(before)) => {
            let e = if before.trim().is_empty() {
                items.len()
            } else {
                position(before.trim())?
            };
            (e.saturating_sub(max), e)
        }
        (None, None) => (0, max.min(items.len())),
    };
    let page: Vec<&PepItem> = items[start..end].iter().collect();
    let mut set = Element::new("set", ns::RSM);
    if let (Some(first), Some(last)) = (page.first(), page.last()) {
        set.push_child(
            Element::new("first", ns::RSM)
                .with_attr("index", start.to_string())
                .with_text(first.id.clone()),
        );
        set.push_child(Element::new("last", ns::RSM).with_text(last.id.clone()));
    }
    set.push_child(Element::new("count", ns::RSM).with_text(items.len().to_string()));
    Ok((page, set))
}

/// `pubsub#owner` get: the node's configuration form or its affiliations.
pub async fn owner_get(req: IqRequest) -> Option<Element> {
    let owner = req.account.clone()?;
    let result = async {
        let op = req
            .payload()
            .and_then(|p| p.first_child())
            .filter(|op| op.is("configure", PUBSUB_OWNER) || op.is("affiliations", PUBSUB_OWNER))
            .ok_or(refuse(
                Condition::FeatureNotImplemented,
                None,
                "only configure and affiliations are supported",
            ))?;
        let name = node_name(op)?;
        let (o, n) = (owner.clone(), name.clone());
        let node = load(&req.core, move |s| s.node(&o, &n))
            .await
            .map_err(internal)?
            .ok_or(refuse(Condition::ItemNotFound, None, "no such node"))?;
        let content = if op.name() == "affiliations" {
            affiliations::owner_list(&owner, &node)
        } else {
            Element::new("configure", PUBSUB_OWNER)
                .with_attr("node", name)
                .with_child(config::form(&node))
        };
        let answer = Element::new("pubsub", PUBSUB_OWNER).with_child(content);
        Ok(stanza::iq_result_with(&req.iq, answer))
    }
    .await;
    result.map_or_else(|r| error(&req.iq, r), Some)
}

/// `pubsub#owner` set: configure, affiliations, purge or delete.
pub async fn owner_set(pep: &Arc<Pep>, req: IqRequest) -> Option<Element> {
    let owner = req.account.clone()?;
    let result = async {
        let op = req.payload().and_then(|p| p.first_child()).ok_or(refuse(
            Condition::BadRequest,
            None,
            "empty request",
        ))?;
        let name = node_name(op)?;
        let lock = pep.lock_of(&owner);
        let guard = lock.lock().await;
        let (o, n) = (owner.clone(), name.clone());
        let mut node = load(&req.core, move |s| s.node(&o, &n))
            .await
            .map_err(internal)?
            .ok_or(refuse(Condition::ItemNotFound, None, "no such node"))?;
        match op.name() {
            "configure" => {
                let fields = form_in(Some(op))?;
                node.config.extend(fields);
                let keep = config::max_items(&node, req.tenant.spec.pep.max_items);
                let extra = node.items.len().saturating_sub(keep);
                node.items.drain(..extra);
                let o = owner.clone();
                save(&req.core, move |s| s.put_node(&o, &node))
                    .await
                    .map_err(internal)?;
            }
            "affiliations" => {
                affiliations::apply(&owner, &mut node, op)?;
                let o = owner.clone();
                save(&req.core, move |s| s.put_node(&o, &node))
                    .await
                    .map_err(internal)?;
            }
            "purge" => {
                node.items.clear();
                let stored = node.clone();
                let o = owner.clone();
                save(&req.core, move |s| s.put_node(&o, &stored))
                    .await
                    .map_err(internal)?;
                if name == bookmarks::NODE {
                    bookmarks::sync_legacy(&req.core, &owner, &node).await;
                }
                drop(guard);
                notify::purged(pep, &req.core, &owner, &node).await;
            }
            "delete" => {
                let o = owner.clone();
                let n = name.clone();
                save(&req.core, move |s| {
                    if n == bookmarks::NODE {
                        s.delete_node(&o, bookmarks::LEGACY_NODE)?;
                    }
                    s.delete_node(&o, &n)
                })
                .await
                .map_err(internal)?;
                drop(guard);
                notify::deleted(pep, &req.core, &owner, &node).await;
            }
            _ => {
                return Err(refuse(
                    Condition::FeatureNotImplemented,
                    None,
                    "only configure, affiliations, purge and delete are supported",
                ));
            }
        }
        Ok(stanza::iq_result(&req.iq))
    }
    .await;
    result.map_or_else(|r| error(&req.iq, r), Some)
}
