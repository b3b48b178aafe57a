//! Tenant settings as written in the config file (`[tenants.NAME]`) and accepted by the
//! admin API, and the record persisted for API-managed tenants.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How a tenant's users authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase", tag = "method", deny_unknown_fields)]
pub enum AuthMethod {
    /// Accounts and SCRAM credentials in the server's storage.
    #[default]
    Internal,
    /// A Wasm authenticator plugin installed in the named slot.
    Plugin { plugin: String },
}

/// The tenant's room policy: a Wasm `room-policy` plugin in the named slot decides on its
/// MUC rooms (`room_policy = { plugin = "rooms" }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomPolicySetting {
    /// The plugin slot.
    pub plugin: String,
    /// When the plugin fails (trap, deadline, memory cap, malformed answer, not
    /// installed), allow the action instead of refusing it. Default: refuse (fail closed).
    #[serde(default)]
    pub fail_open: bool,
}

/// Per-tenant limits; 0 means "no limit" (or "the server default" for sizes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Online sessions across the tenant's domains.
    pub max_sessions: u32,
    /// Accounts across the tenant's domains.
    pub max_accounts: u64,
    /// Sustained stanzas per second per session (token bucket; excess slows the reader).
    pub stanza_rate: u32,
    /// Burst size of the shaper; default twice the rate.
    pub stanza_burst: u32,
    /// Largest stanza in bytes (0: `general.max_stanza_size`).
    pub max_stanza_size: usize,
    /// Items in one user's roster.
    pub max_roster_items: u32,
    /// Longest roster item name, in characters.
    pub max_roster_name_length: u32,
    /// Longest roster group name, in characters.
    pub max_roster_group_length: u32,
    /// Groups one roster item may be in.
    pub max_roster_groups: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 0,
            max_accounts: 0,
            stanza_rate: 0,
            stanza_burst: 0,
            max_stanza_size: 0,
            max_roster_items: 2000,
            max_roster_name_length: 256,
            max_roster_group_length: 256,
            max_roster_groups: 64,
        }
    }
}

/// A tenant's own certificate, re-read from disk on reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Everything configurable about a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// XMPP domains owned by the tenant (normalized, lowercase).
    pub domains: Vec<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub auth: AuthMethod,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TenantTls>,
    /// Tenants whose users may exchange stanzas with this tenant's users. Traffic flows
    /// only where both tenants list each other.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub federate_with: Vec<String>,
    /// The room-policy plugin deciding on the tenant's MUC rooms; none: XEP-0045's rules
    /// alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_policy: Option<RoomPolicySetting>,
    /// The tenant's multi-user chat service (`[tenants.NAME.muc]`).
    #[serde(default)]
    pub muc: crate::muc_settings::MucSettings,
    /// The tenant's message archive (`[tenants.NAME.archive]`).
    #[serde(default)]
    pub archive: crate::archive_settings::ArchiveSettings,
    /// Push notifications (`[tenants.NAME.push]`).
    #[serde(default)]
    pub push: crate::push_settings::PushSettings,
    /// vCard and private storage limits (`[tenants.NAME.profiles]`).
    #[serde(default)]
    pub profiles: crate::profile_settings::ProfileSettings,
    /// HTTP file upload (XEP-0363) at `upload.<domain>` (`[tenants.NAME.upload]`).
    #[serde(default)]
    pub upload: crate::upload_settings::UploadSettings,
    /// Bare JIDs of the tenant's administrators: they may run the server's ad-hoc
    /// commands (XEP-0050) for the tenant's domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admins: Vec<String>,
    /// Personal eventing limits (`[tenants.NAME.pep]`).
    #[serde(default)]
    pub pep: crate::pep_settings::PepSettings,
    /// STUN and TURN servers for XEP-0215, and the TURN credential secret
    /// (`[tenants.NAME.external_services]`).
    #[serde(default)]
    pub external_services: crate::external_services::ExternalServices,
    /// Call signaling policy (`[tenants.NAME.calls]`).
    #[serde(default)]
    pub calls: crate::calls_settings::CallsSettings,
    /// Federation with other servers (`[tenants.NAME.s2s]`), off by default.
    #[serde(default)]
    pub s2s: crate::s2s_settings::S2sSettings,
    /// Components serving subdomains of the tenant's domains (XEP-0114 external ones and
    /// Wasm-hosted ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentSpec>,
    /// JWT login (PLAIN with a JWT as password, OAUTHBEARER, X-OAUTH), alongside `auth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<heliograph_auth::tokens::jwt::JwtSettings>,
    /// Server-issued access and refresh tokens (the token-auth iq and token logins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<heliograph_auth::tokens::issued::IssuedTokenSettings>,
    /// Features switched on or off for this tenant by name (`[tenants.NAME.features]`,
    /// `blocking = false`); a feature not listed is on. The names are those the features
    /// register under (`GET /api/v1/features` lists them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, bool>,
}

