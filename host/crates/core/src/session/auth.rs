//! SASL negotiation glue: which mechanisms a connection may use, the `<auth/>`,
//! `<response/>` and `<abort/>` exchange, and account lookups for the mechanisms.
//!
//! Tenants whose `auth` names a plugin verify PLAIN through their authenticator plugin
//! ([`verify_with_plugin`]); SCRAM cannot hand a password to a plugin, so those tenants
//! are offered PLAIN only ([`offered_mechanisms_for_plugin`]). Tenants that take tokens
//! (JWT or server-issued) are also offered OAUTHBEARER and X-OAUTH, and their PLAIN
//! accepts a token as the password ([`super::token_login`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::context::Core as Server;
use crate::plugins::{self, AuthDenied, AuthRequest, PluginError};
use crate::router::Transport;
use crate::sasl::{
    ChannelBindings, CredentialSource, Mechanism, Outcome, PasswordCheck, PlainCredentials,
    SaslContext, SaslFailure, SaslServer, ScramHash, ScramKeys, Unavailable, parse_plain,
    verify_password,
};
use crate::storage::{Account, UserStore};
use crate::xml::{Element, ns};

/// Mechanisms offered on a connection, strongest first.
pub fn offered_mechanisms(
    tls: bool,
    cb: &ChannelBindings,
    allow_plain_without_tls: bool,
) -> Vec<Mechanism> {
    let mut v = Vec::with_capacity(5);
    if tls && !cb.types().is_empty() {
        v.push(Mechanism::ScramSha256Plus);
        v.push(Mechanism::ScramSha1Plus);
    }
    v.push(Mechanism::ScramSha256);
    v.push(Mechanism::ScramSha1);
    if tls || allow_plain_without_tls {
        v.push(Mechanism::Plain);
    }
    v
}

/// Mechanisms offered to a tenant that authenticates through a plugin: PLAIN only, where
/// PLAIN is allowed (a plugin needs the password; SCRAM never reveals it).
pub fn offered_mechanisms_for_plugin(tls: bool, allow_plain_without_tls: bool) -> Vec<Mechanism> {
    if tls || allow_plain_without_tls {
        vec![Mechanism::Plain]
    } else {
        Vec::new()
    }
}

/// Adds the token mechanisms (OAUTHBEARER, X-OAUTH, X-OAUTH2) before PLAIN, where PLAIN may be
/// offered: a bearer token is as sensitive as a password.
pub fn add_token_mechanisms(mechs: &mut Vec<Mechanism>, tls: bool, allow_plain_without_tls: bool) {
    if !(tls || allow_plain_without_tls) {
        return;
    }
    let at = mechs
        .iter()
        .position(|m| *m == Mechanism::Plain)
        .unwrap_or(mechs.len());
    mechs.insert(at, Mechanism::XOAuth2);
    mechs.insert(at, Mechanism::XOAuth);
    mechs.insert(at, Mechanism::OAuthBearer);
}

/// The `<mechanisms/>` feature plus XEP-0440 channel-binding types.
pub fn mechanisms_features(mechs: &[Mechanism], cb: &ChannelBindings) -> Vec<Element> {
    let mut m = Element::new("mechanisms", ns::SASL);
    for mech in mechs {
        m.push_child(Element::new("mechanism", ns::SASL).with_text(mech.name()));
    }
    let mut out = vec![m];
    let types = cb.types();
    if !types.is_empty() {
        let mut el = Element::new("sasl-channel-binding", ns::SASL_CB);
        for t in types {
            el.push_child(Element::new("channel-binding", ns::SASL_CB).with_attr("type", t));
        }
        out.push(el);
    }
    out
}

/// `<failure/>` with a condition.
pub fn failure(cond: SaslFailure, text: Option<&str>) -> Element {
    let mut el =
        Element::new("failure", ns::SASL).with_child(Element::new(cond.condition(), ns::SASL));
    if let Some(t) = text {
        el.push_child(
            Element::new("text", ns::SASL)
                .with_attr("xml:lang", "en")
                .with_text(t),
        );
    }
    el
}

/// `<challenge/>` or `<success/>` carrying base64 data (`=` for empty, RFC 6120 §6.4.2).
pub fn with_data(name: &str, data: Option<&[u8]>) -> Element {
    let el = Element::new(name, ns::SASL);
    match data {
        Some(d) if !d.is_empty() => el.with_text(B64.encode(d)),
        Some(_) => el.with_text("="),
        None => el,
    }
}

/// Decodes the base64 payload of `<auth/>` or `<response/>`; `=` and empty mean no data.
pub fn decode_payload(el: &Element) -> Result<Vec<u8>, SaslFailure> {
    let text = el.text();
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed == "=" {
        return Ok(Vec::new());
    }
    B64.decode(trimmed)
        .map_err(|_| SaslFailure::IncorrectEncoding)
}

