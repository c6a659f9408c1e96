"""Media features through real SIP calls on loopback: a prompt route heard and recorded, a
dialled call between phones without a common codec (transcoded) recorded in stereo with a
pause typed as a feature code, and a three-party conference."""

from __future__ import annotations

import json
import time
import wave

import numpy as np
import pytest
from audio import RtpPhone, dominant, level_at, rms, sine
from centralino.api.server import call_api
from centralino.media.player import PACKAGED as PROMPTS
from helpers import (
    Caller,
    Phone,
    RunningSwitch,
    db_rows,
    info_digit,
    media_port,
    plan_text,
    sdp_for,
    wait_for,
)

ROUTES = """\
routes:
  - {match: {to: "600"}, action: {play: "welcome"}, record: true}
  - {match: {to: "700"}, action: {conference: demo}}
  - {match: {to: "^100\\\\d$"}, action: {dial: "${to}", timeout: 10}, record: true}
conferences:
  demo: {announce: "tone:800/200"}
"""
EXTS = """\
extensions:
  "1001": {password: "pw1001", name: Alice}
  "1002": {password: "pw1002", name: Bob}
  "1003": {password: "pw1003"}
"""


@pytest.fixture
def sw(tmp_path):
    text = plan_text(tmp_path, ROUTES, extensions=EXTS)
    text = text.replace("  security:", f"  rtp: {{ports: \"35000-35999\", workers: 1}}\n"
                                       f"  recordings: \"{tmp_path / 'rec'}\"\n  security:")
    with RunningSwitch(text) as s:
        s.tmp = tmp_path
        yield s


def rows(sw, sql):
    return db_rows(sw, sql)


def test_prompt_route_is_heard_then_hung_up_and_recorded(sw):
    phone = RtpPhone("PCMA")
    alice = Caller(sw.address("udp"), "1001", "pw1001")
    alice.sdp = sdp_for(phone.address[1], "8 101")
    try:
        resp = alice.call("600")
        assert resp is not None and resp.status == 200
        assert "PCMA/8000" in resp.body.decode() and "PCMU" not in resp.body.decode()
        alice._ack(alice.last_invite, resp)
        phone.send(sine(700, 2.5, 0.2), ("127.0.0.1", media_port(resp)))
        bye = wait_for(lambda: next((m for m in iter(lambda: alice.recv(0.2), None) if getattr(m, "method", "") == "BYE"), None), 6)
        assert bye is not None  # the switch hangs up after the prompt
        audio = phone.audio()
    finally:
        phone.close()
    voiced = np.flatnonzero(np.array([rms(audio[i:i + 160]) for i in range(0, len(audio) - 159, 160)]) > 300)
    assert 1300 <= (voiced[-1] - voiced[0] + 1) * 20 <= 2000  # "Welcome to Centralino." ≈ 1.9 s
    cdr = wait_for(lambda: rows(sw, "SELECT * FROM cdr WHERE leg = 'call'"), 5)
    assert cdr[0]["recording"] and cdr[0]["destination"] == "play:welcome" and cdr[0]["disposition"] == "ANSWERED"
    index = wait_for(lambda: rows(sw, "SELECT * FROM recordings"), 5)
    assert index[0]["path"] == cdr[0]["recording"] and index[0]["caller"] == "1001" and index[0]["called"] == "600"
    with wave.open(cdr[0]["recording"]) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    # left: what the caller said (700 Hz); right: what the caller heard (the prompt)
    assert round(dominant(data[4000:12000, 0]), -1) == 700
    assert rms(data[:, 1]) > 1000 and level_at(data[4000:12000, 1], 700) < 200


@pytest.mark.parametrize(("codec", "pt"), [("PCMA", "8"), ("opus", "111")])
def test_transcoded_call_recorded_in_stereo_with_a_feature_code_pause(sw, codec, pt):
    alice_rtp, bob_rtp = RtpPhone("PCMU"), RtpPhone(codec, int(pt))
    bob = Phone(sw.address("udp"), "1002", "pw1002")
    bob.sdp = sdp_for(bob_rtp.address[1], pt)  # Bob's phone speaks only A-law (or only Opus)
    bob.start()
    alice = Caller(sw.address("udp"), "1001", "pw1001")
    alice.sdp = sdp_for(alice_rtp.address[1], "0 101")  # Alice's µ-law only
    try:
        resp = alice.call("1002")
        assert resp is not None and resp.status == 200
        assert " 0 101" in resp.body.decode() or "RTP/AVP 0" in resp.body.decode()
        alice._ack(alice.last_invite, resp)
        bob_port = media_port(bob.invite)
        alice_rtp.send(sine(1000, 4.0, 0.2), ("127.0.0.1", media_port(resp)))
        bob_rtp.send(sine(600, 4.0, 0.2), ("127.0.0.1", bob_port))
        time.sleep(1.5)
        info_digit(alice, resp, 3, "*")
        info_digit(alice, resp, 4, "1")  # *1: pause
        time.sleep(1.0)
        call_id = alice.call_id
        status, reply = call_api(sw.api, "POST", f"/api/v1/calls/{call_id}/recording", json.dumps({"paused": False}).encode())
        assert status == 200 and reply["ok"] and not reply["paused"]
        alice_rtp.wait_sent()
        assert alice.hang_up(resp, 5).status == 200
        heard_by_alice, heard_by_bob = alice_rtp.audio(), bob_rtp.audio()
    finally:
        bob.stop()
        alice_rtp.close()
        bob_rtp.close()
    # transcoded both ways, each hears the other's tone
    assert round(dominant(heard_by_bob[4000:12000]), -1) == 1000 and level_at(heard_by_bob[4000:12000], 1000) > 4000
    assert round(dominant(heard_by_alice[4000:12000]), -1) == 600
    cdr = wait_for(lambda: rows(sw, "SELECT * FROM cdr WHERE leg = 'call' AND recording IS NOT NULL"), 5)
    index = wait_for(lambda: rows(sw, "SELECT * FROM recordings"), 5)
    assert index[0]["agent"] == "1002" and index[0]["paused_seconds"] > 0.5
    with wave.open(cdr[0]["recording"]) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    talk = data[2000:8000]
    assert round(dominant(talk[:, 0]), -1) == 1000 and round(dominant(talk[:, 1]), -1) == 600
    assert level_at(talk[:, 0], 600) < 300 and level_at(talk[:, 1], 1000) < 300
    # the paused span is silence, the audio on both sides of it is not
    blocks = np.array([np.abs(data[i:i + 160]).max() for i in range(0, len(data) - 159, 160)])
    silent = np.flatnonzero(blocks == 0)
    # the pause is the longest run of silent blocks (a first frame may be empty before media flows)
    runs = np.split(silent, np.flatnonzero(np.diff(silent) != 1) + 1)
    pause = max(runs, key=len)
    assert len(pause) * 20 >= 0.6 * 1000 * index[0]["paused_seconds"]
    assert blocks[pause[0] - 20: pause[0]].min() > 0 and blocks[pause[-1] + 1: pause[-1] + 20].min() > 0


