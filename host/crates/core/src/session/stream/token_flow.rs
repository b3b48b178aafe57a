//! Logins the session core runs itself rather than a built-in mechanism: PLAIN checked as
//! a token, by a plugin or against stored credentials, and the bearer-token mechanisms
//! (OAUTHBEARER, X-OAUTH, X-OAUTH2).

use super::*;

impl StreamCore {
    /// PLAIN run by the session: a token when the tenant takes tokens and the password
    /// looks like one, else the tenant's plugin, else the stored credentials.
    pub(super) async fn password_login(
        &mut self,
        domain: &str,
        tenant: &str,
        slot: Option<String>,
        tokens: bool,
        plain: crate::sasl::PlainCredentials,
    ) -> Outcome {
        if tokens && crate::session::token_login::is_token(&plain.password) {
            let claimed = Some(plain.username.as_str());
            return match crate::session::token_login::verify(
                &self.core,
                domain,
                &plain.password,
                claimed,
                "PLAIN",
            )
            .await
            {
                Ok(login) => Outcome::Success {
                    username: login.local,
                    authzid: plain.authzid,
                    additional_data: None,
                },
                Err(e) => Outcome::Failure(e.sasl_failure(), Some(e.client_text().to_string())),
            };
        }
        let Some(slot) = slot else {
            return auth::check_plain_password_pooled(&self.core, domain, plain).await;
        };
        let verdict = auth::verify_with_plugin(
            &self.core,
            tenant,
            &slot,
            plain,
            auth::LoginFacts {
                domain,
                address: &self.facts.address,
                transport: self.transport(),
                tls: self.facts.tls,
            },
        )
        .await;
        self.auth_expires = verdict.expires_at;
        self.user_facts = Some(Box::new(verdict.user_facts));
        verdict.outcome
    }

    /// OAUTHBEARER, X-OAUTH or X-OAUTH2 with a JWT or a server-issued token.
    pub(super) async fn bearer_login(
        &mut self,
        domain: &str,
        mech: Mechanism,
        msg: crate::sasl::bearer::BearerMessage,
    ) -> Outcome {
        let result = crate::session::token_login::verify(
            &self.core,
            domain,
            &msg.token,
            msg.username.as_deref(),
            mech.name(),
        )
        .await;
        match result {
            Ok(login) => {
                // MongooseIM: an X-OAUTH login with a refresh token returns a new access
                // token as the success data.
                let additional_data = if mech == Mechanism::XOAuth
                    && login.source == crate::session::token_login::TokenSource::ServerRefresh
                {
                    self.mint_access_after_refresh(domain, &login.local).await
                } else {
                    None
                };
                Outcome::Success {
                    username: login.local,
                    authzid: msg.authzid,
                    additional_data,
                }
            }
            Err(e) if mech == Mechanism::OAuthBearer => match self.exchange.as_mut() {
                Some(x) => x.bearer_failed(e.sasl_failure(), e.client_text().into()),
                None => Outcome::Failure(e.sasl_failure(), None),
            },
            Err(e) => Outcome::Failure(e.sasl_failure(), Some(e.client_text().to_string())),
        }
    }

    /// A new access token for a refresh-token login (X-OAUTH), as `<success/>` data.
    pub(super) async fn mint_access_after_refresh(
        &self,
        domain: &str,
        local: &str,
    ) -> Option<Vec<u8>> {
        let tenant = self.core.tenant_of(domain)?;
        let settings = tenant.spec.tokens?;
        let store = self.core.storage.tokens.clone();
        let account = Account::new(local, domain);
        let name = tenant.name.clone();
        let minted = crate::storage::blocking(move || {
            crate::tokens::issued::mint(
                store.as_ref(),
                &name,
                &account,
                crate::tokens::issued::TokenKind::Access,
                settings.access_ttl_secs,
                auth::unix_now(),
            )
        })
        .await;
        match minted {
            Ok(m) => Some(m.token.into_bytes()),
            Err(e) => {
                tracing::warn!(tenant = %tenant.name, user = %format!("{local}@{domain}"), "could not mint an access token after a refresh login: {e}");
                None
            }
        }
    }
}
