//! A component of another world (a room policy, say): it does not export
//! `heliograph:plugin/authentication`, so installing it as an authenticator must fail
//! with the missing export named.

wit_bindgen::generate!({
    inline: "
        package example:rooms@0.1.0;
        interface room-policy {
            may-join: func(room: string, user: string) -> bool;
        }
        world rooms {
            export room-policy;
        }
    ",
});

struct Rooms;

impl exports::example::rooms::room_policy::Guest for Rooms {
    fn may_join(_room: String, _user: String) -> bool {
        true
    }
}

export!(Rooms);
