"""Voicemail through real SIP: Bob's phone SUBSCRIBEs to message-summary and gets a NOTIFY with
no messages; Alice calls Bob, who is busy, so the route's else leaves a message (a 700 Hz tone,
then silence that ends it); Bob's phone gets NOTIFY "yes 1/0"; Bob dials *97, types his PIN,
hears the count and the message itself (decoded: 700 Hz), deletes it with 7, and the lamp goes
out. The API lists and deletes messages; a wrong PIN gets nothing."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
import wave
from pathlib import Path

import numpy as np
import pytest
from audio import RtpPhone, dominant, level_at, sine
from centralino.api.server import call_api
from centralino.switch.sip.auth import DigestClient
from centralino.switch.sip.message import Request, Response, make_response
from centralino.switch.sip.uri import parse_uri
from helpers import (
    Caller,
    Phone,
    RunningSwitch,
    SipClient,
    info_digit,
    media_port,
    need_tool,
    plan_text,
    sdp_for,
    wait_for,
)

PLAN = """\
routes:
  - {match: {to: "^100\\\\d$"}, action: {dial: "${to}", timeout: 5, else: {voicemail: "${to}"}}}
  - {match: {to: "500"}, action: {voicemail: general}}
mailboxes:
  "1002": {pin: "1234", notify: ["1002"], silence_seconds: 2}
  general: {pin: "9999", notify: ["1002", "1003"], max_seconds: 5}
