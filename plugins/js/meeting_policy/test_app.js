// Unit tests of the JavaScript meeting policy with the SDK's fake host: `node --test`.
import assert from "node:assert/strict";
import { test } from "node:test";

import { MeetingPolicy, globMatch, redact } from "./app.js";
import { ConfigRefused, Decision, JoinDecision, MessageDecision, Role, Rooms } from "./heliograph_plugin.js";
import { FakeHost } from "./testing.js";

const host = (cfg) => new FakeHost().configJson(JSON.stringify(cfg)).install();
const alice = Rooms.user("alice@example.com", { roles: ["host"] });
const bob = Rooms.user("bob@example.com");

test("room names follow the patterns", () => {
  host({ room_patterns: ["team-*"] });
  assert.deepEqual(MeetingPolicy.createRoom(Rooms.room("team-a"), alice), Decision.ALLOW);
  assert.equal(MeetingPolicy.createRoom(Rooms.room("party"), alice).tag, "deny");
  assert.ok(globMatch("a?c", "abc") && !globMatch("a?c", "abbc") && globMatch("x.*", "x.yz"));
});

test("joins: the first is moderator, hosts too, the full room refuses", () => {
  host({ max_participants: 2, moderator_if: "role=host" });
  assert.deepEqual(MeetingPolicy.join(Rooms.room("r"), Rooms.occupant(bob, "b")), JoinDecision.withRole(Role.MODERATOR));
  assert.deepEqual(
    MeetingPolicy.join(Rooms.room("r", { occupants: 1 }), Rooms.occupant(bob, "b")),
    JoinDecision.withRole(Role.PARTICIPANT),
  );
  assert.deepEqual(
    MeetingPolicy.join(Rooms.room("r", { occupants: 1 }), Rooms.occupant(alice, "a")),
    JoinDecision.withRole(Role.MODERATOR),
  );
  assert.equal(MeetingPolicy.join(Rooms.room("r", { occupants: 2 }), Rooms.occupant(bob, "b")).tag, "deny");
});

test("messages: size limit and redaction", () => {
  host({ max_message_bytes: 10, redact_words: ["secret"] });
  const o = Rooms.occupant(bob, "b");
  assert.deepEqual(MeetingPolicy.message(Rooms.room("r"), o, "hi"), MessageDecision.ALLOW);
  assert.deepEqual(MeetingPolicy.message(Rooms.room("r"), o, "a SECRET"), MessageDecision.replaceBody("a ******"));
  assert.equal(MeetingPolicy.message(Rooms.room("r"), o, "x".repeat(11)).tag, "deny");
  assert.equal(redact("nothing", ["secret"]), undefined);
});

test("configure and nick changes", () => {
  host({ locked_config: { "muc#roomconfig_persistentroom": "0" }, nick_changes: "moderators" });
  assert.equal(MeetingPolicy.configure(Rooms.room("r"), alice, [["muc#roomconfig_persistentroom", "1"]]).tag, "deny");
  assert.deepEqual(MeetingPolicy.configure(Rooms.room("r"), alice, [["muc#roomconfig_persistentroom", "0"]]), Decision.ALLOW);
  assert.equal(MeetingPolicy.changeNick(Rooms.room("r"), Rooms.occupant(bob, "b"), "c").tag, "deny");
  const mod = Rooms.occupant(bob, "b", { role: Role.MODERATOR });
  assert.deepEqual(MeetingPolicy.changeNick(Rooms.room("r"), mod, "c"), Decision.ALLOW);
});

test("init refuses a bad configuration", () => {
  host({ max_participants: "many" });
  assert.throws(() => MeetingPolicy.init("{}"), ConfigRefused);
  host({ nick_changes: "sometimes" });
  assert.throws(() => MeetingPolicy.init("{}"), ConfigRefused);
  host({});
  MeetingPolicy.init("{}");
});
