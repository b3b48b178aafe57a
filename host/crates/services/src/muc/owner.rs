//! Owner operations (XEP-0045 §10, `muc#owner`): the configuration form (with the
//! owner and admin lists), applying a configuration (unlocking a new room, removing
//! non-members when a room becomes members-only, telling occupants what changed) and
//! destroying a room.

use std::collections::BTreeSet;

use super::config::{ROOMADMINS, ROOMOWNERS, RoomConfig, Whois};
use super::dataform::{Field, Submitted};
use super::moderation::AdminChange;
use super::ns::{MUC_USER, status};
use super::room::{Departure, Outbox, Room, RoomError};
use super::types::{Affiliation, Role};
use crate::stanza::Condition;
use crate::xml::{Element, ns};

impl Room {
    /// Refuses anyone but an owner.
    pub fn check_owner(&self, actor: &super::moderation::Actor) -> Result<(), RoomError> {
        if actor.affiliation == Affiliation::Owner {
            Ok(())
        } else {
            Err(RoomError::with_text(
                Condition::Forbidden,
                "only owners may do this",
            ))
        }
    }

    /// Replaces the configuration and unlocks the room. Occupants without membership
    /// leave a room that became members-only (322); the others are told of the change
    /// (104, and 172/173 when real JIDs became visible or hidden).
    pub fn apply_config(&mut self, new: RoomConfig) -> Outbox {
        let old = std::mem::replace(&mut self.config, new);
        let was_locked = std::mem::replace(&mut self.locked, false);
        self.dirty = true;
        let mut out = Outbox::new();
        if self.config.members_only && !old.members_only {
            let how = Departure {
                statuses: vec![status::REMOVED_MEMBERS_ONLY],
                ..Default::default()
            };
            let mut idx = self.occupants.len();
            while idx > 0 {
                idx -= 1;
                let o = &self.occupants[idx];
                if o.affiliation.max(self.affiliation(&o.bare)) < Affiliation::Member {
                    self.remove_occupant(idx, &how, &mut out);
                }
            }
        }
        if self.config.moderated != old.moderated {
            // Roles follow the new default for occupants without affiliation.
            for idx in 0..self.occupants.len() {
                let o = &self.occupants[idx];
                if o.affiliation == Affiliation::None && o.role != Role::Moderator {
                    let role = self.default_role(Affiliation::None);
                    if role != o.role {
                        self.occupants[idx].role = role;
                        let occ = self.occupants[idx].clone();
                        self.broadcast_presence(&occ, &mut out);
                    }
                }
            }
        }
        if was_locked || old == self.config {
            return out;
        }
        let mut x = Element::new("x", MUC_USER);
        let mut code = |c: u16| {
            x.push_child(Element::new("status", MUC_USER).with_attr("code", c.to_string()));
        };
        code(status::CONFIG_CHANGED);
        if old.logging != self.config.logging && self.limits.max_log_messages > 0 {
            code(if self.config.logging {
                status::LOGGING_ENABLED
            } else {
                status::LOGGING_DISABLED
            });
        }
        if old.whois != self.config.whois {
            code(match self.config.whois {
                Whois::Anyone => status::NOW_NON_ANONYMOUS,
                Whois::Moderators => status::NOW_SEMI_ANONYMOUS,
            });
        }
        let notice = Element::new("message", ns::CLIENT)
            .with_attr("type", "groupchat")
            .with_attr("id", crate::muc::new_id())
            .with_child(x);
        self.broadcast_from_room(&notice, &mut out);
        out
    }

    /// The MUC service is going away (tenant disabled or removed, server shutting down):
    /// every occupant gets its own unavailable presence with 332 and role `none`. The
    /// room keeps its configuration and affiliations.
    pub fn shut_down(&mut self) -> Outbox {
        let how = Departure {
            statuses: vec![status::REMOVED_SHUTDOWN],
            ..Default::default()
        };
        let mut out = Outbox::new();
        for occ in &self.occupants {
            for s in &occ.sessions {
                out.push(self.unavailable_of(occ, occ, s, &how, None));
            }
        }
        self.occupants.clear();
        out
    }

