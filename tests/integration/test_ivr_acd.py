"""IVR and queues end to end: a SIPp "carrier" calls the 8-800 DID and presses RFC 2833 keys
(SIPp's DTMF pcaps); agents are SIPp UAS phones registered as extensions. The switch's clock for
opening hours is frozen; the queue log, the CDR and the real-time view are checked."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from centralino.bench.sipp import run_sipp
from helpers import (
    RunningSwitch,
    db_rows,
    free_port,
    need_tool,
    plan_text,
    sipp_phone,
    wait_for,
)
from sipp_ivr import ivr_caller

ROME = ZoneInfo("Europe/Rome")
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=ROME)
SUNDAY_10 = datetime(2026, 11, 22, 10, 0, tzinfo=ROME)

PLAN = """\
trunks:
  carrier: {{host: 127.0.0.10, port: 5999, allow_from: ["127.0.0.10/32"], dids: ["88005553535"], qualify: 0,
           country_code: "7"}}
schedules:
  office: {{timezone: Europe/Rome, open: {{mon-fri: "09:00-18:00"}}, holidays: ["2026-12-25"]}}
routes:
  - {{match: {{to: "88005553535"}}, action: {{ivr: main}}}}
ivr:
  main:
    greeting: welcome
    schedule: office
    closed: {{play: closed}}
    menu: {{"1": {{queue: sales}}, "2": {{queue: support}}, "0": {{dial: "1002", timeout: 5}}}}
    timeout: 2
    retries: 2
agents:
  "1002": {{logged_in: true}}
  "1003": {{logged_in: true}}
  "1004": {{logged_in: {login4}}}
queues:
  sales: {{strategy: {strategy}, members: ["1002", "1003", "1004"], ring_timeout: 3, wrapup: {wrapup},
          retry: 1, max_no_answer: 2, announce: {{position_every: 5, first_after: 1}}, record: true}}
  support: {{strategy: round-robin, members: ["1003"], ring_timeout: 3, wrapup: 0}}
