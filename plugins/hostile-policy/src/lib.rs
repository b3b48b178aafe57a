//! A room policy that misbehaves on purpose, to prove the host contains it and applies
//! the tenant's failure mode (closed by default). `{"mode": M}` picks what every decision
//! does:
//!
//! | mode        | does                                                      |
//! |-------------|-----------------------------------------------------------|
//! | `loop`      | spins forever                                             |
//! | `memory`    | reserves memory in 4 MiB steps until it runs out          |
//! | `trap`      | panics                                                    |
//! | `oversized` | refuses with a 2 MiB reason (more than the host accepts)  |
//! | otherwise   | allows everything                                         |

use heliograph_plugin_sdk::prelude::*;

struct HostilePolicy;

fn misbehave() -> Option<String> {
    match config::get("mode").as_deref() {
        Some("loop") => loop {
            std::hint::black_box(0u64);
        },
        Some("memory") => {
            // Large reservations reach the host's memory cap within a few calls to
            // memory.grow, well before the call's deadline even on a busy machine.
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut chunk = Vec::with_capacity(4 << 20);
                chunk.push(0xA5u8);
                hoard.push(chunk);
                std::hint::black_box(&hoard);
            }
        }
        Some("trap") => panic!("hostile policy panics on purpose"),
        Some("oversized") => Some("x".repeat(2 << 20)),
        _ => None,
    }
}

impl RoomPolicy for HostilePolicy {
    fn create_room(_room: Room, _creator: RoomUser) -> Decision {
        misbehave().map_or(Decision::Allow, Decision::Deny)
    }

    fn join(_room: Room, _occupant: Occupant) -> JoinDecision {
        misbehave().map_or(JoinDecision::Default, JoinDecision::Deny)
    }

    fn message(_room: Room, _occupant: Occupant, _body: String) -> MessageDecision {
        misbehave().map_or(MessageDecision::Allow, MessageDecision::ReplaceBody)
    }

    fn configure(_room: Room, _actor: RoomUser, _new_config: Vec<(String, String)>) -> Decision {
        misbehave().map_or(Decision::Allow, Decision::Deny)
    }

    fn change_nick(_room: Room, _occupant: Occupant, _new_nick: String) -> Decision {
        misbehave().map_or(Decision::Allow, Decision::Deny)
    }
}

heliograph_plugin_sdk::room_policy!(HostilePolicy);
