//! The hook registry: how a feature plugs into the core, in the spirit of Prosody's
//! `module:hook` and MongooseIM's `gen_hook`.
//!
//! A feature is one type implementing [`Feature`]: a name and a `register` method that
//! tells a [`Registrar`] what it handles. The registry is built once at startup
//! ([`HooksBuilder`]) and read without locks afterwards. Everything a feature registers is
//! switched on or off per tenant by the feature's name (`[tenants.NAME.features]`): the
//! core asks [`Hooks`] for handlers *for a tenant* and gets only the enabled ones.
//!
//! What a feature can register:
//! - **iq handlers** by type and payload namespace, for an [`Address`]: the server itself
//!   (`Host`), the sender's own account (`Own`), or another local account answered by the
//!   server on its behalf (`Account`) — [`Registrar::iq`];
//! - the **presence** a client session sends ([`Registrar::client_presence`]), and the
//!   presence another server sends to a local account ([`Registrar::remote_presence`],
//!   and observers of it: [`Registrar::remote_presence_seen`]);
//! - what happens to a **message nobody online can take** ([`Registrar::undeliverable`]),
//!   and what a session that already read its offline messages does when another one is
//!   stored for its account, here or on another cluster node
//!   ([`Registrar::on_offline_stored`]);
//! - **session events**: bound, initial presence, closed, moved to another cluster node
//!   ([`Registrar::on_session`]), and the per-session state a session moving to another
//!   node takes along ([`Registrar::carry_session_flag`]: carbons);
//! - **filters** run before delivery to a local account ([`Registrar::filter`]);
//! - **message hooks**, which see (and may change) every message a client sends and
//!   every message that reaches a local account, with the sessions it goes to
//!   ([`Registrar::message`]: carbons, the archive, push);
//! - **stream features** ([`Registrar::stream_feature`]), **disco** features, identities
//!   and items ([`Registrar::disco_feature`], [`Registrar::disco_identity`],
//!   [`Registrar::disco_items`]);
//! - **hosted domains** (MUC services, components: [`Registrar::hosted`]);
//! - **disco nodes**: disco#info and disco#items of a node of the server or an account
//!   ([`Registrar::disco_node`]: the ad-hoc command list);
//! - **presence decorators**, which may add to the available presence a client
//!   broadcasts (XEP-0153 avatar hashes: [`Registrar::outgoing_presence`]);
//! - **presence grants**: a local contact may now see a local account's presence (its
//!   subscription gained `to`: the last PEP items of XEP-0163 §4.3,
//!   [`Registrar::on_presence_granted`]).
//!
//! `docs/ARCHITECTURE.md` has a worked example.

mod types;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::BoxFuture;

use crate::context::Core;
use crate::router::{HostedResolver, SessionEntry};
use crate::storage::Account;
use crate::tenants::Tenant;
use crate::xml::Element;

pub use types::{
    Address, DiscoIdentity, FeatureContext, Filter, FilterCheck, IqRequest, IqType, MessageContext,
    MessageStage, SessionEvent, Stored, StreamStage, Verdict,
};

/// A feature: one module's worth of behaviour, registered under one name.
pub trait Feature: Send + Sync + 'static {
    /// The name tenants use to switch it (`[tenants.NAME.features] NAME = false`).
    fn name(&self) -> &'static str;
    /// Registers the feature's handlers.
    fn register(self: Arc<Self>, r: &mut Registrar<'_>);
}

/// An iq handler: answers one request (or `None` when it already answered itself).
pub type IqHandler = Arc<dyn Fn(IqRequest) -> BoxFuture<'static, Option<Element>> + Send + Sync>;
/// Takes every presence stanza a bound client sends (`from` stamped).
pub type PresenceHandler =
    Arc<dyn Fn(Arc<Core>, Arc<SessionEntry>, Element) -> BoxFuture<'static, ()> + Send + Sync>;
