//! Messages in a room: groupchat broadcast with history (XEP-0045 §7.4), subject
//! changes (§8.1), private messages and iq relayed between occupants (§7.5), self-ping
//! (XEP-0410), and mediated invitations and declines (§7.8.2, §7.8.3).

use std::time::SystemTime;

use super::config::AllowPm;
use super::ns::MUC_USER;
use super::room::{Outbox, Room, RoomError, Subject};
use super::types::{Affiliation, Role};
use crate::stanza::{self, Condition};
use crate::storage::RoomLogEntry;
use crate::xml::{Element, ns};

/// Relayed iq requests a room remembers at most (oldest are forgotten).
const MAX_RELAYED_IQS: usize = 256;

/// What a groupchat message from an occupant is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Groupchat {
    /// A message to broadcast (body, or chat states and the like without one).
    Message { idx: usize },
    /// A subject change (`<subject/>` without a body).
    Subject { idx: usize, text: String },
}

/// A mediated invitation or decline found in a message to the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mediated {
    Invite { to: String, reason: Option<String> },
    Decline { to: String, reason: Option<String> },
}

impl Mediated {
    /// The invitations and declines in `<x xmlns='…muc#user'>`.
    pub fn parse(msg: &Element) -> Vec<Mediated> {
        let Some(x) = msg.child("x", MUC_USER) else {
            return Vec::new();
        };
        x.children()
            .filter_map(|c| {
                let to = c.attr("to")?.to_string();
                let reason = c.child_text("reason", MUC_USER);
                match c.name() {
                    "invite" if c.ns() == MUC_USER => Some(Mediated::Invite { to, reason }),
                    "decline" if c.ns() == MUC_USER => Some(Mediated::Decline { to, reason }),
                    _ => None,
                }
            })
            .collect()
    }
}

impl Room {
    /// Checks a groupchat message from the session `full`.
    pub fn check_groupchat(&self, full: &str, msg: &Element) -> Result<Groupchat, RoomError> {
        let idx = self.index_of_session(full).ok_or_else(|| {
            RoomError::with_text(Condition::NotAcceptable, "you are not in the room")
        })?;
        let occ = &self.occupants[idx];
        let has_body = msg.has_child("body", ns::CLIENT);
        if let Some(subject) = msg.child("subject", ns::CLIENT)
            && !has_body
        {
            let allowed = occ.role == Role::Moderator
                || (self.config.change_subject && occ.role >= Role::Participant);
            if !allowed {
                return Err(RoomError::with_text(
                    Condition::Forbidden,
                    "you may not change the subject",
                ));
            }
            return Ok(Groupchat::Subject {
                idx,
                text: subject.text(),
            });
        }
        if occ.role < Role::Participant {
            return Err(RoomError::with_text(
                Condition::Forbidden,
                "you have no voice in this room",
            ));
        }
        Ok(Groupchat::Message { idx })
    }

    /// Broadcasts a checked groupchat message from the occupant at `idx`, with `body`
    /// replacing the original body if given, and records it in the history.
    pub fn broadcast_message(
        &mut self,
        idx: usize,
        msg: &Element,
        body: Option<&str>,
        now: SystemTime,
    ) -> Outbox {
        let mut m = msg.clone();
        if let Some(b) = body {
            m.remove_children("body", ns::CLIENT);
            m.push_child(Element::new("body", ns::CLIENT).with_text(b));
        }
        let nick = self.occupants[idx].nick.clone();
        m.set_attr("from", self.occupant_jid(&nick));
        m.remove_attr("to");
        self.archive(&mut m, nick);
        let mut out = Outbox::new();
        for viewer in &self.occupants {
            for s in &viewer.sessions {
                let mut copy = m.clone();
                copy.set_attr("to", s.clone());
                out.push(copy);
            }
        }
        if let Some(text) = m.child_text("body", ns::CLIENT) {
            self.history.push(&m, now);
            self.log(idx, false, text, now);
        }
        out
    }

