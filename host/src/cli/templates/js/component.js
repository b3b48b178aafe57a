// {{name}}: a Heliograph component in JavaScript (WIT world `component`): answers every
// chat message with its text, counts them in the key-value store, and answers iq requests
// with service-unavailable.
import { KvError, Refuse, StanzaKind, Stanzas, component, escapeXml, kv } from "./heliograph_plugin.js";

/** The text of the message's <body/> (there is no XML parser in the component: a simple
 * match on the unescaped text is enough for the example). */
function bodyOf(xml) {
  const m = /<body(?:\s[^>]*)?>([^<]*)<\/body>/.exec(xml);
  return m === null ? undefined : m[1];
}

export const {{Type}} = {
  handle(stanza) {
    // Answer every iq request, or the sender waits: here with an error.
    if (Stanzas.isRequest(stanza)) return [Stanzas.errorReply(stanza, "cancel", "service-unavailable")];
    if (stanza.kind !== StanzaKind.MESSAGE) return [];
    const body = bodyOf(stanza.xml);
    if (body === undefined) return [];
    let count;
    try {
      count = Number(kv.getString("count") ?? "0") + 1;
      kv.set("count", String(count));
    } catch (e) {
      if (e instanceof KvError) throw new Refuse(e.message);
      throw e;
    }
    return [
      `<message xmlns='jabber:client' type='chat' from='${escapeXml(stanza.to)}' ` +
        `to='${escapeXml(stanza.from)}'><body>${escapeXml(`you said ${body} (#${count})`)}</body></message>`,
    ];
  },
};

export const { stanzaHandler, lifecycle } = component({{Type}});
