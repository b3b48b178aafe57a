"""Federation with a real Prosody (Debian's package) authenticated by certificates
(RFC 6120 §6, XEP-0178): a test CA made with openssl signs Prosody's certificate for
``prosody.test`` and Heliograph's for ``heliograph.test``; both trust only that CA and
Prosody requires valid certificates (``s2s_secure_auth``). A tenant added at runtime
exchanges messages with Prosody, and Heliograph's streams both ways say they were
authenticated with SASL EXTERNAL.
"""

from __future__ import annotations

import pytest

from harness.prosody import Prosody
from harness.server import HeliographServer
from harness.test_ca import TestCA
from harness.waiting import wait_for

PROSODY = "prosody.test"
HELIO = "heliograph.test"


@pytest.fixture
def certified_federation(heliograph_bin):
    ca = TestCA()
    prosody = Prosody(PROSODY, ca=ca)
    crt, key = ca.issue(HELIO)
    helio = HeliographServer(binary=heliograph_bin, config_overrides={
        "tls": {"cert": str(crt), "key": str(key)},
        "listen": {"s2s": [{"address": "127.0.0.1:0"}]},
        "s2s": {"enabled": True, "ca_file": str(ca.cert),
                "hosts": {PROSODY: f"127.0.0.1:{prosody.s2s_port}"}},
    })
    helio.start()
    try:
        prosody.add_user("pat", "pw-p")
        prosody.start({HELIO: helio._listener("s2s", "starttls")})
        try:
            yield helio, prosody
        finally:
            print(prosody.log_text()[-6000:])
            prosody.stop()
    finally:
        helio.stop(check=False)
        print(helio.log_tail())


def s2s_streams(helio) -> list[dict]:
    return helio.admin("GET", "/api/v1/s2s", expect=200)[1]["streams"]


@pytest.mark.async_timeout(120)
async def test_prosody_and_heliograph_authenticate_each_other_with_sasl_external(
        certified_federation, xmpp):
    helio, prosody = certified_federation
    helio.create_tenant("fed", [HELIO], s2s={"enabled": True, "auth": ["external"]})
    helio.create_user("hana", "pw-h", domain=HELIO)
    hana = await xmpp.connect(helio, f"hana@{HELIO}", "pw-h", resource="web")
    pat = xmpp.make(f"pat@{PROSODY}/desk", "pw-p")
    await pat.start("127.0.0.1", prosody.c2s_port)
    pat.send_presence()

    hana.send_message(mto=f"pat@{PROSODY}", mbody="signed hello", mtype="chat")
    got = await pat.next_message(timeout=30)
    assert got["body"] == "signed hello"

    pat.send_message(mto=f"hana@{HELIO}/web", mbody="signed reply", mtype="chat")
    got = await hana.next_message(timeout=30)
    assert got["body"] == "signed reply"

    def authenticated_both_ways():
        streams = [s for s in s2s_streams(helio) if s["pairs"] and s["auth"]]
        return streams if {s["direction"] for s in streams} == {"incoming", "outgoing"} else None

    # Outgoing: Prosody offered EXTERNAL (our certificate verified) and accepted it;
    # incoming: Prosody authenticated with EXTERNAL (its certificate verified here).
    streams = await wait_for(authenticated_both_ways, what="an authenticated s2s stream each way")
    assert all(s["auth"] == "external" for s in streams), streams
