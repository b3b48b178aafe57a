"""The ``component`` world (the Rust SDK's ``component.rs``): a Wasm-hosted component
serving a subdomain of its tenant. The host calls ``handle`` with each stanza addressed
to the component's domain and sends the stanzas (XML text) it returns."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from xml.sax.saxutils import quoteattr

#: The client namespace of the stanzas a component receives and sends.
CLIENT = "jabber:client"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


class StanzaKind(Enum):
    MESSAGE = "message"
    PRESENCE = "presence"
    IQ = "iq"


@dataclass(frozen=True)
class Stanza:
    """One stanza addressed to the component: addressing attributes parsed by the host
    (empty strings when absent) and the whole stanza as XML."""

    kind: StanzaKind
    #: The sender's JID (``from`` is a Python keyword).
    from_: str
    to: str
    #: The ``type`` attribute.
    type: str
    id: str
    #: The component domain the stanza is for.
    domain: str
    xml: str

    def is_request(self) -> bool:
        """True for an iq ``get`` or ``set``, which must be answered."""
        return self.kind is StanzaKind.IQ and self.type in ("get", "set")

    def iq_result(self, payload: str = "") -> str:
        """An iq ``result`` to this request, from the address it was sent to, with
        ``payload`` (XML text) inside."""
        return (
            f"<iq xmlns='{CLIENT}' type='result' id={quoteattr(self.id)} "
            f"from={quoteattr(self.to)} to={quoteattr(self.from_)}>{payload}</iq>"
        )

    def error_reply(self, error_type: str, condition: str) -> str:
        """An error reply of the stanza's own kind (RFC 6120 section 8.3)."""
        name = self.kind.value
        stanza_id = f" id={quoteattr(self.id)}" if self.id else ""
        return (
            f"<{name} xmlns='{CLIENT}' type='error'{stanza_id} from={quoteattr(self.to)} "
            f"to={quoteattr(self.from_)}><error type={quoteattr(error_type)}>"
            f"<{condition} xmlns='{STANZAS}'/></error></{name}>"
        )


class Refuse(Exception):
    """Raised by ``handle``: the host answers the sender ``service-unavailable``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Component:
    """A plugin of the ``component`` world. Each call runs in a fresh instance."""

    def handle(self, stanza: Stanza) -> list[str]:
        """Handles one stanza; returns the stanzas to send, each with a ``from`` on the
        component's domain."""
        raise NotImplementedError

    def init(self, config: str) -> None:
        """Called once at install with the configuration (JSON text)."""
