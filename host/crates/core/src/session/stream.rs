//! [`StreamCore`]: the per-connection state machine shared by all transports.

use std::sync::Arc;

use tokio::time::Instant;

mod handoff_flow;
mod receipts;
mod register_flow;
mod sasl2_flow;
mod sm_flow;
mod token_flow;

pub use sm_flow::FEATURE as SM_FEATURE;

use super::StreamErrorCondition;
use super::auth::{self, AccountCredentials, Exchange, SessionStep};
use super::bind;
use super::csi;
use super::protocol::{HandOver, Identity, Protocol, Work};
use super::sasl2::{self, Sasl2Mechanism, Sasl2Request};
use crate::config::C2sListener;
use crate::context::Core;
use crate::hooks::{FeatureContext, MessageContext, MessageStage, SessionEvent, StreamStage};
use crate::pipeline::Origin;
use crate::router::{Mailbox, Receipt, SessionEntry, SessionMsg, Transport};
use crate::sasl::{ChannelBindings, Mechanism, Outcome, SaslFailure};
use crate::session::settle::Settle;
use crate::stanza::{self, Condition, Kind};
use crate::storage::Account;
use crate::tokens::fast::{self, HtMechanism};
use crate::xml::{Element, StreamEvent, StreamHeader, ns};
use heliograph_xmpp::jid::ParsedJid;

/// What the transport must do next.
#[derive(Debug)]
pub enum Action {
    /// Send the server's stream header (opening or after a restart).
    Header { id: String, from: String },
    /// Send an element at stream level.
    Send(Element),
    /// Send a stanza that stream management keeps until acknowledged, with the bytes it
    /// keeps: the stanza serialized once, in a `jabber:client` stream's context, which a
    /// link in that context writes as they are (any other serializes the stanza itself).
    SendKept(Element, Arc<str>),
    /// `<proceed/>` was queued: flush it, then run the TLS handshake and call
    /// [`StreamCore::tls_established`].
    StartTls,
    /// Expect a new stream header from the client (after SASL success).
    Restart,
    /// Close the stream, with a stream error if given, then the connection.
    Close(Option<(StreamErrorCondition, Option<String>)>),
}

/// Facts about the connection that the core needs.
#[derive(Debug, Clone)]
pub struct ConnFacts {
    pub address: String,
    pub tls: bool,
    pub channel_bindings: ChannelBindings,
    /// STARTTLS can be offered (plain listener, not yet upgraded).
    pub starttls_available: bool,
    /// The transport, as listed by the sessions API (`Tcp` becomes `Tls` once encrypted).
    pub transport: Transport,
    /// Authentication settings of the listener the client came through.
    pub policy: ListenerPolicy,
}

/// The listener settings the core applies, produced by every kind of listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerPolicy {
    /// Refuse authentication until the connection is secure.
    pub require_tls: bool,
    /// Offer PLAIN on connections that are not secure (only when `require_tls` is false).
    pub allow_plain_without_tls: bool,
    /// Failed SASL attempts allowed per connection.
    pub max_auth_attempts: u32,
}

impl From<&C2sListener> for ListenerPolicy {
    fn from(l: &C2sListener) -> Self {
        ListenerPolicy {
            require_tls: l.require_tls,
            allow_plain_without_tls: l.allow_plain_without_tls,
            max_auth_attempts: l.max_auth_attempts,
        }
    }
}

/// Work the session hands the driver (kept as data, so the core stays `Sync`).
enum Pending {
    /// A stanza of the bound client, `from` stamped, for the routing pipeline (with the
    /// wait for it to be safe, when stream management counts it only then).
    Route(Arc<SessionEntry>, Element, Option<Settle>),
    /// The session-bound hooks.
    Bound(Arc<SessionEntry>),
}

/// Why a session could not be bound.
enum BindFailure {
    HostGone,
    SessionLimit,
}

enum Stage {
    /// Waiting for the client's stream header.
    AwaitHeader,
    /// Header exchanged, features sent; negotiating TLS, SASL or binding.
    Negotiating,
    /// Bound: stanzas flow.
    Bound,
    /// Closed: ignore everything.
    Closed,
}

/// The per-connection state machine (see the module docs of [`crate::session`]).
pub struct StreamCore {
    core: Arc<Core>,
    facts: ConnFacts,
    stage: Stage,
    header_sent: bool,
    domain: Option<String>,
    authenticated: Option<Account>,
    /// When a plugin's authentication expires (seconds since the epoch): the bound session
    /// is ended then.
    auth_expires: Option<u64>,
    /// The authenticator plugin's roles/attributes of the user, for the session entry.
    user_facts: Option<Box<crate::router::UserFacts>>,
    /// Boxed, like `sasl2`: held only while logging in, not by a bound session.
    exchange: Option<Box<Exchange>>,
    /// The SASL2 `<authenticate/>` in progress (its inline requests), if SASL2 is used.
    sasl2: Option<Box<Sasl2Request>>,
    /// A FAST login found its token due for rotation: issue a new one on success.
    fast_rotation: Option<HtMechanism>,
    offered: Vec<Mechanism>,
    failed_auths: u32,
    session_tx: Mailbox,
    entry: Option<Arc<SessionEntry>>,
    /// Counts this session against its tenant's `max_sessions` while bound.
    tenant_slot: Option<crate::tenants::registry::SessionSlot>,
    /// Counts the session in the metrics while it is bound.
    bound_metric: Option<crate::metrics::BoundSession>,
    /// The transport's unauthenticated-connection slot, given back once bound.
    unauth: Option<crate::limits::UnauthPermit>,
    next_ping: u64,
    /// Routing work for the driver to run (see [`Protocol::take_work`]).
    work: Vec<Pending>,
    /// Stream management, once the client enabled it.
    sm: Option<Box<crate::session::sm::StreamManagement>>,
    /// The client resumed another session: this stream's link goes there.
    handover: Option<Box<HandOver>>,
    /// The session that ended, kept for the rescue of what it did not deliver.
    ended: Option<Arc<SessionEntry>>,
    /// XEP-0352: what an inactive client is not sent yet.
    csi: Option<Box<crate::session::csi::CsiBuffer>>,
    /// Without stream management: receipts of stanzas sent from storage, confirmed when
    /// the client answers a ping sent after them or the session ends cleanly.
    receipts: receipts::Receipts,
    /// The client closed the stream and our close was written after everything else.
    clean_end: bool,
    /// Stanzas in and out, added to the shared counters when the driver waits.
    tally: crate::metrics::StanzaTally,
}