    /// Stamps the room's XEP-0359 `<stanza-id/>` on a groupchat message with a body
    /// (after removing any the sender forged) and queues it for the room's archive.
    fn archive(&mut self, m: &mut Element, nick: String) {
        crate::mam::strip_stanza_ids(m, &self.jid);
        if !m.has_child("body", ns::CLIENT) || m.has_child("no-store", ns::HINTS) {
            return;
        }
        let id = crate::storage::ArchiveId::next();
        m.push_child(
            Element::new("stanza-id", ns::SID)
                .with_attr("id", id.to_string())
                .with_attr("by", self.jid.clone()),
        );
        self.archive_pending.push(crate::storage::ArchivedMessage {
            id,
            with: self.jid.clone(),
            with_resource: Some(nick),
            outgoing: false,
            origin_id: m
                .child("origin-id", ns::SID)
                .and_then(|o| o.attr("id"))
                .map(str::to_string),
            stanza: m.to_string_in(ns::CLIENT),
        });
    }

    /// Queues a line for the public log when the room is logged.
    fn log(&mut self, idx: usize, subject: bool, text: String, now: SystemTime) {
        if self.is_logged() {
            let occ = &self.occupants[idx];
            self.log_pending.push(RoomLogEntry {
                at: crate::time::xep82_millis(now),
                nick: occ.nick.clone(),
                jid: occ.bare.clone(),
                subject,
                text,
            });
        }
    }

    /// Sets the subject (by the occupant at `idx`) and tells everyone.
    pub fn set_subject(&mut self, idx: usize, text: &str, now: SystemTime) -> Outbox {
        self.log(idx, true, text.to_string(), now);
        let nick = self.occupants[idx].nick.clone();
        self.subject = (!text.is_empty()).then(|| Subject {
            text: text.to_string(),
            by: nick,
        });
        self.dirty = true;
        let mut out = Outbox::new();
        for viewer in &self.occupants {
            for s in &viewer.sessions {
                let mut m = self.subject_message(s);
                if self.subject.is_none() {
                    m.set_attr("from", self.occupant_jid(&self.occupants[idx].nick));
                }
                out.push(m);
            }
        }
        out
    }

    /// A private message (`chat` or `normal`) from the session `full` to `nick`.
    pub fn private_message(
        &self,
        full: &str,
        nick: &str,
        msg: &Element,
    ) -> Result<Outbox, RoomError> {
        if stanza::stanza_type(msg) == "groupchat" {
            return Err(RoomError::with_text(
                Condition::BadRequest,
                "groupchat messages go to the room's bare JID",
            ));
        }
        let sender = self.by_session(full).ok_or_else(|| {
            RoomError::with_text(Condition::NotAcceptable, "you are not in the room")
        })?;
        let allowed = match self.config.allow_pm {
            AllowPm::Anyone => true,
            AllowPm::Participants => sender.role >= Role::Participant,
            AllowPm::Moderators => sender.role == Role::Moderator,
            AllowPm::Nobody => false,
        };
        if !allowed {
            return Err(RoomError::with_text(
                Condition::Forbidden,
                "private messages are not allowed here",
            ));
        }
        let target = self
            .by_nick(nick)
            .ok_or_else(|| RoomError::new(Condition::ItemNotFound))?;
        let mut m = msg.clone();
        m.set_attr("from", self.occupant_jid(&sender.nick));
        if !m.has_child("x", MUC_USER) {
            m.push_child(Element::new("x", MUC_USER));
        }
        Ok(target
            .sessions
            .iter()
            .map(|s| {
                let mut copy = m.clone();
                copy.set_attr("to", s.clone());
                copy
            })
            .collect())
    }

    /// An iq request from the session `full` to the occupant `nick`: a self-ping
    /// (XEP-0410) is answered here; other requests go to the target's first session
    /// under a new id, so the response can find its way back.
    pub fn relay_iq_request(
        &mut self,
        full: &str,
        nick: &str,
        iq: &Element,
    ) -> Result<Outbox, RoomError> {
        let sender = self.by_session(full).ok_or_else(|| {
            RoomError::with_text(Condition::NotAcceptable, "you are not in the room")
        })?;
        if sender.nick == nick && iq.first_child().is_some_and(|c| c.is("ping", ns::PING)) {
            return Ok(vec![stanza::iq_result(iq)]);
        }
        let sender_nick = sender.nick.clone();
        let target = self
            .by_nick(nick)
            .ok_or_else(|| RoomError::new(Condition::ItemNotFound))?;
        let Some(to) = target.sessions.first().cloned() else {
            return Err(RoomError::new(Condition::ItemNotFound));
        };
        let id = crate::muc::new_id();
        if self.relayed_iqs.len() >= MAX_RELAYED_IQS
            && let Some(oldest) = self.relayed_iqs.keys().next().cloned()
        {
            self.relayed_iqs.remove(&oldest);
        }
        self.relayed_iqs.insert(
            id.clone(),
            (
                iq.attr("id").unwrap_or("").to_string(),
                full.to_string(),
                nick.to_string(),
            ),
        );
        let mut fwd = iq.clone();
        fwd.set_attr("id", id);
        fwd.set_attr("from", self.occupant_jid(&sender_nick));
        fwd.set_attr("to", to);
        Ok(vec![fwd])
    }

