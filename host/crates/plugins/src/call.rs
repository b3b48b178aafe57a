//! One plugin call: a store and instance (a fresh one from the version's pre-instantiated
//! component, or an idle one of the same tenant, slot and version under the rules of
//! [`super::reuse`]), the epoch deadline and memory cap armed, the export called, the
//! result checked, any failure classified into a [`FailureCause`], and the instance
//! given back for reuse or dropped. Blocking; runs on a blocking thread.

use std::sync::Arc;

use std::time::{Duration, Instant};
use wasmtime::component::ComponentExportIndex;

use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use super::bindings::authenticator::heliograph::plugin::auth_types as wit;
use super::bindings::authenticator::heliograph::plugin::types::KeyValue;
use super::bindings::component::heliograph::plugin::component_types as cwit;
use super::bindings::room_policy::heliograph::plugin::room_types as rwit;
use super::engine::deadline_ticks;
use super::error::FailureCause;
use super::loader::WorldPre;
use super::reuse::{IdleInstances, Lease, ReuseKey, WorldInstance};
use super::room::{PolicyOccupant, PolicyRoom, PolicyUser, RoomAnswer, RoomQuestion};
use super::settings::PluginSettings;
use super::state::{CallScope, CallState};
use super::types::{
    AuthDenied, AuthRequest, AuthUser, ComponentStanza, Mechanism, PluginConfig,
    RegistrationRequest, StanzaKind, Transport,
};
use heliograph_storage::PluginStore;
use heliograph_xmpp::muc::{Affiliation, Role};

/// Limits on what an authenticator may return.
const USERNAME_MAX: usize = 1023;
const DISPLAY_NAME_MAX: usize = 1024;
const ROLES_MAX: usize = 64;
const ROLE_MAX: usize = 128;
const ATTRIBUTES_MAX: usize = 64;
const ATTRIBUTE_MAX: usize = 1024;
const REASON_MAX: usize = 1024;
/// Stanzas a component may return for one stanza.
const STANZAS_OUT_MAX: usize = 64;
/// Largest message body a room policy may substitute.
const BODY_MAX: usize = 64 * 1024;

/// A call may take this many times its deadline in wall-clock time (its CPU time is what
/// the deadline bounds).
const WALL_CLOCK_FACTOR: u32 = 10;

/// CPU time consumed by the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is supported on
    // Linux and the BSDs/macOS.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A failed call: the cause and a detail for the log.
pub(crate) type CallFailure = (FailureCause, String);

/// Everything a call needs, cloned out of the host.
pub(crate) struct CallContext<'a> {
    pub engine: &'a Engine,
    pub settings: &'a PluginSettings,
    pub store: Arc<dyn PluginStore>,
    pub scope: CallScope,
    pub config: Arc<PluginConfig>,
    /// The instance's linear memory in bytes, once instantiated (see `CallLimiter`).
    pub memory_bytes: Arc<std::sync::atomic::AtomicUsize>,
    /// Set when the plugin's instances may serve more than one call.
    pub reuse: Option<Reuse<'a>>,
    /// Whether this call ran on a reused instance.
    pub reused: std::cell::Cell<bool>,
}

/// Where a call's instance may come from and go back to.
pub(crate) struct Reuse<'a> {
    pub idle: &'a IdleInstances,
    pub key: ReuseKey,
    /// Calls one instance may serve (at least 2, or there is no `Reuse`).
    pub max_calls: u32,
    /// Whether the key's version is still the slot's active one.
    pub still_active: &'a (dyn Fn() -> bool + Sync),
}

