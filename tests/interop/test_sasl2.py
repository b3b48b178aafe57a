"""SASL2 (XEP-0388) with Bind 2 (XEP-0386) and FAST (XEP-0484), end to end over a raw-XML
client (harness/sasl2.py): one round trip to a bound session, SCRAM challenge/response
in SASL2 form, FAST token issue, fast reconnect, rotation, invalidation, password change,
and SASL2 failures; legacy SASL keeps working beside it.
"""

from __future__ import annotations

import time

import pytest

from harness.sasl2 import ScramClient, advertised, authenticate, ht_initial, ht_proof

pytestmark = pytest.mark.server_config({"tenants": {
    "video": {"domains": ["video.test"], "tokens": {"access_ttl_secs": 3600, "refresh_ttl_secs": 86400}},
}})

UA = "7e0f8a52-1c33-4b7a-8d2e-5c9f3a4b6d10"


def test_sasl2_feature_lists_mechanisms_bind2_and_fast(server):
    feature = advertised(server.c2s_direct_tls, "video.test")
    assert "<mechanism>SCRAM-SHA-256</mechanism>" in feature and "<mechanism>PLAIN</mechanism>" in feature
    assert "urn:xmpp:bind:0" in feature
    assert "<mechanism>HT-SHA-256-NONE</mechanism>" in feature
    assert "HT-SHA-256-ENDP" in feature, "tls-server-end-point is available on every TLS connection"
    # No FAST for a tenant without server-issued tokens; SASL2 and Bind 2 still.
    plain = advertised(server.c2s_direct_tls, "localhost")
    assert "urn:xmpp:bind:0" in plain and "urn:xmpp:fast:0" not in plain


def test_plain_with_inline_bind_is_one_round_trip_then_stanzas_flow(server):
    server.create_user("alice", "pw", domain="video.test")
    got = {}

    def ping(s):
        # Bound in the same round trip: a stanza works at once, with no restart or bind.
        s.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        s.read_until(b"p1")
        got["reply"] = s.read_until(b">").decode()

    r = authenticate(server.c2s_direct_tls, "video.test", "PLAIN", b"\0alice\0pw",
                     bind_tag="Conference", then=ping)
    assert r.ok and r.bound, r.raw
    assert r.identifier.startswith("alice@video.test/Conference."), r.identifier
    # Features follow the success directly (no stream restart), without bind.
    assert "stream:features" in r.features_after or "features" in r.features_after
    assert "urn:ietf:params:xml:ns:xmpp-bind" not in r.features_after
    assert "type='result'" in got["reply"] or 'type="result"' in got["reply"], got
    # The same client gets the same resource back.
    r2 = authenticate(server.c2s_direct_tls, "video.test", "PLAIN", b"\0alice\0pw", bind_tag="Conference")
    assert r2.identifier == r.identifier


def test_scram_challenge_response_in_sasl2_form(server):
    server.create_user("bob", "bobs-pw", domain="video.test")
    scram = ScramClient("bob", "bobs-pw")
    r = authenticate(server.c2s_direct_tls, "video.test", "SCRAM-SHA-256", scram.first(),
                     on_challenge=scram.respond, bind_tag="App")
    assert r.ok and r.bound, r.raw
    assert len(r.challenges) == 1
    scram.verify_final(r.additional_data)  # the server proved it knows the key
    # Without inline bind: bare JID, then legacy bind is offered in the features.
    scram = ScramClient("bob", "bobs-pw")
    r = authenticate(server.c2s_direct_tls, "video.test", "SCRAM-SHA-256", scram.first(),
                     on_challenge=scram.respond)
    assert r.ok and not r.bound and r.identifier == "bob@video.test"
    assert "urn:ietf:params:xml:ns:xmpp-bind" in r.features_after


def test_sasl2_failures_carry_sasl_conditions(server):
    server.create_user("carol", "pw", domain="video.test")
    addr = server.c2s_direct_tls
    assert authenticate(addr, "video.test", "PLAIN", b"\0carol\0wrong").condition == "not-authorized"
    assert authenticate(addr, "video.test", "BOGUS", b"x").condition == "invalid-mechanism"
    assert authenticate(addr, "video.test", "HT-SHA-256-NONE", ht_initial("carol", "forged-token")
                        ).condition == "not-authorized"
    # FAST is not offered to a tenant without server-issued tokens.
    assert authenticate(addr, "localhost", "HT-SHA-256-NONE", ht_initial("carol", "x")).condition == "invalid-mechanism"


def fast_slot_writes(server) -> float:
    """How many times the server stored a client's FAST tokens (storage metrics)."""
    _, text = server.admin("GET", "/metrics", token="")
    return sum(float(l.rsplit(" ", 1)[1]) for l in str(text).splitlines()
               if l.startswith("heliograph_storage_seconds_count{")
               and 'op="tokens.put_fast_slots"' in l)


