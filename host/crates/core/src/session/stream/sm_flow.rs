//! Stream management (XEP-0198) on the client stream: `<enable/>` after binding (or
//! inline with Bind 2), `<r/>` and `<a/>`, the count of stanzas each way, `<resume/>`
//! (which hands this stream's link to the session it names), and what a resumed session
//! sends on its new link. The counters and the unacknowledged queue are in
//! [`crate::session::sm`]; resumable sessions are found through
//! [`crate::session::resumption`]; a resumption of another cluster node's session goes on
//! in [`super::handoff_flow`].

use std::time::{Duration, SystemTime};

use super::*;
use crate::session::protocol::HandOver;
use crate::session::resumption::{LiveSession, Lookup};
use crate::session::sasl2::{ResumeRequest, SmEnable};
use crate::session::sm::{self, Sent, SmLimits, StreamManagement};

/// The name tenants switch stream management by (`[tenants.NAME.features] sm = false`).
pub const FEATURE: &str = "sm";

/// Why a `<resume/>` is not handed to a session of this node.
pub(super) enum NotHere {
    /// Answer this `<failed/>`.
    Failed(Element),
    /// The session may be on another cluster node (the one named, or the one its id
    /// names): fetch it from there.
    Elsewhere(Option<String>),
}

impl StreamCore {
    /// Stream management can be used on this stream: the tenant has it on, and the
    /// transport is one a client reconnects on (BOSH has its own acknowledgements).
    pub(super) fn sm_available(&self) -> bool {
        self.facts.transport != Transport::Bosh
            && self
                .domain
                .as_deref()
                .and_then(|d| self.core.tenant_of(d))
                .is_some_and(|t| t.spec.feature_enabled(FEATURE))
    }

    /// The `<sm/>` stream feature, where stream management is available.
    pub(super) fn sm_feature(&self) -> Option<Element> {
        self.sm_available().then(|| Element::new("sm", sm::NS))
    }

    /// An `urn:xmpp:sm:3` element from a bound client.
    pub(super) fn on_sm_element(&mut self, entry: &Arc<SessionEntry>, el: &Element) -> Vec<Action> {
        match el.name() {
            "r" => match &mut self.sm {
                Some(sm) => vec![Action::Send(sm.answer_request())],
                None => Vec::new(),
            },
            "a" => self.on_client_ack(el),
            "enable" if self.sm.is_some() => {
                vec![Action::Send(sm::failed("unexpected-request", None))]
            }
            "enable" if !self.sm_available() => {
                vec![Action::Send(sm::failed("feature-not-implemented", None))]
            }
            "enable" => vec![Action::Send(self.enable_sm(entry, SmEnable::parse(el)))],
            // Resumption happens instead of binding, never on a bound stream.
            "resume" => vec![Action::Send(sm::failed("unexpected-request", None))],
            other => self.close(Some((
                StreamErrorCondition::UnsupportedStanzaType,
                Some(format!("<{other}/>")),
            ))),
        }
    }

    /// An `urn:xmpp:sm:3` element before binding: a resumption, or too early.
    pub(super) async fn on_sm_before_bind(&mut self, el: &Element) -> Vec<Action> {
        match el.name() {
            "resume" if self.authenticated.is_none() => {
                vec![Action::Send(sm::failed("not-authorized", None))]
            }
            "resume" => match ResumeRequest::parse(el) {
                Some(req) => self.resume(req).await,
                None => vec![Action::Send(sm::failed("bad-request", None))],
            },
            // XEP-0198 §3: a client enables stream management once bound.
            "enable" => vec![Action::Send(sm::failed("unexpected-request", None))],
            _ => Vec::new(),
        }
    }

