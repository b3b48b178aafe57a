//! A room's state: configuration, affiliations, occupants (with their sessions), subject
//! and history, plus the presence stanzas that describe occupants to each other.
//!
//! The room logic is synchronous and returns the stanzas to send ([`Outbox`]); the
//! service ([`super::service`]) asks the room policy between the checks and the changes,
//! routes the stanzas and persists the room. Joining, leaving and nickname changes are in
//! [`super::join`], messages in [`super::message`], moderation in [`super::moderation`]
//! and owner operations in [`super::owner`].

use std::collections::BTreeMap;

use super::config::{RoomConfig, Whois};
use super::history::History;
use super::ns::{MUC_USER, status};
use super::types::{Affiliation, Role};
use crate::stanza::Condition;
use crate::storage::RoomLogEntry;

use crate::xml::{Element, ns};

/// Stanzas a room operation produced, in sending order.
pub type Outbox = Vec<Element>;

/// Why the room refused an operation: the stanza error to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {}", condition.name(), text.as_deref().unwrap_or(""))]
pub struct RoomError {
    pub condition: Condition,
    pub text: Option<String>,
}

impl RoomError {
    pub fn new(condition: Condition) -> RoomError {
        RoomError {
            condition,
            text: None,
        }
    }

    pub fn with_text(condition: Condition, text: impl Into<String>) -> RoomError {
        RoomError {
            condition,
            text: Some(text.into()),
        }
    }
}

/// Limits from the tenant's MUC settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomLimits {
    pub history_length: usize,
    pub max_nick_length: usize,
    /// Entries the affiliation list may hold (0: unlimited).
    pub max_affiliations: usize,
    /// Lines the room's public log keeps (0: logging cannot be turned on).
    pub max_log_messages: usize,
}

/// One occupant: a nickname held by one user (bare JID), possibly from several sessions
/// (multi-session nicks).
#[derive(Debug, Clone)]
pub struct Occupant {
    pub nick: String,
    /// The user's bare JID.
    pub bare: String,
    /// Full JIDs of the user's sessions in the room, in join order.
    pub sessions: Vec<String>,
    pub role: Role,
    pub affiliation: Affiliation,
    /// The occupant's last available presence (show, status, ...), without addresses and
    /// MUC payloads.
    pub presence: Element,
}

/// The subject and who set it (a nickname, or empty for the room itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub text: String,
    pub by: String,
}

/// How an occupant left, for the unavailable presence others see.
#[derive(Debug, Clone, Default)]
pub struct Departure<'a> {
    pub statuses: Vec<u16>,
    pub actor: Option<&'a str>,
    pub reason: Option<&'a str>,
    /// `<destroy/>` payload when the room is destroyed.
    pub destroy: Option<Element>,
}

/// A multi-user chat room.
#[derive(Debug, Clone)]
pub struct Room {
    /// The room's bare JID (`standup@conference.example.com`).
    pub jid: String,
    pub config: RoomConfig,
    pub(super) affiliations: BTreeMap<String, Affiliation>,
    /// Occupants in join order.
    pub(super) occupants: Vec<Occupant>,
    pub subject: Option<Subject>,
    pub history: History,
    /// Created but not configured yet: only owners may enter (XEP-0045 §10.1.1).
    pub locked: bool,
    /// Removed from its service; a task holding it must look the room up again.
    pub destroyed: bool,
    /// Changed in a way storage must see (configuration, affiliations, subject).
    pub dirty: bool,
    pub limits: RoomLimits,
    /// Lines for the public log (logging on), written by the service after the
    /// operation that produced them.
    pub(super) log_pending: Vec<RoomLogEntry>,
    /// Messages for the room's archive (XEP-0313), written by the service like the log.
    pub(super) archive_pending: Vec<crate::storage::ArchivedMessage>,
    /// Bare JIDs that are owners of every room (the tenant's MUC admins).
    pub service_admins: Vec<String>,
    /// iq requests relayed between occupants, by the id sent on: (original id,
    /// requester's full JID, responder's nick).
    pub(super) relayed_iqs: BTreeMap<String, (String, String, String)>,
}

