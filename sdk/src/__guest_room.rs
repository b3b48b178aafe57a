//! The guest side of the room-policy world (wasm32 only): wit-bindgen bindings for
//! `room-policy-with-init` (generated in their own crate, see there) and the conversions used by [`crate::room_policy!`]. Not a public API.

pub use heliograph_plugin_sdk_room_bindings as bindings;

pub use bindings::export;
pub use bindings::exports::heliograph::plugin::lifecycle::Guest as LifecycleGuest;
pub use bindings::exports::heliograph::plugin::room_decisions::Guest as RoomDecisionsGuest;
pub use bindings::heliograph::plugin::room_types::{
    Decision as WitDecision, JoinDecision as WitJoinDecision,
    MessageDecision as WitMessageDecision, Occupant as WitOccupant, Room as WitRoom,
    User as WitUser,
};
pub use bindings::heliograph::plugin::types::KeyValue as WitKeyValue;

use bindings::heliograph::plugin::room_types as wit;

use crate::{
    Affiliation, Decision, JoinDecision, MessageDecision, Occupant, Role, Room, RoomPolicy,
    RoomUser,
};

fn pairs(kvs: Vec<WitKeyValue>) -> Vec<(String, String)> {
    kvs.into_iter().map(|kv| (kv.key, kv.value)).collect()
}

fn room(r: WitRoom) -> Room {
    Room {
        tenant: r.tenant,
        jid: r.jid,
        name: r.name,
        occupants: r.occupants,
        config: pairs(r.config),
    }
}

fn user(u: WitUser) -> RoomUser {
    RoomUser {
        jid: u.jid,
        roles: u.roles,
        attributes: pairs(u.attributes),
    }
}

fn role(r: wit::Role) -> Role {
    match r {
        wit::Role::None => Role::None,
        wit::Role::Visitor => Role::Visitor,
        wit::Role::Participant => Role::Participant,
        wit::Role::Moderator => Role::Moderator,
    }
}

fn wit_role(r: Role) -> wit::Role {
    match r {
        Role::None => wit::Role::None,
        Role::Visitor => wit::Role::Visitor,
        Role::Participant => wit::Role::Participant,
        Role::Moderator => wit::Role::Moderator,
    }
}

fn affiliation(a: wit::Affiliation) -> Affiliation {
    match a {
        wit::Affiliation::Outcast => Affiliation::Outcast,
        wit::Affiliation::None => Affiliation::None,
        wit::Affiliation::Member => Affiliation::Member,
        wit::Affiliation::Admin => Affiliation::Admin,
        wit::Affiliation::Owner => Affiliation::Owner,
    }
}

fn wit_affiliation(a: Affiliation) -> wit::Affiliation {
    match a {
        Affiliation::Outcast => wit::Affiliation::Outcast,
        Affiliation::None => wit::Affiliation::None,
        Affiliation::Member => wit::Affiliation::Member,
        Affiliation::Admin => wit::Affiliation::Admin,
        Affiliation::Owner => wit::Affiliation::Owner,
    }
}

fn occupant(o: WitOccupant) -> Occupant {
    Occupant {
        user: user(o.user),
        nick: o.nick,
        role: role(o.role),
        affiliation: affiliation(o.affiliation),
    }
}

fn decision(d: Decision) -> WitDecision {
    match d {
        Decision::Allow => WitDecision::Allow,
        Decision::Deny(reason) => WitDecision::Deny(reason),
    }
}

pub fn create_room<P: RoomPolicy>(r: WitRoom, creator: WitUser) -> WitDecision {
    decision(P::create_room(room(r), user(creator)))
}

pub fn join<P: RoomPolicy>(r: WitRoom, o: WitOccupant) -> WitJoinDecision {
    match P::join(room(r), occupant(o)) {
        JoinDecision::Default => WitJoinDecision::Default,
        JoinDecision::Allow { role, affiliation } => WitJoinDecision::Allow(wit::JoinGrant {
            role: role.map(wit_role),
            affiliation: affiliation.map(wit_affiliation),
        }),
        JoinDecision::Deny(reason) => WitJoinDecision::Deny(reason),
    }
}

pub fn message<P: RoomPolicy>(r: WitRoom, o: WitOccupant, body: String) -> WitMessageDecision {
    match P::message(room(r), occupant(o), body) {
        MessageDecision::Allow => WitMessageDecision::Allow,
        MessageDecision::Deny(reason) => WitMessageDecision::Deny(reason),
        MessageDecision::ReplaceBody(body) => WitMessageDecision::ReplaceBody(body),
    }
}

pub fn configure<P: RoomPolicy>(
    r: WitRoom,
    actor: WitUser,
    new_config: Vec<WitKeyValue>,
) -> WitDecision {
    decision(P::configure(room(r), user(actor), pairs(new_config)))
}

pub fn change_nick<P: RoomPolicy>(r: WitRoom, o: WitOccupant, new_nick: String) -> WitDecision {
    decision(P::change_nick(room(r), occupant(o), new_nick))
}
