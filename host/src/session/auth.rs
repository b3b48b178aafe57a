//! SASL negotiation glue: which mechanisms a connection may use, the `<auth/>`,
//! `<response/>` and `<abort/>` exchange, and account lookups for the mechanisms.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::sasl::{
    ChannelBindings, CredentialSource, Mechanism, Outcome, PasswordCheck, SaslContext, SaslFailure,
    SaslServer, ScramHash, ScramKeys, verify_password,
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

/// Normalizes a SASL username to a localpart of `domain` (RFC 7622 nodeprep through the
/// `jid` crate); `None` if it is not a valid localpart.
pub fn normalize_username(username: &str, domain: &str) -> Option<String> {
    if username.is_empty() || username.contains(['@', '/']) {
        return None;
    }
    let bare = jid::BareJid::new(&format!("{username}@{domain}")).ok()?;
    bare.node().map(|n| n.as_str().to_string())
}

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
    fn scram_keys(&self, username: &str, hash: ScramHash) -> Option<ScramKeys> {
        let account = self.account(username)?;
        let creds = self.users.credentials(&account).ok().flatten()?;
        Some(match hash {
            ScramHash::Sha1 => creds.sha1,
            ScramHash::Sha256 => creds.sha256,
        })
    }

    fn check_password(&self, username: &str, password: &str) -> PasswordCheck {
        let Some(account) = self.account(username) else {
            return PasswordCheck::NoSuchUser;
        };
        match self.users.credentials(&account) {
            Ok(Some(creds)) => {
                let stored_key = &creds.sha256.stored_key;
                if self.verified.contains(&account, stored_key, password) {
                    PasswordCheck::Valid
                } else if verify_password(password, &creds.sha256, ScramHash::Sha256) {
                    self.verified.remember(&account, stored_key, password);
                    PasswordCheck::Valid
                } else {
                    PasswordCheck::Invalid
                }
            }
            _ => PasswordCheck::NoSuchUser,
        }
    }
}

/// An authentication exchange in progress.
pub struct Exchange {
    server: SaslServer,
}

impl Exchange {
    pub fn start(mech: Mechanism, cb: ChannelBindings, plus_advertised: bool) -> Exchange {
        let ctx = SaslContext {
            channel_bindings: cb,
            plus_advertised,
        };
        Exchange {
            server: SaslServer::new(mech, ctx),
        }
    }

    pub fn step(&mut self, input: &[u8], creds: &dyn CredentialSource) -> Outcome {
        self.server.step(input, creds)
    }
}