    /// The response (result or error) to a relayed iq, from the session `full`: goes
    /// back to the requester with the original id. Unknown ids are dropped.
    pub fn relay_iq_response(&mut self, full: &str, iq: &Element) -> Outbox {
        let Some(id) = iq.attr("id") else {
            return Outbox::new();
        };
        let Some((orig_id, requester, nick)) = self.relayed_iqs.get(id).cloned() else {
            return Outbox::new();
        };
        if self.by_session(full).is_none_or(|o| o.nick != nick) {
            return Outbox::new();
        }
        self.relayed_iqs.remove(id);
        let mut back = iq.clone();
        back.set_attr("id", orig_id);
        back.set_attr("from", self.occupant_jid(&nick));
        back.set_attr("to", requester);
        vec![back]
    }

    /// A mediated invitation from the session `full` (XEP-0045 §7.8.2). In a members-only
    /// room only admins may invite unless occupants are allowed to; the invitee becomes a
    /// member.
    pub fn invite(
        &mut self,
        full: &str,
        to: &str,
        reason: Option<&str>,
    ) -> Result<Outbox, RoomError> {
        let sender = self.by_session(full).ok_or_else(|| {
            RoomError::with_text(Condition::NotAcceptable, "you are not in the room")
        })?;
        if jid::Jid::new(to).is_err() {
            return Err(RoomError::new(Condition::JidMalformed));
        }
        let sender_bare = sender.bare.clone();
        let sender_aff = sender.affiliation.max(self.affiliation(&sender.bare));
        let to_bare = crate::router::route::bare(to);
        if self.config.members_only {
            if !self.config.allow_invites && sender_aff < Affiliation::Admin {
                return Err(RoomError::with_text(
                    Condition::Forbidden,
                    "only admins may invite to this room",
                ));
            }
            if self.affiliation(&to_bare) < Affiliation::Member {
                self.check_affiliation_room(&to_bare, Affiliation::Member)?;
                self.store_affiliation(&to_bare, Affiliation::Member);
            }
        }
        let mut invite = Element::new("invite", MUC_USER).with_attr("from", sender_bare.clone());
        if let Some(r) = reason {
            invite.push_child(Element::new("reason", MUC_USER).with_text(r));
        }
        let mut x = Element::new("x", MUC_USER).with_child(invite);
        if let Some(p) = &self.config.password {
            x.push_child(Element::new("password", MUC_USER).with_text(p.clone()));
        }
        let body = format!(
            "{sender_bare} invites you to the room {}{}",
            self.jid,
            reason.map(|r| format!(" ({r})")).unwrap_or_default()
        );
        let m = Element::new("message", ns::CLIENT)
            .with_attr("from", self.jid.clone())
            .with_attr("to", to)
            .with_attr("id", crate::muc::new_id())
            .with_child(x)
            .with_child(Element::new("body", ns::CLIENT).with_text(body));
        Ok(vec![m])
    }

    /// A declined invitation from `from` (any user), passed on to the inviter `to`.
    pub fn decline(&self, from: &str, to: &str, reason: Option<&str>) -> Outbox {
        let from_bare = crate::router::route::bare(from);
        let body = format!(
            "{from_bare} declined your invitation to {}{}",
            self.jid,
            reason.map(|r| format!(" ({r})")).unwrap_or_default()
        );
        let mut decline = Element::new("decline", MUC_USER).with_attr("from", from_bare);
        if let Some(r) = reason {
            decline.push_child(Element::new("reason", MUC_USER).with_text(r));
        }
        vec![
            Element::new("message", ns::CLIENT)
                .with_attr("from", self.jid.clone())
                .with_attr("to", to)
                .with_attr("id", crate::muc::new_id())
                .with_child(Element::new("x", MUC_USER).with_child(decline))
                .with_child(Element::new("body", ns::CLIENT).with_text(body)),
        ]
    }
}
