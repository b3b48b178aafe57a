//! Service discovery (XEP-0030) of the MUC service and its rooms: the service identity
//! and public room list, and each room's identity, `muc_*` features and `muc#roominfo`.

use super::config::Whois;
use super::dataform::{self, Field};
use super::ns::{CONFERENCE, MUC, MUC_ROOMINFO, SELF_PING};
use super::room::Room;
use crate::xml::{Element, ns};

/// The `<item/>` for a tenant domain's MUC service in the domain's disco#items, unless a
/// component configured on the same domain takes it (see `ComponentResolver`).
pub fn service_item(
    services: &super::MucServices,
    core: &heliograph_core::Core,
    domain: &str,
) -> Option<Element> {
    let tenant = core.tenant_of(domain)?;
    let (service, name) = services.service_of_domain(core, domain)?;
    tenant.component(&service).is_none().then(|| {
        Element::new("item", ns::DISCO_ITEMS)
            .with_attr("jid", service)
            .with_attr("name", name)
    })
}

fn identity(category: &str, kind: &str, name: &str) -> Element {
    Element::new("identity", ns::DISCO_INFO)
        .with_attr("category", category)
        .with_attr("type", kind)
        .with_attr("name", name)
}

fn feature(var: &str) -> Element {
    Element::new("feature", ns::DISCO_INFO).with_attr("var", var)
}

/// disco#info of the service itself.
pub fn service_info() -> Element {
    let mut q = Element::new("query", ns::DISCO_INFO).with_child(identity(
        "conference",
        "text",
        "Chatrooms",
    ));
    for f in [ns::DISCO_INFO, ns::DISCO_ITEMS, MUC, ns::PING, SELF_PING] {
        q.push_child(feature(f));
    }
    q
}

/// disco#items of the service: `(room JID, name)` of the public rooms.
pub fn service_items(rooms: &[(String, String)]) -> Element {
    let mut q = Element::new("query", ns::DISCO_ITEMS);
    for (jid, name) in rooms {
        q.push_child(
            Element::new("item", ns::DISCO_ITEMS)
                .with_attr("jid", jid.clone())
                .with_attr("name", if name.is_empty() { jid } else { name }),
        );
    }
    q
}

/// The name a room shows: its configured name, else its localpart.
pub fn display_name(room: &Room) -> String {
    if room.config.name.is_empty() {
        room.name().to_string()
    } else {
        room.config.name.clone()
    }
}

/// disco#info of a room (XEP-0045 §6.4).
pub fn room_info(room: &Room) -> Element {
    let c = &room.config;
    let mut q = Element::new("query", ns::DISCO_INFO).with_child(identity(
        "conference",
        "text",
        &display_name(room),
    ));
    let pick = |on: bool, yes: &'static str, no: &'static str| if on { yes } else { no };
    for f in [
        MUC,
        ns::DISCO_INFO,
        ns::DISCO_ITEMS,
        SELF_PING,
        CONFERENCE,
        ns::MAM,
        ns::MAM_EXTENDED,
        ns::SID,
        pick(c.public, "muc_public", "muc_hidden"),
        pick(c.persistent, "muc_persistent", "muc_temporary"),
        pick(c.members_only, "muc_membersonly", "muc_open"),
        pick(c.moderated, "muc_moderated", "muc_unmoderated"),
        pick(
            c.password.is_some(),
            "muc_passwordprotected",
            "muc_unsecured",
        ),
        pick(
            c.whois == Whois::Anyone,
            "muc_nonanonymous",
            "muc_semianonymous",
        ),
    ] {
        q.push_child(feature(f));
    }
    let subject = room
        .subject
        .as_ref()
        .map(|s| s.text.clone())
        .unwrap_or_default();
    let b = |v: bool| if v { "1" } else { "0" }.to_string();
    let fields = [
        Field::new(
            "muc#roominfo_description",
            "text-single",
            c.description.clone(),
        )
        .labelled("Description"),
        Field::new(
            "muc#roominfo_occupants",
            "text-single",
            room.occupant_count().to_string(),
        )
        .labelled("Number of occupants"),
        Field::new("muc#roominfo_subject", "text-single", subject).labelled("Subject"),
        Field::new("muc#roominfo_subjectmod", "boolean", b(c.change_subject))
            .labelled("Occupants may change the subject"),
        Field::new("muc#roomconfig_roomname", "text-single", c.name.clone()).labelled("Room name"),
        Field::new(
            "muc#maxhistoryfetch",
            "text-single",
            room.limits.history_length.to_string(),
        )
        .labelled("Maximum messages of history"),
        Field::new(
            "muc#roomconfig_allowinvites",
            "boolean",
            b(c.allow_invites || !c.members_only),
        )
        .labelled("Occupants may invite"),
        // Clients warn before entering a logged room.
        Field::new(
            super::config::ENABLE_LOGGING,
            "boolean",
            if room.config.logging { "1" } else { "0" },
        )
        .labelled("Public logging of the discussion"),
    ];
    q.push_child(dataform::form("result", MUC_ROOMINFO, None, &fields));
    q
}

/// disco#items of a room: empty, occupants are not listed (their nicknames are in
/// presence, their JIDs may be private).
pub fn room_items() -> Element {
    Element::new("query", ns::DISCO_ITEMS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::muc::config::{ENABLE_LOGGING, RoomConfig};
    use crate::muc::dataform::Submitted;
    use crate::muc::room::RoomLimits;

    #[test]
    fn room_info_says_whether_the_room_is_logged() {
        let mut room = Room::new(
            "r@conference.a.test".into(),
            RoomConfig::new(0),
            RoomLimits {
                history_length: 5,
                max_nick_length: 10,
                max_affiliations: 0,
                max_log_messages: 10,
            },
        );
        let logging = |room: &Room| {
            let info = room_info(room);
            let form = Submitted::parse(info.child("x", ns::DATA_FORMS).unwrap());
            assert_eq!(form.form_type(), Some(MUC_ROOMINFO));
            let field = form.fields.into_iter().find(|(v, _)| v == ENABLE_LOGGING);
            field.map(|(_, v)| v)
        };
        assert_eq!(logging(&room), Some(vec!["0".to_string()]));
        room.config.logging = true;
        assert_eq!(logging(&room), Some(vec!["1".to_string()]));
        room.config.logging = false;
        let info = room_info(&room);
        let features: Vec<_> = info
            .children()
            .filter(|c| c.name() == "feature")
            .filter_map(|c| c.attr("var"))
            .collect();
        assert!(features.contains(&"muc_unsecured") && features.contains(&"muc_temporary"));
    }
}
