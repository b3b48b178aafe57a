"""The authenticator world as plain Python types (the Rust SDK's ``types.rs``)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum


class Mechanism(Enum):
    """How the client proves who it is."""

    PASSWORD = "password"
    TOKEN = "token"


class Transport(Enum):
    """The transport the client connected over."""

    TCP = "tcp"
    BOSH = "bosh"
    WEBSOCKET = "websocket"


@dataclass(frozen=True)
class Connection:
    """Facts about the client's connection."""

    client_address: str | None
    transport: Transport
    #: Whether the connection is encrypted with TLS.
    tls: bool


@dataclass(frozen=True)
class AuthRequest:
    """One authentication attempt."""

    tenant: str
    domain: str
    mechanism: Mechanism
    #: The username as the client sent it (not normalized).
    username: str
    #: The password or token.
    credential: str
    connection: Connection

    @staticmethod
    def password(username: str, password: str) -> AuthRequest:
        """A password attempt over TLS on TCP from 127.0.0.1 (tenant ``test``, domain
        ``example.com``), for tests."""
        return AuthRequest(
            tenant="test",
            domain="example.com",
            mechanism=Mechanism.PASSWORD,
            username=username,
            credential=password,
            connection=Connection("127.0.0.1", Transport.TCP, True),
        )

    @staticmethod
    def token(username: str, token: str) -> AuthRequest:
        """Like :meth:`password`, with a token."""
        return replace(AuthRequest.password(username, token), mechanism=Mechanism.TOKEN)

    def without_tls(self) -> AuthRequest:
        """The same request over a plain (unencrypted) connection."""
        return replace(self, connection=replace(self.connection, tls=False))


@dataclass
class User:
    """The authenticated user: ``User("alice", display_name="Alice").role("member")``."""

    #: The canonical username (localpart) the session is bound to.
    username: str
    display_name: str | None = None
    roles: list[str] = field(default_factory=list)
    #: Seconds since the Unix epoch when the login stops being valid.
    expires_at: int | None = None
    attributes: list[tuple[str, str]] = field(default_factory=list)

    def role(self, role: str) -> User:
        """Adds an application role (room policies see it)."""
        self.roles.append(role)
        return self

    def attribute(self, key: str, value: str) -> User:
        """Adds an attribute for the tenant's other plugins."""
        self.attributes.append((key, value))
        return self


class AuthFailure(Exception):
    """Why authentication did not succeed: raise one of its subclasses."""


class NotAuthorized(AuthFailure):
    """Wrong username or credential (SASL ``not-authorized``)."""


class AccountDisabled(AuthFailure):
    """The account may not log in (SASL ``account-disabled``)."""


class TemporaryFailure(AuthFailure):
    """Cannot decide now; the reason goes to the server log (SASL
    ``temporary-auth-failure``)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ConfigRefused(Exception):
    """Raised by ``init``: the install is refused with this message and the previous
    version keeps serving."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Authenticator:
    """A plugin of the ``authenticator`` world. Each call runs in a fresh instance, so
    keep state in :mod:`heliograph_plugin.kv`, not in globals."""

    def authenticate(self, request: AuthRequest) -> User:
        """Verifies one credential: returns the user, or raises an :class:`AuthFailure`."""
        raise NotImplementedError

    def init(self, config: str) -> None:
        """Called once when the plugin is installed, with its configuration (JSON text).
        Raise :class:`ConfigRefused` to refuse it. The default accepts anything."""
