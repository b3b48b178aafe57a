//! XEP-0215 External Service Discovery: a tenant's users ask their server for the STUN
//! and TURN servers to use for calls, and get time-limited TURN credentials
//! ([`credentials`]) for the restricted ones. Sessions that asked are told when the
//! tenant's services change ([`push`]).
//!
//! Only the tenant's own users get an answer: a request from a hosted entity (a
//! component, a room) or from a user of a federated tenant is `forbidden`. An entity that
//! has not authenticated cannot send a stanza at all (the client stream refuses it before
//! routing), so the pipeline never hands this module one.

pub mod credentials;
mod push;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dashmap::DashMap;

use crate::hooks::{Address, Feature, IqRequest, IqType, Registrar, SessionEvent};
use crate::stanza::{self, Condition};
use crate::storage::Account;
use crate::tenants::external_services::{
    ExternalService, ExternalServices as Settings, ServiceType,
};
use crate::xml::{Element, ns};

/// The `external-services` feature: the sessions told about their tenant's services, to
/// push changes to.
#[derive(Default)]
pub struct ExternalServices {
    /// Session ids that asked for the services list, by account.
    subscribers: DashMap<Account, Vec<u64>>,
    /// The settings each tenant's subscribers were last told about, by tenant name.
    told: DashMap<String, Settings>,
}

impl Feature for ExternalServices {
    fn name(&self) -> &'static str {
        "external-services"
    }

    fn register(self: Arc<Self>, r: &mut Registrar<'_>) {
        let me = self.clone();
        r.iq(IqType::Get, ns::EXTDISCO, &[Address::Host], move |req| {
            let me = me.clone();
            crate::boxed(async move { me.handle(&req) })
        });
        for event in [SessionEvent::Closed, SessionEvent::Moved] {
            let me = self.clone();
            r.on_session(event, move |_, session| {
                me.subscribers.remove_if_mut(&session.account, |_, ids| {
                    ids.retain(|id| *id != session.id);
                    ids.is_empty()
                });
                crate::boxed(async {})
            });
        }
        r.disco_feature(Address::Host, ns::EXTDISCO);
    }
}

impl ExternalServices {
    /// Answers a `<services/>` or `<credentials/>` get.
    fn handle(&self, req: &IqRequest) -> Option<Element> {
        // Only a session of one of the tenant's own users: not a component, a room or a
        // federated tenant's user.
        let Some(session) = req.origin.session() else {
            return stanza::error_reply(&req.iq, Condition::Forbidden, None);
        };
        if !req.tenant.spec.domains.contains(&session.account.domain) {
            return stanza::error_reply(
                &req.iq,
                Condition::Forbidden,
                Some("external services are for the domain's own users"),
            );
        }
        let settings = &req.tenant.spec.external_services;
        let user = session.account.to_string();
        let payload = req.payload()?;
        match payload.name() {
            "services" => {
                let wanted = payload.attr("type");
                let mut answer = Element::new("services", ns::EXTDISCO)
                    .with_opt_attr("type", wanted.map(str::to_string));
                for s in settings
                    .services
                    .iter()
                    .filter(|s| wanted.is_none_or(|w| w == s.kind.as_str()))
                {
                    answer.push_child(service_element(settings, s, &user, None));
                }
                self.subscribe(&req.tenant.name, settings, &session.account, session.id);
                Some(stanza::iq_result_with(&req.iq, answer))
            }
            "credentials" => {
                let Some(asked) = payload.child("service", ns::EXTDISCO) else {
                    return stanza::error_reply(
                        &req.iq,
                        Condition::BadRequest,
                        Some("<credentials/> names one <service/>"),
                    );
                };
                match find(settings, asked) {
                    Some(s) => {
                        let answer = Element::new("credentials", ns::EXTDISCO)
                            .with_child(service_element(settings, s, &user, None));
                        Some(stanza::iq_result_with(&req.iq, answer))
                    }
                    None => stanza::error_reply(&req.iq, Condition::ItemNotFound, None),
                }
            }
            _ => stanza::error_reply(&req.iq, Condition::BadRequest, None),
        }
    }

    /// Remembers that a session was told about the services.
    fn subscribe(&self, tenant: &str, settings: &Settings, account: &Account, id: u64) {
        self.told
            .entry(tenant.to_string())
            .or_insert_with(|| settings.clone());
        let mut ids = self.subscribers.entry(account.clone()).or_default();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
}

/// The service a `<credentials/>` request names: same type and host, and same port and
/// transport when given.
fn find<'a>(settings: &'a Settings, asked: &Element) -> Option<&'a ExternalService> {
    let kind = ServiceType::parse(asked.attr("type")?)?;
    let host = asked
        .attr("host")?
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let port = match asked.attr("port") {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    let transport = asked.attr("transport");
    settings.services.iter().find(|s| {
        s.kind == kind
            && s.host == host
            && port.is_none_or(|p| p == s.port)
            && transport.is_none_or(|t| s.transport.is_some_and(|st| st.as_str() == t))
    })
}

/// One `<service/>`, with fresh credentials for `user` if it is restricted (and not
/// being deleted).
fn service_element(
    settings: &Settings,
    s: &ExternalService,
    user: &str,
    action: Option<&str>,
) -> Element {
    let mut el = Element::new("service", ns::EXTDISCO)
        .with_opt_attr("action", action.map(str::to_string))
        .with_attr("type", s.kind.as_str())
        .with_attr("host", s.host.clone())
        .with_attr("port", s.port.to_string())
        .with_opt_attr("transport", s.transport.map(|t| t.as_str().to_string()))
        .with_opt_attr("name", s.name.clone());
    if s.is_restricted() {
        el.set_attr("restricted", "true");
        if let (Some(secret), false) = (&settings.turn_secret, action == Some("delete")) {
            let ttl = Duration::from_secs(settings.credential_ttl);
            let c = credentials::issue(secret, user, ttl, SystemTime::now());
            el.set_attr("username", c.username);
            el.set_attr("password", c.password);
            el.set_attr("expires", crate::time::xep82(c.expires));
        }
    }
    el
}