def test_fast_token_issue_fast_reconnect_and_invalidate(server):
    server.create_user("dave", "pw", domain="video.test")
    addr = server.c2s_direct_tls
    r = authenticate(addr, "video.test", "PLAIN", b"\0dave\0pw", user_agent=UA, bind_tag="Phone",
                     request_token="HT-SHA-256-NONE")
    assert r.ok and r.token and r.expiry, r.raw
    token = r.token
    # Fast reconnect: one round trip, bound, server proves it has the token too.
    f = authenticate(addr, "video.test", "HT-SHA-256-NONE", ht_initial("dave", token), user_agent=UA,
                     bind_tag="Phone", fast={"count": 1})
    assert f.ok and f.bound and f.identifier.startswith("dave@video.test/Phone."), f.raw
    assert f.additional_data == ht_proof(token, b"Responder")
    assert f.token is None, "not due for rotation yet"
    # Reconnecting with the current token and no count changes nothing stored: no write
    # (and no flush to disk) on the usual reconnect.
    writes = fast_slot_writes(server)
    assert writes >= 2, "the token's issue and first use were stored"
    again = authenticate(addr, "video.test", "HT-SHA-256-NONE", ht_initial("dave", token),
                         user_agent=UA, bind_tag="Phone", fast={})
    assert again.ok and again.bound and again.additional_data == ht_proof(token, b"Responder")
    assert fast_slot_writes(server) == writes
    # Tokens are bound to the client (user-agent id) and to the mechanism.
    assert authenticate(addr, "video.test", "HT-SHA-256-NONE", ht_initial("dave", token),
                        user_agent="another-client-id").condition == "not-authorized"
    assert authenticate(addr, "video.test", "HT-SHA-256-ENDP", ht_initial("dave", token),
                        user_agent=UA).condition == "not-authorized"
    # A replayed count is refused.
    assert authenticate(addr, "video.test", "HT-SHA-256-NONE", ht_initial("dave", token), user_agent=UA,
                        fast={"count": 1}).condition == "not-authorized"
    # Explicit invalidation: succeeds once, then the token is gone.
    inv = authenticate(addr, "video.test", "HT-SHA-256-NONE", ht_initial("dave", token), user_agent=UA,
                       fast={"count": 2, "invalidate": "true"})
    assert inv.ok and inv.token is None
    assert authenticate(addr, "video.test", "HT-SHA-256-NONE", ht_initial("dave", token),
                        user_agent=UA).condition == "not-authorized"
    # Legacy SASL keeps working for old clients.
    from test_tokens import plain_token
    assert plain_token(addr, "video.test", "dave", "pw").ok


def test_password_change_and_revocation_invalidate_fast_tokens(server):
    server.create_user("erin", "pw", domain="video.test")
    addr = server.c2s_direct_tls

    def new_token():
        r = authenticate(addr, "video.test", "PLAIN", b"\0erin\0pw", user_agent=UA,
                         request_token="HT-SHA-256-NONE")
        assert r.ok and r.token
        return r.token

    t = new_token()
    server.admin("PUT", "/api/v1/users/video.test/erin/password", {"password": "pw"}, expect=204)
    assert authenticate(addr, "video.test", "HT-SHA-256-NONE", ht_initial("erin", t),
                        user_agent=UA).condition == "not-authorized"
    t = new_token()
    server.admin("DELETE", "/api/v1/users/video.test/erin/tokens", expect=200)
    assert authenticate(addr, "video.test", "HT-SHA-256-NONE", ht_initial("erin", t),
                        user_agent=UA).condition == "not-authorized"


# The lifetime leaves several seconds between "due for rotation" (half of it) and expiry,
# so a slow machine never lets a token expire between two steps; the waits are computed
# from when each token was issued, not fixed.
TTL = 10


def sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.monotonic()))


@pytest.mark.server_config({"tenants": {
    "video": {"domains": ["video.test"], "tokens": {"refresh_ttl_secs": TTL}},
}})
def test_fast_rotation_keeps_the_old_token_until_the_new_one_is_used_and_expiry(server):
    server.create_user("frank", "pw", domain="video.test")
    addr = server.c2s_direct_tls
    r = authenticate(addr, "video.test", "PLAIN", b"\0frank\0pw", user_agent=UA, request_token="HT-SHA-256-NONE")
    old_issued_by = time.monotonic()
    old = r.token
    # Past half the lifetime: rotation is due (the token was issued before old_issued_by).
    sleep_until(old_issued_by + TTL / 2 + 0.5)
    f = authenticate(addr, "video.test", "HT-SHA-256-NONE", ht_initial("frank", old), user_agent=UA)
    assert f.ok and f.token and f.token != old, f.raw
    new = f.token
    # The client may have missed the new token: the old one still works until the new is
    # used. Still due, it gets yet another token, which replaces the unused one.
    again = authenticate(addr, "video.test", "HT-SHA-256-NONE", ht_initial("frank", old), user_agent=UA)
    assert again.ok and again.token not in (None, old, new)
    assert authenticate(addr, "video.test", "HT-SHA-256-NONE", ht_initial("frank", new),
                        user_agent=UA).condition == "not-authorized"
    new = again.token
    assert authenticate(addr, "video.test", "HT-SHA-256-NONE", ht_initial("frank", new), user_agent=UA).ok
    new_used_by = time.monotonic()
    assert authenticate(addr, "video.test", "HT-SHA-256-NONE", ht_initial("frank", old),
                        user_agent=UA).condition == "not-authorized"
    # Past the new token's lifetime, counted from its issue or its last use, whichever the
    # server counts from (whole seconds on the server: one more for rounding).
    sleep_until(new_used_by + TTL + 1.2)
    assert authenticate(addr, "video.test", "HT-SHA-256-NONE", ht_initial("frank", new),
                        user_agent=UA).condition == "credentials-expired"