    /// Destroys the room (XEP-0045 §10.9): every occupant leaves with a `<destroy/>`
    /// carrying the alternate venue and reason.
    pub fn destroy(&mut self, alternate: Option<&str>, reason: Option<&str>) -> Outbox {
        let mut d = Element::new("destroy", MUC_USER).with_opt_attr("jid", alternate);
        if let Some(r) = reason {
            d.push_child(Element::new("reason", MUC_USER).with_text(r));
        }
        let how = Departure {
            destroy: Some(d),
            ..Default::default()
        };
        let mut out = Outbox::new();
        for occ in &self.occupants {
            let mut gone = occ.clone();
            gone.affiliation = Affiliation::None;
            for s in &occ.sessions {
                out.push(self.unavailable_of(&gone, &gone, s, &how, None));
            }
        }
        self.occupants.clear();
        self.destroyed = true;
        out
    }
}

impl Room {
    /// The owner's configuration form, with the owner and admin lists.
    pub fn config_form(&self) -> Element {
        let list = |aff: Affiliation| {
            self.affiliations()
                .filter(|(_, a)| *a == aff)
                .map(|(j, _)| j.to_string())
                .collect::<Vec<_>>()
        };
        let extra = vec![
            Field::multi(ROOMOWNERS, "jid-multi", list(Affiliation::Owner)).labelled("Owners"),
            Field::multi(ROOMADMINS, "jid-multi", list(Affiliation::Admin)).labelled("Admins"),
        ];
        self.config.form(&self.jid, extra)
    }

    /// The affiliation changes a submitted configuration form asks for through its owner
    /// and admin lists (a list left out of the form stays as it is). Grants come
    /// first, so an owner list naming only new owners replaces the old ones without
    /// ever leaving the room ownerless; [`Room::admin_set`] applies the permission and
    /// last-owner rules.
    pub fn list_changes(&self, form: &Submitted) -> Result<Vec<AdminChange>, RoomError> {
        let given = |var: &str| -> Result<Option<BTreeSet<String>>, RoomError> {
            let Some((_, values)) = form.fields.iter().find(|(v, _)| v == var) else {
                return Ok(None);
            };
            values
                .iter()
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(|v| {
                    jid::BareJid::new(v)
                        .map(|j| j.to_string())
                        .map_err(|_| RoomError::with_text(Condition::JidMalformed, v.to_string()))
                })
                .collect::<Result<BTreeSet<_>, _>>()
                .map(Some)
        };
        let current = |aff: Affiliation| -> BTreeSet<String> {
            self.affiliations()
                .filter(|(_, a)| *a == aff)
                .map(|(j, _)| j.to_string())
                .collect()
        };
        let owners = given(ROOMOWNERS)?.unwrap_or_else(|| current(Affiliation::Owner));
        let admins = given(ROOMADMINS)?.unwrap_or_else(|| current(Affiliation::Admin));
        let mut touched: BTreeSet<String> = owners.union(&admins).cloned().collect();
        touched.extend(current(Affiliation::Owner));
        touched.extend(current(Affiliation::Admin));
        let (mut grants, mut revokes) = (Vec::new(), Vec::new());
        for jid in touched {
            let now = self
                .affiliations
                .get(&jid)
                .copied()
                .unwrap_or(Affiliation::None);
            let wanted = if owners.contains(&jid) {
                Affiliation::Owner
            } else if admins.contains(&jid) {
                Affiliation::Admin
            } else {
                Affiliation::None
            };
            if wanted == now {
                continue;
            }
            let change = AdminChange::Affiliation {
                jid,
                affiliation: wanted,
                reason: None,
            };
            if wanted > now {
                grants.push(change);
            } else {
                revokes.push(change);
            }
        }
        grants.extend(revokes);
        Ok(grants)
    }
}
