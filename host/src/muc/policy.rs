//! The tenant's room policy: decisions the MUC service asks for at each decision point
//! (room creation, join, groupchat message, configuration change, nickname change).
//!
//! The MUC room logic calls the `decide_*` functions below with facts about the room and
//! the occupant; it applies XEP-0045's own rules (members-only, bans, passwords, ...)
//! first and asks the policy only for what those rules allow. A tenant without a
//! room-policy plugin gets [`JoinDecision::Default`] / `Allow` everywhere.
//!
//! INTEGRATION CONTRACT (issue 6): the room logic (muc service) only calls these
//! functions; the Wasm room-policy world fills in their bodies. Signatures may gain
//! fields but should not otherwise change without updating both sides.

use std::sync::Arc;

use super::types::{Affiliation, Role};
use crate::server::Server;

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
pub async fn decide_create(_server: &Arc<Server>, _facts: &RoomFacts, _creator: &str) -> Decision {
    Decision::Allow
}

/// May `occupant` join, and with which role/affiliation?
pub async fn decide_join(
    _server: &Arc<Server>,
    _facts: &RoomFacts,
    _occupant: &OccupantFacts,
) -> JoinDecision {
    JoinDecision::Default
}

/// May `occupant` send this groupchat `body` (and with which body)?
pub async fn decide_message(
    _server: &Arc<Server>,
    _facts: &RoomFacts,
    _occupant: &OccupantFacts,
    _body: &str,
) -> MessageDecision {
    MessageDecision::Allow
}

/// May `actor` (a full JID, an owner) apply the new configuration `new_config`?
pub async fn decide_configure(
    _server: &Arc<Server>,
    _facts: &RoomFacts,
    _actor: &str,
    _new_config: &[(String, String)],
) -> Decision {
    Decision::Allow
}

/// May `occupant` change its nickname to `new_nick`?
pub async fn decide_nick_change(
    _server: &Arc<Server>,
    _facts: &RoomFacts,
    _occupant: &OccupantFacts,
    _new_nick: &str,
) -> Decision {
    Decision::Allow
}
