"""Token authentication (issue 8), end to end: per-tenant JWTs over PLAIN, OAUTHBEARER
and X-OAUTH/X-OAUTH2 (slixmpp and raw SASL), every refusal with its SASL condition and
log line, key rotation and reload, server-issued access/refresh tokens with the
token-auth iq, refresh, and immediate revocation through the admin API and the CLI.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time

import pytest

from harness.tokens import claims, mint_jwt, oauthbearer, plain_token, x_oauth, sasl_attempt
from harness.xmpp import LoginFailed

VIDEO_KEYS = {"k1": "video-secret-one-0123456789", "k2": "video-secret-two-0123456789"}
OTHER_KEY = "other-secret-0123456789abcdef"
AUD, ISS = "video-app", "https://login.video.test"


def video_jwt(sub: str = "alice", *, kid: str = "k1", secret: str | None = None, **overrides) -> str:
    c = claims(sub, aud=AUD, iss=ISS)
    c.update(overrides)
    c = {k: v for k, v in c.items() if v is not None}
    return mint_jwt(secret or VIDEO_KEYS[kid], c, kid=kid)


def tenants_config(tmp_secret_file: str | None = None) -> dict:
    return {"tenants": {
        "video": {
            "domains": ["video.test"],
            "jwt": {
                "audience": [AUD],
                "issuer": [ISS],
                "leeway_secs": 30,
                "keys": [{"kid": kid, "alg": "HS256", "secret": s} for kid, s in VIDEO_KEYS.items()],
            },
            "tokens": {"access_ttl_secs": 3600, "refresh_ttl_secs": 86400},
        },
        "other": {
            "domains": ["other.test"],
            "jwt": {"keys": [{"kid": "o1", "alg": "HS256", "secret": OTHER_KEY}]},
        },
    }}


pytestmark = pytest.mark.server_config(tenants_config())


def refused_in_log(server, reason: str, secret_fragments: list[str]) -> None:
    """The log names the refusal reason and holds no token or key material."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        log = server.log_text()
        if f"reason=\"{reason}\"" in log or f"reason={reason}" in log:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"no log line with reason={reason}\n{server.log_tail(40)}")
    for fragment in secret_fragments:
        assert fragment not in log, f"the log leaks {fragment[:12]}..."


# --- JWT ------------------------------------------------------------------------

async def test_jwt_via_plain_with_slixmpp(server, xmpp):
    token = video_jwt("alice")
    c = await xmpp.connect(server, "alice@video.test", token, direct_tls=True, mech="PLAIN")
    assert c.boundjid.bare == "alice@video.test"


async def test_jwt_via_oauthbearer_and_x_oauth2_with_slixmpp(server, xmpp):
    token = video_jwt("bob", kid="k2")
    c = xmpp.make("bob@video.test", "", mech="OAUTHBEARER")
    c.credentials["access_token"] = token
    await c.start(*server.c2s_direct_tls, direct_tls=True)
    assert c.boundjid.bare == "bob@video.test"
    c2 = xmpp.make("bob@video.test/two", "", mech="X-OAUTH2")
    c2.credentials["access_token"] = token
    await c2.start(*server.c2s_direct_tls, direct_tls=True)
    assert c2.boundjid.bare == "bob@video.test"


async def test_failed_oauthbearer_in_slixmpp_gets_the_error_challenge_then_fails(server, xmpp):
    c = xmpp.make("bob@video.test", "", mech="OAUTHBEARER")
    c.credentials["access_token"] = video_jwt("bob", secret="wrong-secret-0123456789")
    with pytest.raises(LoginFailed):
        await c.start(*server.c2s_direct_tls, direct_tls=True)


def test_token_mechanisms_are_offered_only_to_token_tenants(server):
    from test_plugins import mechanisms
    video = mechanisms(server.c2s_direct_tls, "video.test")
    assert {"OAUTHBEARER", "X-OAUTH", "X-OAUTH2", "PLAIN", "SCRAM-SHA-256"} <= set(video), video
    plain_tenant = mechanisms(server.c2s_direct_tls, "localhost")
    assert "OAUTHBEARER" not in plain_tenant and "X-OAUTH" not in plain_tenant


def test_oauthbearer_raw_exchange_and_error_challenge(server):
    addr = server.c2s_direct_tls
    ok = oauthbearer(addr, "video.test", video_jwt("carol"), authzid="carol@video.test")
    assert ok.ok, ok
    bad = oauthbearer(addr, "video.test", video_jwt("carol", secret="nope-0123456789"))
    assert not bad.ok and bad.condition == "not-authorized"
    # RFC 7628 §3.2.2: one error challenge with a JSON status, nothing about keys.
    assert [json.loads(c) for c in bad.challenges] == [{"status": "invalid_token"}]
    # The authzid must be the token's user.
    other = oauthbearer(addr, "video.test", video_jwt("carol"), authzid="dave@video.test")
    assert other.condition == "invalid-authzid"
    # Malformed GS2 message.
    assert sasl_attempt(addr, "video.test", "OAUTHBEARER", b"n,,auth=Bearer x").condition == "malformed-request"