impl CallContext<'_> {
    /// An instance for one call: an idle one of the same (tenant, slot, version) when
    /// reuse is on and one is there, otherwise a fresh one; either way with this call's
    /// deadline armed and its per-call state reset.
    fn lease(&self, pre: &WorldPre, deadline_ms: u64) -> Result<Lease, CallFailure> {
        if let Some(r) = &self.reuse
            && let Some(mut lease) = r.idle.take(&r.key)
        {
            lease.store.data_mut().begin_call(self.memory_bytes.clone());
            self.arm(&mut lease.store, deadline_ms);
            self.reused.set(true);
            return Ok(lease);
        }
        let mut store = self.new_store(deadline_ms);
        let instance = pre
            .instantiate(&mut store)
            .map_err(|e| self.failure(&store, "instantiation", e))?;
        Ok(Lease {
            store,
            instance,
            calls: 0,
            created: Instant::now(),
        })
    }

    /// After a call: keeps the instance for the next call of its key only if the call
    /// returned normally and passed the checks (`result` is `Ok`), it has calls left and
    /// time left, and it never hit the memory cap or printed; drops it otherwise.
    fn release<T>(&self, mut lease: Lease, result: &Result<T, CallFailure>) {
        let Some(r) = &self.reuse else { return };
        lease.calls += 1;
        if result.is_err()
            || lease.calls >= r.max_calls
            || lease.created.elapsed() >= r.idle.max_age()
            || !lease.store.data().reusable()
        {
            return;
        }
        r.idle.put(r.key.clone(), lease, r.still_active);
    }

    fn new_store(&self, deadline_ms: u64) -> Store<CallState> {
        let state = CallState::new(
            self.settings,
            self.scope.clone(),
            self.config.clone(),
            self.store.clone(),
            self.memory_bytes.clone(),
        );
        let mut store = Store::new(self.engine, state);
        store.limiter(|s| &mut s.limiter);
        self.arm(&mut store, deadline_ms);
        store
    }

    /// Arms the call's deadline on `store`, from now.
    fn arm(&self, store: &mut Store<CallState>, deadline_ms: u64) {
        // The deadline is CPU time of the calling thread (a whole call runs on one thread),
        // so a starved machine or a hostile neighbour cannot time out an innocent plugin;
        // a wall-clock backstop of WALL_CLOCK_FACTOR times the deadline still holds.
        let budget = Duration::from_millis(deadline_ms);
        let backstop = Instant::now() + budget * WALL_CLOCK_FACTOR;
        let cpu_start = thread_cpu_time();
        store.set_epoch_deadline(deadline_ticks(deadline_ms, self.settings.epoch_tick_ms));
        store.epoch_deadline_callback(move |_| {
            if thread_cpu_time().saturating_sub(cpu_start) >= budget || Instant::now() >= backstop {
                Err(Trap::Interrupt.into())
            } else {
                Ok(UpdateDeadline::Continue(1))
            }
        });
    }

    /// Classifies a wasmtime error and logs what the guest printed (a panic message).
    fn failure(&self, store: &Store<CallState>, phase: &str, e: wasmtime::Error) -> CallFailure {
        let state = store.data();
        let trap = e.downcast_ref::<Trap>();
        let cause = if state.limiter.memory_hit {
            FailureCause::Memory
        } else {
            match trap {
                Some(Trap::Interrupt) => FailureCause::Timeout,
                Some(_) => FailureCause::Trap,
                None if phase == "instantiation" => FailureCause::Instantiation,
                None => FailureCause::Trap,
            }
        };
        // The trap itself, without the wasm backtrace wasmtime wraps it in.
        let mut detail = match trap {
            Some(trap) => format!("{phase}: {trap}"),
            None => format!("{phase}: {e:#}"),
        };
        if cause == FailureCause::Memory {
            detail.push_str(" (memory cap reached)");
        }
        // What the guest printed (a Rust panic message, a Python traceback), on one line
        // so the failure stays one log record.
        let output = state.captured_output();
        let output: Vec<&str> = output
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .collect();
        if !output.is_empty() {
            detail.push_str("; plugin output: ");
            detail.push_str(&output.join(" | "));
        }
        (cause, detail)
    }

    /// Calls `authenticate`.
    pub(crate) fn authenticate(
        &self,
        pre: &WorldPre,
        request: &AuthRequest,
    ) -> Result<Result<AuthUser, AuthDenied>, CallFailure> {
        if !matches!(pre, WorldPre::Authenticator(_)) {
            return Err((
                FailureCause::NotInstalled,
                "not an authenticator plugin".into(),
            ));
        }
        let mut lease = self.lease(pre, self.settings.auth_deadline_ms)?;
        let result = self.authenticate_on(&mut lease, request);
        self.release(lease, &result);
        result
    }

    fn authenticate_on(
        &self,
        lease: &mut Lease,
        request: &AuthRequest,
    ) -> Result<Result<AuthUser, AuthDenied>, CallFailure> {
        let Lease {
            store,
            instance: WorldInstance::Authenticator(instance),
            ..
        } = lease
        else {
            unreachable!("an authenticator's instance");
        };
        let wit_request = wit::AuthRequest {
            tenant: self.scope.tenant.to_string(),
            domain: request.domain.clone(),
            mechanism: match request.mechanism {
                Mechanism::Password => wit::Mechanism::Password,
                Mechanism::Token => wit::Mechanism::Token,
            },
            username: request.username.clone(),
            credential: request.credential.clone(),
            connection: wit::Connection {
                client_address: request.client_address.clone(),
                transport: match request.transport {
                    Transport::Tcp => wit::Transport::Tcp,
                    Transport::Bosh => wit::Transport::Bosh,
                    Transport::Websocket => wit::Transport::Websocket,
                },
                tls: request.tls,
            },
        };
        let result = instance
            .heliograph_plugin_authentication()
            .call_authenticate(&mut *store, &wit_request)
            .map_err(|e| self.failure(store, "authenticate", e))?;
        match result {
            Ok(user) => check_user(user)
                .map(Ok)
                .map_err(|detail| (FailureCause::InvalidResult, detail)),
            Err(wit::AuthFailure::NotAuthorized) => Ok(Err(AuthDenied::NotAuthorized)),
            Err(wit::AuthFailure::AccountDisabled) => Ok(Err(AuthDenied::AccountDisabled)),
            Err(wit::AuthFailure::TemporaryFailure(reason)) => {
                if reason.len() > REASON_MAX {
                    return Err((
                        FailureCause::InvalidResult,
                        format!("temporary-failure reason of {} bytes", reason.len()),
                    ));
                }
                Ok(Err(AuthDenied::TemporaryFailure(reason)))
            }
        }
    }

    /// Calls a component's `handle` with one stanza. `Ok(Err(_))` is the plugin's own
    /// refusal; the stanzas returned are checked for count and size here, and parsed and
    /// checked for addressing by the caller.
    pub(crate) fn handle_stanza(
        &self,
        pre: &WorldPre,
        stanza: &ComponentStanza,
        max_stanza_bytes: usize,
    ) -> Result<Result<Vec<String>, String>, CallFailure> {
        if !matches!(pre, WorldPre::Component(_)) {
            return Err((FailureCause::NotInstalled, "not a component plugin".into()));
        }
        let mut lease = self.lease(pre, self.settings.component_deadline_ms)?;
        let result = self.handle_stanza_on(&mut lease, stanza, max_stanza_bytes);
        self.release(lease, &result);
        result
    }

    fn handle_stanza_on(
        &self,
        lease: &mut Lease,
        stanza: &ComponentStanza,
        max_stanza_bytes: usize,
    ) -> Result<Result<Vec<String>, String>, CallFailure> {
        let Lease {
            store,
            instance: WorldInstance::Component(instance),
            ..
        } = lease
        else {
            unreachable!("a component's instance");
        };
        let wit_stanza = cwit::Stanza {
            kind: match stanza.kind {
                StanzaKind::Message => cwit::StanzaKind::Message,
                StanzaKind::Presence => cwit::StanzaKind::Presence,
                StanzaKind::Iq => cwit::StanzaKind::Iq,
            },
            from: stanza.from.clone(),
            to: stanza.to.clone(),
            type_: stanza.stanza_type.clone(),
            id: stanza.id.clone(),
            domain: stanza.domain.clone(),
            xml: stanza.xml.clone(),
        };
        let result = instance
            .heliograph_plugin_stanza_handler()
            .call_handle(&mut *store, &wit_stanza)
            .map_err(|e| self.failure(store, "handle", e))?;
        match result {
            Ok(out) => {
                if out.len() > STANZAS_OUT_MAX {
                    return Err((
                        FailureCause::InvalidResult,
                        format!(
                            "{} stanzas returned, the limit is {STANZAS_OUT_MAX}",
                            out.len()
                        ),
                    ));
                }
                if let Some(big) = out.iter().find(|s| s.len() > max_stanza_bytes) {
                    return Err((
                        FailureCause::InvalidResult,
                        format!(
                            "a returned stanza is {} bytes, the limit is {max_stanza_bytes}",
                            big.len()
                        ),
                    ));
                }
                Ok(Ok(out))
            }
            Err(mut message) => {
                message.truncate(REASON_MAX);
                Ok(Err(message))
            }
        }
    }

    /// Asks a room policy one question.
    pub(crate) fn decide_room(
        &self,
        pre: &WorldPre,
        question: &RoomQuestion,
    ) -> Result<RoomAnswer, CallFailure> {
        if !matches!(pre, WorldPre::RoomPolicy(_)) {
            return Err((
                FailureCause::NotInstalled,
                "not a room-policy plugin".into(),
            ));
        }
        let mut lease = self.lease(pre, self.settings.room_policy_deadline_ms)?;
        let result = self.decide_room_on(&mut lease, question);
        self.release(lease, &result);
        result
    }

    fn decide_room_on(
        &self,
        lease: &mut Lease,
        question: &RoomQuestion,
    ) -> Result<RoomAnswer, CallFailure> {
        let Lease {
            store,
            instance: WorldInstance::RoomPolicy(instance),
            ..
        } = lease
        else {
            unreachable!("a room policy's instance");
        };
        let api = instance.heliograph_plugin_room_decisions();
        let tenant = &self.scope.tenant;
        let phase = question.point();
        let invalid = |detail: String| (FailureCause::InvalidResult, format!("{phase}: {detail}"));
        match question {
            RoomQuestion::Create { room, creator } => {
                let d = api
                    .call_create_room(&mut *store, &wit_room(tenant, room), &wit_user(creator))
                    .map_err(|e| self.failure(store, phase, e))?;
                decision(d).map_err(invalid)
            }
            RoomQuestion::Join { room, occupant } => {
                let d = api
                    .call_join(
                        &mut *store,
                        &wit_room(tenant, room),
                        &wit_occupant(occupant),
                    )
                    .map_err(|e| self.failure(store, phase, e))?;
                match d {
                    rwit::JoinDecision::Default => Ok(RoomAnswer::JoinDefault),
                    rwit::JoinDecision::Allow(grant) => Ok(RoomAnswer::JoinAllow {
                        role: grant.role.map(role_from_wit),
                        affiliation: grant.affiliation.map(affiliation_from_wit),
                    }),
                    rwit::JoinDecision::Deny(reason) => {
                        check_text("deny reason", &reason, REASON_MAX).map_err(invalid)?;
                        Ok(RoomAnswer::Deny(reason))
                    }
                }
            }
            RoomQuestion::Message {
                room,
                occupant,
                body,
            } => {
                let d = api
                    .call_message(
                        &mut *store,
                        &wit_room(tenant, room),
                        &wit_occupant(occupant),
                        body,
                    )
                    .map_err(|e| self.failure(store, phase, e))?;
                match d {
                    rwit::MessageDecision::Allow => Ok(RoomAnswer::Allow),
                    rwit::MessageDecision::Deny(reason) => {
                        check_text("deny reason", &reason, REASON_MAX).map_err(invalid)?;
                        Ok(RoomAnswer::Deny(reason))
                    }
                    rwit::MessageDecision::ReplaceBody(body) => {
                        check_body(&body).map_err(invalid)?;
                        Ok(RoomAnswer::ReplaceBody(body))
                    }
                }
            }
            RoomQuestion::Configure {
                room,
                actor,
                new_config,
            } => {
                let d = api
                    .call_configure(
                        &mut *store,
                        &wit_room(tenant, room),
                        &wit_user(actor),
                        &key_values(new_config),
                    )
                    .map_err(|e| self.failure(store, phase, e))?;
                decision(d).map_err(invalid)
            }
            RoomQuestion::ChangeNick {
                room,
                occupant,
                new_nick,
            } => {
                let d = api
                    .call_change_nick(
                        &mut *store,
                        &wit_room(tenant, room),
                        &wit_occupant(occupant),
                        new_nick,
                    )
                    .map_err(|e| self.failure(store, phase, e))?;
                decision(d).map_err(invalid)
            }
        }
    }

    /// Instantiates without calling anything (figures for tools and benchmarks): the time
    /// it took. The memory is in [`CallContext::memory_bytes`].
    pub(crate) fn instantiate_only(&self, pre: &WorldPre) -> Result<Duration, CallFailure> {
        let mut store = self.new_store(self.settings.auth_deadline_ms);
        let start = Instant::now();
        pre.instance_pre()
            .instantiate(&mut store)
            .map_err(|e| self.failure(&store, "instantiation", e))?;
        Ok(start.elapsed())
    }

    /// Calls the optional `registration.approve` of an authenticator in a fresh instance:
    /// `Ok(Ok(()))` allows the account, `Ok(Err(reason))` vetoes it.
    pub(crate) fn approve_registration(
        &self,
        pre: &WorldPre,
        approve: &ComponentExportIndex,
        request: &RegistrationRequest,
    ) -> Result<Result<(), String>, CallFailure> {
        let mut store = self.new_store(self.settings.auth_deadline_ms);
        let instance = pre
            .instance_pre()
            .instantiate(&mut store)
            .map_err(|e| self.failure(&store, "instantiation", e))?;
        let func = instance
            .get_typed_func::<(&str, &str, &str, &str, Option<&str>, bool), (Result<(), String>,)>(
                &mut store, approve,
            )
            .map_err(|e| {
                (
                    FailureCause::InvalidResult,
                    format!("registration.approve has the wrong type: {e:#}"),
                )
            })?;
        let (result,) = func
            .call(
                &mut store,
                (
                    &*self.scope.tenant,
                    request.domain.as_str(),
                    request.username.as_str(),
                    request.password.as_str(),
                    request.client_address.as_deref(),
                    request.tls,
                ),
            )
            .map_err(|e| self.failure(&store, "approve", e))?;
        Ok(result.map_err(|mut reason| {
            reason.truncate(REASON_MAX);
            reason
        }))
    }

    /// Trial instantiation, then the optional `lifecycle.init` with the configuration.
    /// `Ok(Err(message))` is the plugin refusing its configuration.
    pub(crate) fn init(
        &self,
        pre: &WorldPre,
        init: Option<&ComponentExportIndex>,
    ) -> Result<Result<(), String>, CallFailure> {
        let mut store = self.new_store(self.settings.init_deadline_ms);
        let instance = pre
            .instance_pre()
            .instantiate(&mut store)
            .map_err(|e| self.failure(&store, "instantiation", e))?;
        let Some(init) = init else {
            return Ok(Ok(()));
        };
        let func = instance
            .get_typed_func::<(&str,), (Result<(), String>,)>(&mut store, init)
            .map_err(|e| {
                (
                    FailureCause::InvalidResult,
                    format!("lifecycle.init has the wrong type: {e:#}"),
                )
            })?;
        let (result,) = func
            .call(&mut store, (self.config.json(),))
            .map_err(|e| self.failure(&store, "init", e))?;
        Ok(result.map_err(|mut message| {
            message.truncate(REASON_MAX);
            message
        }))
    }
}

