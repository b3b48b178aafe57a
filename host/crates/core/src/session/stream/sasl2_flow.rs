//! SASL2 (XEP-0388) on the session core: the `<authenticate/>` request, FAST (XEP-0484)
//! logins and token issue, and what a SASL2 success does (inline Bind 2, new features,
//! no stream restart). The element syntax is in [`crate::session::sasl2`].

use super::*;
use crate::tokens::fast::FastSlotsExt as _;

impl StreamCore {
    /// The FAST mechanisms this connection may use: only over TLS, only for tenants with
    /// server-issued tokens, channel-binding variants where the connection has the data.
    pub(super) fn fast_mechanisms(&self) -> Vec<HtMechanism> {
        let tokens = self
            .domain
            .as_deref()
            .and_then(|d| self.core.tenant_of(d))
            .is_some_and(|t| t.spec.tokens.is_some());
        if !self.facts.tls || !tokens {
            return Vec::new();
        }
        [
            HtMechanism::Exporter,
            HtMechanism::Endpoint,
            HtMechanism::None,
        ]
        .into_iter()
        .filter(|m| fast::binding_data(*m, &self.facts.channel_bindings).is_some())
        .collect()
    }

    /// Stream features after a SASL2 success: nothing to negotiate once bound inline,
    /// else resource binding as after a legacy SASL restart.
    pub(super) fn features_after_sasl2(&mut self) -> Element {
        if self.entry.is_some() {
            bound_features()
        } else {
            self.features()
        }
    }

    pub(super) async fn on_sasl2(&mut self, el: Element) -> Vec<Action> {
        if self.authenticated.is_some() {
            return self.close(Some((
                StreamErrorCondition::PolicyViolation,
                Some("already authenticated".into()),
            )));
        }
        match el.name() {
            "authenticate" => self.on_authenticate(el).await,
            "response" if self.exchange.is_some() && self.sasl2.is_some() => {
                match sasl2::decode_response(&el) {
                    Ok(data) => self.sasl_step(&data).await,
                    Err(f) => self.sasl_failed(f, None),
                }
            }
            "response" => self.sasl_failed(
                SaslFailure::MalformedRequest,
                Some("no exchange in progress"),
            ),
            "abort" => self.sasl_failed(SaslFailure::Aborted, None),
            _ => self.close(Some((StreamErrorCondition::UnsupportedStanzaType, None))),
        }
    }

    /// XEP-0388 `<authenticate/>`: a SASL mechanism (run like legacy SASL, wrapped in
    /// SASL2 elements) or a FAST mechanism (one round trip with a FAST token).
    pub(super) async fn on_authenticate(&mut self, el: Element) -> Vec<Action> {
        if self.exchange.is_some() {
            return self.close(Some((
                StreamErrorCondition::PolicyViolation,
                Some("an authentication is already in progress".into()),
            )));
        }
        let (mech, initial, request) = match sasl2::parse_authenticate(&el) {
            Ok(parsed) => parsed,
            Err(e) => {
                self.sasl2 = Some(Box::default());
                return self.sasl_failed(e.failure(), Some(&e.to_string()));
            }
        };
        self.sasl2 = Some(Box::new(request));
        if !self.facts.tls && self.facts.policy.require_tls {
            return self.sasl_failed(SaslFailure::EncryptionRequired, None);
        }
        match mech {
            Sasl2Mechanism::Sasl(m) => {
                if !self.offered.contains(&m) {
                    return self.sasl_failed(SaslFailure::InvalidMechanism, None);
                }
                if let Err(f) = self.start_exchange(m) {
                    return self.sasl_failed(f, None);
                }
                match initial {
                    Some(data) => self.sasl_step(&data).await,
                    None => vec![Action::Send(sasl2::challenge(&[]))],
                }
            }
            Sasl2Mechanism::Fast(h) => {
                if !self.fast_mechanisms().contains(&h) {
                    return self.sasl_failed(SaslFailure::InvalidMechanism, None);
                }
                let outcome = self.fast_login(h, initial.unwrap_or_default()).await;
                self.finish_outcome(outcome).await
            }
        }
    }

