"""slixmpp external components (XEP-0114) for tests, bounded like the clients in xmpp.py.

    comp = await components.connect(server, "bot.acme.test", "secret")
    msg = await comp.messages.take()
    comp.send_message(mto=msg["from"], mfrom="bot.acme.test", mbody="hi")

Inboxes: ``messages`` (non-error messages), ``errors`` (message errors), ``presences``,
``iqs`` (iq get/set addressed to the component; answer them yourself unless a plugin
such as xep_0030 does). ``stream_errors`` collects stream error conditions.
"""

from __future__ import annotations

import asyncio
import logging

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from harness.xmpp import WAIT, Inbox, LoginFailed

log = logging.getLogger(__name__)


class Component(slixmpp.ComponentXMPP):
    def __init__(self, jid: str, secret: str, host: str, port: int,
                 plugins: tuple[str, ...] = ("xep_0030",)):
        # fix_error_ns: <error/> inherits the stream's jabber:component:accept namespace
        # (as every server sends it); slixmpp only parses it with this option.
        super().__init__(jid, secret, host, port, fix_error_ns=True)
        for name in plugins:
            self.register_plugin(name)
        self.messages = Inbox("message")
        self.errors = Inbox("message error")
        self.presences = Inbox("presence")
        self.iqs = Inbox("iq")
        self.stream_errors: list[str] = []
        self.add_event_handler("message", self._on_message)
        self.add_event_handler("message_error", self.errors.put)
        self.add_event_handler("presence", self.presences.put)
        self.add_event_handler("stream_error", lambda e: self.stream_errors.append(e["condition"]))
        for ns in ("urn:test:component", "jabber:iq:version"):
            self.register_handler(Callback(
                f"test iq {ns}",
                MatchXPath(f"{{jabber:component:accept}}iq/{{{ns}}}query"),
                self.iqs.put))
        self.closed = asyncio.get_running_loop().create_future()
        self._login = asyncio.get_running_loop().create_future()
        self.add_event_handler("session_start", lambda _: self._settle(None))
        self.add_event_handler("stream_error", lambda e: self._settle(LoginFailed("stream_error", e["condition"])))
        self.add_event_handler("disconnected", self._on_disconnected)
        self.add_event_handler("connection_failed", lambda e: self._settle(LoginFailed("connection_failed", e)))

    def _on_message(self, msg) -> None:
        if msg["type"] != "error":
            self.messages.put(msg)

    def _on_disconnected(self, e) -> None:
        self._settle(LoginFailed("disconnected", e))
        if not self.closed.done():
            self.closed.set_result(e)

    def _settle(self, outcome) -> None:
        if not self._login.done():
            self._login.set_result(outcome)

    async def start(self, timeout: float = WAIT) -> None:
        """Connect and wait for the handshake; raises LoginFailed or TimeoutError."""
        self.connect()
        try:
            outcome = await asyncio.wait_for(asyncio.shield(self._login), timeout)
        except asyncio.TimeoutError:
            await self.stop()
            raise
        if outcome is not None:
            await self.stop()
            raise outcome

    async def wait_closed(self, timeout: float = WAIT) -> None:
        await asyncio.wait_for(asyncio.shield(self.closed), timeout)

    async def stop(self, timeout: float = 5.0) -> None:
        try:
            self.cancel_connection_attempt()
            if self.transport is not None:
                await asyncio.wait_for(self.disconnect(wait=1.0), timeout)
        except Exception:  # noqa: BLE001 - teardown must not mask the test's error
            log.debug("disconnect of %s failed", self.boundjid, exc_info=True)
            if self.transport is not None:
                self.abort()


class ComponentPool:
    """Makes components for one test and disconnects all of them at the end."""

    def __init__(self) -> None:
        self.items: list[Component] = []

    def make(self, server, domain: str, secret: str, **kwargs) -> Component:
        host, port = server.component_address
        comp = Component(domain, secret, host, port, **kwargs)
        self.items.append(comp)
        return comp

    async def connect(self, server, domain: str, secret: str, **kwargs) -> Component:
        comp = self.make(server, domain, secret, **kwargs)
        await comp.start()
        return comp

    async def aclose(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.items), return_exceptions=True)
        self.items.clear()
