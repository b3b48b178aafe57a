//! Stanza dispatch of a MUC service: by address (the service, a room, an occupant) and
//! kind, with the room policy asked at its decision points after XEP-0045's own rules.

use std::sync::Arc;

use super::config::ROOMCONFIG;
use super::dataform::Submitted;
use super::join::{Admission, JoinRequest};
use super::message::{Groupchat, Mediated};
use super::moderation::AdminChange;
use super::ns::{MUC, MUC_ADMIN, MUC_OWNER};
use super::policy::{self, Decision, JoinDecision, MessageDecision, OccupantFacts};
use super::room::{Outbox, Room, RoomError};
use super::service::{MucService, now};
use super::settings::RoomCreation;
use super::types::{Affiliation, Role};
use super::voice::VoiceForm;
use crate::stanza::{self, Condition};
use crate::xml::{Element, ns};
use heliograph_core::Core;
use tokio::sync::OwnedMutexGuard;

/// Handles one stanza addressed to the service or a JID on it.
pub async fn handle(service: &Arc<MucService>, core: &Arc<Core>, stanza: Element) {
    let (Some(from), Some(to)) = (stanza.attr("from"), stanza.attr("to")) else {
        return;
    };
    let (Ok(from_jid), Ok(to_jid)) = (jid::Jid::new(from), jid::Jid::new(to)) else {
        return;
    };
    let from = from_jid.to_string();
    let room = to_jid.node().map(|n| n.to_string());
    let asked = to_jid.resource().map(|r| r.to_string());
    let nick = asked.as_deref().map(super::join::normalize_nick);
    let nick_rewritten = nick != asked;
    let result = match (stanza.name(), room, nick) {
        ("iq", None, _) => service_iq(service, core, &stanza).await,
        ("message", None, _) => Err(RoomError::new(Condition::ServiceUnavailable)),
        ("presence", None, _) => Ok(()),
        ("presence", Some(room), Some(nick)) => {
            let nick = Nick {
                name: &nick,
                rewritten: nick_rewritten,
            };
            presence(service, core, &room, nick, &from, &stanza).await
        }
        ("presence", Some(_), None) if stanza::stanza_type(&stanza).is_empty() => {
            Err(RoomError::with_text(
                Condition::JidMalformed,
                "join a room as room@service/nickname",
            ))
        }
        ("message", Some(room), nick) => {
            message(service, core, &room, nick.as_deref(), &from, &stanza).await
        }
        ("iq", Some(room), nick) => iq(service, core, &room, nick.as_deref(), &from, &stanza).await,
        _ => Ok(()),
    };
    if let Err(e) = result {
        let reply = stanza::error_reply(&stanza, e.condition, e.text.as_deref());
        if let Some(mut r) = reply {
            // XEP-0045 error presences carry the MUC marker (e.g. §7.6 nick change),
            // which clients use to tell room errors from other presence errors.
            if r.name() == "presence" && !r.has_child("x", MUC) {
                r.push_child(crate::xml::Element::new("x", MUC));
            }
            service.send(core, vec![r]).await;
        }
    }
}

/// Errors never get an answer; a `type='error'` stanza from a session in the room
/// means that session is gone.
async fn bounced(service: &MucService, core: &Arc<Core>, room: &str, from: &str) {
    if let Some(mut r) = service.lock_room(core, room).await {
        let out = r.drop_session(from);
        service.finish(core, r, out).await;
    }
}

fn occupant_facts(room: &Room, idx: usize) -> OccupantFacts {
    let o = &room.occupants()[idx];
    OccupantFacts {
        jid: o.sessions.first().cloned().unwrap_or_default(),
        nick: o.nick.clone(),
        role: o.role,
        affiliation: o.affiliation,
    }
}

/// The nickname of an occupant JID a presence went to.
#[derive(Clone, Copy)]
struct Nick<'a> {
    /// After resourceprep.
    name: &'a str,
    /// Differs from what the client sent.
    rewritten: bool,
}

