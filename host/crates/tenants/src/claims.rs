//! The one registry of every domain the tenants serve: their own domains and every
//! service domain (components, MUC, and whatever service comes next, all listed by
//! [`TenantSpec::served_domains`]).
//!
//! A domain belongs to the tenant whose own domain is its closest: `m.n3.example` to
//! the tenant of `m.n3.example`, even if another tenant has `n3.example`. A tenant may
//! claim a domain only if no other tenant claims it and it belongs to that tenant, and
//! a new tenant domain may not put another tenant's service under it. So neither a
//! tenant token nor an operator mistake can point one tenant's component at another
//! tenant's MUC service, or take a domain from under it.

use std::collections::HashSet;

use crate::registry::RegistryError;
use crate::spec::TenantSpec;

/// Every claimed domain and tenant domain, by tenant name. Cheap to clone (structural
/// sharing), as the registry's snapshots are.
#[derive(Debug, Default, Clone)]
pub struct DomainClaims {
    /// Tenant domains.
    domains: imbl::HashMap<String, String>,
    /// Every claimed domain, keyed by its labels in reverse (`test.acme.conference`), so
    /// the claims under a domain are one range.
    claims: imbl::OrdMap<String, String>,
}

/// `conference.acme.test` → `test.acme.conference`.
fn reversed(domain: &str) -> String {
    domain.rsplit('.').collect::<Vec<_>>().join(".")
}

/// `domain` and each of its parents, closest first.
fn self_and_parents(domain: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(domain), |d| d.split_once('.').map(|(_, p)| p))
}

impl DomainClaims {
    /// Why `tenant` may not serve what `spec` says beside the other tenants (its own
    /// current claims are replaced, not counted against it).
    pub fn check(&self, tenant: &str, spec: &TenantSpec) -> Result<(), RegistryError> {
        let own: HashSet<&str> = spec.domains.iter().map(String::as_str).collect();
        let other = |owner: &&String| owner.as_str() != tenant;
        for claim in spec.served_domains() {
            if let Some(owner) = self.claims.get(&reversed(&claim)).filter(other) {
                return Err(RegistryError::DomainTaken {
                    domain: claim,
                    owner: owner.clone(),
                });
            }
            for d in self_and_parents(&claim) {
                if own.contains(d) {
                    break;
                }
                if let Some(owner) = self.domains.get(d).filter(other) {
                    return Err(RegistryError::UnderOtherTenant {
                        domain: claim.clone(),
                        parent: d.to_string(),
                        owner: owner.clone(),
                    });
                }
            }
        }
        // Another tenant's claims under a new domain of this one must stay under a
        // closer domain of their own.
        for d in &spec.domains {
            let prefix = format!("{}.", reversed(d));
            let under = self
                .claims
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix));
            for (key, owner) in under.filter(|(_, o)| other(o)) {
                let claim = key.rsplit('.').collect::<Vec<_>>().join(".");
                let closer = self_and_parents(&claim)
                    .take_while(|p| p != d)
                    .any(|p| self.domains.get(p) == Some(owner));
                if !closer {
                    return Err(RegistryError::WouldTakeOver {
                        domain: d.clone(),
                        claim,
                        owner: owner.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Records what `spec` serves for `tenant` (after [`DomainClaims::check`]).
    pub fn insert(&mut self, tenant: &str, spec: &TenantSpec) {
        for d in &spec.domains {
            self.domains.insert(d.clone(), tenant.to_string());
        }
        for c in spec.served_domains() {
            self.claims.insert(reversed(&c), tenant.to_string());
        }
    }

    /// Forgets what `spec` served for `tenant`.
    pub fn remove(&mut self, tenant: &str, spec: &TenantSpec) {
        for d in &spec.domains {
            if self.domains.get(d).is_some_and(|o| o == tenant) {
                self.domains.remove(d);
            }
        }
        for c in spec.served_domains() {
            let key = reversed(&c);
            if self.claims.get(&key).is_some_and(|o| o == tenant) {
                self.claims.remove(&key);
            }
        }
    }

    /// The tenant claiming `domain` (its own or a service's).
    pub fn claimant(&self, domain: &str) -> Option<&str> {
        self.claims.get(&reversed(domain)).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ComponentSpec;

    fn spec(domains: &[&str], components: &[&str]) -> TenantSpec {
        let mut s = TenantSpec::with_domains(domains.iter().map(|d| d.to_string()).collect());
        s.components = components
            .iter()
            .map(|d| ComponentSpec {
                domains: vec![d.to_string()],
                name: None,
                secret: Some("s".into()),
                plugin: None,
                on_conflict: Default::default(),
                hidden: false,
            })
            .collect();
        s
    }

    fn with(tenants: &[(&str, TenantSpec)]) -> DomainClaims {
        let mut c = DomainClaims::default();
        for (name, s) in tenants {
            c.check(name, s).unwrap();
            c.insert(name, s);
        }
        c
    }

    #[test]
    fn a_tenant_cannot_serve_under_another_tenants_closer_domain() {
        let claims = with(&[
            ("n3", spec(&["n3.example"], &[])),
            ("m", spec(&["m.n3.example"], &[])),
        ]);
        // The report: n3's component on m's MUC service.
        let taken = claims.check("n3", &spec(&["n3.example"], &["conference.m.n3.example"]));
        assert_eq!(
            taken,
            Err(RegistryError::DomainTaken {
                domain: "conference.m.n3.example".into(),
                owner: "m".into()
            })
        );
        // Nor anything else under m's domain.
        let under = claims.check("n3", &spec(&["n3.example"], &["bot.m.n3.example"]));
        assert_eq!(
            under,
            Err(RegistryError::UnderOtherTenant {
                domain: "bot.m.n3.example".into(),
                parent: "m.n3.example".into(),
                owner: "m".into()
            })
        );
        // Its own subdomains are fine, and so are m's.
        assert!(
            claims
                .check("n3", &spec(&["n3.example"], &["bot.n3.example"]))
                .is_ok()
        );
        assert!(
            claims
                .check("m", &spec(&["m.n3.example"], &["bot.m.n3.example"]))
                .is_ok()
        );
    }

    #[test]
    fn a_new_domain_cannot_take_another_tenants_service() {
        let claims = with(&[("n3", spec(&["n3.example"], &["bot.m.n3.example"]))]);
        assert_eq!(
            claims.check("m", &spec(&["m.n3.example"], &[])),
            Err(RegistryError::WouldTakeOver {
                domain: "m.n3.example".into(),
                claim: "bot.m.n3.example".into(),
                owner: "n3".into()
            })
        );
        // A parent domain of another tenant leaves that tenant's services alone.
        let claims = with(&[("m", spec(&["m.n3.example"], &["bot.m.n3.example"]))]);
        assert!(claims.check("n3", &spec(&["n3.example"], &[])).is_ok());
    }

    #[test]
    fn removing_a_tenant_frees_its_claims() {
        let a = spec(&["a.test"], &["bot.a.test"]);
        let mut claims = with(&[("a", a.clone())]);
        assert_eq!(claims.claimant("conference.a.test"), Some("a"));
        assert!(claims.check("b", &spec(&["a.test"], &[])).is_err());
        claims.remove("a", &a);
        assert_eq!(claims.claimant("bot.a.test"), None);
        assert!(
            claims
                .check("b", &spec(&["a.test"], &["bot.a.test"]))
                .is_ok()
        );
    }
}