/// Takes every presence stanza another server sends to a local address (`from` checked
/// to be on that server's domain).
pub type RemotePresenceHandler =
    Arc<dyn Fn(Arc<Core>, Element) -> BoxFuture<'static, ()> + Send + Sync>;
/// Sees (without taking) presence another server sends to a local address, before it is
/// handled; must not wait (spawn for anything slow).
pub type RemotePresenceObserver = Arc<dyn Fn(&Arc<Core>, &Element) + Send + Sync>;
/// Takes a message for an account none of whose sessions could take it.
pub type UndeliverableHandler =
    Arc<dyn Fn(Arc<Core>, Account, Element) -> BoxFuture<'static, Stored> + Send + Sync>;
/// Told that a message was stored for an account (by [`UndeliverableHandler`]s on this
/// node or another cluster node); must not wait (spawn for anything slow).
pub type OfflineStoredHandler = Arc<dyn Fn(&Arc<Core>, &Account) + Send + Sync>;
/// Runs on a session event.
pub type SessionHandler =
    Arc<dyn Fn(Arc<Core>, Arc<SessionEntry>) -> BoxFuture<'static, ()> + Send + Sync>;
/// Sees a message at a [`MessageStage`]; may change it. Runs on the routing hot path:
/// anything slow (storage) goes to a task of the feature's own.
pub type MessageHook = Arc<dyn Fn(&MessageContext<'_>, &mut Element) + Send + Sync>;
/// A stream feature element for a stream at some stage, if it applies.
pub type StreamFeatureProvider = Arc<dyn Fn(&FeatureContext<'_>) -> Option<Element> + Send + Sync>;
/// Which disco query a node handler answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoQuery {
    Info,
    Items,
}

/// Answers a disco query for one node (the `<query/>` payload, or `None`: item-not-found).
pub type DiscoNodeHandler = Arc<dyn Fn(&IqRequest, DiscoQuery) -> Option<Element> + Send + Sync>;

/// Sees (and may add to) the available presence a client broadcasts, before it is
/// stored and sent; gets the sender's account.
pub type PresenceDecorator =
    Arc<dyn Fn(Arc<Core>, Account, Element) -> BoxFuture<'static, Element> + Send + Sync>;
/// Runs when a local subscriber may newly see a local publisher's presence; gets the
/// publisher, then the subscriber.
pub type GrantHandler =
    Arc<dyn Fn(Arc<Core>, Account, Account) -> BoxFuture<'static, ()> + Send + Sync>;
/// `<item/>`s a domain lists in its disco#items.
pub type DiscoItemsProvider = Arc<dyn Fn(&Core, &str) -> Vec<Element> + Send + Sync>;

/// A per-session setting of a feature that the cluster carries between nodes (a session
/// moving to another node takes it along; the session registry replicates it): its name,
/// whether the session has it, and how to switch it on a session of this node (one that
/// arrived, or the replica of another node's session).
struct SessionFlag {
    name: &'static str,
    get: Arc<dyn Fn(&SessionEntry) -> bool + Send + Sync>,
    set: SetSessionFlag,
}

/// Switches a carried per-session setting on or off for a session of this node.
type SetSessionFlag = Arc<dyn Fn(&SessionEntry, bool) + Send + Sync>;

/// One registered iq handler: the request type and address it serves.
struct IqEntry {
    ty: IqType,
    address: Address,
    handler: IqHandler,
}

/// Index of a feature in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FeatureId(usize);

struct Entry<T> {
    feature: FeatureId,
    item: T,
}

/// The registry (see the module docs).
#[derive(Default)]
pub struct Hooks {
    /// Unique in the process: tenants keep which of `names` they have on by it.
    id: u64,
    names: Vec<&'static str>,
    /// iq handlers by payload namespace.
    iq: HashMap<&'static str, Vec<Entry<IqEntry>>>,
    client_presence: Vec<Entry<PresenceHandler>>,
    remote_presence: Vec<Entry<RemotePresenceHandler>>,
    remote_presence_seen: Vec<Entry<RemotePresenceObserver>>,
    undeliverable: Vec<Entry<UndeliverableHandler>>,
    offline_stored: Vec<Entry<OfflineStoredHandler>>,
    session: Vec<Entry<(SessionEvent, SessionHandler)>>,
    session_flags: Vec<Entry<SessionFlag>>,
    filters: Vec<Entry<Arc<dyn Filter>>>,
    messages: Vec<Entry<(MessageStage, MessageHook)>>,
    stream_features: Vec<Entry<(StreamStage, StreamFeatureProvider)>>,
    disco_features: Vec<Entry<(Address, &'static str)>>,
    disco_identities: Vec<Entry<(Address, DiscoIdentity)>>,
    disco_items: Vec<Entry<(Address, DiscoItemsProvider)>>,
    hosted: Vec<Arc<dyn HostedResolver>>,
    presence_decorators: Vec<Entry<PresenceDecorator>>,
    disco_nodes: Vec<Entry<(Address, &'static str, DiscoNodeHandler)>>,
    presence_grants: Vec<Entry<GrantHandler>>,
    /// Features that queue writes in the core's backlog (see [`Registrar::writes_behind`]).
    writes_behind: Vec<Entry<()>>,
}

/// Builds a [`Hooks`] from features, in registration order (which is also the order
/// handlers of the same kind run in).
#[derive(Default)]
pub struct HooksBuilder {
    hooks: Hooks,
}

impl HooksBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a feature. Panics if a feature of the same name is registered already:
    /// names are what tenants switch features by.
    pub fn feature(mut self, feature: Arc<dyn Feature>) -> Self {
        let name = feature.name();
        assert!(
            !self.hooks.names.contains(&name),
            "feature {name:?} registered twice"
        );
        let id = FeatureId(self.hooks.names.len());
        self.hooks.names.push(name);
        feature.register(&mut Registrar {
            hooks: &mut self.hooks,
            feature: id,
        });
        self
    }

    pub fn build(mut self) -> Arc<Hooks> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        self.hooks.id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Arc::new(self.hooks)
    }
}

/// What a feature registers through (see the module docs).
pub struct Registrar<'a> {
    hooks: &'a mut Hooks,
    feature: FeatureId,
}

