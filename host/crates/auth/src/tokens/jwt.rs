//! JWT validation for a tenant: its settings as written in the config or sent to the
//! admin API ([`JwtSettings`]), the keys loaded from them ([`JwtVerifier`], rebuilt with
//! the tenant on every change and reload, so key files and JWKS files are re-read), and
//! the check of one token ([`JwtVerifier::verify`]).
//!
//! Key selection: a token with a `kid` is checked only with the key of that id (an
//! unknown `kid` is refused, not tried against other keys). A token without `kid` is
//! tried with every key whose algorithm matches the token's `alg`; this is what most
//! validators do and lets a single unnamed key work. A key never verifies a token of
//! another algorithm (no `alg` confusion between HMAC secrets and public keys).

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use super::{TokenError, localpart_for};
use crate::REDACTED;

/// Default clock leeway for `exp`, `nbf` and `iat`, in seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 60;

/// A tenant's JWT settings (`[tenants.NAME.jwt]`, or `"jwt": {...}` in the admin API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// Keys given inline or as files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<JwtKeySpec>,
    /// JWKS files (RFC 7517 `{"keys": [...]}`), re-read on reload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwks_files: Vec<PathBuf>,
    /// The claim naming the user: a localpart or a bare JID of the stream's domain.
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// Accepted `aud` values; when set, a token must carry one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audience: Vec<String>,
    /// Accepted `iss` values; when set, a token must carry one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issuer: Vec<String>,
    /// Clock leeway in seconds for `exp`, `nbf` and `iat`.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Refuse tokens without `exp` (default true).
    #[serde(default = "yes")]
    pub require_exp: bool,
}

fn default_username_claim() -> String {
    "sub".into()
}
fn default_leeway() -> u64 {
    DEFAULT_LEEWAY_SECS
}
fn yes() -> bool {
    true
}

/// One configured key: an algorithm and exactly one source of key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeySpec {
    /// Key id matched against the token's `kid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// `HS256`, `HS384`, `HS512`, `RS256`, `RS384`, `RS512`, `PS256`, `PS384`, `PS512`,
    /// `ES256`, `ES384` or `EdDSA`.
    pub alg: String,
    /// HMAC secret (UTF-8), inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// File holding the HMAC secret (raw bytes; one trailing newline is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// Public key (PEM, `PUBLIC KEY` or `RSA PUBLIC KEY`), inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// File holding the public key in PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_file: Option<PathBuf>,
}

impl JwtSettings {
    /// Puts back the current inline secrets where `self` (a change sent to the API,
    /// typically a view edited and sent back) has [`REDACTED`]: the key with the same
    /// `kid` and `alg` in `current` keeps its secret. Errs with the key's index when
    /// there is no such key.
    pub fn restore_redacted(&mut self, current: Option<&JwtSettings>) -> Result<(), usize> {
        for (index, k) in self.keys.iter_mut().enumerate() {
            if k.secret.as_deref() != Some(REDACTED) {
                continue;
            }
            let kept = current
                .into_iter()
                .flat_map(|c| &c.keys)
                .find(|c| c.kid == k.kid && c.alg == k.alg && c.secret.is_some())
                .ok_or(index)?;
            k.secret = kept.secret.clone();
        }
        Ok(())
    }

    /// True if any key material comes from a file (changing these is the operator's).
    pub fn reads_files(&self) -> bool {
        !self.jwks_files.is_empty()
            || self
                .keys
                .iter()
                .any(|k| k.secret_file.is_some() || k.public_key_file.is_some())
    }

    /// The settings with inline secrets replaced by [`REDACTED`] (for API views).
    pub fn redacted(&self) -> JwtSettings {
        let mut s = self.clone();
        for k in &mut s.keys {
            if k.secret.is_some() {
                k.secret = Some(REDACTED.into());
            }
        }
        s
    }
}

/// Why a tenant's JWT settings cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    #[error("key {index}: unsupported algorithm {alg:?}")]
    Algorithm { index: usize, alg: String },
    #[error("key {index}: give exactly one of secret, secret_file, public_key, public_key_file")]
    Source { index: usize },
    #[error("key {index}: {alg} needs {wants}")]
    WrongMaterial {
        index: usize,
        alg: String,
        wants: &'static str,
    },
    #[error("key {index}: reading {path:?}: {source}")]
    Read {
        index: usize,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key {index}: invalid key: {detail}")]
    Key { index: usize, detail: String },
    #[error("JWKS {path:?}: {detail}")]
    Jwks { path: PathBuf, detail: String },
    #[error("two keys share the kid {0:?}")]
    DuplicateKid(String),
    #[error("no keys configured")]
    NoKeys,
    #[error("username_claim must not be empty")]
    UsernameClaim,
}