@pytest.mark.parametrize("case, token, condition, reason", [
    ("expired", lambda: video_jwt(exp=int(time.time()) - 120), "credentials-expired", "expired"),
    ("not yet valid", lambda: video_jwt(nbf=int(time.time()) + 600), "not-authorized", "not-yet-valid"),
    ("bad signature", lambda: video_jwt(secret="attacker-secret-0123456789"), "not-authorized", "bad-signature"),
    ("wrong audience", lambda: video_jwt(aud="someone-else"), "not-authorized", "wrong-audience"),
    ("wrong issuer", lambda: video_jwt(iss="https://evil.test"), "not-authorized", "wrong-issuer"),
    ("unknown kid", lambda: mint_jwt(VIDEO_KEYS["k1"], claims("alice", aud=AUD, iss=ISS), kid="k9"),
     "not-authorized", "unknown-kid"),
    ("other tenant's token", lambda: mint_jwt(OTHER_KEY, claims("alice", aud=AUD, iss=ISS), kid="o1"),
     "not-authorized", "unknown-kid"),
    ("user of another domain", lambda: video_jwt("alice@other.test"), "not-authorized", "wrong-domain"),
])
def test_bad_jwts_are_refused_with_the_right_condition_and_log(server, case, token, condition, reason):
    t = token()
    for outcome in (plain_token(server.c2s_direct_tls, "video.test", "alice", t),
                    x_oauth(server.c2s_direct_tls, "video.test", t)):
        assert not outcome.ok and outcome.condition == condition, (case, outcome)
    refused_in_log(server, reason, [t, t.split(".")[2], VIDEO_KEYS["k1"], OTHER_KEY])


def test_a_token_for_one_tenant_never_logs_in_to_another(server):
    other_token = mint_jwt(OTHER_KEY, claims("alice"), kid="o1")
    assert plain_token(server.c2s_direct_tls, "other.test", "alice", other_token).ok
    assert plain_token(server.c2s_direct_tls, "video.test", "alice", other_token).condition == "not-authorized"
    video_token = video_jwt("alice")
    assert plain_token(server.c2s_direct_tls, "other.test", "alice", video_token).condition == "not-authorized"
    # The default tenant takes no tokens at all: a JWT is just a wrong password there.
    assert plain_token(server.c2s_direct_tls, "localhost", "alice", video_token).condition == "not-authorized"


def test_plain_username_must_match_the_token_and_passwords_still_work(server):
    server.create_user("erin", "erins-password", domain="video.test")
    addr = server.c2s_direct_tls
    assert plain_token(addr, "video.test", "mallory", video_jwt("erin")).condition == "not-authorized"
    assert plain_token(addr, "video.test", "erin@video.test", video_jwt("erin")).ok
    # Internal passwords keep working alongside JWTs for the same tenant.
    assert plain_token(addr, "video.test", "erin", "erins-password").ok
    assert plain_token(addr, "video.test", "erin", "wrong").condition == "not-authorized"


def test_key_rotation_two_keys_live_then_reload_drops_the_old_one(server):
    addr = server.c2s_direct_tls
    t1, t2 = video_jwt("frank", kid="k1"), video_jwt("frank", kid="k2")
    assert plain_token(addr, "video.test", "frank", t1).ok
    assert plain_token(addr, "video.test", "frank", t2).ok
    # Rotate: k1 retired, k3 added, and a JWKS file joins; reload re-reads everything.
    jwks = server.workdir / "video-jwks.json"
    jwks.write_text(json.dumps({"keys": [{"kty": "oct", "kid": "j1", "alg": "HS512",
                                          "k": base64.urlsafe_b64encode(b"jwks-secret-0123456789").rstrip(b"=").decode()}]}))
    jwt_cfg = server.config["tenants"]["video"]["jwt"]
    jwt_cfg["keys"] = [{"kid": "k2", "alg": "HS256", "secret": VIDEO_KEYS["k2"]},
                       {"kid": "k3", "alg": "HS384", "secret": "video-secret-three-0123456789"}]
    jwt_cfg["jwks_files"] = [str(jwks)]
    server.write_config()
    server.admin("POST", "/api/v1/reload", expect=200)
    assert plain_token(addr, "video.test", "frank", t1).condition == "not-authorized"
    assert plain_token(addr, "video.test", "frank", t2).ok
    t3 = mint_jwt("video-secret-three-0123456789", claims("frank", aud=AUD, iss=ISS), kid="k3", alg="HS384")
    assert plain_token(addr, "video.test", "frank", t3).ok
    tj = mint_jwt("jwks-secret-0123456789", claims("frank", aud=AUD, iss=ISS), kid="j1", alg="HS512")
    assert plain_token(addr, "video.test", "frank", tj).ok
    # The JWKS file is re-read on the next reload.
    jwks.write_text(json.dumps({"keys": [{"kty": "oct", "kid": "j2", "alg": "HS512",
                                          "k": base64.urlsafe_b64encode(b"jwks-secret-0123456789").rstrip(b"=").decode()}]}))
    server.admin("POST", "/api/v1/reload", expect=200)
    assert plain_token(addr, "video.test", "frank", tj).condition == "not-authorized"


