"""The issue's "done when", as a user would do it: the embedded default plan (only its listen
address, API port and files moved into a network namespace, because baresip 1.0 will not send
media over loopback), two baresip softphones with the passwords the switch printed at start-up.

Bob (1002) logs in with *45 and pauses with *47 from his phone. Alice (1001) dials 800, hears the
greeting and the menu, presses 1 (RFC 2833 from baresip), waits in the sales queue with music on
hold and the position announcement; Bob unpauses with *48, his phone rings and auto-answers. What
each phone received is decoded: the prompts are found in Alice's audio by cross-correlation with
the packaged prompt files, and each side hears the other's tone."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import wave
from pathlib import Path

import centralino
import numpy as np
from helpers import NetNamespace, baresip_config, free_port, need_tool, wait_for

PROMPTS = Path(centralino.__file__).parent / "media" / "prompts"
DEFAULT_PLAN = Path(centralino.__file__).parent / "config" / "default.yaml"


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == 8000 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)


def locate(heard: np.ndarray, prompt: np.ndarray) -> tuple[float, float]:
    """Where ``prompt`` best matches inside ``heard`` (seconds) and how well (normalised
    cross-correlation, 1.0 = identical): FFT correlation, normalised by the heard signal's
    energy under the sliding window."""
    n = len(heard) + len(prompt)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(heard, size) * np.conj(np.fft.rfft(prompt, size)), size)[: len(heard) - len(prompt) + 1]
    window = np.sqrt(np.convolve(heard ** 2, np.ones(len(prompt)), "valid")) + 1e-9
    score = corr / (window * np.linalg.norm(prompt))
    best = int(np.argmax(score))
    return best / 8000, float(score[best])


def tone(freq_hz: float, pcm: np.ndarray) -> tuple[float, float]:
    """Dominant frequency (Hz) and RMS level (dBFS) of a stretch of audio."""
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    freq = float(np.fft.rfftfreq(len(pcm), 1 / 8000)[int(np.argmax(spectrum))])
    return freq, float(20 * np.log10(max(np.sqrt(np.mean(pcm ** 2)) / 32768, 1e-9)))


class Softphone:
    """A baresip process with its UDP console (the cons module) to type commands into."""

    def __init__(self, ns: NetNamespace, home: Path, user: str, password: str, sip_port: int, tone_hz: int,
                 auto_answer: bool) -> None:
        self.ns, self.home = ns, home
        (home / "rec").mkdir(parents=True)
        source = home / "tone.wav"
        subprocess.run([need_tool("sox"), "-n", "-r", "8000", "-c", "1", "-b", "16", str(source), "synth", "90",
                        "sine", str(tone_hz), "vol", "0.5"], check=True)
        self.console = sip_port + 10  # baresip takes sip_port+1 for TLS
        config = baresip_config(ns.phone_ip, sip_port, str(source), str(home / "rec"))
        config += f"module\t\t\tcons.so\ncons_listen\t\t{ns.phone_ip}:{self.console}\n"
        (home / "config").write_text(config)
        answer = ";answermode=auto" if auto_answer else ""
        (home / "accounts").write_text(
            f"<sip:{user}@{ns.switch_ip}:5060;transport=udp>;auth_pass={password};regint=300{answer}\n")
        self.proc = subprocess.Popen(ns.cmd(need_tool("baresip"), "-f", str(home)), stdin=subprocess.DEVNULL,
                                     stdout=open(home / "log", "wb"), stderr=subprocess.STDOUT)

    def type(self, command: str) -> None:
        """A console command (``/dial 800``, ``/hangup``: the console runs it at the newline) or
        keys (``1``: DTMF in a call)."""
        if command.startswith("/"):
            command += "\n"
        self.ns.sh(sys.executable, "-c", "import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM);"
                   f"s.sendto(sys.argv[1].encode(), ('{self.ns.phone_ip}', {self.console}))", command)

    def log(self) -> str:
        return (self.home / "log").read_text(errors="replace")

    def recordings(self) -> list[Path]:
        return sorted((self.home / "rec").glob("*-dec.wav"), key=lambda p: p.stat().st_mtime)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class DefaultPlanSwitch:
    """``centralino run`` on the embedded default plan inside a network namespace, with the
    passwords it printed at start-up, and the CLI pointed at its API."""

    def __init__(self, tmp_path: Path, ns: NetNamespace) -> None:
        self.ns, self.tmp = ns, tmp_path
        self.api = f"127.0.0.1:{free_port(socket.SOCK_STREAM)}"
        text = DEFAULT_PLAN.read_text()
        text = text.replace('listen: ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]', f'listen: ["udp:{ns.switch_ip}:5060"]')
        text = text.replace('api: {listen: "127.0.0.1:8080"}', f'api: {{listen: "{self.api}"}}')
        text = text.replace('storage: "sqlite:centralino.db"', f'storage: "sqlite:{tmp_path / "c.db"}"')
        text = text.replace("recordings: recordings", f"recordings: {tmp_path / 'recordings'}")
        assert f"udp:{ns.switch_ip}" in text and self.api in text and str(tmp_path) in text
        self.plan = tmp_path / "default.yaml"
        self.plan.write_text(text)
        self.out = tmp_path / "switch.log"
        self.phones: list[Softphone] = []
        self.extra: list[str] = []  # more `centralino run` options

    def __enter__(self) -> DefaultPlanSwitch:
        self.server = subprocess.Popen(self.ns.cmd(sys.executable, "-m", "centralino", "run", "--config", str(self.plan), *self.extra),
                                       stdout=open(self.out, "wb"), stderr=subprocess.STDOUT)

        def printed_passwords() -> dict[str, str]:
            return dict(re.findall(r"extension (\d+) \(\w+\): user \d+, password (\S+)", self.out.read_text()))
        self.passwords = wait_for(lambda: len(printed_passwords()) == 3 and printed_passwords(), 15)
        assert self.passwords and set(self.passwords) == {"1001", "1002", "1003"}, self.out.read_text()
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.phones:
            p.stop()
        self.server.terminate()
        try:
            self.server.wait(5)
        except subprocess.TimeoutExpired:
            self.server.kill()

    def ask(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.ns.cmd(sys.executable, "-m", "centralino", *args, "--api", self.api),
                              capture_output=True, text=True)

    def api_get(self, path: str) -> dict:
        r = subprocess.run(self.ns.cmd(sys.executable, "-c", "import sys,json;"
                                       "from centralino.api.server import call_api;"
                                       "print(json.dumps(call_api(sys.argv[1], 'GET', sys.argv[2])[1]))",
                                       self.api, "/api/v1" + path),
                           capture_output=True, text=True)
        return json.loads(r.stdout)

    def phone(self, name: str, user: str, sip_port: int, tone_hz: int, auto_answer: bool) -> Softphone:
        phone = Softphone(self.ns, self.tmp / name, user, self.passwords[user], sip_port, tone_hz, auto_answer)
        self.phones.append(phone)
        return phone

    def registered(self, n: int) -> bool:
        r = self.ask("status", "--json")
        return r.returncode == 0 and len(json.loads(r.stdout)["registrations"]) >= n


def test_default_plan_caller_reaches_a_logged_in_agent_softphone(tmp_path):
    need_tool("baresip")
    need_tool("sox")
    with NetNamespace() as ns, DefaultPlanSwitch(tmp_path, ns) as sw:
        # The test may run at any hour: the administrator's day/night switch forces the office open.
        forced = sw.ask("schedule", "office", "open")
        assert forced.returncode == 0 and "office: open (mode open" in forced.stdout, forced.stderr
        alice = sw.phone("alice", "1001", 5071, 600, auto_answer=False)
        bob = sw.phone("bob", "1002", 5091, 1000, auto_answer=True)
        assert wait_for(lambda: sw.registered(2), 10)

        def bob_is(state: str) -> bool:
            return sw.api_get("/queues")["agents"]["1002"]["state"] == state
        for code, state in (("*45", "available"), ("*47", "paused")):
            bob.type(f"/dial {code}")
            assert wait_for(lambda s=state: bob_is(s), 10), f"{code} did not make Bob {state}"
            time.sleep(2.5)  # the confirmation prompt, then the switch hangs up

        alice.type("/dial 800")
        time.sleep(1.87 + 6.84 + 1.0)  # welcome and menu prompts, as the caller hears them
        alice.type("/sndcode 1")  # sales: an RFC 4733 event, then its end
        time.sleep(9.0)  # music on hold; at 5 s "you are caller number 1 in the queue"
        bob.type("/dial *48")
        assert wait_for(lambda: bob_is("on-call"), 15), "the queue did not reach Bob"
        time.sleep(4.0)  # Alice and Bob talk
        alice.type("/hangup")
        assert wait_for(lambda: bob_is("wrap-up") or bob_is("available"), 10)
    log = sw.out.read_text()[-4000:]

    heard = read_wav(alice.recordings()[-1])
    welcome_at, welcome = locate(heard, read_wav(PROMPTS / "welcome.wav"))
    menu_at, menu = locate(heard, read_wav(PROMPTS / "menu.wav"))
    moh_at, moh = locate(heard, read_wav(PROMPTS / "moh.wav")[:8000 * 3])
    position_at, position = locate(heard, read_wav(PROMPTS / "position.wav"))
    one_at, one = locate(heard, read_wav(PROMPTS / "digit-1.wav"))
    # a prompt that was played scores 0.9999 through G.711; speech that was not played scores ~0.8
    assert min(welcome, menu, moh, position, one) > 0.99, (welcome, menu, moh, position, one, log)
    assert locate(heard, read_wav(PROMPTS / "digit-2.wav"))[1] < 0.95, "Alice is caller 1, not 2"
    assert welcome_at < menu_at < moh_at < position_at < one_at, (welcome_at, menu_at, moh_at, position_at)
    assert 4 < position_at - moh_at < 7, "the position announcement comes ~5 s after joining the queue"
    freq, level = tone(1000, heard[-8000 * 3:-8000])
    assert abs(freq - 1000) < 15 and -12 < level < -7, f"Alice should hear Bob's 1 kHz tone: {freq:.0f} Hz {level:.1f} dB"

    bob_heard = read_wav(max(bob.recordings(), key=lambda p: p.stat().st_size))
    freq, level = tone(600, bob_heard[bob_heard != 0][8000:])
    assert abs(freq - 600) < 15 and -12 < level < -7, f"Bob should hear Alice's 600 Hz tone: {freq:.0f} Hz {level:.1f} dB"


def test_default_plan_voicemail_left_and_heard_from_softphones(tmp_path):
    """Bob rejects Alice's call, so the default plan's else takes a message: Alice hears the
    greeting and leaves 4.5 s of her 600 Hz tone. Bob dials *97 (his own box, from his own
    phone), hears the count and the message, and once it has played it counts as heard. (The
    lamp is tested with SIPp and our own phone in test_voicemail: baresip 1.0's mwi module
    sometimes re-subscribes in a tight loop of new dialogs until the rate limit stops it.)"""
    need_tool("baresip")
    need_tool("sox")
    with NetNamespace() as ns, DefaultPlanSwitch(tmp_path, ns) as sw:
        alice = sw.phone("alice", "1001", 5071, 600, auto_answer=False)
        bob = sw.phone("bob", "1002", 5091, 1000, auto_answer=False)
        assert wait_for(lambda: sw.registered(2), 10)
        alice.type("/dial 1002")
        assert wait_for(lambda: "incoming call" in bob.log().lower(), 10), bob.log()[-2000:]
        time.sleep(0.5)
        bob.type("/hangup")  # rejects the call: the route's else is voicemail 1002
        # the voicemail answers Alice's call; from then on she hears the greeting, the tone and talks
        assert wait_for(lambda: "call established" in alice.log().lower(), 10), alice.log()[-2000:]
        time.sleep(4.51 + 0.4 + 4.5)  # "please leave a message after the tone", the tone, 4.5 s of talk
        alice.type("/hangup")
        assert wait_for(lambda: sw.api_get("/voicemail/1002")["messages"], 10), sw.out.read_text()[-3000:]
        messages = sw.api_get("/voicemail/1002")["messages"]
        assert len(messages) == 1 and messages[0]["caller"] == "1001" and 4.0 < messages[0]["seconds"] < 6.5
        assert not messages[0]["heard"]
        bob.type("/dial *97")
        # "you have 1 new messages" (3 s), the message (~5 s), 3 s for a key: then it counts as heard
        assert wait_for(lambda: sw.api_get("/voicemail/1002")["messages"][0]["heard"], 25), sw.out.read_text()[-3000:]
        bob.type("/hangup")
        time.sleep(0.5)

    left = read_wav(Path(messages[0]["path"]))
    loud = np.flatnonzero(np.abs(left) > 1000)
    speech = left[loud[0]:loud[-1]]
    freq, level = tone(600, speech)
    assert abs(freq - 600) < 15 and -12 < level < -7, f"the message is Alice's tone: {freq:.0f} Hz {level:.1f} dB"
    listened = read_wav(bob.recordings()[-1])
    assert locate(listened, read_wav(PROMPTS / "you-have.wav"))[1] > 0.99
    assert locate(listened, read_wav(PROMPTS / "digit-1.wav"))[1] > 0.99
    score = locate(listened, speech[:8000])[1]
    assert score > 0.99, "Bob heard the message as it was recorded"