impl StreamCore {
    /// A core for a new connection; bound sessions will be reached through `session_tx`.
    pub fn new(core: Arc<Core>, facts: ConnFacts, session_tx: Mailbox) -> Self {
        StreamCore {
            core,
            facts,
            stage: Stage::AwaitHeader,
            header_sent: false,
            domain: None,
            authenticated: None,
            auth_expires: None,
            user_facts: None,
            exchange: None,
            sasl2: None,
            fast_rotation: None,
            offered: Vec::new(),
            failed_auths: 0,
            session_tx,
            entry: None,
            tenant_slot: None,
            bound_metric: None,
            unauth: None,
            next_ping: 0,
            work: Vec::new(),
            sm: None,
            handover: None,
            ended: None,
            csi: None,
            receipts: Default::default(),
            clean_end: false,
            tally: Default::default(),
        }
    }

    /// The bound session, if any.
    pub fn bound(&self) -> Option<&Arc<SessionEntry>> {
        self.entry.as_ref()
    }

    /// The tenant's stanza shaper for the bound session (`None` before bind, or when the
    /// tenant's `stanza_rate` is 0). Transports without their own reader pacing (BOSH,
    /// WebSocket) create it once bound, as the TCP reader does.
    pub fn stanza_shaper(&self) -> Option<crate::tenants::rate::TokenBucket> {
        let entry = self.bound()?;
        let tenant = self.core.tenant_of(&entry.account.domain)?;
        let limits = tenant.spec.limits;
        crate::tenants::rate::TokenBucket::new(
            limits.stanza_rate,
            limits.stanza_burst,
            std::time::Instant::now(),
        )
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        matches!(self.stage, Stage::Closed)
    }

    /// The domain the client addressed, once known.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// The TLS handshake after STARTTLS finished.
    pub fn tls_established(&mut self, channel_bindings: ChannelBindings) {
        self.facts.tls = true;
        self.facts.starttls_available = false;
        self.facts.channel_bindings = channel_bindings;
        self.stage = Stage::AwaitHeader;
        self.header_sent = false;
    }

    /// Holds the transport's unauthenticated-connection slot until the session is bound
    /// (slowloris limit shared by every listener).
    pub fn hold_until_bound(&mut self, permit: crate::limits::UnauthPermit) {
        self.unauth = Some(permit);
    }

    /// Handles one parsed stream event.
    pub async fn on_event(&mut self, ev: StreamEvent) -> Vec<Action> {
        let actions = match ev {
            StreamEvent::Open(h) => self.on_header(h),
            StreamEvent::Stanza(el) => {
                if self.entry.is_some() {
                    self.tally
                        .stanza_in(self.facts.transport.as_str(), el.name());
                }
                self.on_element(el).await
            }
            StreamEvent::Close => self.close(None),
        };
        let mut actions = actions;
        self.track_out(&mut actions);
        actions
    }

    /// Handles a message from the rest of the server for the bound session.
    pub fn on_mailbox(&mut self, msg: SessionMsg) -> Vec<Action> {
        let mut actions = match msg {
            SessionMsg::Stanza(el) => match self.csi.as_mut().filter(|c| c.is_inactive()) {
                None => vec![Action::Send(el)],
                Some(csi) => csi.push(el).into_iter().map(Action::Send).collect(),
            },
            SessionMsg::Stored(stored) => {
                let (el, receipt) = *stored;
                return self.send_stored(el, receipt);
            }
            SessionMsg::Close(cond, text) => self.close(Some((cond, text))),
            // Links are attached by the driver, never by the stream.
            SessionMsg::Attach(_) => Vec::new(),
            // Sessions are moved by the driver, which asks [`Protocol::export`].
            SessionMsg::Export(req) => {
                let _ = req
                    .reply
                    .send(Err(crate::session::handoff::HandOffError::NotMovable));
                Vec::new()
            }
            SessionMsg::Settled(number) => {
                let owed = self.sm.as_mut().and_then(|sm| sm.on_settled(number));
                return owed.map(Action::Send).into_iter().collect();
            }
        };
        self.track_out(&mut actions);
        actions
    }

    /// A stanza still held in storage goes to the client at once (CSI counts it as
    /// important: what it held goes first), and its receipt is kept until the client has
    /// it: with stream management until acknowledged, else until a ping sent after it is
    /// answered or the session ends cleanly (see [`receipts`]).
    fn send_stored(&mut self, el: Element, receipt: Receipt) -> Vec<Action> {
        let held = self.csi.as_mut().filter(|c| c.is_inactive());
        let mut actions: Vec<Action> = held
            .map(|c| c.flush())
            .unwrap_or_default()
            .into_iter()
            .map(Action::Send)
            .collect();
        // Without stream management the receipt waits for a ping's answer; with it, for
        // the acknowledgement of the stanza (counted as sent by `track_out`).
        let (ping_now, for_sm) = match self.sm {
            Some(_) => (false, Some(receipt)),
            None => (self.receipts.push(&el, receipt, Instant::now), None),
        };
        actions.push(Action::Send(el));
        self.track_out(&mut actions);
        if let (Some(sm), Some(receipt)) = (self.sm.as_mut(), for_sm) {
            sm.hold_receipt(receipt);
        }
        if ping_now {
            actions.extend(self.receipt_ping());
        }
        actions
    }

