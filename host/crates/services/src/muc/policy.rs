//! The tenant's room policy: decisions the MUC service asks for at each decision point
//! (room creation, join, groupchat message, configuration change, nickname change).
//!
//! The MUC room logic calls the `decide_*` functions below with facts about the room and
//! the occupant; it applies XEP-0045's own rules (members-only, bans, passwords, ...)
//! first and asks the policy only for what those rules allow. A tenant without a
//! room-policy plugin gets [`JoinDecision::Default`] / `Allow` everywhere.
//!
//! A tenant's `room_policy` setting names the slot of its `room-policy` plugin (see
//! [`crate::tenants::RoomPolicySetting`]). Each decision is one call through the plugin
//! host (fresh instance, deadline, memory cap, stats and metrics), with the occupant's
//! roles and attributes from its session (what the authenticator plugin returned at
//! login). When the call fails (trap, deadline, memory cap, malformed answer, no plugin
//! in the slot, no plugin host) the decision fails closed: the action is refused with
//! [`UNAVAILABLE`], unless the tenant set `fail_open`, in which case it is allowed as if
//! there were no policy.
//!
//! INTEGRATION CONTRACT (issue 6): the room logic (muc service) only calls these
//! functions; the Wasm room-policy world fills in their bodies. Signatures may gain
//! fields but should not otherwise change without updating both sides.

use std::sync::Arc;

use super::types::{Affiliation, Role};
use crate::plugins::{PolicyOccupant, PolicyRoom, PolicyUser, RoomAnswer, RoomQuestion};
use crate::router::UserFacts;
use crate::storage::Account;
use heliograph_core::Core;

/// The reason given when a decision fails closed.
pub const UNAVAILABLE: &str = "the room policy is unavailable; try again later";

/// Facts about a room given to every decision.
#[derive(Debug, Clone)]
pub struct RoomFacts {
    /// The tenant the MUC service belongs to.
    pub tenant: String,
    /// The room's bare JID (`standup@conference.example.com`).
    pub room: String,
    /// Occupants in the room now (before the decided action).
    pub occupants: u32,
    /// The room's current configuration as (muc#roomconfig field var, value) pairs, e.g.
    /// (`muc#roomconfig_membersonly`, `1`); multi-valued fields repeat the var.
    pub config: Vec<(String, String)>,
}

/// The user an occupant-related decision is about.
#[derive(Debug, Clone)]
pub struct OccupantFacts {
    /// The user's full JID.
    pub jid: String,
    /// The room nickname.
    pub nick: String,
    /// The role the room logic would give (join) or has given (others).
    pub role: Role,
    /// The user's affiliation with the room.
    pub affiliation: Affiliation,
}

/// The outcome of a join decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinDecision {
    /// Join with the role and affiliation the room logic chose.
    Default,
    /// Join, overriding role and/or affiliation.
    Allow {
        role: Option<Role>,
        affiliation: Option<Affiliation>,
    },
    /// Refuse (`<forbidden/>` with the reason as text).
    Deny { reason: String },
}

/// Allow or refuse (creation, configuration and nickname changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny { reason: String },
}

/// The outcome for a groupchat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageDecision {
    Allow,
    Deny {
        reason: String,
    },
    /// Broadcast with this body instead of the original.
    ReplaceBody(String),
}

/// May `creator` (a full JID) create `room`? `facts.occupants` is 0.
pub async fn decide_create(core: &Arc<Core>, facts: &RoomFacts, creator: &str) -> Decision {
    let question = RoomQuestion::Create {
        room: policy_room(facts),
        creator: policy_user(core, creator),
    };
    match ask(core, &facts.tenant, question).await {
        Asked::NoPolicy | Asked::FailedOpen => Decision::Allow,
        Asked::FailedClosed => deny(UNAVAILABLE),
        Asked::Answer(RoomAnswer::Deny(reason)) => Decision::Deny { reason },
        Asked::Answer(_) => Decision::Allow,
    }
}

/// May `occupant` join, and with which role/affiliation?
pub async fn decide_join(
    core: &Arc<Core>,
    facts: &RoomFacts,
    occupant: &OccupantFacts,
) -> JoinDecision {
    let question = RoomQuestion::Join {
        room: policy_room(facts),
        occupant: policy_occupant(core, occupant),
    };
    match ask(core, &facts.tenant, question).await {
        Asked::NoPolicy | Asked::FailedOpen => JoinDecision::Default,
        Asked::FailedClosed => JoinDecision::Deny {
            reason: UNAVAILABLE.into(),
        },
        Asked::Answer(RoomAnswer::Deny(reason)) => JoinDecision::Deny { reason },
        Asked::Answer(RoomAnswer::JoinAllow { role, affiliation }) => {
            JoinDecision::Allow { role, affiliation }
        }
        Asked::Answer(_) => JoinDecision::Default,
    }
}

