//! Tests of the room state machine: admission rules and their order, what joiners and
//! occupants see (status codes, real JIDs), moderation permissions, voice, subject,
//! nickname changes, history bounds, configuration changes, public logging, destruction
//! and iq relay.

use std::time::{Duration, SystemTime};

use super::config::{RoomConfig, Whois};
use super::join::{Admission, JoinRequest};
use super::message::Groupchat;
use super::moderation::{Actor, AdminChange};
use super::ns::MUC;
use super::room::{Outbox, Room, RoomLimits};
use super::types::{Affiliation, Role};
use crate::stanza::Condition;
use crate::xml::{Element, ns};

const ROOM: &str = "r@conference.a.test";

fn room() -> Room {
    let mut r = Room::new(
        ROOM.into(),
        RoomConfig::new(0),
        RoomLimits {
            history_length: 3,
            max_nick_length: 8,
            max_affiliations: 0,
            max_log_messages: 100,
        },
    );
    r.store_affiliation("owner@a.test", Affiliation::Owner);
    r
}

fn join_presence(password: Option<&str>) -> Element {
    let mut x = Element::new("x", MUC);
    if let Some(p) = password {
        x.push_child(Element::new("password", MUC).with_text(p));
    }
    Element::new("presence", ns::CLIENT)
        .with_child(Element::new("show", ns::CLIENT).with_text("away"))
        .with_child(x)
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)
}

/// Joins `user@a.test/res` as `nick`, applying the room's own admission decision.
fn try_join(
    room: &mut Room,
    user: &str,
    nick: &str,
    password: Option<&str>,
) -> Result<Outbox, Condition> {
    let full = format!("{user}@a.test/res");
    let bare = format!("{user}@a.test");
    let p = join_presence(password);
    let req = JoinRequest {
        from: &full,
        bare: &bare,
        nick,
        nick_rewritten: false,
        presence: &p,
    };
    match room.admit(&req).map_err(|e| e.condition)? {
        Admission::New { role, affiliation } => {
            Ok(room.enter(&req, role, affiliation, false, now()))
        }
        Admission::ExtraSession => Ok(room.add_session(&req, now())),
    }
}

fn join_ok(room: &mut Room, user: &str, nick: &str) -> Outbox {
    try_join(room, user, nick, None).unwrap()
}

