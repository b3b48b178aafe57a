//! A tenant's external services (`[tenants.NAME.external_services]`,
//! `"external_services"` in the admin API): the STUN and TURN servers its users discover
//! with XEP-0215, and the shared secret the server signs TURN credentials with (the TURN
//! REST API scheme of coturn, eturnal and Janus). The secret is write-only: API views
//! show `"turn_secret_set": true` instead of it.

use serde::{Deserialize, Serialize};

/// Default `credential_ttl`: one day.
pub const DEFAULT_CREDENTIAL_TTL: u64 = 86_400;
/// Shortest credential lifetime accepted, in seconds.
pub const MIN_CREDENTIAL_TTL: u64 = 60;
/// Longest credential lifetime accepted, in seconds (30 days).
pub const MAX_CREDENTIAL_TTL: u64 = 30 * 86_400;
/// Services one tenant may list.
pub const MAX_SERVICES: usize = 32;
/// Longest shared secret, in bytes.
pub const MAX_SECRET_LENGTH: usize = 1024;

/// The kind of an external service (XEP-0215's registry of `type` values we serve).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceType {
    Stun,
    Turn,
    Stuns,
    Turns,
}

impl ServiceType {
    /// The `type` attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::Stun => "stun",
            ServiceType::Turn => "turn",
            ServiceType::Stuns => "stuns",
            ServiceType::Turns => "turns",
        }
    }

    /// The type of a `type` attribute value.
    pub fn parse(s: &str) -> Option<ServiceType> {
        match s {
            "stun" => Some(ServiceType::Stun),
            "turn" => Some(ServiceType::Turn),
            "stuns" => Some(ServiceType::Stuns),
            "turns" => Some(ServiceType::Turns),
            _ => None,
        }
    }

    /// TURN relays need credentials by default; STUN servers do not.
    pub fn restricted_by_default(self) -> bool {
        matches!(self, ServiceType::Turn | ServiceType::Turns)
    }
}

/// The transport protocol of a service (XEP-0215 `transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// The `transport` attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// One STUN or TURN server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalService {
    #[serde(rename = "type")]
    pub kind: ServiceType,
    /// Host name or IP address clients connect to.
    pub host: String,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    /// Clients need credentials (default: true for turn/turns, false for stun/stuns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restricted: Option<bool>,
    /// A name shown to users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ExternalService {
    /// Whether the service needs credentials.
    pub fn is_restricted(&self) -> bool {
        self.restricted
            .unwrap_or_else(|| self.kind.restricted_by_default())
    }

    /// What identifies a service in pushes and `<credentials/>` requests.
    pub fn key(&self) -> (ServiceType, &str, u16, Option<Transport>) {
        (self.kind, &self.host, self.port, self.transport)
    }
}

/// External services of one tenant; every field has a default (no services).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExternalServices {
    /// The TURN REST API shared secret; never shown by the API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turn_secret: Option<String>,
    /// In API views: whether a secret is set. Sent back without `turn_secret`, `true`
    /// keeps the current secret.
    #[serde(skip_serializing_if = "is_false")]
    pub turn_secret_set: bool,
    /// Lifetime of issued credentials, in seconds.
    pub credential_ttl: u64,
    pub services: Vec<ExternalService>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Default for ExternalServices {
    fn default() -> Self {
        ExternalServices {
            turn_secret: None,
            turn_secret_set: false,
            credential_ttl: DEFAULT_CREDENTIAL_TTL,
            services: Vec::new(),
        }
    }
}

/// What is wrong with a tenant's external services.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExternalServicesError {
    #[error(
        "credential_ttl must be between {min} and {max} seconds, not {0}",
        min = MIN_CREDENTIAL_TTL,
        max = MAX_CREDENTIAL_TTL
    )]
    Ttl(u64),
    #[error("turn_secret must be 1 to {} bytes", MAX_SECRET_LENGTH)]
    SecretLength,
    #[error("turn_secret_set keeps the current secret, and there is none")]
    NoSecretToKeep,
    #[error("at most {} services", MAX_SERVICES)]
    TooMany,
    #[error("service host {0:?} is not a host name or IP address")]
    Host(String),
    #[error("service {0} has port 0")]
    Port(String),
    #[error("service {0} is listed twice")]
    Duplicate(String),
    #[error("restricted service {0} needs turn_secret to sign credentials")]
    NeedsSecret(String),
    #[error("service {0}: name is longer than 256 characters")]
    Name(String),
}

impl ExternalServices {
    /// The settings as API views show them: the secret replaced by `turn_secret_set`.
    pub fn redacted(&self) -> ExternalServices {
        ExternalServices {
            turn_secret: None,
            turn_secret_set: self.turn_secret.is_some(),
            ..self.clone()
        }
    }

    /// A view sent back (`turn_secret_set` and no `turn_secret`) keeps the secret of
    /// `current`.
    pub fn restore_secret(
        &mut self,
        current: &ExternalServices,
    ) -> Result<(), ExternalServicesError> {
        if self.turn_secret.is_none() && std::mem::take(&mut self.turn_secret_set) {
            self.turn_secret = Some(
                current
                    .turn_secret
                    .clone()
                    .ok_or(ExternalServicesError::NoSecretToKeep)?,
            );
        }
        Ok(())
    }

