//! Moderation (XEP-0045 §8-§10, `muc#admin`): role changes (kick, voice, moderator) and
//! affiliation changes (ban, member, admin, owner), the lists an admin can read, and the
//! permission rules between actor and target.

use super::ns::{MUC_ADMIN, status};
use super::room::{Departure, Outbox, Room, RoomError, role_after};
use super::types::{Affiliation, Role};
use crate::stanza::Condition;
use crate::xml::Element;

/// Who asks for a change: an occupant or affiliated user, or the server's admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Bare JID (empty for the admin API).
    pub bare: String,
    /// Nickname in the room, if present (shown as `<actor nick=…/>`).
    pub nick: Option<String>,
    pub role: Role,
    pub affiliation: Affiliation,
}

impl Actor {
    /// True for the admin API.
    pub fn is_system(&self) -> bool {
        self.bare.is_empty()
    }

    /// The admin API: may do anything an owner may, and kick anyone.
    pub fn system() -> Actor {
        Actor {
            bare: String::new(),
            nick: None,
            role: Role::Moderator,
            affiliation: Affiliation::Owner,
        }
    }
}

/// One `<item/>` of a `muc#admin` set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminChange {
    Role {
        nick: String,
        role: Role,
        reason: Option<String>,
    },
    Affiliation {
        jid: String,
        affiliation: Affiliation,
        reason: Option<String>,
    },
}

impl AdminChange {
    /// Reads the items of a `muc#admin` set query.
    pub fn parse(query: &Element) -> Result<Vec<AdminChange>, RoomError> {
        let bad = |t: &str| RoomError::with_text(Condition::BadRequest, t);
        let mut out = Vec::new();
        for item in query.children().filter(|c| c.is("item", MUC_ADMIN)) {
            let reason = item.child_text("reason", MUC_ADMIN);
            if let Some(aff) = item.attr("affiliation") {
                let affiliation =
                    Affiliation::parse(aff).ok_or_else(|| bad("unknown affiliation"))?;
                let jid = item
                    .attr("jid")
                    .ok_or_else(|| bad("an affiliation item needs a jid"))?;
                // A full JID stands for its bare JID: affiliations are per user.
                let jid = jid::Jid::new(jid)
                    .map_err(|_| RoomError::new(Condition::JidMalformed))?
                    .to_bare()
                    .to_string();
                out.push(AdminChange::Affiliation {
                    jid,
                    affiliation,
                    reason,
                });
            } else if let Some(role) = item.attr("role") {
                let role = Role::parse(role).ok_or_else(|| bad("unknown role"))?;
                let nick = item
                    .attr("nick")
                    .ok_or_else(|| bad("a role item needs a nick"))?;
                out.push(AdminChange::Role {
                    nick: nick.to_string(),
                    role,
                    reason,
                });
            } else {
                return Err(bad("an item needs a role or an affiliation"));
            }
        }
        if out.is_empty() {
            return Err(bad("no items"));
        }
        Ok(out)
    }
}

impl Room {
    /// The actor a full JID is in this room: its occupant if present, else its
    /// affiliation with no role.
    pub fn actor_for(&self, full: &str) -> Actor {
        let bare = crate::router::route::bare(full);
        match self.by_session(full) {
            Some(o) => Actor {
                bare,
                nick: Some(o.nick.clone()),
                role: o.role,
                affiliation: o.affiliation.max(self.affiliation(&o.bare)),
            },
            None => Actor {
                affiliation: self.affiliation(&bare),
                bare,
                nick: None,
                role: Role::None,
            },
        }
    }

    /// Applies every change or none (XEP-0045 §8-§10 permission rules).
    pub fn admin_set(
        &mut self,
        actor: &Actor,
        changes: &[AdminChange],
    ) -> Result<Outbox, RoomError> {
        let mut next = self.clone();
        let mut out = Outbox::new();
        for c in changes {
            match c {
                AdminChange::Role { nick, role, reason } => {
                    next.set_role(actor, nick, *role, reason.as_deref(), &mut out)?
                }
                AdminChange::Affiliation {
                    jid,
                    affiliation,
                    reason,
                } => next.set_affiliation(actor, jid, *affiliation, reason.as_deref(), &mut out)?,
            }
        }
        *self = next;
        Ok(out)
    }

    fn set_role(
        &mut self,
        actor: &Actor,
        nick: &str,
        role: Role,
        reason: Option<&str>,
        out: &mut Outbox,
    ) -> Result<(), RoomError> {
        if actor.role != Role::Moderator {
            return Err(RoomError::with_text(
                Condition::Forbidden,
                "only moderators may change roles",
            ));
        }
        let idx = self
            .index_of_nick(nick)
            .ok_or_else(|| RoomError::with_text(Condition::ItemNotFound, "no such occupant"))?;
        let target = &self.occupants[idx];
        let target_aff = target.affiliation.max(self.affiliation(&target.bare));
        let touches_moderation = role == Role::Moderator || target.role == Role::Moderator;
        if touches_moderation && actor.affiliation < Affiliation::Admin {
            return Err(RoomError::with_text(
                Condition::Forbidden,
                "only admins may grant or revoke moderation",
            ));
        }
        let protected = target_aff >= Affiliation::Admin || target_aff > actor.affiliation;
        if role < target.role && protected && !actor.is_system() {
            return Err(RoomError::with_text(
                Condition::NotAllowed,
                "that occupant's affiliation protects it",
            ));
        }
        if role == Role::None {
            let how = Departure {
                statuses: vec![status::KICKED],
                actor: actor.nick.as_deref(),
                reason,
                destroy: None,
            };
            self.remove_occupant(idx, &how, out);
        } else {
            self.occupants[idx].role = role;
            let occ = self.occupants[idx].clone();
            self.broadcast_presence(&occ, out);
        }
        Ok(())
    }

