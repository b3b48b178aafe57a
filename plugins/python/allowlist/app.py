"""The allowlist authenticator in Python: the twin of ``plugins/allowlist`` (Rust), with
the same configuration and key-value data, run by the same host tests.

Configuration (all optional)::

    {
      "users":         {"alice": "sha256$SALT$HEX"},   # HEX = sha256(SALT + password)
      "allow":         ["alice", "bob"],               # only these may log in
      "disabled":      ["carol"],                      # account-disabled
      "roles":         {"alice": "moderator,member"},
      "display_names": {"alice": "Alice Liddell"},
      "require_tls":   true,                           # default true
      "lowercase":     true,                           # canonical usernames, default true
      "policy":        "v1",                           # returned as attribute "policy"
      "seed_kv":       {"dave": "sha256$SALT$HEX"}     # written to the key-value store by init
    }

Key-value data: ``user/NAME`` = ``sha256$SALT$HEX`` adds password users at runtime,
``token/TOKEN`` = ``NAME`` accepts a bearer token for NAME.
"""

import hashlib
import hmac

from heliograph_plugin import (
    AccountDisabled,
    Authenticator,
    AuthRequest,
    ConfigRefused,
    Mechanism,
    NotAuthorized,
    TemporaryFailure,
    User,
    authenticator,
    config,
    kv,
    log,
)
from heliograph_plugin.kv import KvError


def parse(stored: str):
    """``sha256$SALT$HEX`` -> (salt, hex), or None."""
    parts = stored.split("$")
    if len(parts) != 3 or parts[0] != "sha256":
        return None
    salt, digest = parts[1], parts[2]
    if len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
        return None
    return salt, digest


def hash_password(salt: str, password: str) -> str:
    """The stored form of ``password`` with ``salt``."""
    return f"sha256${salt}${hashlib.sha256((salt + password).encode()).hexdigest()}"


def verify(stored: str, password: str) -> bool:
    parsed = parse(stored)
    if parsed is None:
        return False
    return hmac.compare_digest(hash_password(parsed[0], password), stored)


@authenticator
class AllowList(Authenticator):
    def authenticate(self, request: AuthRequest) -> User:
        if config.get_bool("require_tls", True) and not request.connection.tls:
            log.warn("refused: no TLS", user=request.username)
            raise NotAuthorized()
        name = request.username.lower() if config.get_bool("lowercase", True) else request.username
        allow = config.get_list("allow")
        if allow and name not in allow:
            raise NotAuthorized()
        try:
            if request.mechanism is Mechanism.PASSWORD:
                stored = config.get(f"users.{name}")
                if stored is None:
                    stored = kv.get_string(f"user/{name}")
                verified = stored is not None and verify(stored, request.credential)
            else:
                verified = kv.get_string(f"token/{request.credential}") == name
        except KvError as e:
            raise TemporaryFailure(str(e)) from None
        if not verified:
            raise NotAuthorized()
        if name in config.get_list("disabled"):
            raise AccountDisabled()
        user = User(name, display_name=config.get(f"display_names.{name}"))
        for role in (config.get(f"roles.{name}") or "").split(","):
            if role.strip():
                user.role(role.strip())
        policy = config.get("policy")
        if policy is not None:
            user.attribute("policy", policy)
        return user

    def init(self, config_json: str) -> None:
        for name, stored in config.with_prefix("users"):
            if parse(stored) is None:
                raise ConfigRefused(f"users.{name}: expected sha256$SALT$HEX")
        for name, stored in config.with_prefix("seed_kv"):
            if parse(stored) is None:
                raise ConfigRefused(f"seed_kv.{name}: expected sha256$SALT$HEX")
            try:
                kv.set(f"user/{name}", stored)
            except KvError as e:
                raise ConfigRefused(str(e)) from None
