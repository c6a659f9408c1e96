"""RFC 4733 keys through the IVR with every codec the engine speaks. The phone offers two
telephone-events, at 48000 (beside Opus) and at 8000, as Linphone and other softphones do; the
switch must answer with the offer's own payload number and rate — the one whose clock matches
the chosen codec — and hear keys sent at that rate. Before, an Opus call was answered with
`a=rtpmap:99 telephone-event/8000` (the 48 kHz payload number relabelled), the phone complained
and key 1 in the menu was never seen."""

from __future__ import annotations

import time

import numpy as np
import pytest
from audio import RtpPhone, dominant
from centralino.events import CallDtmf, CallEvent
from centralino.media.dtmf import EVENTS, TelephoneEvent
from centralino.media.rtp import RtpPacket
from centralino.switch.sip.sdp import parse_sdp
from helpers import Caller, RunningSwitch, media_port, plan_text, wait_for

ROUTES = """\
routes:
  - {match: {to: "800"}, action: {ivr: main}}
ivr:
  main:
    greeting: "tone:400/200"
    prompt: "silence/100"
    menu: {"1": {play: "tone:1000/1500"}, "2": {play: "tone:600/1500"}}
    timeout: 8
    retries: 0
"""
EXTS = 'extensions:\n  "1001": {password: "pw1001"}\n'

# codec name as in SDP, its payload type in the offer, the RTP clock, the event expected back
CODECS = [
    ("PCMU/8000", 0, 8000, 101),
    ("PCMA/8000", 8, 8000, 101),
    ("G722/8000", 9, 8000, 101),  # G.722 samples at 16 kHz but its RTP clock is 8000 (RFC 3551)
    ("opus/48000/2", 111, 48000, 99),
    ("L16/8000", 97, 8000, 101),
]


@pytest.fixture(scope="module")
def sw(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dtmf")
    text = plan_text(tmp, ROUTES, extensions=EXTS)
    text = text.replace("  security:", '  rtp: {ports: "31000-31999", workers: 1}\n  security:')
    with RunningSwitch(text) as s:
        events: list = []
        s.call(lambda: s.switch.bus.subscribe(events.append, CallEvent))
        s.events = events
        yield s


def offer(port: int, codec: str, pt: int) -> str:
    return ("v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP {pt} 99 101\r\na=rtpmap:{pt} {codec}\r\n"
            "a=rtpmap:99 telephone-event/48000\r\na=fmtp:99 0-16\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n")


def send_key(phone: RtpPhone, to, digit: str, pt: int, clock: int, ms: int = 200) -> None:
    """An RFC 4733 event as a phone sends it: one packet per 20 ms, the end packet three times,
    durations and timestamps at the event's clock."""
    step = clock // 50
    start_ts = (phone.seq * step) & 0xFFFFFFFF
    frames = ms // 20
    for k in range(1, frames + 1):
        ev = TelephoneEvent(EVENTS.index(digit), False, 10, step * k)
        phone.sock.sendto(RtpPacket(pt, phone.seq & 0xFFFF, start_ts, 0x5151, ev.serialize(), marker=k == 1).serialize(), to)
        phone.seq += 1
        time.sleep(0.02)
    for _ in range(3):
        ev = TelephoneEvent(EVENTS.index(digit), True, 10, step * frames)
        phone.sock.sendto(RtpPacket(pt, phone.seq & 0xFFFF, start_ts, 0x5151, ev.serialize()).serialize(), to)
        phone.seq += 1


@pytest.mark.parametrize(("codec", "pt", "clock", "event_pt"), CODECS, ids=[c[0].split("/")[0] for c in CODECS])
def test_keys_reach_the_ivr_at_the_codecs_clock(sw, codec, pt, clock, event_pt):
    phone = RtpPhone(codec.split("/")[0], pt=pt)
    caller = Caller(sw.address("udp"), "1001", "pw1001")
    caller.sdp = offer(phone.address[1], codec, pt)
    resp = caller.call("800")
    try:
        assert resp is not None and resp.status == 200
        caller._ack(caller.last_invite, resp)
        answer = parse_sdp(resp.body).media[0]
        assert answer.formats == [str(pt), str(event_pt)]
        assert answer.rtpmaps[event_pt].clock_rate == clock  # the offer's own number and rate
        to = ("127.0.0.1", media_port(resp))
        phone.send(np.zeros(8000, np.int16), to)  # audio flows as from a phone
        time.sleep(0.6)  # the greeting (200 ms) and the menu prompt
        send_key(phone, to, "1", event_pt, clock)
        keys = wait_for(lambda: [e for e in sw.events if isinstance(e, CallDtmf) and e.call_id == caller.call_id], 3)
        assert [(k.digit, k.duration_ms) for k in keys] == [("1", 200)]
        # the IVR took key 1: it plays the 1 kHz tone (decoded from what came back)
        wait_for(lambda: len(phone.audio()) > 8000 * 1.2, 5)
        time.sleep(0.3)
        heard = phone.audio()
        assert abs(dominant(heard[-8000:]) - 1000) < 30, dominant(heard[-8000:])
    finally:
        phone.close()
        caller.close()
