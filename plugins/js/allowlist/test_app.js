// Unit tests of the JavaScript allowlist with the SDK's fake host: `node --test`.
import assert from "node:assert/strict";
import { test } from "node:test";

import { AllowList, hashPassword } from "./app.js";
import { AccountDisabled, AuthRequest, ConfigRefused, NotAuthorized } from "./heliograph_plugin.js";
import { FakeHost } from "./testing.js";
import { sha256Hex } from "./sha256.js";

test("sha256 matches the FIPS 180-4 vectors", () => {
  assert.equal(sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  assert.equal(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  assert.equal(
    sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
  );
  assert.equal(sha256Hex("é".repeat(40)).length, 64);
});

test("alice logs in with her roles, display name and policy", () => {
  const cfg = {
    users: { alice: hashPassword("s", "wonderland") },
    roles: { alice: "moderator,member" },
    display_names: { alice: "Alice" },
    policy: "v1",
  };
  const host = new FakeHost().configJson(JSON.stringify(cfg)).install();
  const user = AllowList.authenticate(AuthRequest.password("Alice", "wonderland"));
  assert.equal(user.username, "alice");
  assert.equal(user.displayName, "Alice");
  assert.deepEqual(user.roles, ["moderator", "member"]);
  assert.deepEqual(user.attributes, [["policy", "v1"]]);
  assert.throws(() => AllowList.authenticate(AuthRequest.password("alice", "nope")), NotAuthorized);
  assert.throws(
    () => AllowList.authenticate(AuthRequest.withoutTls(AuthRequest.password("alice", "wonderland"))),
    NotAuthorized,
  );
  assert.equal(host.logs()[0].message, "refused: no TLS");
});

test("key-value users and tokens, disabled accounts", () => {
  new FakeHost()
    .configJson(JSON.stringify({ disabled: ["bob"] }))
    .kv("user/bob", hashPassword("q", "pw"))
    .kv("user/dave", hashPassword("q", "pw"))
    .kv("token/t0k", "dave")
    .install();
  assert.throws(() => AllowList.authenticate(AuthRequest.password("bob", "pw")), AccountDisabled);
  assert.equal(AllowList.authenticate(AuthRequest.password("dave", "pw")).username, "dave");
  assert.equal(AllowList.authenticate(AuthRequest.token("dave", "t0k")).username, "dave");
  assert.throws(() => AllowList.authenticate(AuthRequest.token("dave", "nope")), NotAuthorized);
});

test("init refuses malformed users and seeds the key-value store", () => {
  new FakeHost().configJson('{"users": {"x": "plain"}}').install();
  assert.throws(() => AllowList.init("{}"), ConfigRefused);
  const host = new FakeHost().configJson(JSON.stringify({ seed_kv: { dave: hashPassword("q", "d") } })).install();
  AllowList.init("{}");
  assert.ok(host.kvValue("user/dave"));
});
