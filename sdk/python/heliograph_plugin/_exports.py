"""The class decorators that export a plugin (the Rust SDK's ``authenticator!``,
``room_policy!`` and ``component!`` macros).

componentize-py calls the classes named after the world's exported interfaces in the
app module (``Authentication``, ``RoomDecisions``, ``StanzaHandler``, and
``Lifecycle``); the decorators define them in the module of the decorated class, with
the conversions between the generated WIT types (``wit_world``) and this package's.
Outside a component (unit tests) they only mark the class and return it unchanged.
"""

from __future__ import annotations

import sys

from ._backend import IN_COMPONENT
from .component import Refuse, Stanza, StanzaKind
from .room import Affiliation, Occupant, Role, Room, RoomUser
from .types import (
    AccountDisabled,
    AuthRequest,
    ConfigRefused,
    Connection,
    Mechanism,
    NotAuthorized,
    TemporaryFailure,
    Transport,
)


def _define(cls, **exports):
    """Puts ``exports`` into the decorated class's module."""
    module = sys.modules[cls.__module__]
    for name, value in exports.items():
        setattr(module, name, value)
    return cls


# The decorators run when componentize-py pre-initializes the app module (at build
# time): the generated bindings are imported then, since nothing can be imported at
# run time (the component has no file system).


def _lifecycle(cls, err):
    class Lifecycle:
        def init(self, config: str) -> None:
            try:
                cls().init(config)
            except ConfigRefused as e:
                raise err(e.message) from None

    return Lifecycle


def _pairs(kvs):
    return [(kv.key, kv.value) for kv in kvs]


def authenticator(cls):
    """Exports a subclass of :class:`heliograph_plugin.Authenticator` (use it once)."""
    if not IN_COMPONENT:
        return cls
    from componentize_py_types import Err
    from wit_world.imports import auth_types, types

    class Authentication:
        def authenticate(self, request):
            c = request.connection
            ours = AuthRequest(
                tenant=request.tenant,
                domain=request.domain,
                mechanism=list(Mechanism)[request.mechanism.value],
                username=request.username,
                credential=request.credential,
                connection=Connection(
                    c.client_address, list(Transport)[c.transport.value], c.tls
                ),
            )
            try:
                user = cls().authenticate(ours)
            except NotAuthorized:
                raise Err(auth_types.AuthFailure_NotAuthorized()) from None
            except AccountDisabled:
                raise Err(auth_types.AuthFailure_AccountDisabled()) from None
            except TemporaryFailure as e:
                raise Err(auth_types.AuthFailure_TemporaryFailure(e.reason)) from None
            return auth_types.User(
                user.username,
                user.display_name,
                list(user.roles),
                user.expires_at,
                [types.KeyValue(k, v) for k, v in user.attributes],
            )

    return _define(cls, Authentication=Authentication, Lifecycle=_lifecycle(cls, Err))


def _room(r):
    return Room(r.tenant, r.jid, r.name, r.occupants, _pairs(r.config))


def _user(u):
    return RoomUser(u.jid, list(u.roles), _pairs(u.attributes))


def _occupant(o):
    return Occupant(_user(o.user), o.nick, Role(o.role.value), Affiliation(o.affiliation.value))


def room_policy(cls):
    """Exports a subclass of :class:`heliograph_plugin.RoomPolicy` (use it once)."""
    if not IN_COMPONENT:
        return cls
    from componentize_py_types import Err
    from wit_world.imports import room_types as rt

    def decision(d):
        return rt.Decision_Allow() if d.allowed else rt.Decision_Deny(d.reason or "")

    class RoomDecisions:
        def create_room(self, room, creator):
            return decision(cls().create_room(_room(room), _user(creator)))

        def join(self, room, occupant):
            d = cls().join(_room(room), _occupant(occupant))
            if d.kind == "default":
                return rt.JoinDecision_Default()
            if d.kind == "deny":
                return rt.JoinDecision_Deny(d.reason or "")
            role = None if d.role is None else rt.Role(int(d.role))
            aff = None if d.affiliation is None else rt.Affiliation(int(d.affiliation))
            return rt.JoinDecision_Allow(rt.JoinGrant(role, aff))

        def message(self, room, occupant, body):
            d = cls().message(_room(room), _occupant(occupant), body)
            if d.kind == "deny":
                return rt.MessageDecision_Deny(d.text or "")
            if d.kind == "replace-body":
                return rt.MessageDecision_ReplaceBody(d.text or "")
            return rt.MessageDecision_Allow()

        def configure(self, room, actor, new_config):
            return decision(cls().configure(_room(room), _user(actor), _pairs(new_config)))

        def change_nick(self, room, occupant, new_nick):
            return decision(cls().change_nick(_room(room), _occupant(occupant), new_nick))

    return _define(cls, RoomDecisions=RoomDecisions, Lifecycle=_lifecycle(cls, Err))


def component(cls):
    """Exports a subclass of :class:`heliograph_plugin.Component` (use it once)."""
    if not IN_COMPONENT:
        return cls
    from componentize_py_types import Err

    class StanzaHandler:
        def handle(self, stanza):
            ours = Stanza(
                kind=list(StanzaKind)[stanza.kind.value],
                from_=stanza.from_,
                to=stanza.to,
                type=stanza.type,
                id=stanza.id,
                domain=stanza.domain,
                xml=stanza.xml,
            )
            try:
                return list(cls().handle(ours))
            except Refuse as e:
                raise Err(e.reason) from None

    return _define(cls, StanzaHandler=StanzaHandler, Lifecycle=_lifecycle(cls, Err))
