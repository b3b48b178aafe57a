//! A configured external component that is not connected right now: stanzas to it bounce
//! with `service-unavailable` from the component's domain (RFC 6120 §8.3.3.19), rather than
//! looking like a domain nobody serves.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::pipeline::route_from_hosted;
use crate::router::HostedDomain;
use crate::stanza::{self, Condition};
use crate::xml::Element;
use heliograph_core::Core;

/// See the module docs.
pub struct AbsentComponent {
    pub tenant: String,
}

impl HostedDomain for AbsentComponent {
    fn tenant(&self) -> &str {
        &self.tenant
    }

    fn kind(&self) -> &'static str {
        "component"
    }

    fn deliver(&self, core: Arc<Core>, stanza: Element) -> BoxFuture<'static, ()> {
        let origin: Arc<dyn HostedDomain> = Arc::new(AbsentComponent {
            tenant: self.tenant.clone(),
        });
        Box::pin(async move {
            if let Some(e) = stanza::error_reply(
                &stanza,
                Condition::ServiceUnavailable,
                Some("the component is not connected"),
            ) {
                route_from_hosted(&core, origin, e).await;
            }
        })
    }
}
