//! A meeting-room policy for Heliograph (the `room-policy` world).
//!
//! Configuration (all optional; an empty configuration allows everything that XEP-0045
//! allows and makes the first joiner of a room its moderator):
//!
//! ```json
//! {
//!   "room_patterns":     ["team-*", "*-standup"],  // names rooms may have (* and ? globs)
//!   "max_participants":  20,                       // joins beyond are refused
//!   "moderator_if":      "role=host",              // KEY=VALUE: an authenticator role (KEY
//!                                                  // `role`) or attribute makes a moderator
//!   "max_message_bytes": 2000,                     // longer groupchat bodies are refused
//!   "redact_words":      ["secret"],               // replaced by asterisks in bodies
//!   "nick_changes":      "everyone",               // or "moderators" or "nobody"
//!   "locked_config":     {"muc#roomconfig_persistentroom": "0"}  // values owners may not change
//! }
//! ```
//!
//! Joins: the first occupant of a room and users matching `moderator_if` join as
//! moderators, everyone else as a participant.

use heliograph_plugin_sdk::prelude::*;

pub struct MeetingPolicy;

/// Whether `name` matches the glob `pattern` (`*` any run of characters, `?` one).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matching with one backtrack point for the last `*`: linear in practice.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Whether the authenticator's facts about `user` match `rule` (`KEY=VALUE`; the key
/// `role` also matches the user's roles).
pub fn user_matches(user: &RoomUser, rule: &str) -> bool {
    let Some((key, value)) = rule.split_once('=') else {
        return false;
    };
    let (key, value) = (key.trim(), value.trim());
    (key == "role" && user.has_role(value))
        || user.attributes.iter().any(|(k, v)| k == key && v == value)
}

/// `body` with every case-insensitive occurrence of the words replaced by asterisks, or
/// `None` if none occurs.
pub fn redact(body: &str, words: &[String]) -> Option<String> {
    let mut out = body.to_string();
    let mut changed = false;
    for word in words.iter().filter(|w| !w.is_empty()) {
        let lower_word = word.to_lowercase();
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        loop {
            let lower = rest.to_lowercase();
            // Lower-casing can change byte lengths outside ASCII; only redact when the
            // match maps back to the same byte offsets.
            match lower.find(&lower_word) {
                Some(i) if lower.len() == rest.len() && rest.is_char_boundary(i + word.len()) => {
                    result.push_str(&rest[..i]);
                    result.push_str(&"*".repeat(word.chars().count()));
                    rest = &rest[i + word.len()..];
                    changed = true;
                }
                _ => {
                    result.push_str(rest);
                    break;
                }
            }
        }
        out = result;
    }
    changed.then_some(out)
}

fn number(key: &str) -> Result<Option<u64>, String> {
    match config::get(key) {
        None => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("`{key}` must be a non-negative integer, not {v}")),
    }
}

impl RoomPolicy for MeetingPolicy {
    fn create_room(room: Room, creator: RoomUser) -> Decision {
        let patterns = config::get_list("room_patterns");
        if patterns.is_empty() || patterns.iter().any(|p| glob_match(p, &room.name)) {
            return Decision::Allow;
        }
        log::info(
            "room name refused",
            &[("room", &room.jid), ("creator", &creator.jid)],
        );
        Decision::deny(format!("room names must match {}", patterns.join(" or ")))
    }

    fn join(room: Room, occupant: Occupant) -> JoinDecision {
        if let Ok(Some(max)) = number("max_participants")
            && u64::from(room.occupants) >= max
        {
            return JoinDecision::deny(format!("the meeting is full ({max} participants)"));
        }
        let moderator = room.occupants == 0
            || config::get("moderator_if").is_some_and(|rule| user_matches(&occupant.user, &rule));
        if moderator {
            JoinDecision::with_role(Role::Moderator)
        } else if occupant.role == Role::Moderator {
            // XEP-0045 makes owners and admins moderators; keep that.
            JoinDecision::Default
        } else {
            JoinDecision::with_role(Role::Participant)
        }
    }

    fn message(_room: Room, _occupant: Occupant, body: String) -> MessageDecision {
        if let Ok(Some(max)) = number("max_message_bytes")
            && body.len() as u64 > max
        {
            return MessageDecision::deny(format!(
                "messages are limited to {max} bytes (this one has {})",
                body.len()
            ));
        }
        match redact(&body, &config::get_list("redact_words")) {
            Some(redacted) => MessageDecision::ReplaceBody(redacted),
            None => MessageDecision::Allow,
        }
    }