    /// Checks the settings and normalizes host names (lowercase).
    pub fn normalized(mut self) -> Result<ExternalServices, ExternalServicesError> {
        if self.turn_secret_set && self.turn_secret.is_none() {
            return Err(ExternalServicesError::NoSecretToKeep);
        }
        self.turn_secret_set = false;
        if !(MIN_CREDENTIAL_TTL..=MAX_CREDENTIAL_TTL).contains(&self.credential_ttl) {
            return Err(ExternalServicesError::Ttl(self.credential_ttl));
        }
        if let Some(s) = &self.turn_secret
            && (s.is_empty() || s.len() > MAX_SECRET_LENGTH)
        {
            return Err(ExternalServicesError::SecretLength);
        }
        if self.services.len() > MAX_SERVICES {
            return Err(ExternalServicesError::TooMany);
        }
        let mut seen = std::collections::HashSet::new();
        for s in &mut self.services {
            s.host = normalize_host(&s.host)
                .ok_or_else(|| ExternalServicesError::Host(s.host.clone()))?;
            let label = format!("{}:{}:{}", s.kind.as_str(), s.host, s.port);
            if s.port == 0 {
                return Err(ExternalServicesError::Port(label));
            }
            if s.name.as_ref().is_some_and(|n| n.chars().count() > 256) {
                return Err(ExternalServicesError::Name(label));
            }
            if s.is_restricted() && self.turn_secret.is_none() {
                return Err(ExternalServicesError::NeedsSecret(label));
            }
            if !seen.insert((s.kind, s.host.clone(), s.port, s.transport)) {
                return Err(ExternalServicesError::Duplicate(label));
            }
        }
        Ok(self)
    }
}

/// A host name (letters, digits, `-`, `.`) or an IP address, lowercase; `None` if it is
/// neither.
fn normalize_host(host: &str) -> Option<String> {
    let h = host.trim().trim_end_matches('.').to_ascii_lowercase();
    if h.parse::<std::net::IpAddr>().is_ok() {
        return Some(h);
    }
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    ok.then_some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> ExternalServices {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn defaults_and_restricted_by_type() {
        let s = parse(
            "turn_secret = \"s3cret\"\n[[services]]\ntype = \"turn\"\nhost = \"TURN.Example.com\"\nport = 3478\ntransport = \"udp\"\n[[services]]\ntype = \"stun\"\nhost = \"127.0.0.1\"\nport = 3478\n",
        )
        .normalized()
        .unwrap();
        assert_eq!(s.credential_ttl, DEFAULT_CREDENTIAL_TTL);
        assert_eq!(s.services[0].host, "turn.example.com");
        assert!(s.services[0].is_restricted());
        assert!(!s.services[1].is_restricted());
        assert_eq!(s.services[0].transport, Some(Transport::Udp));
    }

    #[test]
    fn invalid_settings_are_refused_with_their_reason() {
        let svc = |extra: &str| {
            format!("[[services]]\ntype = \"turn\"\nhost = \"h.test\"\nport = 3478\n{extra}")
        };
        assert_eq!(
            parse(&svc("")).normalized().unwrap_err(),
            ExternalServicesError::NeedsSecret("turn:h.test:3478".into())
        );
        assert!(parse(&svc("restricted = false")).normalized().is_ok());
        assert_eq!(
            parse("credential_ttl = 5").normalized().unwrap_err(),
            ExternalServicesError::Ttl(5)
        );
        assert_eq!(
            parse("turn_secret = \"\"").normalized().unwrap_err(),
            ExternalServicesError::SecretLength
        );
        let bad_host = "[[services]]\ntype = \"stun\"\nhost = \"a b\"\nport = 1\n";
        assert!(matches!(
            parse(bad_host).normalized(),
            Err(ExternalServicesError::Host(_))
        ));
        let port0 = "[[services]]\ntype = \"stun\"\nhost = \"h\"\nport = 0\n";
        assert!(matches!(
            parse(port0).normalized(),
            Err(ExternalServicesError::Port(_))
        ));
        let twice = format!("turn_secret = \"s\"\n{}{}", svc(""), svc(""));
        assert!(matches!(
            parse(&twice).normalized(),
            Err(ExternalServicesError::Duplicate(_))
        ));
        assert!(
            toml::from_str::<ExternalServices>(
                "[[services]]\ntype = \"ftp\"\nhost = \"h\"\nport = 1\n"
            )
            .is_err()
        );
        assert!(toml::from_str::<ExternalServices>("bogus = 1").is_err());
    }

    #[test]
    fn the_view_hides_the_secret_and_sending_it_back_keeps_it() {
        let current = parse("turn_secret = \"s3cret\"").normalized().unwrap();
        let view = current.redacted();
        let json = serde_json::to_string(&view).unwrap();
        assert!(!json.contains("s3cret"), "{json}");
        assert!(json.contains("\"turn_secret_set\":true"), "{json}");
        let mut back: ExternalServices = serde_json::from_str(&json).unwrap();
        back.restore_secret(&current).unwrap();
        assert_eq!(back.normalized().unwrap(), current);
        // Without a current secret, the flag alone is an error.
        let mut orphan: ExternalServices = serde_json::from_str(&json).unwrap();
        assert_eq!(
            orphan.restore_secret(&ExternalServices::default()),
            Err(ExternalServicesError::NoSecretToKeep)
        );
    }
}
