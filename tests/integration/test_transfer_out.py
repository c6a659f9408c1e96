"""A transfer to an outside number: the agent desktop's transfer field (``POST
/api/v1/calls/{id}/transfer``) or a desk phone's REFER names a number the plan routes to a trunk;
the caller is handed to a new leg through that trunk (a SIPp UAS standing in for the carrier,
echoing RTP), the agent's leg is released, and the CDR shows both legs. The route is chosen as the
transferring agent would dial it, so an agent cannot transfer to what it could not call."""

from __future__ import annotations

import json
import time

import pytest
from audio import Talker, dominant
from centralino.api.server import call_api
from centralino.bench.sipp import start_sipp
from centralino.switch.sip.sdp import parse_sdp
from helpers import (
    Caller,
    Phone,
    RunningSwitch,
    db_rows,
    free_port,
    media_port,
    need_tool,
    plan_text,
    refer,
    sdp_for,
    wait_for,
)

PLAN = """\
trunks:
  carrier: {{host: 127.0.0.1, port: {carrier_port}, qualify: 0}}
routes:
  - {{match: {{to: "^100\\\\d$"}}, action: {{dial: "${{to}}", timeout: 10}}}}
  - {{match: {{to: "^8\\\\d{{10}}$", source: extension, from: "^100[12]$"}}, action: {{trunk: carrier}}}}
"""
EXTS = "extensions:\n" + "".join(f'  "{n}": {{password: "pw{n}"}}\n' for n in (1001, 1002, 1003))
ALICE_HZ, BOB_HZ = 1000, 600


@pytest.fixture
def sw(tmp_path):
    need_tool("sipp")
    carrier_port = free_port()
    text = plan_text(tmp_path, PLAN.format(carrier_port=carrier_port), extensions=EXTS)
    text = text.replace("  security:", '  rtp: {ports: "33000-33999", workers: 1}\n  security:')
    carrier = start_sipp("uas_echo.xml", local_ip="127.0.0.1", port=carrier_port, media_port=free_port(),
                         count=1, extra=["-rtp_echo"], log_dir=tmp_path)
    try:
        with RunningSwitch(text) as s:
            s.carrier = carrier
            yield s
    finally:
        carrier.kill()
        carrier.wait(5)


def connected(sw, bob_ext: str = "1002"):
    """Alice (1001) calls Bob, who answers; both talk. Returns the parties and the 200."""
    a, b = Talker(ALICE_HZ), Talker(BOB_HZ)
    bob = Phone(sw.address("udp"), bob_ext, f"pw{bob_ext}")
    bob.sdp = sdp_for(b.phone.address[1], "0")
    bob.start()
    alice = Caller(sw.address("udp"), "1001", "pw1001")
    alice.sdp = sdp_for(a.phone.address[1], "0")
    resp = alice.call(bob_ext)
    assert resp is not None and resp.status == 200
    alice._ack(alice.last_invite, resp)
    a.start(("127.0.0.1", media_port(resp)))
    b.start(("127.0.0.1", parse_sdp(bob.invite.body).media[0].port))
    time.sleep(0.5)
    return a, b, alice, bob, resp


def hears_the_carrier(alice: Talker) -> None:
    time.sleep(1.5)
    heard = alice.heard(0.8)
    assert len(heard) >= 0.6 * 8000, "the caller receives audio from the new leg"
    # the carrier echoes: the caller hears its own tone, no longer Bob's
    assert abs(dominant(heard) - ALICE_HZ) < 20, f"the caller hears {dominant(heard):.0f} Hz, not the carrier's echo"


def b_legs(sw, call_id: str) -> list[str]:
    return [r["destination"] for r in db_rows(
        sw, "SELECT destination FROM cdr WHERE leg = 'b' AND call_id = ? AND answer IS NOT NULL ORDER BY start",
        (call_id,))]


def test_the_api_transfers_a_caller_to_an_outside_number(sw):
    a, b, alice, bob, resp = connected(sw)
    try:
        (live,) = [x for x in call_api(sw.api, "GET", "/api/v1/calls")[1]["calls"]
                   if x["destination"] == "extension:1002"]
        status, reply = call_api(sw.api, "POST", f"/api/v1/calls/{live['id']}/transfer",
                                 json.dumps({"to": "89161234567"}).encode())
        assert status == 202, reply
        assert wait_for(lambda: any(m.method == "BYE" for m in bob.received), 10), "Bob's leg is released"
        hears_the_carrier(a)
        call = call_api(sw.api, "GET", f"/api/v1/calls/{live['id']}")[1]
        assert call["destination"] == "trunk:carrier:89161234567"
        assert alice.hang_up(resp, 10).status == 200
        assert wait_for(lambda: b_legs(sw, alice.call_id) == ["extension:1002", "trunk:carrier:89161234567"], 5), \
            b_legs(sw, alice.call_id)
    finally:
        a.close()
        b.close()
        bob.stop()
        alice.close()


def test_a_desk_phone_refer_to_an_outside_number_and_what_the_agent_may_not_dial(sw):
    """Bob's phone REFERs to the number: the same path, with NOTIFYs. Then 1003, whom the plan
    does not let dial out, cannot transfer there either (nobody to ring: the caller stays)."""
    a, b, alice, bob, resp = connected(sw, "1003")
    try:
        (live,) = [x for x in call_api(sw.api, "GET", "/api/v1/calls")[1]["calls"]
                   if x["destination"] == "extension:1003"]
        status, reply = call_api(sw.api, "POST", f"/api/v1/calls/{live['id']}/transfer",
                                 json.dumps({"to": "89161234567"}).encode())
        assert status == 404, reply  # 1003 may not call out, so it may not transfer out
        assert not any(m.method == "BYE" for m in bob.received)
        refer(bob, "89161234567")
        assert wait_for(lambda: any(m.method == "NOTIFY" and b"480" in m.body for m in bob.received), 5)
        assert call_api(sw.api, "GET", f"/api/v1/calls/{live['id']}")[1]["destination"] == "extension:1003"
        assert alice.hang_up(resp, 10).status == 200
    finally:
        a.close()
        b.close()
        bob.stop()
        alice.close()


def test_a_desk_phone_refers_its_caller_to_an_outside_number(sw):
    a, b, alice, bob, resp = connected(sw)
    try:
        refer(bob, "89161234567")
        assert wait_for(lambda: any(m.method == "NOTIFY" and b"200 OK" in m.body for m in bob.received), 10)
        assert wait_for(lambda: any(m.method == "BYE" for m in bob.received), 10)
        hears_the_carrier(a)
        assert alice.hang_up(resp, 10).status == 200
        assert wait_for(lambda: b_legs(sw, alice.call_id) == ["extension:1002", "trunk:carrier:89161234567"], 5)
    finally:
        a.close()
        b.close()
        bob.stop()
        alice.close()