/// A loaded key: which algorithms it verifies and the key itself.
struct LoadedKey {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

/// A tenant's loaded JWT keys and checks.
pub struct JwtVerifier {
    keys: Vec<LoadedKey>,
    by_kid: HashMap<String, usize>,
    username_claim: String,
    audience: Vec<String>,
    issuer: Vec<String>,
    leeway: u64,
    require_exp: bool,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.keys.len())
            .field("kids", &self.by_kid.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtIdentity {
    /// The user's localpart in the stream's domain.
    pub local: String,
    /// `exp`, if the token has one (seconds since the epoch).
    pub expires_at: Option<u64>,
}

fn family(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => "a secret",
        Algorithm::ES256 | Algorithm::ES384 => "an EC public key",
        Algorithm::EdDSA => "an Ed25519 public key",
        _ => "an RSA public key",
    }
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

impl JwtVerifier {
    /// Checks what can be checked without reading files: algorithms, one source per key,
    /// the username claim, and that some key is configured.
    pub fn check_settings(settings: &JwtSettings) -> Result<(), JwtConfigError> {
        if settings.username_claim.trim().is_empty() {
            return Err(JwtConfigError::UsernameClaim);
        }
        if settings.keys.is_empty() && settings.jwks_files.is_empty() {
            return Err(JwtConfigError::NoKeys);
        }
        for (index, spec) in settings.keys.iter().enumerate() {
            Algorithm::from_str(&spec.alg).map_err(|_| JwtConfigError::Algorithm {
                index,
                alg: spec.alg.clone(),
            })?;
            let sources = [
                spec.secret.is_some(),
                spec.secret_file.is_some(),
                spec.public_key.is_some(),
                spec.public_key_file.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() != 1 {
                return Err(JwtConfigError::Source { index });
            }
        }
        Ok(())
    }

    /// Loads every key (reading files now) and checks the settings.
    pub fn load(settings: &JwtSettings) -> Result<JwtVerifier, JwtConfigError> {
        Self::check_settings(settings)?;
        let mut keys = Vec::new();
        for (index, spec) in settings.keys.iter().enumerate() {
            keys.push(load_key(index, spec)?);
        }
        for path in &settings.jwks_files {
            keys.extend(load_jwks(path)?);
        }
        if keys.is_empty() {
            return Err(JwtConfigError::NoKeys);
        }
        let mut by_kid = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            if let Some(kid) = &k.kid
                && by_kid.insert(kid.clone(), i).is_some()
            {
                return Err(JwtConfigError::DuplicateKid(kid.clone()));
            }
        }
        Ok(JwtVerifier {
            keys,
            by_kid,
            username_claim: settings.username_claim.clone(),
            audience: settings.audience.clone(),
            issuer: settings.issuer.clone(),
            leeway: settings.leeway_secs,
            require_exp: settings.require_exp,
        })
    }

    /// Number of keys loaded.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        // Time claims are checked in `identity` against the caller's clock (one clock
        // for every check, and testable); here only their presence is required.
        v.validate_nbf = false;
        v.validate_exp = false;
        let mut required: Vec<&str> = Vec::new();
        if self.require_exp {
            required.push("exp");
        }
        if self.audience.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.audience);
            required.push("aud");
        }
        if !self.issuer.is_empty() {
            v.set_issuer(&self.issuer);
            required.push("iss");
        }
        v.set_required_spec_claims(&required);
        v
    }

    /// Verifies `token` for a login to `domain` at time `now` (seconds since the epoch).
    pub fn verify(&self, token: &str, domain: &str, now: u64) -> Result<JwtIdentity, TokenError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| TokenError::Malformed(format!("header: {}", kind_text(e.kind()))))?;
        let candidates: Vec<&LoadedKey> = match &header.kid {
            Some(kid) => {
                let i = *self
                    .by_kid
                    .get(kid)
                    .ok_or_else(|| TokenError::UnknownKid(kid.clone()))?;
                vec![&self.keys[i]]
            }
            None => self
                .keys
                .iter()
                .filter(|k| k.algorithms.contains(&header.alg))
                .collect(),
        };
        let candidates: Vec<&LoadedKey> = candidates
            .into_iter()
            .filter(|k| k.algorithms.contains(&header.alg))
            .collect();
        if candidates.is_empty() {
            return Err(TokenError::NoKeyForAlgorithm(format!("{:?}", header.alg)));
        }
        let validation = self.validation(header.alg);
        let mut last = TokenError::BadSignature;
        for key in candidates {
            match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
                token,
                &key.key,
                &validation,
            ) {
                Ok(data) => return self.identity(&data.claims, domain, now),
                Err(e) => {
                    last = map_error(e.kind());
                    // Only a bad signature means "try the next key"; any other error
                    // comes from a key that did verify the signature.
                    if last != TokenError::BadSignature {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    fn identity(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
        domain: &str,
        now: u64,
    ) -> Result<JwtIdentity, TokenError> {
        let time = |name: &str| -> Result<Option<f64>, TokenError> {
            match claims.get(name) {
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| TokenError::Malformed(format!("{name} is not a number"))),
            }
        };
        let (now_f, leeway) = (now as f64, self.leeway as f64);
        // RFC 7519 §4.1.4: not accepted on or after `exp` (plus the leeway).
        let exp = time("exp")?;
        if exp.is_some_and(|exp| now_f >= exp + leeway) {
            return Err(TokenError::Expired);
        }
        for name in ["nbf", "iat"] {
            if time(name)?.is_some_and(|t| t > now_f + leeway) {
                return Err(TokenError::NotYetValid);
            }
        }
        let user = claims
            .get(&self.username_claim)
            .and_then(|v| v.as_str())
            .ok_or_else(|| TokenError::MissingClaim(self.username_claim.clone()))?;
        let local = localpart_for(user, domain)?;
        let expires_at = exp.map(|e| e as u64);
        Ok(JwtIdentity { local, expires_at })
    }
}

fn kind_text(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Base64(_) => "invalid base64",
        ErrorKind::Json(_) => "invalid JSON",
        ErrorKind::Utf8(_) => "invalid UTF-8",
        ErrorKind::InvalidAlgorithmName => "unknown algorithm",
        _ => "invalid",
    }
}

