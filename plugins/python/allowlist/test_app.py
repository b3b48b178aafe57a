"""Unit tests of the Python allowlist with the SDK's fake host (the Rust twin's tests)."""

import unittest

from app import AllowList, hash_password
from heliograph_plugin import AccountDisabled, AuthRequest, NotAuthorized
from heliograph_plugin.testing import FakeHost


def host() -> FakeHost:
    cfg = (
        '{"users": {"alice": "%s"}, "disabled": ["carol"], '
        '"roles": {"alice": "moderator, member"}, "policy": "v1"}' % hash_password("s1", "wonderland")
    )
    return (
        FakeHost()
        .config_json(cfg)
        .kv("user/carol", hash_password("s2", "pw"))
        .kv("token/tok-123", "bob")
    )


class AllowListTest(unittest.TestCase):
    def test_password_users_from_config_and_kv(self):
        host().install()
        user = AllowList().authenticate(AuthRequest.password("Alice", "wonderland"))
        self.assertEqual(user.username, "alice")
        self.assertEqual(user.roles, ["moderator", "member"])
        self.assertEqual(user.attributes, [("policy", "v1")])
        with self.assertRaises(NotAuthorized):
            AllowList().authenticate(AuthRequest.password("alice", "wrong"))
        with self.assertRaises(AccountDisabled):
            AllowList().authenticate(AuthRequest.password("carol", "pw"))

    def test_tokens_and_tls(self):
        host().install()
        self.assertEqual(AllowList().authenticate(AuthRequest.token("bob", "tok-123")).username, "bob")
        with self.assertRaises(NotAuthorized):
            AllowList().authenticate(AuthRequest.token("alice", "tok-123"))
        with self.assertRaises(NotAuthorized):
            AllowList().authenticate(AuthRequest.password("alice", "wonderland").without_tls())

    def test_init_checks_hashes_and_seeds_kv(self):
        h = FakeHost().config_json('{"seed_kv": {"dave": "%s"}}' % hash_password("x", "y")).install()
        AllowList().init("")
        self.assertIsNotNone(h.kv_value("user/dave"))
        FakeHost().config_json('{"users": {"eve": "plain"}}').install()
        with self.assertRaisesRegex(Exception, "users.eve"):
            AllowList().init("")


if __name__ == "__main__":
    unittest.main()