    fn configure(_room: Room, _actor: RoomUser, new_config: Vec<(String, String)>) -> Decision {
        for (var, locked) in config::with_prefix("locked_config") {
            if let Some((_, value)) = new_config.iter().find(|(k, _)| *k == var)
                && *value != locked
            {
                return Decision::deny(format!("{var} is fixed to {locked} for meetings"));
            }
        }
        Decision::Allow
    }

    fn change_nick(_room: Room, occupant: Occupant, _new_nick: String) -> Decision {
        match config::get("nick_changes").as_deref() {
            None | Some("everyone") => Decision::Allow,
            Some("moderators") if occupant.role == Role::Moderator => Decision::Allow,
            Some("moderators") => Decision::deny("only moderators may change their nickname"),
            _ => Decision::deny("nicknames cannot be changed in meetings"),
        }
    }

    fn init(_config: &str) -> Result<(), String> {
        number("max_participants")?;
        number("max_message_bytes")?;
        if let Some(rule) = config::get("moderator_if")
            && !rule.contains('=')
        {
            return Err(format!("`moderator_if` must be KEY=VALUE, not {rule:?}"));
        }
        match config::get("nick_changes").as_deref() {
            None | Some("everyone" | "moderators" | "nobody") => {}
            Some(other) => {
                return Err(format!(
                    "`nick_changes` must be everyone, moderators or nobody, not {other:?}"
                ));
            }
        }
        Ok(())
    }
}

heliograph_plugin_sdk::room_policy!(MeetingPolicy);

#[cfg(test)]
mod tests {
    use super::*;
    use heliograph_plugin_sdk::testing::FakeHost;

