//! The token request of MongooseIM's token-based reconnection: a bound client sends
//! `<iq type='get'><query xmlns='erlang-solutions.com:xmpp:token-auth:0'/></iq>` to its
//! own account and gets `<items>` with an `<access_token/>` and a `<refresh_token/>`.
//! Only tenants with `tokens` enabled answer; others say `service-unavailable`.

use std::sync::Arc;

use heliograph_core::Core;

use crate::hooks::{Address, Feature, IqType, Registrar};
use crate::router::SessionEntry;
use crate::stanza::{self, Condition};
use crate::storage;
use crate::tokens::issued::{self, TokenKind};
use crate::xml::{Element, ns};

/// The `token-auth` feature.
pub struct TokenAuth;

impl Feature for TokenAuth {
    fn name(&self) -> &'static str {
        "token-auth"
    }

    fn register(self: Arc<Self>, r: &mut Registrar<'_>) {
        for ty in [IqType::Get, IqType::Set] {
            r.iq(ty, ns::TOKEN_AUTH, &[Address::Own], |req| {
                crate::boxed(async move {
                    let entry = req.origin.session()?.clone();
                    handle_iq(&req.core, &entry, &req.iq).await
                })
            });
        }
    }
}

/// Answers a token request.
pub async fn handle_iq(
    core: &Arc<Core>,
    entry: &Arc<SessionEntry>,
    iq: &Element,
) -> Option<Element> {
    if stanza::stanza_type(iq) != "get" {
        return stanza::error_reply(iq, Condition::BadRequest, Some("use type='get'"));
    }
    let Some(tenant) = core.tenant_of(&entry.account.domain) else {
        return stanza::error_reply(iq, Condition::ServiceUnavailable, None);
    };
    let Some(settings) = tenant.spec.tokens else {
        return stanza::error_reply(iq, Condition::ServiceUnavailable, None);
    };
    let store = core.storage.tokens.clone();
    let account = entry.account.clone();
    let name = tenant.name.clone();
    let minted = storage::blocking(move || {
        let now = heliograph_xmpp::unix_now();
        let access = issued::mint(
            store.as_ref(),
            &name,
            &account,
            TokenKind::Access,
            settings.access_ttl_secs,
            now,
        )?;
        let refresh = issued::mint(
            store.as_ref(),
            &name,
            &account,
            TokenKind::Refresh,
            settings.refresh_ttl_secs,
            now,
        )?;
        Ok::<_, crate::tokens::TokenError>((access, refresh))
    })
    .await;
    match minted {
        Ok((access, refresh)) => {
            tracing::info!(tenant = %tenant.name, user = %entry.account, "issued access and refresh tokens");
            let items = Element::new("items", ns::TOKEN_AUTH)
                .with_child(Element::new("access_token", ns::TOKEN_AUTH).with_text(access.token))
                .with_child(Element::new("refresh_token", ns::TOKEN_AUTH).with_text(refresh.token));
            Some(stanza::iq_result_with(iq, items))
        }
        Err(e) => {
            tracing::warn!(tenant = %tenant.name, user = %entry.account, "token request failed: {e}");
            stanza::error_reply(iq, Condition::InternalServerError, None)
        }
    }
}
