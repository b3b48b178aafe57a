//! The MUC services: one per enabled tenant domain `D` whose tenant has MUC enabled,
//! at `<subdomain>.D` (default `conference.D`), found through a [`HostedResolver`] so
//! they follow the tenants without registration.
//!
//! A service keeps its rooms in memory, each behind an async mutex: one stanza at a
//! time per room, and the stanzas a change produces are routed before the next change,
//! so every occupant sees the same order. Persistent rooms are stored (configuration,
//! affiliations, subject) under the tenant domain and loaded when the service is first
//! used. Stanza handling is in the `dispatch` module, the admin API's operations
//! (list, show, create, destroy, kick) in [`super::manage`].

use std::sync::{Arc, Weak};
use std::time::SystemTime;

use dashmap::DashMap;
use futures_util::future::BoxFuture;
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::config::RoomConfig;
use super::policy::RoomFacts;
use super::room::{Outbox, Room, RoomLimits, Subject};
use super::settings::MucSettings;
use super::types::Affiliation;
use heliograph_core::Core;

use crate::pipeline::{self, Origin};
use crate::router::{HostedDomain, HostedResolver, HostedTarget};
use crate::storage::{self, StoredRoom};
use crate::xml::Element;

/// Every tenant's MUC services, by service domain.
pub struct MucServices {
    pub(super) services: DashMap<String, Arc<MucService>>,
    me: Weak<MucServices>,
    /// In a cluster: rooms hosted on other nodes that users of this node joined.
    pub(super) forwarded: super::cluster::Forwarded,
}

impl Default for MucServices {
    fn default() -> Self {
        MucServices {
            services: DashMap::new(),
            me: Weak::new(),
            forwarded: Default::default(),
        }
    }
}

/// Resolves `<subdomain>.<tenant domain>` to the tenant's MUC service.
pub struct MucResolver(pub Arc<MucServices>);

impl HostedResolver for MucResolver {
    fn resolve(&self, core: &Core, domain: &str) -> Option<Arc<dyn HostedDomain>> {
        self.0
            .service(core, domain)
            .map(|s| s as Arc<dyn HostedDomain>)
    }
}

impl MucServices {
    /// An empty set of services.
    pub fn new() -> Arc<MucServices> {
        Arc::new_cyclic(|me| MucServices {
            services: DashMap::new(),
            me: me.clone(),
            forwarded: Default::default(),
        })
    }

    /// The service at `domain`, if it is `<subdomain>.D` for an enabled tenant domain D
    /// whose tenant has MUC enabled with that subdomain. Loads stored rooms on first use.
    pub fn service(&self, core: &Core, domain: &str) -> Option<Arc<MucService>> {
        let (sub, tenant_domain) = domain.split_once('.')?;
        let tenant = core.tenant_of(tenant_domain)?;
        let muc = &tenant.spec.muc;
        if !muc.enabled || muc.subdomain != sub {
            return None;
        }
        if let Some(s) = self.services.get(domain)
            && s.tenant == tenant.name
        {
            return Some(s.clone());
        }
        let service = MucService::load(
            core,
            self.me.clone(),
            domain,
            &tenant.name,
            tenant_domain,
            sub,
        );
        Some(
            self.services
                .entry(domain.to_string())
                .and_modify(|cur| {
                    if cur.tenant != tenant.name {
                        *cur = service.clone();
                    }
                })
                .or_insert(service)
                .clone(),
        )
    }

    /// `(service JID, name)` of the MUC service of a tenant domain, for the server's
    /// disco#items.
    pub fn service_of_domain(&self, core: &Core, domain: &str) -> Option<(String, String)> {
        let tenant = core.tenant_of(domain)?;
        let muc = &tenant.spec.muc;
        muc.enabled.then(|| {
            (
                format!("{}.{domain}", muc.subdomain),
                "Chatrooms".to_string(),
            )
        })
    }

    /// The MUC services of a tenant (one per domain), sorted by domain.
    pub fn tenant_services(&self, core: &Core, tenant: &str) -> Vec<Arc<MucService>> {
        let Some(t) = core.tenants.by_name(tenant).filter(|t| t.enabled()) else {
            return Vec::new();
        };
        let mut out: Vec<_> = t
            .spec
            .domains
            .iter()
            .filter_map(|d| self.service(core, &format!("{}.{d}", t.spec.muc.subdomain)))
            .collect();
        out.sort_by(|a, b| a.domain.cmp(&b.domain));
        out
    }

