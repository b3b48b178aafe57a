"""{{name}}: a Heliograph component in Python (WIT world ``component``): answers every
chat message with its text, counts them in the key-value store, and answers iq requests
with ``service-unavailable``."""

import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

from heliograph_plugin import Component, Refuse, Stanza, StanzaKind, component, kv
from heliograph_plugin.kv import KvError

CLIENT = "{jabber:client}"


@component
class {{Type}}(Component):
    def handle(self, stanza: Stanza) -> list[str]:
        if stanza.is_request():
            # Answer every iq request, or the sender waits: here with an error.
            return [stanza.error_reply("cancel", "service-unavailable")]
        if stanza.kind is not StanzaKind.MESSAGE:
            return []
        body = ET.fromstring(stanza.xml).find(CLIENT + "body")
        if body is None or body.text is None:
            return []
        try:
            count = int(kv.get_string("count") or "0") + 1
            kv.set("count", str(count))
        except KvError as e:
            raise Refuse(str(e)) from None
        text = escape(f"you said {body.text} (#{count})")
        return [
            f"<message xmlns='jabber:client' type='chat' from={quoteattr(stanza.to)} "
            f"to={quoteattr(stanza.from_)}><body>{text}</body></message>"
        ]
