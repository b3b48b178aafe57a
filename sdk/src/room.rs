//! The room-policy world as plain Rust types: the room, the user and the occupant a
//! decision is about, and the decisions a [`crate::RoomPolicy`] returns.

/// An occupant's role in a room (XEP-0045 §5.1), lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    None,
    Visitor,
    Participant,
    Moderator,
}

/// A user's affiliation with a room (XEP-0045 §5.2), lowest first; `Outcast` is banned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Affiliation {
    Outcast,
    None,
    Member,
    Admin,
    Owner,
}

/// The room a decision is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    /// The tenant the MUC service belongs to.
    pub tenant: String,
    /// The room's bare JID (`standup@conference.example.com`).
    pub jid: String,
    /// The localpart of the JID (`standup`).
    pub name: String,
    /// Occupants now, before the decided action.
    pub occupants: u32,
    /// `muc#roomconfig` (field var, value) pairs; multi-valued fields repeat the var.
    pub config: Vec<(String, String)>,
}

impl Room {
    /// A room `name@conference.example.com` of tenant `test` with `occupants` and no
    /// configuration, for tests.
    pub fn new(name: &str, occupants: u32) -> Room {
        Room {
            tenant: "test".into(),
            jid: format!("{name}@conference.example.com"),
            name: name.into(),
            occupants,
            config: Vec::new(),
        }
    }

    /// The first value of a configuration field.
    pub fn config(&self, var: &str) -> Option<&str> {
        self.config
            .iter()
            .find(|(k, _)| k == var)
            .map(|(_, v)| v.as_str())
    }
}

/// A user with what the tenant's authenticator returned at login (empty for built-in
/// authentication).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoomUser {
    /// Full JID.
    pub jid: String,
    pub roles: Vec<String>,
    pub attributes: Vec<(String, String)>,
}

impl RoomUser {
    /// A user with this full JID and nothing else known, for tests.
    pub fn new(jid: &str) -> RoomUser {
        RoomUser {
            jid: jid.into(),
            ..RoomUser::default()
        }
    }

    /// Adds an authenticator role (for tests).
    pub fn role(mut self, role: &str) -> RoomUser {
        self.roles.push(role.into());
        self
    }

    /// Adds an authenticator attribute (for tests).
    pub fn attribute(mut self, key: &str, value: &str) -> RoomUser {
        self.attributes.push((key.into(), value.into()));
        self
    }

    /// Whether the authenticator gave the user `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// The value of an authenticator attribute.
    pub fn attribute_value(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The bare JID (without the resource).
    pub fn bare_jid(&self) -> &str {
        self.jid.split_once('/').map_or(&self.jid, |(bare, _)| bare)
    }
}

/// A user in a room (or joining it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occupant {
    pub user: RoomUser,
    /// The room nickname.
    pub nick: String,
    /// The role the server would give (join) or has given.
    pub role: Role,
    pub affiliation: Affiliation,
}

impl Occupant {
    /// A participant without affiliation, for tests.
    pub fn new(user: RoomUser, nick: &str) -> Occupant {
        Occupant {
            user,
            nick: nick.into(),
            role: Role::Participant,
            affiliation: Affiliation::None,
        }
    }
}

/// Allow or refuse; the reason is shown to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
}

impl Decision {
    /// A refusal with `reason`.
    pub fn deny(reason: impl Into<String>) -> Decision {
        Decision::Deny(reason.into())
    }
}

/// The outcome of a join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinDecision {
    /// The role and affiliation XEP-0045's rules give.
    Default,
    /// Join, overriding role and/or affiliation.
    Allow {
        role: Option<Role>,
        affiliation: Option<Affiliation>,
    },
    /// Refuse with a reason.
    Deny(String),
}

impl JoinDecision {
    /// Join with this role, affiliation unchanged.
    pub fn with_role(role: Role) -> JoinDecision {
        JoinDecision::Allow {
            role: Some(role),
            affiliation: None,
        }
    }

    /// A refusal with `reason`.
    pub fn deny(reason: impl Into<String>) -> JoinDecision {
        JoinDecision::Deny(reason.into())
    }
}

/// The outcome of a groupchat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageDecision {
    Allow,
    /// The sender gets an error with the reason; nobody else sees the message.
    Deny(String),
    /// Broadcast this body instead.
    ReplaceBody(String),
}

impl MessageDecision {
    /// A refusal with `reason`.
    pub fn deny(reason: impl Into<String>) -> MessageDecision {
        MessageDecision::Deny(reason.into())
    }
}