    /// The client's `<a h='…'/>`.
    fn on_client_ack(&mut self, el: &Element) -> Vec<Action> {
        let Some(sm) = self.sm.as_mut() else {
            return Vec::new();
        };
        let Some(h) = sm::h_of(el) else {
            return self.close(Some((
                StreamErrorCondition::BadFormat,
                Some("<a/> without a valid h".into()),
            )));
        };
        match sm.on_ack(h) {
            // Still at the bound (the client acknowledged part of it): the session sends
            // nothing until it acknowledges more, so it must be asked.
            Ok(()) if sm.ask_again_at_bound() => vec![Action::Send(sm::request())],
            Ok(()) => Vec::new(),
            Err(e) => self.close_handled_too_high(e),
        }
    }

    /// XEP-0198 §6: the client acknowledged stanzas never sent.
    fn close_handled_too_high(&mut self, e: sm::HandledTooHigh) -> Vec<Action> {
        tracing::info!(error = %e, "stream management: handled count too high");
        let error = StreamErrorCondition::UndefinedCondition
            .to_element(Some(&e.to_string()))
            .with_child(sm::too_high(e));
        let mut out = self.close(None);
        let at = out.len().saturating_sub(1);
        out.insert(at, Action::Send(error));
        out
    }

    /// Turns stream management on for the bound session (resumable if asked and allowed)
    /// and returns the `<enabled/>` answer.
    pub(super) fn enable_sm(&mut self, entry: &Arc<SessionEntry>, req: SmEnable) -> Element {
        let c2s = &self.core.config().c2s;
        let mut limits = SmLimits {
            ack_request_interval: c2s.ack_request_interval,
            max_unacked: c2s.max_unacked.max(1),
            resume_timeout: Duration::from_secs(c2s.resume_timeout),
        };
        if let Some(max) = req.max.filter(|m| *m > 0) {
            limits.resume_timeout = limits.resume_timeout.min(Duration::from_secs(max));
        }
        // In a cluster the id names this node, so a resumption on another node finds it.
        let new_id = || match self.core.remote_sessions.get() {
            Some(remote) => remote.new_resume_id(),
            None => sm::new_resume_id(),
        };
        let resume_id = (req.resume && !limits.resume_timeout.is_zero()).then(new_id);
        if let Some(id) = &resume_id {
            self.core.resumptions.register(
                id,
                LiveSession {
                    account: entry.account.clone(),
                    full_jid: entry.full_jid.clone(),
                    mailbox: self.session_tx.clone(),
                },
            );
        }
        let enabled = sm::enabled(resume_id.as_deref(), limits.resume_timeout);
        tracing::debug!(jid = %entry.full_jid, resumable = resume_id.is_some(), "stream management enabled");
        crate::metrics::stream_management("enabled");
        self.sm = Some(Box::new(StreamManagement::enabled(resume_id, limits)));
        enabled
    }

    /// `<resume/>` after authentication: hand the link over to the session it names if
    /// that is the authenticated user's and alive, else `<failed/>` (with the `h` of an
    /// ended session, so the client knows what to send again).
    async fn resume(&mut self, req: ResumeRequest) -> Vec<Action> {
        match self.find_resumable(&req) {
            Ok(live) => {
                self.handover = Some(Box::new(HandOver {
                    mailbox: live.mailbox,
                    handled: req.handled,
                    sasl2: None,
                }));
                Vec::new()
            }
            Err(NotHere::Failed(failed)) => vec![Action::Send(failed)],
            Err(NotHere::Elsewhere(node)) => match self.resume_elsewhere(&req, node).await {
                Ok(adopted) => {
                    let mut out = vec![Action::Send(adopted.resumed)];
                    out.extend(adopted.then);
                    out
                }
                Err(failed) => vec![Action::Send(failed)],
            },
        }
    }

