//! Entering and leaving a room (XEP-0045 §7.2, §7.6, §7.14): admission checks in the
//! XEP's order, the presences and status codes a joiner and the others get, discussion
//! history and subject on join, presence updates, nickname changes and departures.

use std::time::SystemTime;

use super::history::HistoryRequest;
use super::ns::{MUC, MUC_USER, status};
use super::room::{Departure, Occupant, Outbox, Room, RoomError};
use super::types::{Affiliation, Role};
use crate::stanza::Condition;
use crate::xml::{Element, ns};

/// What admission decided for a join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// A new occupant with this role and affiliation (before the room policy).
    New {
        role: Role,
        affiliation: Affiliation,
    },
    /// Another session of the user already holding this nick (multi-session nick).
    ExtraSession,
}

/// A join as the client sent it.
#[derive(Debug, Clone)]
pub struct JoinRequest<'a> {
    /// The joining session's full JID.
    pub from: &'a str,
    /// Its bare JID.
    pub bare: &'a str,
    pub nick: &'a str,
    /// The service changed the nickname the client asked for ([`normalize_nick`]):
    /// the joiner's own presence carries 210.
    pub nick_rewritten: bool,
    /// The join presence (with its `<x xmlns='…muc'/>`).
    pub presence: &'a Element,
}

impl JoinRequest<'_> {
    /// The password given in `<x><password/></x>`.
    pub fn password(&self) -> Option<String> {
        self.presence
            .child("x", MUC)
            .and_then(|x| x.child_text("password", MUC))
    }

    /// The `<history/>` limits asked for.
    pub fn history(&self) -> HistoryRequest {
        HistoryRequest::parse(self.presence.child("x", MUC))
    }
}