/// Normalizes a SASL username to a localpart of `domain`; `None` if it is not a valid
/// localpart.
pub use heliograph_xmpp::jid::normalize_localpart as normalize_username;

/// Account lookups for one domain's users.
pub struct AccountCredentials<'a> {
    pub users: &'a dyn UserStore,
    pub domain: &'a str,
    /// Recently verified passwords (skips PBKDF2 for a repeated correct password).
    pub verified: &'a crate::sasl::verified::VerifiedPasswords,
}

impl AccountCredentials<'_> {
    fn account(&self, username: &str) -> Option<Account> {
        normalize_username(username, self.domain).map(|l| Account::new(l, self.domain))
    }
}

impl CredentialSource for AccountCredentials<'_> {
    fn scram_keys(
        &self,
        username: &str,
        hash: ScramHash,
    ) -> Result<Option<ScramKeys>, Unavailable> {
        let Some(account) = self.account(username) else {
            return Ok(None);
        };
        let creds = match self.users.credentials(&account) {
            Ok(Some(creds)) => creds,
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::error!(jid = %account, error = %e, "reading credentials failed");
                return Err(Unavailable);
            }
        };
        Ok(Some(match hash {
            ScramHash::Sha1 => creds.sha1,
            ScramHash::Sha256 => creds.sha256,
        }))
    }

    fn check_password(&self, username: &str, password: &str) -> PasswordCheck {
        match self.check_without_derivation(username, password) {
            PlainCheck::Done(check) => check,
            PlainCheck::Derive(pending) => pending.derive(self.verified),
        }
    }
}

/// How far a PLAIN password check gets without PBKDF2.
pub enum PlainCheck {
    /// Answered: unknown user, storage trouble, or a password verified recently.
    Done(PasswordCheck),
    /// The password must be derived and compared with the stored keys.
    Derive(PendingDerivation),
}

/// A PLAIN password to derive and compare with an account's stored keys.
pub struct PendingDerivation {
    account: Account,
    keys: ScramKeys,
    password: String,
}

impl PendingDerivation {
    /// Derives and compares (about a millisecond of CPU: run it in the
    /// [`crate::derivations::DerivationPool`]), remembering a correct password.
    pub fn derive(self, verified: &crate::sasl::verified::VerifiedPasswords) -> PasswordCheck {
        if verify_password(&self.password, &self.keys, ScramHash::Sha256) {
            verified.remember(&self.account, &self.keys.stored_key, &self.password);
            PasswordCheck::Valid
        } else {
            PasswordCheck::Invalid
        }
    }
}

impl AccountCredentials<'_> {
    /// Looks the account up and answers what needs no derivation.
    pub fn check_without_derivation(&self, username: &str, password: &str) -> PlainCheck {
        let Some(account) = self.account(username) else {
            return PlainCheck::Done(PasswordCheck::NoSuchUser);
        };
        match self.users.credentials(&account) {
            Ok(Some(creds)) => {
                if self
                    .verified
                    .contains(&account, &creds.sha256.stored_key, password)
                {
                    PlainCheck::Done(PasswordCheck::Valid)
                } else {
                    PlainCheck::Derive(PendingDerivation {
                        account,
                        keys: creds.sha256,
                        password: password.to_string(),
                    })
                }
            }
            Ok(None) => PlainCheck::Done(PasswordCheck::NoSuchUser),
            Err(e) => {
                tracing::error!(jid = %account, error = %e, "reading credentials failed");
                PlainCheck::Done(PasswordCheck::Unavailable)
            }
        }
    }
}

/// Checks PLAIN credentials against the stored accounts of `domain`, deriving in the
/// core's [`crate::derivations::DerivationPool`] when it must (a full pool answers
/// `temporary-auth-failure`).
pub async fn check_plain_password_pooled(
    core: &std::sync::Arc<Server>,
    domain: &str,
    plain: PlainCredentials,
) -> Outcome {
    let creds = AccountCredentials {
        users: core.storage.users.as_ref(),
        domain,
        verified: &core.verified_passwords,
    };
    let check = match creds.check_without_derivation(&plain.username, &plain.password) {
        PlainCheck::Done(check) => check,
        PlainCheck::Derive(pending) => {
            let core2 = core.clone();
            match core
                .derivations
                .run(move || pending.derive(&core2.verified_passwords))
                .await
            {
                Ok(check) => check,
                Err(busy) => {
                    tracing::warn!(error = %busy, "PLAIN login refused for now");
                    PasswordCheck::Unavailable
                }
            }
        }
    };
    plain_outcome(check, plain)
}

