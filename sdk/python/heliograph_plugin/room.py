"""The room-policy world as plain Python types (the Rust SDK's ``room.rs``): the room,
the user and the occupant a decision is about, and the decisions a policy returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class Role(IntEnum):
    """An occupant's role in a room (XEP-0045 section 5.1), lowest first."""

    NONE = 0
    VISITOR = 1
    PARTICIPANT = 2
    MODERATOR = 3


class Affiliation(IntEnum):
    """A user's affiliation with a room (XEP-0045 section 5.2), lowest first; ``OUTCAST``
    is banned."""

    OUTCAST = 0
    NONE = 1
    MEMBER = 2
    ADMIN = 3
    OWNER = 4


@dataclass
class Room:
    """The room a decision is about."""

    tenant: str
    #: The room's bare JID (``standup@conference.example.com``).
    jid: str
    #: The localpart of the JID (``standup``).
    name: str
    #: Occupants now, before the decided action.
    occupants: int
    #: ``muc#roomconfig`` (field var, value) pairs; multi-valued fields repeat the var.
    config: list[tuple[str, str]] = field(default_factory=list)

    @staticmethod
    def new(name: str, occupants: int) -> Room:
        """A room ``name@conference.example.com`` of tenant ``test``, for tests."""
        return Room("test", f"{name}@conference.example.com", name, occupants, [])

    def config_value(self, var: str) -> str | None:
        """The first value of a configuration field."""
        return next((v for k, v in self.config if k == var), None)


@dataclass
class RoomUser:
    """A user with what the tenant's authenticator returned at login (empty for built-in
    authentication)."""

    #: Full JID.
    jid: str
    roles: list[str] = field(default_factory=list)
    attributes: list[tuple[str, str]] = field(default_factory=list)

    def role(self, role: str) -> RoomUser:
        """Adds an authenticator role (for tests)."""
        self.roles.append(role)
        return self

    def attribute(self, key: str, value: str) -> RoomUser:
        """Adds an authenticator attribute (for tests)."""
        self.attributes.append((key, value))
        return self

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def attribute_value(self, key: str) -> str | None:
        return next((v for k, v in self.attributes if k == key), None)

    def bare_jid(self) -> str:
        return self.jid.split("/", 1)[0]


@dataclass
class Occupant:
    """A user in a room (or joining it)."""

    user: RoomUser
    nick: str
    #: The role the server would give (join) or has given.
    role: Role = Role.PARTICIPANT
    affiliation: Affiliation = Affiliation.NONE


@dataclass(frozen=True)
class Decision:
    """Allow or refuse; the reason is shown to the user. ``Decision.ALLOW``,
    ``Decision.deny(reason)``."""

    allowed: bool
    reason: str | None = None

    @staticmethod
    def deny(reason: str) -> Decision:
        return Decision(False, reason)


Decision.ALLOW = Decision(True)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class JoinDecision:
    """The outcome of a join: ``JoinDecision.DEFAULT`` (XEP-0045's role and affiliation),
    ``JoinDecision.allow(role=..., affiliation=...)``, ``JoinDecision.with_role(role)``,
    ``JoinDecision.deny(reason)``."""

    kind: str
    role: Role | None = None
    affiliation: Affiliation | None = None
    reason: str | None = None

    @staticmethod
    def allow(role: Role | None = None, affiliation: Affiliation | None = None) -> JoinDecision:
        return JoinDecision("allow", role, affiliation)

    @staticmethod
    def with_role(role: Role) -> JoinDecision:
        return JoinDecision("allow", role, None)

    @staticmethod
    def deny(reason: str) -> JoinDecision:
        return JoinDecision("deny", reason=reason)


JoinDecision.DEFAULT = JoinDecision("default")  # type: ignore[attr-defined]


@dataclass(frozen=True)
class MessageDecision:
    """The outcome of a groupchat message: ``MessageDecision.ALLOW``,
    ``MessageDecision.deny(reason)`` (the sender gets an error, nobody else sees it),
    ``MessageDecision.replace_body(body)``."""

    kind: str
    text: str | None = None

    @staticmethod
    def deny(reason: str) -> MessageDecision:
        return MessageDecision("deny", reason)

    @staticmethod
    def replace_body(body: str) -> MessageDecision:
        return MessageDecision("replace-body", body)


MessageDecision.ALLOW = MessageDecision("allow")  # type: ignore[attr-defined]


class RoomPolicy:
    """A plugin of the ``room-policy`` world. The server applies XEP-0045's own rules
    first and asks the policy about what they allow. Every method has a default that
    allows; implement the decisions you care about. Each call runs in a fresh instance."""

    def create_room(self, room: Room, creator: RoomUser) -> Decision:
        return Decision.ALLOW  # type: ignore[attr-defined]

    def join(self, room: Room, occupant: Occupant) -> JoinDecision:
        return JoinDecision.DEFAULT  # type: ignore[attr-defined]

    def message(self, room: Room, occupant: Occupant, body: str) -> MessageDecision:
        return MessageDecision.ALLOW  # type: ignore[attr-defined]

    def configure(self, room: Room, actor: RoomUser, new_config: list[tuple[str, str]]) -> Decision:
        return Decision.ALLOW  # type: ignore[attr-defined]

    def change_nick(self, room: Room, occupant: Occupant, new_nick: str) -> Decision:
        return Decision.ALLOW  # type: ignore[attr-defined]

    def init(self, config: str) -> None:
        """Called once at install with the configuration (JSON text); raise
        :class:`heliograph_plugin.ConfigRefused` to refuse it."""