async fn presence(
    service: &MucService,
    core: &Arc<Core>,
    room_name: &str,
    asked: Nick<'_>,
    from: &str,
    p: &Element,
) -> Result<(), RoomError> {
    let nick = asked.name;
    let kind = stanza::stanza_type(p);
    if kind == "error" {
        bounced(service, core, room_name, from).await;
        return Ok(());
    }
    if !matches!(kind, "" | "unavailable") {
        return Ok(());
    }
    let Some(mut room) = service.lock_room(core, room_name).await else {
        if kind == "unavailable" {
            return Ok(());
        }
        return create_and_join(service, core, room_name, asked, from, p).await;
    };
    let Some(idx) = room
        .occupants()
        .iter()
        .position(|o| o.sessions.iter().any(|s| s == from))
    else {
        if kind == "unavailable" {
            return Ok(());
        }
        return join(service, core, room, asked, from, p, false).await;
    };
    let out = if kind == "unavailable" {
        let text = p.child_text("status", ns::CLIENT);
        room.leave(from, text.as_deref())
    } else if room.occupants()[idx].nick != nick {
        room.check_nick_change(from, nick)?;
        let facts = service.facts(&room);
        let occ = occupant_facts(&room, idx);
        if let Decision::Deny { reason } =
            policy::decide_nick_change(core, &facts, &occ, nick).await
        {
            return Err(RoomError::with_text(Condition::NotAcceptable, reason));
        }
        room.change_nick(idx, nick)
    } else if p.has_child("x", MUC) {
        // A join from a session already in the room (a client that lost track of its
        // state): it gets the room again, everyone sees the presence.
        let bare = crate::router::route::bare(from);
        let req = JoinRequest {
            from,
            bare: &bare,
            nick,
            nick_rewritten: asked.rewritten,
            presence: p,
        };
        let mut out = room.update_presence(from, p);
        out.retain(|s| s.attr("to") != Some(from));
        out.extend(room.add_session(&req, now()));
        out
    } else {
        room.update_presence(from, p)
    };
    service.finish(core, room, out).await;
    Ok(())
}

/// A join to a room that does not exist: creation (XEP-0045 §10.1). A client that
/// speaks MUC (`<x xmlns='…muc'/>`) gets a locked room to configure (201); others get
/// an instant room.
async fn create_and_join(
    service: &MucService,
    core: &Arc<Core>,
    room_name: &str,
    asked: Nick<'_>,
    from: &str,
    p: &Element,
) -> Result<(), RoomError> {
    let nick = asked.name;
    let settings = service
        .settings(core)
        .ok_or_else(|| RoomError::new(Condition::ServiceUnavailable))?;
    let bare = crate::router::route::bare(from);
    if settings.room_creation == RoomCreation::Admins && !settings.is_admin(&bare) {
        return Err(RoomError::with_text(
            Condition::NotAllowed,
            "only the service's admins may create rooms",
        ));
    }
    service
        .check_room_limit(core, &settings)
        .map_err(|t| RoomError::with_text(Condition::NotAllowed, t))?;
    service
        .check_owner_limit(core, &settings, &bare)
        .await
        .map_err(|t| RoomError::with_text(Condition::NotAllowed, t))?;
    let mut room = service.new_room(room_name, &settings);
    room.check_nick(nick)?;
    let facts = service.facts(&room);
    if let Decision::Deny { reason } = policy::decide_create(core, &facts, from).await {
        return Err(RoomError::with_text(Condition::Forbidden, reason));
    }
    room.store_affiliation(&bare, Affiliation::Owner);
    room.locked = p.has_child("x", MUC);
    match service.insert_room(room_name, room) {
        Some(guard) => {
            tracing::debug!(room = %guard.jid, creator = from, "room created");
            join(service, core, guard, asked, from, p, true).await
        }
        // Someone else created it meanwhile: join theirs.
        None => match service.lock_room(core, room_name).await {
            Some(guard) => join(service, core, guard, asked, from, p, false).await,
            None => Err(RoomError::new(Condition::ServiceUnavailable)),
        },
    }
}

async fn join(
    service: &MucService,
    core: &Arc<Core>,
    mut room: OwnedMutexGuard<Room>,
    asked: Nick<'_>,
    from: &str,
    p: &Element,
    created: bool,
) -> Result<(), RoomError> {
    let nick = asked.name;
    let bare = crate::router::route::bare(from);
    let req = JoinRequest {
        from,
        bare: &bare,
        nick,
        nick_rewritten: asked.rewritten,
        presence: p,
    };
    let admitted = room.admit(&req);
    let out = match admitted {
        Ok(Admission::ExtraSession) => room.add_session(&req, now()),
        Ok(Admission::New { role, affiliation }) => {
            let facts = service.facts(&room);
            let occ = OccupantFacts {
                jid: from.to_string(),
                nick: nick.to_string(),
                role,
                affiliation,
            };
            let (role, affiliation) = match policy::decide_join(core, &facts, &occ).await {
                JoinDecision::Default => (role, affiliation),
                JoinDecision::Allow {
                    role: r,
                    affiliation: a,
                } => (r.unwrap_or(role), a.unwrap_or(affiliation)),
                JoinDecision::Deny { reason } => {
                    service.finish(core, room, Outbox::new()).await;
                    return Err(RoomError::with_text(Condition::Forbidden, reason));
                }
            };
            if role == Role::None || affiliation == Affiliation::Outcast {
                service.finish(core, room, Outbox::new()).await;
                return Err(RoomError::with_text(
                    Condition::Forbidden,
                    "the room policy refused entry",
                ));
            }
            room.enter(&req, role, affiliation, created, now())
        }
        Err(e) => {
            // A room created for this join and refused goes away again (finish).
            service.finish(core, room, Outbox::new()).await;
            return Err(e);
        }
    };
    service.finish(core, room, out).await;
    Ok(())
}

