"""my-auth: a Heliograph authenticator in Python (WIT world ``authenticator``).

Configuration: ``{"users": {"alice": "secret"}}``. Plain passwords keep the example
short; store salted hashes in a real plugin (see heliograph's plugins/python/allowlist).
"""

from heliograph_plugin import (
    AuthRequest,
    Authenticator,
    ConfigRefused,
    NotAuthorized,
    User,
    authenticator,
    config,
    log,
)


@authenticator
class MyAuth(Authenticator):
    def authenticate(self, request: AuthRequest) -> User:
        expected = config.get(f"users.{request.username}")
        if expected is None or not request.connection.tls or request.credential != expected:
            raise NotAuthorized()
        log.info("login", user=request.username)
        return User(request.username).role("member")

    def init(self, config_json: str) -> None:
        # The configuration is readable here too: refuse one without users.
        if not config.with_prefix("users"):
            raise ConfigRefused("the configuration has no users")
