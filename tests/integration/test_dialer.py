"""The dialer against a SIPp callee farm behind a trunk (the dialled number's last digit says who
answers: a person, a machine, busy, nobody, no such number) with an agent registered as an
extension and logged in to the campaign queue. What is checked is what arrived: the agent's
decoded audio, the call recordings (what the callee said and what the switch sent it), the
lead states, the attempts, the CDR, and the events on the bus."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import wave
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from audio import Talker, dominant, level_at, rms, sine
from centralino.bench.pcap import write_pcm_pcap
from centralino.bench.sipp import scenario_copy, start_sipp
from centralino.events import DialerAttempt, LeadConnected
from centralino.switch.sip.sdp import parse_sdp
from helpers import (
    Caller,
    Phone,
    RunningSwitch,
    db_rows,
    free_port,
    need_tool,
    plan_text,
    sdp_for,
    wait_for,
)

ZONES = ["Europe/Moscow", "Asia/Tokyo", "America/New_York", "Pacific/Honolulu", "Europe/London",
         "Australia/Sydney", "America/Los_Angeles", "Asia/Kolkata"]


def zones_now() -> tuple[str, str, str]:
    """A zone where it is now between 01:00 and 22:59 (the window: 30 minutes either side of
    its local time), and one whose local time is at least 4 hours from it (never in the window)."""
    now = datetime.now(UTC)
    local = {z: now.astimezone(ZoneInfo(z)) for z in ZONES}
    inside = next(z for z, t in local.items() if 1 <= t.hour <= 22)
    t = local[inside]
    minutes = t.hour * 60 + t.minute
    lo, hi = max(0, minutes - 30), min(24 * 60 - 1, minutes + 30)
    window = f"{lo // 60:02d}:{lo % 60:02d}-{hi // 60:02d}:{hi % 60:02d}"

    def distance(z: str) -> float:
        d = abs((local[z].utcoffset() - t.utcoffset()).total_seconds()) / 3600
        return min(d, 24 - d)

    outside = next(z for z in ZONES if distance(z) >= 4)
    return window, inside, outside


def speech(text: str, tmp: Path) -> np.ndarray:
    espeak, sox = need_tool("espeak-ng"), need_tool("sox")
    raw, wav = tmp / "raw.wav", tmp / "speech.wav"
    subprocess.run([espeak, "-v", "en-us", "-s", "160", "-w", str(raw), text], check=True)
    subprocess.run([sox, str(raw), "-r", "8000", "-c", "1", "-b", "16", str(wav), "norm", "-6"], check=True)
    with wave.open(str(wav)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").copy()


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(8000 * seconds), np.int16)


@pytest.fixture(scope="module")
def farm_pcaps(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("farm")
    hello = speech("Hello?", tmp)
    human = np.concatenate([silence(0.3), hello, silence(1.7), sine(900, 8.0, level=0.25), silence(10)])
    greeting = speech("Hello, you have reached the voicemail of Ivan Petrov. I cannot take your call right "
                      "now, please leave a message after the tone.", tmp)
    machine = np.concatenate([silence(0.3), greeting, silence(0.4), sine(1400, 0.5, level=0.3), silence(14)])
    path = scenario_copy("callee_farm.xml", tmp, HUMAN_PCAP=write_pcm_pcap(tmp / "human.pcap", human),
                         MACHINE_PCAP=write_pcm_pcap(tmp / "machine.pcap", machine), TALK_MS="600000")
    return path, len(hello) / 8000, len(greeting) / 8000


CAMPAIGN = """\
trunks:
  farm: {{host: "127.0.0.1:{farm_port}", qualify: 0}}
queues:
  collections: {{members: ["1002"], ring_timeout: 5, wrapup: 1}}
agents:
  "1002": {{logged_in: {logged_in}}}
campaigns:
  reminders:
    mode: power
    ratio: 8
    queue: collections
    trunk: farm
    caller_id: "+74951230000"
    leads: "{leads}"
    calling_hours: "{window}"
    ring_timeout: 15
    max_attempts: 3
    retry: {{busy: 600, no_answer: 3600, machine: 86400, failed: 1800, abandoned: 900}}
    amd: {{enabled: true, maximum_number_of_words: 3}}
    on_machine: {{play: "tone:500/1500"}}
    safe_harbour: "tone:700/800"
    dnc: ["{dnc}"]
    dispositions: [paid, promised, callback, refused]
    record: true
