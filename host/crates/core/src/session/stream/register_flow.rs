//! XEP-0077 in-band registration of a new account, before authentication, when the
//! stream's tenant turned it on (`profiles.registration`; off by default). The client
//! gets the form (`username`, `password`), then registers and goes on to log in with
//! SASL on the same stream. Refused: before TLS when the listener requires it
//! (`not-authorized`), for tenants whose users an authenticator plugin manages
//! (`not-allowed`: the authenticator world has no registration call to ask), past the
//! tenant's `max_accounts` or `registrations_per_hour` attempts per client address
//! (every attempt to create an account counts, so names cannot be probed faster;
//! `resource-constraint`), a taken name (`conflict`), an invalid name or password
//! (`not-acceptable`).

use super::*;
use crate::tenants::AuthMethod;

/// The registration namespace and its stream feature.
pub const REGISTER: &str = "jabber:iq:register";
pub const REGISTER_FEATURE: &str = "http://jabber.org/features/iq-register";

impl StreamCore {
    /// The stream's tenant, if it lets clients register accounts in-band.
    pub(super) fn registration_tenant(&self) -> Option<Arc<crate::tenants::Tenant>> {
        let tenant = self.core.tenant_of(self.domain.as_deref()?)?;
        (tenant.spec.profiles.registration && tenant.spec.feature_enabled("register"))
            .then_some(tenant)
    }

    /// True for a registration iq this stream serves before authentication.
    pub(super) fn is_registration_iq(&self, el: &Element) -> bool {
        self.authenticated.is_none()
            && Kind::of(el) == Some(Kind::Iq)
            && el.first_child().is_some_and(|q| q.is("query", REGISTER))
            && self.registration_tenant().is_some()
    }

    /// Answers a registration get or set before authentication.
    pub(super) async fn on_register_iq(&mut self, iq: Element) -> Vec<Action> {
        let reply = self.register_reply(&iq).await;
        reply.map(Action::Send).into_iter().collect()
    }

    async fn register_reply(&mut self, iq: &Element) -> Option<Element> {
        let tenant = self.registration_tenant()?;
        let domain = self.domain.clone()?;
        let refuse = |cond, text: &str| stanza::error_reply(iq, cond, Some(text));
        if self.facts.policy.require_tls && !self.facts.tls {
            return refuse(Condition::NotAuthorized, "registration needs TLS");
        }
        let query = iq.first_child()?;
        if stanza::stanza_type(iq) == "get" {
            let form = Element::new("query", REGISTER)
                .with_child(
                    Element::new("instructions", REGISTER)
                        .with_text("Choose a username and password for this server."),
                )
                .with_child(Element::new("username", REGISTER))
                .with_child(Element::new("password", REGISTER));
            return Some(stanza::iq_result_with(iq, form));
        }
        if matches!(tenant.spec.auth, AuthMethod::Plugin { .. }) {
            return refuse(
                Condition::NotAllowed,
                "this domain's accounts are managed by its authenticator",
            );
        }
        let (Some(username), Some(password)) = (
            query.child_text("username", REGISTER),
            query.child_text("password", REGISTER),
        ) else {
            return refuse(Condition::BadRequest, "username and password are needed");
        };
        let Some(local) = crate::xmpp::jid::normalize_localpart(&username, &domain) else {
            return refuse(Condition::NotAcceptable, "not a valid username");
        };
        if password.is_empty() {
            return refuse(Condition::NotAcceptable, "empty password");
        }
        let ip = self
            .facts
            .address
            .parse::<std::net::SocketAddr>()
            .map_or(self.facts.address.clone(), |a| a.ip().to_string());
        let per_hour = tenant.spec.profiles.registrations_per_hour;
        if !self
            .core
            .registrations
            .try_take(&tenant.name, &ip, per_hour)
        {
            tracing::info!(tenant = %tenant.name, address = %ip, "in-band registration rate reached");
            return refuse(
                Condition::ResourceConstraint,
                "too many registrations from your address",
            );
        }
        let users = self.core.storage.users.clone();
        let max = tenant.spec.limits.max_accounts;
        if max > 0 {
            let domains = tenant.spec.domains.clone();
            let u = users.clone();
            let count = crate::storage::blocking(move || {
                domains
                    .iter()
                    .map(|d| u.count_users(d))
                    .sum::<Result<usize, _>>()
            })
            .await;
            if count.map_or(true, |c| c as u64 >= max) {
                return refuse(
                    Condition::ResourceConstraint,
                    "no more accounts on this domain",
                );
            }
        }
        let iterations = self.core.config().auth.scram_iterations;
        let derived = self
            .core
            .derivations
            .run(move || crate::sasl::derive_credentials(&password, iterations))
            .await;
        let creds = match derived {
            Ok(Ok(c)) => c,
            Ok(Err(_)) => return refuse(Condition::NotAcceptable, "the password is not allowed"),
            Err(_) => return refuse(Condition::ResourceConstraint, "busy, try again"),
        };
        let account = Account::new(&local, &domain);
        let a = account.clone();
        match crate::storage::blocking(move || users.create_user(&a, &creds)).await {
            Ok(()) => {
                tracing::info!(%account, address = %ip, "account registered in-band");
                Some(stanza::iq_result(iq))
            }
            Err(crate::storage::StorageError::AlreadyExists) => {
                refuse(Condition::Conflict, "the username is taken")
            }
            Err(e) => {
                tracing::warn!(%account, error = %e, "in-band registration failed");
                refuse(Condition::InternalServerError, "try again later")
            }
        }
    }
}
