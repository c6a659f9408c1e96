"""Distribution over live calls: SIPp callers, agents that are SIPp UAS phones (answering and
echoing RTP, or only ringing). Round-robin remembers where it stopped across calls; an agent in
two queues takes the caller who waited longest across them; a skills requirement nobody meets
widens with waiting; an agent who lets it ring twice is auto-paused and the caller abandons; the
report and the CDR agree with the calls made."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from centralino.api.server import call_api
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

DATA = Path(__file__).parent.parent / "data"
PLAN = """\
trunks:
  carrier: {host: 127.0.0.10, port: 5999, allow_from: ["127.0.0.10/32"], dids: ["700", "701", "702", "703", "704", "705"], qualify: 0}
routes:
  - {match: {to: "700"}, action: {queue: rr}}
  - {match: {to: "701"}, action: {queue: alpha}}
  - {match: {to: "702"}, action: {queue: beta}}
  - {match: {to: "703"}, action: {ivr: english}}
  - {match: {to: "704"}, action: {queue: flaky}}
  - {match: {to: "705"}, action: {queue: everyone}}
ivr:
  english: {nodes: {needs: {set: {skill.english: "8"}, next: {queue: skills}}}}
agents:
  "1002": {logged_in: true, skills: {english: 5}}
  "1003": {logged_in: true, skills: {english: 3}}
  "1004": {logged_in: true}
  "1005": {logged_in: true}
queues:
  rr: {strategy: round-robin, members: ["1002", "1003", "1004"], ring_timeout: 3, wrapup: 0}
  alpha: {members: ["1002"], wrapup: 0}
  beta: {members: ["1002"], wrapup: 0}
  skills: {strategy: skills, members: ["1002", "1003"], escalate: {every: 2, step: 3}, wrapup: 0}
  flaky: {members: ["1005"], ring_timeout: 2, retry: 0, max_no_answer: 2}
  everyone: {strategy: ringall, members: ["1002", "1003"], ring_timeout: 5, wrapup: 0}