async fn message(
    service: &MucService,
    core: &Arc<Core>,
    room_name: &str,
    nick: Option<&str>,
    from: &str,
    m: &Element,
) -> Result<(), RoomError> {
    if stanza::is_error(m) {
        bounced(service, core, room_name, from).await;
        return Ok(());
    }
    let mut room = service
        .lock_room(core, room_name)
        .await
        .ok_or_else(|| RoomError::new(Condition::ItemNotFound))?;
    let out = match nick {
        Some(nick) => room.private_message(from, nick, m)?,
        None if stanza::stanza_type(m) == "groupchat" => match room.check_groupchat(from, m)? {
            Groupchat::Subject { idx, text } => room.set_subject(idx, &text, now()),
            Groupchat::Message { idx } => {
                let body = m.child_text("body", ns::CLIENT);
                let replaced = match body {
                    Some(body) => {
                        let facts = service.facts(&room);
                        let occ = occupant_facts(&room, idx);
                        match policy::decide_message(core, &facts, &occ, &body).await {
                            MessageDecision::Allow => None,
                            MessageDecision::ReplaceBody(b) => Some(b),
                            MessageDecision::Deny { reason } => {
                                return Err(RoomError::with_text(Condition::NotAcceptable, reason));
                            }
                        }
                    }
                    None => None,
                };
                room.broadcast_message(idx, m, replaced.as_deref(), now())
            }
        },
        None if let Some(form) = VoiceForm::parse(m) => match form? {
            VoiceForm::Request => room.request_voice(from)?,
            VoiceForm::Answer { nick, allow } => room.answer_voice_request(from, &nick, allow)?,
        },
        None => {
            let mediated = Mediated::parse(m);
            if mediated.is_empty() {
                return Err(RoomError::with_text(
                    Condition::BadRequest,
                    "messages to the room must be of type groupchat",
                ));
            }
            let mut out = Outbox::new();
            for item in mediated {
                match item {
                    Mediated::Invite { to, reason } => {
                        out.extend(room.invite(from, &to, reason.as_deref())?)
                    }
                    Mediated::Decline { to, reason } => {
                        out.extend(room.decline(from, &to, reason.as_deref()))
                    }
                }
            }
            out
        }
    };
    service.finish(core, room, out).await;
    Ok(())
}

/// iq to the service itself: disco#info, disco#items (the public rooms) and ping.
async fn service_iq(service: &MucService, core: &Arc<Core>, iq: &Element) -> Result<(), RoomError> {
    if !matches!(stanza::stanza_type(iq), "get" | "set") {
        return Ok(());
    }
    let get = stanza::stanza_type(iq) == "get";
    let payload = iq
        .first_child()
        .ok_or_else(|| RoomError::new(Condition::BadRequest))?;
    let no_node = payload.attr("node").is_none();
    let reply = match (payload.name(), payload.ns(), get) {
        ("query", ns::DISCO_INFO, true) if no_node => {
            stanza::iq_result_with(iq, super::disco::service_info())
        }
        ("query", ns::DISCO_ITEMS, true) if no_node => {
            let rooms = service.public_rooms().await;
            stanza::iq_result_with(iq, super::disco::service_items(&rooms))
        }
        ("ping", ns::PING, true) => stanza::iq_result(iq),
        _ => return Err(RoomError::new(Condition::ServiceUnavailable)),
    };
    service.send(core, vec![reply]).await;
    Ok(())
}