fn check_text(what: &str, value: &str, max: usize) -> Result<(), String> {
    if value.len() > max {
        return Err(format!(
            "{what} is {} bytes, the limit is {max}",
            value.len()
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{what} contains control characters"));
    }
    Ok(())
}

/// Accepts a returned user only if every field is within limits and the username is a
/// plausible localpart (the auth path normalizes it further).
fn check_user(user: wit::User) -> Result<AuthUser, String> {
    if user.username.is_empty() {
        return Err("empty username".into());
    }
    check_text("username", &user.username, USERNAME_MAX)?;
    if user
        .username
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '@' | '/' | '"' | '&' | '\'' | ':' | '<' | '>'))
    {
        return Err(format!(
            "username {:?} contains characters not allowed in a localpart",
            user.username
        ));
    }
    if let Some(name) = &user.display_name {
        check_text("display name", name, DISPLAY_NAME_MAX)?;
    }
    if user.roles.len() > ROLES_MAX {
        return Err(format!(
            "{} roles, the limit is {ROLES_MAX}",
            user.roles.len()
        ));
    }
    for role in &user.roles {
        check_text("role", role, ROLE_MAX)?;
    }
    if user.attributes.len() > ATTRIBUTES_MAX {
        return Err(format!(
            "{} attributes, the limit is {ATTRIBUTES_MAX}",
            user.attributes.len()
        ));
    }
    for kv in &user.attributes {
        check_text("attribute key", &kv.key, ROLE_MAX)?;
        check_text("attribute value", &kv.value, ATTRIBUTE_MAX)?;
    }
    Ok(AuthUser {
        username: user.username,
        display_name: user.display_name,
        roles: user.roles,
        expires_at: user.expires_at,
        attributes: user
            .attributes
            .into_iter()
            .map(|kv| (kv.key, kv.value))
            .collect(),
    })
}

