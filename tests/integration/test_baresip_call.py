"""Two baresip softphones registered as extensions call each other through Centralino; each
plays its own tone from a WAV file and records what it receives (baresip's sndfile module).
The recordings are decoded and checked: frequency and level, so audio really crossed the
media worker — in both directions, each side hearing the other's tone."""

from __future__ import annotations

import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
from helpers import NetNamespace, baresip_config, free_port, need_tool, wait_for

PLAN = """\
server:
  sip: {{listen: ["udp:{ip}:5060"], domain: example.com}}
  api: {{listen: "127.0.0.1:{api}"}}
  rtp: {{ports: "37000-37999", workers: 1}}
  storage: "sqlite:{db}"
  registrar: {{qualify_interval: 0}}
extensions:
  "1001": {{password: pa}}
  "1002": {{password: pb}}
routes:
  - {{match: {{to: "^1\\\\d{{3}}$"}}, action: {{dial: "${{to}}"}}}}
  - {{match: {{to: "800"}}, action: {{play: "welcome"}}}}
"""



def dominant(path: Path) -> tuple[float, float, float]:
    """(dominant frequency in Hz, RMS level in dBFS, seconds of audio) of a 16-bit mono WAV."""
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    x = x[np.abs(x) > 0]  # the first packets are silence until the media flows
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freq = np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spectrum))]
    rms = np.sqrt(np.mean(x**2)) / 32768
    return float(freq), float(20 * np.log10(max(rms, 1e-9))), len(x) / rate


def test_two_baresip_phones_hear_each_others_tone(tmp_path):
    baresip = need_tool("baresip")
    sox = need_tool("sox")
    with NetNamespace() as ns:
        api = free_port(1)
        plan = tmp_path / "plan.yaml"
        plan.write_text(PLAN.format(ip=ns.switch_ip, api=api, db=tmp_path / "c.db"))
        phones = {}
        for user, pw, port, hz, extra in (("1001", "pa", 5071, 1000, ""), ("1002", "pb", 5081, 600, ";answermode=auto")):
            d = tmp_path / user
            (d / "rec").mkdir(parents=True)
            tone = d / "tone.wav"
            subprocess.run([sox, "-n", "-r", "8000", "-c", "1", "-b", "16", str(tone), "synth", "6", "sine",
                            str(hz), "vol", "0.5"], check=True)
            (d / "config").write_text(baresip_config(ns.phone_ip, port, str(tone), str(d / "rec")))
            (d / "accounts").write_text(f"<sip:{user}@{ns.switch_ip}:5060;transport=udp>;auth_pass={pw};regint=300{extra}\n")
            phones[user] = d
        server = subprocess.Popen(ns.cmd(sys.executable, "-m", "centralino", "run", "--config", str(plan)),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        procs = []
        try:
            def registered(n):
                r = subprocess.run(ns.cmd(sys.executable, "-m", "centralino", "status", "--api", f"127.0.0.1:{api}", "--json"),
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    return False
                import json
                return len(json.loads(r.stdout)["registrations"]) >= n
            assert wait_for(lambda: registered(0), 15)
            procs.append(subprocess.Popen(ns.cmd(baresip, "-f", str(phones["1002"])), stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL))
            assert wait_for(lambda: registered(1), 10)
            caller = subprocess.Popen(ns.cmd(baresip, "-f", str(phones["1001"]), "-e", "/dial 1002", "-t", "9"),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            procs.append(caller)
            caller.wait(20)
            time.sleep(0.5)
        finally:
            for p in [*procs, server]:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
        heard_by_bob = next((phones["1002"] / "rec").glob("*-dec.wav"))
        heard_by_alice = next((phones["1001"] / "rec").glob("*-dec.wav"))
        f_bob, level_bob, secs_bob = dominant(heard_by_bob)
        f_alice, level_alice, secs_alice = dominant(heard_by_alice)
        assert abs(f_bob - 1000) < 15, f"Bob should hear Alice's 1 kHz tone, heard {f_bob:.0f} Hz"
        assert abs(f_alice - 600) < 15, f"Alice should hear Bob's 600 Hz tone, heard {f_alice:.0f} Hz"
        # vol 0.5 sine = -9 dBFS RMS; G.711 keeps it within a dB or two
        assert -12 < level_bob < -7 and -12 < level_alice < -7
        assert secs_bob > 3 and secs_alice > 3


def test_baresip_hears_a_prompt_then_the_switch_hangs_up(tmp_path):
    """A softphone dials 800: the switch answers, plays "Welcome to Centralino." (1.9 s of
    espeak-ng speech) and hangs up; baresip's recording of what it received is that prompt."""
    baresip = need_tool("baresip")
    with NetNamespace() as ns:
        api = free_port(1)
        plan = tmp_path / "plan.yaml"
        plan.write_text(PLAN.format(ip=ns.switch_ip, api=api, db=tmp_path / "c.db"))
        d = tmp_path / "1001"
        (d / "rec").mkdir(parents=True)
        quiet = d / "quiet.wav"  # aufile ends the call when its source cannot be read
        subprocess.run([need_tool("sox"), "-n", "-r", "8000", "-c", "1", "-b", "16", str(quiet), "trim", "0", "8"],
                       check=True)
        (d / "config").write_text(baresip_config(ns.phone_ip, 5071, str(quiet), str(d / "rec")))
        (d / "accounts").write_text(f"<sip:1001@{ns.switch_ip}:5060;transport=udp>;auth_pass=pa;regint=0\n")
        log = open(tmp_path / "switch.log", "wb")
        server = subprocess.Popen(ns.cmd(sys.executable, "-m", "centralino", "run", "--config", str(plan)),
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            import json

            def up():
                r = subprocess.run(ns.cmd(sys.executable, "-m", "centralino", "status", "--api",
                                          f"127.0.0.1:{api}", "--json"), capture_output=True, text=True)
                return r.returncode == 0 and json.loads(r.stdout)
            assert wait_for(up, 15)
            phone = subprocess.run(ns.cmd(baresip, "-f", str(d), "-e", "/dial 800", "-t", "6"),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                   timeout=20)
            assert phone.returncode in (0, 1, -15)
        finally:
            server.terminate()
            try:
                server.wait(5)
            except subprocess.TimeoutExpired:
                server.kill()
        heard = next((d / "rec").glob("*-dec.wav"))
        with wave.open(str(heard)) as w:
            x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
        blocks = x[: len(x) - len(x) % 160].reshape(-1, 160)
        voiced = np.flatnonzero(np.sqrt((blocks ** 2).mean(axis=1)) > 300)
        log.close()
        assert len(voiced), "baresip heard nothing:\n" + (tmp_path / "switch.log").read_text()[-3000:]
        span = (voiced[-1] - voiced[0] + 1) * 0.02
        assert 1.3 <= span <= 2.1, f"the prompt is ~1.9 s of speech, heard {span:.2f} s"
        assert np.sqrt((blocks[voiced] ** 2).mean()) > 1500  # speech level, not noise
