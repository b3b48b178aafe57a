// Unit tests with the SDK's fake host: `node --test` (no server, no build).
import assert from "node:assert/strict";
import { test } from "node:test";

import { {{Type}} } from "./app.js";
import { ConfigRefused, Decision, JoinDecision, Role, Rooms } from "./heliograph_plugin.js";
import { FakeHost } from "./testing.js";

test("names, sizes and moderators", () => {
  new FakeHost().configJson('{"max_participants": 2}').install();
  const alice = Rooms.user("alice@example.com/phone");
  assert.deepEqual({{Type}}.createRoom(Rooms.room("team-a"), alice), Decision.ALLOW);
  assert.deepEqual({{Type}}.createRoom(Rooms.room("party"), alice), Decision.deny("room names must start with team-"));
  assert.deepEqual({{Type}}.join(Rooms.room("team-a"), Rooms.occupant(alice, "alice")), JoinDecision.withRole(Role.MODERATOR));
  const hal = Rooms.user("hal@example.com/desk", { roles: ["host"] });
  assert.deepEqual(
    {{Type}}.join(Rooms.room("team-a", { occupants: 1 }), Rooms.occupant(hal, "hal")),
    JoinDecision.withRole(Role.MODERATOR),
  );
  assert.deepEqual(
    {{Type}}.join(Rooms.room("team-a", { occupants: 2 }), Rooms.occupant(alice, "alice")),
    JoinDecision.deny("the meeting is full"),
  );
  assert.deepEqual(
    {{Type}}.changeNick(Rooms.room("team-a", { occupants: 1 }), Rooms.occupant(alice, "alice"), " "),
    Decision.deny("a nickname cannot be blank"),
  );
});

test("init checks the configuration", () => {
  new FakeHost().configJson('{"max_participants": "many"}').install();
  assert.throws(() => {{Type}}.init(""), ConfigRefused);
});
