//! XEP-0163 Personal Eventing Protocol: every account is a publish-subscribe service
//! (the XEP-0060 subset PEP needs) whose nodes its owner publishes to and whose
//! notifications go to the owner's contacts by presence subscription, filtered by the
//! `+notify` features of each resource's XEP-0115 caps. The profiles clients build on
//! it are just nodes with the right configuration: avatars (XEP-0084), nicknames
//! (XEP-0172), bookmarks (XEP-0402, with the XEP-0048 `storage:bookmarks` node kept in
//! step: [`bookmarks`]), OMEMO device lists and bundles (XEP-0384, open access); the
//! avatar's hash goes into the owner's presence (XEP-0398, [`avatar`]).
//!
//! | module | job |
//! | --- | --- |
//! | [`config`] | node configuration, `publish-options` preconditions, the form |
//! | [`access`] | who may read a node |
//! | [`affiliations`] | the owner's affiliations (whitelist), an entity's own affiliations and subscriptions |
//! | [`caps`] | caps cache: `+notify` features by verification string |
//! | [`handlers`] | the pubsub and pubsub#owner requests |
//! | [`notify`] | event notifications, and last items for a new resource or subscription |
//! | [`avatar`] | XEP-0398: the avatar hash in presence |
//! | [`bookmarks`] | XEP-0402 → XEP-0048 compatibility node |
//! | [`private_bookmarks`] | XEP-0402 `#compat`: XEP-0049 private bookmarks and the XEP-0402 node |
//!
//! A node is stored whole ([`crate::storage::PepStore`]); an owner's writes are
//! serialized by a lock per owner in this process, so two resources publishing at once
//! lose nothing.

pub mod access;
pub mod affiliations;
pub mod avatar;
pub mod bookmarks;
pub mod caps;
pub mod config;
pub mod handlers;
pub mod notify;
pub mod private_bookmarks;
pub mod remote;

use std::sync::Arc;

use dashmap::DashMap;

use crate::hooks::{Address, DiscoIdentity, Feature, IqType, Registrar, SessionEvent};
use crate::storage::Account;
use crate::xml::ns;

pub const PUBSUB_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
pub const PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
pub const PUBSUB_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";

/// The pubsub features a PEP account service supports (XEP-0060 §10, XEP-0163 §5).
const FEATURES: [&str; 24] = [
    "http://jabber.org/protocol/pubsub#access-open",
    "http://jabber.org/protocol/pubsub#access-presence",
    "http://jabber.org/protocol/pubsub#access-roster",
    "http://jabber.org/protocol/pubsub#access-whitelist",
    "http://jabber.org/protocol/pubsub#auto-create",
    "http://jabber.org/protocol/pubsub#auto-subscribe",
    "http://jabber.org/protocol/pubsub#config-node",
    "http://jabber.org/protocol/pubsub#delete-nodes",
    "http://jabber.org/protocol/pubsub#filtered-notifications",
    "http://jabber.org/protocol/pubsub#item-ids",
    "http://jabber.org/protocol/pubsub#last-published",
    "http://jabber.org/protocol/pubsub#modify-affiliations",
    "http://jabber.org/protocol/pubsub#multi-items",
    "http://jabber.org/protocol/pubsub#persistent-items",
    "http://jabber.org/protocol/pubsub#publish",
    "http://jabber.org/protocol/pubsub#publish-options",
    "http://jabber.org/protocol/pubsub#purge-nodes",
    "http://jabber.org/protocol/pubsub#retract-items",
    "http://jabber.org/protocol/pubsub#retrieve-affiliations",
    "http://jabber.org/protocol/pubsub#retrieve-items",
    "http://jabber.org/protocol/pubsub#retrieve-subscriptions",
    "urn:xmpp:bookmarks:1#compat",
    "urn:xmpp:bookmarks:1#compat-pep",
    avatar::PEP_VCARD_CONVERSION,
];