def test_jwt_settings_through_the_admin_api(server):
    secret = "api-tenant-secret-0123456789"
    server.create_tenant("apijwt", ["api.test"],
                         jwt={"keys": [{"kid": "a", "alg": "HS256", "secret": secret}]})
    token = mint_jwt(secret, claims("gina"), kid="a")
    assert plain_token(server.c2s_direct_tls, "api.test", "gina", token).ok
    # Inline secrets are write-only.
    _, shown = server.admin("GET", "/api/v1/tenants/apijwt", expect=200)
    assert secret not in json.dumps(shown)
    # Sending the view back keeps the secret; a redacted secret for a new kid is refused.
    server.admin("PATCH", "/api/v1/tenants/apijwt", {"jwt": shown["jwt"]}, expect=200)
    assert plain_token(server.c2s_direct_tls, "api.test", "gina", token).ok
    unknown = {**shown["jwt"], "keys": [{**shown["jwt"]["keys"][0], "kid": "z"}]}
    status, body = server.admin("PATCH", "/api/v1/tenants/apijwt", {"jwt": unknown})
    assert status == 400 and "jwt key 0" in body["message"], body
    # A bad key is refused with 400 and the reason.
    status, body = server.admin("PATCH", "/api/v1/tenants/apijwt",
                                {"jwt": {"keys": [{"alg": "ES256", "public_key": "not a key"}]}})
    assert status == 400 and "key 0" in body["message"], body
    # A tenant token may change its JWT settings, but not point them at server files.
    _, issued = server.admin("POST", "/api/v1/tenants/apijwt/token", expect=201)
    tt = issued["token"]
    server.admin("PATCH", "/api/v1/tenants/apijwt",
                 {"jwt": {"keys": [{"kid": "b", "alg": "HS256", "secret": "rotated-0123456789"}]}},
                 token=tt, expect=200)
    assert plain_token(server.c2s_direct_tls, "api.test", "gina", token).condition == "not-authorized"
    assert plain_token(server.c2s_direct_tls, "api.test", "gina",
                       mint_jwt("rotated-0123456789", claims("gina"), kid="b")).ok
    server.admin("PATCH", "/api/v1/tenants/apijwt",
                 {"jwt": {"keys": [{"alg": "HS256", "secret_file": "/etc/hostname"}]}},
                 token=tt, expect=403)
    # null turns JWT login off.
    server.admin("PATCH", "/api/v1/tenants/apijwt", {"jwt": None}, expect=200)
    from test_plugins import mechanisms
    assert "OAUTHBEARER" not in mechanisms(server.c2s_direct_tls, "api.test")


# --- server-issued tokens ---------------------------------------------------------

TOKEN_NS = "erlang-solutions.com:xmpp:token-auth:0"


async def request_tokens(client) -> tuple[str, str]:
    iq = client.Iq()
    iq["type"] = "get"
    iq["to"] = client.boundjid.bare
    from slixmpp.xmlstream import ET
    iq.append(ET.Element(f"{{{TOKEN_NS}}}query"))
    result = await iq.send(timeout=10)
    items = result.xml.find(f"{{{TOKEN_NS}}}items")
    assert items is not None, result
    return items.findtext(f"{{{TOKEN_NS}}}access_token"), items.findtext(f"{{{TOKEN_NS}}}refresh_token")