    /// Without stream management, the ping that confirms the receipts kept so far.
    fn receipt_ping(&mut self) -> Option<Action> {
        // An XEP-0199 ping, with an id to know its answer by (once stream management is
        // on, the keepalive is an `<r/>`: the receipts then wait for the end).
        let ping = self.keepalive_ping();
        let Some(id) = ping.as_ref().and_then(|p| p.attr("id")).map(str::to_string) else {
            self.receipts.ping_unsent();
            return None;
        };
        self.receipts.ping_sent(id, Instant::now());
        ping.map(Action::Send)
    }

    /// The client answered one of our pings: if it is the one after stored stanzas,
    /// their receipts are confirmed (and the next ping covers what came since).
    fn on_ping_answer(&mut self, el: &Element) -> Vec<Action> {
        match self.receipts.answered(el.attr("id"), Instant::now) {
            Some(true) => self.receipt_ping().into_iter().collect(),
            _ => Vec::new(),
        }
    }

    /// A parser refusal or another fatal condition detected by the transport.
    pub fn fail(&mut self, cond: StreamErrorCondition, text: Option<String>) -> Vec<Action> {
        self.close(Some((cond, text)))
    }

    /// A keepalive ping to send to the client: a stream management `<r/>` once enabled
    /// (the `<a/>` answers it), else a XEP-0199 server-to-client ping.
    pub fn keepalive_ping(&mut self) -> Option<Element> {
        if self.sm.is_some() {
            return Some(crate::session::sm::request());
        }
        let entry = self.bound()?;
        let to = entry.full_jid.clone();
        let from = entry.account.domain.clone();
        self.next_ping += 1;
        Some(
            Element::new("iq", ns::CLIENT)
                .with_attr("type", "get")
                .with_attr("id", format!("hg-ping-{}", self.next_ping))
                .with_attr("from", from)
                .with_attr("to", to)
                .with_child(Element::new("ping", ns::PING)),
        )
    }

    fn close(&mut self, error: Option<(StreamErrorCondition, Option<String>)>) -> Vec<Action> {
        if matches!(self.stage, Stage::Closed) {
            return Vec::new();
        }
        self.stage = Stage::Closed;
        let mut out = Vec::new();
        if error.is_some() && !self.header_sent {
            out.push(self.header_action());
        }
        out.push(Action::Close(error));
        out
    }

    fn header_action(&mut self) -> Action {
        self.header_sent = true;
        let from = self.domain.clone().unwrap_or_default();
        Action::Header {
            id: new_stream_id(),
            from,
        }
    }