"""
EXTS = "extensions:\n" + "".join(f'  "{n}": {{password: "pw{n}"}}\n' for n in (1001, 1002, 1003, 1004))


def start(tmp_path, strategy="longest-idle", wrapup=0, login4="false"):
    need_tool("sipp")
    text = plan_text(tmp_path, PLAN.format(strategy=strategy, wrapup=wrapup, login4=login4), extensions=EXTS)
    text = text.replace("  security:", '  rtp: {ports: "36000-36999", workers: 1}\n  security:')
    sw = RunningSwitch(text)
    sw.__enter__()
    sw.tmp = tmp_path
    return sw


@pytest.fixture
def sw(tmp_path):
    s = start(tmp_path)
    yield s
    s.stop()


def freeze(sw, when):
    def setter():
        sw.switch.ivr.clock = lambda: when
    sw.call(setter)


agent_phone = sipp_phone


def call_in(sw, tmp_path, keys, hold_ms, *, switch_hangs_up=False, name="caller.xml", wait=True):
    scenario = ivr_caller(tmp_path / name, keys, hold_ms=hold_ms, switch_hangs_up=switch_hangs_up)
    target = "{}:{}".format(*sw.address("udp"))
    return run_sipp(scenario, target, rate=1, count=1, local_ip="127.0.0.10",
                    extra=["-s", "88005553535", "-key", "caller", "84951234567", "-mp", str(free_port())],
                    timeout=60)


def rows(sw, sql):
    return db_rows(sw, sql)


def queue_log(sw):
    return rows(sw, "SELECT * FROM queue_log WHERE event != 'AGENT' ORDER BY id")


def cdr(sw):
    return rows(sw, "SELECT * FROM cdr WHERE leg = 'call' ORDER BY id")


def test_open_hours_menu_to_queue_to_agent(sw, tmp_path):
    freeze(sw, MONDAY_10)
    agent = agent_phone(sw, "1002", tmp_path)
    res = call_in(sw, tmp_path, [(300, "1")], hold_ms=4000)
    assert res.successful == 1, res.errors
    assert agent.wait(10) == 0
    events = wait_for(lambda: (ev := queue_log(sw)) and ev[-1]["event"] == "COMPLETE" and ev, 10)
    kinds = [e["event"] for e in events]
    assert kinds[:3] == ["ENTER", "RING", "CONNECT"] and kinds[-1] == "COMPLETE"
    assert events[0]["queue"] == "sales" and events[0]["did"] == "88005553535" and events[0]["caller"] == "84951234567"
    assert events[2]["agent"] == "1002"
    assert [e["ivr"] for e in events[:3]] == ["1", "1", "1"]  # the key pressed, on the agent's call card
    row = wait_for(lambda: cdr(sw), 5)[0]
    assert row["destination"] == "extension:1002" and row["disposition"] == "ANSWERED"
    # the CDR keeps what the caller keyed and the caller's number in E.164 (8 495… from a +7 trunk)
    assert row["ivr_digits"] == "1" and row["caller"] == "84951234567" and row["customer_e164"] == "+74951234567"
    snap = sw.call(lambda: _snapshot(sw))
    assert snap["queues"]["sales"]["answered"] == 1 and snap["queues"]["sales"]["offered"] == 1
    assert snap["agents"]["1002"]["calls"] == 1
    # the queue records: the recording started at the IVR's answer and took the agent as its right side
    rec = wait_for(lambda: rows(sw, "SELECT * FROM recordings"), 5)[0]
    assert rec["agent"] == "1002" and rec["channels"] == 2 and rec["call_id"] == row["call_id"]
    assert row["recording"] == rec["path"]
    # the same figures from the command line, out of SQLite
    report = subprocess.run([sys.executable, "-m", "centralino", "report", "--db", str(sw.tmp / "centralino.db"),
                             "--by", "agent", "--format", "json"], capture_output=True, text=True, check=True)
    by_agent = {r["agent"]: r for r in json.loads(report.stdout)}
    assert by_agent["1002"]["answered"] == 1 and by_agent["1002"]["talk"] > 2
    csv_out = subprocess.run([sys.executable, "-m", "centralino", "report", "--db", str(sw.tmp / "centralino.db")],
                             capture_output=True, text=True, check=True).stdout.splitlines()
    assert csv_out[0].startswith("queue,offered,answered,abandoned") and csv_out[1].startswith("sales,1,1,0")


def test_menu_zero_dials_an_extension_from_the_ivr(sw, tmp_path):
    freeze(sw, MONDAY_10)
    phone = agent_phone(sw, "1002", tmp_path)
    res = call_in(sw, tmp_path, [(300, "0")], hold_ms=3000)
    assert res.successful == 1, res.errors
    assert phone.wait(10) == 0
    row = wait_for(lambda: cdr(sw), 5)[0]
    assert row["destination"] == "extension:1002" and row["disposition"] == "ANSWERED" and queue_log(sw) == []


def test_agents_api_pauses_and_queues_api_reports(sw):
    from centralino.api.server import call_api

    status, body = call_api(sw.api, "POST", "/api/v1/agents/1002/state", json.dumps(
        {"action": "pause", "reason": "lunch"}).encode())
    assert status == 200 and body["state"] == "paused" and body["reason"] == "lunch"
    status, body = call_api(sw.api, "GET", "/api/v1/queues")
    assert status == 200 and body["agents"]["1002"]["state"] == "paused"
    assert body["queues"]["sales"]["agents"]["paused"] == 1 and body["queues"]["sales"]["waiting"] == 0
    assert call_api(sw.api, "POST", "/api/v1/agents/1001/state", b'{"action": "login"}')[0] == 404
    assert call_api(sw.api, "POST", "/api/v1/agents/1004/state", b'{"action": "pause"}')[0] == 409


async def _snapshot(sw):
    return sw.switch.acd.snapshot()


def test_closed_hours_play_closed_and_hang_up(sw, tmp_path):
    freeze(sw, SUNDAY_10)
    res = call_in(sw, tmp_path, [], hold_ms=0, switch_hangs_up=True)
    assert res.successful == 1, res.errors
    row = wait_for(lambda: cdr(sw), 5)[0]
    assert row["hangup_by"] == "switch" and row["destination"].startswith("ivr:main")
    assert queue_log(sw) == []
    assert row["talk_seconds"] > 2.0  # the closed message was played (about 3 s)


def test_invalid_keys_are_retried_then_a_valid_one_routes(sw, tmp_path):
    freeze(sw, MONDAY_10)
    agent = agent_phone(sw, "1003", tmp_path)
    # 7 is not on the menu (the invalid prompt plays), then 2 = support
    res = call_in(sw, tmp_path, [(300, "7"), (4500, "2")], hold_ms=3000)
    assert res.successful == 1, res.errors
    agent.wait(10)
    events = wait_for(lambda: (ev := queue_log(sw)) and ev[-1]["event"] == "COMPLETE" and ev, 10)
    assert events[0]["queue"] == "support" and events[2]["agent"] == "1003"
    assert events[0]["ivr"] == "2"  # the invalid 7 was not a choice
    assert wait_for(lambda: cdr(sw), 5)[0]["ivr_digits"] == "2"


def test_no_valid_key_after_retries_says_goodbye(sw, tmp_path):
    freeze(sw, MONDAY_10)
    res = call_in(sw, tmp_path, [(300, "7"), (3000, "8"), (3000, "9")], hold_ms=0, switch_hangs_up=True)
    assert res.successful == 1, res.errors
    row = wait_for(lambda: cdr(sw), 5)[0]
    assert row["hangup_by"] == "switch" and queue_log(sw) == []


def test_agent_logs_in_with_star45_and_wrapup_delays_the_next_call(tmp_path):
    from helpers import Caller

    sw = start(tmp_path, wrapup=3)
    try:
        freeze(sw, MONDAY_10)
        agent = agent_phone(sw, "1004", tmp_path, calls=2)  # 1002 and 1003 are logged in, not registered
        assert sw.call(lambda: _snapshot(sw))["agents"]["1004"]["state"] == "logged-out"
        phone = Caller(sw.address("udp"), "1004", "pw1004")
        ok = phone.call("*45")
        assert ok is not None and ok.status == 200
        phone._ack(phone.last_invite, ok)
        bye = wait_for(lambda: (m := phone.recv(0.5)) is not None and getattr(m, "method", "") == "BYE" and m, 10)
        phone.send(_ok(bye))
        assert sw.call(lambda: _snapshot(sw))["agents"]["1004"]["state"] == "available"
        for i in range(2):
            res = call_in(sw, tmp_path, [(300, "1")], hold_ms=6000, name=f"c{i}.xml")
            assert res.successful == 1, res.errors
        assert agent.wait(10) == 0
        events = wait_for(lambda: (ev := [e for e in queue_log(sw) if e["event"] in ("CONNECT", "COMPLETE")])
                          and len(ev) == 4 and ev, 15)
        assert [e["agent"] for e in events] == ["1004"] * 4
        first_complete, second_connect = events[1]["at"], events[2]["at"]
        # the second caller entered the queue while 1004 was in wrap-up: it waited for the end of it
        assert second_connect - first_complete >= 2.9
    finally:
        sw.stop()


def _ok(req):
    lines = ["SIP/2.0 200 OK"]
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for value in req.header_values(name):
            lines.append(f"{name}: {value}")
    return ("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode()
