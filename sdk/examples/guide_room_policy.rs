//! The guide's room policy (sdk/README.md, "Room policies"), compiled and tested by
//! `cargo test` (`tests/guide.rs` checks the guide's block is this code, verbatim).

use heliograph_plugin_sdk::prelude::*;

struct Meetings;

impl RoomPolicy for Meetings {
    fn create_room(room: Room, _creator: RoomUser) -> Decision {
        if room.name.starts_with("team-") {
            Decision::Allow
        } else {
            Decision::deny("room names must start with team-")
        }
    }

    fn join(room: Room, occupant: Occupant) -> JoinDecision {
        if room.occupants >= 20 {
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
            MessageDecision::Allow // or MessageDecision::ReplaceBody(new_body)
        }
    }
}

heliograph_plugin_sdk::room_policy!(Meetings);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_moderate_and_names_are_checked() {
        let host = Occupant::new(RoomUser::new("a@x/r").role("host"), "a");
        let guest = Occupant::new(RoomUser::new("b@x/r"), "b");
        assert_eq!(
            Meetings::join(Room::new("team-a", 3), host),
            JoinDecision::with_role(Role::Moderator)
        );
        assert_eq!(
            Meetings::join(Room::new("team-a", 3), guest.clone()),
            JoinDecision::Default
        );
        assert!(matches!(
            Meetings::join(Room::new("team-a", 20), guest.clone()),
            JoinDecision::Deny(_)
        ));
        assert!(matches!(
            Meetings::create_room(Room::new("lobby", 0), RoomUser::new("a@x/r")),
            Decision::Deny(_)
        ));
        assert_eq!(
            Meetings::message(Room::new("team-a", 1), guest, "hi".into()),
            MessageDecision::Allow
        );
    }
}