def test_three_party_conference_through_sip(sw):
    tones = {"1001": 500.0, "1002": 900.0, "1003": 1400.0}
    phones = {u: RtpPhone("PCMU") for u in tones}
    callers = {}
    try:
        for user in tones:
            c = Caller(sw.address("udp"), user, f"pw{user}")
            c.sdp = sdp_for(phones[user].address[1], "0 101")
            resp = c.call("700")
            assert resp is not None and resp.status == 200
            c._ack(c.last_invite, resp)
            callers[user] = (c, resp)
            phones[user].send(sine(tones[user], 4.0, 0.2), ("127.0.0.1", media_port(resp)))
        time.sleep(2.0)
        for p in phones.values():
            p.received.clear()
        time.sleep(1.2)
        heard = {u: p.audio() for u, p in phones.items()}
        for c, resp in callers.values():
            c.hang_up(resp, 3)
    finally:
        for p in phones.values():
            p.close()
    for me, audio in heard.items():
        assert len(audio) > 6000
        for other, freq in tones.items():
            level = level_at(audio[:6000], freq)
            assert (level > 3000) if other != me else (level < 200), (me, other, level)
    cdr = wait_for(lambda: rows(sw, "SELECT * FROM cdr WHERE leg = 'call'") if len(rows(sw, "SELECT * FROM cdr WHERE leg = 'call'")) == 3 else None, 5)
    assert {r["destination"] for r in cdr} == {"conference:demo"}


def test_embedded_default_plan_after_hours_takes_a_message_and_records_the_call(tmp_path):
    """The plan `centralino run` uses without --config, with the office forced closed (the
    day/night switch, so the test does not depend on the hour): dialling 800 hears "closed" and
    the voicemail greeting, the caller's 2 s become a message in the general box, and the whole
    call is recorded into recordings/."""
    from importlib import resources

    text = resources.files("centralino.config").joinpath("default.yaml").read_text("utf-8")
    text = (text.replace("127.0.0.1:5060", "127.0.0.1:0").replace("127.0.0.1:8080", "127.0.0.1:0")
            .replace('"sqlite:centralino.db"', f'"sqlite:{tmp_path / "c.db"}"')
            .replace("recordings: recordings", f"recordings: \"{tmp_path / 'recordings'}\"")
            .replace('"1001": {name: "Alice"}', '"1001": {name: "Alice", password: "pw1001"}'))
    phone = RtpPhone("PCMU")
    with RunningSwitch(text) as sw:
        status, _ = call_api(sw.api, "PUT", "/api/v1/schedules/office", json.dumps({"mode": "closed"}).encode())
        assert status == 200
        alice = Caller(sw.address("udp"), "1001", "pw1001")
        alice.sdp = sdp_for(phone.address[1], "0 8 101")
        try:
            resp = alice.call("800")
            assert resp is not None and resp.status == 200
            alice._ack(alice.last_invite, resp)
            closed, leave = (wave.open(str(PROMPTS / f"{n}.wav")).getnframes() / 8000 for n in ("closed", "leave-message"))
            time.sleep(closed + leave + 0.6)
            phone.send(sine(440, 2.0, 0.3), ("127.0.0.1", media_port(resp)), block=True)
            assert alice.hang_up(resp, 3).status == 200
            audio = phone.audio()
            box = wait_for(lambda: call_api(sw.api, "GET", "/api/v1/voicemail/general")[1]["messages"], 5)
        finally:
            phone.close()
        files = wait_for(lambda: list((tmp_path / "recordings").glob("2*/**/*.wav")), 5)
    assert rms(audio) > 1000 and len(audio) / 8000 > closed + leave
    assert len(box) == 1 and box[0]["caller"] == "1001" and 1.5 < box[0]["seconds"] < 3.0
    with wave.open(str(files[0])) as w:
        assert w.getnchannels() == 2 and w.getnframes() / 8000 > closed + leave