/// The nickname the service binds for the one a client asked for: surrounding
/// whitespace goes and inner runs of whitespace become one space, so `"Dave  Smith "`
/// and `"Dave Smith"` cannot be two occupants that look the same. (resourceprep has
/// already been applied when the session routed the stanza.) A joiner whose nick
/// changed gets 210.
pub fn normalize_nick(asked: &str) -> String {
    asked.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The presence an occupant shows in the room: the client's presence without addresses,
/// type, id and MUC payloads.
pub fn stored_presence(presence: &Element) -> Element {
    let mut p = Element::new("presence", ns::CLIENT);
    for c in presence.children() {
        if c.ns() != MUC && c.ns() != MUC_USER {
            p.push_child(c.clone());
        }
    }
    p
}

impl Room {
    /// Checks a nickname against the room's limits.
    pub fn check_nick(&self, nick: &str) -> Result<(), RoomError> {
        if nick.trim().is_empty() {
            return Err(RoomError::with_text(
                Condition::JidMalformed,
                "a nickname is required",
            ));
        }
        if nick.chars().count() > self.limits.max_nick_length {
            return Err(RoomError::with_text(
                Condition::NotAcceptable,
                format!(
                    "nicknames are limited to {} characters",
                    self.limits.max_nick_length
                ),
            ));
        }
        Ok(())
    }

    /// XEP-0045's own rules for a join: nickname, bans, lock, members-only, password,
    /// nickname conflicts and the occupant limit.
    pub fn admit(&self, req: &JoinRequest<'_>) -> Result<Admission, RoomError> {
        self.check_nick(req.nick)?;
        let aff = self.affiliation(req.bare);
        if aff == Affiliation::Outcast {
            return Err(RoomError::with_text(
                Condition::Forbidden,
                "you are banned from this room",
            ));
        }
        if self.locked && aff != Affiliation::Owner {
            return Err(RoomError::with_text(
                Condition::ItemNotFound,
                "the room is not configured yet",
            ));
        }
        if let Some(existing) = self.by_nick(req.nick) {
            if existing.bare == req.bare {
                return Ok(Admission::ExtraSession);
            }
            return Err(RoomError::with_text(
                Condition::Conflict,
                "that nickname is in use",
            ));
        }
        if self.config.members_only && aff < Affiliation::Member {
            return Err(RoomError::with_text(
                Condition::RegistrationRequired,
                "the room is members-only",
            ));
        }
        if let Some(pw) = &self.config.password
            && aff < Affiliation::Owner
            && req.password().as_deref() != Some(pw.as_str())
        {
            return Err(RoomError::with_text(
                Condition::NotAuthorized,
                "a password is required",
            ));
        }
        let max = self.config.max_users as usize;
        if max > 0 && self.occupant_count() >= max && aff < Affiliation::Admin {
            return Err(RoomError::with_text(
                Condition::ServiceUnavailable,
                "the room is full",
            ));
        }
        Ok(Admission::New {
            role: self.default_role(aff),
            affiliation: aff,
        })
    }

    /// Adds a new occupant and produces what everyone sees: the joiner gets the others'
    /// presence, its own (110, plus 100 in non-anonymous rooms and 201 for a new room),
    /// the history and the subject; the others get the joiner's presence.
    pub fn enter(
        &mut self,
        req: &JoinRequest<'_>,
        role: Role,
        affiliation: Affiliation,
        created: bool,
        now: SystemTime,
    ) -> Outbox {
        let occ = Occupant {
            nick: req.nick.to_string(),
            bare: req.bare.to_string(),
            sessions: vec![req.from.to_string()],
            role,
            affiliation,
            presence: stored_presence(req.presence),
        };
        let mut out = Outbox::new();
        for other in &self.occupants {
            out.push(self.presence_of(other, &occ, req.from, &[]));
        }
        for viewer in &self.occupants {
            for s in &viewer.sessions {
                out.push(self.presence_of(&occ, viewer, s, &[]));
            }
        }
        self.occupants.push(occ.clone());
        self.welcome(&occ, req, created, now, &mut out);
        out
    }

    /// Adds another session of the user holding `req.nick`: that session gets the same
    /// welcome as a new occupant; the others see no change.
    pub fn add_session(&mut self, req: &JoinRequest<'_>, now: SystemTime) -> Outbox {
        let mut out = Outbox::new();
        let Some(idx) = self.index_of_nick(req.nick) else {
            return out;
        };
        if !self.occupants[idx].sessions.iter().any(|s| s == req.from) {
            self.occupants[idx].sessions.push(req.from.to_string());
        }
        let occ = self.occupants[idx].clone();
        for other in self.occupants.iter().filter(|o| o.nick != occ.nick) {
            out.push(self.presence_of(other, &occ, req.from, &[]));
        }
        self.welcome(&occ, req, false, now, &mut out);
        out
    }

    /// Own presence, history and subject for a session that just entered.
    fn welcome(
        &self,
        occ: &Occupant,
        req: &JoinRequest<'_>,
        created: bool,
        now: SystemTime,
        out: &mut Outbox,
    ) {
        let mut statuses = Vec::new();
        if self.config.whois == super::config::Whois::Anyone {
            statuses.push(status::NON_ANONYMOUS);
        }
        if created {
            statuses.push(status::CREATED);
        }
        if self.is_logged() {
            statuses.push(status::LOGGING_ENABLED);
        }
        if req.nick_rewritten {
            statuses.push(status::NICK_REWRITTEN);
        }
        out.push(self.presence_of(occ, occ, req.from, &statuses));
        out.extend(
            self.history
                .replay(&req.history(), now, &self.jid, req.from),
        );
        out.push(self.subject_message(req.from));
    }

    /// A new available presence from a session in the room: broadcast it.
    pub fn update_presence(&mut self, full: &str, presence: &Element) -> Outbox {
        let mut out = Outbox::new();
        if let Some(idx) = self.index_of_session(full) {
            self.occupants[idx].presence = stored_presence(presence);
            let occ = self.occupants[idx].clone();
            self.broadcast_presence(&occ, &mut out);
        }
        out
    }

    /// A session leaves. The occupant leaves with its last session (everyone sees it);
    /// another session of a multi-session nick just gets its own unavailable presence.
    pub fn leave(&mut self, full: &str, status_text: Option<&str>) -> Outbox {
        let mut out = Outbox::new();
        let Some(idx) = self.index_of_session(full) else {
            return out;
        };
        let occ = &self.occupants[idx];
        let how = Departure::default();
        let notice = |p: &mut Element| {
            if let Some(t) = status_text {
                p.push_child(Element::new("status", ns::CLIENT).with_text(t));
            }
        };
        if occ.sessions.len() > 1 {
            let mut p = self.unavailable_of(occ, occ, full, &how, None);
            notice(&mut p);
            out.push(p);
            self.occupants[idx].sessions.retain(|s| s != full);
            return out;
        }
        let start = out.len();
        self.remove_occupant(idx, &how, &mut out);
        for p in &mut out[start..] {
            notice(p);
        }
        out
    }

    /// Checks a nickname change by the session `full`; returns the occupant's index.
    pub fn check_nick_change(&self, full: &str, new_nick: &str) -> Result<usize, RoomError> {
        let idx = self
            .index_of_session(full)
            .ok_or_else(|| RoomError::new(Condition::NotAcceptable))?;
        self.check_nick(new_nick)?;
        if self.by_nick(new_nick).is_some() {
            return Err(RoomError::with_text(
                Condition::Conflict,
                "that nickname is in use",
            ));
        }
        Ok(idx)
    }

    /// Renames the occupant at `idx` (XEP-0045 §7.6): everyone sees it leave with 303
    /// and the new nick, then come back under the new nick.
    pub fn change_nick(&mut self, idx: usize, new_nick: &str) -> Outbox {
        let mut out = Outbox::new();
        let occ = self.occupants[idx].clone();
        let how = Departure {
            statuses: vec![status::NICK_CHANGED],
            ..Default::default()
        };
        for viewer in &self.occupants {
            for s in &viewer.sessions {
                out.push(self.unavailable_of(&occ, viewer, s, &how, Some(new_nick)));
            }
        }
        self.occupants[idx].nick = new_nick.to_string();
        if self.subject.as_ref().is_some_and(|s| s.by == occ.nick) {
            // The subject keeps its author's current name.
            if let Some(s) = &mut self.subject {
                s.by = new_nick.to_string();
            }
        }
        let renamed = self.occupants[idx].clone();
        self.broadcast_presence(&renamed, &mut out);
        out
    }
}

impl Room {
    /// An error bounced from the session `full` (its client or server is gone): the
    /// session leaves; the last session of an occupant takes it out of the room with
    /// 307 and 333 (XEP-0045 §17.3 ghost removal).
    pub fn drop_session(&mut self, full: &str) -> Outbox {
        let mut out = Outbox::new();
        let Some(idx) = self.index_of_session(full) else {
            return out;
        };
        if self.occupants[idx].sessions.len() > 1 {
            self.occupants[idx].sessions.retain(|s| s != full);
            return out;
        }
        let how = Departure {
            statuses: vec![status::KICKED, status::REMOVED_ERROR],
            ..Default::default()
        };
        self.remove_occupant(idx, &how, &mut out);
        out
    }
}
