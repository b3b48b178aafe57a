// Unit tests with the SDK's fake host: `node --test` (no server, no build).
import assert from "node:assert/strict";
import { test } from "node:test";

import { {{Type}} } from "./app.js";
import { StanzaKind, Stanzas } from "./heliograph_plugin.js";
import { FakeHost } from "./testing.js";

const from = "alice@example.com/phone";
const to = "bot.example.com";

test("echoes messages and refuses requests", () => {
  const host = new FakeHost().install();
  let out = {{Type}}.handle(
    Stanzas.of(StanzaKind.MESSAGE, from, to, "chat", "<message xmlns='jabber:client' type='chat'><body>hi</body></message>"),
  );
  assert.equal(out.length, 1);
  assert.ok(out[0].includes("you said hi (#1)"), out[0]);
  assert.equal(new TextDecoder().decode(host.kvValue("count")), "1");
  out = {{Type}}.handle(
    Stanzas.of(StanzaKind.IQ, from, to, "get", "<iq xmlns='jabber:client' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>"),
  );
  assert.ok(out[0].includes("service-unavailable"), out[0]);
});
