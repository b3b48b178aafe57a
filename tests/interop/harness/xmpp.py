"""slixmpp clients for tests: connect, wait for things, disconnect — all bounded.

All clients of one test live on the event loop that runs that test (see the
async runner in ``conftest.py``). Use them through the ``xmpp`` fixture, which
disconnects every client it made when the test ends, pass or fail::

    async def test_hello(server, xmpp):
        server.create_user("alice", "pw")
        server.create_user("bob", "pw")
        alice = await xmpp.connect(server, "alice", "pw")
        bob = await xmpp.connect(server, "bob", "pw")
        alice.send_message(mto=bob.jid, mbody="hi", mtype="chat")
        msg = await bob.next_message()
        assert msg["body"] == "hi"

Every ``await`` here takes a ``timeout`` (default ``WAIT``) and raises
``asyncio.TimeoutError`` rather than hanging. Waiting for one stanza leaves
other unclaimed ones in place (see Inbox), so the order of waits in a test
need not match the exact order of arrival.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

import slixmpp

log = logging.getLogger(__name__)

WAIT = 10.0  # default seconds for any single wait

# Plugins every test client loads. Add here if many tests need one; a single
# test can pass plugins=[...] to connect().
DEFAULT_PLUGINS = ("xep_0030", "xep_0191", "xep_0199", "xep_0203")


def insecure_ssl_context() -> ssl.SSLContext:
    """The server's certificate is self-signed: accept anything (tests only)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class LoginFailed(AssertionError):
    """The session did not start; ``reason`` says which event ended the attempt."""

    def __init__(self, reason: str, detail: Any = None):
        super().__init__(f"login failed: {reason} {detail if detail is not None else ''}".strip())
        self.reason = reason
        self.detail = detail