    /// Whether two users (bare JIDs) are both occupants of one room of a tenant's
    /// services (the call policy's "share a room").
    pub async fn share_a_room(&self, core: &Core, tenant: &str, a: &str, b: &str) -> bool {
        for service in self.tenant_services(core, tenant) {
            let rooms: Vec<_> = service.rooms.iter().map(|r| r.value().clone()).collect();
            for room in rooms {
                let room = room.lock().await;
                if room.occupants_of(a).next().is_some() && room.occupants_of(b).next().is_some() {
                    return true;
                }
            }
        }
        false
    }

    /// Number of rooms a tenant has in memory across its services.
    pub fn room_count(&self, tenant: &str) -> usize {
        self.services
            .iter()
            .filter(|s| s.tenant == tenant)
            .map(|s| s.rooms.len())
            .sum()
    }

    /// The service is going away for a tenant (disabled or removed): every occupant of
    /// its rooms leaves with 332, then its services are forgotten.
    pub async fn shut_down_tenant(&self, core: &Arc<Core>, tenant: &str) {
        self.retire(core, tenant, &[]).await;
    }

    /// A tenant's MUC domains become `keep` (its MUC turned off, subdomain moved, domains
    /// dropped, tenant changed by reload): the occupants of its services at other domains
    /// leave with 332 and those services are forgotten (persistent rooms stay stored).
    /// Call before the tenant registry changes, while occupants can still be reached.
    pub async fn retire(&self, core: &Arc<Core>, tenant: &str, keep: &[String]) {
        let retiring = |s: &MucService| s.tenant == tenant && !keep.contains(&s.domain);
        self.shut_down_where(core, retiring).await;
        self.services.retain(|_, s| !retiring(s));
    }

    /// The server is shutting down or draining: every occupant of every room leaves
    /// with 332 before the sessions close. Persistent rooms stay stored.
    pub async fn shut_down_all(&self, core: &Arc<Core>) {
        self.shut_down_where(core, |_| true).await;
    }

    async fn shut_down_where(&self, core: &Arc<Core>, which: impl Fn(&MucService) -> bool) {
        let services: Vec<Arc<MucService>> = self
            .services
            .iter()
            .filter(|s| which(s))
            .map(|s| s.clone())
            .collect();
        for s in services {
            s.shut_down(core).await;
        }
    }

    /// Forgets a tenant's services and in-memory rooms (tenant disabled or removed, its
    /// sessions ended); persistent rooms are loaded again from storage on next use.
    pub fn forget_tenant(&self, tenant: &str) {
        self.services.retain(|_, s| s.tenant != tenant);
    }
}

/// One tenant domain's MUC service.
pub struct MucService {
    /// `conference.example.com`.
    pub domain: String,
    pub tenant: String,
    /// `example.com`: where persistent rooms are stored.
    pub tenant_domain: String,
    pub subdomain: String,
    pub(super) rooms: DashMap<String, Arc<Mutex<Room>>>,
    this: Weak<MucService>,
    /// All services (room counts across the tenant's services).
    all: Weak<MucServices>,
}

impl MucService {
    /// A service with the persistent rooms stored for it. The store is read
    /// synchronously, once per service.
    fn load(
        core: &Core,
        all: Weak<MucServices>,
        domain: &str,
        tenant: &str,
        tenant_domain: &str,
        subdomain: &str,
    ) -> Arc<MucService> {
        let service = Arc::new_cyclic(|this| MucService {
            domain: domain.to_string(),
            tenant: tenant.to_string(),
            tenant_domain: tenant_domain.to_string(),
            subdomain: subdomain.to_string(),
            rooms: DashMap::new(),
            this: this.clone(),
            all,
        });
        let settings = core
            .tenants
            .by_name(tenant)
            .map(|t| t.spec.muc.clone())
            .unwrap_or_default();
        match core.storage.muc.rooms(tenant_domain) {
            Ok(stored) => {
                // In a cluster, only the rooms this node hosts (the others are loaded by
                // their host, or here on first use once hosted here).
                let here = |name: &str| {
                    core.placement
                        .get()
                        .is_none_or(|p| p.owner(&service.room_jid(name)).is_none())
                };
                for r in stored
                    .into_iter()
                    .filter(|r| r.subdomain == subdomain && here(&r.name))
                {
                    let room = service.room_from_stored(&r, &settings);
                    service
                        .rooms
                        .insert(r.name.clone(), Arc::new(Mutex::new(room)));
                }
            }
            Err(e) => {
                tracing::error!(service = domain, error = %e, "loading persistent rooms failed")
            }
        }
        service
    }