    /// The live session `req` names, or why there is none here.
    pub(super) fn find_resumable(&self, req: &ResumeRequest) -> Result<LiveSession, NotHere> {
        if !self.sm_available() {
            return Err(NotHere::Failed(sm::failed("feature-not-implemented", None)));
        }
        let Some(account) = self.authenticated.as_ref() else {
            return Err(NotHere::Failed(sm::failed("not-authorized", None)));
        };
        let clustered = self.core.remote_sessions.get().is_some();
        match self.core.resumptions.lookup(&req.previd, account) {
            Lookup::Live(live) => Ok(live),
            Lookup::Ended { handled } => Err(NotHere::Failed(self.no_such_session(Some(handled)))),
            Lookup::Moved { node } if clustered => Err(NotHere::Elsewhere(Some(node))),
            Lookup::Unknown if clustered => Err(NotHere::Elsewhere(None)),
            Lookup::Moved { .. } | Lookup::Unknown => {
                Err(NotHere::Failed(self.no_such_session(None)))
            }
        }
    }

    /// `<failed/>` with `item-not-found` (and the ended session's `h`, if known).
    pub(super) fn no_such_session(&self, h: Option<u32>) -> Element {
        crate::metrics::stream_management("resume_failed");
        tracing::info!(jid = ?self.authenticated.as_ref().map(|a| a.to_string()), "resumption refused: no such session");
        sm::failed("item-not-found", h)
    }

    /// Counts what goes to the client: metrics, and with stream management each stanza
    /// is kept until acknowledged — asking for acknowledgements as configured, and ending
    /// the stream when too many are outstanding.
    pub(super) fn track_out(&mut self, actions: &mut Vec<Action>) {
        let transport = self.facts.transport.as_str();
        let mut sent = Sent::Queued;
        // One clock read for the batch: these stanzas go out in one write.
        let mut now = None;
        for a in actions.iter_mut() {
            let Action::Send(el) = a else { continue };
            self.tally.element_out(transport, el);
            let Some(sm) = self.sm.as_mut() else { continue };
            if !sm::counts(el) {
                continue;
            }
            // Serialized once: the kept copy and the bytes the link writes are the same.
            let xml = sm::serialize(el);
            let at = *now.get_or_insert_with(SystemTime::now);
            match sm.on_sent(xml.clone(), at) {
                Sent::Queued => {}
                Sent::AskAck if sent == Sent::Queued => sent = Sent::AskAck,
                Sent::AskAck => {}
                Sent::TooMany => sent = Sent::TooMany,
            }
            if let Action::Send(el) = std::mem::replace(a, Action::Restart) {
                *a = Action::SendKept(el, xml);
            }
        }
        match sent {
            Sent::Queued => {}
            Sent::AskAck => actions.push(Action::Send(sm::request())),
            Sent::TooMany => {
                tracing::info!(jid = ?self.entry.as_ref().map(|e| e.full_jid.as_str()), "too many unacknowledged stanzas");
                actions.extend(self.close(Some((
                    StreamErrorCondition::PolicyViolation,
                    Some("too many unacknowledged stanzas".into()),
                ))));
            }
        }
    }

    /// The client has as many stanzas unacknowledged as allowed: it is sent nothing more
    /// until it acknowledges (see [`crate::session::Protocol::mail_held`]).
    pub(super) fn sm_mail_held(&self) -> bool {
        self.sm.as_ref().is_some_and(|sm| sm.at_bound())
    }

    /// True while a lost link leaves the session waiting for a resumption.
    pub(super) fn sm_resumable(&self) -> bool {
        matches!(self.stage, Stage::Bound)
            && self.sm.as_ref().is_some_and(|sm| sm.resume_id().is_some())
    }

    /// The link is gone: how long to wait for the client to resume, if it may.
    pub(super) fn sm_link_lost(&mut self) -> Option<Duration> {
        if !self.sm_resumable() {
            return None;
        }
        let entry = self.entry.as_ref()?;
        let sm = self.sm.as_ref()?;
        entry.set_detached(true);
        crate::metrics::stream_management("detached");
        tracing::info!(jid = %entry.full_jid, unacked = sm.unacked(), "connection lost; the session waits to be resumed");
        Some(sm.limits().resume_timeout)
    }