    fn on_header(&mut self, h: StreamHeader) -> Vec<Action> {
        if !matches!(self.stage, Stage::AwaitHeader) {
            return self.close(Some((
                StreamErrorCondition::InvalidXml,
                Some("unexpected stream header".into()),
            )));
        }
        if h.name != "stream" || h.ns != ns::STREAM || h.default_ns != ns::CLIENT {
            return self.close(Some((StreamErrorCondition::InvalidNamespace, None)));
        }
        let to = h.attr("to").unwrap_or("").to_ascii_lowercase();
        let to = to.trim_end_matches('.');
        if !self.core.serves_domain(to) {
            return self.close(Some((
                StreamErrorCondition::HostUnknown,
                Some(format!("{to:?} is not served here")),
            )));
        }
        if let Some(previous) = &self.domain
            && previous != to
        {
            return self.close(Some((StreamErrorCondition::InvalidFrom, None)));
        }
        self.domain = Some(to.to_string());
        let major = h
            .attr("version")
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse::<u32>().ok());
        let header = self.header_action();
        if major.unwrap_or(0) < 1 {
            let mut out = vec![header];
            out.extend(self.close(Some((StreamErrorCondition::UnsupportedVersion, None))));
            return out;
        }
        self.stage = Stage::Negotiating;
        vec![header, Action::Send(self.features())]
    }

    fn features(&mut self) -> Element {
        let mut f = Element::new("features", ns::STREAM);
        let listener = self.facts.policy;
        if self.authenticated.is_some() {
            f.push_child(Element::new("bind", ns::BIND));
            f.push_child(
                Element::new("session", ns::SESSION)
                    .with_child(Element::new("optional", ns::SESSION)),
            );
            if let Some(sm) = self.sm_feature() {
                f.push_child(sm);
            }
            if self.csi_available() {
                f.push_child(Element::new("csi", csi::NS));
            }
            if let Some(tenant) = self.domain.as_deref().and_then(|d| self.core.tenant_of(d)) {
                let ctx = FeatureContext {
                    tenant: &tenant,
                    stage: StreamStage::Authenticated,
                    tls: self.facts.tls,
                };
                for el in self.core.hooks.stream_features(&ctx) {
                    f.push_child(el);
                }
            }
            return f;
        }
        if self.facts.starttls_available {
            let mut st = Element::new("starttls", ns::TLS);
            if listener.require_tls {
                st.push_child(Element::new("required", ns::TLS));
            }
            f.push_child(st);
            if listener.require_tls {
                self.offered.clear();
                return f;
            }
        }
        self.offered = if self.plugin_auth().is_some() {
            auth::offered_mechanisms_for_plugin(self.facts.tls, listener.allow_plain_without_tls)
        } else {
            auth::offered_mechanisms(
                self.facts.tls,
                &self.facts.channel_bindings,
                listener.allow_plain_without_tls,
            )
        };
        if self.token_tenant().is_some() {
            auth::add_token_mechanisms(
                &mut self.offered,
                self.facts.tls,
                listener.allow_plain_without_tls,
            );
        }
        for el in auth::mechanisms_features(&self.offered, &self.facts.channel_bindings) {
            f.push_child(el);
        }
        if self.registration_tenant().is_some() {
            f.push_child(Element::new("register", register_flow::REGISTER_FEATURE));
        }
        if !self.offered.is_empty() {
            let sm = self.sm_available();
            f.push_child(sasl2::feature(&self.offered, &self.fast_mechanisms(), sm));
        }
        f
    }

    /// Whether the stream's tenant has client state indication on.
    fn csi_available(&self) -> bool {
        self.domain
            .as_deref()
            .and_then(|d| self.core.tenant_of(d))
            .is_some_and(|t| t.spec.feature_enabled(csi::FEATURE))
    }

    /// The (tenant, plugin slot) that authenticates the stream's domain, if its tenant's
    /// auth is a plugin.
    fn plugin_auth(&self) -> Option<(String, String)> {
        let tenant = self.core.tenant_of(self.domain.as_deref()?)?;
        match &tenant.spec.auth {
            crate::tenants::AuthMethod::Plugin { plugin } => {
                Some((tenant.name.clone(), plugin.clone()))
            }
            crate::tenants::AuthMethod::Internal => None,
        }
    }

    /// The stream's tenant name, if its users may log in with tokens.
    fn token_tenant(&self) -> Option<String> {
        let tenant = self.core.tenant_of(self.domain.as_deref()?)?;
        tenant.spec.token_logins().then(|| tenant.name.clone())
    }

    /// The transport this session runs over.
    fn transport(&self) -> Transport {
        match self.facts.transport {
            Transport::Tcp if self.facts.tls => Transport::Tls,
            t => t,
        }
    }

    async fn on_element(&mut self, el: Element) -> Vec<Action> {
        match &self.stage {
            Stage::Bound => match self.entry.clone() {
                Some(entry) => self.on_bound_stanza(&entry, el),
                None => Vec::new(),
            },
            Stage::Negotiating => self.on_negotiation_element(el).await,
            Stage::AwaitHeader | Stage::Closed => Vec::new(),
        }
    }

    async fn on_negotiation_element(&mut self, el: Element) -> Vec<Action> {
        if el.ns() == ns::TLS && el.name() == "starttls" {
            return self.on_starttls();
        }
        if el.ns() == ns::SASL {
            return self.on_sasl(el).await;
        }
        if el.ns() == ns::SASL2 {
            return self.on_sasl2(el).await;
        }
        if el.ns() == crate::session::sm::NS {
            return self.on_sm_before_bind(&el).await;
        }
        if self.authenticated.is_some() && Kind::of(&el) == Some(Kind::Iq) {
            return self.on_bind_iq(el);
        }
        if self.is_registration_iq(&el) {
            return self.on_register_iq(el).await;
        }
        if Kind::of(&el).is_some() {
            return self.close(Some((StreamErrorCondition::NotAuthorized, None)));
        }
        self.close(Some((
            StreamErrorCondition::UnsupportedStanzaType,
            Some(format!("unexpected <{}/>", el.name())),
        )))
    }

    fn on_starttls(&mut self) -> Vec<Action> {
        if !self.facts.starttls_available || self.authenticated.is_some() {
            return vec![
                Action::Send(Element::new("failure", ns::TLS)),
                Action::Close(None),
            ];
        }
        self.stage = Stage::AwaitHeader;
        vec![
            Action::Send(Element::new("proceed", ns::TLS)),
            Action::StartTls,
        ]
    }

    async fn on_sasl(&mut self, el: Element) -> Vec<Action> {
        if self.authenticated.is_some() {
            return self.close(Some((
                StreamErrorCondition::PolicyViolation,
                Some("already authenticated".into()),
            )));
        }
        match el.name() {
            "auth" => self.on_auth(el).await,
            "response" => match self.exchange.as_mut() {
                Some(_) => match auth::decode_payload(&el) {
                    Ok(data) => self.sasl_step(&data).await,
                    Err(f) => self.sasl_failed(f, None),
                },
                None => self.sasl_failed(
                    SaslFailure::MalformedRequest,
                    Some("no exchange in progress"),
                ),
            },
            "abort" => self.sasl_failed(SaslFailure::Aborted, None),
            _ => self.close(Some((StreamErrorCondition::UnsupportedStanzaType, None))),
        }
    }

    async fn on_auth(&mut self, el: Element) -> Vec<Action> {
        let listener = self.facts.policy;
        if !self.facts.tls && listener.require_tls {
            return self.sasl_failed(SaslFailure::EncryptionRequired, None);
        }
        let name = el.attr("mechanism").unwrap_or("");
        let Some(mech) = Mechanism::from_name(name) else {
            return self.sasl_failed(SaslFailure::InvalidMechanism, None);
        };
        if !self.offered.contains(&mech) {
            let cond = if mech == Mechanism::Plain {
                SaslFailure::MechanismTooWeak
            } else {
                SaslFailure::InvalidMechanism
            };
            return self.sasl_failed(cond, None);
        }
        let data = match auth::decode_payload(&el) {
            Ok(d) => d,
            Err(f) => return self.sasl_failed(f, None),
        };
        if let Err(f) = self.start_exchange(mech) {
            return self.sasl_failed(f, None);
        }
        if data.is_empty() && mech != Mechanism::Plain {
            // SCRAM needs the client-first message; ask for it with an empty challenge.
            return vec![Action::Send(auth::with_data("challenge", Some(&[])))];
        }
        self.sasl_step(&data).await
    }

    /// Starts the exchange for `mech` with the tenant's auth method as it is now (it may
    /// have changed since the features were sent).
    fn start_exchange(&mut self, mech: Mechanism) -> Result<(), SaslFailure> {
        let plus_advertised = self.offered.iter().any(|m| m.is_plus());
        let token_tenant = self.token_tenant();
        self.exchange = Some(Box::new(match (self.plugin_auth(), &token_tenant) {
            (_, Some(_)) if mech.is_token() => Exchange::token(mech),
            (_, None) if mech.is_token() => return Err(SaslFailure::InvalidMechanism),
            (Some((tenant, slot)), _) if mech == Mechanism::Plain => {
                Exchange::password(&tenant, Some(&slot), token_tenant.is_some())
            }
            (Some(_), _) => return Err(SaslFailure::InvalidMechanism),
            (None, Some(tenant)) if mech == Mechanism::Plain => {
                Exchange::password(tenant, None, true)
            }
            (None, _) => {
                Exchange::start(mech, self.facts.channel_bindings.clone(), plus_advertised)
            }
        }));
        Ok(())
    }

    async fn sasl_step(&mut self, data: &[u8]) -> Vec<Action> {
        let Some(domain) = self.domain.clone() else {
            return self.close(None);
        };
        let Some(exchange) = self.exchange.as_mut() else {
            return Vec::new();
        };
        let creds = AccountCredentials {
            users: self.core.storage.users.as_ref(),
            domain: &domain,
            verified: &self.core.verified_passwords,
        };
        let outcome = match exchange.step(data, &creds) {
            Some(outcome) => outcome,
            None => match exchange.session_step(data) {
                Some(SessionStep::Password {
                    tenant,
                    slot,
                    tokens,
                    creds: plain,
                }) => {
                    self.password_login(&domain, &tenant, slot, tokens, plain)
                        .await
                }
                Some(SessionStep::Token { mech, msg }) => {
                    self.bearer_login(&domain, mech, msg).await
                }
                Some(SessionStep::Reply(outcome)) => outcome,
                None => return Vec::new(),
            },
        };
        self.finish_outcome(outcome).await
    }

    /// Sends what an exchange's outcome calls for, in legacy SASL or SASL2 form.
    async fn finish_outcome(&mut self, outcome: Outcome) -> Vec<Action> {
        let Some(domain) = self.domain.clone() else {
            return self.close(None);
        };
        match outcome {
            Outcome::Challenge(c) => {
                let el = if self.sasl2.is_some() {
                    sasl2::challenge(&c)
                } else {
                    auth::with_data("challenge", Some(&c))
                };
                vec![Action::Send(el)]
            }
            Outcome::Failure(f, text) => self.sasl_failed(f, text.as_deref()),
            Outcome::Success {
                username,
                authzid,
                additional_data,
            } => {
                let Some(local) = auth::normalize_username(&username, &domain) else {
                    return self.sasl_failed(SaslFailure::NotAuthorized, None);
                };
                let account = Account::new(local, domain);
                if let Some(z) = authzid
                    && jid::BareJid::new(&z).map(|j| j.to_string()).ok().as_deref()
                        != Some(&account.to_string())
                {
                    return self.sasl_failed(SaslFailure::InvalidAuthzid, None);
                }
                tracing::info!(jid = %account, address = %self.facts.address, sasl2 = self.sasl2.is_some(), "authenticated");
                self.exchange = None;
                self.authenticated = Some(account.clone());
                match self.sasl2.take() {
                    Some(request) => self.sasl2_success(account, *request, additional_data).await,
                    None => {
                        self.stage = Stage::AwaitHeader;
                        self.header_sent = false;
                        vec![
                            Action::Send(auth::with_data("success", additional_data.as_deref())),
                            Action::Restart,
                        ]
                    }
                }
            }
        }
    }

    fn sasl_failed(&mut self, f: SaslFailure, text: Option<&str>) -> Vec<Action> {
        self.exchange = None;
        self.failed_auths += 1;
        self.fast_rotation = None;
        if let Some(tenant) = self.domain.as_deref().and_then(|d| self.core.tenant_of(d)) {
            tenant.count_login_failure();
        }
        tracing::info!(address = %self.facts.address, condition = f.condition(), "authentication failed");
        let el = match self.sasl2.take() {
            Some(_) => sasl2::failure(f, text),
            None => auth::failure(f, text),
        };
        let mut out = vec![Action::Send(el)];
        if self.failed_auths >= self.facts.policy.max_auth_attempts {
            out.extend(self.close(Some((
                StreamErrorCondition::PolicyViolation,
                Some("too many failed authentication attempts".into()),
            ))));
        }
        out
    }

    fn on_bind_iq(&mut self, iq: Element) -> Vec<Action> {
        let Some(account) = self.authenticated.clone() else {
            return Vec::new();
        };
        if iq.attr("type") != Some("set") || !iq.has_child("bind", ns::BIND) {
            let reply =
                stanza::error_reply(&iq, Condition::NotAllowed, Some("bind a resource first"));
            return reply.map(Action::Send).into_iter().collect();
        }
        let resource = match bind::requested_resource(&iq, &account.to_string()) {
            Ok(r) => r,
            Err(cond) => {
                return stanza::error_reply(&iq, cond, None)
                    .map(Action::Send)
                    .into_iter()
                    .collect();
            }
        };
        let entry = match self.bind_session(account, resource) {
            Ok(entry) => entry,
            Err(BindFailure::HostGone) => {
                return self.close(Some((StreamErrorCondition::HostGone, None)));
            }
            Err(BindFailure::SessionLimit) => {
                let text = "the tenant's session limit is reached";
                return stanza::error_reply(&iq, Condition::ResourceConstraint, Some(text))
                    .map(Action::Send)
                    .into_iter()
                    .collect();
            }
        };
        let mut reply = Element::new("iq", ns::CLIENT).with_attr("type", "result");
        if let Some(id) = iq.attr("id") {
            reply.set_attr("id", id);
        }
        reply.push_child(bind::bind_result(&entry.full_jid));
        vec![Action::Send(reply)]
    }

    /// Registers the bound session (RFC 6120 bind, or Bind 2 inline in SASL2); an older
    /// session of the same full JID ends with `<conflict/>`.
    fn bind_session(
        &mut self,
        account: Account,
        resource: String,
    ) -> Result<Arc<SessionEntry>, BindFailure> {
        let tenant = self
            .core
            .tenant_of(&account.domain)
            .ok_or(BindFailure::HostGone)?;
        let slot = tenant.acquire_session().ok_or(BindFailure::SessionLimit)?;
        tenant.count_login();
        self.tenant_slot = Some(slot);
        self.unauth = None;
        self.bound_metric = Some(crate::metrics::session_bound(
            self.facts.transport.as_str(),
            &tenant.name,
        ));
        let transport = self.transport();
        let entry = Arc::new(
            SessionEntry::new(
                crate::router::next_session_id(),
                account,
                resource,
                transport,
                self.facts.address.clone(),
                self.session_tx.clone(),
            )
            .with_user_facts(self.user_facts.take().map(|f| *f).unwrap_or_default()),
        );
        if let Some(old) = self.core.router.register(entry.clone()) {
            old.close(
                StreamErrorCondition::Conflict,
                Some("replaced by a new session"),
            );
        }
        tracing::info!(jid = %entry.full_jid, address = %entry.address, "session bound");
        if let Some(expires_at) = self.auth_expires {
            end_at_expiry(&entry, expires_at);
        }
        self.entry = Some(entry.clone());
        self.stage = Stage::Bound;
        self.work.push(Pending::Bound(entry.clone()));
        Ok(entry)
    }

    /// A bound client's stanza. An iq request first sends a receipt ping that waits for
    /// its spacing, so the ping goes out before the request's answer (see [`receipts`]).
    fn on_bound_stanza(&mut self, entry: &Arc<SessionEntry>, el: Element) -> Vec<Action> {
        let ping_first = self.receipts.waiting()
            && el.name() == "iq"
            && matches!(stanza::stanza_type(&el), "get" | "set");
        let ping = ping_first.then(|| self.receipt_ping()).flatten();
        let mut actions = self.handle_bound_stanza(entry, el);
        if let Some(ping) = ping {
            actions.insert(0, ping);
        }
        actions
    }

    fn handle_bound_stanza(&mut self, entry: &Arc<SessionEntry>, mut el: Element) -> Vec<Action> {
        let Some(kind) = Kind::of(&el) else {
            if el.ns() == crate::session::sm::NS {
                return self.on_sm_element(entry, &el);
            }
            if el.ns() == csi::NS && self.csi_available() {
                return match el.name() {
                    "inactive" => {
                        // Allocated on first use: most sessions never go inactive.
                        self.csi.get_or_insert_default().set_inactive();
                        Vec::new()
                    }
                    "active" => match self.csi.as_mut() {
                        Some(csi) => csi.set_active().into_iter().map(Action::Send).collect(),
                        None => Vec::new(),
                    },
                    _ => self.close(Some((
                        StreamErrorCondition::UnsupportedStanzaType,
                        Some(format!("<{}/>", el.name())),
                    ))),
                };
            }
            if el.ns() == ns::SASL || el.ns() == ns::TLS {
                return self.close(Some((
                    StreamErrorCondition::PolicyViolation,
                    Some("negotiation already done".into()),
                )));
            }
            return self.close(Some((
                StreamErrorCondition::UnsupportedStanzaType,
                Some(format!("<{}/>", el.name())),
            )));
        };
        if let Some(to) = el.attr("to") {
            match ParsedJid::parse(to) {
                Ok(ParsedJid::Normal(_)) => {}
                Ok(ParsedJid::Prepared(j)) => {
                    let normalized = j.to_string();
                    el.set_attr("to", normalized);
                }
                Err(_) => {
                    el.set_attr("from", entry.full_jid.clone());
                    return stanza::error_reply(&el, Condition::JidMalformed, None)
                        .map(Action::Send)
                        .into_iter()
                        .collect();
                }
            }
        }
        // In a cluster, a message is acknowledged once it is safe from this node's death
        // (`session::settle`); other stanzas at once.
        let settle = match self.sm.as_mut() {
            Some(sm) if kind == Kind::Message && self.core.placement.get().is_some() => {
                let number = sm.on_handled_unsettled();
                Some(Settle::new(number, self.session_tx.clone()))
            }
            Some(sm) => {
                sm.on_handled();
                None
            }
            None => None,
        };
        // `from` stamping: whatever the client wrote, the stanza comes from this session.
        el.set_attr("from", entry.full_jid.clone());
        if kind == Kind::Iq && el.attr("id").is_none_or(str::is_empty) {
            // RFC 6120 §8.1.3: every iq carries an id. A request without one is refused
            // before anything answers it (the session no-op below included); an answer
            // without one matches nothing and is dropped, as routing does.
            if !matches!(stanza::stanza_type(&el), "get" | "set") {
                return Vec::new();
            }
            return stanza::error_reply(&el, Condition::BadRequest, Some("an iq needs an id"))
                .map(Action::Send)
                .into_iter()
                .collect();
        }
        if kind == Kind::Iq
            && el.has_child("session", ns::SESSION)
            && self.is_to_self_or_server(&el, entry)
        {
            // RFC 3921 session establishment: a no-op for compatibility with old clients.
            return vec![Action::Send(stanza::iq_result(&el))];
        }
        if kind == Kind::Iq && self.is_keepalive_answer(&el, entry) {
            return self.on_ping_answer(&el);
        }
        if kind == Kind::Message {
            let ctx = MessageContext {
                core: &self.core,
                stage: MessageStage::Sent,
                account: &entry.account,
                session: Some(entry),
                targets: &[],
            };
            self.core.hooks.message(&ctx, &mut el);
        }
        self.work.push(Pending::Route(entry.clone(), el, settle));
        Vec::new()
    }

    fn is_to_self_or_server(&self, el: &Element, entry: &SessionEntry) -> bool {
        match el.attr("to") {
            None => true,
            Some(to) => to == entry.account.domain || to == entry.account.to_string(),
        }
    }

    fn is_keepalive_answer(&self, el: &Element, entry: &SessionEntry) -> bool {
        matches!(stanza::stanza_type(el), "result" | "error")
            && el.attr("id").is_some_and(|id| id.starts_with("hg-ping-"))
            && el.attr("to").is_none_or(|to| to == entry.account.domain)
    }

    /// The session is over, whatever the reason: session-end hooks (unavailable
    /// presence), then out of the routing table.
    pub async fn end_session(&mut self) {
        self.stage = Stage::Closed;
        if let Some(entry) = self.entry.take() {
            self.sm_ended(&entry);
            self.ended = Some(entry.clone());
            self.core
                .hooks
                .session_event(&self.core, SessionEvent::Closed, &entry)
                .await;
            self.core.router.unregister(&entry.account, entry.id);
            self.tenant_slot = None;
            self.bound_metric = None;
            tracing::info!(jid = %entry.full_jid, "session ended");
        }
    }
}

