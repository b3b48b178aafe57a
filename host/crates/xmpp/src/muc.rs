//! Roles and affiliations (XEP-0045 §5): what an occupant may do now (role) and the
//! long-lived relation of a user to a room (affiliation).

use std::fmt;

/// An occupant's role in the room, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    None,
    Visitor,
    Participant,
    Moderator,
}

/// A user's affiliation with the room, lowest first (`outcast` = banned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Affiliation {
    Outcast,
    None,
    Member,
    Admin,
    Owner,
}

impl Role {
    /// The XEP-0045 attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Visitor => "visitor",
            Role::Participant => "participant",
            Role::Moderator => "moderator",
        }
    }

    /// Parses the XEP-0045 attribute value.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "none" => Role::None,
            "visitor" => Role::Visitor,
            "participant" => Role::Participant,
            "moderator" => Role::Moderator,
            _ => return None,
        })
    }
}

impl Affiliation {
    /// The XEP-0045 attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Outcast => "outcast",
            Affiliation::None => "none",
            Affiliation::Member => "member",
            Affiliation::Admin => "admin",
            Affiliation::Owner => "owner",
        }
    }

    /// Parses the XEP-0045 attribute value.
    pub fn parse(s: &str) -> Option<Affiliation> {
        Some(match s {
            "outcast" => Affiliation::Outcast,
            "none" => Affiliation::None,
            "member" => Affiliation::Member,
            "admin" => Affiliation::Admin,
            "owner" => Affiliation::Owner,
            _ => return None,
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Affiliation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_order_follows_privilege() {
        for r in [
            Role::None,
            Role::Visitor,
            Role::Participant,
            Role::Moderator,
        ] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        for a in [
            Affiliation::Outcast,
            Affiliation::None,
            Affiliation::Member,
            Affiliation::Admin,
            Affiliation::Owner,
        ] {
            assert_eq!(Affiliation::parse(a.as_str()), Some(a));
        }
        assert!(Role::Moderator > Role::Participant);
        assert!(
            Affiliation::Owner > Affiliation::Admin && Affiliation::Outcast < Affiliation::None
        );
        assert_eq!(Role::parse("king"), None);
    }
}