"""
EXTS = 'extensions:\n  "1002": {password: "pw1002"}\n'


def start(tmp_path, farm_port, leads: str, logged_in: bool, dnc: str = "phone\n+74951000026\n"):
    window, inside, outside = zones_now()
    (tmp_path / "leads.csv").write_text(leads.format(inside=inside, outside=outside))
    (tmp_path / "dnc.csv").write_text(dnc)
    extra = CAMPAIGN.format(farm_port=farm_port, leads=tmp_path / "leads.csv", window=window, dnc=tmp_path / "dnc.csv",
                            logged_in="true" if logged_in else "false")
    text = plan_text(tmp_path, extra, extensions=EXTS)
    text = text.replace("  security:", f'  rtp: {{ports: "33000-33999", workers: 1}}\n'
                                       f'  recordings: "{tmp_path / "rec"}"\n  security:')
    sw = RunningSwitch(text)
    sw.__enter__()
    sw.tmp = tmp_path
    events: list = []
    sw.call(lambda: sw.switch.bus.subscribe(events.append, DialerAttempt, LeadConnected))
    sw.events = events
    return sw


LEADS = textwrap.dedent("""\
    phone,name,timezone,amount
    +74951000001,Ivan Human,{inside},1200
    +74951000002,Mila Machine,{inside},300
    +74951000003,Boris Busy,{inside},40
    +74951000004,Nina Noanswer,{inside},55
    +74951000005,Ivo Invalid,{inside},60
    +74951000026,Dana Dnc,{inside},70
    +74951000011,Otto Outofhours,{outside},80
    not a number,Bad Row,{inside},1
    """)


def read_recording(path: str) -> tuple[np.ndarray, np.ndarray]:
    with wave.open(path) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    return data[:, 0].astype(np.float64), data[:, 1].astype(np.float64)


def onset(x: np.ndarray, freq: float, after: float = 0.0, threshold: float = 1500.0) -> float | None:
    """When a tone of ``freq`` starts in ``x`` (seconds), looking from ``after``."""
    for i in range(int(after * 8000), len(x) - 160, 80):
        if level_at(x[i:i + 160], freq) > threshold:
            return i / 8000
    return None


def test_a_campaign_against_the_callee_farm(tmp_path, farm_pcaps):
    need_tool("sipp")
    farm_xml, _hello_s, _greeting_s = farm_pcaps
    farm_port = free_port()
    farm = start_sipp(farm_xml, local_ip="127.0.0.1", port=farm_port, media_port=free_port(), count=100,
                      log_dir=tmp_path)
    sw = start(tmp_path, farm_port, LEADS, logged_in=True)
    talker = Talker(600, "PCMA")
    agent = Phone(sw.address("udp"), "1002", "pw1002")
    agent.sdp = sdp_for(talker.phone.address[1], "8")
    agent.start()
    try:
        out = subprocess.run([sys.executable, "-m", "centralino", "campaign", "start", "reminders", "--api", sw.api],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and "running" in out.stdout, out.stdout + out.stderr
        # the person reaches the agent: the agent's phone rings and its card comes with the call
        connected = wait_for(lambda: [e for e in sw.events if isinstance(e, LeadConnected)], 25)
        assert connected and connected[0].agent == "1002" and connected[0].fields["amount"] == "1200"
        assert connected[0].name == "Ivan Human" and connected[0].phone == "+74951000001"
        head = agent.invite.serialize().split(b"\r\n\r\n")[0].decode()
        assert any(line.startswith("From:") and "+74951000001" in line for line in head.split("\r\n")), \
            "the agent's phone shows the lead's number"
        talker.start(("127.0.0.1", parse_sdp(agent.invite.body).media[0].port))
        time.sleep(3.0)
        heard = talker.heard(2.0)
        assert abs(dominant(heard) - 900) < 25, f"the agent hears the callee's 900 Hz, not {dominant(heard):.0f}"
        call = sw.call(lambda: sw.switch.b2bua.find(connected[0].call_id))
        sw.call(lambda: sw.switch.b2bua.hangup(call, by="callee"))
        # every dialable lead got its outcome
        def attempts():
            return {e.phone: e for e in sw.events if isinstance(e, DialerAttempt)}
        assert wait_for(lambda: len(attempts()) >= 5, 40), attempts()
        outcome = {p: e.outcome for p, e in attempts().items()}
        assert outcome == {"+74951000001": "answered-human", "+74951000002": "machine", "+74951000003": "busy",
                           "+74951000004": "no-answer", "+74951000005": "invalid"}, outcome
        assert attempts()["+74951000001"].amd in ("HUMAN", "NOTSURE") and attempts()["+74951000002"].amd == "MACHINE"
        # the DNC lead and the lead whose local time is outside the window were never dialled
        leads = {r["phone"]: r for r in db_rows(sw, "SELECT * FROM leads WHERE campaign = 'reminders'")}
        assert leads["+74951000026"]["state"] == "dnc" and leads["+74951000026"]["attempts"] == 0
        assert leads["+74951000011"]["state"] == "new" and leads["+74951000011"]["attempts"] == 0
        assert "+74951000011" not in attempts() and "+74951000026" not in attempts()
        # retries at the configured times; the machine got its message; the person is done
        for phone, delay in (("+74951000003", 600), ("+74951000004", 3600)):
            lead = leads[phone]
            assert lead["state"] == "retry" and abs(lead["next_at"] - lead["last_at"] - delay) < 1.0
        assert leads["+74951000001"]["state"] == "done" and leads["+74951000002"]["state"] == "done"
        assert leads["+74951000005"]["state"] == "invalid"
        # the machine: the message (500 Hz) starts after the beep (1400 Hz) ends, on the recording
        rec = db_rows(sw, "SELECT cdr.recording FROM cdr WHERE leg = 'call' AND lead_id = ?",
                      (leads["+74951000002"]["id"],))
        left, right = read_recording(rec[0]["recording"])
        beep = onset(left, 1400)
        message = onset(right, 500)
        assert beep is not None and message is not None, (beep, message)
        assert beep + 0.4 < message < beep + 3.0, f"beep at {beep:.2f}s, message at {message:.2f}s"
        assert rms(right[: int(8000 * beep)]) < 400, "nothing but silence was played into the greeting"
        # the person's call: its recording has the callee left and the agent (600 Hz) right
        rec = db_rows(sw, "SELECT recording, campaign, disposition FROM cdr WHERE leg = 'call' AND lead_id = ?",
                      (leads["+74951000001"]["id"],))
        assert rec[0]["campaign"] == "reminders" and rec[0]["disposition"] == "ANSWERED"
        left, right = read_recording(rec[0]["recording"])
        assert onset(left, 900) is not None and onset(right, 600) is not None
        # the agent sets a disposition from the phone: *5 + 1 (paid)
        agent_line = Caller(sw.address("udp"), "1002", "pw1002")
        agent_line.sdp = sdp_for(free_port(), "8")
        resp = agent_line.call("*51", until=200, timeout=5)
        assert resp is not None and resp.status == 200
        assert wait_for(lambda: db_rows(sw, "SELECT disposition FROM leads WHERE phone = '+74951000001'")[0]
                        ["disposition"] == "paid", 5)
        status = subprocess.run([sys.executable, "-m", "centralino", "campaign", "status", "reminders", "--api", sw.api,
                                 "--json"], capture_output=True, text=True, timeout=30)
        data = json.loads(status.stdout)
        assert data["abandonment"]["30d"] == {"answered": 1, "abandoned": 0, "rate": 0.0}
        assert data["outcomes"]["machine"] == 1 and data["leads"]["dnc"] == 1
    finally:
        agent.stop()
        talker.close()
        sw.stop()
        farm.kill()


def test_when_no_agent_takes_the_person_within_two_seconds_they_hear_the_safe_harbour_message(tmp_path, farm_pcaps):
    need_tool("sipp")
    farm_xml, _hello_s, _ = farm_pcaps
    farm_port = free_port()
    farm = start_sipp(farm_xml, local_ip="127.0.0.1", port=farm_port, media_port=free_port(), count=10,
                      log_dir=tmp_path)
    leads = "phone,name,timezone\n+74951000001,Ivan Human,{inside}\n"
    sw = start(tmp_path, farm_port, leads, logged_in=True)
    agent = Phone(sw.address("udp"), "1002", "pw1002", behaviour="ring")  # free, but does not pick up
    agent.start()
    try:
        sw.call(lambda: sw.switch.dialer.action("reminders", "start"))
        abandoned = wait_for(lambda: [e for e in sw.events if isinstance(e, DialerAttempt)], 30)
        assert abandoned and abandoned[0].outcome == "abandoned"
        lead = db_rows(sw, "SELECT * FROM leads WHERE phone = '+74951000001'")[0]
        assert lead["state"] == "retry" and abs(lead["next_at"] - lead["last_at"] - 900) < 1.0
        rec = wait_for(lambda: db_rows(sw, "SELECT recording FROM cdr WHERE leg = 'call' AND lead_id = ?", (lead["id"],)), 5)
        left, right = read_recording(rec[0]["recording"])
        voiced = np.flatnonzero(np.array([rms(left[i:i + 160]) for i in range(0, len(left) - 160, 160)]) > 500)
        words_end = (voiced[voiced < 8000 * 2.5 // 160][-1] + 1) * 0.02  # the end of "hello?"
        harbour = onset(right, 700)
        assert harbour is not None
        # app_amd decides after 800 ms of silence after the words; then at most 2 s for an agent
        assert harbour - words_end < 0.8 + 2.0 + 0.4, f"words end {words_end:.2f}s, message at {harbour:.2f}s"
        ledger = db_rows(sw, "SELECT abandoned FROM dialer_ledger WHERE campaign = 'reminders'")
        assert ledger == [{"abandoned": 1}]
        assert any(r.method == "INVITE" for r in agent.received), "the free agent was rung"
    finally:
        agent.stop()
        sw.stop()
        farm.kill()


def test_a_broadcast_plays_its_message_and_a_key_hands_the_callee_to_the_queue(tmp_path):
    """Agentless reminders: every callee who answers hears the message; one presses 1 during it
    (in-band DTMF: the farm's phones have no telephone-event) and reaches an agent; the other
    just listens."""
    need_tool("sipp")
    tmp = tmp_path / "farm"
    tmp.mkdir()
    hello = speech("Hello?", tmp)
    t = np.arange(int(8000 * 0.2)) / 8000
    key1 = (0.25 * 32767 * (np.sin(2 * np.pi * 697 * t) + np.sin(2 * np.pi * 1209 * t)) / 2).astype(np.int16)
    # answers, says hello, the message starts ~1 s after the words end; 2.5 s into it, "1"
    person = np.concatenate([silence(0.3), hello, silence(3.5), key1, silence(20)])
    machine = np.concatenate([silence(0.3), hello, silence(30)])  # unused: no machine in this list
    farm_xml = scenario_copy("callee_farm.xml", tmp, HUMAN_PCAP=write_pcm_pcap(tmp / "person.pcap", person),
                             MACHINE_PCAP=write_pcm_pcap(tmp / "machine.pcap", machine), TALK_MS="15000")
    farm_port = free_port()
    farm = start_sipp(farm_xml, local_ip="127.0.0.1", port=farm_port, media_port=free_port(), count=10,
                      log_dir=tmp_path, extra=["-trace_msg"])
    window, inside, _outside = zones_now()
    (tmp_path / "leads.csv").write_text(f"phone,name,timezone\n+74951000001,Presses One,{inside}\n"
                                        f"+74951000011,Just Listens,{inside}\n")
    extra = f"""\
trunks:
  farm: {{host: "127.0.0.1:{farm_port}", qualify: 0}}
queues:
  collections: {{members: ["1002"], ring_timeout: 10}}
agents:
  "1002": {{logged_in: true}}
campaigns:
  payments:
    mode: broadcast
    trunk: farm
    caller_id: "+74951230000"
    leads: "{tmp_path / 'leads.csv'}"
    calling_hours: "{window}"
    ring_timeout: 15
    amd: {{enabled: true}}
    message: ["tone:500/6000"]
    press: {{"1": {{queue: collections}}}}
    max_concurrent: 2
"""
    text = plan_text(tmp_path, extra, extensions=EXTS)
    sw = RunningSwitch(text)
    sw.__enter__()
    events: list = []
    sw.call(lambda: sw.switch.bus.subscribe(events.append, DialerAttempt))
    agent = Phone(sw.address("udp"), "1002", "pw1002")
    agent.start()
    try:
        sw.call(lambda: sw.switch.dialer.action("payments", "start"))
        # the one who pressed 1 reaches the agent
        assert wait_for(lambda: any(r.method == "INVITE" for r in agent.received), 30), "the agent was never rung"
        done = wait_for(lambda: len(events) >= 2, 40)
        assert done, events
        outcomes = {e.phone: e.outcome for e in events}
        assert outcomes == {"+74951000001": "answered-human", "+74951000011": "answered-human"}, outcomes
        connects = db_rows(sw, "SELECT * FROM queue_log WHERE queue = 'collections' AND event = 'CONNECT'")
        assert len(connects) == 1 and connects[0]["agent"] == "1002"
        calls = {r["called"]: r for r in db_rows(sw, "SELECT * FROM cdr WHERE leg = 'call' AND campaign = 'payments'")}
        assert len(calls) == 2
        # the callees were shown the campaign's caller ID, not their own number
        trace = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*_messages.log"))
        invites = [m for m in trace.split("\n\n") if "INVITE sip:" in m and "SIP/2.0\n" in m.split("INVITE sip:", 1)[1][:80]]
        froms = {line.split(":", 1)[1].strip() for m in invites for line in m.splitlines() if line.startswith("From:")}
        assert froms and all("+74951230000" in f for f in froms), froms
    finally:
        agent.stop()
        sw.stop()
        farm.kill()
