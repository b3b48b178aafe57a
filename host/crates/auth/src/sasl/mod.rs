//! SASL (RFC 4422) server side: mechanisms SCRAM-SHA-1, SCRAM-SHA-256 and their -PLUS
//! variants with channel binding (RFC 5802, RFC 7677, RFC 9266 `tls-exporter`, RFC 5929
//! `tls-server-end-point`), and PLAIN (RFC 4616). Also the stored credential format:
//! passwords are kept only as SCRAM salted keys ([`StoredCredentials`]).
//!
//! Mechanisms are pure state machines; the session core feeds them the client's messages
//! and a [`CredentialSource`] and sends whatever [`Outcome`] they return. The [`client`]
//! module has the matching SCRAM client and the PLAIN initial response.

pub mod bearer;
pub mod client;
mod credentials;
mod crypto;
mod messages;
mod plain;
mod scram;
#[cfg(test)]
mod tests;
pub mod verified;

pub use credentials::{derive_credentials, verify_password};
pub use plain::{PlainCredentials, parse_plain};

/// Default PBKDF2 iteration count for newly stored credentials.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Mechanisms the server implements, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    ScramSha256Plus,
    ScramSha1Plus,
    ScramSha256,
    ScramSha1,
    Plain,
    /// RFC 7628 bearer tokens; verified by the session with the tenant's token settings.
    OAuthBearer,
    /// X-OAUTH (MongooseIM) bearer tokens: the token alone, or PLAIN-like.
    XOAuth,
    /// X-OAUTH2 (Google, ejabberd): `NUL user NUL token`; parsed like X-OAUTH.
    XOAuth2,
}

impl Mechanism {
    /// The IANA name (`SCRAM-SHA-256-PLUS`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
            Mechanism::OAuthBearer => "OAUTHBEARER",
            Mechanism::XOAuth => "X-OAUTH",
            Mechanism::XOAuth2 => "X-OAUTH2",
        }
    }

    /// Parses an IANA mechanism name (case-sensitive, as RFC 4422 requires).
    pub fn from_name(name: &str) -> Option<Mechanism> {
        [
            Mechanism::ScramSha256Plus,
            Mechanism::ScramSha1Plus,
            Mechanism::ScramSha256,
            Mechanism::ScramSha1,
            Mechanism::Plain,
            Mechanism::OAuthBearer,
            Mechanism::XOAuth,
            Mechanism::XOAuth2,
        ]
        .into_iter()
        .find(|m| m.name() == name)
    }

    /// True for the mechanisms that carry a bearer token.
    pub fn is_token(self) -> bool {
        matches!(
            self,
            Mechanism::OAuthBearer | Mechanism::XOAuth | Mechanism::XOAuth2
        )
    }

    /// True for the channel-binding (-PLUS) variants.
    pub fn is_plus(self) -> bool {
        matches!(self, Mechanism::ScramSha256Plus | Mechanism::ScramSha1Plus)
    }
}

pub use heliograph_storage::credentials::{ScramKeys, StoredCredentials};

/// Hash function of a SCRAM family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ScramHash {
    Sha1,
    Sha256,
}

/// Channel-binding data of the current connection (RFC 5056), present only over TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelBindings {
    /// RFC 9266 `tls-exporter` (TLS 1.3 only).
    pub tls_exporter: Option<Vec<u8>>,
    /// RFC 5929 `tls-server-end-point`: hash of the server certificate.
    pub tls_server_end_point: Option<Vec<u8>>,
}

impl ChannelBindings {
    /// Names of the supported channel-binding types, for XEP-0440 advertisement.
    pub fn types(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.tls_exporter.is_some() {
            v.push("tls-exporter");
        }
        if self.tls_server_end_point.is_some() {
            v.push("tls-server-end-point");
        }
        v
    }
}

/// SASL failure conditions (RFC 6120 §6.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslFailure {
    Aborted,
    AccountDisabled,
    CredentialsExpired,
    EncryptionRequired,
    IncorrectEncoding,
    InvalidAuthzid,
    InvalidMechanism,
    MalformedRequest,
    MechanismTooWeak,
    NotAuthorized,
    TemporaryAuthFailure,
}

