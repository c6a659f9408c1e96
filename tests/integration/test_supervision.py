"""Supervisor listen / whisper / barge through real SIP calls: Alice calls Bob (an agent of the
support queue); Carol, the queue's supervisor, dials *222 1002. Each phone streams its own tone
and what each hears is decoded: listen — Carol hears both, nobody hears Carol; whisper (key 2) —
only Bob hears Carol; barge (key 3) — both do; POST /monitor switches back; after Carol hangs up,
Alice and Bob talk as before. Someone who is not a supervisor gets 403."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from audio import RtpPhone, level_at, sine
from centralino.api.server import call_api
from helpers import (
    Caller,
    Phone,
    RunningSwitch,
    info_digit,
    media_port,
    plan_text,
    sdp_for,
    wait_for,
)

PLAN = """\
routes:
  - {match: {to: "^100\\\\d$"}, action: {dial: "${to}", timeout: 10}}
agents:
  "1002": {logged_in: true}
queues:
  support: {members: ["1002"], supervisors: ["1003"]}
"""
EXTS = "extensions:\n" + "".join(f'  "{n}": {{password: "pw{n}"}}\n' for n in (1001, 1002, 1003, 1004))
TONES = {"alice": 500.0, "bob": 1000.0, "carol": 1500.0}


@pytest.fixture
def sw(tmp_path):
    text = plan_text(tmp_path, PLAN, extensions=EXTS)
    text = text.replace("  security:", '  rtp: {ports: "34000-34999", workers: 2}\n  security:')
    with RunningSwitch(text) as s:
        yield s


def hears(rtp: dict[str, RtpPhone], seconds: float = 1.0) -> dict[str, dict[str, float]]:
    """For each phone, the level of each tone in what it received during ``seconds``."""
    for p in rtp.values():
        p.received.clear()
    time.sleep(seconds)
    out = {}
    for me, phone in rtp.items():
        audio = phone.audio()
        assert len(audio) > 8000 * seconds * 0.8, f"{me} received {len(audio)} samples"
        out[me] = {who: level_at(audio[:6000].astype(np.float64), f) for who, f in TONES.items()}
    return out


def heard(levels: dict[str, dict[str, float]], me: str) -> set[str]:
    got = {who for who, level in levels[me].items() if level > 2000}
    faint = {who for who, level in levels[me].items() if 200 <= level <= 2000}
    assert not faint, f"{me}: unclear levels {levels[me]}"
    return got


def after_the_supervisor_left(sw, rtp: dict[str, RtpPhone], alice: Caller, answer) -> dict[str, dict[str, float]]:
    """Once the session is gone: what Alice and Bob hear without Carol, then Alice hangs up."""
    assert wait_for(lambda: not call_api(sw.api, "GET", "/api/v1/monitor")[1]["sessions"], 3)
    time.sleep(0.3)
    rtp.pop("carol").close()
    after = hears(rtp)
    assert alice.hang_up(answer, 3).status == 200
    return after


def test_listen_whisper_barge_then_leave(sw):
    rtp = {who: RtpPhone("PCMU") for who in TONES}
    bob = Phone(sw.address("udp"), "1002", "pw1002")
    bob.sdp = sdp_for(rtp["bob"].address[1], "0 101")
    bob.start()
    alice = Caller(sw.address("udp"), "1001", "pw1001")
    alice.sdp = sdp_for(rtp["alice"].address[1], "0 101")
    carol = Caller(sw.address("udp"), "1003", "pw1003")
    carol.sdp = sdp_for(rtp["carol"].address[1], "0 101")
    try:
        answer = alice.call("1002")
        assert answer is not None and answer.status == 200
        alice._ack(alice.last_invite, answer)
        rtp["alice"].send(sine(TONES["alice"], 14.0, 0.2), ("127.0.0.1", media_port(answer)))
        rtp["bob"].send(sine(TONES["bob"], 14.0, 0.2), ("127.0.0.1", media_port(bob.invite)))
        time.sleep(0.5)

        stranger = Caller(sw.address("udp"), "1004", "pw1004")
        assert stranger.call("*2221002").status == 403
        assert Caller(sw.address("udp"), "1003", "pw1003").call("*2221001").status == 403  # Alice is no agent
        stranger.close()

        joined = carol.call("*2221002")
        assert joined is not None and joined.status == 200
        carol._ack(carol.last_invite, joined)
        rtp["carol"].send(sine(TONES["carol"], 11.0, 0.2), ("127.0.0.1", media_port(joined)))
        time.sleep(0.4)
        listen = hears(rtp)
        info_digit(carol, joined, 3, "2")
        time.sleep(0.3)
        whisper = hears(rtp)
        info_digit(carol, joined, 4, "3")
        time.sleep(0.3)
        barge = hears(rtp)
        status, reply = call_api(sw.api, "PUT", "/api/v1/monitor/1003", json.dumps({"mode": "listen"}).encode())
        assert status == 200 and reply["sessions"][0]["mode"] == "listen" and reply["sessions"][0]["agent"] == "1002"
        time.sleep(0.3)
        back_to_listen = hears(rtp)
        assert carol.hang_up(joined, 5).status == 200
        after = after_the_supervisor_left(sw, rtp, alice, answer)
    finally:
        bob.stop()
        for p in rtp.values():
            p.close()

    assert heard(listen, "carol") == {"alice", "bob"}
    assert heard(listen, "alice") == {"bob"} and heard(listen, "bob") == {"alice"}
    assert heard(whisper, "bob") == {"alice", "carol"} and heard(whisper, "alice") == {"bob"}
    assert heard(whisper, "carol") == {"alice", "bob"}
    assert heard(barge, "alice") == {"bob", "carol"} and heard(barge, "bob") == {"alice", "carol"}
    assert heard(back_to_listen, "alice") == {"bob"} and heard(back_to_listen, "bob") == {"alice"}
    assert heard(after, "alice") == {"bob"} and heard(after, "bob") == {"alice"}


def test_monitor_an_agent_who_is_not_on_a_call(sw):
    carol = Caller(sw.address("udp"), "1003", "pw1003")
    resp = carol.call("*2221002")
    assert resp is not None and resp.status == 480
    status, reply = call_api(sw.api, "PUT", "/api/v1/monitor/1003", json.dumps({"mode": "barge"}).encode())
    assert status == 404 and "not monitoring" in reply["error"]


def test_listen_in_from_the_api_rings_the_supervisors_phone(tmp_path):
    """The wallboard's "listen" button: POST /api/v1/agents/1002/monitor as the supervisor rings its
    desk phone (which answers like any call) and joins Bob's call; barge via PUT; hanging the
    monitor call up leaves Alice and Bob talking."""
    users = '\nusers:\n  carol: {role: supervisor, extension: "1003", password: "carol-pw"}\n'
    text = plan_text(tmp_path, PLAN + users, extensions=EXTS)
    text = text.replace("  security:", '  rtp: {ports: "34000-34999", workers: 2}\n  security:')
    with RunningSwitch(text) as sw:
        rtp = {who: RtpPhone("PCMU") for who in TONES}
        bob = Phone(sw.address("udp"), "1002", "pw1002")
        bob.sdp = sdp_for(rtp["bob"].address[1], "0 101")
        bob.start()
        carol = Phone(sw.address("udp"), "1003", "pw1003")  # the supervisor's desk phone answers
        carol.sdp = sdp_for(rtp["carol"].address[1], "0 101")
        carol.start()
        alice = Caller(sw.address("udp"), "1001", "pw1001")
        alice.sdp = sdp_for(rtp["alice"].address[1], "0 101")
        try:
            status, session = call_api(sw.api, "POST", "/api/v1/auth/login",
                                       json.dumps({"user": "carol", "password": "carol-pw"}).encode())
            assert status == 200
            token = session["token"]
            status, reply = call_api(sw.api, "POST", "/api/v1/agents/1002/monitor", b'{"mode": "listen"}', token=token)
            assert status == 409 and "not on a call" in reply["error"]
            answer = alice.call("1002")
            assert answer is not None and answer.status == 200
            alice._ack(alice.last_invite, answer)
            rtp["alice"].send(sine(TONES["alice"], 12.0, 0.2), ("127.0.0.1", media_port(answer)))
            rtp["bob"].send(sine(TONES["bob"], 12.0, 0.2), ("127.0.0.1", media_port(bob.invite)))
            time.sleep(0.3)
            status, reply = call_api(sw.api, "POST", "/api/v1/agents/1002/monitor", b'{"mode": "listen"}', token=token)
            assert status == 200 and reply["supervisor"] == "1003" and reply["mode"] == "listen", reply
            rtp["carol"].send(sine(TONES["carol"], 9.0, 0.2), ("127.0.0.1", media_port(carol.invite)))
            time.sleep(0.4)
            listen = hears(rtp)
            status, reply = call_api(sw.api, "PUT", "/api/v1/monitor/1003", b'{"mode": "barge"}', token=token)
            assert status == 200 and reply["sessions"][0]["mode"] == "barge"
            time.sleep(0.3)
            barge = hears(rtp)
            assert call_api(sw.api, "POST", f"/api/v1/calls/{reply['sessions'][0]['call']}/hangup")[0] == 200
            after = after_the_supervisor_left(sw, rtp, alice, answer)
        finally:
            bob.stop()
            carol.stop()
            for p in rtp.values():
                p.close()
    assert heard(listen, "carol") == {"alice", "bob"}
    assert heard(listen, "alice") == {"bob"} and heard(listen, "bob") == {"alice"}
    assert heard(barge, "alice") == {"bob", "carol"} and heard(barge, "bob") == {"alice", "carol"}
    assert heard(after, "alice") == {"bob"} and heard(after, "bob") == {"alice"}