/// Checks PLAIN credentials against the stored accounts, as the built-in PLAIN does.
pub fn check_plain_password(creds: &dyn CredentialSource, plain: PlainCredentials) -> Outcome {
    let check = creds.check_password(&plain.username, &plain.password);
    plain_outcome(check, plain)
}

/// The SASL outcome of a PLAIN password check.
fn plain_outcome(check: PasswordCheck, plain: PlainCredentials) -> Outcome {
    match check {
        PasswordCheck::Valid => Outcome::Success {
            username: plain.username,
            authzid: plain.authzid,
            additional_data: None,
        },
        PasswordCheck::Invalid | PasswordCheck::NoSuchUser => Outcome::Failure(
            SaslFailure::NotAuthorized,
            Some("invalid credentials".into()),
        ),
        PasswordCheck::Unavailable => Outcome::Failure(
            SaslFailure::TemporaryAuthFailure,
            Some("account storage unavailable".into()),
        ),
    }
}

/// An authentication exchange in progress.
pub enum Exchange {
    /// A built-in mechanism against the server's accounts.
    Builtin(SaslServer),
    /// PLAIN checked by the session: as a token when the tenant takes tokens and the
    /// password looks like one, else by the tenant's authenticator plugin in `slot`, else
    /// against the stored credentials.
    Password {
        tenant: String,
        slot: Option<String>,
        tokens: bool,
        /// An empty challenge was sent (no initial response).
        prompted: bool,
    },
    /// OAUTHBEARER or X-OAUTH.
    Token {
        mech: Mechanism,
        /// OAUTHBEARER sent its error challenge; this failure follows the client's `%x01`.
        pending_failure: Option<(SaslFailure, String)>,
    },
}

/// What a session-run exchange needs next.
pub enum SessionStep {
    /// Send this (a challenge, or a failure for a malformed message).
    Reply(Outcome),
    /// Check these PLAIN credentials.
    Password {
        tenant: String,
        slot: Option<String>,
        tokens: bool,
        creds: PlainCredentials,
    },
    /// Check this bearer token.
    Token {
        mech: Mechanism,
        msg: crate::sasl::bearer::BearerMessage,
    },
}

impl Exchange {
    pub fn start(mech: Mechanism, cb: ChannelBindings, plus_advertised: bool) -> Exchange {
        let ctx = SaslContext {
            channel_bindings: cb,
            plus_advertised,
        };
        Exchange::Builtin(SaslServer::new(mech, ctx))
    }

    /// PLAIN run by the session (plugin tenants, and tenants that take tokens).
    pub fn password(tenant: &str, slot: Option<&str>, tokens: bool) -> Exchange {
        Exchange::Password {
            tenant: tenant.to_string(),
            slot: slot.map(str::to_string),
            tokens,
            prompted: false,
        }
    }

    /// OAUTHBEARER or X-OAUTH.
    pub fn token(mech: Mechanism) -> Exchange {
        Exchange::Token {
            mech,
            pending_failure: None,
        }
    }

    /// A built-in mechanism's step; `None` for a session-run exchange (see
    /// [`Self::session_step`]).
    pub fn step(&mut self, input: &[u8], creds: &dyn CredentialSource) -> Option<Outcome> {
        match self {
            Exchange::Builtin(server) => Some(server.step(input, creds)),
            Exchange::Password { .. } | Exchange::Token { .. } => None,
        }
    }

    /// OAUTHBEARER failed: remember the failure and return the error challenge to send
    /// (RFC 7628 §3.2.2); the client answers `%x01` and then gets the failure.
    pub fn bearer_failed(&mut self, failure: SaslFailure, text: String) -> Outcome {
        if let Exchange::Token {
            pending_failure, ..
        } = self
        {
            *pending_failure = Some((failure, text));
        }
        Outcome::Challenge(crate::sasl::bearer::oauthbearer_error_challenge())
    }

    /// A session-run exchange's step: parse the client's message (asking for it first
    /// if the client sent no initial response).
    pub fn session_step(&mut self, input: &[u8]) -> Option<SessionStep> {
        match self {
            Exchange::Builtin(_) => None,
            Exchange::Password {
                tenant,
                slot,
                tokens,
                prompted,
            } => {
                if input.is_empty() && !*prompted {
                    *prompted = true;
                    return Some(SessionStep::Reply(Outcome::Challenge(Vec::new())));
                }
                Some(match parse_plain(input) {
                    Ok(creds) => SessionStep::Password {
                        tenant: tenant.clone(),
                        slot: slot.clone(),
                        tokens: *tokens,
                        creds,
                    },
                    Err(failure) => SessionStep::Reply(failure),
                })
            }
            Exchange::Token {
                mech,
                pending_failure,
            } => {
                if let Some((f, text)) = pending_failure.take() {
                    // RFC 7628 §3.2.3: the only valid answer to the error is `%x01`.
                    let outcome = if input == [crate::sasl::bearer::KVSEP] {
                        Outcome::Failure(f, Some(text))
                    } else {
                        Outcome::Failure(SaslFailure::MalformedRequest, None)
                    };
                    return Some(SessionStep::Reply(outcome));
                }
                let parsed = match mech {
                    Mechanism::OAuthBearer => crate::sasl::bearer::parse_oauthbearer(input),
                    _ => crate::sasl::bearer::parse_xoauth(input),
                };
                Some(match parsed {
                    Ok(msg) => SessionStep::Token { mech: *mech, msg },
                    Err(f) => SessionStep::Reply(Outcome::Failure(
                        f,
                        Some("malformed token message".into()),
                    )),
                })
            }
        }
    }
}

