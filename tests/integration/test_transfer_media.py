"""Transfers with a transferor that keeps talking: a real phone goes on sending RTP until it has
processed the BYE (here 100-300 ms after it), as the independent softphone in the report did.
Before, the re-point cleared the endpoint's learned source and the next packet from *anyone*
was latched — the transferor's — so the caller's audio went to the old agent and the target
heard nothing, about half the time. Each side's audio is checked by decoding what arrived."""

from __future__ import annotations

import json
import random
import threading
import time

import pytest
from audio import Talker, dominant
from centralino.api.server import call_api
from centralino.switch.sip.sdp import parse_sdp
from helpers import (
    Caller,
    Phone,
    RunningSwitch,
    db_rows,
    media_port,
    plan_text,
    refer,
    sdp_for,
    wait_for,
)

ROUTES = 'routes:\n  - {match: {to: "^100\\\\d$"}, action: {dial: "${to}", timeout: 10}}\n'
EXTS = "extensions:\n" + "".join(f'  "{n}": {{password: "pw{n}"}}\n' for n in (1001, 1002, 1003, 1004))
ALICE_HZ, BOB_HZ, CAROL_HZ = 1000, 600, 1500


@pytest.fixture(scope="module")
def sw(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("transfer")
    text = plan_text(tmp, ROUTES, extensions=EXTS)
    text = text.replace("  security:", '  rtp: {ports: "32000-32999", workers: 1}\n  security:')
    with RunningSwitch(text) as s:
        s.tmp = tmp
        yield s


def phone_for(sw, ext: str, talker: Talker) -> Phone:
    p = Phone(sw.address("udp"), ext, f"pw{ext}")
    p.sdp = sdp_for(talker.phone.address[1], "0")
    return p.start()


def keeps_talking_after_bye(phone: Phone, talker: Talker, delay: float) -> threading.Thread:
    """The transferor's phone: it stops its audio ``delay`` seconds after it got the BYE."""
    def run() -> None:
        wait_for(lambda: any(m.method == "BYE" for m in phone.received), 10)
        time.sleep(delay)
        talker.stop()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def check_after_transfer(alice: Talker, carol: Talker) -> None:
    time.sleep(1.2)  # well past the transferor's last packet
    to_alice, to_carol = alice.heard(0.8), carol.heard(0.8)
    assert len(to_carol) >= 0.6 * 8000, "the transfer target receives audio"
    assert abs(dominant(to_carol) - ALICE_HZ) < 20, f"the target hears the caller, not {dominant(to_carol):.0f} Hz"
    assert abs(dominant(to_alice) - CAROL_HZ) < 20, f"the caller hears the target, not {dominant(to_alice):.0f} Hz"


def parties(sw) -> tuple[Talker, Talker, Talker, Phone, Phone, Caller]:
    """Alice (1001, a caller), Bob (1002) and Carol (1004), each with a talker of their tone."""
    a, b, c = Talker(ALICE_HZ), Talker(BOB_HZ), Talker(CAROL_HZ)
    bob, carol = phone_for(sw, "1002", b), phone_for(sw, "1004", c)
    alice = Caller(sw.address("udp"), "1001", "pw1001")
    alice.sdp = sdp_for(a.phone.address[1], "0")
    return a, b, c, bob, carol, alice


def alice_calls_bob(alice: Caller, a: Talker, b: Talker, bob: Phone):
    """Alice calls Bob, who answers; both talk. Returns the 200."""
    resp = alice.call("1002")
    assert resp is not None and resp.status == 200
    alice._ack(alice.last_invite, resp)
    a.start(("127.0.0.1", media_port(resp)))
    b.start(("127.0.0.1", parse_sdp(bob.invite.body).media[0].port))
    time.sleep(0.5)
    return resp


@pytest.mark.parametrize("attempt", range(10))
def test_blind_transfer_while_the_transferor_keeps_sending(sw, attempt):
    rng = random.Random(attempt)
    a, b, c, bob, carol, alice = parties(sw)
    try:
        resp = alice_calls_bob(alice, a, b, bob)
        assert abs(dominant(a.heard(0.3)) - BOB_HZ) < 20  # talking to Bob first
        stopper = keeps_talking_after_bye(bob, b, rng.uniform(0.1, 0.3))
        refer(bob, "1004")
        assert wait_for(lambda: carol.invite is not None, 5)
        c.start(("127.0.0.1", parse_sdp(carol.invite.body).media[0].port))
        stopper.join(5)
        check_after_transfer(a, c)
        sent_by_bob_after = b.sent
        assert alice.hang_up(resp, 10).status == 200
        def legs() -> list[dict]:
            return db_rows(sw, "SELECT * FROM cdr WHERE leg = 'b' AND call_id = ? AND answer IS NOT NULL ORDER BY start",
                           (alice.call_id,))  # phones of earlier attempts are still registered: their legs ring unanswered
        assert wait_for(lambda: len(legs()) == 2, 5), legs()
        to_bob, to_carol = legs()
        assert to_bob["destination"] == "extension:1002" and to_carol["destination"] == "extension:1004"
        # each leg counts its own party's packets: Carol's leg none of Bob's late ones
        assert to_carol["rtp_rx"] is not None and to_carol["rtp_rx"] <= c.sent
        assert to_bob["rtp_rx"] is not None and 0 < to_bob["rtp_rx"] <= sent_by_bob_after
    finally:
        for t in (a, b, c):
            t.close()
        bob.stop()
        carol.stop()
        alice.close()


@pytest.mark.parametrize("attempt", range(3))
def test_attended_transfer_while_the_transferor_keeps_sending(sw, attempt):
    """Bob talks to Alice (call 1) and Carol (call 2, from his second line), then joins them
    (REFER with Replaces); both of Bob's lines keep sending after their BYEs."""
    rng = random.Random(100 + attempt)
    a, b1, b2, c = Talker(ALICE_HZ), Talker(BOB_HZ), Talker(BOB_HZ + 100), Talker(CAROL_HZ)
    bob, carol = phone_for(sw, "1002", b1), phone_for(sw, "1004", c)
    alice = Caller(sw.address("udp"), "1001", "pw1001")
    alice.sdp = sdp_for(a.phone.address[1], "0")
    bob2 = Caller(sw.address("udp"), "1002", "pw1002")
    bob2.sdp = sdp_for(b2.phone.address[1], "0")
    try:
        r1 = alice.call("1002")
        alice._ack(alice.last_invite, r1)
        a.start(("127.0.0.1", media_port(r1)))
        b1.start(("127.0.0.1", parse_sdp(bob.invite.body).media[0].port))
        r2 = bob2.call("1004")
        bob2._ack(bob2.last_invite, r2)
        b2.start(("127.0.0.1", media_port(r2)))
        c.start(("127.0.0.1", parse_sdp(carol.invite.body).media[0].port))
        time.sleep(0.5)
        stopper = keeps_talking_after_bye(bob, b1, rng.uniform(0.1, 0.3))
        refer(bob, "1004", replaces=f"{bob2.call_id};to-tag={r2.to.tag};from-tag={bob2.tag}")
        reinvite = wait_for(lambda: [m for m in carol.received if m.method == "INVITE" and m.to.tag], 5)
        assert reinvite
        # Carol's phone follows the re-INVITE: it now sends to call 1's callee-facing endpoint
        c.to = ("127.0.0.1", parse_sdp(reinvite[-1].body).media[0].port)
        threading.Timer(rng.uniform(0.1, 0.3), b2.stop).start()  # Bob's second line, too
        stopper.join(5)
        check_after_transfer(a, c)
    finally:
        for t in (a, b1, b2, c):
            t.close()
        bob.stop()
        carol.stop()
        alice.close()
        bob2.close()


def test_a_transfer_the_api_asks_for_moves_the_caller_with_its_audio(sw):
    """``POST /api/v1/calls/{id}/transfer`` (an agent desktop's transfer button): the same blind
    transfer as Bob's phone sending REFER, but nothing is NOTIFYed to Bob's phone (it asked for
    nothing); a call that is not connected, or a target nobody answers for, is refused."""
    a, b, c, bob, carol, alice = parties(sw)
    try:
        resp = alice_calls_bob(alice, a, b, bob)
        status, calls = call_api(sw.api, "GET", "/api/v1/calls")
        # (the attended tests' calls still run until their media times out: this one goes to Bob)
        (live,) = [x for x in calls["calls"] if x["destination"] == "extension:1002"]
        path = f"/api/v1/calls/{live['id']}/transfer"
        status, reply = call_api(sw.api, "POST", path, json.dumps({"to": "1003"}).encode())
        assert status == 404 and "nobody to ring" in reply["error"]  # 1003 is not registered
        stopper = keeps_talking_after_bye(bob, b, 0.2)
        status, reply = call_api(sw.api, "POST", path, json.dumps({"to": "1004"}).encode())
        assert status == 202 and reply["ringing"], reply
        assert wait_for(lambda: carol.invite is not None, 5)
        c.start(("127.0.0.1", parse_sdp(carol.invite.body).media[0].port))
        stopper.join(5)
        check_after_transfer(a, c)
        assert not [m for m in bob.received if m.method == "NOTIFY"], "Bob's phone sent no REFER to be told about"
        assert call_api(sw.api, "GET", f"/api/v1/calls/{live['id']}")[1]["destination"] == "extension:1004"
        assert alice.hang_up(resp, 10).status == 200
        legs = wait_for(lambda: db_rows(sw, "SELECT destination FROM cdr WHERE leg = 'b' AND call_id = ? "
                                            "AND answer IS NOT NULL ORDER BY start", (alice.call_id,)), 5)
        assert [x["destination"] for x in legs] == ["extension:1002", "extension:1004"]
        status, reply = call_api(sw.api, "POST", path, json.dumps({"to": "1004"}).encode())
        assert status == 404  # the call is over
    finally:
        for t in (a, b, c):
            t.close()
        bob.stop()
        carol.stop()
        alice.close()