impl Room {
    pub fn new(jid: String, config: RoomConfig, limits: RoomLimits) -> Room {
        Room {
            jid,
            config,
            affiliations: BTreeMap::new(),
            occupants: Vec::new(),
            subject: None,
            history: History::new(limits.history_length),
            locked: false,
            destroyed: false,
            dirty: false,
            limits,
            log_pending: Vec::new(),
            archive_pending: Vec::new(),
            service_admins: Vec::new(),
            relayed_iqs: BTreeMap::new(),
        }
    }

    /// True when messages and subject changes go to the public log: the owner turned
    /// logging on and the tenant keeps room logs.
    pub fn is_logged(&self) -> bool {
        self.config.logging && self.limits.max_log_messages > 0
    }

    /// Refuses a configuration that turns logging on where the tenant keeps no room logs.
    pub fn check_config(&self, new: &RoomConfig) -> Result<(), RoomError> {
        if new.logging && !self.config.logging && self.limits.max_log_messages == 0 {
            return Err(RoomError::with_text(
                Condition::NotAcceptable,
                "this service keeps no room logs",
            ));
        }
        Ok(())
    }

    /// The messages waiting to be archived.
    pub(super) fn take_archive_pending(&mut self) -> Vec<crate::storage::ArchivedMessage> {
        std::mem::take(&mut self.archive_pending)
    }

    /// Whether `actor` may read the room's archive: like reading the room itself —
    /// occupants, and in members-only rooms members and above; nobody banned; in an open
    /// room without a password anyone who could walk in.
    pub fn may_read_archive(&self, actor: &super::moderation::Actor) -> bool {
        if actor.affiliation == Affiliation::Outcast {
            return false;
        }
        if actor.nick.is_some() || actor.affiliation >= Affiliation::Member {
            return true;
        }
        !self.config.members_only && self.config.password.is_none()
    }

    /// The lines waiting to be written to the public log.
    pub(super) fn take_log_pending(&mut self) -> Vec<RoomLogEntry> {
        std::mem::take(&mut self.log_pending)
    }

    /// The room's localpart.
    pub fn name(&self) -> &str {
        self.jid.split('@').next().unwrap_or("")
    }

    /// Occupant JID of a nickname (`room@service/nick`).
    pub fn occupant_jid(&self, nick: &str) -> String {
        format!("{}/{nick}", self.jid)
    }

    /// The stored affiliation of a bare JID (service admins are owners).
    pub fn affiliation(&self, bare: &str) -> Affiliation {
        if self.service_admins.iter().any(|a| a == bare) {
            return Affiliation::Owner;
        }
        self.affiliations
            .get(bare)
            .copied()
            .unwrap_or(Affiliation::None)
    }

    /// Affiliations other than `none`, sorted by JID.
    pub fn affiliations(&self) -> impl Iterator<Item = (&str, Affiliation)> {
        self.affiliations.iter().map(|(j, a)| (j.as_str(), *a))
    }

    /// Refuses a new entry in a full affiliation list (`max_affiliations`); changing
    /// or removing an entry is always possible.
    pub fn check_affiliation_room(&self, bare: &str, aff: Affiliation) -> Result<(), RoomError> {
        let max = self.limits.max_affiliations;
        if aff == Affiliation::None
            || max == 0
            || self.affiliations.contains_key(bare)
            || self.affiliations.len() < max
        {
            return Ok(());
        }
        Err(RoomError::with_text(
            Condition::NotAllowed,
            format!("the room's affiliation list is full ({max} entries)"),
        ))
    }

    /// Sets a stored affiliation (`none` removes it).
    pub(super) fn store_affiliation(&mut self, bare: &str, aff: Affiliation) {
        if aff == Affiliation::None {
            self.affiliations.remove(bare);
        } else {
            self.affiliations.insert(bare.to_string(), aff);
        }
        self.dirty = true;
    }