    fn room_from_stored(&self, r: &StoredRoom, settings: &MucSettings) -> Room {
        let base = RoomConfig::new(settings.max_occupants);
        let config = base
            .with_fields(r.config.iter().map(|(a, b)| (a.as_str(), b.as_str())))
            .unwrap_or_else(|e| {
                tracing::warn!(room = %r.name, error = %e, "stored room configuration ignored");
                base.clone()
            });
        let mut room = Room::new(self.room_jid(&r.name), config, limits(settings));
        room.service_admins = settings.admins.clone();
        for (jid, aff) in &r.affiliations {
            if let Some(a) = Affiliation::parse(aff) {
                room.store_affiliation(jid, a);
            }
        }
        room.subject = r.subject.clone().map(|(text, by)| Subject { text, by });
        room.dirty = false;
        room
    }

    /// `name@service`.
    pub fn room_jid(&self, name: &str) -> String {
        format!("{name}@{}", self.domain)
    }

    /// The tenant's current MUC settings (`None` once the tenant is gone).
    pub fn settings(&self, core: &Core) -> Option<MucSettings> {
        core.tenants
            .by_name(&self.tenant)
            .map(|t| t.spec.muc.clone())
    }

    /// Locks a room, with the tenant's current limits applied. `None` if there is no
    /// such room (or it was destroyed while waiting).
    pub async fn lock_room(&self, core: &Core, name: &str) -> Option<OwnedMutexGuard<Room>> {
        if core.placement.get().is_some() && !self.rooms.contains_key(name) {
            self.load_stored(core, name).await;
        }
        loop {
            let room = self.rooms.get(name)?.clone();
            let mut guard = room.clone().lock_owned().await;
            if guard.destroyed {
                let same = self
                    .rooms
                    .get(name)
                    .is_some_and(|cur| Arc::ptr_eq(&cur, &room));
                if same {
                    return None;
                }
                continue;
            }
            if let Some(s) = self.settings(core) {
                let l = limits(&s);
                guard.limits = l;
                guard.history.set_capacity(l.history_length);
                guard.service_admins = s.admins;
            }
            return Some(guard);
        }
    }

