//! XEP-0077 In-Band Registration for a logged-in user: what the account is (a get),
//! changing its password (a set with `username` and `password`) and removing it (a set
//! with `<remove/>`: the account and all its data are deleted, the answer sent, then its
//! sessions end). Only tenants whose accounts live in the server's storage (`auth =
//! internal`) offer the password change; a plugin's users are the plugin's business.
//!
//! Registering a new account before login is the session core's (it happens before
//! there is a session: `heliograph-core`, `session/stream/register_flow.rs`), when the
//! tenant turns it on.

use std::sync::Arc;

use crate::hooks::{Address, Feature, IqRequest, IqType, Registrar};
use crate::mam::Mam;
use crate::router::SessionEntry;
use crate::stanza::{self, Condition};
use crate::storage::{self, Account};
use crate::tenants::AuthMethod;
use crate::xml::Element;

/// The registration namespace.
pub const REGISTER: &str = "jabber:iq:register";

/// The `register` feature, with what it must tell when an account goes.
pub struct Register {
    pub mam: Arc<Mam>,
}

impl Feature for Register {
    fn name(&self) -> &'static str {
        "register"
    }

    fn register(self: Arc<Self>, r: &mut Registrar<'_>) {
        for ty in [IqType::Get, IqType::Set] {
            let me = self.clone();
            r.iq(ty, REGISTER, &[Address::Host], move |req| {
                let me = me.clone();
                crate::boxed(async move { me.handle(req).await })
            });
        }
        r.disco_feature(Address::Host, REGISTER);
    }
}

impl Register {
    async fn handle(&self, req: IqRequest) -> Option<Element> {
        let entry = req.origin.session()?.clone();
        if entry.account.domain != req.domain {
            return stanza::error_reply(
                &req.iq,
                Condition::Forbidden,
                Some("accounts are managed at their own domain"),
            );
        }
        let query = req.payload().filter(|p| p.is("query", REGISTER))?;
        if stanza::stanza_type(&req.iq) == "get" {
            let q = Element::new("query", REGISTER)
                .with_child(Element::new("registered", REGISTER))
                .with_child(
                    Element::new("username", REGISTER).with_text(entry.account.local.clone()),
                )
                .with_child(Element::new("password", REGISTER));
            return Some(stanza::iq_result_with(&req.iq, q));
        }
        if query.has_child("remove", REGISTER) {
            return self.remove(&req, &entry).await;
        }
        let username = query.child_text("username", REGISTER);
        let password = query.child_text("password", REGISTER);
        match (username, password) {
            (Some(u), Some(p)) if u == entry.account.local => {
                change_password(&req, &entry.account, p).await
            }
            (Some(_), Some(_)) => stanza::error_reply(
                &req.iq,
                Condition::NotAllowed,
                Some("a user may only change its own password"),
            ),
            _ => stanza::error_reply(
                &req.iq,
                Condition::BadRequest,
                Some("a password change needs username and password"),
            ),
        }
    }

    /// Deletes the account and everything it had, answers, then ends its sessions.
    async fn remove(&self, req: &IqRequest, entry: &Arc<SessionEntry>) -> Option<Element> {
        let core = req.core.clone();
        let account = entry.account.clone();
        let users = core.storage.users.clone();
        let tokens = core.storage.tokens.clone();
        let a = account.clone();
        let deleted = storage::blocking(move || {
            users.delete_user(&a)?;
            tokens.revoke_all(&a).map(drop)
        })
        .await;
        match deleted {
            Ok(()) | Err(storage::StorageError::NotFound) => {}
            Err(e) => {
                tracing::warn!(%account, error = %e, "removing an account");
                return stanza::error_reply(&req.iq, Condition::InternalServerError, None);
            }
        }
        core.verified_passwords.forget(&account);
        self.mam.forget_account(&core, &account).await;
        crate::upload::delete_account_files(&core, &account).await;
        entry.send(stanza::iq_result(&req.iq));
        let ended = core.router.kick_account(&account);
        tracing::info!(%account, sessions_ended = ended, "account removed by its user");
        None
    }
}

async fn change_password(req: &IqRequest, account: &Account, password: String) -> Option<Element> {
    if !matches!(req.tenant.spec.auth, AuthMethod::Internal) {
        return stanza::error_reply(
            &req.iq,
            Condition::NotAllowed,
            Some("this domain's passwords are not kept by the server"),
        );
    }
    if password.is_empty() {
        return stanza::error_reply(&req.iq, Condition::NotAcceptable, Some("empty password"));
    }
    let core = req.core.clone();
    let iterations = core.config().auth.scram_iterations;
    let derived = core
        .derivations
        .run(move || heliograph_auth::sasl::derive_credentials(&password, iterations))
        .await;
    let creds = match derived {
        Ok(Ok(c)) => c,
        Ok(Err(_)) => {
            return stanza::error_reply(
                &req.iq,
                Condition::NotAcceptable,
                Some("the password has characters SASLprep does not allow"),
            );
        }
        Err(_) => return stanza::error_reply(&req.iq, Condition::ResourceConstraint, None),
    };
    let users = core.storage.users.clone();
    let tokens = core.storage.tokens.clone();
    let a = account.clone();
    let stored = storage::blocking(move || {
        users.set_credentials(&a, &creds)?;
        // XEP-0484: a password change invalidates the account's FAST tokens.
        tokens.delete_fast(&a)
    })
    .await;
    if let Err(e) = stored {
        tracing::warn!(%account, error = %e, "changing a password");
        return stanza::error_reply(&req.iq, Condition::InternalServerError, None);
    }
    core.verified_passwords.forget(account);
    tracing::info!(%account, "password changed by its user");
    Some(stanza::iq_result(&req.iq))
}
