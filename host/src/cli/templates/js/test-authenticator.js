// Unit tests with the SDK's fake host: `node --test` (no server, no build).
import assert from "node:assert/strict";
import { test } from "node:test";

import { {{Type}} } from "./app.js";
import { AuthRequest, ConfigRefused, NotAuthorized } from "./heliograph_plugin.js";
import { FakeHost } from "./testing.js";

test("alice logs in", () => {
  const host = new FakeHost().configJson('{"users": {"alice": "secret"}}').install();
  assert.deepEqual({{Type}}.authenticate(AuthRequest.password("alice", "secret")).roles, ["member"]);
  assert.throws(() => {{Type}}.authenticate(AuthRequest.password("alice", "nope")), NotAuthorized);
  // AuthRequest.password is a login over TLS; AuthRequest.withoutTls makes it plain.
  assert.throws(
    () => {{Type}}.authenticate(AuthRequest.withoutTls(AuthRequest.password("alice", "secret"))),
    NotAuthorized,
  );
  assert.equal(host.logs()[0].message, "login");
});

test("init refuses a configuration without users", () => {
  new FakeHost().configJson("{}").install();
  assert.throws(() => {{Type}}.init("{}"), ConfigRefused);
});