/// May `occupant` send this groupchat `body` (and with which body)?
pub async fn decide_message(
    core: &Arc<Core>,
    facts: &RoomFacts,
    occupant: &OccupantFacts,
    body: &str,
) -> MessageDecision {
    let question = RoomQuestion::Message {
        room: policy_room(facts),
        occupant: policy_occupant(core, occupant),
        body: body.to_string(),
    };
    match ask(core, &facts.tenant, question).await {
        Asked::NoPolicy | Asked::FailedOpen => MessageDecision::Allow,
        Asked::FailedClosed => MessageDecision::Deny {
            reason: UNAVAILABLE.into(),
        },
        Asked::Answer(RoomAnswer::Deny(reason)) => MessageDecision::Deny { reason },
        Asked::Answer(RoomAnswer::ReplaceBody(body)) => MessageDecision::ReplaceBody(body),
        Asked::Answer(_) => MessageDecision::Allow,
    }
}

/// May `actor` (a full JID, an owner) apply the new configuration `new_config`?
pub async fn decide_configure(
    core: &Arc<Core>,
    facts: &RoomFacts,
    actor: &str,
    new_config: &[(String, String)],
) -> Decision {
    let question = RoomQuestion::Configure {
        room: policy_room(facts),
        actor: policy_user(core, actor),
        new_config: new_config.to_vec(),
    };
    match ask(core, &facts.tenant, question).await {
        Asked::NoPolicy | Asked::FailedOpen => Decision::Allow,
        Asked::FailedClosed => deny(UNAVAILABLE),
        Asked::Answer(RoomAnswer::Deny(reason)) => Decision::Deny { reason },
        Asked::Answer(_) => Decision::Allow,
    }
}

/// May `occupant` change its nickname to `new_nick`?
pub async fn decide_nick_change(
    core: &Arc<Core>,
    facts: &RoomFacts,
    occupant: &OccupantFacts,
    new_nick: &str,
) -> Decision {
    let question = RoomQuestion::ChangeNick {
        room: policy_room(facts),
        occupant: policy_occupant(core, occupant),
        new_nick: new_nick.to_string(),
    };
    match ask(core, &facts.tenant, question).await {
        Asked::NoPolicy | Asked::FailedOpen => Decision::Allow,
        Asked::FailedClosed => deny(UNAVAILABLE),
        Asked::Answer(RoomAnswer::Deny(reason)) => Decision::Deny { reason },
        Asked::Answer(_) => Decision::Allow,
    }
}

fn deny(reason: &str) -> Decision {
    Decision::Deny {
        reason: reason.into(),
    }
}

/// What asking the tenant's policy gave.
enum Asked {
    /// The tenant has no room policy.
    NoPolicy,
    /// The plugin failed and the tenant fails open.
    FailedOpen,
    /// The plugin failed and the tenant fails closed (the default).
    FailedClosed,
    Answer(RoomAnswer),
}

/// Asks the room policy of `tenant`, if it has one. Failures are logged (by the plugin
/// host with its detail; here when there is no plugin to call).
async fn ask(core: &Arc<Core>, tenant: &str, question: RoomQuestion) -> Asked {
    let Some(setting) = core
        .tenants
        .by_name(tenant)
        .and_then(|t| t.spec.room_policy.clone())
    else {
        return Asked::NoPolicy;
    };
    let failed = || {
        if setting.fail_open {
            Asked::FailedOpen
        } else {
            Asked::FailedClosed
        }
    };
    let point = question.point();
    let Some(host) = core.plugin_host() else {
        tracing::warn!(tenant, plugin = %setting.plugin, point, fail_open = setting.fail_open,
            cause = "no-plugin-host", "room policy unavailable: this server runs no plugin host");
        return failed();
    };
    match host.decide_room(tenant, &setting.plugin, question).await {
        Ok(outcome) => Asked::Answer(outcome.answer),
        Err(e) => {
            if let crate::plugins::PluginError::NotInstalled { .. } = &e {
                tracing::warn!(tenant, plugin = %setting.plugin, point,
                    fail_open = setting.fail_open, cause = %e.cause(),
                    "room policy unavailable: {e}");
            }
            failed()
        }
    }
}

fn policy_room(facts: &RoomFacts) -> PolicyRoom {
    PolicyRoom {
        jid: facts.room.clone(),
        occupants: facts.occupants,
        config: facts.config.clone(),
    }
}

/// The user behind a full JID, with the authenticator's facts from its session (none
/// when the session is gone, is remote, or used built-in authentication).
fn policy_user(core: &Core, full_jid: &str) -> PolicyUser {
    let UserFacts { roles, attributes } = session_facts(core, full_jid).unwrap_or_default();
    PolicyUser {
        jid: full_jid.to_string(),
        roles,
        attributes,
    }
}

fn session_facts(core: &Core, full_jid: &str) -> Option<UserFacts> {
    let (bare, resource) = full_jid.split_once('/')?;
    let (local, domain) = bare.split_once('@')?;
    let entry = core
        .router
        .resource(&Account::new(local, domain), resource)?;
    Some(entry.user_facts().clone())
}

fn policy_occupant(core: &Core, occupant: &OccupantFacts) -> PolicyOccupant {
    PolicyOccupant {
        user: policy_user(core, &occupant.jid),
        nick: occupant.nick.clone(),
        role: occupant.role,
        affiliation: occupant.affiliation,
    }
}
