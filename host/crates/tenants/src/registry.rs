//! The tenant registry: domain → tenant and name → tenant, read without locks.
//!
//! Readers load the current [`Snapshot`] through an `ArcSwap` (no lock, no contention)
//! and look up persistent hash maps, so a lookup costs the same with 10 or 10,000 tenants.
//! Writers (admin API, reload) are serialized, build the next snapshot by structural
//! sharing (an insert copies O(log n) nodes, not the whole map) and swap it in atomically.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use arc_swap::ArcSwap;

use super::spec::TenantSpec;
use crate::cert::TenantCert;
use crate::claims::DomainClaims;

/// A tenant as the running server sees it.
#[derive(Debug)]
pub struct Tenant {
    pub name: String,
    pub spec: TenantSpec,
    /// Defined in the config file (changed by editing it and reloading).
    pub from_config: bool,
    /// SHA-256 (hex) of the tenant's admin token, if one was issued.
    pub token_sha256: Option<String>,
    /// The tenant's own certificate, loaded from `spec.tls`.
    pub cert: Option<Arc<TenantCert>>,
    /// The tenant's JWT keys, loaded from `spec.jwt`.
    pub jwt: Option<Arc<heliograph_auth::tokens::jwt::JwtVerifier>>,
    /// Online sessions; shared by every version of the tenant across updates.
    sessions: Arc<AtomicUsize>,
    /// Logins and failed logins since start; shared across updates like `sessions`.
    activity: Arc<LoginActivity>,
    /// [`Tenant::features_on`] for the hook registry's list of feature names.
    features_on: OnceLock<FeatureMask>,
}

/// Which names of one list of feature names a tenant has on.
#[derive(Debug)]
struct FeatureMask {
    /// The list's id: what it was computed for.
    list: u64,
    on: Box<[bool]>,
}

/// A tenant's login counts since the server started (the admin API shows them; the
/// console turns them into rates).
#[derive(Debug, Default)]
pub struct LoginActivity {
    logins: AtomicU64,
    login_failures: AtomicU64,
}

impl Tenant {
    pub fn new(
        name: String,
        spec: TenantSpec,
        from_config: bool,
        token_sha256: Option<String>,
        cert: Option<Arc<TenantCert>>,
    ) -> Tenant {
        Tenant {
            name,
            spec,
            from_config,
            token_sha256,
            cert,
            jwt: None,
            sessions: Arc::default(),
            activity: Arc::default(),
            features_on: OnceLock::new(),
        }
    }