async fn iq(
    service: &MucService,
    core: &Arc<Core>,
    room_name: &str,
    nick: Option<&str>,
    from: &str,
    iq: &Element,
) -> Result<(), RoomError> {
    let kind = stanza::stanza_type(iq);
    let request = matches!(kind, "get" | "set");
    let Some(mut room) = service.lock_room(core, room_name).await else {
        return if request {
            Err(RoomError::new(Condition::ItemNotFound))
        } else {
            Ok(())
        };
    };
    if let Some(nick) = nick {
        let out = if request {
            room.relay_iq_request(from, nick, iq)?
        } else {
            room.relay_iq_response(from, iq)
        };
        service.finish(core, room, out).await;
        return Ok(());
    }
    if !request {
        return Ok(());
    }
    let actor = room.actor_for(from);
    if room.locked && actor.affiliation != Affiliation::Owner {
        return Err(RoomError::new(Condition::ItemNotFound));
    }
    let payload = iq
        .first_child()
        .ok_or_else(|| RoomError::new(Condition::BadRequest))?;
    let get = kind == "get";
    let mut out = Outbox::new();
    match (payload.name(), payload.ns(), get) {
        ("query", ns::DISCO_INFO, true) if payload.attr("node").is_none() => {
            out.push(stanza::iq_result_with(iq, super::disco::room_info(&room)))
        }
        ("query", ns::DISCO_ITEMS, true) if payload.attr("node").is_none() => {
            out.push(stanza::iq_result_with(iq, super::disco::room_items()))
        }
        ("ping", ns::PING, true) => out.push(stanza::iq_result(iq)),
        ("query", ns::MAM, true) => out.push(stanza::iq_result_with(iq, crate::mam::query::form())),
        ("query", ns::MAM, false) => {
            if !room.may_read_archive(&actor) {
                return Err(RoomError::new(Condition::Forbidden));
            }
            let tenant = core.tenant_of(&service.tenant_domain);
            if !tenant
                .as_ref()
                .is_some_and(|t| t.spec.feature_enabled(crate::mam::FEATURE))
            {
                return Err(RoomError::new(Condition::ServiceUnavailable));
            }
            let max_page = tenant.map_or(0, |t| t.spec.archive.max_page as usize);
            let owner = service.archive_owner(room.name());
            let answer = crate::mam::query::run(core, &owner, &room.jid, iq, max_page)
                .await
                .map_err(RoomError::new)?;
            for m in answer.messages {
                out.push(m.with_attr("to", from));
            }
            out.push(answer.fin);
        }
        ("query", MUC_ADMIN, true) => {
            let list = room.admin_get(&actor, payload)?;
            out.push(stanza::iq_result_with(iq, list));
        }
        ("query", MUC_ADMIN, false) => {
            let changes = AdminChange::parse(payload)?;
            out = room.admin_set(&actor, &changes)?;
            out.push(stanza::iq_result(iq));
        }
        ("query", MUC_OWNER, true) => {
            room.check_owner(&actor)?;
            let form = room.config_form();
            out.push(stanza::iq_result_with(
                iq,
                Element::new("query", MUC_OWNER).with_child(form),
            ));
        }
        ("query", MUC_OWNER, false) => {
            room.check_owner(&actor)?;
            out = owner_set(service, core, &mut room, from, iq, payload).await?;
        }
        _ => return Err(RoomError::new(Condition::ServiceUnavailable)),
    }
    service.finish(core, room, out).await;
    Ok(())
}

/// `muc#owner` set: submit or cancel the configuration form, or destroy the room.
async fn owner_set(
    service: &MucService,
    core: &Arc<Core>,
    room: &mut Room,
    from: &str,
    iq: &Element,
    query: &Element,
) -> Result<Outbox, RoomError> {
    if let Some(d) = query.child("destroy", MUC_OWNER) {
        let reason = d.child_text("reason", MUC_OWNER);
        let mut out = room.destroy(d.attr("jid"), reason.as_deref());
        out.push(stanza::iq_result(iq));
        return Ok(out);
    }
    let x = query
        .child("x", ns::DATA_FORMS)
        .ok_or_else(|| RoomError::with_text(Condition::BadRequest, "expected a data form"))?;
    let form = Submitted::parse(x);
    match form.kind.as_str() {
        "cancel" => {
            let mut out = Outbox::new();
            if room.locked {
                out = room.destroy(None, None);
            }
            out.insert(0, stanza::iq_result(iq));
            Ok(out)
        }
        "submit" => {
            if form.form_type().is_some_and(|t| t != ROOMCONFIG) {
                return Err(RoomError::with_text(
                    Condition::BadRequest,
                    "not a muc#roomconfig form",
                ));
            }
            let new = room
                .config
                .with_form(&form)
                .map_err(|e| RoomError::with_text(Condition::NotAcceptable, e.to_string()))?;
            room.check_config(&new)?;
            let facts = service.facts(room);
            if let Decision::Deny { reason } =
                policy::decide_configure(core, &facts, from, &new.to_pairs(false)).await
            {
                return Err(RoomError::with_text(Condition::Forbidden, reason));
            }
            // The owner and admin lists: all or nothing, before the configuration.
            let changes = room.list_changes(&form)?;
            let mut out = vec![stanza::iq_result(iq)];
            if !changes.is_empty() {
                let actor = room.actor_for(from);
                out.extend(room.admin_set(&actor, &changes)?);
            }
            out.extend(room.apply_config(new));
            Ok(out)
        }
        _ => Err(RoomError::with_text(
            Condition::BadRequest,
            "unexpected form type",
        )),
    }
}
