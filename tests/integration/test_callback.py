"""Callback in queue through real SIP: Alice waits in the sales queue, presses *, types her
number and hangs up; Carol joins after her and waits on the line. When the agent becomes
available Alice keeps her place: the switch calls the agent first, then Alice, and connects them
(each hears the other's tone); Carol is served after. A callback requested from the plan
(``{queue: sales, callback: ""}``) whose customer does not answer ends as CALLBACKFAIL and the
agent is free again."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from audio import RtpPhone, dominant, level_at, sine
from centralino.api.server import call_api
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

PLAN = """\
routes:
  - {match: {to: "600"}, action: {queue: sales}}
  - {match: {to: "601"}, action: {queue: sales, callback: ""}}
agents:
  "1002": {logged_in: true}
queues:
  sales: {members: ["1002"], ring_timeout: 5, wrapup: 0,
          callback: {key: "*", offer_after: 0, offer_every: 30, ring_timeout: 8}}
"""
EXTS = "extensions:\n" + "".join(f'  "{n}": {{password: "pw{n}"}}\n' for n in (1001, 1002, 1003, 1004))


@pytest.fixture
def sw(tmp_path):
    text = plan_text(tmp_path, PLAN, extensions=EXTS)
    text = text.replace("  security:", '  rtp: {ports: "32000-32999", workers: 1}\n  security:')
    with RunningSwitch(text) as s:
        s.tmp = tmp_path
        yield s


def queue_log(sw) -> list[dict]:
    return db_rows(sw, "SELECT * FROM queue_log WHERE event != 'AGENT' ORDER BY at, rowid")


def agent(sw, action: str) -> None:
    status, _ = call_api(sw.api, "POST", "/api/v1/agents/1002/state", json.dumps({"action": action}).encode())
    assert status == 200


def test_callback_keeps_its_place_and_rings_the_agent_first(sw):
    agent(sw, "pause")
    bob_rtp, alice_rtp, carol_rtp = RtpPhone("PCMU"), RtpPhone("PCMU"), RtpPhone("PCMU")
    bob = Phone(sw.address("udp"), "1002", "pw1002")
    bob.sdp = sdp_for(bob_rtp.address[1], "0 101")
    alice_phone = Phone(sw.address("udp"), "1001", "pw1001")
    alice_phone.sdp = sdp_for(alice_rtp.address[1], "0 101")
    bob.start()
    alice_phone.start()
    try:
        alice = Caller(sw.address("udp"), "1001", "pw1001")
        answer = alice.call("600")
        assert answer is not None and answer.status == 200
        alice._ack(alice.last_invite, answer)
        carol = Caller(sw.address("udp"), "1003", "pw1003")
        carol.sdp = sdp_for(carol_rtp.address[1], "0 101")
        time.sleep(0.3)
        c_answer = carol.call("600")
        assert c_answer is not None and c_answer.status == 200
        carol._ack(carol.last_invite, c_answer)
        for cseq, key in enumerate("*1001#", 3):
            info_digit(alice, answer, cseq, key)
            time.sleep(0.15)
        assert wait_for(lambda: any(r["event"] == "CALLBACK" for r in queue_log(sw)), 12)
        queues = call_api(sw.api, "GET", "/api/v1/queues")[1]["queues"]["sales"]
        assert queues["waiting"] == 2, "Alice keeps her place after hanging up"

        agent(sw, "unpause")
        assert wait_for(lambda: alice_phone.invite is not None, 10), "the switch did not call Alice back"
        assert bob.invite is not None, "the agent is called first"
        bob_rtp.send(sine(1000, 4.0, 0.2), ("127.0.0.1", media_port(bob.invite)))
        alice_rtp.send(sine(500, 4.0, 0.2), ("127.0.0.1", media_port(alice_phone.invite)))
        time.sleep(2.0)
        assert call_api(sw.api, "GET", "/api/v1/queues")[1]["queues"]["sales"]["waiting"] == 1, "Carol still waits"
        calls = call_api(sw.api, "GET", "/api/v1/media")[1]["calls"]["calls"]
        callback = next(c for c in calls if c["destination"] == "extension:1002")
        assert callback["caller"] == "1001"
        heard_by_alice, heard_by_bob = alice_rtp.audio().astype(np.float64), bob_rtp.audio().astype(np.float64)
        assert call_api(sw.api, "POST", f"/api/v1/calls/{callback['id']}/hangup")[0] == 200
        carol_served = wait_for(lambda: [r for r in queue_log(sw) if r["event"] == "CONNECT"
                                         and r["call_id"] == carol.call_id], 10)
        assert carol_served
    finally:
        bob.stop()
        alice_phone.stop()
        for p in (bob_rtp, alice_rtp, carol_rtp):
            p.close()
    assert round(dominant(heard_by_alice[-8000:]), -1) == 1000 and level_at(heard_by_alice[-8000:], 1000) > 3000
    assert round(dominant(heard_by_bob[-8000:]), -1) == 500 and level_at(heard_by_bob[-8000:], 500) > 3000
    rows = [r for r in queue_log(sw) if r["call_id"] == alice.call_id]
    events = [r["event"] for r in rows]
    assert events[:2] == ["ENTER", "CALLBACK"] and "CONNECT" in events and events[-1] == "COMPLETE", events
    assert next(r for r in rows if r["event"] == "CALLBACK")["reason"] == "1001"
    # Alice (entered first, called back) was connected before Carol, who waited on the line
    connects = [r for r in queue_log(sw) if r["event"] == "CONNECT"]
    assert [r["call_id"] for r in connects] == [alice.call_id, carol.call_id]


def test_callback_request_from_the_plan_whose_customer_does_not_answer(sw):
    agent(sw, "pause")
    bob = Phone(sw.address("udp"), "1002", "pw1002").start()
    try:
        dave = Caller(sw.address("udp"), "1004", "pw1004")  # 1004 has no phone registered to call back
        answer = dave.call("601")
        assert answer is not None and answer.status == 200
        dave._ack(dave.last_invite, answer)
        assert wait_for(lambda: any(r["event"] == "CALLBACK" for r in queue_log(sw)), 5)
        agent(sw, "unpause")
        failed = wait_for(lambda: [r for r in queue_log(sw) if r["event"] == "CALLBACKFAIL"], 15)
        assert failed and failed[0]["agent"] == "1002" and failed[0]["reason"] == "480"
        assert bob.invite is not None
        assert wait_for(lambda: call_api(sw.api, "GET", "/api/v1/queues")[1]["agents"]["1002"]["state"] == "available", 10)
        assert call_api(sw.api, "GET", "/api/v1/queues")[1]["queues"]["sales"]["waiting"] == 0
    finally:
        bob.stop()


def test_an_agent_schedules_a_callback_that_rings_it_then_the_customer(sw):
    """Bob takes Alice's queue call; after it he sets the disposition "callback" with a time 3 s
    ahead (the agent desktop's call-back field). It is listed until then, kept in SQLite; at its
    time the switch rings a free agent of the queue (Bob) first, then Alice's number, and
    connects them; the queue log has CALLBACK, CONNECT and COMPLETE for it."""
    bob = Phone(sw.address("udp"), "1002", "pw1002").start()
    alice_phone = Phone(sw.address("udp"), "1001", "pw1001").start()
    try:
        alice = Caller(sw.address("udp"), "1001", "pw1001")
        answer = alice.call("600")
        assert answer is not None and answer.status == 200
        alice._ack(alice.last_invite, answer)
        assert wait_for(lambda: [r for r in queue_log(sw) if r["event"] == "CONNECT"], 10)
        assert alice.hang_up(answer, 5).status == 200
        assert wait_for(lambda: [r for r in queue_log(sw) if r["event"] == "COMPLETE"], 5)
        first_invite = bob.invite
        at = time.time() + 3.0
        status, reply = call_api(sw.api, "POST", "/api/v1/dispositions", json.dumps(
            {"agent": "1002", "disposition": "callback", "notes": "after 10", "callback_at": at}).encode())
        assert status == 200 and reply["callback"]["number"] == "1001" and reply["callback"]["queue"] == "sales", reply
        listed = call_api(sw.api, "GET", "/api/v1/callbacks")[1]["callbacks"]
        assert [c["id"] for c in listed] == [reply["callback"]["id"]] and listed[0]["call_id"] == alice.call_id
        assert db_rows(sw, "SELECT state FROM scheduled_callbacks")[0]["state"] == "pending"
        status, _ = call_api(sw.api, "POST", "/api/v1/dispositions", json.dumps(
            {"agent": "1002", "disposition": "callback", "callback_at": time.time() - 3600}).encode())
        assert status == 422  # not in the past
        assert alice_phone.invite is None
        assert wait_for(lambda: alice_phone.invite is not None, 10), "the customer was not called back"
        assert time.time() >= at - 0.1, "not before its time"
        assert bob.invite is not first_invite, "the agent is rung first"
        rows = wait_for(lambda: [r for r in queue_log(sw) if "#cb" in r["call_id"] and r["event"] == "CONNECT"], 5)
        assert rows and rows[0]["agent"] == "1002" and rows[0]["caller"] == "1001"
        calls = call_api(sw.api, "GET", "/api/v1/calls")[1]["calls"]
        (cb,) = [c for c in calls if c["destination"] == "extension:1002"]
        assert call_api(sw.api, "POST", f"/api/v1/calls/{cb['id']}/hangup")[0] == 200
        assert wait_for(lambda: db_rows(sw, "SELECT state FROM scheduled_callbacks")[0]["state"] == "done", 5)
        events = [r["event"] for r in queue_log(sw) if "#cb" in r["call_id"]]
        assert events[0] == "CALLBACK" and "CONNECT" in events and events[-1] == "COMPLETE", events
        assert call_api(sw.api, "GET", "/api/v1/callbacks")[1]["callbacks"] == []
    finally:
        bob.stop()
        alice_phone.stop()
