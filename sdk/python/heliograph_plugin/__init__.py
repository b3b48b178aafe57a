"""Write Heliograph plugins in Python (componentize-py), the way the Rust SDK writes them.

A plugin is a class implementing one world, exported with a class decorator at the top of
the module componentize-py builds (``app.py``)::

    from heliograph_plugin import Authenticator, AuthRequest, NotAuthorized, User, authenticator
    from heliograph_plugin import config, log

    @authenticator
    class MyAuth(Authenticator):
        def authenticate(self, request: AuthRequest) -> User:
            if config.get(f"users.{request.username}") != request.credential:
                raise NotAuthorized()
            log.info("login", user=request.username)
            return User(request.username).role("member")

The same types and host API as the Rust SDK (``heliograph-plugin-sdk``):

- authenticator: :class:`Authenticator`, :class:`AuthRequest`, :class:`User`, and the
  failures :class:`NotAuthorized`, :class:`AccountDisabled`, :class:`TemporaryFailure`
  (raised; the Rust SDK returns ``Err(AuthFailure::...)``);
- room policy: :class:`RoomPolicy`, :class:`Room`, :class:`RoomUser`, :class:`Occupant`,
  :class:`Role`, :class:`Affiliation`, :class:`Decision`, :class:`JoinDecision`,
  :class:`MessageDecision`;
- component: :class:`Component`, :class:`Stanza`, :class:`StanzaKind`, :class:`Refuse`;
- the host API: :mod:`config`, :mod:`kv`, :mod:`log`; outside the component (your unit
  tests) they talk to :class:`heliograph_plugin.testing.FakeHost`.

Every world may implement ``init(self, config: str)``: it runs once at install, and
raising :class:`ConfigRefused` refuses the install with its message.
"""

from . import config, kv, log
from ._exports import authenticator, component, room_policy
from .component import Component, Refuse, Stanza, StanzaKind
from .room import (
    Affiliation,
    Decision,
    JoinDecision,
    MessageDecision,
    Occupant,
    Role,
    Room,
    RoomPolicy,
    RoomUser,
)
from .types import (
    AccountDisabled,
    AuthFailure,
    Authenticator,
    AuthRequest,
    ConfigRefused,
    Connection,
    Mechanism,
    NotAuthorized,
    TemporaryFailure,
    Transport,
    User,
)

#: The version of this package (the Rust SDK's version).
__version__ = "0.1.1"

__all__ = [
    "AccountDisabled",
    "Affiliation",
    "AuthFailure",
    "AuthRequest",
    "Authenticator",
    "Component",
    "ConfigRefused",
    "Connection",
    "Decision",
    "JoinDecision",
    "Mechanism",
    "MessageDecision",
    "NotAuthorized",
    "Occupant",
    "Refuse",
    "Role",
    "Room",
    "RoomPolicy",
    "RoomUser",
    "Stanza",
    "StanzaKind",
    "TemporaryFailure",
    "Transport",
    "User",
    "authenticator",
    "component",
    "config",
    "kv",
    "log",
    "room_policy",
]
