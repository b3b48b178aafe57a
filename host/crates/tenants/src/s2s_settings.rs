//! A tenant's federation settings (`[tenants.NAME.s2s]`): whether its domains talk to
//! other servers at all (off by default), how peers may authenticate, and which remote
//! domains are allowed or refused.

use serde::{Deserialize, Serialize};

/// How a remote server may prove the domain it speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum S2sAuth {
    /// SASL EXTERNAL with a certificate that covers the domain (XEP-0178).
    External,
    /// Server dialback (XEP-0220), for peers whose certificates do not verify.
    Dialback,
}

/// `[tenants.NAME.s2s]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S2sSettings {
    /// Federation on for this tenant's domains.
    pub enabled: bool,
    /// The methods a peer may authenticate with, in order of preference.
    pub auth: Vec<S2sAuth>,
    /// Refuse peers whose certificate does not verify for their domain, even with
    /// dialback.
    pub require_valid_certs: bool,
    /// Remote domains allowed (empty: every domain not denied).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Remote domains refused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

impl Default for S2sSettings {
    fn default() -> Self {
        S2sSettings {
            enabled: false,
            auth: vec![S2sAuth::External, S2sAuth::Dialback],
            require_valid_certs: false,
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }
}

impl S2sSettings {
    /// True if federation is on and `remote` passes the allow and deny lists.
    pub fn permits(&self, remote: &str) -> bool {
        self.enabled
            && !self.deny.iter().any(|d| d.eq_ignore_ascii_case(remote))
            && (self.allow.is_empty() || self.allow.iter().any(|d| d.eq_ignore_ascii_case(remote)))
    }

    /// True if peers may authenticate with `method`.
    pub fn accepts(&self, method: S2sAuth) -> bool {
        self.auth.contains(&method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_lists_apply() {
        let mut s = S2sSettings::default();
        assert!(!s.permits("example.net"));
        s.enabled = true;
        assert!(s.permits("example.net"));
        s.deny = vec!["Evil.example".into()];
        assert!(!s.permits("evil.example"));
        s.allow = vec!["partner.example".into()];
        assert!(s.permits("partner.example"));
        assert!(!s.permits("example.net"));
    }

    #[test]
    fn parses_from_toml() {
        let s: S2sSettings =
            toml::from_str("enabled = true\nauth = [\"dialback\"]\ndeny = [\"x.example\"]")
                .unwrap();
        assert!(s.enabled);
        assert!(s.accepts(S2sAuth::Dialback) && !s.accepts(S2sAuth::External));
        assert_eq!(s.deny, vec!["x.example".to_string()]);
    }
}
