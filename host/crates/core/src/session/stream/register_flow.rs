//! XEP-0077 in-band registration of a new account, before authentication, when the
//! stream's tenant turned it on (`profiles.registration`; off by default). The client
//! gets the form (`username`, `password`), then registers and goes on to log in with
//! SASL on the same stream. Refused: before TLS when the listener requires it
//! (`not-authorized`), for tenants whose users an authenticator plugin manages unless
//! the plugin exports `registration.approve` (WIT 0.1.2) and allows the account
//! (`not-allowed` with the plugin's reason when it vetoes; without the export, or when
//! the call fails, `not-allowed` too), past the
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
        if let AuthMethod::Plugin { plugin } = &tenant.spec.auth {
            let request = crate::plugins::RegistrationRequest {
                domain: domain.clone(),
                username: local.clone(),
                password: password.clone(),
                client_address: Some(ip.clone()),
                tls: self.facts.tls,
            };
            if let Err(reason) = self.plugin_approves(&tenant.name, plugin, request).await {
                tracing::info!(tenant = %tenant.name, user = %local, address = %ip, %reason,
                    "in-band registration refused by the authenticator");
                return refuse(Condition::NotAllowed, &reason);
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

    /// The tenant's authenticator's word on a registration: `Err(reason)` unless its
    /// `registration.approve` allows it (a plugin without the export, or a failed call,
    /// refuses, as tenants managed by a plugin always did).
    async fn plugin_approves(
        &self,
        tenant: &str,
        slot: &str,
        request: crate::plugins::RegistrationRequest,
    ) -> Result<(), String> {
        const MANAGED: &str = "this domain's accounts are managed by its authenticator";
        let Some(host) = self.core.plugins.get() else {
            return Err(MANAGED.into());
        };
        match host.approve_registration(tenant, slot, request).await {
            Ok(outcome) => match outcome.decision {
                None => Err(MANAGED.into()),
                Some(Ok(())) => Ok(()),
                Some(Err(reason)) if reason.trim().is_empty() => {
                    Err("the authenticator refused this account".into())
                }
                Some(Err(reason)) => Err(reason),
            },
            Err(e) => {
                tracing::warn!(tenant, plugin = slot, error = %e, "registration approval failed");
                Err("registration is not possible now".into())
            }
        }
    }
}
