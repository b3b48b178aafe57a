//! Voice requests (XEP-0045 §7.13, §8.6): a visitor in a moderated room submits a
//! `muc#request` form to the room; every moderator gets an approval form; a moderator
//! submitting it back with `muc#request_allow` true makes the visitor a participant.

use super::dataform::{self, Field, Submitted};
use super::moderation::AdminChange;
use super::room::{Outbox, Room, RoomError};
use super::types::Role;
use crate::stanza::Condition;
use crate::xml::{Element, ns};

pub const MUC_REQUEST: &str = "http://jabber.org/protocol/muc#request";

const ROLE: &str = "muc#role";
const JID: &str = "muc#jid";
const ROOMNICK: &str = "muc#roomnick";
const ALLOW: &str = "muc#request_allow";

/// A `muc#request` form found in a message to the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoiceForm {
    /// A visitor asks for voice.
    Request,
    /// A moderator answers the request of the occupant `nick`.
    Answer { nick: String, allow: bool },
}

impl VoiceForm {
    /// Reads a submitted `muc#request` form; `None` if the message has none. A request
    /// for anything but the participant role is a bad request.
    pub fn parse(msg: &Element) -> Option<Result<VoiceForm, RoomError>> {
        let x = msg.child("x", ns::DATA_FORMS)?;
        let form = Submitted::parse(x);
        if form.form_type() != Some(MUC_REQUEST) {
            return None;
        }
        let bad = |t: &str| Err(RoomError::with_text(Condition::BadRequest, t));
        if form.kind != "submit" {
            return Some(bad("a voice request form must be submitted"));
        }
        let value = |var: &str| {
            form.fields
                .iter()
                .find(|(v, _)| v == var)
                .and_then(|(_, vals)| vals.first())
                .map(|v| v.trim().to_string())
        };
        if let Some(allow) = value(ALLOW) {
            let Some(nick) = value(ROOMNICK).filter(|n| !n.is_empty()) else {
                return Some(bad("the answer names no muc#roomnick"));
            };
            let allow = match allow.as_str() {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => return Some(bad("muc#request_allow is not a boolean")),
            };
            return Some(Ok(VoiceForm::Answer { nick, allow }));
        }
        match value(ROLE).as_deref() {
            None | Some("participant") => Some(Ok(VoiceForm::Request)),
            Some(_) => Some(bad("only voice (the participant role) can be requested")),
        }
    }
}

impl Room {
    /// A voice request from the session `full`: every moderator's sessions get the
    /// approval form. Occupants who already have voice are not asked about.
    pub fn request_voice(&self, full: &str) -> Result<Outbox, RoomError> {
        let requester = self.by_session(full).ok_or_else(|| {
            RoomError::with_text(Condition::NotAcceptable, "you are not in the room")
        })?;
        if requester.role != Role::Visitor {
            return Ok(Outbox::new());
        }
        let fields = [
            Field::new(ROLE, "list-single", "participant")
                .labelled("Requested role")
                .with_options(&[("Participant", "participant")]),
            Field::new(JID, "jid-single", full).labelled("User ID"),
            Field::new(ROOMNICK, "text-single", requester.nick.clone()).labelled("Room nickname"),
            Field::new(ALLOW, "boolean", "false").labelled("Grant voice to this person?"),
        ];
        let form = dataform::form("form", MUC_REQUEST, Some("Voice request"), &fields);
        let body = format!(
            "{} asks for voice in {}: submit the form to grant it",
            requester.nick, self.jid
        );
        let mut out = Outbox::new();
        for m in self.occupants.iter().filter(|o| o.role == Role::Moderator) {
            for s in &m.sessions {
                out.push(
                    Element::new("message", ns::CLIENT)
                        .with_attr("from", self.jid.clone())
                        .with_attr("to", s.clone())
                        .with_attr("id", crate::muc::new_id())
                        .with_child(form.clone())
                        .with_child(Element::new("body", ns::CLIENT).with_text(body.clone())),
                );
            }
        }
        Ok(out)
    }

    /// A moderator's answer (from the session `full`) to the voice request of `nick`:
    /// approval makes a visitor a participant, as a role change by that moderator would.
    pub fn answer_voice_request(
        &mut self,
        full: &str,
        nick: &str,
        allow: bool,
    ) -> Result<Outbox, RoomError> {
        let actor = self.actor_for(full);
        if actor.role != Role::Moderator {
            return Err(RoomError::with_text(
                Condition::Forbidden,
                "only moderators may answer voice requests",
            ));
        }
        let target = self
            .by_nick(nick)
            .ok_or_else(|| RoomError::with_text(Condition::ItemNotFound, "no such occupant"))?;
        if !allow || target.role != Role::Visitor {
            return Ok(Outbox::new());
        }
        self.admin_set(
            &actor,
            &[AdminChange::Role {
                nick: nick.to_string(),
                role: Role::Participant,
                reason: None,
            }],
        )
    }
}
