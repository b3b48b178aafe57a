"""Unit tests with the SDK's fake host: ``python3 -m unittest`` (no server, no build)."""

import unittest

from app import {{Type}}
from heliograph_plugin import ConfigRefused, Decision, JoinDecision, Occupant, Role, Room, RoomUser
from heliograph_plugin.testing import FakeHost


class {{Type}}Test(unittest.TestCase):
    def test_names_sizes_and_moderators(self):
        FakeHost().config_json('{"max_participants": 2}').install()
        policy = {{Type}}()
        alice = RoomUser("alice@example.com/phone")
        self.assertEqual(policy.create_room(Room.new("team-a", 0), alice), Decision.ALLOW)
        self.assertEqual(
            policy.create_room(Room.new("party", 0), alice),
            Decision.deny("room names must start with team-"),
        )
        self.assertEqual(
            policy.join(Room.new("team-a", 0), Occupant(alice, "alice")),
            JoinDecision.with_role(Role.MODERATOR),
        )
        host = RoomUser("hal@example.com/desk").role("host")
        self.assertEqual(
            policy.join(Room.new("team-a", 1), Occupant(host, "hal")),
            JoinDecision.with_role(Role.MODERATOR),
        )
        self.assertEqual(
            policy.join(Room.new("team-a", 2), Occupant(alice, "alice")),
            JoinDecision.deny("the meeting is full"),
        )
        self.assertEqual(
            policy.change_nick(Room.new("team-a", 1), Occupant(alice, "alice"), " "),
            Decision.deny("a nickname cannot be blank"),
        )

    def test_init_checks_the_configuration(self):
        FakeHost().config_json('{"max_participants": "many"}').install()
        with self.assertRaises(ConfigRefused):
            {{Type}}().init("")


if __name__ == "__main__":
    unittest.main()