/// A plugin's verdict on a PLAIN login: the SASL outcome (on success, the username is the
/// plugin's canonical one) and when the authentication expires (seconds since the epoch).
pub struct PluginVerdict {
    pub outcome: Outcome,
    pub expires_at: Option<u64>,
    /// The plugin's roles and attributes of the user (on success), kept on the session.
    pub user_facts: crate::router::UserFacts,
}

/// The connection a login comes from, as a plugin sees it.
pub struct LoginFacts<'a> {
    /// The stream's domain.
    pub domain: &'a str,
    pub address: &'a str,
    pub transport: Transport,
    pub tls: bool,
}

/// The plugin API's name for a session transport.
pub fn plugin_transport(t: Transport) -> plugins::Transport {
    match t {
        Transport::Tcp | Transport::Tls => plugins::Transport::Tcp,
        Transport::Bosh => plugins::Transport::Bosh,
        Transport::WebSocket => plugins::Transport::Websocket,
    }
}

/// Verifies PLAIN credentials with the tenant's authenticator plugin, off the async
/// runtime's workers. Fails closed: any plugin failure is `temporary-auth-failure`,
/// logged with tenant, plugin, version and cause.
pub async fn verify_with_plugin(
    server: &Server,
    tenant: &str,
    slot: &str,
    creds: PlainCredentials,
    conn: LoginFacts<'_>,
) -> PluginVerdict {
    let LoginFacts {
        domain,
        address,
        transport,
        tls,
    } = conn;
    let temporary = |text: &str| PluginVerdict {
        outcome: Outcome::Failure(SaslFailure::TemporaryAuthFailure, Some(text.to_string())),
        expires_at: None,
        user_facts: Default::default(),
    };
    let Some(host) = server.plugin_host() else {
        tracing::warn!(
            tenant,
            plugin = slot,
            cause = "no-plugin-host",
            "plugin authentication unavailable: this server runs no plugin host"
        );
        return temporary("authentication is temporarily unavailable");
    };
    let request = AuthRequest {
        domain: domain.to_string(),
        mechanism: plugins::Mechanism::Password,
        username: creds.username,
        credential: creds.password,
        client_address: Some(address.to_string()),
        transport: plugin_transport(transport),
        tls,
    };
    let outcome = match host.authenticate(tenant, slot, request).await {
        Ok(o) => o,
        Err(e) => {
            // `Failed` was logged by the host with its detail; `NotInstalled` is logged here.
            if let PluginError::NotInstalled { .. } = &e {
                tracing::warn!(tenant, plugin = slot, version = 0u32, cause = %e.cause(),
                    "plugin authentication failed closed: {e}");
            }
            return temporary("authentication is temporarily unavailable");
        }
    };
    let fail = |f: SaslFailure, text: &str| PluginVerdict {
        outcome: Outcome::Failure(f, Some(text.to_string())),
        expires_at: None,
        user_facts: Default::default(),
    };
    match outcome.result {
        Ok(user) => {
            if user.expires_at.is_some_and(|t| t <= unix_now()) {
                return fail(SaslFailure::CredentialsExpired, "credentials expired");
            }
            PluginVerdict {
                outcome: Outcome::Success {
                    username: user.username,
                    authzid: creds.authzid,
                    additional_data: None,
                },
                expires_at: user.expires_at,
                user_facts: crate::router::UserFacts {
                    roles: user.roles,
                    attributes: user.attributes,
                },
            }
        }
        Err(AuthDenied::NotAuthorized) => fail(SaslFailure::NotAuthorized, "invalid credentials"),
        Err(AuthDenied::AccountDisabled) => fail(SaslFailure::AccountDisabled, "account disabled"),
        Err(AuthDenied::TemporaryFailure(reason)) => {
            tracing::warn!(
                tenant,
                plugin = slot,
                version = outcome.version,
                cause = "plugin-temporary",
                "plugin reported a temporary failure: {reason}"
            );
            temporary("authentication is temporarily unavailable")
        }
    }
}

pub use heliograph_xmpp::unix_now;