    /// In a cluster a persistent room comes to this node when its host died or the live
    /// nodes changed: loaded from storage on first use here.
    async fn load_stored(&self, core: &Core, name: &str) {
        let store = core.storage.muc.clone();
        let domain = self.tenant_domain.clone();
        let stored = match storage::blocking(move || store.rooms(&domain)).await {
            Ok(rooms) => rooms,
            Err(e) => {
                tracing::error!(service = %self.domain, error = %e, "loading a stored room failed");
                return;
            }
        };
        let Some(r) = stored
            .into_iter()
            .find(|r| r.subdomain == self.subdomain && r.name == name)
        else {
            return;
        };
        let settings = self.settings(core).unwrap_or_default();
        let mut room = self.room_from_stored(&r, &settings);
        let owner = self.archive_owner(name);
        let capacity = room.limits.history_length;
        room.history =
            super::history_archive::load(core, &self.tenant_domain, owner, capacity).await;
        let loaded = room.history.len();
        self.rooms
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(room)));
        tracing::info!(room = %self.room_jid(name), history = loaded, "muc: persistent room loaded on this node");
    }

    /// Inserts a new room locked by the caller; `None` if the name is taken.
    pub(super) fn insert_room(&self, name: &str, room: Room) -> Option<OwnedMutexGuard<Room>> {
        let cell = Arc::new(Mutex::new(room));
        let guard = cell.clone().try_lock_owned().ok()?;
        match self.rooms.entry(name.to_string()) {
            dashmap::Entry::Occupied(_) => None,
            dashmap::Entry::Vacant(v) => {
                v.insert(cell);
                Some(guard)
            }
        }
    }

    /// A new room as the tenant's settings make it.
    pub(super) fn new_room(&self, name: &str, settings: &MucSettings) -> Room {
        let mut room = Room::new(
            self.room_jid(name),
            RoomConfig::new(settings.max_occupants),
            limits(settings),
        );
        room.service_admins = settings.admins.clone();
        room
    }

    /// Facts about a room for the room policy.
    pub fn facts(&self, room: &Room) -> RoomFacts {
        RoomFacts {
            tenant: self.tenant.clone(),
            room: room.jid.clone(),
            occupants: room.occupant_count() as u32,
            config: room.config.to_pairs(false),
        }
    }

    /// Where a room's archive is stored (see [`storage::archive::room_owner`]).
    pub fn archive_owner(&self, room: &str) -> crate::storage::Account {
        storage::archive::room_owner(&self.tenant_domain, room, &self.subdomain)
    }

    /// Routes what a room operation produced and appends its lines to the room's public
    /// log, then stores or forgets the room as its state asks: persistent rooms are saved
    /// when changed; destroyed rooms and empty temporary rooms go away with their logs.
    pub(super) async fn finish(
        &self,
        core: &Arc<Core>,
        mut room: OwnedMutexGuard<Room>,
        out: Outbox,
    ) {
        self.send(core, out).await;
        let name = room.name().to_string();
        let lines = room.take_log_pending();
        if !lines.is_empty() {
            let store = core.storage.muc.clone();
            let (domain, n) = (self.tenant_domain.clone(), name.clone());
            let keep = room.limits.max_log_messages;
            let appended =
                storage::blocking(move || store.append_log(&domain, &n, &lines, keep)).await;
            if let Err(e) = appended {
                tracing::error!(room = %room.jid, error = %e, "writing the room log failed");
            }
        }
        let archived = room.take_archive_pending();
        if !archived.is_empty()
            && core
                .tenant_of(&self.tenant_domain)
                .is_some_and(|t| t.spec.feature_enabled(crate::mam::FEATURE))
        {
            let owner = self.archive_owner(&name);
            let entries: Vec<_> = archived.into_iter().map(|m| (owner.clone(), m)).collect();
            let store = core.storage.archive.clone();
            let n = entries.len();
            match storage::blocking(move || store.append(&entries)).await {
                Ok(()) => heliograph_metrics::archive("written", n),
                Err(e) => {
                    heliograph_metrics::archive("failed", n);
                    tracing::error!(room = %room.jid, error = %e, "archiving room messages failed");
                }
            }
        }
        if !room.destroyed && room.is_empty() && !room.config.persistent {
            room.destroyed = true;
        }
        if room.destroyed {
            self.rooms.remove(&name);
            self.delete_stored(core, &name).await;
            let store = core.storage.muc.clone();
            let (domain, n) = (self.tenant_domain.clone(), name.clone());
            if let Err(e) = storage::blocking(move || store.delete_log(&domain, &n)).await {
                tracing::error!(room = %room.jid, error = %e, "deleting the room log failed");
            }
            tracing::debug!(room = %room.jid, "room removed");
            return;
        }
        if room.dirty {
            room.dirty = false;
            if room.config.persistent {
                let stored = StoredRoom {
                    name: name.clone(),
                    subdomain: self.subdomain.clone(),
                    config: room.config.to_pairs(true),
                    affiliations: room
                        .affiliations()
                        .map(|(j, a)| (j.to_string(), a.as_str().to_string()))
                        .collect(),
                    subject: room.subject.clone().map(|s| (s.text, s.by)),
                };
                let store = core.storage.muc.clone();
                let domain = self.tenant_domain.clone();
                if let Err(e) = storage::blocking(move || store.put_room(&domain, &stored)).await {
                    tracing::error!(room = %room.jid, error = %e, "storing room failed");
                }
            } else {
                self.delete_stored(core, &name).await;
            }
        }
    }

    async fn delete_stored(&self, core: &Core, name: &str) {
        let store = core.storage.muc.clone();
        let domain = self.tenant_domain.clone();
        let n = name.to_string();
        if let Err(e) = storage::blocking(move || store.delete_room(&domain, &n)).await {
            tracing::error!(room = name, error = %e, "deleting stored room failed");
        }
    }

    /// Empties every room with 332 (see [`Room::shut_down`]); temporary rooms go away.
    async fn shut_down(&self, core: &Arc<Core>) {
        let names: Vec<String> = self.rooms.iter().map(|r| r.key().clone()).collect();
        for name in names {
            if let Some(mut room) = self.lock_room(core, &name).await {
                let out = room.shut_down();
                self.finish(core, room, out).await;
            }
        }
    }

    /// Routes stanzas from the service, in order.
    pub(super) async fn send(&self, core: &Arc<Core>, out: Outbox) {
        let Some(this) = self.this.upgrade() else {
            return;
        };
        let origin = Origin::Hosted(HostedTarget {
            domain: self.domain.clone(),
            hosted: this,
        });
        for stanza in out {
            pipeline::route(core, &origin, stanza).await;
        }
    }
}

