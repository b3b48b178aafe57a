//! The host-side types of the `room-policy` world: the question the MUC service asks a
//! tenant's room policy ([`RoomQuestion`]) and the answer ([`RoomAnswer`]). They mirror the
//! WIT `room-types` without depending on the generated bindings; `call.rs` converts.

use heliograph_xmpp::muc::{Affiliation, Role};

/// The room a decision is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRoom {
    /// The room's bare JID.
    pub jid: String,
    /// Occupants now (before the decided action).
    pub occupants: u32,
    /// `muc#roomconfig` (var, value) pairs.
    pub config: Vec<(String, String)>,
}

impl PolicyRoom {
    /// The room's name: the localpart of its JID.
    pub fn name(&self) -> &str {
        self.jid.split_once('@').map_or("", |(local, _)| local)
    }
}

/// A user with what the tenant's authenticator said about it at login (empty for
/// built-in authentication).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyUser {
    /// Full JID.
    pub jid: String,
    pub roles: Vec<String>,
    pub attributes: Vec<(String, String)>,
}

/// A user in a room (or joining it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOccupant {
    pub user: PolicyUser,
    pub nick: String,
    pub role: Role,
    pub affiliation: Affiliation,
}

/// One decision point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomQuestion {
    Create {
        room: PolicyRoom,
        creator: PolicyUser,
    },
    Join {
        room: PolicyRoom,
        occupant: PolicyOccupant,
    },
    Message {
        room: PolicyRoom,
        occupant: PolicyOccupant,
        body: String,
    },
    Configure {
        room: PolicyRoom,
        actor: PolicyUser,
        new_config: Vec<(String, String)>,
    },
    ChangeNick {
        room: PolicyRoom,
        occupant: PolicyOccupant,
        new_nick: String,
    },
}

impl RoomQuestion {
    /// The decision point's name, as in logs (`create-room`, `join`, ...).
    pub fn point(&self) -> &'static str {
        match self {
            RoomQuestion::Create { .. } => "create-room",
            RoomQuestion::Join { .. } => "join",
            RoomQuestion::Message { .. } => "message",
            RoomQuestion::Configure { .. } => "configure",
            RoomQuestion::ChangeNick { .. } => "change-nick",
        }
    }
}

/// A policy's answer. Which variants a question can get: `Allow`/`Deny` for every point,
/// `JoinDefault`/`JoinAllow` for joins, `ReplaceBody` for messages (the host checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomAnswer {
    Allow,
    Deny(String),
    /// Join with what XEP-0045's rules chose.
    JoinDefault,
    /// Join, overriding role and/or affiliation.
    JoinAllow {
        role: Option<Role>,
        affiliation: Option<Affiliation>,
    },
    /// Broadcast this body instead.
    ReplaceBody(String),
}

impl RoomAnswer {
    /// Whether the answer lets the action happen (the stats count the rest as denials).
    pub fn allows(&self) -> bool {
        !matches!(self, RoomAnswer::Deny(_))
    }
}

/// A policy's answer and the version that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomOutcome {
    pub version: u32,
    pub answer: RoomAnswer,
}