fn statuses(p: &Element) -> Vec<u16> {
    p.child("x", super::ns::MUC_USER)
        .map(|x| {
            x.children()
                .filter(|c| c.name() == "status")
                .filter_map(|c| c.attr("code")?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn item(p: &Element) -> &Element {
    p.child("x", super::ns::MUC_USER)
        .and_then(|x| x.child("item", super::ns::MUC_USER))
        .expect("muc#user item")
}

fn to_from(out: &Outbox) -> Vec<(String, String)> {
    out.iter()
        .map(|s| {
            (
                s.attr("to").unwrap_or("").to_string(),
                s.attr("from").unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn joining_shows_others_then_self_then_subject_with_status_codes() {
    let mut r = room();
    let out = join_ok(&mut r, "owner", "Boss");
    // Own presence (110), then the (empty) subject.
    assert_eq!(out.len(), 2);
    assert_eq!(statuses(&out[0]), vec![110]);
    assert_eq!(item(&out[0]).attr("affiliation"), Some("owner"));
    assert_eq!(item(&out[0]).attr("role"), Some("moderator"));
    assert_eq!(
        out[0].child_text("show", ns::CLIENT).as_deref(),
        Some("away")
    );
    assert!(
        out[0].child("x", MUC).is_none(),
        "the join payload is not echoed"
    );
    assert_eq!(
        out[1].child_text("subject", ns::CLIENT).as_deref(),
        Some("")
    );

    let out = join_ok(&mut r, "bob", "Bob");
    assert_eq!(
        to_from(&out),
        vec![
            ("bob@a.test/res".into(), format!("{ROOM}/Boss")),
            ("owner@a.test/res".into(), format!("{ROOM}/Bob")),
            ("bob@a.test/res".into(), format!("{ROOM}/Bob")),
            ("bob@a.test/res".into(), ROOM.to_string()),
        ]
    );
    // Semi-anonymous: the moderator sees Bob's JID, Bob does not see the owner's.
    assert_eq!(item(&out[1]).attr("jid"), Some("bob@a.test/res"));
    assert_eq!(item(&out[0]).attr("jid"), None);
    assert_eq!(item(&out[2]).attr("role"), Some("participant"));
    assert_eq!(statuses(&out[2]), vec![110]);

    r.config.whois = Whois::Anyone;
    let out = join_ok(&mut r, "carol", "Carol");
    let own = out
        .iter()
        .find(|p| {
            p.attr("to") == Some("carol@a.test/res")
                && p.attr("from") == Some(&*format!("{ROOM}/Carol"))
        })
        .unwrap();
    assert_eq!(statuses(own), vec![110, 100]);
    assert!(
        out.iter()
            .filter(|p| p.name() == "presence")
            .all(|p| item(p).attr("jid").is_some())
    );
}

#[test]
fn creation_sends_201() {
    let mut r = room();
    let full = "owner@a.test/res";
    let p = join_presence(None);
    let req = JoinRequest {
        from: full,
        bare: "owner@a.test",
        nick: "Boss",
        nick_rewritten: false,
        presence: &p,
    };
    let out = r.enter(&req, Role::Moderator, Affiliation::Owner, true, now());
    assert_eq!(statuses(&out[0]), vec![110, 201]);
}

#[test]
fn nicks_are_normalized_by_whitespace() {
    use super::join::normalize_nick;
    assert_eq!(normalize_nick("Dave"), "Dave");
    assert_eq!(normalize_nick("  Dave \t Smith "), "Dave Smith");
    assert_eq!(normalize_nick("   "), "");
}

#[test]
fn a_rewritten_nick_is_announced_with_210_to_the_joiner_only() {
    let mut r = room();
    join_ok(&mut r, "owner", "Boss");
    let p = join_presence(None);
    let req = JoinRequest {
        from: "bob@a.test/res",
        bare: "bob@a.test",
        nick: "Bob",
        nick_rewritten: true,
        presence: &p,
    };
    let out = r.enter(&req, Role::Participant, Affiliation::None, false, now());
    let own = out
        .iter()
        .find(|s| {
            s.attr("to") == Some("bob@a.test/res")
                && s.attr("from") == Some(&*format!("{ROOM}/Bob"))
        })
        .unwrap();
    assert_eq!(statuses(own), vec![110, 210]);
    let seen = out
        .iter()
        .find(|s| s.attr("to") == Some("owner@a.test/res"))
        .unwrap();
    assert!(statuses(seen).is_empty());
}

#[test]
fn admission_rules() {
    let mut r = room();
    join_ok(&mut r, "owner", "Boss");
    assert_eq!(
        try_join(&mut r, "bob", "", None).unwrap_err(),
        Condition::JidMalformed
    );
    assert_eq!(
        try_join(&mut r, "bob", "WayTooLongNick", None).unwrap_err(),
        Condition::NotAcceptable
    );
    assert_eq!(
        try_join(&mut r, "bob", "Boss", None).unwrap_err(),
        Condition::Conflict
    );

    r.store_affiliation("eve@a.test", Affiliation::Outcast);
    assert_eq!(
        try_join(&mut r, "eve", "Eve", None).unwrap_err(),
        Condition::Forbidden
    );

    r.config.password = Some("pw".into());
    assert_eq!(
        try_join(&mut r, "bob", "Bob", None).unwrap_err(),
        Condition::NotAuthorized
    );
    assert_eq!(
        try_join(&mut r, "bob", "Bob", Some("no")).unwrap_err(),
        Condition::NotAuthorized
    );
    try_join(&mut r, "bob", "Bob", Some("pw")).unwrap();
    r.config.password = None;

    r.config.members_only = true;
    assert_eq!(
        try_join(&mut r, "carol", "Carol", None).unwrap_err(),
        Condition::RegistrationRequired
    );
    r.store_affiliation("carol@a.test", Affiliation::Member);
    join_ok(&mut r, "carol", "Carol");
    r.config.members_only = false;

    r.config.max_users = 3;
    assert_eq!(
        try_join(&mut r, "dave", "Dave", None).unwrap_err(),
        Condition::ServiceUnavailable
    );
    r.store_affiliation("admin@a.test", Affiliation::Admin);
    join_ok(&mut r, "admin", "Admin");
    assert_eq!(r.occupant_count(), 4, "admins may enter a full room");

    r.locked = true;
    assert_eq!(
        try_join(&mut r, "zed", "Zed", None).unwrap_err(),
        Condition::ItemNotFound
    );
}

#[test]
fn multi_session_nicks_share_the_occupant() {
    let mut r = room();
    join_ok(&mut r, "owner", "Boss");
    join_ok(&mut r, "bob", "Bob");
    let p = join_presence(None);
    let req = JoinRequest {
        from: "bob@a.test/phone",
        bare: "bob@a.test",
        nick: "Bob",
        nick_rewritten: false,
        presence: &p,
    };
    assert_eq!(r.admit(&req).unwrap(), Admission::ExtraSession);
    let out = r.add_session(&req, now());
    assert!(
        out.iter().all(|s| s.attr("to") == Some("bob@a.test/phone")),
        "others see nothing"
    );
    assert_eq!(r.occupant_count(), 2);
    // Groupchat reaches both sessions.
    let msg = Element::new("message", ns::CLIENT)
        .with_attr("type", "groupchat")
        .with_child(Element::new("body", ns::CLIENT).with_text("hi"));
    let Groupchat::Message { idx } = r.check_groupchat("owner@a.test/res", &msg).unwrap() else {
        panic!()
    };
    let out = r.broadcast_message(idx, &msg, None, now());
    assert_eq!(out.len(), 3);
    // One session leaving keeps the occupant; the last one takes it out.
    let out = r.leave("bob@a.test/phone", None);
    assert_eq!(
        to_from(&out),
        vec![("bob@a.test/phone".into(), format!("{ROOM}/Bob"))]
    );
    assert_eq!(r.occupant_count(), 2);
    let out = r.leave("bob@a.test/res", Some("bye"));
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|p| p.attr("type") == Some("unavailable")));
    assert_eq!(
        out[1].child_text("status", ns::CLIENT).as_deref(),
        Some("bye")
    );
    assert_eq!(r.occupant_count(), 1);
}

#[test]
fn moderation_permissions_and_effects() {
    let mut r = room();
    r.store_affiliation("admin@a.test", Affiliation::Admin);
    join_ok(&mut r, "owner", "Boss");
    join_ok(&mut r, "admin", "Admin");
    join_ok(&mut r, "bob", "Bob");
    join_ok(&mut r, "carol", "Carol");
    let kick = |nick: &str| AdminChange::Role {
        nick: nick.into(),
        role: Role::None,
        reason: Some("out".into()),
    };
    let bob = r.actor_for("bob@a.test/res");
    assert_eq!(
        r.admin_set(&bob, &[kick("Carol")]).unwrap_err().condition,
        Condition::Forbidden
    );
    let admin = r.actor_for("admin@a.test/res");
    assert_eq!(
        r.admin_set(&admin, &[kick("Boss")]).unwrap_err().condition,
        Condition::NotAllowed
    );
    assert_eq!(
        r.admin_set(&admin, &[kick("Nobody")])
            .unwrap_err()
            .condition,
        Condition::ItemNotFound
    );
    let grant_owner = AdminChange::Affiliation {
        jid: "bob@a.test".into(),
        affiliation: Affiliation::Owner,
        reason: None,
    };
    assert_eq!(
        r.admin_set(&admin, &[grant_owner]).unwrap_err().condition,
        Condition::Forbidden
    );

    let out = r.admin_set(&admin, &[kick("Bob")]).unwrap();
    assert_eq!(out.len(), 4, "every occupant, Bob included, sees the kick");
    for p in &out {
        assert!(statuses(p).contains(&307));
        assert_eq!(
            item(p).child_text("reason", super::ns::MUC_USER).as_deref(),
            Some("out")
        );
        assert_eq!(
            item(p)
                .child("actor", super::ns::MUC_USER)
                .and_then(|a| a.attr("nick")),
            Some("Admin")
        );
    }
    assert_eq!(statuses(&out[2]), vec![110, 307]);

    // All or nothing: one bad item refuses the whole request.
    let ban = AdminChange::Affiliation {
        jid: "carol@a.test".into(),
        affiliation: Affiliation::Outcast,
        reason: None,
    };
    assert!(r.admin_set(&admin, &[ban.clone(), kick("Boss")]).is_err());
    assert!(r.by_nick("Carol").is_some());
    let out = r.admin_set(&admin, &[ban]).unwrap();
    assert!(out.iter().all(|p| statuses(p).contains(&301)));
    assert_eq!(r.affiliation("carol@a.test"), Affiliation::Outcast);
    assert!(r.by_nick("Carol").is_none());

    // The last owner cannot leave ownership.
    let owner = r.actor_for("owner@a.test/res");
    let demote = AdminChange::Affiliation {
        jid: "owner@a.test".into(),
        affiliation: Affiliation::Admin,
        reason: None,
    };
    assert_eq!(
        r.admin_set(&owner, &[demote]).unwrap_err().condition,
        Condition::Conflict
    );
    // The admin API may kick anyone.
    r.admin_set(&Actor::system(), &[kick("Admin")]).unwrap();
    assert!(r.by_nick("Admin").is_none());
}

#[test]
fn voice_and_subject_rules() {
    let mut r = room();
    r.config.moderated = true;
    join_ok(&mut r, "owner", "Boss");
    join_ok(&mut r, "bob", "Bob");
    assert_eq!(r.by_nick("Bob").unwrap().role, Role::Visitor);
    let body = Element::new("message", ns::CLIENT)
        .with_attr("type", "groupchat")
        .with_child(Element::new("body", ns::CLIENT).with_text("hi"));
    assert_eq!(
        r.check_groupchat("bob@a.test/res", &body)
            .unwrap_err()
            .condition,
        Condition::Forbidden
    );
    assert_eq!(
        r.check_groupchat("stranger@a.test/x", &body)
            .unwrap_err()
            .condition,
        Condition::NotAcceptable
    );
    let owner = r.actor_for("owner@a.test/res");
    let voice = AdminChange::Role {
        nick: "Bob".into(),
        role: Role::Participant,
        reason: None,
    };
    let out = r.admin_set(&owner, &[voice]).unwrap();
    assert!(
        out.iter()
            .all(|p| item(p).attr("role") == Some("participant"))
    );
    assert!(r.check_groupchat("bob@a.test/res", &body).is_ok());

    let subject = Element::new("message", ns::CLIENT)
        .with_attr("type", "groupchat")
        .with_child(Element::new("subject", ns::CLIENT).with_text("Topic"));
    assert_eq!(
        r.check_groupchat("bob@a.test/res", &subject)
            .unwrap_err()
            .condition,
        Condition::Forbidden
    );
    r.config.change_subject = true;
    let Groupchat::Subject { idx, text } = r.check_groupchat("bob@a.test/res", &subject).unwrap()
    else {
        panic!()
    };
    let out = r.set_subject(idx, &text, now());
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].attr("from"), Some(&*format!("{ROOM}/Bob")));
    assert!(r.dirty);
    // A later joiner gets it.
    let out = join_ok(&mut r, "carol", "Carol");
    assert_eq!(
        out.last()
            .unwrap()
            .child_text("subject", ns::CLIENT)
            .as_deref(),
        Some("Topic")
    );
}

#[test]
fn nick_change_announces_303_and_new_nick() {
    let mut r = room();
    join_ok(&mut r, "owner", "Boss");
    join_ok(&mut r, "bob", "Bob");
    assert_eq!(
        r.check_nick_change("bob@a.test/res", "Boss")
            .unwrap_err()
            .condition,
        Condition::Conflict
    );
    let idx = r.check_nick_change("bob@a.test/res", "Robert").unwrap();
    let out = r.change_nick(idx, "Robert");
    assert_eq!(out.len(), 4);
    for p in &out[..2] {
        assert_eq!(p.attr("type"), Some("unavailable"));
        assert_eq!(p.attr("from"), Some(&*format!("{ROOM}/Bob")));
        assert!(statuses(p).contains(&303));
        assert_eq!(item(p).attr("nick"), Some("Robert"));
    }
    assert_eq!(statuses(&out[1]), vec![110, 303]);
    assert_eq!(out[3].attr("from"), Some(&*format!("{ROOM}/Robert")));
    assert_eq!(statuses(&out[3]), vec![110]);
    assert!(r.by_nick("Bob").is_none() && r.by_nick("Robert").is_some());
}

#[test]
fn history_is_bounded_and_replayed_with_delay() {
    let mut r = room();
    join_ok(&mut r, "owner", "Boss");
    for n in 0..5 {
        let m = Element::new("message", ns::CLIENT)
            .with_attr("type", "groupchat")
            .with_child(Element::new("body", ns::CLIENT).with_text(format!("m{n}")));
        r.broadcast_message(0, &m, (n == 4).then_some("replaced"), now());
    }
    assert_eq!(r.history.len(), 3);
    let out = join_ok(&mut r, "bob", "Bob");
    let bodies: Vec<_> = out
        .iter()
        .filter_map(|s| s.child_text("body", ns::CLIENT))
        .collect();
    assert_eq!(bodies, ["m2", "m3", "replaced"]);
    assert!(
        out.iter()
            .filter(|s| s.has_child("body", ns::CLIENT))
            .all(|s| s.has_child("delay", ns::DELAY))
    );
}

#[test]
fn becoming_members_only_removes_non_members_and_announces_changes() {
    let mut r = room();
    r.store_affiliation("bob@a.test", Affiliation::Member);
    join_ok(&mut r, "owner", "Boss");
    join_ok(&mut r, "bob", "Bob");
    join_ok(&mut r, "carol", "Carol");
    let mut new = r.config.clone();
    new.members_only = true;
    new.whois = Whois::Anyone;
    let out = r.apply_config(new);
    let removed: Vec<_> = out
        .iter()
        .filter(|s| s.attr("type") == Some("unavailable"))
        .collect();
    assert_eq!(removed.len(), 3);
    assert!(removed.iter().all(|p| statuses(p).contains(&322)));
    let notices: Vec<_> = out.iter().filter(|s| s.name() == "message").collect();
    assert_eq!(notices.len(), 2);
    assert_eq!(statuses(notices[0]), vec![104, 172]);
    assert!(r.by_nick("Carol").is_none() && r.dirty);
}

#[test]
fn destroy_tells_every_session_with_the_venue() {
    let mut r = room();
    join_ok(&mut r, "owner", "Boss");
    join_ok(&mut r, "bob", "Bob");
    let out = r.destroy(Some("new@conference.a.test"), Some("moved"));
    assert_eq!(out.len(), 2);
    for p in &out {
        let d = p
            .child("x", super::ns::MUC_USER)
            .and_then(|x| x.child("destroy", super::ns::MUC_USER))
            .unwrap();
        assert_eq!(d.attr("jid"), Some("new@conference.a.test"));
        assert_eq!(
            d.child_text("reason", super::ns::MUC_USER).as_deref(),
            Some("moved")
        );
        assert_eq!(item(p).attr("role"), Some("none"));
    }
    assert!(r.destroyed && r.is_empty());
}

#[test]
fn shutting_down_sends_332_to_every_session_and_keeps_the_room() {
    let mut r = room();
    join_ok(&mut r, "owner", "Boss");
    join_ok(&mut r, "bob", "Bob");
    let out = r.shut_down();
    assert_eq!(
        to_from(&out),
        vec![
            ("owner@a.test/res".into(), format!("{ROOM}/Boss")),
            ("bob@a.test/res".into(), format!("{ROOM}/Bob")),
        ]
    );
    for p in &out {
        assert_eq!(p.attr("type"), Some("unavailable"));
        assert_eq!(statuses(p), vec![110, 332]);
        assert_eq!(item(p).attr("role"), Some("none"));
    }
    assert!(r.is_empty() && !r.destroyed);
    assert_eq!(r.affiliation("owner@a.test"), Affiliation::Owner);
}

#[test]
fn iq_relay_and_self_ping() {
    let mut r = room();
    join_ok(&mut r, "owner", "Boss");
    join_ok(&mut r, "bob", "Bob");
    let ping = |from: &str, to: &str| {
        Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("id", "p1")
            .with_attr("from", from)
            .with_attr("to", to)
            .with_child(Element::new("ping", ns::PING))
    };
    let own = r
        .relay_iq_request(
            "bob@a.test/res",
            "Bob",
            &ping("bob@a.test/res", &format!("{ROOM}/Bob")),
        )
        .unwrap();
    assert_eq!(own[0].attr("type"), Some("result"));
    assert_eq!(own[0].attr("to"), Some("bob@a.test/res"));
    assert_eq!(
        r.relay_iq_request("x@a.test/r", "Bob", &ping("x@a.test/r", ROOM))
            .unwrap_err()
            .condition,
        Condition::NotAcceptable
    );
    let fwd = r
        .relay_iq_request(
            "bob@a.test/res",
            "Boss",
            &ping("bob@a.test/res", &format!("{ROOM}/Boss")),
        )
        .unwrap();
    assert_eq!(fwd[0].attr("to"), Some("owner@a.test/res"));
    assert_eq!(fwd[0].attr("from"), Some(&*format!("{ROOM}/Bob")));
    let new_id = fwd[0].attr("id").unwrap().to_string();
    assert_ne!(new_id, "p1");
    let answer = Element::new("iq", ns::CLIENT)
        .with_attr("type", "result")
        .with_attr("id", new_id.clone());
    // Only the target may answer.
    assert!(r.relay_iq_response("bob@a.test/res", &answer).is_empty());
    let back = r.relay_iq_response("owner@a.test/res", &answer);
    assert_eq!(back[0].attr("id"), Some("p1"));
    assert_eq!(back[0].attr("to"), Some("bob@a.test/res"));
    assert_eq!(back[0].attr("from"), Some(&*format!("{ROOM}/Boss")));
    assert!(
        r.relay_iq_response("owner@a.test/res", &answer).is_empty(),
        "answered once"
    );
}

#[test]
fn error_bounces_remove_the_session() {
    let mut r = room();
    join_ok(&mut r, "owner", "Boss");
    join_ok(&mut r, "bob", "Bob");
    let out = r.drop_session("bob@a.test/res");
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|p| statuses(p).contains(&333)));
    assert!(r.by_nick("Bob").is_none());
    assert!(r.drop_session("bob@a.test/res").is_empty());
}

#[test]
fn admin_items_parse() {
    use super::ns::MUC_ADMIN;
    let q = Element::new("query", MUC_ADMIN)
        .with_child(
            Element::new("item", MUC_ADMIN)
                .with_attr("jid", "Bob@A.test/phone")
                .with_attr("affiliation", "member")
                .with_child(Element::new("reason", MUC_ADMIN).with_text("welcome")),
        )
        .with_child(
            Element::new("item", MUC_ADMIN)
                .with_attr("nick", "Carol")
                .with_attr("role", "visitor"),
        );
    assert_eq!(
        AdminChange::parse(&q).unwrap(),
        vec![
            AdminChange::Affiliation {
                jid: "bob@a.test".into(),
                affiliation: Affiliation::Member,
                reason: Some("welcome".into()),
            },
            AdminChange::Role {
                nick: "Carol".into(),
                role: Role::Visitor,
                reason: None,
            },
        ]
    );
    for bad in [
        Element::new("item", MUC_ADMIN)
            .with_attr("affiliation", "king")
            .with_attr("jid", "a@b"),
        Element::new("item", MUC_ADMIN).with_attr("affiliation", "member"),
        Element::new("item", MUC_ADMIN).with_attr("role", "visitor"),
        Element::new("item", MUC_ADMIN),
    ] {
        assert!(AdminChange::parse(&Element::new("query", MUC_ADMIN).with_child(bad)).is_err());
    }
    assert!(AdminChange::parse(&Element::new("query", MUC_ADMIN)).is_err());
}

/// A message to the room carrying a submitted `muc#request` form with `fields`.
fn voice_form(fields: &[(&str, &str)]) -> Element {
    let mut x = Element::new("x", ns::DATA_FORMS).with_attr("type", "submit");
    let all = [("FORM_TYPE", super::voice::MUC_REQUEST)];
    for (var, value) in all.iter().chain(fields) {
        x.push_child(
            Element::new("field", ns::DATA_FORMS)
                .with_attr("var", *var)
                .with_child(Element::new("value", ns::DATA_FORMS).with_text(*value)),
        );
    }
    Element::new("message", ns::CLIENT).with_child(x)
}

#[test]
fn voice_requests_reach_moderators_and_approval_grants_voice() {
    use super::voice::VoiceForm;
    let mut r = room();
    r.config.moderated = true;
    join_ok(&mut r, "owner", "Boss");
    join_ok(&mut r, "bob", "Bob");
    join_ok(&mut r, "carol", "Carol");
    assert_eq!(r.by_nick("Bob").unwrap().role, Role::Visitor);

    let request = voice_form(&[("muc#role", "participant")]);
    assert_eq!(VoiceForm::parse(&request), Some(Ok(VoiceForm::Request)));
    let out = r.request_voice("bob@a.test/res").unwrap();
    // Only the moderator is asked, with the requester's nick and JID in the form.
    assert_eq!(
        to_from(&out),
        vec![("owner@a.test/res".into(), ROOM.to_string())]
    );
    let form = super::dataform::Submitted::parse(out[0].child("x", ns::DATA_FORMS).unwrap());
    assert_eq!(form.kind, "form");
    assert_eq!(form.form_type(), Some(super::voice::MUC_REQUEST));
    let value = |var: &str| {
        form.fields
            .iter()
            .find(|(v, _)| v == var)
            .map(|(_, vals)| vals.clone())
    };
    assert_eq!(value("muc#roomnick"), Some(vec!["Bob".to_string()]));
    assert_eq!(value("muc#jid"), Some(vec!["bob@a.test/res".to_string()]));
    assert_eq!(value("muc#request_allow"), Some(vec!["false".to_string()]));

    // A visitor cannot approve; a refusal changes nothing; approval gives voice.
    let answer = |allow: &str| {
        voice_form(&[
            ("muc#role", "participant"),
            ("muc#roomnick", "Bob"),
            ("muc#request_allow", allow),
        ])
    };
    assert_eq!(
        VoiceForm::parse(&answer("true")),
        Some(Ok(VoiceForm::Answer {
            nick: "Bob".into(),
            allow: true
        }))
    );
    let err = r
        .answer_voice_request("carol@a.test/res", "Bob", true)
        .unwrap_err();
    assert_eq!(err.condition, Condition::Forbidden);
    assert!(
        r.answer_voice_request("owner@a.test/res", "Bob", false)
            .unwrap()
            .is_empty()
    );
    assert_eq!(r.by_nick("Bob").unwrap().role, Role::Visitor);
    let out = r
        .answer_voice_request("owner@a.test/res", "Bob", true)
        .unwrap();
    assert_eq!(r.by_nick("Bob").unwrap().role, Role::Participant);
    assert_eq!(out.len(), 3, "every occupant sees Bob's new role");
    assert!(
        out.iter()
            .all(|p| item(p).attr("role") == Some("participant"))
    );
    // Bob has voice now: asking again asks nobody.
    assert!(r.request_voice("bob@a.test/res").unwrap().is_empty());

    let bad = voice_form(&[("muc#role", "moderator")]);
    assert_eq!(
        VoiceForm::parse(&bad).unwrap().unwrap_err().condition,
        Condition::BadRequest
    );
    assert_eq!(VoiceForm::parse(&Element::new("message", ns::CLIENT)), None);
}

/// The owner form as submitted with only `fields` (var, values).
fn owner_submit(fields: &[(&str, &[&str])]) -> super::dataform::Submitted {
    super::dataform::Submitted {
        kind: "submit".into(),
        fields: fields
            .iter()
            .map(|(var, vals)| {
                (
                    var.to_string(),
                    vals.iter().map(|v| v.to_string()).collect(),
                )
            })
            .collect(),
    }
}

#[test]
fn owner_and_admin_lists_in_the_configuration_form() {
    use super::config::{ROOMADMINS, ROOMOWNERS};
    let mut r = room();
    r.store_affiliation("adm@a.test", Affiliation::Admin);
    join_ok(&mut r, "owner", "Boss");
    let form = super::dataform::Submitted::parse(&r.config_form());
    let values = |var: &str| {
        form.fields
            .iter()
            .find(|(v, _)| v == var)
            .unwrap()
            .1
            .clone()
    };
    assert_eq!(values(ROOMOWNERS), vec!["owner@a.test"]);
    assert_eq!(values(ROOMADMINS), vec!["adm@a.test"]);

    let owner = r.actor_for("owner@a.test/res");
    // Replacing the only owner works: the new owner is granted first.
    let changes = r
        .list_changes(&owner_submit(&[
            (ROOMOWNERS, &["New@A.test"]),
            (ROOMADMINS, &["adm@a.test", "owner@a.test"]),
        ]))
        .unwrap();
    let out = r.admin_set(&owner, &changes).unwrap();
    assert_eq!(r.affiliation("new@a.test"), Affiliation::Owner);
    assert_eq!(r.affiliation("owner@a.test"), Affiliation::Admin);
    assert_eq!(r.affiliation("adm@a.test"), Affiliation::Admin);
    // Boss is in the room: everyone sees the new affiliation.
    assert!(
        out.iter()
            .any(|p| item(p).attr("affiliation") == Some("admin"))
    );

    // Lists left out stay; an empty owner list would leave the room ownerless.
    let none = r.list_changes(&owner_submit(&[])).unwrap();
    assert!(none.is_empty());
    let new_owner = r.actor_for("new@a.test/x");
    let empty = r.list_changes(&owner_submit(&[(ROOMOWNERS, &[])])).unwrap();
    assert_eq!(
        r.admin_set(&new_owner, &empty).unwrap_err().condition,
        Condition::Conflict
    );
    assert_eq!(r.affiliation("new@a.test"), Affiliation::Owner);
    // An empty admin list removes the admins; nonsense JIDs are refused.
    let changes = r.list_changes(&owner_submit(&[(ROOMADMINS, &[])])).unwrap();
    r.admin_set(&new_owner, &changes).unwrap();
    assert_eq!(r.affiliation("adm@a.test"), Affiliation::None);
    assert_eq!(
        r.list_changes(&owner_submit(&[(ROOMOWNERS, &["@@"])]))
            .unwrap_err()
            .condition,
        Condition::JidMalformed
    );
}

#[test]
fn the_affiliation_list_is_capped() {
    let mut r = room();
    r.limits.max_affiliations = 2;
    r.config.members_only = true;
    join_ok(&mut r, "owner", "Boss");
    let owner = r.actor_for("owner@a.test/res");
    let member = |jid: &str, aff: Affiliation| AdminChange::Affiliation {
        jid: jid.into(),
        affiliation: aff,
        reason: None,
    };
    r.admin_set(&owner, &[member("m1@a.test", Affiliation::Member)])
        .unwrap();
    // Full (owner + m1): a new entry is refused, by muc#admin and by invitation.
    let err = r
        .admin_set(&owner, &[member("m2@a.test", Affiliation::Outcast)])
        .unwrap_err();
    assert_eq!(err.condition, Condition::NotAllowed);
    assert_eq!(
        r.invite("owner@a.test/res", "m3@a.test", None)
            .unwrap_err()
            .condition,
        Condition::NotAllowed
    );
    assert_eq!(r.affiliations().count(), 2);
    // Changing or removing an entry still works, and frees a place.
    r.admin_set(&owner, &[member("m1@a.test", Affiliation::Admin)])
        .unwrap();
    r.admin_set(&owner, &[member("m1@a.test", Affiliation::None)])
        .unwrap();
    r.admin_set(&owner, &[member("m2@a.test", Affiliation::Outcast)])
        .unwrap();
    assert_eq!(r.affiliation("m2@a.test"), Affiliation::Outcast);
}

#[test]
fn logging_is_announced_with_170_and_171_and_queues_messages_and_subjects() {
    let mut r = room();
    join_ok(&mut r, "owner", "Boss");
    join_ok(&mut r, "bob", "Bob");
    let msg = |body: &str| {
        Element::new("message", ns::CLIENT)
            .with_attr("type", "groupchat")
            .with_child(Element::new("body", ns::CLIENT).with_text(body))
    };
    // Not logged: nothing queued.
    r.broadcast_message(1, &msg("off the record"), None, now());
    assert!(r.take_log_pending().is_empty());

    let mut logged = r.config.clone();
    logged.logging = true;
    r.check_config(&logged).unwrap();
    let out = r.apply_config(logged);
    let notices: Vec<_> = out.iter().filter(|s| s.name() == "message").collect();
    assert_eq!(notices.len(), 2, "one per occupant");
    assert_eq!(statuses(notices[0]), vec![104, 170]);
    // A joiner is warned in its own presence.
    let out = join_ok(&mut r, "carol", "Carol");
    let own = out
        .iter()
        .find(|p| {
            p.attr("from") == Some(&*format!("{ROOM}/Carol"))
                && p.attr("to") == Some("carol@a.test/res")
        })
        .unwrap();
    assert_eq!(statuses(own), vec![110, 170]);

    // Messages (as broadcast, after a policy rewrite) and subject changes are queued.
    r.broadcast_message(1, &msg("original"), Some("rewritten"), now());
    r.broadcast_message(1, &Element::new("message", ns::CLIENT), None, now());
    r.set_subject(0, "Agenda", now());
    let lines = r.take_log_pending();
    let summary: Vec<_> = lines
        .iter()
        .map(|l| (l.nick.as_str(), l.jid.as_str(), l.subject, l.text.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("Bob", "bob@a.test", false, "rewritten"),
            ("Boss", "owner@a.test", true, "Agenda"),
        ]
    );
    assert_eq!(lines[0].at, "1970-01-12T13:46:40.000Z");
    assert!(r.take_log_pending().is_empty(), "taken once");

    let mut off = r.config.clone();
    off.logging = false;
    let out = r.apply_config(off);
    assert_eq!(statuses(&out[0]), vec![104, 171]);
}

#[test]
fn a_tenant_without_room_logs_refuses_turning_logging_on() {
    let mut r = room();
    r.limits.max_log_messages = 0;
    let mut logged = r.config.clone();
    logged.logging = true;
    assert_eq!(
        r.check_config(&logged).unwrap_err().condition,
        Condition::NotAcceptable
    );
    // A room logged before the tenant stopped keeping logs is no longer logged.
    r.config.logging = true;
    assert!(!r.is_logged());
    join_ok(&mut r, "owner", "Boss");
    let out = join_ok(&mut r, "bob", "Bob");
    assert!(out.iter().all(|p| !statuses(p).contains(&170)));
    r.check_config(&r.config.clone()).unwrap();
}
