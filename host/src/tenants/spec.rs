//! Tenant settings as written in the config file (`[tenants.NAME]`) and accepted by the
//! admin API, and the record persisted for API-managed tenants.

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

/// Per-tenant limits; 0 means "no limit" (or "the server default" for sizes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
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
    /// JWT login (PLAIN with a JWT as password, OAUTHBEARER, X-OAUTH), alongside `auth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<crate::tokens::jwt::JwtSettings>,
    /// Server-issued access and refresh tokens (the token-auth iq and token logins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<crate::tokens::issued::IssuedTokenSettings>,
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
            jwt: None,
            tokens: None,
        }
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
        if let AuthMethod::Plugin { plugin } = &self.auth
            && plugin.trim().is_empty()
        {
            return Err(format!(
                "tenant {name:?}: auth.plugin must name a plugin slot"
            ));
        }
        if let Some(jwt) = &self.jwt {
            crate::tokens::jwt::JwtVerifier::check_settings(jwt)
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

/// A domain as the server compares it: a valid JID domainpart, lowercase, no trailing
/// dot. `None` if invalid.
pub fn normalize_domain(d: &str) -> Option<String> {
    let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
    let j = jid::BareJid::new(&d).ok()?;
    if j.node().is_some() || d.contains('/') {
        return None;
    }
    Some(j.domain().as_str().to_string())
}

/// What storage keeps per tenant: the full spec of API-managed tenants, runtime overrides
/// of config tenants (enabled flag), and the hash of the tenant's admin token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub name: String,
    /// Present for tenants created through the admin API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<TenantSpec>,
    /// Enabled/disabled override for tenants defined in the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled_override: Option<bool>,
    /// SHA-256 (hex) of the tenant's admin token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
}

impl TenantRecord {
    pub fn new(name: &str) -> TenantRecord {
        TenantRecord {
            name: name.to_string(),
            spec: None,
            enabled_override: None,
            token_sha256: None,
        }
    }

    /// True when the record holds nothing worth keeping.
    pub fn is_empty(&self) -> bool {
        self.spec.is_none() && self.enabled_override.is_none() && self.token_sha256.is_none()
    }
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