"""
EXTS = "extensions:\n" + "".join(f'  "{n}": {{password: "pw{n}"}}\n' for n in (1002, 1003, 1004, 1005))


@pytest.fixture
def sw(tmp_path):
    need_tool("sipp")
    text = plan_text(tmp_path, PLAN, extensions=EXTS)
    text = text.replace("  security:", '  rtp: {ports: "31000-31999", workers: 1}\n  security:')
    with RunningSwitch(text) as s:
        s.tmp = tmp_path
        yield s


phone = sipp_phone


def call(sw, tmp_path: Path, number: str, hold_ms: int, name: str):
    scenario = ivr_caller(tmp_path / name, [], hold_ms=hold_ms)
    return run_sipp(scenario, "{}:{}".format(*sw.address("udp")), rate=1, count=1, local_ip="127.0.0.10",
                    extra=["-s", number, "-key", "caller", f"7495{abs(hash(name)) % 10**7:07d}",
                           "-mp", str(free_port())], timeout=60)


def in_background(*args):
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("r", call(*args)), daemon=True)
    thread.start()
    return thread, result


def log_rows(sw, event: str) -> list[dict]:
    return db_rows(sw, "SELECT * FROM queue_log WHERE event = ? ORDER BY id", (event,))


def report(sw, by: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "centralino", "report", "--db", str(sw.tmp / "centralino.db"),
                          "--by", by, "--format", "json"], capture_output=True, text=True, check=True).stdout
    return {r[by]: r for r in json.loads(out)}


def agent(sw, ext: str, action: str) -> None:
    assert call_api(sw.api, "POST", f"/api/v1/agents/{ext}/state", json.dumps({"action": action}).encode())[0] == 200


def test_round_robin_remembers_and_the_report_matches_the_calls(sw, tmp_path):
    phones = {"1002": phone(sw, "1002", tmp_path, 2), "1003": phone(sw, "1003", tmp_path, 1),
              "1004": phone(sw, "1004", tmp_path, 1)}
    for i in range(4):
        res = call(sw, tmp_path, "700", 1500, f"rr{i}.xml")
        assert res.successful == 1, res.errors
        wait_for(lambda n=i: len(log_rows(sw, "COMPLETE")) == n + 1, 5)
    for p in phones.values():
        assert p.wait(10) == 0
    assert [r["agent"] for r in log_rows(sw, "CONNECT")] == ["1002", "1003", "1004", "1002"]
    by_queue, by_agent = report(sw, "queue"), report(sw, "agent")
    assert by_queue["rr"]["offered"] == 4 and by_queue["rr"]["answered"] == 4 and by_queue["rr"]["abandoned"] == 0
    assert {a: r["answered"] for a, r in by_agent.items() if r["answered"]} == {"1002": 2, "1003": 1, "1004": 1}
    cdr = db_rows(sw, "SELECT destination, disposition, talk_seconds FROM cdr WHERE leg = 'call' ORDER BY id")
    assert [r["destination"] for r in cdr] == ["extension:1002", "extension:1003", "extension:1004", "extension:1002"]
    assert all(r["disposition"] == "ANSWERED" for r in cdr)
    # talk time in the report is the calls' talk time as the CDRs have it (each caller holds
    # 1.5 s after the answer, so at least that; a loaded machine only makes it longer)
    assert all(r["talk_seconds"] >= 1.4 for r in cdr)
    assert abs(sum(r["talk"] for r in by_agent.values()) - sum(r["talk_seconds"] for r in cdr)) < 4 * 0.15


def test_an_agent_in_two_queues_takes_the_longest_waiting_caller_across_them(sw, tmp_path):
    agent(sw, "1002", "pause")
    uas = phone(sw, "1002", tmp_path, 2)
    first, r1 = in_background(sw, tmp_path, "702", 6000, "beta.xml")  # queue beta, listed second
    time.sleep(1.5)
    second, r2 = in_background(sw, tmp_path, "701", 9000, "alpha.xml")  # queue alpha, listed first
    time.sleep(0.7)
    agent(sw, "1002", "unpause")
    first.join(30)
    second.join(30)
    assert r1["r"].successful == 1 and r2["r"].successful == 1
    assert uas.wait(10) == 0
    connects = log_rows(sw, "CONNECT")
    assert [r["queue"] for r in connects] == ["beta", "alpha"], "the longest wait wins across queues"
    assert connects[1]["wait"] > connects[0]["wait"] - 1.5  # alpha's caller waited through beta's call


def test_skills_requirement_widens_with_waiting(sw, tmp_path):
    uas = phone(sw, "1002", tmp_path, 1)
    res = call(sw, tmp_path, "703", 4000, "skills.xml")  # the IVR asks for english 8; 1002 has 5
    assert res.successful == 1, res.errors
    assert uas.wait(10) == 0
    connect = log_rows(sw, "CONNECT")[0]
    assert connect["agent"] == "1002" and connect["queue"] == "skills"
    assert 1.9 <= connect["wait"] < 3.5, "8 → 5 after one 2 s step, not before"


def test_missed_rings_auto_pause_the_agent_and_the_caller_abandons(sw, tmp_path):
    uas = phone(sw, "1005", tmp_path, 2, scenario=str(DATA / "uas_ring_only.xml"))
    res = call(sw, tmp_path, "704", 6000, "flaky.xml")
    assert res.successful == 1, res.errors
    assert uas.wait(10) == 0
    misses = log_rows(sw, "RINGNOANSWER")
    assert [r["agent"] for r in misses] == ["1005", "1005"]
    state = call_api(sw.api, "GET", "/api/v1/queues")[1]["agents"]["1005"]
    assert state["state"] == "paused" and state["pause_reason"] == "no-answer" and state["missed_rings"] == 2
    abandon = wait_for(lambda: log_rows(sw, "ABANDON"), 5)
    assert abandon and abandon[0]["queue"] == "flaky"
    by_queue = report(sw, "queue")
    assert by_queue["flaky"]["offered"] == 1 and by_queue["flaky"]["abandoned"] == 1 and by_queue["flaky"]["answered"] == 0


def test_ringall_rings_every_free_agent_and_cancels_the_others(sw, tmp_path):
    answers = phone(sw, "1002", tmp_path, 1)
    rings = phone(sw, "1003", tmp_path, 1, scenario=str(DATA / "uas_ring_only.xml"))
    res = call(sw, tmp_path, "705", 2000, "ringall.xml")
    assert res.successful == 1, res.errors
    assert answers.wait(10) == 0
    assert rings.wait(10) == 0, "the phone that did not answer got a CANCEL (its scenario ends with it)"
    assert sorted(r["agent"] for r in log_rows(sw, "RING")) == ["1002", "1003"]
    assert [r["agent"] for r in log_rows(sw, "CONNECT")] == ["1002"]
    assert not log_rows(sw, "RINGNOANSWER"), "losing a ringall race is not a missed ring"
    agents = call_api(sw.api, "GET", "/api/v1/queues")[1]["agents"]
    assert agents["1003"]["state"] == "available" and agents["1003"]["missed_rings"] == 0


def test_agent_logins_and_pauses_survive_a_restart(tmp_path):
    text = plan_text(tmp_path, PLAN, extensions=EXTS)
    with RunningSwitch(text) as first:
        agent(first, "1002", "pause")  # reason defaults to break
        assert call_api(first.api, "POST", "/api/v1/agents/1004/state",
                        json.dumps({"action": "pause", "reason": "lunch"}).encode())[0] == 200
        agent(first, "1003", "logout")
    with RunningSwitch(text) as second:
        agents = call_api(second.api, "GET", "/api/v1/queues")[1]["agents"]
    assert (agents["1002"]["state"], agents["1002"]["pause_reason"]) == ("paused", "break")
    assert (agents["1004"]["state"], agents["1004"]["pause_reason"]) == ("paused", "lunch")
    assert agents["1003"]["state"] == "logged-out" and agents["1005"]["state"] == "available"


def test_a_supervisor_moves_a_waiting_caller_to_another_queue_keeping_its_wait(sw, tmp_path):
    """Nobody of queue flaky can take the call (1005 has no phone): after 2 s the caller is moved
    to alpha (``POST /api/v1/calls/{id}/queue``), where 1002 answers. alpha's CONNECT counts the
    wait from the caller's first arrival; flaky logs MOVED; the report counts it there."""
    uas = phone(sw, "1002", tmp_path, 1)
    thread, result = in_background(sw, tmp_path, "704", 6000, "moved.xml")
    waiting = wait_for(lambda: [c for c in call_api(sw.api, "GET", "/api/v1/calls")[1]["calls"]
                                if c.get("queue") == "flaky"], 5)
    assert waiting, "the caller should wait in flaky"
    call_id = waiting[0]["id"]
    time.sleep(2.0)
    move = f"/api/v1/calls/{call_id}/queue"
    status, reply = call_api(sw.api, "POST", move, json.dumps({"queue": "nowhere"}).encode())
    assert status == 409 and "no queue" in reply["error"]
    status, reply = call_api(sw.api, "POST", move, json.dumps({"queue": "flaky"}).encode())
    assert status == 409 and "already" in reply["error"]
    status, reply = call_api(sw.api, "POST", move, json.dumps({"queue": "alpha"}).encode())
    assert status == 200 and reply["from"] == "flaky" and reply["queue"] == "alpha", reply
    thread.join(30)
    assert result["r"].successful == 1, result["r"].errors
    assert uas.wait(10) == 0
    moved, = log_rows(sw, "MOVED")
    assert moved["queue"] == "flaky" and moved["reason"] == "alpha" and moved["wait"] >= 2.0
    connect, = log_rows(sw, "CONNECT")
    assert connect["queue"] == "alpha" and connect["agent"] == "1002"
    assert connect["wait"] >= moved["wait"], "alpha counts the wait from the first arrival"
    assert [r["queue"] for r in log_rows(sw, "ENTER")] == ["flaky", "alpha"]
    by_queue = report(sw, "queue")
    assert by_queue["flaky"]["moved"] == 1 and by_queue["flaky"]["answered"] == 0
    assert by_queue["alpha"]["answered"] == 1
    status, reply = call_api(sw.api, "POST", move, json.dumps({"queue": "beta"}).encode())
    assert status == 404  # the call is over