    pub fn occupants(&self) -> &[Occupant] {
        &self.occupants
    }

    /// Number of occupants (nicknames, not sessions).
    pub fn occupant_count(&self) -> usize {
        self.occupants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.occupants.is_empty()
    }

    pub fn by_nick(&self, nick: &str) -> Option<&Occupant> {
        self.occupants.iter().find(|o| o.nick == nick)
    }

    /// The occupant a full JID is a session of.
    pub fn by_session(&self, full: &str) -> Option<&Occupant> {
        self.occupants
            .iter()
            .find(|o| o.sessions.iter().any(|s| s == full))
    }

    pub(super) fn index_of_nick(&self, nick: &str) -> Option<usize> {
        self.occupants.iter().position(|o| o.nick == nick)
    }

    pub(super) fn index_of_session(&self, full: &str) -> Option<usize> {
        self.occupants
            .iter()
            .position(|o| o.sessions.iter().any(|s| s == full))
    }

    /// Occupants holding `bare`'s nick(s).
    pub(super) fn indexes_of_bare(&self, bare: &str) -> Vec<usize> {
        (0..self.occupants.len())
            .filter(|&i| self.occupants[i].bare == bare)
            .collect()
    }

    /// True if `viewer` may see other occupants' real JIDs.
    pub fn sees_jids(&self, viewer: &Occupant) -> bool {
        self.config.whois == Whois::Anyone || viewer.role == Role::Moderator
    }

    /// The default role of a user with `aff` entering this room.
    pub fn default_role(&self, aff: Affiliation) -> Role {
        match aff {
            Affiliation::Owner | Affiliation::Admin => Role::Moderator,
            Affiliation::Member => Role::Participant,
            Affiliation::None if self.config.moderated => Role::Visitor,
            Affiliation::None => Role::Participant,
            Affiliation::Outcast => Role::None,
        }
    }

    /// `<x xmlns='…muc#user'><item …/>statuses</x>` describing `occ` to a viewer.
    fn user_x(
        &self,
        occ: &Occupant,
        role: Role,
        show_jid: bool,
        statuses: &[u16],
        item_extra: impl FnOnce(&mut Element),
    ) -> Element {
        let mut item = Element::new("item", MUC_USER)
            .with_attr("affiliation", occ.affiliation.as_str())
            .with_attr("role", role.as_str());
        if show_jid {
            item.set_attr("jid", occ.sessions.first().cloned().unwrap_or_default());
        }
        item_extra(&mut item);
        let mut x = Element::new("x", MUC_USER).with_child(item);
        for s in statuses {
            x.push_child(Element::new("status", MUC_USER).with_attr("code", s.to_string()));
        }
        x
    }

    /// The available presence of `occ` for the session `to` of `viewer`.
    pub(super) fn presence_of(
        &self,
        occ: &Occupant,
        viewer: &Occupant,
        to: &str,
        extra_statuses: &[u16],
    ) -> Element {
        let own = viewer.bare == occ.bare && viewer.nick == occ.nick;
        let mut statuses = Vec::new();
        if own {
            statuses.push(status::SELF);
        }
        statuses.extend_from_slice(extra_statuses);
        let mut p = occ.presence.clone();
        p.set_attr("from", self.occupant_jid(&occ.nick));
        p.set_attr("to", to);
        let x = self.user_x(
            occ,
            occ.role,
            own || self.sees_jids(viewer),
            &statuses,
            |_| {},
        );
        p.push_child(x);
        p
    }

