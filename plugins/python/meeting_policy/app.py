"""The meeting-room policy in Python: the twin of ``plugins/meeting-policy`` (Rust), with
the same configuration, run by the same host tests.

Configuration (all optional; an empty one allows everything XEP-0045 allows and makes
the first joiner of a room its moderator)::

    {
      "room_patterns":     ["team-*", "*-standup"],  # names rooms may have (* and ? globs)
      "max_participants":  20,                       # joins beyond are refused
      "moderator_if":      "role=host",              # KEY=VALUE: an authenticator role
                                                     # (KEY `role`) or attribute
      "max_message_bytes": 2000,                     # longer groupchat bodies are refused
      "redact_words":      ["secret"],               # replaced by asterisks in bodies
      "nick_changes":      "everyone",               # or "moderators" or "nobody"
      "locked_config":     {"muc#roomconfig_persistentroom": "0"}
    }
"""

from fnmatch import fnmatchcase

from heliograph_plugin import (
    ConfigRefused,
    Decision,
    JoinDecision,
    MessageDecision,
    Occupant,
    Role,
    Room,
    RoomPolicy,
    RoomUser,
    config,
    log,
    room_policy,
)


def glob_match(pattern: str, name: str) -> bool:
    """``*`` any run of characters, ``?`` one (no ``[...]`` classes, as in the Rust twin)."""
    escaped = pattern.replace("[", "[[]")
    return fnmatchcase(name, escaped)


def user_matches(user: RoomUser, rule: str) -> bool:
    """Whether the authenticator's facts about ``user`` match ``KEY=VALUE`` (the key
    ``role`` also matches the user's roles)."""
    if "=" not in rule:
        return False
    key, value = (part.strip() for part in rule.split("=", 1))
    return (key == "role" and user.has_role(value)) or (key, value) in user.attributes


def redact(body: str, words: list[str]) -> str | None:
    """``body`` with every case-insensitive occurrence of the words replaced by asterisks,
    or None if none occurs."""
    out, changed = body, False
    for word in (w for w in words if w):
        lower_word = word.lower()
        result, rest = [], out
        while True:
            lower = rest.lower()
            i = lower.find(lower_word)
            if i < 0 or len(lower) != len(rest):
                result.append(rest)
                break
            result.append(rest[:i] + "*" * len(word))
            rest = rest[i + len(word):]
            changed = True
        out = "".join(result)
    return out if changed else None


def number(key: str) -> int | None:
    value = config.get(key)
    if value is None:
        return None
    if not value.isdigit():
        raise ConfigRefused(f"`{key}` must be a non-negative integer, not {value}")
    return int(value)


def number_or_none(key: str) -> int | None:
    try:
        return number(key)
    except ConfigRefused:
        return None


@room_policy
class MeetingPolicy(RoomPolicy):
    def create_room(self, room: Room, creator: RoomUser) -> Decision:
        patterns = config.get_list("room_patterns")
        if not patterns or any(glob_match(p, room.name) for p in patterns):
            return Decision.ALLOW
        log.info("room name refused", room=room.jid, creator=creator.jid)
        return Decision.deny(f"room names must match {' or '.join(patterns)}")

    def join(self, room: Room, occupant: Occupant) -> JoinDecision:
        limit = number_or_none("max_participants")
        if limit is not None and room.occupants >= limit:
            return JoinDecision.deny(f"the meeting is full ({limit} participants)")
        rule = config.get("moderator_if")
        if room.occupants == 0 or (rule is not None and user_matches(occupant.user, rule)):
            return JoinDecision.with_role(Role.MODERATOR)
        if occupant.role == Role.MODERATOR:
            # XEP-0045 makes owners and admins moderators; keep that.
            return JoinDecision.DEFAULT
        return JoinDecision.with_role(Role.PARTICIPANT)

    def message(self, room: Room, occupant: Occupant, body: str) -> MessageDecision:
        limit = number_or_none("max_message_bytes")
        size = len(body.encode())
        if limit is not None and size > limit:
            return MessageDecision.deny(
                f"messages are limited to {limit} bytes (this one has {size})"
            )
        redacted = redact(body, config.get_list("redact_words"))
        return MessageDecision.ALLOW if redacted is None else MessageDecision.replace_body(redacted)

    def configure(self, room: Room, actor: RoomUser, new_config: list[tuple[str, str]]) -> Decision:
        for var, locked in config.with_prefix("locked_config"):
            value = next((v for k, v in new_config if k == var), None)
            if value is not None and value != locked:
                return Decision.deny(f"{var} is fixed to {locked} for meetings")
        return Decision.ALLOW

    def change_nick(self, room: Room, occupant: Occupant, new_nick: str) -> Decision:
        rule = config.get("nick_changes")
        if rule in (None, "everyone"):
            return Decision.ALLOW
        if rule == "moderators":
            if occupant.role == Role.MODERATOR:
                return Decision.ALLOW
            return Decision.deny("only moderators may change their nickname")
        return Decision.deny("nicknames cannot be changed in meetings")

    def init(self, config_json: str) -> None:
        number("max_participants")
        number("max_message_bytes")
        rule = config.get("moderator_if")
        if rule is not None and "=" not in rule:
            raise ConfigRefused(f"`moderator_if` must be KEY=VALUE, not {rule!r}")
        nick = config.get("nick_changes")
        if nick not in (None, "everyone", "moderators", "nobody"):
            raise ConfigRefused(
                f"`nick_changes` must be everyone, moderators or nobody, not {nick!r}"
            )