class Inbox:
    """Received stanzas of one kind, taken out by predicate in arrival order.

    Unlike a queue, waiting for one kind of stanza does not throw away the
    others: ``take(pred)`` removes and returns the oldest item matching
    ``pred`` and leaves everything else for later ``take`` calls.
    """

    def __init__(self, what: str):
        self.what = what
        self.items: list = []
        self._changed = asyncio.Event()

    def put(self, item) -> None:
        self.items.append(item)
        self._changed.set()

    def _pop_match(self, predicate: Callable | None):
        for i, item in enumerate(self.items):
            if predicate is None or predicate(item):
                return self.items.pop(i)
        return None

    async def take(self, predicate: Callable | None = None, timeout: float = WAIT,
                   description: str | None = None):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            item = self._pop_match(predicate)
            if item is not None:
                return item
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise asyncio.TimeoutError(
                    f"no {description or self.what} within {timeout}s; "
                    f"unclaimed {self.what}s: {[str(i) for i in self.items][:10]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass


class Client(slixmpp.ClientXMPP):
    """A ClientXMPP that records what it receives in inboxes.

    Inboxes (see Inbox; each item is the slixmpp stanza):
      ``messages``  – messages with a body, except type="error"
      ``errors``    – message errors (type="error")
      ``presences`` – every presence stanza, subscription ones included

    Subscription requests are NOT auto-answered (``auto_authorize=None``), so
    tests drive the handshake explicitly.
    """

    def __init__(self, jid: str, password: str, *, mech: str | None = None,
                 plugins: tuple[str, ...] = DEFAULT_PLUGINS):
        plugin_config = {}
        if mech:
            # slixmpp.features.feature_mechanisms: with use_mech set, only that
            # mechanism is tried; a failure then ends with failed_all_auth.
            plugin_config["feature_mechanisms"] = {"use_mech": mech}
        super().__init__(jid, password, plugin_config=plugin_config)
        self.ssl_context = insecure_ssl_context()
        self.auto_authorize = None
        self.auto_subscribe = False
        for name in plugins:
            self.register_plugin(name)

        self.messages = Inbox("message")
        self.errors = Inbox("message error")
        self.presences = Inbox("presence")
        self.stream_errors: list = []
        self.add_event_handler("message", self._on_message)
        self.add_event_handler("message_error", self.errors.put)
        self.add_event_handler("presence", self.presences.put)
        self.add_event_handler("stream_error", self.stream_errors.append)

        # Resolved by the first of: session_start / auth failure / disconnect.
        self._login: asyncio.Future = asyncio.get_running_loop().create_future()
        self.add_event_handler("session_start", lambda _: self._settle_login(None))
        self.add_event_handler("failed_all_auth", lambda e: self._settle_login(LoginFailed("failed_all_auth", e)))
        self.add_event_handler("failed_auth", lambda e: self._settle_login(LoginFailed("failed_auth", e)))
        self.add_event_handler("no_auth", lambda e: self._settle_login(LoginFailed("no_auth", e)))
        self.add_event_handler("disconnected", lambda e: self._settle_login(LoginFailed("disconnected", e)))
        self.add_event_handler("stream_error", lambda e: self._settle_login(LoginFailed("stream_error", e)))
        self.add_event_handler("ssl_invalid_chain", lambda e: self._settle_login(LoginFailed("ssl_invalid_chain", e)))
        # A refused/failed TCP connect: slixmpp would silently retry with back-off.
        self.add_event_handler("connection_failed", lambda e: self._settle_login(LoginFailed("connection_failed", e)))

    def _on_message(self, msg) -> None:
        # slixmpp fires "message" for anything with a <body/>, bounced errors
        # included; those also fire "message_error", so keep them out of here.
        if msg["type"] != "error":
            self.messages.put(msg)

    def _settle_login(self, outcome: LoginFailed | None) -> None:
        if not self._login.done():
            self._login.set_result(outcome)

    @property
    def jid(self) -> str:
        """The bound full JID (after login), else the requested bare JID."""
        return str(self.boundjid)

    @property
    def bare(self) -> str:
        return self.boundjid.bare

    # -- connection --

    async def start(self, host: str, port: int, *, direct_tls: bool = False,
                    timeout: float = WAIT) -> None:
        """Connect and wait for session_start; raises LoginFailed or TimeoutError.

        STARTTLS (default): plain TCP, then STARTTLS. ``direct_tls``: TLS from
        the first byte (XEP-0368). Exactly one is enabled so slixmpp never tries
        the other one on the wrong port.
        """
        self.enable_direct_tls = direct_tls
        self.enable_starttls = not direct_tls
        self.enable_plaintext = False
        self.connect(host, port)
        try:
            outcome = await asyncio.wait_for(asyncio.shield(self._login), timeout)
        except asyncio.TimeoutError:
            await self.stop()
            raise asyncio.TimeoutError(f"{self.boundjid}: no session_start within {timeout}s") from None
        if outcome is not None:
            await self.stop()
            raise outcome

    async def stop(self, timeout: float = 5.0) -> None:
        """Close the stream (or abandon a connection attempt); never raises."""
        try:
            self.cancel_connection_attempt()
            if self.transport is not None:
                await asyncio.wait_for(self.disconnect(wait=2.0), timeout)
        except Exception:  # noqa: BLE001 - teardown must not mask the test's error
            log.debug("disconnect of %s failed", self.boundjid, exc_info=True)
            if self.transport is not None:
                self.abort()

    # -- waiting for stanzas --

    async def next_message(self, predicate: Callable | None = None, timeout: float = WAIT):
        return await self.messages.take(predicate, timeout)

    async def next_error(self, predicate: Callable | None = None, timeout: float = WAIT):
        return await self.errors.take(predicate, timeout)

    async def next_presence(self, predicate: Callable | None = None, timeout: float = WAIT):
        return await self.presences.take(predicate, timeout)

    async def presence_from(self, jid: str, ptype: str = "available",
                            timeout: float = WAIT, status: str | None = None):
        """Next presence of ``ptype`` whose sender's bare JID is ``jid`` (and status, if given).

        ``ptype`` is the type attribute ("subscribe", "unavailable", ...), or
        "available" for a presence without one. (Not slixmpp's ``p["type"]``,
        which reports the <show/> value, e.g. "dnd", for available presences.)
        """
        bare = jid.split("/")[0]

        def match(p) -> bool:
            return (p["from"].bare == bare
                    and (p.xml.get("type") or "available") == ptype
                    and (status is None or p["status"] == status))

        what = f"presence type={ptype} from {bare}" + (f" status={status!r}" if status else "")
        return await self.presences.take(match, timeout, f"{what} at {self.bare}")

    async def assert_no_message(self, within: float = 1.0) -> None:
        """Fail if any message is (or becomes) unclaimed in the next ``within`` seconds."""
        try:
            msg = await self.messages.take(None, within)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"{self.bare} got an unexpected message: {msg}")

    # -- roster --

    async def fetch_roster(self, timeout: float = WAIT) -> dict[str, dict]:
        """Ask the server for the roster; returns {bare jid: {subscription, ask, name, groups}}."""
        # Not get_roster(): that one sends our cached roster version, and with
        # roster versioning (RFC 6121 2.6) an up-to-date version gets an empty
        # result. A get without 'ver' always returns the whole roster.
        iq = self.Iq()
        iq["type"] = "get"
        iq.enable("roster")
        iq = await iq.send(timeout=timeout)
        items = iq["roster"]["items"]
        return {str(jid): {"subscription": item["subscription"], "ask": item["ask"],
                           "name": item["name"], "groups": item["groups"]}
                for jid, item in items.items()}

    async def wait_roster_subscription(self, jid: str, subscription: str,
                                       timeout: float = WAIT) -> dict:
        """Poll the server roster until ``jid`` has ``subscription``; returns the item."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        item = None
        while loop.time() < deadline:
            item = (await self.fetch_roster()).get(jid)
            if item and item["subscription"] == subscription:
                return item
            await asyncio.sleep(0.2)
        raise AssertionError(f"{self.bare}'s roster item for {jid} is {item}, expected subscription={subscription}")


class ClientPool:
    """Makes clients for one test and disconnects all of them at the end."""

    def __init__(self) -> None:
        self.clients: list[Client] = []

    def make(self, jid: str, password: str, **kwargs) -> Client:
        """A Client not yet connected (call ``await c.start(host, port)``)."""
        client = Client(jid, password, **kwargs)
        self.clients.append(client)
        return client

    async def connect(self, server, username: str, password: str, *,
                      direct_tls: bool = False, mech: str | None = None,
                      resource: str | None = None, presence: bool = True,
                      status: str | None = None, roster: bool = True,
                      timeout: float = WAIT, plugins: tuple[str, ...] = DEFAULT_PLUGINS) -> Client:
        """Log ``username`` in to ``server`` and return the started Client.

        By default behaves like a normal IM client: fetches its roster and sends
        initial presence (with ``status`` if given) — offline messages are only
        delivered after initial presence.
        """
        jid = username if "@" in username else f"{username}@{server.domain}"
        if resource:
            jid += f"/{resource}"
        client = self.make(jid, password, mech=mech, plugins=plugins)
        host, port = server.c2s_direct_tls if direct_tls else server.c2s_starttls
        await client.start(host, port, direct_tls=direct_tls, timeout=timeout)
        if roster:
            await client.get_roster(timeout=timeout)
        if presence:
            client.send_presence(pstatus=status)
        return client

    async def aclose(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.clients), return_exceptions=True)
        self.clients.clear()