    /// For each of `names`, whether the tenant has that feature on, in the same order.
    /// The hook registry asks this for every stanza with its one fixed list, which `list`
    /// identifies (unique per list in the process): the answer is computed on the first
    /// call and kept (a tenant version never changes), instead of searching the spec's
    /// map by name for each hook. Another list is answered without keeping it.
    pub fn features_on(&self, list: u64, names: &[&str]) -> Cow<'_, [bool]> {
        let compute =
            || -> Box<[bool]> { names.iter().map(|n| self.spec.feature_enabled(n)).collect() };
        let mask = self.features_on.get_or_init(|| FeatureMask {
            list,
            on: compute(),
        });
        if mask.list == list {
            Cow::Borrowed(&mask.on)
        } else {
            Cow::Owned(compute().into_vec())
        }
    }

    /// The same tenant with these loaded JWT keys.
    pub fn with_jwt(
        mut self,
        jwt: Option<Arc<heliograph_auth::tokens::jwt::JwtVerifier>>,
    ) -> Tenant {
        self.jwt = jwt;
        self
    }

    pub fn enabled(&self) -> bool {
        self.spec.enabled
    }

    /// Online sessions right now.
    pub fn session_count(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    /// Counts a successful login (a session bound).
    pub fn count_login(&self) {
        self.activity.logins.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed authentication attempt on one of the tenant's domains.
    pub fn count_login_failure(&self) {
        self.activity.login_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// (logins, failed logins) since the server started.
    pub fn login_counts(&self) -> (u64, u64) {
        (
            self.activity.logins.load(Ordering::Relaxed),
            self.activity.login_failures.load(Ordering::Relaxed),
        )
    }

    /// Counts a new session unless `max_sessions` is reached.
    pub fn acquire_session(self: &Arc<Self>) -> Option<SessionSlot> {
        let max = self.spec.limits.max_sessions as usize;
        let counter = self.sessions.clone();
        let mut current = counter.load(Ordering::Relaxed);
        loop {
            if max != 0 && current >= max {
                return None;
            }
            match counter.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(SessionSlot(counter)),
                Err(seen) => current = seen,
            }
        }
    }

    /// The tenant's component serving `domain`, if any.
    pub fn component(&self, domain: &str) -> Option<&super::spec::ComponentSpec> {
        self.spec
            .components
            .iter()
            .find(|c| c.domains.iter().any(|d| d == domain))
    }

    /// True if users of `self` and `other` may exchange stanzas.
    pub fn can_reach(&self, other: &Tenant) -> bool {
        self.name == other.name
            || (self.spec.federate_with.contains(&other.name)
                && other.spec.federate_with.contains(&self.name))
    }
}

/// One counted session of a tenant; the count drops when this is dropped.
#[derive(Debug)]
pub struct SessionSlot(Arc<AtomicUsize>);

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An immutable view of all tenants.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    by_name: imbl::HashMap<String, Arc<Tenant>>,
    by_domain: imbl::HashMap<String, Arc<Tenant>>,
    /// Component domains (see [`Tenant::component`]) to their tenant.
    by_component: imbl::HashMap<String, Arc<Tenant>>,
    /// Every domain each tenant serves: what a change may claim.
    claims: DomainClaims,
}

impl Snapshot {
    /// Every tenant, in no particular order.
    pub fn tenants(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.by_name.values()
    }

    pub fn by_domain(&self, domain: &str) -> Option<&Arc<Tenant>> {
        self.by_domain.get(domain)
    }

    /// The tenant one of whose components serves `domain` (enabled or not).
    pub fn by_component(&self, domain: &str) -> Option<&Arc<Tenant>> {
        self.by_component.get(domain)
    }

    /// The tenant claiming `domain` as its own or a service's.
    pub fn claimant(&self, domain: &str) -> Option<&Arc<Tenant>> {
        self.by_name(self.claims.claimant(domain)?)
    }

    /// Why `tenant` (new, or a new version of a tenant) may not serve its domains
    /// beside the others (see [`DomainClaims`]).
    pub fn check_claims(&self, tenant: &Tenant) -> Result<(), RegistryError> {
        self.claims.check(&tenant.name, &tenant.spec)
    }

    fn insert(&mut self, tenant: Arc<Tenant>) {
        self.claims.insert(&tenant.name, &tenant.spec);
        for d in &tenant.spec.domains {
            self.by_domain.insert(d.clone(), tenant.clone());
        }
        for c in &tenant.spec.components {
            for d in &c.domains {
                self.by_component.insert(d.clone(), tenant.clone());
            }
        }
        self.by_name.insert(tenant.name.clone(), tenant);
    }