impl SaslFailure {
    /// The element name of the condition.
    pub fn condition(self) -> &'static str {
        match self {
            SaslFailure::Aborted => "aborted",
            SaslFailure::AccountDisabled => "account-disabled",
            SaslFailure::CredentialsExpired => "credentials-expired",
            SaslFailure::EncryptionRequired => "encryption-required",
            SaslFailure::IncorrectEncoding => "incorrect-encoding",
            SaslFailure::InvalidAuthzid => "invalid-authzid",
            SaslFailure::InvalidMechanism => "invalid-mechanism",
            SaslFailure::MalformedRequest => "malformed-request",
            SaslFailure::MechanismTooWeak => "mechanism-too-weak",
            SaslFailure::NotAuthorized => "not-authorized",
            SaslFailure::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }
}

/// Result of a password check against an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    Valid,
    Invalid,
    NoSuchUser,
    /// The account store could not be read (a database outage): `temporary-auth-failure`.
    Unavailable,
}

/// The account store could not be read; the login fails with `temporary-auth-failure`
/// (never `not-authorized`: the client should retry, not drop its credentials).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// Where mechanisms get account data. `username` is the SASL authentication identity as
/// sent by the client after SASLprep; the source normalizes it to a localpart.
pub trait CredentialSource {
    /// SCRAM keys for the user and hash, or `None` if the account does not exist.
    fn scram_keys(&self, username: &str, hash: ScramHash)
    -> Result<Option<ScramKeys>, Unavailable>;
    /// Verifies a plaintext password (PLAIN).
    fn check_password(&self, username: &str, password: &str) -> PasswordCheck;
}

/// What a mechanism step produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Send `<challenge/>` with this data.
    Challenge(Vec<u8>),
    /// Authentication succeeded for `username` (the authentication identity, SASLprep'd);
    /// send `<success/>` carrying `additional_data` if any. `authzid` is the non-empty
    /// authorization identity the client asked for, if any; the session core checks it
    /// against the account and answers `invalid-authzid` itself.
    Success {
        username: String,
        authzid: Option<String>,
        additional_data: Option<Vec<u8>>,
    },
    /// Send `<failure/>` with this condition and optional text.
    Failure(SaslFailure, Option<String>),
}

/// Per-connection facts a mechanism needs.
#[derive(Debug, Clone, Default)]
pub struct SaslContext {
    /// Channel bindings of the connection (empty without TLS).
    pub channel_bindings: ChannelBindings,
    /// Whether the server advertised any -PLUS mechanism on this connection (for the
    /// SCRAM downgrade check of the gs2 `y` flag).
    pub plus_advertised: bool,
}

/// One authentication exchange for one mechanism.
#[derive(Debug)]
pub struct SaslServer {
    mechanism: Mechanism,
    exchange: Exchange,
}

#[derive(Debug)]
enum Exchange {
    Scram(scram::ScramServer),
    Plain(plain::PlainServer),
    /// Token mechanisms need a tenant; the session runs them (see `session::auth`).
    NeedsSession,
}

impl SaslServer {
    pub fn new(mechanism: Mechanism, ctx: SaslContext) -> Self {
        let scram = |hash| Exchange::Scram(scram::ScramServer::new(hash, mechanism.is_plus(), ctx));
        let exchange = match mechanism {
            Mechanism::ScramSha256Plus | Mechanism::ScramSha256 => scram(ScramHash::Sha256),
            Mechanism::ScramSha1Plus | Mechanism::ScramSha1 => scram(ScramHash::Sha1),
            Mechanism::Plain => Exchange::Plain(plain::PlainServer::default()),
            Mechanism::OAuthBearer | Mechanism::XOAuth | Mechanism::XOAuth2 => {
                Exchange::NeedsSession
            }
        };
        SaslServer {
            mechanism,
            exchange,
        }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Processes the next client message (the initial response of `<auth/>` or a
    /// `<response/>`; empty when the client sent none). Once a `Success` or `Failure` was
    /// returned, further messages fail with `MalformedRequest`.
    pub fn step(&mut self, input: &[u8], creds: &dyn CredentialSource) -> Outcome {
        match &mut self.exchange {
            Exchange::Scram(s) => s.step(input, creds),
            Exchange::Plain(p) => p.step(input, creds),
            Exchange::NeedsSession => Outcome::Failure(SaslFailure::InvalidMechanism, None),
        }
    }

    /// Fixes the server part of the SCRAM nonce (test vectors only).
    #[cfg(test)]
    pub(crate) fn set_server_nonce(&mut self, nonce: &str) {
        if let Exchange::Scram(s) = &mut self.exchange {
            s.set_server_nonce(nonce);
        }
    }
}
