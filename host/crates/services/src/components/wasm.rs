//! A Wasm-hosted component: a tenant's subdomain served by the `component` plugin in one
//! of its plugin slots (`ComponentSpec.plugin`).
//!
//! Each stanza to the domain becomes one plugin call (fresh instance, the host's deadline
//! and memory cap, counted in the slot's stats and metrics). What the plugin returns is
//! parsed with the server's parser and stanza size limit; a stanza whose `from` is not on
//! the component's domains, or that is not a message, presence or iq, is dropped and
//! logged. When the call fails (trap, deadline, memory, bad answer), the plugin refuses,
//! or nothing it returned could be sent, the sender gets an error reply where RFC 6120
//! asks for one: `internal-server-error` for a failure, `service-unavailable` when the
//! plugin is not installed or refuses.
//!
//! What a component sends is routed inline, so a stanza from one Wasm component to
//! another runs the second inside the first's delivery. [`MAX_HOPS`] bounds that nesting:
//! two components answering each other forever are cut off instead of growing the task
//! without end.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::pipeline::route_from_hosted;
use crate::plugins::{ComponentStanza, PluginError, StanzaKind};
use crate::router::HostedDomain;
use crate::stanza::{self, Condition};
use crate::tenants::spec::ComponentSpec;
use crate::xml::{Element, ns};
use heliograph_core::Core;

/// Nested Wasm component deliveries allowed within one stanza's routing.
pub const MAX_HOPS: u32 = 8;

tokio::task_local! {
    /// How many Wasm component deliveries the current routing is nested in.
    static HOPS: u32;
}

/// See the module docs.
#[derive(Clone)]
pub struct WasmComponent {
    tenant: String,
    slot: String,
    domains: Vec<String>,
}

impl WasmComponent {
    pub fn new(tenant: &str, slot: &str, spec: &ComponentSpec) -> WasmComponent {
        WasmComponent {
            tenant: tenant.to_string(),
            slot: slot.to_string(),
            domains: spec.domains.clone(),
        }
    }

    fn serves(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d == domain)
    }

    /// Calls the plugin; returns the error condition to answer with, if any.
    async fn handle(
        &self,
        core: &Arc<Core>,
        origin: &Arc<dyn HostedDomain>,
        stanza: &Element,
    ) -> Option<(Condition, &'static str)> {
        let Some(host) = core.plugin_host() else {
            return Some((Condition::ServiceUnavailable, "no plugin host"));
        };
        let kind = match stanza.name() {
            "message" => StanzaKind::Message,
            "presence" => StanzaKind::Presence,
            _ => StanzaKind::Iq,
        };
        let to = stanza.attr("to").unwrap_or_default().to_string();
        let domain = jid::Jid::new(&to)
            .map(|j| j.domain().to_string())
            .unwrap_or_default();
        let request = ComponentStanza {
            kind,
            from: stanza.attr("from").unwrap_or_default().to_string(),
            to,
            stanza_type: stanza.attr("type").unwrap_or_default().to_string(),
            id: stanza.attr("id").unwrap_or_default().to_string(),
            domain,
            xml: stanza.to_string_in(""),
        };
        let tenant_domain = core
            .tenants
            .by_name(&self.tenant)
            .and_then(|t| t.spec.domains.first().cloned());
        let limits = core.parser_limits_for(tenant_domain.as_deref());
        let outcome = match host
            .handle_stanza(&self.tenant, &self.slot, request, limits.max_stanza_bytes)
            .await
        {
            Ok(o) => o,
            Err(PluginError::NotInstalled { .. }) => {
                return Some((
                    Condition::ServiceUnavailable,
                    "the component is not installed",
                ));
            }
            Err(_) => {
                return Some((Condition::InternalServerError, "the component failed"));
            }
        };
        let out = match outcome.result {
            Ok(out) => out,
            Err(refusal) => {
                tracing::debug!(tenant = %self.tenant, plugin = %self.slot, refusal = %refusal,
                    "component refused a stanza");
                return Some((
                    Condition::ServiceUnavailable,
                    "the component refused the request",
                ));
            }
        };
        let (mut sent, mut dropped) = (0usize, 0usize);
        for xml in out {
            match self.check_output(&xml, limits) {
                Ok(el) => {
                    Box::pin(route_from_hosted(core, origin.clone(), el)).await;
                    sent += 1;
                }
                Err(why) => {
                    dropped += 1;
                    metrics::counter!("heliograph_component_stanzas_dropped_total", "reason" => "invalid_output").increment(1);
                    tracing::warn!(tenant = %self.tenant, plugin = %self.slot, version = outcome.version,
                        "component output dropped: {why}");
                }
            }
        }
        (sent == 0 && dropped > 0).then_some((
            Condition::InternalServerError,
            "the component's answer was invalid",
        ))
    }

    /// Parses one returned stanza and checks it may be sent.
    fn check_output(&self, xml: &str, limits: crate::xml::ParserLimits) -> Result<Element, String> {
        let el = crate::xml::parser::parse_element(xml.as_bytes(), ns::CLIENT, limits)
            .map_err(|e| format!("not a stanza: {e}"))?;
        if stanza::Kind::of(&el).is_none() {
            return Err(format!("<{}/> in {:?} is not a stanza", el.name(), el.ns()));
        }
        let from_ok = el
            .attr("from")
            .and_then(|f| jid::Jid::new(f).ok())
            .is_some_and(|j| self.serves(j.domain().as_str()));
        if !from_ok {
            return Err(format!(
                "'from' {:?} is not on the component's domains",
                el.attr("from").unwrap_or("")
            ));
        }
        Ok(el)
    }
}

impl HostedDomain for WasmComponent {
    fn tenant(&self) -> &str {
        &self.tenant
    }

    fn kind(&self) -> &'static str {
        "component"
    }

    fn deliver(&self, core: Arc<Core>, stanza: Element) -> BoxFuture<'static, ()> {
        let me = self.clone();
        let hops = HOPS.try_with(|h| *h).unwrap_or(0);
        Box::pin(HOPS.scope(hops + 1, async move {
            if hops >= MAX_HOPS {
                metrics::counter!("heliograph_component_stanzas_dropped_total", "reason" => "loop")
                    .increment(1);
                tracing::warn!(tenant = %me.tenant, plugin = %me.slot,
                    "stanza dropped: components kept answering each other ({MAX_HOPS} hops)");
                return;
            }
            let origin: Arc<dyn HostedDomain> = Arc::new(me.clone());
            if let Some((condition, text)) = me.handle(&core, &origin, &stanza).await
                && let Some(error) = stanza::error_reply(&stanza, condition, Some(text))
                // iq results are never answered with an error.
                && (stanza.name() != "iq"
                    || matches!(stanza::stanza_type(&stanza), "get" | "set"))
            {
                route_from_hosted(&core, origin, error).await;
            }
        }))
    }
}