impl Registrar<'_> {
    fn entry<T>(&self, item: T) -> Entry<T> {
        Entry {
            feature: self.feature,
            item,
        }
    }

    /// Handles `<iq type='get|set'>` requests whose payload is in `ns`, addressed to
    /// each of `addresses`.
    pub fn iq<F>(&mut self, ty: IqType, ns: &'static str, addresses: &[Address], handler: F)
    where
        F: Fn(IqRequest) -> BoxFuture<'static, Option<Element>> + Send + Sync + 'static,
    {
        let handler: IqHandler = Arc::new(handler);
        for a in addresses {
            let e = self.entry(IqEntry {
                ty,
                address: *a,
                handler: handler.clone(),
            });
            self.hooks.iq.entry(ns).or_default().push(e);
        }
    }

    /// Takes the presence stanzas bound clients send (broadcasts, directed presence,
    /// probes, subscriptions).
    pub fn client_presence<F>(&mut self, handler: F)
    where
        F: Fn(Arc<Core>, Arc<SessionEntry>, Element) -> BoxFuture<'static, ()>
            + Send
            + Sync
            + 'static,
    {
        let e = self.entry(Arc::new(handler) as PresenceHandler);
        self.hooks.client_presence.push(e);
    }

    /// Takes the presence stanzas other servers send to local addresses (subscriptions,
    /// probes, broadcasts of remote contacts).
    pub fn remote_presence<F>(&mut self, handler: F)
    where
        F: Fn(Arc<Core>, Element) -> BoxFuture<'static, ()> + Send + Sync + 'static,
    {
        let e = self.entry(Arc::new(handler) as RemotePresenceHandler);
        self.hooks.remote_presence.push(e);
    }

    /// Sees the presence other servers send to local addresses before it is handled
    /// (what remote resources are online, with which capabilities).
    pub fn remote_presence_seen<F>(&mut self, observer: F)
    where
        F: Fn(&Arc<Core>, &Element) + Send + Sync + 'static,
    {
        let e = self.entry(Arc::new(observer) as RemotePresenceObserver);
        self.hooks.remote_presence_seen.push(e);
    }

    /// Takes messages for accounts with no session that can receive them (offline
    /// storage); handlers are asked in order until one stores the message.
    pub fn undeliverable<F>(&mut self, handler: F)
    where
        F: Fn(Arc<Core>, Account, Element) -> BoxFuture<'static, Stored> + Send + Sync + 'static,
    {
        let e = self.entry(Arc::new(handler) as UndeliverableHandler);
        self.hooks.undeliverable.push(e);
    }

    /// Runs `handler` each time a message was stored for an account, on this node or
    /// (announced) on another node of the cluster: a session of the account may have read
    /// its stored messages just before, while the storing node did not know the session
    /// yet.
    pub fn on_offline_stored<F>(&mut self, handler: F)
    where
        F: Fn(&Arc<Core>, &Account) + Send + Sync + 'static,
    {
        let e = self.entry(Arc::new(handler) as OfflineStoredHandler);
        self.hooks.offline_stored.push(e);
    }

    /// Runs `handler` on a session event.
    pub fn on_session<F>(&mut self, event: SessionEvent, handler: F)
    where
        F: Fn(Arc<Core>, Arc<SessionEntry>) -> BoxFuture<'static, ()> + Send + Sync + 'static,
    {
        let e = self.entry((event, Arc::new(handler) as SessionHandler));
        self.hooks.session.push(e);
    }

    /// A per-session setting named `name` that the cluster carries between nodes: `get`
    /// tells whether a session has it (a session leaving for another node, a local
    /// session the registry announces), `set` switches it on or off for a session of this
    /// node (one bound after moving here, or the replica of another node's session, so
    /// that features acting for the account here reach the devices there). A feature
    /// changing the setting of a local session calls [`SessionEntry::settings_changed`].
    pub fn carry_session_flag<G, S>(&mut self, name: &'static str, get: G, set: S)
    where
        G: Fn(&SessionEntry) -> bool + Send + Sync + 'static,
        S: Fn(&SessionEntry, bool) + Send + Sync + 'static,
    {
        let e = self.entry(SessionFlag {
            name,
            get: Arc::new(get),
            set: Arc::new(set),
        });
        self.hooks.session_flags.push(e);
    }

    /// Runs `handler` when a local account's presence subscription to another local
    /// account becomes active (the subscriber's item gains `to`), with the publisher's
    /// and the subscriber's accounts, after both rosters are saved. Handlers run on the
    /// subscription path (roster locks held): anything slow goes to a task.
    pub fn on_presence_granted<F>(&mut self, handler: F)
    where
        F: Fn(Arc<Core>, Account, Account) -> BoxFuture<'static, ()> + Send + Sync + 'static,
    {
        let e = self.entry(Arc::new(handler) as GrantHandler);
        self.hooks.presence_grants.push(e);
    }

    /// Checks every stanza before it reaches a local account.
    pub fn filter(&mut self, filter: Arc<dyn Filter>) {
        let e = self.entry(filter);
        self.hooks.filters.push(e);
    }

    /// Sees every message at `stage` (see [`MessageStage`]), in registration order.
    pub fn message<F>(&mut self, stage: MessageStage, hook: F)
    where
        F: Fn(&MessageContext<'_>, &mut Element) + Send + Sync + 'static,
    {
        let e = self.entry((stage, Arc::new(hook) as MessageHook));
        self.hooks.messages.push(e);
    }

    /// Says that this feature's message hooks queue writes in the core's backlog
    /// (`Core::backlog`, the archive's copies): while it is over its bound, messages to
    /// and from the tenants that have the feature on wait for it. Other tenants' messages
    /// queue nothing there, and go on.
    pub fn writes_behind(&mut self) {
        let e = self.entry(());
        self.hooks.writes_behind.push(e);
    }

    /// Advertises a stream feature at `stage`.
    pub fn stream_feature<F>(&mut self, stage: StreamStage, provider: F)
    where
        F: Fn(&FeatureContext<'_>) -> Option<Element> + Send + Sync + 'static,
    {
        let e = self.entry((stage, Arc::new(provider) as StreamFeatureProvider));
        self.hooks.stream_features.push(e);
    }

    /// Lists `var` in disco#info of `address` (the server, or an account).
    pub fn disco_feature(&mut self, address: Address, var: &'static str) {
        let e = self.entry((address, var));
        self.hooks.disco_features.push(e);
    }

    /// Lists an identity in disco#info of `address`.
    pub fn disco_identity(&mut self, address: Address, identity: DiscoIdentity) {
        let e = self.entry((address, identity));
        self.hooks.disco_identities.push(e);
    }

    /// Adds `<item/>`s to disco#items of `address` (`Host`: a tenant domain, given as
    /// the provider's second argument).
    pub fn disco_items<F>(&mut self, address: Address, provider: F)
    where
        F: Fn(&Core, &str) -> Vec<Element> + Send + Sync + 'static,
    {
        let e = self.entry((address, Arc::new(provider) as DiscoItemsProvider));
        self.hooks.disco_items.push(e);
    }

    /// Answers disco#info and disco#items for `node` of `address`.
    pub fn disco_node<F>(&mut self, address: Address, node: &'static str, handler: F)
    where
        F: Fn(&IqRequest, DiscoQuery) -> Option<Element> + Send + Sync + 'static,
    {
        let e = self.entry((address, node, Arc::new(handler) as DiscoNodeHandler));
        self.hooks.disco_nodes.push(e);
    }

    /// Sees every available presence a client broadcasts (no `to`), in registration
    /// order, before the presence feature stores and sends it.
    pub fn outgoing_presence<F>(&mut self, decorator: F)
    where
        F: Fn(Arc<Core>, Account, Element) -> BoxFuture<'static, Element> + Send + Sync + 'static,
    {
        let e = self.entry(Arc::new(decorator) as PresenceDecorator);
        self.hooks.presence_decorators.push(e);
    }

    /// Serves domains inside the server (MUC services, components). Hosted domains have
    /// their own per-tenant settings, so the resolver decides for each tenant itself.
    pub fn hosted(&mut self, resolver: Arc<dyn HostedResolver>) {
        self.hooks.hosted.push(resolver);
    }
}

impl Hooks {
    /// Names of the registered features, in registration order.
    pub fn feature_names(&self) -> &[&'static str] {
        &self.names
    }

    /// The entries of `list` whose feature `tenant` has on.
    fn on<'a, 'b, T>(
        &'a self,
        tenant: &'b Tenant,
        list: &'a [Entry<T>],
    ) -> impl Iterator<Item = &'a T> + use<'a, 'b, T> {
        let on = tenant.features_on(self.id, &self.names);
        list.iter()
            .filter(move |e| on[e.feature.0])
            .map(|e| &e.item)
    }

    /// The handler for an iq request of `tenant` at `address`.
    pub fn iq_handler(
        &self,
        tenant: &Tenant,
        ty: IqType,
        ns: &str,
        address: Address,
    ) -> Option<&IqHandler> {
        let list = self.iq.get(ns)?;
        self.on(tenant, list)
            .find(|e| e.ty == ty && e.address == address)
            .map(|e| &e.handler)
    }

    /// The client presence handler for `tenant`, if any.
    pub fn client_presence(&self, tenant: &Tenant) -> Option<&PresenceHandler> {
        self.on(tenant, &self.client_presence).next()
    }

    /// The handler for presence from other servers to `tenant`'s users, if any.
    pub fn remote_presence(&self, tenant: &Tenant) -> Option<&RemotePresenceHandler> {
        self.on(tenant, &self.remote_presence).next()
    }

    /// Runs the observers of presence from other servers to `tenant`'s users.
    pub fn remote_presence_seen(&self, tenant: &Tenant, core: &Arc<Core>, presence: &Element) {
        for observer in self.on(tenant, &self.remote_presence_seen) {
            observer(core, presence);
        }
    }

    /// Undeliverable-message handlers for `tenant`, in order.
    pub fn undeliverable(&self, tenant: &Tenant) -> Vec<UndeliverableHandler> {
        self.on(tenant, &self.undeliverable).cloned().collect()
    }

    /// Runs the handlers told about a message stored for `account` (see
    /// [`Registrar::on_offline_stored`]).
    pub fn offline_stored(&self, core: &Arc<Core>, account: &Account) {
        if self.offline_stored.is_empty() {
            return;
        }
        let Some(tenant) = core.tenants.by_domain(&account.domain) else {
            return;
        };
        for h in self.on(&tenant, &self.offline_stored) {
            h(core, account);
        }
    }

    /// Runs the handlers of `event` for the session, in registration order.
    pub async fn session_event(
        &self,
        core: &Arc<Core>,
        event: SessionEvent,
        entry: &Arc<SessionEntry>,
    ) {
        let Some(tenant) = core.tenants.by_domain(&entry.account.domain) else {
            return;
        };
        let handlers: Vec<SessionHandler> = self
            .on(&tenant, &self.session)
            .filter(|(e, _)| *e == event)
            .map(|(_, h)| h.clone())
            .collect();
        for h in handlers {
            h(core.clone(), entry.clone()).await;
        }
    }

    /// The per-session settings a session has that the cluster carries (the names of
    /// those on).
    pub fn session_flags(&self, core: &Core, entry: &SessionEntry) -> Vec<String> {
        let Some(tenant) = core.tenants.by_domain(&entry.account.domain) else {
            return Vec::new();
        };
        self.on(&tenant, &self.session_flags)
            .filter(|f| (f.get)(entry))
            .map(|f| f.name.to_string())
            .collect()
    }

    /// Switches every carried setting of `entry` on if `flags` names it, off otherwise:
    /// for a session that arrived from another node, or the replica of one (an empty
    /// list when the replica goes, so features forget it).
    pub fn restore_session_flags(&self, core: &Core, entry: &SessionEntry, flags: &[String]) {
        let Some(tenant) = core.tenants.by_domain(&entry.account.domain) else {
            return;
        };
        for f in self.on(&tenant, &self.session_flags) {
            (f.set)(entry, flags.iter().any(|n| n == f.name));
        }
    }

    /// Runs the filters of the recipient's tenant; the first refusal wins.
    pub async fn filter(&self, core: &Arc<Core>, check: &FilterCheck<'_>) -> Verdict {
        if self.filters.is_empty() {
            return Verdict::Pass;
        }
        let Some(tenant) = core.tenants.by_domain(&check.to.domain) else {
            return Verdict::Pass;
        };
        for f in self.on(&tenant, &self.filters) {
            let verdict = match f.check_now(core, check) {
                Some(v) => v,
                None => f.check(core, check).await,
            };
            if verdict != Verdict::Pass {
                return verdict;
            }
        }
        Verdict::Pass
    }

    /// The filters' verdict if each can tell from memory; `None` if one needs to wait.
    pub fn filter_now(&self, core: &Core, check: &FilterCheck<'_>) -> Option<Verdict> {
        if self.filters.is_empty() {
            return Some(Verdict::Pass);
        }
        core.tenants
            .with_domain(&check.to.domain, |tenant| {
                for f in self.on(tenant, &self.filters) {
                    let verdict = f.check_now(core, check)?;
                    if verdict != Verdict::Pass {
                        return Some(verdict);
                    }
                }
                Some(Verdict::Pass)
            })
            .flatten()
    }

    /// Runs the message hooks of `ctx.stage` for the account's tenant, in order.
    pub fn message(&self, ctx: &MessageContext<'_>, msg: &mut Element) {
        if self.messages.is_empty() {
            return;
        }
        ctx.core.tenants.with_domain(&ctx.account.domain, |tenant| {
            for (stage, hook) in self.on(tenant, &self.messages) {
                if *stage == ctx.stage {
                    hook(ctx, msg);
                }
            }
        });
    }

    /// Whether `tenant` has a feature on that queues writes in the core's backlog.
    pub fn writes_behind(&self, tenant: &Tenant) -> bool {
        self.on(tenant, &self.writes_behind).next().is_some()
    }

    /// Stream features `tenant` advertises at a stage.
    pub fn stream_features(&self, ctx: &FeatureContext<'_>) -> Vec<Element> {
        self.on(ctx.tenant, &self.stream_features)
            .filter(|(s, _)| *s == ctx.stage)
            .filter_map(|(_, p)| p(ctx))
            .collect()
    }

    /// Disco features of `address` for `tenant`, sorted and without duplicates.
    pub fn disco_features(&self, tenant: &Tenant, address: Address) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = self
            .on(tenant, &self.disco_features)
            .filter(|(a, _)| *a == address)
            .map(|(_, f)| *f)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Disco identities of `address` for `tenant`.
    pub fn disco_identities(&self, tenant: &Tenant, address: Address) -> Vec<DiscoIdentity> {
        self.on(tenant, &self.disco_identities)
            .filter(|(a, _)| *a == address)
            .map(|(_, i)| i.clone())
            .collect()
    }

    /// Disco items of `domain` (a tenant domain) for `tenant`.
    pub fn disco_items(
        &self,
        core: &Core,
        tenant: &Tenant,
        address: Address,
        domain: &str,
    ) -> Vec<Element> {
        self.on(tenant, &self.disco_items)
            .filter(|(a, _)| *a == address)
            .flat_map(|(_, p)| p(core, domain))
            .collect()
    }

    /// The handler of a disco node of `address` for `tenant`.
    pub fn disco_node(
        &self,
        tenant: &Tenant,
        address: Address,
        node: &str,
    ) -> Option<&DiscoNodeHandler> {
        self.on(tenant, &self.disco_nodes)
            .find(|(a, n, _)| *a == address && *n == node)
            .map(|(_, _, h)| h)
    }

    /// Runs the presence decorators of the account's tenant over a broadcast presence.
    pub async fn decorate_presence(
        &self,
        core: &Arc<Core>,
        account: &Account,
        mut presence: Element,
    ) -> Element {
        if self.presence_decorators.is_empty() {
            return presence;
        }
        let Some(tenant) = core.tenants.by_domain(&account.domain) else {
            return presence;
        };
        let decorators: Vec<PresenceDecorator> = self
            .on(&tenant, &self.presence_decorators)
            .cloned()
            .collect();
        for d in decorators {
            presence = d(core.clone(), account.clone(), presence).await;
        }
        presence
    }

    /// Runs the presence-grant handlers of the publisher's tenant.
    pub async fn presence_granted(
        &self,
        core: &Arc<Core>,
        publisher: &Account,
        subscriber: &Account,
    ) {
        if self.presence_grants.is_empty() {
            return;
        }
        let Some(tenant) = core.tenants.by_domain(&publisher.domain) else {
            return;
        };
        let handlers: Vec<GrantHandler> =
            self.on(&tenant, &self.presence_grants).cloned().collect();
        for h in handlers {
            h(core.clone(), publisher.clone(), subscriber.clone()).await;
        }
    }

    /// The hosted-domain resolvers features registered.
    pub fn hosted_resolvers(&self) -> &[Arc<dyn HostedResolver>] {
        &self.hosted
    }
}
