//! {{name}}: a Heliograph room policy (WIT world `room-policy`): room names start with
//! `team-`, meetings hold `max_participants` (configuration, default 20), hosts (users
//! whose authenticator gave them the role `host`) and the first joiner moderate.

use heliograph_plugin_sdk::prelude::*;

pub struct {{Type}};

fn max_participants() -> u32 {
    config::get("max_participants")
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

impl RoomPolicy for {{Type}} {
    fn create_room(room: Room, _creator: RoomUser) -> Decision {
        if room.name.starts_with("team-") {
            Decision::Allow
        } else {
            Decision::deny("room names must start with team-")
        }
    }

    fn join(room: Room, occupant: Occupant) -> JoinDecision {
        if room.occupants >= max_participants() {
            JoinDecision::deny("the meeting is full")
        } else if room.occupants == 0 || occupant.user.has_role("host") {
            JoinDecision::with_role(Role::Moderator)
        } else {
            JoinDecision::Default
        }
    }

    fn message(_room: Room, _occupant: Occupant, body: String) -> MessageDecision {
        if body.len() > 2000 {
            MessageDecision::deny("too long")
        } else {
            MessageDecision::Allow
        }
    }

    fn configure(_room: Room, _actor: RoomUser, _new_config: Vec<(String, String)>) -> Decision {
        Decision::Allow // owners may configure their rooms
    }

    fn change_nick(_room: Room, _occupant: Occupant, new_nick: String) -> Decision {
        if new_nick.trim().is_empty() {
            Decision::deny("a nickname cannot be blank")
        } else {
            Decision::Allow
        }
    }

    fn init(_config: &str) -> Result<(), String> {
        match config::get("max_participants") {
            Some(v) if v.parse::<u32>().is_err() => {
                Err(format!("max_participants must be a number, not {v}"))
            }
            _ => Ok(()),
        }
    }
}

heliograph_plugin_sdk::room_policy!({{Type}});

#[cfg(test)]
mod tests {
    use super::*;
    use heliograph_plugin_sdk::testing::FakeHost;

    #[test]
    fn names_sizes_and_moderators() {
        let _host = FakeHost::new()
            .config_json(r#"{"max_participants": 2}"#)
            .install();
        let alice = RoomUser::new("alice@example.com/phone");
        assert_eq!(
            {{Type}}::create_room(Room::new("team-a", 0), alice.clone()),
            Decision::Allow
        );
        assert_eq!(
            {{Type}}::create_room(Room::new("party", 0), alice.clone()),
            Decision::deny("room names must start with team-")
        );
        assert_eq!(
            {{Type}}::join(Room::new("team-a", 0), Occupant::new(alice.clone(), "alice")),
            JoinDecision::with_role(Role::Moderator)
        );
        let host = RoomUser::new("hal@example.com/desk").role("host");
        assert_eq!(
            {{Type}}::join(Room::new("team-a", 1), Occupant::new(host, "hal")),
            JoinDecision::with_role(Role::Moderator)
        );
        assert_eq!(
            {{Type}}::join(Room::new("team-a", 2), Occupant::new(alice, "alice")),
            JoinDecision::deny("the meeting is full")
        );
        let who = Occupant::new(RoomUser::new("bob@example.com/r"), "bob");
        assert_eq!(
            {{Type}}::change_nick(Room::new("team-a", 1), who, " ".into()),
            Decision::deny("a nickname cannot be blank")
        );
    }

    #[test]
    fn init_checks_the_configuration() {
        let _host = FakeHost::new()
            .config_json(r#"{"max_participants": "many"}"#)
            .install();
        assert!({{Type}}::init("").is_err());
    }
}