fn key_values(pairs: &[(String, String)]) -> Vec<KeyValue> {
    pairs
        .iter()
        .map(|(key, value)| KeyValue {
            key: key.clone(),
            value: value.clone(),
        })
        .collect()
}

fn wit_room(tenant: &str, room: &PolicyRoom) -> rwit::Room {
    rwit::Room {
        tenant: tenant.to_string(),
        jid: room.jid.clone(),
        name: room.name().to_string(),
        occupants: room.occupants,
        config: key_values(&room.config),
    }
}

fn wit_user(user: &PolicyUser) -> rwit::User {
    rwit::User {
        jid: user.jid.clone(),
        roles: user.roles.clone(),
        attributes: key_values(&user.attributes),
    }
}

fn wit_occupant(occupant: &PolicyOccupant) -> rwit::Occupant {
    rwit::Occupant {
        user: wit_user(&occupant.user),
        nick: occupant.nick.clone(),
        role: match occupant.role {
            Role::None => rwit::Role::None,
            Role::Visitor => rwit::Role::Visitor,
            Role::Participant => rwit::Role::Participant,
            Role::Moderator => rwit::Role::Moderator,
        },
        affiliation: match occupant.affiliation {
            Affiliation::Outcast => rwit::Affiliation::Outcast,
            Affiliation::None => rwit::Affiliation::None,
            Affiliation::Member => rwit::Affiliation::Member,
            Affiliation::Admin => rwit::Affiliation::Admin,
            Affiliation::Owner => rwit::Affiliation::Owner,
        },
    }
}