fn map_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(c) => match c.as_str() {
            "aud" => TokenError::WrongAudience,
            "iss" => TokenError::WrongIssuer,
            _ => TokenError::MissingClaim(c.clone()),
        },
        // ring refuses a signature of the wrong length or encoding as a crypto error.
        ErrorKind::Crypto(_) | ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) => {
            TokenError::BadSignature
        }
        other => TokenError::Malformed(kind_text(other).into()),
    }
}

fn load_key(index: usize, spec: &JwtKeySpec) -> Result<LoadedKey, JwtConfigError> {
    let alg = Algorithm::from_str(&spec.alg).map_err(|_| JwtConfigError::Algorithm {
        index,
        alg: spec.alg.clone(),
    })?;
    let sources = [
        spec.secret.is_some(),
        spec.secret_file.is_some(),
        spec.public_key.is_some(),
        spec.public_key_file.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() != 1 {
        return Err(JwtConfigError::Source { index });
    }
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| JwtConfigError::Read {
            index,
            path: path.clone(),
            source,
        })
    };
    let wrong = || JwtConfigError::WrongMaterial {
        index,
        alg: spec.alg.clone(),
        wants: family(alg),
    };
    let secret = match (&spec.secret, &spec.secret_file) {
        (Some(s), _) => Some(s.as_bytes().to_vec()),
        (None, Some(p)) => {
            let mut bytes = read(p)?;
            if bytes.last() == Some(&b'\n') {
                bytes.pop();
            }
            Some(bytes)
        }
        _ => None,
    };
    let key = if is_hmac(alg) {
        let secret = secret.ok_or_else(wrong)?;
        if secret.is_empty() {
            return Err(JwtConfigError::Key {
                index,
                detail: "empty secret".into(),
            });
        }
        DecodingKey::from_secret(&secret)
    } else {
        if secret.is_some() {
            return Err(wrong());
        }
        let pem = match (&spec.public_key, &spec.public_key_file) {
            (Some(p), _) => p.as_bytes().to_vec(),
            (None, Some(path)) => read(path)?,
            _ => return Err(wrong()),
        };
        let parsed = match alg {
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
            _ => DecodingKey::from_rsa_pem(&pem),
        };
        parsed.map_err(|e| JwtConfigError::Key {
            index,
            detail: e.to_string(),
        })?
    };
    Ok(LoadedKey {
        kid: spec.kid.clone(),
        algorithms: vec![alg],
        key,
    })
}

/// The keys of a JWKS file. A key with `alg` verifies that algorithm only; without it,
/// the algorithms its type allows (RSA: RS*/PS*, EC: by curve, OKP: EdDSA, oct: HS*).
fn load_jwks(path: &PathBuf) -> Result<Vec<LoadedKey>, JwtConfigError> {
    let err = |detail: String| JwtConfigError::Jwks {
        path: path.clone(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let set: JwkSet = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    for jwk in &set.keys {
        let algorithms = match jwk.common.key_algorithm {
            Some(ka) => vec![
                Algorithm::from_str(&ka.to_string())
                    .map_err(|_| err(format!("unsupported alg {ka}")))?,
            ],
            None => match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => vec![
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ],
                AlgorithmParameters::EllipticCurve(p) => match p.curve {
                    EllipticCurve::P256 => vec![Algorithm::ES256],
                    EllipticCurve::P384 => vec![Algorithm::ES384],
                    _ => return Err(err("unsupported EC curve".into())),
                },
                AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
                AlgorithmParameters::OctetKey(_) => {
                    vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]
                }
            },
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| err(e.to_string()))?;
        out.push(LoadedKey {
            kid: jwk.common.key_id.clone(),
            algorithms,
            key,
        });
    }
    Ok(out)
}
