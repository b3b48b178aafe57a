"""Unit tests of the Python meeting policy with the SDK's fake host (the Rust twin's tests)."""

import unittest

from app import MeetingPolicy, glob_match, redact
from heliograph_plugin import (
    Affiliation,
    ConfigRefused,
    Decision,
    JoinDecision,
    MessageDecision,
    Occupant,
    Role,
    Room,
    RoomUser,
)
from heliograph_plugin.testing import FakeHost

CONFIG = """{"room_patterns": ["team-*", "*-standup"], "max_participants": 3,
    "moderator_if": "role=host", "max_message_bytes": 20, "redact_words": ["secret"],
    "nick_changes": "moderators", "locked_config": {"muc#roomconfig_persistentroom": "0"}}"""


def someone(jid: str) -> Occupant:
    return Occupant(RoomUser(jid), "nick")


class MeetingPolicyTest(unittest.TestCase):
    def setUp(self):
        FakeHost().config_json(CONFIG).install()

    def test_globs(self):
        self.assertTrue(glob_match("team-*", "team-a"))
        self.assertFalse(glob_match("team-*", "xteam-a"))
        self.assertTrue(glob_match("r?om", "room"))
        self.assertFalse(glob_match("r?om", "rooom"))
        self.assertTrue(glob_match("*", ""))
        self.assertFalse(glob_match("[a]", "a"))

    def test_room_names_follow_the_patterns(self):
        p = MeetingPolicy()
        alice = RoomUser("alice@example.com/a")
        self.assertEqual(p.create_room(Room.new("team-blue", 0), alice), Decision.ALLOW)
        self.assertEqual(
            p.create_room(Room.new("party", 0), alice),
            Decision.deny("room names must match team-* or *-standup"),
        )

    def test_joins(self):
        p = MeetingPolicy()
        self.assertEqual(p.join(Room.new("team-a", 0), someone("a@x/r")), JoinDecision.with_role(Role.MODERATOR))
        self.assertEqual(p.join(Room.new("team-a", 1), someone("b@x/r")), JoinDecision.with_role(Role.PARTICIPANT))
        host = Occupant(RoomUser("h@x/r").role("host"), "h")
        self.assertEqual(p.join(Room.new("team-a", 2), host), JoinDecision.with_role(Role.MODERATOR))
        self.assertEqual(p.join(Room.new("team-a", 3), host), JoinDecision.deny("the meeting is full (3 participants)"))
        owner = Occupant(RoomUser("o@x/r"), "o", Role.MODERATOR, Affiliation.OWNER)
        self.assertEqual(p.join(Room.new("team-a", 1), owner), JoinDecision.DEFAULT)

    def test_messages(self):
        p = MeetingPolicy()
        room = Room.new("team-a", 2)
        self.assertEqual(p.message(room, someone("a@x/r"), "hello"), MessageDecision.ALLOW)
        self.assertEqual(
            p.message(room, someone("a@x/r"), "x" * 21),
            MessageDecision.deny("messages are limited to 20 bytes (this one has 21)"),
        )
        self.assertEqual(
            p.message(room, someone("a@x/r"), "my SECRET plan"), MessageDecision.replace_body("my ****** plan")
        )
        self.assertEqual(redact("secret secret", ["secret"]), "****** ******")
        self.assertIsNone(redact("nothing here", ["secret"]))

    def test_nick_and_configuration(self):
        p = MeetingPolicy()
        mod = Occupant(RoomUser("a@x/r"), "a", Role.MODERATOR)
        self.assertEqual(p.change_nick(Room.new("team-a", 2), mod, "new"), Decision.ALLOW)
        self.assertEqual(
            p.change_nick(Room.new("team-a", 2), someone("b@x/r"), "new"),
            Decision.deny("only moderators may change their nickname"),
        )
        cfg = [("muc#roomconfig_roomname", "Team"), ("muc#roomconfig_persistentroom", "1")]
        self.assertEqual(
            p.configure(Room.new("team-a", 1), RoomUser("a@x/r"), cfg),
            Decision.deny("muc#roomconfig_persistentroom is fixed to 0 for meetings"),
        )

    def test_init_checks_the_configuration(self):
        MeetingPolicy().init("{}")
        for cfg, word in [
            ('{"max_participants": "many"}', "max_participants"),
            ('{"moderator_if": "host"}', "KEY=VALUE"),
            ('{"nick_changes": "sometimes"}', "nick_changes"),
        ]:
            FakeHost().config_json(cfg).install()
            with self.assertRaisesRegex(ConfigRefused, word):
                MeetingPolicy().init("")


if __name__ == "__main__":
    unittest.main()