impl StreamCore {
    /// The future that does one item of routing work.
    fn work_future(&self, item: Pending) -> Work {
        let core = self.core.clone();
        match item {
            Pending::Route(entry, el, None) => {
                Box::pin(
                    async move { crate::pipeline::route(&core, &Origin::Session(entry), el).await },
                )
            }
            Pending::Route(entry, el, settle) => Box::pin(async move {
                let origin = Origin::Session(entry);
                let route = crate::pipeline::route(&core, &origin, el);
                crate::session::settle::scope(settle, route).await
            }),
            Pending::Bound(entry) => Box::pin(async move {
                core.hooks
                    .session_event(&core, SessionEvent::Bound, &entry)
                    .await
            }),
        }
    }
}

impl Protocol for StreamCore {
    fn on_event(
        &mut self,
        ev: StreamEvent,
    ) -> impl std::future::Future<Output = Vec<Action>> + Send {
        StreamCore::on_event(self, ev)
    }

    /// A bound client's stanza needs no waiting: it is stamped and handed to routing
    /// here, without building (and boxing) the negotiation's large future.
    fn on_event_now(&mut self, ev: StreamEvent) -> Result<Vec<Action>, StreamEvent> {
        match (&self.stage, ev) {
            (Stage::Bound, StreamEvent::Stanza(el)) => {
                let Some(entry) = self.entry.clone() else {
                    return Ok(Vec::new());
                };
                self.tally
                    .stanza_in(self.facts.transport.as_str(), el.name());
                let mut actions = self.on_bound_stanza(&entry, el);
                self.track_out(&mut actions);
                Ok(actions)
            }
            (_, ev) => Err(ev),
        }
    }

