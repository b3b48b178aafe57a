"""Unit tests with the SDK's fake host: ``python3 -m unittest`` (no server, no build)."""

import unittest

from app import {{Type}}
from heliograph_plugin import Stanza, StanzaKind
from heliograph_plugin.testing import FakeHost


def stanza(kind: StanzaKind, stanza_type: str, xml: str) -> Stanza:
    return Stanza(kind, "alice@example.com/phone", "bot.example.com", stanza_type, "1",
                  "bot.example.com", xml)


class {{Type}}Test(unittest.TestCase):
    def test_echoes_messages_and_refuses_requests(self):
        host = FakeHost().install()
        out = {{Type}}().handle(stanza(
            StanzaKind.MESSAGE, "chat",
            "<message xmlns='jabber:client' type='chat'><body>hi</body></message>"))
        self.assertEqual(len(out), 1)
        self.assertIn("you said hi (#1)", out[0])
        self.assertEqual(host.kv_value("count"), b"1")
        out = {{Type}}().handle(stanza(
            StanzaKind.IQ, "get",
            "<iq xmlns='jabber:client' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>"))
        self.assertIn("service-unavailable", out[0])


if __name__ == "__main__":
    unittest.main()