fn role_from_wit(role: rwit::Role) -> Role {
    match role {
        rwit::Role::None => Role::None,
        rwit::Role::Visitor => Role::Visitor,
        rwit::Role::Participant => Role::Participant,
        rwit::Role::Moderator => Role::Moderator,
    }
}

fn affiliation_from_wit(affiliation: rwit::Affiliation) -> Affiliation {
    match affiliation {
        rwit::Affiliation::Outcast => Affiliation::Outcast,
        rwit::Affiliation::None => Affiliation::None,
        rwit::Affiliation::Member => Affiliation::Member,
        rwit::Affiliation::Admin => Affiliation::Admin,
        rwit::Affiliation::Owner => Affiliation::Owner,
    }
}

fn decision(d: rwit::Decision) -> Result<RoomAnswer, String> {
    match d {
        rwit::Decision::Allow => Ok(RoomAnswer::Allow),
        rwit::Decision::Deny(reason) => {
            check_text("deny reason", &reason, REASON_MAX)?;
            Ok(RoomAnswer::Deny(reason))
        }
    }
}

/// A substituted body: within [`BODY_MAX`], and only characters XML 1.0 allows (tabs and
/// line breaks are fine in a message, other control characters are not).
fn check_body(body: &str) -> Result<(), String> {
    if body.len() > BODY_MAX {
        return Err(format!(
            "replacement body is {} bytes, the limit is {BODY_MAX}",
            body.len()
        ));
    }
    if body
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err("replacement body contains control characters".into());
    }
    Ok(())
}