impl HostedDomain for MucService {
    fn tenant(&self) -> &str {
        &self.tenant
    }

    fn kind(&self) -> &'static str {
        "muc"
    }

    fn deliver(&self, core: Arc<Core>, stanza: Element) -> BoxFuture<'static, ()> {
        // In a cluster, a room's stanzas go to the node hosting it.
        if let Some(placement) = core.placement.get()
            && let Some(room) = super::cluster::room_of(&stanza)
            && let Some(node) = placement.owner(&room)
        {
            if let Some(all) = self.all.upgrade() {
                all.forwarded.note(&stanza, &room, &node);
            }
            placement.forward(&node, stanza);
            return Box::pin(async {});
        }
        self.deliver_here(core, stanza)
    }

    fn deliver_here(&self, core: Arc<Core>, stanza: Element) -> BoxFuture<'static, ()> {
        let Some(this) = self.this.upgrade() else {
            return Box::pin(async {});
        };
        // Errors bounced while a room routes its stanzas, and stanzas from hosted
        // entities (rooms included), arrive while that room may be locked by the caller:
        // handle them on their own task. Users' stanzas keep their order.
        let from_user = stanza
            .attr("from")
            .and_then(|f| jid::Jid::new(f).ok())
            .is_some_and(|j| core.serves_domain(j.domain().as_str()));
        let is_error = crate::stanza::is_error(&stanza);
        let fut = async move { super::dispatch::handle(&this, &core, stanza).await };
        if from_user && !is_error {
            Box::pin(fut)
        } else {
            tokio::spawn(fut);
            Box::pin(async {})
        }
    }
}

/// Room limits from the tenant's settings.
fn limits(s: &MucSettings) -> RoomLimits {
    RoomLimits {
        history_length: s.history_length as usize,
        max_nick_length: s.max_nick_length as usize,
        max_affiliations: s.max_affiliations as usize,
        max_log_messages: s.max_log_messages as usize,
    }
}

impl MucService {
    /// Refuses a new room when the tenant has reached `max_rooms`.
    pub(super) fn check_room_limit(
        &self,
        core: &Core,
        settings: &MucSettings,
    ) -> Result<(), String> {
        let max = settings.max_rooms as usize;
        let Some(all) = self.all.upgrade().filter(|_| max > 0) else {
            return Ok(());
        };
        // Load every service of the tenant so stored rooms count too.
        all.tenant_services(core, &self.tenant);
        if all.room_count(&self.tenant) >= max {
            return Err(format!("the tenant has reached its limit of {max} rooms"));
        }
        Ok(())
    }
}

impl MucService {
    /// Refuses a new room to a user who owns `max_rooms_per_user` rooms already across
    /// the tenant's services (service admins are not limited).
    pub(super) async fn check_owner_limit(
        &self,
        core: &Core,
        settings: &MucSettings,
        owner: &str,
    ) -> Result<(), String> {
        let max = settings.max_rooms_per_user as usize;
        if max == 0 || settings.is_admin(owner) {
            return Ok(());
        }
        let Some(all) = self.all.upgrade() else {
            return Ok(());
        };
        let mut owned = 0;
        for service in all.tenant_services(core, &self.tenant) {
            let rooms: Vec<_> = service.rooms.iter().map(|r| r.value().clone()).collect();
            for room in rooms {
                if room.lock().await.affiliations.get(owner) == Some(&Affiliation::Owner) {
                    owned += 1;
                    if owned >= max {
                        return Err(format!("you own {max} rooms, the most one user may own"));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The current time (history stamps).
pub(super) fn now() -> SystemTime {
    SystemTime::now()
}