    /// Checks a FAST (HT) initial response against the client's stored tokens.
    pub(super) async fn fast_login(&mut self, mech: HtMechanism, data: Vec<u8>) -> Outcome {
        let fail = |e: crate::tokens::TokenError| {
            Outcome::Failure(e.sasl_failure(), Some(e.client_text().to_string()))
        };
        let Some(domain) = self.domain.clone() else {
            return Outcome::Failure(SaslFailure::TemporaryAuthFailure, None);
        };
        let Some(tenant) = self.core.tenant_of(&domain) else {
            return Outcome::Failure(SaslFailure::TemporaryAuthFailure, None);
        };
        let request = self.sasl2.as_deref().cloned().unwrap_or_default();
        let Some(ua) = request.user_agent_id.clone() else {
            return Outcome::Failure(
                SaslFailure::MalformedRequest,
                Some("FAST needs a user-agent id".into()),
            );
        };
        let (user, proof) = match fast::parse_ht(&data) {
            Ok(p) => p,
            Err(e) => return Outcome::Failure(SaslFailure::MalformedRequest, Some(e.to_string())),
        };
        let local = match crate::tokens::localpart_for(&user, &domain) {
            Ok(l) => l,
            Err(e) => {
                crate::session::token_login::log_refusal(
                    &tenant.name,
                    &user,
                    &domain,
                    mech.name(),
                    &e,
                );
                return fail(e);
            }
        };
        let Some(cb) = fast::binding_data(mech, &self.facts.channel_bindings) else {
            return Outcome::Failure(SaslFailure::InvalidMechanism, None);
        };
        let account = Account::new(local.clone(), domain.clone());
        let fast_req = request.fast.unwrap_or_default();
        let key = fast::client_key(&ua);
        let result = check_fast_token(
            &self.core.storage,
            account,
            key,
            |slots: &mut fast::FastSlots| {
                slots.authenticate(
                    mech,
                    &proof,
                    &cb,
                    fast_req.count,
                    fast_req.invalidate,
                    auth::unix_now(),
                )
            },
        )
        .await;
        match result {
            Ok(used) => {
                tracing::info!(tenant = %tenant.name, user = %format!("{local}@{domain}"),
                    mechanism = mech.name(), invalidated = fast_req.invalidate, "FAST token accepted");
                crate::metrics::token_login(Ok("fast"));
                if used.due_for_rotation {
                    self.fast_rotation = Some(mech);
                }
                Outcome::Success {
                    username: local,
                    authzid: None,
                    additional_data: Some(used.responder_proof),
                }
            }
            Err(e) => {
                crate::session::token_login::log_refusal(
                    &tenant.name,
                    &user,
                    &domain,
                    mech.name(),
                    &e,
                );
                crate::metrics::token_login(Err(e.label()));
                fail(e)
            }
        }
    }

    /// SASL2 success: inline Bind 2 and FAST token, then the new stream features; no
    /// stream restart (XEP-0388).
    pub(super) async fn sasl2_success(
        &mut self,
        account: Account,
        request: Sasl2Request,
        additional_data: Option<Vec<u8>>,
    ) -> Vec<Action> {
        let rotation = self.fast_rotation.take();
        let wanted = request.request_token.or(rotation);
        let token = match wanted {
            Some(mech) => self.issue_fast(&account, &request, mech).await,
            None => None,
        };
        let token = token.as_ref().map(|t| (t.secret.as_str(), t.expires_at));
        // XEP-0198 with SASL2: resume the named session instead of binding a new one.
        let mut resume_failed = None;
        if let Some(resume) = &request.resume {
            match self.find_resumable(resume) {
                Ok(live) => {
                    let success = sasl2::success(sasl2::SuccessParts {
                        additional_data: additional_data.as_deref(),
                        authorization_identifier: &live.full_jid,
                        bound: None,
                        token,
                    });
                    self.handover = Some(Box::new(HandOver {
                        mailbox: live.mailbox,
                        handled: resume.handled,
                        sasl2: Some((success, bound_features())),
                    }));
                    return Vec::new();
                }
                Err(sm_flow::NotHere::Failed(failed)) => resume_failed = Some(failed),
                Err(sm_flow::NotHere::Elsewhere(node)) => {
                    match self.resume_elsewhere(resume, node).await {
                        Ok(adopted) => {
                            let mut success = sasl2::success(sasl2::SuccessParts {
                                additional_data: additional_data.as_deref(),
                                authorization_identifier: &adopted.entry.full_jid,
                                bound: None,
                                token,
                            });
                            success.push_child(adopted.resumed);
                            let mut out =
                                vec![Action::Send(success), Action::Send(bound_features())];
                            out.extend(adopted.then);
                            return out;
                        }
                        Err(failed) => resume_failed = Some(failed),
                    }
                }
            }
        }
        let mut bound = None;
        let mut identifier = account.to_string();
        if let Some(bind) = &request.bind {
            let resource =
                sasl2::bind2_resource(bind.tag.as_deref(), request.user_agent_id.as_deref());
            match self.bind_session(account.clone(), resource) {
                Ok(entry) => {
                    identifier = entry.full_jid.clone();
                    let mut children = Vec::new();
                    match bind.sm {
                        Some(req) if self.sm_available() => {
                            children.push(self.enable_sm(&entry, req));
                        }
                        Some(_) => children
                            .push(crate::session::sm::failed("feature-not-implemented", None)),
                        None => {}
                    }
                    bound = Some(children);
                }
                Err(BindFailure::HostGone) => {
                    return self.close(Some((StreamErrorCondition::HostGone, None)));
                }
                Err(BindFailure::SessionLimit) => {
                    tracing::info!(jid = %account, "Bind 2 refused: the tenant's session limit is reached");
                }
            }
        }
        let mut success = sasl2::success(sasl2::SuccessParts {
            additional_data: additional_data.as_deref(),
            authorization_identifier: &identifier,
            bound,
            token,
        });
        if let Some(failed) = resume_failed {
            success.push_child(failed);
        }
        let features = self.features_after_sasl2();
        vec![Action::Send(success), Action::Send(features)]
    }