impl TenantSpec {
    /// True unless the tenant turned the feature `name` off.
    pub fn feature_enabled(&self, name: &str) -> bool {
        self.features.get(name).copied().unwrap_or(true)
    }

    /// True when `bare_jid` (normalized) is one of the tenant's administrators.
    pub fn is_admin(&self, bare_jid: &str) -> bool {
        self.admins.iter().any(|a| a.eq_ignore_ascii_case(bare_jid))
    }
}

/// What happens when a component connects for a domain another connection serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// The new connection is refused with `<conflict/>`; the old one keeps serving.
    #[default]
    Refuse,
    /// The old connection is closed with `<conflict/>` and the new one takes over.
    Replace,
}

/// What API views show instead of a write-only secret; sent back in a change, it keeps
/// the current secret.
pub use heliograph_auth::REDACTED;

/// One component of a tenant: an external XEP-0114 connection (`secret`) or a Wasm
/// component plugin (`plugin`, a slot of the tenant's plugins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentSpec {
    /// Domains the component serves: subdomains of the tenant's domains (normalized).
    pub domains: Vec<String>,
    /// Name shown in service discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Shared secret of an external component (XEP-0114 handshake).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Plugin slot of a Wasm-hosted component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    #[serde(default)]
    pub on_conflict: OnConflict,
    /// Left out of the tenant's disco#items.
    #[serde(default)]
    pub hidden: bool,
}

impl ComponentSpec {
    /// Puts back the current secret of each component in `list` whose secret is
    /// [`REDACTED`]: the component of `current` serving the same domains keeps its
    /// secret. Errs naming the component when there is none.
    pub fn restore_redacted(
        list: &mut [ComponentSpec],
        current: &[ComponentSpec],
    ) -> Result<(), String> {
        let key = |c: &ComponentSpec| {
            let mut d: Vec<String> = c.domains.iter().map(|d| d.to_ascii_lowercase()).collect();
            d.sort();
            d
        };
        for c in list.iter_mut() {
            if c.secret.as_deref() != Some(REDACTED) {
                continue;
            }
            let kept = current
                .iter()
                .find(|cur| key(cur) == key(c) && cur.secret.is_some())
                .ok_or_else(|| {
                    format!(
                        "component {}: {REDACTED:?} keeps the secret of a component with the same domains, and there is none",
                        c.domains.join(",")
                    )
                })?;
            c.secret = kept.secret.clone();
        }
        Ok(())
    }

    fn normalize(&mut self, tenant: &str, tenant_domains: &[String]) -> Result<(), String> {
        if self.domains.is_empty() {
            return Err(format!("tenant {tenant:?}: a component needs a domain"));
        }
        for d in &mut self.domains {
            let n = normalize_domain(d)
                .ok_or_else(|| format!("tenant {tenant:?}: component domain {d:?} is invalid"))?;
            let under_tenant = tenant_domains
                .iter()
                .any(|t| n.len() > t.len() + 1 && n.ends_with(&format!(".{t}")));
            if !under_tenant {
                return Err(format!(
                    "tenant {tenant:?}: component domain {n:?} must be a subdomain of one of the tenant's domains"
                ));
            }
            *d = n;
        }
        match (&self.secret, &self.plugin) {
            (Some(s), None) if !s.is_empty() && s.len() <= 1024 => Ok(()),
            (None, Some(p)) if !p.trim().is_empty() => Ok(()),
            _ => Err(format!(
                "tenant {tenant:?}: component {:?} needs either a non-empty `secret` (external) or a `plugin` slot (Wasm), not both",
                self.domains[0]
            )),
        }
    }

    /// True for an external (XEP-0114) component.
    pub fn is_external(&self) -> bool {
        self.secret.is_some()
    }
}

fn yes() -> bool {
    true
}

impl TenantSpec {
    /// A tenant with these domains and default settings.
    pub fn with_domains(domains: Vec<String>) -> TenantSpec {
        TenantSpec {
            domains,
            enabled: true,
            auth: AuthMethod::Internal,
            limits: Limits::default(),
            tls: None,
            federate_with: Vec::new(),
            room_policy: None,
            muc: Default::default(),
            archive: Default::default(),
            push: Default::default(),
            profiles: Default::default(),
            upload: Default::default(),
            admins: Vec::new(),
            pep: Default::default(),
            external_services: Default::default(),
            calls: Default::default(),
            s2s: Default::default(),
            components: Vec::new(),
            jwt: None,
            tokens: None,
            features: BTreeMap::new(),
        }
    }