async def test_token_request_refresh_flow_and_immediate_revocation(server, xmpp):
    server.create_user("hank", "hanks-password", domain="video.test")
    c = await xmpp.connect(server, "hank@video.test", "hanks-password", direct_tls=True)
    access, refresh = await request_tokens(c)
    assert access.startswith("hgt.a.") and refresh.startswith("hgt.r.")
    addr = server.c2s_direct_tls
    assert x_oauth(addr, "video.test", access).ok
    assert plain_token(addr, "video.test", "hank", access).ok
    assert oauthbearer(addr, "video.test", access).ok
    # Refresh: logging in with the refresh token returns a new access token (MongooseIM).
    r = x_oauth(addr, "video.test", refresh)
    assert r.ok and r.success_data.startswith(b"hgt.a."), r.success_data
    assert x_oauth(addr, "video.test", r.success_data.decode()).ok
    # Tokens are per tenant and per domain.
    assert x_oauth(addr, "other.test", access).condition == "not-authorized"
    # Revocation through the admin API is effective at once, access tokens included.
    _, body = server.admin("DELETE", "/api/v1/users/video.test/hank/tokens", expect=200)
    assert body["revoked"] >= 1
    for t in (access, refresh, r.success_data.decode()):
        assert x_oauth(addr, "video.test", t).condition == "not-authorized"
    refused_in_log(server, "revoked", [access, refresh])
    # The live session is not ended by revocation (as in MongooseIM).
    assert any(s["jid"].startswith("hank@video.test/") for s in server.sessions())
    # New tokens work again.
    access2, _ = await request_tokens(c)
    assert x_oauth(addr, "video.test", access2).ok


async def test_tenant_without_tokens_refuses_the_request(server, xmpp):
    c = await xmpp.connect(server, "ivy@other.test",
                           mint_jwt(OTHER_KEY, claims("ivy"), kid="o1"), direct_tls=True, mech="PLAIN")
    with pytest.raises(Exception, match="service-unavailable"):
        await request_tokens(c)


def test_expired_server_token_says_credentials_expired(server):
    server.create_user("jack", "pw", domain="video.test")
    cfg = server.config["tenants"]["video"]
    cfg["tokens"] = {"access_ttl_secs": 1, "refresh_ttl_secs": 86400}
    server.write_config()
    server.admin("POST", "/api/v1/reload", expect=200)
    _, minted = server.admin("POST", "/api/v1/users/video.test/jack/tokens", {"kind": "access"}, expect=201)
    time.sleep(2.1)
    assert x_oauth(server.c2s_direct_tls, "video.test", minted["access"]["token"]).condition == "credentials-expired"


def test_cli_mints_lists_and_revokes(server, heliograph_bin):
    server.create_user("kate", "pw", domain="video.test")
    host, port = server.admin_address
    env = dict(os.environ, HELIOGRAPH_TOKEN=server.admin_token, HELIOGRAPH_API=f"http://{host}:{port}")

    def cli(*args):
        out = subprocess.run([heliograph_bin, "token", *args], capture_output=True, text=True, env=env, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout

    out = cli("mint", "--tenant", "video", "kate")
    access = re.search(r"^access_token (\S+)$", out, re.M).group(1)
    refresh = re.search(r"^refresh_token (\S+)$", out, re.M).group(1)
    addr = server.c2s_direct_tls
    assert x_oauth(addr, "video.test", access).ok and x_oauth(addr, "video.test", refresh).ok
    listed = cli("list", "kate@video.test")
    ids = re.findall(r"^([0-9a-f]{32}) ", listed, re.M)
    assert len(ids) == 1, listed
    # Revoke the one refresh token: the access token keeps working.
    assert "revoked refresh token" in cli("revoke", "--tenant", "video", "kate", "--id", ids[0])
    assert x_oauth(addr, "video.test", refresh).condition == "not-authorized"
    assert x_oauth(addr, "video.test", access).ok
    # Revoke everything.
    assert "revoked every token of kate@video.test" in cli("revoke", "--tenant", "video", "kate")
    assert x_oauth(addr, "video.test", access).condition == "not-authorized"
    # A tenant without tokens: the CLI says so.
    out = subprocess.run([heliograph_bin, "token", "mint", "ivy@other.test"], capture_output=True,
                         text=True, env=env, timeout=30)
    assert out.returncode == 1 and "does not issue tokens" in out.stderr, out.stderr


def test_deleting_the_account_kills_its_tokens(server):
    server.create_user("liam", "pw", domain="video.test")
    _, minted = server.admin("POST", "/api/v1/users/video.test/liam/tokens", {}, expect=201)
    addr = server.c2s_direct_tls
    assert x_oauth(addr, "video.test", minted["access"]["token"]).ok
    server.admin("DELETE", "/api/v1/users/video.test/liam", expect=204)
    server.create_user("liam", "pw2", domain="video.test")
    assert x_oauth(addr, "video.test", minted["access"]["token"]).condition == "not-authorized"
    assert x_oauth(addr, "video.test", minted["refresh"]["token"]).condition == "not-authorized"
