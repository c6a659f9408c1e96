"""What the README promises a newcomer about the embedded default plan's demo campaign: import
its CSV, start it, a sales agent's phone (a SIPp UAS registered as Bob and logged in) gets the
calls with the lead's card in the event stream, talks to the lead (a SIPp callee behind the demo
trunk), and sets a disposition. The plan is the packaged default.yaml itself; only its ports, its
data paths and the calling hours change (the test runs at any hour)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import wave
from importlib import resources
from pathlib import Path

import numpy as np
from audio import dominant, sine
from centralino.api.server import call_api
from centralino.bench.pcap import write_pcm_pcap
from centralino.bench.sipp import register_contact, scenario_copy, start_sipp
from helpers import RunningSwitch, db_rows, free_port, need_tool, wait_for


def demo_plan(tmp: Path, trunk_port: int) -> str:
    packaged = resources.files("centralino.config")
    text = packaged.joinpath("default.yaml").read_text()
    replacements = {
        '"udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"': '"udp:127.0.0.1:0", "tcp:127.0.0.1:0"',
        'listen: "127.0.0.1:8080"': 'listen: "127.0.0.1:0"',
        'storage: "sqlite:centralino.db"': f'storage: "sqlite:{tmp / "centralino.db"}"',
        "recordings: recordings": f"recordings: {tmp / 'recordings'}",
        '"127.0.0.1:5070"': f'"127.0.0.1:{trunk_port}"',
        "leads: examples/demo-leads.csv": f"leads: {Path(str(packaged)) / 'examples' / 'demo-leads.csv'}",
        'calling_hours: "09:00-21:00"': 'calling_hours: "00:00-24:00"',
        "days: mon-sat": "days: mon-sun",
    }
    for old, new in replacements.items():
        assert old in text, f"the default plan no longer has {old!r}: update this test and the README"
        text = text.replace(old, new)
    return text


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "centralino", *args], capture_output=True, text=True, timeout=60)


def test_the_demo_campaign_of_the_default_plan(tmp_path):
    need_tool("sipp")
    callee_port, agent_port = free_port(), free_port()
    callee = start_sipp(scenario_copy("uas_agent.xml", tmp_path,
                                      AGENT_PCAP=write_pcm_pcap(tmp_path / "callee.pcap", sine(900, 30.0, level=0.25))),
                        local_ip="127.0.0.1", port=callee_port, media_port=free_port(), count=100, log_dir=tmp_path)
    (tmp_path / "agent").mkdir()
    agent = start_sipp(scenario_copy("uas_agent.xml", tmp_path / "agent",
                                     AGENT_PCAP=write_pcm_pcap(tmp_path / "agent.pcap", sine(600, 30.0, level=0.25))),
                       local_ip="127.0.0.1", port=agent_port, media_port=free_port(), count=100, log_dir=tmp_path)
    plan = tmp_path / "plan.yaml"
    plan.write_text(demo_plan(tmp_path, callee_port))
    sw = RunningSwitch(plan.read_text(), str(plan))
    sw.__enter__()
    try:
        # the newcomer imports the demo CSV (the campaign's own leads: file)
        out = cli("campaign", "import", "demo", "-c", str(plan))
        assert out.returncode == 0 and "imported 7 leads into demo" in out.stdout, out.stdout + out.stderr
        # Bob's softphone registers (the password the switch generated) and Bob logs in to sales
        password = sw.call(lambda: sw.switch.passwords.get("1002"))
        assert register_contact(sw.address("udp"), "1002", password, ("127.0.0.1", agent_port),
                                "centralino.local") == 200
        status, reply = call_api(sw.api, "POST", "/api/v1/agents/1002/state", json.dumps({"action": "login"}).encode())
        assert status == 200, reply
        out = cli("campaign", "start", "demo", "--api", sw.api)
        assert out.returncode == 0 and "preview" in out.stdout and "running" in out.stdout, out.stdout + out.stderr
        # the lead's card comes with the call, in the event stream
        events = cli("events", "--type", "dialer.connected", "--api", sw.api)
        deadline = time.time() + 30
        while not events.stdout.strip() and time.time() < deadline:
            time.sleep(0.5)
            events = cli("events", "--type", "dialer.connected", "--api", sw.api)
        card = json.loads(events.stdout.splitlines()[0])
        assert card["agent"] == "1002" and card["campaign"] == "demo"
        assert card["name"] == "Giulia Bianchi" and card["phone"] == "+390612345601"
        assert card["fields"]["company"] == "Trattoria Da Gino" and card["fields"]["interest"] == "espresso machines"
        # after the preview time the lead is dialled through the demo trunk and they talk
        call_id = card["call_id"]
        assert wait_for(lambda: db_rows(sw, "SELECT COUNT(*) AS n FROM lead_attempts")[0]["n"] == 0
                        and sw.call(lambda: sw.switch.b2bua.find(call_id)) is not None, 5)
        time.sleep(9.0)  # 5 s preview, the callee's ring and answer, then a few seconds of talk
        status, reply = call_api(sw.api, "POST", "/api/v1/dispositions",
                                 json.dumps({"agent": "1002", "disposition": "interested"}).encode())
        assert status == 200 and reply["lead"] == card["lead_id"], reply
        status, reply = call_api(sw.api, "POST", f"/api/v1/calls/{call_id}/hangup")
        assert status == 200, reply
        attempt = wait_for(lambda: db_rows(sw, "SELECT * FROM lead_attempts WHERE lead_id = ?", (card["lead_id"],)), 10)
        assert attempt[0]["outcome"] == "answered-human" and attempt[0]["agent"] == "1002"
        # what was said both ways, from the call's recording (sales records): the agent's 600 Hz
        # and the lead's 900 Hz
        rec = wait_for(lambda: [r for r in db_rows(sw, "SELECT recording FROM cdr WHERE call_id = ? AND leg = 'call'",
                                                   (call_id,)) if r["recording"]], 10)
        assert rec, "the demo campaign records its calls"
        with wave.open(rec[0]["recording"]) as w:
            data = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2).astype(np.float64)
        heard = sorted(round(dominant(data[-16000:, ch])) for ch in (0, 1))
        assert abs(heard[0] - 600) < 25 and abs(heard[1] - 900) < 25, heard
        # the export has the outcome and the disposition
        out = cli("campaign", "export", "demo", "--format", "json", "-c", str(plan))
        leads = {lead["phone"]: lead for lead in json.loads(out.stdout)}
        giulia = leads["+390612345601"]
        assert giulia["disposition"] == "interested" and giulia["outcomes"] == ["answered-human"]
        assert giulia["fields"]["company"] == "Trattoria Da Gino"
    finally:
        sw.stop()
        callee.kill()
        agent.kill()