    fn set_affiliation(
        &mut self,
        actor: &Actor,
        jid: &str,
        aff: Affiliation,
        reason: Option<&str>,
        out: &mut Outbox,
    ) -> Result<(), RoomError> {
        if actor.affiliation < Affiliation::Admin {
            return Err(RoomError::with_text(
                Condition::Forbidden,
                "only admins may change affiliations",
            ));
        }
        let current = self.affiliation(jid);
        if actor.affiliation < Affiliation::Owner {
            if aff >= Affiliation::Admin {
                return Err(RoomError::with_text(
                    Condition::Forbidden,
                    "only owners may grant admin or owner",
                ));
            }
            if current >= Affiliation::Admin {
                return Err(RoomError::with_text(
                    Condition::NotAllowed,
                    "only owners may change an admin or owner",
                ));
            }
        }
        if self.service_admins.iter().any(|a| a == jid) && aff != Affiliation::Owner {
            return Err(RoomError::with_text(
                Condition::NotAllowed,
                "service admins are owners of every room",
            ));
        }
        if current == Affiliation::Owner && aff != Affiliation::Owner {
            let owners = self
                .affiliations
                .values()
                .filter(|a| **a == Affiliation::Owner)
                .count();
            if owners <= 1 {
                return Err(RoomError::with_text(
                    Condition::Conflict,
                    "a room needs at least one owner",
                ));
            }
        }
        self.check_affiliation_room(jid, aff)?;
        self.store_affiliation(jid, aff);
        for idx in self.indexes_of_bare(jid).into_iter().rev() {
            let role = role_after(self, aff, self.occupants[idx].role);
            self.occupants[idx].affiliation = aff;
            match role {
                None => {
                    let code = if aff == Affiliation::Outcast {
                        status::BANNED
                    } else {
                        status::REMOVED_AFFILIATION
                    };
                    let how = Departure {
                        statuses: vec![code],
                        actor: actor.nick.as_deref(),
                        reason,
                        destroy: None,
                    };
                    self.remove_occupant(idx, &how, out);
                }
                Some(role) => {
                    self.occupants[idx].role = role;
                    let occ = self.occupants[idx].clone();
                    self.broadcast_presence(&occ, out);
                }
            }
        }
        Ok(())
    }

    /// Answers a `muc#admin` get for one role or affiliation list.
    pub fn admin_get(&self, actor: &Actor, query: &Element) -> Result<Element, RoomError> {
        let item = query
            .children()
            .find(|c| c.is("item", MUC_ADMIN))
            .ok_or_else(|| RoomError::with_text(Condition::BadRequest, "no item"))?;
        let mut result = Element::new("query", MUC_ADMIN);
        if let Some(aff) = item.attr("affiliation") {
            let aff = Affiliation::parse(aff)
                .filter(|a| *a != Affiliation::None)
                .ok_or_else(|| RoomError::with_text(Condition::BadRequest, "unknown list"))?;
            if actor.affiliation < Affiliation::Admin {
                return Err(RoomError::with_text(
                    Condition::Forbidden,
                    "only admins may read affiliation lists",
                ));
            }
            for (jid, a) in self.affiliations().filter(|(_, a)| *a == aff) {
                let mut it = Element::new("item", MUC_ADMIN)
                    .with_attr("affiliation", a.as_str())
                    .with_attr("jid", jid);
                if let Some(o) = self.occupants_of(jid).next() {
                    it.set_attr("nick", o.nick.clone());
                    it.set_attr("role", o.role.as_str());
                }
                result.push_child(it);
            }
            return Ok(result);
        }
        let role = item
            .attr("role")
            .and_then(Role::parse)
            .filter(|r| *r != Role::None)
            .ok_or_else(|| RoomError::with_text(Condition::BadRequest, "unknown list"))?;
        if actor.role != Role::Moderator {
            return Err(RoomError::with_text(
                Condition::Forbidden,
                "only moderators may read role lists",
            ));
        }
        for o in self.occupants.iter().filter(|o| o.role == role) {
            result.push_child(
                Element::new("item", MUC_ADMIN)
                    .with_attr("nick", o.nick.clone())
                    .with_attr("role", o.role.as_str())
                    .with_attr("affiliation", o.affiliation.as_str())
                    .with_attr("jid", o.sessions.first().cloned().unwrap_or_default()),
            );
        }
        Ok(result)
    }
}