"""
DATA = Path(__file__).parent.parent / "data"
EXTS = "extensions:\n" + "".join(f'  "{n}": {{password: "pw{n}"}}\n' for n in (1001, 1002, 1003))


@pytest.fixture
def sw(tmp_path):
    text = plan_text(tmp_path, PLAN, extensions=EXTS)
    text = text.replace("  security:", f'  rtp: {{ports: "33000-33999", workers: 1}}\n'
                                       f'  recordings: "{tmp_path / "rec"}"\n  security:')
    with RunningSwitch(text) as s:
        yield s


class MwiPhone(SipClient):
    """SUBSCRIBEs to its own message-summary and answers NOTIFYs, keeping their bodies."""

    def __init__(self, server, user, password):
        super().__init__(server)
        self.user, self.password = user, password
        self.notifies: list[Request] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def subscribe(self, expires: int = 600) -> Response:
        host, port = self.local

        def request(cseq, extra=()):
            return Request("SUBSCRIBE", parse_uri(f"sip:{self.user}@example.com"), [
                ("Via", f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK{uuid.uuid4().hex};rport"),
                ("Max-Forwards", "70"), ("From", f"<sip:{self.user}@example.com>;tag={self.tag}"),
                ("To", f"<sip:{self.user}@example.com>"), ("Call-ID", self.call_id), ("CSeq", f"{cseq} SUBSCRIBE"),
                ("Contact", f"<sip:{self.user}@{host}:{port}>"), ("Event", "message-summary"),
                ("Accept", "application/simple-message-summary"), ("Expires", str(expires)), *extra])
        resp = self.transact(request(1))
        assert resp is not None and resp.status == 401
        cred = DigestClient(self.user, self.password).authorize(
            DigestClient.pick(resp.header_values("WWW-Authenticate")), "SUBSCRIBE", f"sip:{self.user}@example.com")
        resp = self.transact(request(2, [("Authorization", cred)]))
        self._thread.start()
        return resp

    def _loop(self):
        while not self._stop.is_set():
            msg = self.recv(0.1)
            if isinstance(msg, Request) and msg.method == "NOTIFY":
                self.notifies.append(msg)
                self.send(make_response(msg, 200).serialize())

    def lamp(self) -> str:
        return self.notifies[-1].body.decode() if self.notifies else ""

    def close(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)
        super().close()


def test_message_left_lights_the_lamp_then_heard_and_deleted_with_the_pin(sw):
    bob_phone = Phone(sw.address("udp"), "1002", "pw1002", behaviour="busy").start()
    lamp = MwiPhone(sw.address("udp"), "1002", "pw1002")
    alice_rtp, bob_rtp = RtpPhone("PCMU"), RtpPhone("PCMU")
    try:
        answer = lamp.subscribe()
        assert answer.status == 200 and answer.header("Expires") == "600"
        assert wait_for(lambda: "Messages-Waiting: no" in lamp.lamp(), 3)
        first = lamp.notifies[0]
        assert first.header("Event") == "message-summary" and first.header("Subscription-State").startswith("active")
        assert "Voice-Message: 0/0" in lamp.lamp() and "Message-Account: sip:1002@" in lamp.lamp()

        alice = Caller(sw.address("udp"), "1001", "pw1001")
        alice.sdp = sdp_for(alice_rtp.address[1], "0 101")
        resp = alice.call("1002", timeout=8)
        assert resp is not None and resp.status == 200  # busy → else: voicemail 1002 answers
        alice._ack(alice.last_invite, resp)
        # the greeting (~4 s), then the beep: Alice speaks (3 s of 700 Hz) once she hears it (a
        # fixed lead-in loses the start on a loaded machine), then silence: 2 s of it end the message
        def beep_heard() -> bool:
            audio = alice_rtp.audio()
            return len(audio) > 8000 and level_at(audio[-1600:].astype(np.float64), 1000.0) > 2000

        deadline = time.monotonic() + 20
        while not beep_heard():  # silence meanwhile, 100 ms at a time, one stream
            alice_rtp.send(np.zeros(800, np.int16), ("127.0.0.1", media_port(resp)), block=True)
            assert time.monotonic() < deadline, "no beep after the greeting"
        pcm = np.concatenate([np.zeros(4000, np.int16), sine(700, 3.0, 0.3), np.zeros(8000 * 6, np.int16)])
        alice_rtp.send(pcm, ("127.0.0.1", media_port(resp)))
        assert wait_for(lambda: "Messages-Waiting: yes" in lamp.lamp(), 20), lamp.lamp()
        assert "Voice-Message: 1/0" in lamp.lamp()
        listed = call_api(sw.api, "GET", "/api/v1/voicemail/1002")[1]["messages"]
        assert len(listed) == 1 and listed[0]["caller"] == "1001" and not listed[0]["heard"]
        with wave.open(listed[0]["path"]) as w:
            assert w.getnchannels() == 1
            message = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64)
        loud = np.flatnonzero(np.abs(message) > 3000)
        assert 2.6 < (loud[-1] - loud[0]) / 8000 < 3.2, "the message holds Alice's 3 s of speech"
        assert abs(dominant(message[loud[0]:loud[-1]]) - 700) < 10
        assert len(message) / 8000 < 3.0 + 0.5 + (loud[0] / 8000) + 0.3, "trailing silence is trimmed"
        assert listed[0]["seconds"] == pytest.approx(len(message) / 8000, abs=0.05)
        alice_rtp.wait_sent()

        wrong = Caller(sw.address("udp"), "1002", "pw1002")
        wrong.sdp = sdp_for(bob_rtp.address[1] + 2, "0 101")
        w_answer = wrong.call("*97")
        wrong._ack(wrong.last_invite, w_answer)
        for attempt in range(3):
            for cseq, d in enumerate("0000#", 3 + attempt * 5):
                info_digit(wrong, w_answer, cseq, d)
        assert wait_for(lambda: any(isinstance(m, Request) and m.method == "BYE" for m in [wrong.recv(0.5)]), 30)

        bob = Caller(sw.address("udp"), "1002", "pw1002")
        bob.sdp = sdp_for(bob_rtp.address[1], "0 101")
        b_answer = bob.call("*97")
        assert b_answer is not None and b_answer.status == 200
        bob._ack(bob.last_invite, b_answer)
        bob_rtp.send(np.zeros(8000 * 30, np.int16), ("127.0.0.1", media_port(b_answer)))
        time.sleep(1.0)
        for cseq, d in enumerate("1234#", 3):
            info_digit(bob, b_answer, cseq, d)
        time.sleep(8.0)  # "you have 1 new messages", then the message
        info_digit(bob, b_answer, 8, "7")  # delete
        assert wait_for(lambda: "Messages-Waiting: no" in lamp.lamp() and "Voice-Message: 0/0" in lamp.lamp(), 10)
        heard = bob_rtp.audio().astype(np.float64)
        windows = [heard[i:i + 4000] for i in range(0, len(heard) - 4000, 2000)]
        assert any(abs(dominant(w) - 700) < 10 and level_at(w, 700) > 3000 for w in windows), "Bob heard the message"
        assert call_api(sw.api, "GET", "/api/v1/voicemail/1002")[1]["messages"] == []
    finally:
        lamp.close()
        bob_phone.stop()
        alice_rtp.close()
        bob_rtp.close()


def test_shared_box_capped_length_and_api_delete(sw):
    """The general box (max 5 s) lights 1002's lamp and a SIPp phone's (1003); a long message
    is cut at 5 s; the API deletes it."""
    lamp = MwiPhone(sw.address("udp"), "1002", "pw1002")
    rtp = RtpPhone("PCMU")
    host, port = sw.address("udp")
    sipp_lamp = subprocess.Popen(
        [need_tool("sipp"), f"{host}:{port}", "-sf", str(DATA / "mwi_subscriber.xml"), "-s", "1003", "-au", "1003",
         "-ap", "pw1003", "-auth_uri", f"1003@{host}:{port}", "-m", "1", "-i", "127.0.0.1", "-p", "0", "-nostdin", "-timeout", "60s", "-timeout_error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert lamp.subscribe().status == 200
        caller = Caller(sw.address("udp"), "1003", "pw1003")
        caller.sdp = sdp_for(rtp.address[1], "0 101")
        resp = caller.call("500")
        caller._ack(caller.last_invite, resp)
        rtp.send(sine(500, 16.0, 0.3), ("127.0.0.1", media_port(resp)))
        assert wait_for(lambda: "Voice-Message: 1/0" in lamp.lamp(), 20)
        status, data = call_api(sw.api, "GET", "/api/v1/voicemail/general")
        assert status == 200 and data["messages"][0]["seconds"] == pytest.approx(5.0, abs=0.1)
        assert sipp_lamp.wait(30) == 0, sipp_lamp.stderr.read()  # SIPp's lamp went on too
        ident = data["messages"][0]["id"]
        status, data = call_api(sw.api, "DELETE", f"/api/v1/voicemail/general/{ident}")
        assert status == 200 and data["messages"] == []
        assert wait_for(lambda: "Voice-Message: 0/0" in lamp.lamp(), 5)
        assert call_api(sw.api, "GET", "/api/v1/voicemail/nope")[0] == 404
    finally:
        if sipp_lamp.poll() is None:
            sipp_lamp.kill()
        lamp.close()
        rtp.close()