    /// Stream management's acks and ack requests of a bound client: they change no
    /// routing, and a client slowed down for sending faster than its recipient reads
    /// must still acknowledge what it receives (or it would pass `max_unacked`).
    fn is_flow_control(&self, ev: &StreamEvent) -> bool {
        matches!((&self.stage, ev), (Stage::Bound, StreamEvent::Stanza(el))
            if el.ns() == crate::session::sm::NS && matches!(el.name(), "a" | "r"))
    }

    fn mail_held(&self) -> bool {
        self.sm_mail_held()
    }

    fn on_mailbox(&mut self, msg: SessionMsg) -> Vec<Action> {
        StreamCore::on_mailbox(self, msg)
    }

    fn flush_counters(&mut self) {
        self.tally.flush();
    }

    fn take_work(&mut self, idle: bool) -> Option<Work> {
        while !self.work.is_empty() {
            let item = self.work.remove(0);
            let item = match item {
                // Most messages go to a session that is online, past filters that decide
                // from memory: routed here, without a future.
                Pending::Route(entry, el, settle) if idle && el.name() == "message" => {
                    let core = &self.core;
                    let now = crate::session::settle::sync_scope(settle.clone(), || {
                        crate::pipeline::message::route_now(core, &entry, el)
                    });
                    match now {
                        Ok(()) => continue,
                        Err(el) => Pending::Route(entry, el, settle),
                    }
                }
                other => other,
            };
            return Some(self.work_future(item));
        }
        // Drained: give its space back, so that an idle session holds none.
        self.work = Vec::new();
        None
    }