    fn host() -> FakeHost {
        FakeHost::new()
            .config_json(
                r#"{"room_patterns": ["team-*", "*-standup"], "max_participants": 3,
                    "moderator_if": "role=host", "max_message_bytes": 20,
                    "redact_words": ["secret"], "nick_changes": "moderators",
                    "locked_config": {"muc#roomconfig_persistentroom": "0"}}"#,
            )
            .install()
    }

    fn someone(jid: &str) -> Occupant {
        Occupant::new(RoomUser::new(jid), "nick")
    }

    #[test]
    fn globs() {
        assert!(glob_match("team-*", "team-a"));
        assert!(glob_match("team-*", "team-"));
        assert!(!glob_match("team-*", "xteam-a"));
        assert!(glob_match("*-standup", "daily-standup"));
        assert!(glob_match("r?om", "room"));
        assert!(!glob_match("r?om", "rooom"));
        assert!(glob_match("*a*b*", "xxaxxbxx"));
        assert!(!glob_match("*a*b", "xxaxxbxx"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("", "a"));
    }

    #[test]
    fn room_names_follow_the_patterns() {
        let _h = host();
        let alice = RoomUser::new("alice@example.com/a");
        assert_eq!(
            MeetingPolicy::create_room(Room::new("team-blue", 0), alice.clone()),
            Decision::Allow
        );
        assert_eq!(
            MeetingPolicy::create_room(Room::new("daily-standup", 0), alice.clone()),
            Decision::Allow
        );
        assert_eq!(
            MeetingPolicy::create_room(Room::new("party", 0), alice),
            Decision::deny("room names must match team-* or *-standup")
        );
    }

    #[test]
    fn without_configuration_everything_is_allowed_and_the_first_joiner_moderates() {
        let _h = FakeHost::new().install();
        assert_eq!(
            MeetingPolicy::create_room(Room::new("anything", 0), RoomUser::new("a@x/r")),
            Decision::Allow
        );
        assert_eq!(
            MeetingPolicy::join(Room::new("anything", 0), someone("a@x/r")),
            JoinDecision::with_role(Role::Moderator)
        );
        assert_eq!(
            MeetingPolicy::join(Room::new("anything", 500), someone("b@x/r")),
            JoinDecision::with_role(Role::Participant)
        );
        let long = "x".repeat(100_000);
        assert_eq!(
            MeetingPolicy::message(Room::new("anything", 1), someone("a@x/r"), long),
            MessageDecision::Allow
        );
    }

    #[test]
    fn joins_first_joiner_and_hosts_moderate_until_full() {
        let _h = host();
        assert_eq!(
            MeetingPolicy::join(Room::new("team-a", 0), someone("a@x/r")),
            JoinDecision::with_role(Role::Moderator)
        );
        assert_eq!(
            MeetingPolicy::join(Room::new("team-a", 1), someone("b@x/r")),
            JoinDecision::with_role(Role::Participant)
        );
        let host_user = Occupant::new(RoomUser::new("h@x/r").role("host"), "h");
        assert_eq!(
            MeetingPolicy::join(Room::new("team-a", 2), host_user.clone()),
            JoinDecision::with_role(Role::Moderator)
        );
        let attr_user = Occupant::new(RoomUser::new("h@x/r").attribute("role", "host"), "h");
        assert_eq!(
            MeetingPolicy::join(Room::new("team-a", 2), attr_user),
            JoinDecision::with_role(Role::Moderator)
        );
        assert_eq!(
            MeetingPolicy::join(Room::new("team-a", 3), host_user),
            JoinDecision::deny("the meeting is full (3 participants)")
        );
        let mut owner = someone("o@x/r");
        owner.role = Role::Moderator;
        owner.affiliation = Affiliation::Owner;
        assert_eq!(
            MeetingPolicy::join(Room::new("team-a", 1), owner),
            JoinDecision::Default
        );
    }

    #[test]
    fn messages_size_and_redaction() {
        let _h = host();
        let room = || Room::new("team-a", 2);
        assert_eq!(
            MeetingPolicy::message(room(), someone("a@x/r"), "hello".into()),
            MessageDecision::Allow
        );
        assert_eq!(
            MeetingPolicy::message(room(), someone("a@x/r"), "x".repeat(21)),
            MessageDecision::deny("messages are limited to 20 bytes (this one has 21)")
        );
        assert_eq!(
            MeetingPolicy::message(room(), someone("a@x/r"), "my SECRET plan".into()),
            MessageDecision::ReplaceBody("my ****** plan".into())
        );
        assert_eq!(
            redact("secret secret", &["secret".into()]).as_deref(),
            Some("****** ******")
        );
        assert_eq!(redact("nothing here", &["secret".into()]), None);
    }

    #[test]
    fn nick_and_configuration_changes() {
        let _h = host();
        let mut moderator = someone("a@x/r");
        moderator.role = Role::Moderator;
        assert_eq!(
            MeetingPolicy::change_nick(Room::new("team-a", 2), moderator, "new".into()),
            Decision::Allow
        );
        assert_eq!(
            MeetingPolicy::change_nick(Room::new("team-a", 2), someone("b@x/r"), "new".into()),
            Decision::deny("only moderators may change their nickname")
        );
        let owner = RoomUser::new("a@x/r");
        let cfg = |v: &str| {
            vec![
                ("muc#roomconfig_roomname".to_string(), "Team".to_string()),
                ("muc#roomconfig_persistentroom".to_string(), v.to_string()),
            ]
        };
        assert_eq!(
            MeetingPolicy::configure(Room::new("team-a", 1), owner.clone(), cfg("0")),
            Decision::Allow
        );
        assert_eq!(
            MeetingPolicy::configure(Room::new("team-a", 1), owner, cfg("1")),
            Decision::deny("muc#roomconfig_persistentroom is fixed to 0 for meetings")
        );
    }

    #[test]
    fn init_checks_the_configuration() {
        let _h = host();
        assert_eq!(MeetingPolicy::init("{}"), Ok(()));
        let _h = FakeHost::new()
            .config_json(r#"{"max_participants": "many"}"#)
            .install();
        assert!(
            MeetingPolicy::init("")
                .unwrap_err()
                .contains("max_participants")
        );
        let _h = FakeHost::new()
            .config_json(r#"{"moderator_if": "host"}"#)
            .install();
        assert!(MeetingPolicy::init("").unwrap_err().contains("KEY=VALUE"));
        let _h = FakeHost::new()
            .config_json(r#"{"nick_changes": "sometimes"}"#)
            .install();
        assert!(
            MeetingPolicy::init("")
                .unwrap_err()
                .contains("nick_changes")
        );
    }
}