    fn remove_domains(&mut self, tenant: &Tenant) {
        self.claims.remove(&tenant.name, &tenant.spec);
        for d in &tenant.spec.domains {
            self.by_domain.remove(d);
        }
        for c in &tenant.spec.components {
            for d in &c.domains {
                self.by_component.remove(d);
            }
        }
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<Tenant>> {
        self.by_name.get(name)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// All tenants sorted by name.
    pub fn list(&self) -> Vec<Arc<Tenant>> {
        let mut v: Vec<_> = self.by_name.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

/// Why a registry change was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("domain {domain} already belongs to tenant {owner}")]
    DomainTaken { domain: String, owner: String },
    #[error("domain {domain} is under {parent}, a domain of tenant {owner}")]
    UnderOtherTenant {
        domain: String,
        parent: String,
        owner: String,
    },
    #[error("domain {domain} would take {claim} from tenant {owner}")]
    WouldTakeOver {
        domain: String,
        claim: String,
        owner: String,
    },
}

/// The registry; see the module docs.
#[derive(Default)]
pub struct Registry {
    current: ArcSwap<Snapshot>,
    writer: Mutex<()>,
}

impl Registry {
    /// A registry holding these tenants (domains must not overlap).
    pub fn with_tenants(tenants: Vec<Tenant>) -> Result<Registry, RegistryError> {
        let r = Registry::default();
        r.replace_all(tenants)?;
        Ok(r)
    }

    /// The current snapshot (lock-free).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The tenant owning `domain` (lock-free).
    pub fn by_domain(&self, domain: &str) -> Option<Arc<Tenant>> {
        self.current.load().by_domain(domain).cloned()
    }

    /// `f` of the tenant owning `domain`, without taking a reference to it: the
    /// per-stanza lookup. Every session of a tenant shares its `Arc`, so cloning it on
    /// each stanza made the cores fight over one reference count.
    pub fn with_domain<R>(&self, domain: &str, f: impl FnOnce(&Tenant) -> R) -> Option<R> {
        self.current.load().by_domain(domain).map(|t| f(t))
    }

    /// `f` of the current snapshot, without taking a reference to it (lock-free).
    pub fn with_snapshot<R>(&self, f: impl FnOnce(&Snapshot) -> R) -> R {
        f(&self.current.load())
    }

    /// The tenant named `name` (lock-free).
    pub fn by_name(&self, name: &str) -> Option<Arc<Tenant>> {
        self.current.load().by_name(name).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds or replaces a tenant; returns the previous version. The session counter
    /// carries over from the previous version.
    pub fn upsert(&self, mut tenant: Tenant) -> Result<Option<Arc<Tenant>>, RegistryError> {
        let _w = self.lock();
        let cur = self.current.load_full();
        cur.check_claims(&tenant)?;
        let mut next = (*cur).clone();
        let old = next.by_name.get(&tenant.name).cloned();
        if let Some(o) = &old {
            tenant.sessions = o.sessions.clone();
            tenant.activity = o.activity.clone();
            next.remove_domains(o);
        }
        next.insert(Arc::new(tenant));
        self.current.store(Arc::new(next));
        Ok(old)
    }

    /// Removes a tenant; returns it.
    pub fn remove(&self, name: &str) -> Option<Arc<Tenant>> {
        let _w = self.lock();
        let cur = self.current.load_full();
        let mut next = (*cur).clone();
        let old = next.by_name.remove(name)?;
        next.remove_domains(&old);
        self.current.store(Arc::new(next));
        Some(old)
    }

    /// Replaces every tenant at once (reload); session counters carry over by name.
    pub fn replace_all(&self, tenants: Vec<Tenant>) -> Result<(), RegistryError> {
        let _w = self.lock();
        let cur = self.current.load_full();
        let mut next = Snapshot::default();
        for mut t in tenants {
            if let Some(o) = cur.by_name.get(&t.name) {
                t.sessions = o.sessions.clone();
                t.activity = o.activity.clone();
            }
            next.check_claims(&t)?;
            next.insert(Arc::new(t));
        }
        self.current.store(Arc::new(next));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str, domains: &[&str]) -> Tenant {
        Tenant::new(
            name.into(),
            TenantSpec::with_domains(domains.iter().map(|d| d.to_string()).collect()),
            false,
            None,
            None,
        )
    }

    #[test]
    fn features_on_follow_the_spec_and_each_version() {
        let mut spec = TenantSpec::with_domains(vec!["a.test".into()]);
        spec.features.insert("mam".into(), false);
        let t = Tenant::new("a".into(), spec, false, None, None);
        let names = ["carbons", "mam", "csi"];
        assert_eq!(&*t.features_on(7, &names), &[true, false, true]);
        assert_eq!(&*t.features_on(7, &names), &[true, false, true], "kept");
        assert_eq!(&*t.features_on(8, &["mam"]), &[false], "another list");
        let r = Registry::default();
        r.upsert(t).unwrap();
        assert_eq!(
            r.with_domain("a.test", |t| t.features_on(7, &names).into_owned()),
            Some(vec![true, false, true])
        );
        r.upsert(tenant("a", &["a.test"])).unwrap();
        assert_eq!(
            r.with_domain("a.test", |t| t.features_on(7, &names).into_owned()),
            Some(vec![true, true, true]),
            "a new version of the tenant computes its own"
        );
        assert_eq!(r.with_domain("b.test", |_| ()), None);
    }

    #[test]
    fn lookups_follow_changes() {
        let r = Registry::default();
        r.upsert(tenant("a", &["a.test", "a2.test"])).unwrap();
        r.upsert(tenant("b", &["b.test"])).unwrap();
        assert_eq!(r.by_domain("a2.test").unwrap().name, "a");
        assert_eq!(
            r.upsert(tenant("c", &["b.test"])).unwrap_err(),
            RegistryError::DomainTaken {
                domain: "b.test".into(),
                owner: "b".into()
            }
        );
        // Changing a tenant's domains drops the old ones.
        r.upsert(tenant("a", &["a3.test"])).unwrap();
        assert!(r.by_domain("a.test").is_none());
        assert_eq!(r.by_domain("a3.test").unwrap().name, "a");
        assert_eq!(r.remove("b").unwrap().name, "b");
        assert!(r.by_domain("b.test").is_none());
        assert_eq!(r.snapshot().len(), 1);
    }

    #[test]
    fn readers_keep_their_snapshot() {
        let r = Registry::default();
        r.upsert(tenant("a", &["a.test"])).unwrap();
        let snap = r.snapshot();
        r.remove("a");
        assert!(snap.by_domain("a.test").is_some());
        assert!(r.by_domain("a.test").is_none());
    }

    #[test]
    fn session_limit_and_counter_survive_updates() {
        let r = Registry::default();
        let mut t = tenant("a", &["a.test"]);
        t.spec.limits.max_sessions = 2;
        r.upsert(t).unwrap();
        let t = r.by_name("a").unwrap();
        let s1 = t.acquire_session().unwrap();
        let _s2 = t.acquire_session().unwrap();
        assert!(t.acquire_session().is_none());
        let mut t2 = tenant("a", &["a.test"]);
        t2.spec.limits.max_sessions = 2;
        r.upsert(t2).unwrap();
        let t = r.by_name("a").unwrap();
        assert_eq!(t.session_count(), 2);
        drop(s1);
        assert_eq!(t.session_count(), 1);
        assert!(t.acquire_session().is_some());
    }

    #[test]
    fn login_counts_survive_updates_and_reloads() {
        let r = Registry::default();
        r.upsert(tenant("a", &["a.test"])).unwrap();
        let t = r.by_name("a").unwrap();
        t.count_login();
        t.count_login();
        t.count_login_failure();
        r.upsert(tenant("a", &["a2.test"])).unwrap();
        assert_eq!(r.by_name("a").unwrap().login_counts(), (2, 1));
        r.replace_all(vec![tenant("a", &["a.test"])]).unwrap();
        let t = r.by_name("a").unwrap();
        t.count_login();
        assert_eq!(t.login_counts(), (3, 1));
        r.remove("a");
        r.upsert(tenant("a", &["a.test"])).unwrap();
        assert_eq!(
            r.by_name("a").unwrap().login_counts(),
            (0, 0),
            "a new tenant starts at 0"
        );
    }

    #[test]
    fn federation_needs_both_sides() {
        let mut a = tenant("a", &["a.test"]);
        let mut b = tenant("b", &["b.test"]);
        assert!(!a.can_reach(&b));
        a.spec.federate_with = vec!["b".into()];
        assert!(!a.can_reach(&b));
        b.spec.federate_with = vec!["a".into()];
        assert!(a.can_reach(&b) && b.can_reach(&a));
    }
}