    fn fail(&mut self, cond: StreamErrorCondition, text: Option<String>) -> Vec<Action> {
        StreamCore::fail(self, cond, text)
    }

    fn is_established(&self) -> bool {
        self.entry.is_some()
    }

    fn is_closed(&self) -> bool {
        StreamCore::is_closed(self)
    }

    fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// The tenant's limits once bound; before that, stanzas are held to
    /// `[c2s] max_unauthenticated_stanza_size` (the driver applies the larger limits when
    /// the session is bound).
    fn parser_limits(&self) -> crate::xml::ParserLimits {
        let mut limits = self.core.parser_limits_for(self.domain.as_deref());
        if self.entry.is_none() {
            let unauth = self.core.config().c2s.max_unauthenticated_stanza_size;
            limits.max_stanza_bytes = limits.max_stanza_bytes.min(unauth);
        }
        limits
    }

    fn shaper(&self) -> Option<crate::tenants::rate::TokenBucket> {
        self.stanza_shaper()
    }

    fn identity(&self) -> Option<Identity> {
        let entry = self.entry.as_ref()?;
        let tenant = self
            .core
            .tenant_of(&entry.account.domain)
            .map(|t| t.name.clone())
            .unwrap_or_default();
        Some(Identity {
            jid: entry.full_jid.clone(),
            tenant,
        })
    }

