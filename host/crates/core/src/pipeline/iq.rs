//! iq stanzas (RFC 6120 §8.2.3, §10): requests to the server or to an account go to the
//! handler a feature registered for their type, namespace and address; iqs to a full JID
//! go to that session; everything else gets the RFC's error.
//!
//! Which handler serves a request, by its `to`:
//! - none: the sender's `Own` handler, else the `Host` one (clients ping the server so);
//! - the sender's own bare JID: `Own`, else `Account`;
//! - another local account's bare JID: `Account` (if the account exists);
//! - a tenant domain: `Host`.

use std::sync::Arc;

use super::{Origin, blocked_error, bounce, filter, lookup};
use crate::context::Core;
use crate::hooks::{Address, IqRequest, IqType, Verdict};
use crate::router::Route;
use crate::stanza::{self, Condition};
use crate::storage::Account;
use crate::xml::Element;

/// Routes an iq from `origin`.
pub async fn route(core: &Arc<Core>, origin: &Origin, iq: Element) {
    let ty = stanza::stanza_type(&iq);
    let request = IqType::parse(ty);
    if request.is_none() && !matches!(ty, "result" | "error") {
        return bounce_always(
            core,
            origin,
            &iq,
            Condition::BadRequest,
            Some("invalid iq type"),
        )
        .await;
    }
    // The answer to a request the server sent itself (on anyone's behalf).
    if request.is_none() && core.requests.complete(&iq) {
        return;
    }
    if iq.attr("id").is_none_or(str::is_empty) && origin.session().is_some() {
        // RFC 6120 §8.1.3: every iq carries an id.
        if request.is_some() {
            return bounce_always(
                core,
                origin,
                &iq,
                Condition::BadRequest,
                Some("an iq needs an id"),
            )
            .await;
        }
        return;
    }
    if request.is_some() && iq.children().count() != 1 {
        let text = "an iq request has exactly one payload";
        return bounce_always(core, origin, &iq, Condition::BadRequest, Some(text)).await;
    }
    match lookup(core, origin, &iq) {
        Route::OwnAccount => match (origin.account(), request) {
            (Some(own), Some(ty)) => {
                let own = own.clone();
                serve(
                    core,
                    origin,
                    ty,
                    &own.domain.clone(),
                    Some(own),
                    &[Address::Own, Address::Host],
                    iq,
                )
                .await
            }
            (Some(_), None) => {}
            (None, _) => {
                bounce(
                    core,
                    origin,
                    &iq,
                    Condition::BadRequest,
                    Some("no 'to' address"),
                )
                .await
            }
        },
        Route::Bare(account) if origin.account() == Some(&account) => {
            if let Some(ty) = request {
                let domain = account.domain.clone();
                serve(
                    core,
                    origin,
                    ty,
                    &domain,
                    Some(account),
                    &[Address::Own, Address::Account],
                    iq,
                )
                .await;
            }
        }
        Route::Bare(account) => {
            let Some(ty) = request else { return };
            match filter(core, origin, &iq, &account).await {
                Verdict::RefusedByRecipient => {
                    return bounce(core, origin, &iq, Condition::ServiceUnavailable, None).await;
                }
                Verdict::Forbidden => {
                    let text = Some(super::FORBIDDEN_TEXT);
                    return bounce(core, origin, &iq, Condition::Forbidden, text).await;
                }
                Verdict::Pass | Verdict::RefusedBySender => {}
            }
            match core.account_known(&account).await {
                Ok(true) => {}
                Ok(false) => {
                    return bounce(core, origin, &iq, Condition::ServiceUnavailable, None).await;
                }
                Err(e) => {
                    tracing::error!(jid = %account, error = %e, "reading the account failed");
                    return bounce(core, origin, &iq, Condition::InternalServerError, None).await;
                }
            }
            let domain = account.domain.clone();
            serve(
                core,
                origin,
                ty,
                &domain,
                Some(account),
                &[Address::Account],
                iq,
            )
            .await;
        }
        Route::Server(domain) => {
            if let Some(ty) = request {
                serve(core, origin, ty, &domain, None, &[Address::Host], iq).await;
            }
        }
        Route::Full(account, resource) => to_full_jid(core, origin, &account, &resource, iq).await,
        Route::Hosted(h) => h.deliver(core.clone(), iq).await,
        Route::RemoteServer(domain) => super::to_remote(core, origin, &domain, iq).await,
        Route::RemoteNode { .. } => {
            bounce(core, origin, &iq, Condition::ServiceUnavailable, None).await;
        }
    }
}

/// Sends an error reply whatever the iq's type (a malformed iq from a client still gets
/// one; errors about errors are never sent).
async fn bounce_always(
    core: &Arc<Core>,
    origin: &Origin,
    iq: &Element,
    condition: Condition,
    text: Option<&str>,
) {
    if stanza::stanza_type(iq) != "error" {
        origin
            .reply(core, stanza::error_reply(iq, condition, text))
            .await;
    }
}

/// Answers a request with the first handler registered for one of `addresses` (in that
/// order), or `service-unavailable`.
async fn serve(
    core: &Arc<Core>,
    origin: &Origin,
    ty: IqType,
    domain: &str,
    account: Option<Account>,
    addresses: &[Address],
    iq: Element,
) {
    let Some(tenant) = core.tenant_of(domain) else {
        return bounce(core, origin, &iq, Condition::ServiceUnavailable, None).await;
    };
    let ns = iq.first_child().map(Element::ns).unwrap_or("");
    let handler = addresses
        .iter()
        .find_map(|a| core.hooks.iq_handler(&tenant, ty, ns, *a))
        .cloned();
    let Some(handler) = handler else {
        return bounce(core, origin, &iq, Condition::ServiceUnavailable, None).await;
    };
    let answer = handler(IqRequest {
        core: core.clone(),
        origin: origin.clone(),
        tenant,
        domain: domain.to_string(),
        account,
        iq,
    })
    .await;
    origin.reply(core, answer).await;
}

/// An iq to a full JID: forwarded if that resource is online, else `service-unavailable`.
async fn to_full_jid(
    core: &Arc<Core>,
    origin: &Origin,
    account: &Account,
    resource: &str,
    iq: Element,
) {
    match filter(core, origin, &iq, account).await {
        Verdict::Pass => {}
        Verdict::RefusedBySender => {
            if super::expects_error(&iq) {
                origin.reply(core, blocked_error(&iq)).await;
            }
            return;
        }
        Verdict::RefusedByRecipient => {
            return bounce(core, origin, &iq, Condition::ServiceUnavailable, None).await;
        }
        Verdict::Forbidden => {
            let text = Some(super::FORBIDDEN_TEXT);
            return bounce(core, origin, &iq, Condition::Forbidden, text).await;
        }
    }
    let undelivered = match core.router.resource(account, resource) {
        Some(target) => target.try_deliver(iq).err(),
        None => Some(iq),
    };
    if let Some(iq) = undelivered {
        bounce(core, origin, &iq, Condition::ServiceUnavailable, None).await;
    }
}