    /// Issues a FAST token for the client of this SASL2 request (needs its user-agent id,
    /// TLS, a tenant with server-issued tokens, and the mechanism's channel binding).
    pub(super) async fn issue_fast(
        &self,
        account: &Account,
        request: &Sasl2Request,
        mech: HtMechanism,
    ) -> Option<fast::FastToken> {
        let Some(ua) = request.user_agent_id.clone() else {
            tracing::info!(jid = %account, "FAST token not issued: the client sent no user-agent id");
            return None;
        };
        if !self.fast_mechanisms().contains(&mech) {
            tracing::info!(jid = %account, mechanism = mech.name(), "FAST token not issued: mechanism not available here");
            return None;
        }
        let ttl = self
            .core
            .tenant_of(&account.domain)?
            .spec
            .tokens?
            .refresh_ttl_secs;
        let store = self.core.storage.tokens.clone();
        let a = account.clone();
        let key = fast::client_key(&ua);
        let issued = crate::storage::blocking(move || {
            let mut slots = store.fast_slots(&a, &key)?;
            let token = slots.issue(mech, auth::unix_now(), ttl);
            store.put_fast_slots(&a, &key, &slots)?;
            Ok::<_, crate::storage::StorageError>(token)
        })
        .await;
        match issued {
            Ok(t) => {
                tracing::info!(jid = %account, mechanism = mech.name(), "FAST token issued");
                Some(t)
            }
            Err(e) => {
                tracing::warn!(jid = %account, "FAST token not issued: {e}");
                None
            }
        }
    }
}

/// The stream features of a stream bound (or resumed) inline: nothing left to negotiate.
fn bound_features() -> Element {
    Element::new("features", ns::STREAM)
        .with_child(Element::new("ver", ns::ROSTER_VER))
        .with_child(Element::new("sub", ns::PRE_APPROVAL))
}

/// Reads a client's FAST slots, applies `check` to them and stores them back only if it
/// changed them. Using the `current` token without a `count` changes nothing, so the
/// usual reconnect costs one read (in line on sled, see `Storage::read`) and no write:
/// no flush to disk on every login.
async fn check_fast_token<T>(
    storage: &crate::storage::Storage,
    account: Account,
    key: String,
    check: impl FnOnce(&mut fast::FastSlots) -> Result<T, crate::tokens::TokenError>,
) -> Result<T, crate::tokens::TokenError> {
    let storage_error =
        |e: crate::storage::StorageError| crate::tokens::TokenError::Storage(e.to_string());
    let (store, a, k) = (storage.tokens.clone(), account.clone(), key.clone());
    let before = storage
        .read(move || store.fast_slots(&a, &k))
        .await
        .map_err(storage_error)?;
    let mut slots = before.clone();
    let result = check(&mut slots);
    if slots != before {
        let store = storage.tokens.clone();
        crate::storage::blocking(move || store.put_fast_slots(&account, &key, &slots))
            .await
            .map_err(storage_error)?;
    }
    result
}