    /// The settings as API views show them: inline secrets (JWT keys, component
    /// secrets) replaced by [`REDACTED`].
    pub fn redacted(&self) -> TenantSpec {
        let mut spec = self.clone();
        spec.jwt = spec
            .jwt
            .as_ref()
            .map(heliograph_auth::tokens::jwt::JwtSettings::redacted);
        for c in &mut spec.components {
            if c.secret.is_some() {
                c.secret = Some(REDACTED.into());
            }
        }
        spec.external_services = spec.external_services.redacted();
        spec
    }

    /// The MUC service domains this tenant serves (`conference.example.com` for each
    /// domain), none when the tenant or its MUC is off.
    /// Every domain the tenant serves or reserves: its own, its components', its MUC
    /// service's (while MUC is on, the tenant enabled or not). A new service with a
    /// domain of its own adds it here, and the claim registry covers it
    /// ([`crate::claims::DomainClaims`]).
    pub fn served_domains(&self) -> Vec<String> {
        let mut out = self.domains.clone();
        out.extend(
            self.components
                .iter()
                .flat_map(|c| c.domains.iter().cloned()),
        );
        if self.muc.enabled {
            out.extend(
                self.domains
                    .iter()
                    .map(|d| format!("{}.{d}", self.muc.subdomain)),
            );
        }
        out.extend(self.upload_domains());
        out
    }

    /// The domains of the tenant's upload service (none when it is off).
    pub fn upload_domains(&self) -> Vec<String> {
        if !self.upload.enabled {
            return Vec::new();
        }
        self.domains
            .iter()
            .map(|d| format!("{}.{d}", self.upload.subdomain))
            .collect()
    }

    pub fn muc_domains(&self) -> Vec<String> {
        if !self.enabled || !self.muc.enabled {
            return Vec::new();
        }
        self.domains
            .iter()
            .map(|d| format!("{}.{d}", self.muc.subdomain))
            .collect()
    }

    /// Normalizes domains (lowercase, no trailing dot) and checks the settings.
    pub fn normalized(mut self, name: &str) -> Result<TenantSpec, String> {
        validate_name(name)?;
        if self.domains.is_empty() {
            return Err(format!("tenant {name:?} needs at least one domain"));
        }
        let mut seen = std::collections::HashSet::new();
        for d in &mut self.domains {
            *d = normalize_domain(d)
                .ok_or_else(|| format!("tenant {name:?}: {d:?} is not a valid domain"))?;
            if !seen.insert(d.clone()) {
                return Err(format!("tenant {name:?} lists {d:?} twice"));
            }
        }
        let mut component_domains = std::collections::HashSet::new();
        for c in &mut self.components {
            c.normalize(name, &self.domains)?;
            for d in &c.domains {
                if self.domains.contains(d) || !component_domains.insert(d.clone()) {
                    return Err(format!("tenant {name:?} lists {d:?} twice"));
                }
            }
        }
        if let AuthMethod::Plugin { plugin } = &self.auth
            && plugin.trim().is_empty()
        {
            return Err(format!(
                "tenant {name:?}: auth.plugin must name a plugin slot"
            ));
        }
        if let Some(p) = &self.room_policy
            && p.plugin.trim().is_empty()
        {
            return Err(format!(
                "tenant {name:?}: room_policy.plugin must name a plugin slot"
            ));
        }
        self.muc = self
            .muc
            .normalized()
            .map_err(|e| format!("tenant {name:?}: {e}"))?;
        self.external_services = self
            .external_services
            .normalized()
            .map_err(|e| format!("tenant {name:?}: external_services: {e}"))?;
        if let Some(jwt) = &self.jwt {
            heliograph_auth::tokens::jwt::JwtVerifier::check_settings(jwt)
                .map_err(|e| format!("tenant {name:?}: jwt: {e}"))?;
        }
        Ok(self)
    }

    /// True if users may log in with a token (JWT or server-issued).
    pub fn token_logins(&self) -> bool {
        self.jwt.is_some() || self.tokens.is_some()
    }
}

/// Tenant names: 1-64 characters of `[a-z0-9_-]`, so they are safe in URLs and keys.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tenant name {name:?} must be 1-64 characters of a-z, 0-9, '-' and '_'"
        ))
    }
}

pub use heliograph_xmpp::jid::normalize_domain;