/// The account's PEP nodes the requester may read, as disco#items entries (XEP-0163
/// §7.1): empty when the tenant does not run PEP or the query names a node.
pub async fn disco_nodes(req: &crate::hooks::IqRequest) -> Vec<crate::xml::Element> {
    let Some(owner) = req.account.clone() else {
        return vec![];
    };
    let query_node = req.payload().and_then(|q| q.attr("node"));
    if !req.tenant.spec.feature_enabled("pep") || query_node.is_some() {
        return vec![];
    }
    let o = owner.clone();
    let Ok(nodes) = handlers::load(&req.core, move |s| {
        s.node_names(&o)?
            .iter()
            .filter_map(|n| s.node(&o, n).transpose())
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    else {
        return vec![];
    };
    let requester = req.origin.account();
    let roster = if requester == Some(&owner) {
        crate::storage::Roster::default()
    } else {
        crate::roster::load_roster(&req.core, &owner).await
    };
    nodes
        .iter()
        .filter(|node| match requester {
            Some(r) => access::may_read(&owner, &roster, node, r),
            None => config::access_model(node) == config::AccessModel::Open,
        })
        .map(|node| {
            crate::xml::Element::new("item", ns::DISCO_ITEMS)
                .with_attr("jid", owner.to_string())
                .with_attr("node", node.name.clone())
        })
        .collect()
}

/// The `pep` feature and its state.
#[derive(Default)]
pub struct Pep {
    /// Capabilities by verification string.
    pub caps: caps::CapsCache,
    /// One write at a time per owner.
    locks: DashMap<Account, Arc<tokio::sync::Mutex<()>>>,
    /// Online resources of contacts on other servers.
    pub remote: remote::RemoteResources,
}

impl Pep {
    /// The owner's write lock.
    pub(crate) fn lock_of(&self, owner: &Account) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.entry(owner.clone()).or_default().clone()
    }
}

impl Feature for Pep {
    fn name(&self) -> &'static str {
        "pep"
    }

    fn register(self: Arc<Self>, r: &mut Registrar<'_>) {
        let pep = self.clone();
        r.iq(IqType::Set, ns::PUBSUB, &[Address::Own], move |req| {
            let pep = pep.clone();
            crate::boxed(async move { handlers::pubsub_set(&pep, req).await })
        });
        r.iq(IqType::Set, ns::PUBSUB, &[Address::Account], |req| {
            crate::boxed(async move { handlers::not_owner(&req) })
        });
        r.iq(
            IqType::Get,
            ns::PUBSUB,
            &[Address::Own, Address::Account],
            |req| crate::boxed(async move { handlers::pubsub_get(req).await }),
        );
        let pep = self.clone();
        r.iq(IqType::Set, PUBSUB_OWNER, &[Address::Own], move |req| {
            let pep = pep.clone();
            crate::boxed(async move { handlers::owner_set(&pep, req).await })
        });
        r.iq(IqType::Get, PUBSUB_OWNER, &[Address::Own], |req| {
            crate::boxed(async move { handlers::owner_get(req).await })
        });
        for ty in [IqType::Get, IqType::Set] {
            r.iq(ty, PUBSUB_OWNER, &[Address::Account], |req| {
                crate::boxed(async move { handlers::not_owner(&req) })
            });
        }
        // XEP-0398: the PEP avatar's hash in the owner's available presence. Registered
        // before vCard's decorator, which leaves a presence that has a hash alone.
        r.outgoing_presence(|core, account, mut presence| {
            crate::boxed(async move {
                avatar::stamp_presence(&core, &account, &mut presence).await;
                presence
            })
        });
        let pep = self.clone();
        r.on_session(SessionEvent::InitialPresence, move |core, entry| {
            // In a task of its own: the caps query is answered through the very
            // session whose routing work runs this hook.
            let pep = pep.clone();
            tokio::spawn(async move { notify::last_items_for(&pep, &core, &entry).await });
            crate::boxed(async {})
        });
        let pep = self.clone();
        r.on_presence_granted(move |core, publisher, subscriber| {
            // A task: this runs with both rosters locked, and the caps query may wait.
            let pep = pep.clone();
            tokio::spawn(async move {
                notify::last_items_on_grant(&pep, &core, &publisher, &subscriber).await
            });
            crate::boxed(async {})
        });
        let pep = self.clone();
        r.remote_presence_seen(move |core, presence| remote::seen(&pep, core, presence));
        for event in [SessionEvent::Closed, SessionEvent::Moved] {
            let pep = self.clone();
            r.on_session(event, move |_core, entry| {
                pep.caps.forget(&entry);
                crate::boxed(async {})
            });
        }
        r.disco_identity(
            Address::Account,
            DiscoIdentity {
                category: "pubsub",
                kind: "pep",
                name: None,
            },
        );
        // An account's disco#info (its own included) lists what is registered for
        // `Account`.
        for f in FEATURES {
            r.disco_feature(Address::Account, f);
        }
        r.disco_feature(Address::Account, ns::PUBSUB);
    }
}