    /// A resuming client's new link is here: `<resumed/>` (inside the SASL2 success when
    /// resumed inline), then every stanza it has not acknowledged, in order.
    pub(super) fn sm_attached(
        &mut self,
        handled: u32,
        sasl2: Option<(Element, Element)>,
    ) -> Vec<Action> {
        let (Some(entry), Some(sm)) = (self.entry.clone(), self.sm.as_mut()) else {
            return self.sm_attach_refused();
        };
        entry.set_detached(false);
        if let Err(e) = sm.on_ack(handled) {
            return self.close_handled_too_high(e);
        }
        let resumed = sm::resumed(sm.handled(), sm.resume_id().unwrap_or_default());
        let mut out = Vec::new();
        match sasl2 {
            Some((mut success, features)) => {
                success.push_child(resumed);
                out.push(Action::Send(success));
                out.push(Action::Send(features));
            }
            None => out.push(Action::Send(resumed)),
        }
        let replay = sm.replay();
        crate::metrics::stream_management("resumed");
        tracing::info!(jid = %entry.full_jid, replayed = replay.len(), "session resumed");
        out.extend(replay.into_iter().map(Action::Send));
        out
    }

    /// A link came to resume the session after it ended.
    pub(super) fn sm_attach_refused(&mut self) -> Vec<Action> {
        let h = self.sm.as_ref().map(|sm| sm.handled());
        crate::metrics::stream_management("resume_failed");
        vec![
            Action::Send(sm::failed("item-not-found", h)),
            Action::Close(None),
        ]
    }

    /// The session to resume ended before the link got there: `<failed/>`, and the
    /// stream carries on as a fresh one (after SASL2: the success, unbound).
    pub(super) fn sm_handover_failed(&mut self, sasl2: Option<(Element, Element)>) -> Vec<Action> {
        crate::metrics::stream_management("resume_failed");
        let failed = sm::failed("item-not-found", None);
        match sasl2 {
            None => vec![Action::Send(failed)],
            Some((mut success, _)) => {
                if let (Some(account), Some(aid)) = (
                    self.authenticated.as_ref(),
                    success.child_mut("authorization-identifier", ns::SASL2),
                ) {
                    *aid = Element::new("authorization-identifier", ns::SASL2)
                        .with_text(account.to_string());
                }
                success.push_child(failed);
                let features = self.features();
                vec![Action::Send(success), Action::Send(features)]
            }
        }
    }

    /// The session is over: what it never got acknowledged (stamped with when it was
    /// first sent, as it may have arrived) and what was still queued for it.
    pub(super) fn sm_rescue(&mut self, unsent: Vec<Element>, unread: Vec<Element>) -> Vec<Element> {
        let mut out = match self.sm.as_mut() {
            // Whatever the link did not write is among the unacknowledged stanzas.
            Some(sm) => {
                let domain = self.domain.clone().unwrap_or_default();
                sm.take_unacked()
                    .into_iter()
                    .map(|(el, at)| stamp_delay(el, &domain, at))
                    .collect()
            }
            None => unsent,
        };
        out.extend(unread);
        out
    }

    /// The session ended: a late `<resume/>` learns how far it got.
    pub(super) fn sm_ended(&mut self, entry: &SessionEntry) {
        let Some(sm) = self.sm.as_ref() else {
            return;
        };
        if let Some(id) = sm.resume_id() {
            self.core.resumptions.ended(id, sm.handled());
            if entry.is_detached() {
                crate::metrics::stream_management("expired");
            }
        }
    }
}

/// A message that may have reached the client before the session ended carries a
/// XEP-0203 delay stamp (when it was first sent), unless it has one.
fn stamp_delay(mut el: Element, domain: &str, at: SystemTime) -> Element {
    if el.name() == "message" && !el.has_child("delay", ns::DELAY) {
        el.push_child(
            Element::new("delay", ns::DELAY)
                .with_attr("from", domain)
                .with_attr("stamp", humantime::format_rfc3339_millis(at).to_string()),
        );
    }
    el
}
