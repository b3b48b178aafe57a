"""Unit tests with the SDK's fake host: ``python3 -m unittest`` (no server, no build)."""

import unittest

from app import MyAuth
from heliograph_plugin import AuthRequest, ConfigRefused, NotAuthorized
from heliograph_plugin.testing import FakeHost


class MyAuthTest(unittest.TestCase):
    def test_alice_logs_in(self):
        host = FakeHost().config_json('{"users": {"alice": "secret"}}').install()
        user = MyAuth().authenticate(AuthRequest.password("alice", "secret"))
        self.assertEqual(user.roles, ["member"])
        with self.assertRaises(NotAuthorized):
            MyAuth().authenticate(AuthRequest.password("alice", "nope"))
        # AuthRequest.password is a login over TLS; .without_tls() makes it plain.
        with self.assertRaises(NotAuthorized):
            MyAuth().authenticate(AuthRequest.password("alice", "secret").without_tls())
        self.assertEqual(host.logs()[0].message, "login")

    def test_init_refuses_a_configuration_without_users(self):
        FakeHost().config_json("{}").install()
        with self.assertRaises(ConfigRefused):
            MyAuth().init("{}")


if __name__ == "__main__":
    unittest.main()