pub use heliograph_storage::TenantRecord;

/// The spec kept in a stored record (`None` for config tenants' runtime overrides).
pub fn stored_spec(record: &TenantRecord) -> Result<Option<TenantSpec>, serde_json::Error> {
    record
        .spec
        .as_ref()
        .map(|v| serde_json::from_value(v.clone()))
        .transpose()
}

/// Puts `spec` into a stored record.
pub fn store_spec(record: &mut TenantRecord, spec: &TenantSpec) {
    record.spec = Some(serde_json::to_value(spec).expect("tenant specs serialize to JSON"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_validates() {
        let s = TenantSpec::with_domains(vec!["Acme.Test.".into()])
            .normalized("acme")
            .unwrap();
        assert_eq!(s.domains, vec!["acme.test"]);
        assert!(TenantSpec::with_domains(vec![]).normalized("a").is_err());
        assert!(
            TenantSpec::with_domains(vec!["a.test".into(), "A.test".into()])
                .normalized("a")
                .is_err()
        );
        assert!(
            TenantSpec::with_domains(vec!["u@a.test".into()])
                .normalized("a")
                .is_err()
        );
        assert!(
            TenantSpec::with_domains(vec!["a.test".into()])
                .normalized("Bad Name")
                .is_err()
        );
    }

    #[test]
    fn components_serve_subdomains_with_a_secret_or_a_plugin() {
        let spec = |components: &str| {
            serde_json::from_str::<TenantSpec>(&format!(
                r#"{{"domains":["a.test"],"components":[{components}]}}"#
            ))
            .unwrap()
            .normalized("a")
        };
        let s = spec(r#"{"domains":["Bot.A.test"],"secret":"s"}"#).unwrap();
        assert_eq!(s.components[0].domains, vec!["bot.a.test"]);
        assert_eq!(s.components[0].on_conflict, OnConflict::Refuse);
        assert!(
            spec(r#"{"domains":["e.a.test"],"plugin":"echo","on_conflict":"replace"}"#).is_ok()
        );
        // Not a subdomain of the tenant, or the tenant domain itself.
        assert!(spec(r#"{"domains":["bot.b.test"],"secret":"s"}"#).is_err());
        assert!(spec(r#"{"domains":["a.test"],"secret":"s"}"#).is_err());
        assert!(spec(r#"{"domains":["xa.test"],"secret":"s"}"#).is_err());
        // Exactly one of secret and plugin.
        assert!(spec(r#"{"domains":["b.a.test"]}"#).is_err());
        assert!(spec(r#"{"domains":["b.a.test"],"secret":""}"#).is_err());
        assert!(spec(r#"{"domains":["b.a.test"],"secret":"s","plugin":"p"}"#).is_err());
        // A domain served twice.
        assert!(
            spec(r#"{"domains":["b.a.test"],"secret":"s"},{"domains":["b.a.test"],"plugin":"p"}"#)
                .is_err()
        );
    }

    #[test]
    fn muc_settings_in_toml_and_their_validation() {
        let s: TenantSpec = toml::from_str(
            "domains = [\"a.test\"]\n[muc]\nsubdomain = \"Rooms\"\nroom_creation = \"admins\"\nadmins = [\"Boss@a.test\"]\n",
        )
        .unwrap();
        let s = s.normalized("a").unwrap();
        assert_eq!(s.muc.subdomain, "rooms");
        assert_eq!(s.muc.admins, vec!["boss@a.test"]);
        assert_eq!(s.muc.history_length, 20);
        let d: TenantSpec = toml::from_str("domains = [\"a.test\"]").unwrap();
        assert!(d.muc.enabled && d.muc.subdomain == "conference");
        let bad: TenantSpec =
            toml::from_str("domains = [\"a.test\"]\n[muc]\nsubdomain = \"a.b\"\n").unwrap();
        assert!(bad.normalized("a").unwrap_err().contains("muc.subdomain"));
        assert!(toml::from_str::<TenantSpec>("domains = []\n[muc]\nbogus = 1\n").is_err());
    }

    #[test]
    fn spec_json_round_trip_with_defaults() {
        let s: TenantSpec = serde_json::from_str(
            r#"{"domains":["a.test"],"auth":{"method":"plugin","plugin":"auth"}}"#,
        )
        .unwrap();
        assert!(s.enabled);
        assert_eq!(
            s.auth,
            AuthMethod::Plugin {
                plugin: "auth".into()
            }
        );
        let back: TenantSpec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        assert!(serde_json::from_str::<TenantSpec>(r#"{"domains":["a"],"bogus":1}"#).is_err());
    }
}