    fn keepalive_ping(&mut self) -> Option<Element> {
        StreamCore::keepalive_ping(self)
    }

    fn deadline(&self) -> Option<Instant> {
        self.receipts.due()
    }

    fn on_deadline(&mut self, now: Instant) -> Vec<Action> {
        if !self.receipts.due_by(now) {
            return Vec::new();
        }
        let mut actions: Vec<Action> = self.receipt_ping().into_iter().collect();
        self.track_out(&mut actions);
        actions
    }

    fn tls_established(&mut self, bindings: ChannelBindings) {
        StreamCore::tls_established(self, bindings)
    }

    fn resumable(&self) -> bool {
        self.sm_resumable()
    }

    fn link_lost(&mut self) -> Option<std::time::Duration> {
        self.sm_link_lost()
    }

    fn attached(&mut self, handled: u32, sasl2: Option<(Element, Element)>) -> Vec<Action> {
        self.sm_attached(handled, sasl2)
    }

    fn attach_refused(&mut self) -> Vec<Action> {
        self.sm_attach_refused()
    }

    fn take_handover(&mut self) -> Option<HandOver> {
        self.handover.take().map(|h| *h)
    }

    fn handover_failed(&mut self, sasl2: Option<(Element, Element)>) -> Vec<Action> {
        self.sm_handover_failed(sasl2)
    }

    fn export(
        &mut self,
        handled: u32,
        forward: Arc<dyn crate::router::RemoteSink>,
    ) -> Result<crate::session::handoff::Exported, crate::session::handoff::HandOffError> {
        self.sm_export(handled, forward)
    }

    fn finish(&mut self) -> impl std::future::Future<Output = ()> + Send {
        self.end_session()
    }

    fn moved(&mut self) -> impl std::future::Future<Output = ()> + Send {
        let core = self.core.clone();
        let entry = self.ended.clone();
        async move {
            if let Some(entry) = entry {
                core.hooks
                    .session_event(&core, SessionEvent::Moved, &entry)
                    .await;
            }
        }
    }

    fn ended_cleanly(&mut self) {
        self.clean_end = true;
    }

    /// Messages go to another resource or offline storage (RFC 6121 §8.5.3: a message to
    /// a resource gone offline is treated as sent to the bare JID); a client that did get
    /// part of them may see one twice (stamped with a delay), none is lost. Requests (iq
    /// get/set) get an error back; other stanzas are dropped as for any closed session.
    fn rescue(
        &mut self,
        unsent: Vec<Element>,
        unread: Vec<Element>,
    ) -> impl std::future::Future<Output = ()> + Send {
        let core = self.core.clone();
        let account = self.authenticated.clone();
        let entry = self.entry.clone().or_else(|| self.ended.clone());
        // What CSI held was never sent: it goes before what the mailbox still had.
        let mut unread = unread;
        unread.splice(
            0..0,
            self.csi.as_mut().map(|c| c.flush()).unwrap_or_default(),
        );
        let unsent = self.receipts.settle(unsent, self.clean_end);
        let undelivered = self.sm_rescue(unsent, unread);
        // The shutdown waits for this to finish (see `crate::rescues`).
        let rescuing = (!undelivered.is_empty()).then(|| self.core.rescues.start());
        async move {
            let _rescuing = rescuing;
            let Some(account) = account else { return };
            let mut rescued = 0usize;
            for el in undelivered {
                match el.name() {
                    "message" => {
                        crate::pipeline::message::redeliver(&core, &account, el).await;
                        rescued += 1;
                    }
                    "iq" if matches!(stanza::stanza_type(&el), "get" | "set") => {
                        if let (Some(entry), Some(error)) = (
                            &entry,
                            stanza::error_reply(&el, Condition::RecipientUnavailable, None),
                        ) {
                            let origin = Origin::Session(entry.clone());
                            crate::pipeline::route(&core, &origin, error).await;
                        }
                    }
                    _ => {}
                }
            }
            if rescued > 0 {
                tracing::info!(
                    jid = %account,
                    messages = rescued,
                    "messages the session never delivered routed again after it ended"
                );
            }
        }
    }
}

/// Ends the session with `<not-authorized/>` when its plugin-granted authentication
/// expires (holds only a weak reference, so a session that ends first is not kept).
fn end_at_expiry(entry: &Arc<SessionEntry>, expires_at: u64) {
    let left = expires_at.saturating_sub(auth::unix_now());
    let weak = Arc::downgrade(entry);
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(left)).await;
        if let Some(entry) = weak.upgrade() {
            tracing::info!(jid = %entry.full_jid, "authentication expired, ending the session");
            entry.close(
                StreamErrorCondition::NotAuthorized,
                Some("authentication expired"),
            );
        }
    });
}

fn new_stream_id() -> String {
    use rand::Rng;
    let n: u128 = rand::rng().random();
    format!("{n:032x}")
}
