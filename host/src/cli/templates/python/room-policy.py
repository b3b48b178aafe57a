"""{{name}}: a Heliograph room policy in Python (WIT world ``room-policy``): room names
start with ``team-``, meetings hold ``max_participants`` (configuration, default 20),
hosts (users whose authenticator gave them the role ``host``) and the first joiner
moderate."""

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
    room_policy,
)


def max_participants() -> int:
    value = config.get("max_participants")
    return int(value) if value is not None and value.isdigit() else 20


@room_policy
class {{Type}}(RoomPolicy):
    def create_room(self, room: Room, creator: RoomUser) -> Decision:
        if room.name.startswith("team-"):
            return Decision.ALLOW
        return Decision.deny("room names must start with team-")

    def join(self, room: Room, occupant: Occupant) -> JoinDecision:
        if room.occupants >= max_participants():
            return JoinDecision.deny("the meeting is full")
        if room.occupants == 0 or occupant.user.has_role("host"):
            return JoinDecision.with_role(Role.MODERATOR)
        return JoinDecision.DEFAULT

    def message(self, room: Room, occupant: Occupant, body: str) -> MessageDecision:
        if len(body.encode()) > 2000:
            return MessageDecision.deny("too long")
        return MessageDecision.ALLOW

    def configure(self, room: Room, actor: RoomUser, new_config: list[tuple[str, str]]) -> Decision:
        return Decision.ALLOW  # owners may configure their rooms

    def change_nick(self, room: Room, occupant: Occupant, new_nick: str) -> Decision:
        if not new_nick.strip():
            return Decision.deny("a nickname cannot be blank")
        return Decision.ALLOW

    def init(self, config_json: str) -> None:
        value = config.get("max_participants")
        if value is not None and not value.isdigit():
            raise ConfigRefused(f"max_participants must be a number, not {value}")
