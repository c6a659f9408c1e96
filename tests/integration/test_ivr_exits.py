"""An IVR over a live call: the caller picks Italian (key 2), so the next prompt comes from the
plan's it/ prompt directory (a 700 Hz file beside the default 400 Hz one: decoded); the flow then
leaves to an outside number through the trunk, where a SIPp carrier answers and echoes the
caller's 1 kHz tone back. The CDR shows the trunk destination."""

from __future__ import annotations

import subprocess
import time

import numpy as np
import pytest
from audio import RtpPhone, dominant, level_at, sine
from centralino.bench.sipp import start_sipp
from helpers import (
    Caller,
    RunningSwitch,
    db_rows,
    free_port,
    info_digit,
    media_port,
    need_tool,
    plan_text,
    sdp_for,
    wait_for,
)

PLAN = """\
trunks:
  carrier: {{host: 127.0.0.1, port: {carrier}, qualify: 0}}
routes:
  - {{match: {{to: "800"}}, action: {{ivr: lang}}}}
ivr:
  lang:
    nodes:
      choose: {{menu: {{prompt: "tone:440/300", choices: {{"1": en, "2": it}}, timeout: 4, retries: 0}}}}
      en: {{set: {{language: en}}, next: thanks}}
      it: {{set: {{language: it}}, next: thanks}}
      thanks: {{play: thanks, next: {{trunk: carrier, number: "4951112233", timeout: 10}}}}
"""
EXTS = 'extensions:\n  "1001": {password: "pw1001"}\n'


@pytest.fixture
def setup(tmp_path):
    sox = need_tool("sox")
    need_tool("sipp")
    prompts = tmp_path / "prompts"
    (prompts / "it").mkdir(parents=True)
    for path, hz in ((prompts / "thanks.wav", 400), (prompts / "it" / "thanks.wav", 700)):
        subprocess.run([sox, "-n", "-r", "8000", "-c", "1", "-b", "16", str(path), "synth", "1.5", "sine", str(hz),
                        "vol", "0.4"], check=True)
    carrier_port = free_port()
    carrier = start_sipp("uas_echo.xml", local_ip="127.0.0.1", port=carrier_port, media_port=free_port(), count=1,
                         extra=["-rtp_echo"], log_dir=tmp_path)
    text = plan_text(tmp_path, PLAN.format(carrier=carrier_port), extensions=EXTS)
    text = text.replace("  security:", f'  rtp: {{ports: "30000-30999", workers: 1}}\n  prompts: ["{prompts}"]\n  security:')
    with RunningSwitch(text) as sw:
        sw.tmp = tmp_path
        yield sw, carrier
    if carrier.poll() is None:
        carrier.kill()


def test_language_choice_picks_the_prompt_then_the_ivr_leaves_through_the_trunk(setup):
    sw, carrier = setup
    rtp = RtpPhone("PCMU")
    try:
        alice = Caller(sw.address("udp"), "1001", "pw1001")
        alice.sdp = sdp_for(rtp.address[1], "0 101")
        answer = alice.call("800")
        assert answer is not None and answer.status == 200
        alice._ack(alice.last_invite, answer)
        rtp.send(sine(1000, 9.0, 0.2), ("127.0.0.1", media_port(answer)))
        time.sleep(0.8)
        info_digit(alice, answer, 3, "2")
        time.sleep(6.0)  # the Italian prompt (1.5 s), ringback, the carrier answers and echoes
        heard = rtp.audio().astype(np.float64)
        assert alice.hang_up(answer, 4).status == 200
    finally:
        rtp.close()
    assert carrier.wait(10) == 0
    windows = [heard[i:i + 4000] for i in range(0, len(heard) - 4000, 2000)]
    freqs = [round(dominant(w), -1) for w in windows if level_at(w, dominant(w)) > 2000]
    assert 700 in freqs and 400 not in freqs, f"the it/ prompt, not the default: {freqs}"
    assert freqs[-1] == 1000 and freqs.index(700) < len(freqs) - 1, "then the carrier's echo of the caller"
    rows = wait_for(lambda: db_rows(sw, "SELECT destination, disposition FROM cdr WHERE leg = 'call'"), 5)
    assert rows == [{"destination": "trunk:carrier:4951112233", "disposition": "ANSWERED"}]