    /// The unavailable presence of `occ` (leaving, kicked, banned, nick change, destroy)
    /// for the session `to` of `viewer`.
    pub(super) fn unavailable_of(
        &self,
        occ: &Occupant,
        viewer: &Occupant,
        to: &str,
        how: &Departure<'_>,
        new_nick: Option<&str>,
    ) -> Element {
        let own = viewer.bare == occ.bare && viewer.nick == occ.nick;
        let mut statuses = Vec::new();
        if own {
            statuses.push(status::SELF);
        }
        statuses.extend_from_slice(&how.statuses);
        let role = if new_nick.is_some() {
            occ.role
        } else {
            Role::None
        };
        let mut x = self.user_x(
            occ,
            role,
            own || self.sees_jids(viewer),
            &statuses,
            |item| {
                if let Some(n) = new_nick {
                    item.set_attr("nick", n);
                }
                if let Some(a) = how.actor {
                    item.push_child(Element::new("actor", MUC_USER).with_attr("nick", a));
                }
                if let Some(r) = how.reason {
                    item.push_child(Element::new("reason", MUC_USER).with_text(r));
                }
            },
        );
        if let Some(d) = &how.destroy {
            x.push_child(d.clone());
        }
        Element::new("presence", ns::CLIENT)
            .with_attr("from", self.occupant_jid(&occ.nick))
            .with_attr("to", to)
            .with_attr("type", "unavailable")
            .with_child(x)
    }

    /// `occ`'s current presence to every session of every occupant.
    pub(super) fn broadcast_presence(&self, occ: &Occupant, out: &mut Outbox) {
        for viewer in &self.occupants {
            for s in &viewer.sessions {
                out.push(self.presence_of(occ, viewer, s, &[]));
            }
        }
    }

    /// Removes the occupant at `idx` entirely, telling everyone (itself included) how it
    /// left.
    pub(super) fn remove_occupant(&mut self, idx: usize, how: &Departure<'_>, out: &mut Outbox) {
        let occ = self.occupants[idx].clone();
        for viewer in &self.occupants {
            for s in &viewer.sessions {
                out.push(self.unavailable_of(&occ, viewer, s, how, None));
            }
        }
        self.occupants.remove(idx);
    }

    /// A message from the room itself to every session.
    pub(super) fn broadcast_from_room(&self, payload: &Element, out: &mut Outbox) {
        for viewer in &self.occupants {
            for s in &viewer.sessions {
                let mut m = payload.clone();
                m.set_attr("from", self.jid.clone());
                m.set_attr("to", s.clone());
                out.push(m);
            }
        }
    }

    /// The subject message for one session (an empty `<subject/>` when none is set, as
    /// XEP-0045 §7.2.15 asks).
    pub(super) fn subject_message(&self, to: &str) -> Element {
        let (from, text) = match &self.subject {
            Some(s) if !s.by.is_empty() => (self.occupant_jid(&s.by), s.text.clone()),
            Some(s) => (self.jid.clone(), s.text.clone()),
            None => (self.jid.clone(), String::new()),
        };
        Element::new("message", ns::CLIENT)
            .with_attr("from", from)
            .with_attr("to", to)
            .with_attr("type", "groupchat")
            .with_attr("id", crate::muc::new_id())
            .with_child(Element::new("subject", ns::CLIENT).with_text(text))
    }

    /// Real JID of a user for items (`jid` attributes of lists).
    pub fn occupants_of(&self, bare: &str) -> impl Iterator<Item = &Occupant> {
        self.occupants.iter().filter(move |o| o.bare == bare)
    }
}

/// The role an occupant's affiliation change leads to, or `None` if it must leave.
pub(super) fn role_after(room: &Room, aff: Affiliation, current: Role) -> Option<Role> {
    match aff {
        Affiliation::Outcast => None,
        Affiliation::None if room.config.members_only => None,
        Affiliation::Owner | Affiliation::Admin => Some(Role::Moderator),
        // Losing admin/owner loses moderation; members keep their voice.
        _ if current == Role::Moderator => Some(room.default_role(aff)),
        Affiliation::Member if current == Role::Visitor => Some(Role::Participant),
        _ => Some(current),
    }
}
