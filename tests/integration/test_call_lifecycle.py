"""A switch process with calls: kill -9 loses no CDR of a finished call; SIGTERM refuses new
calls with 503, lets the current one go on until --drain, then ends it with BYE and writes its CDR."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

from helpers import Caller, Phone, free_port, plan_text, wait_for

ROUTES = 'routes:\n  - {match: {to: "^1\\\\d{3}$"}, action: {dial: "${to}"}}\n'
EXTS = 'extensions:\n  "1001": {password: "pw1001"}\n  "1002": {password: "pw1002"}\n'


def start(tmp_path, port, api, *extra):
    plan = tmp_path / "plan.yaml"
    text = plan_text(tmp_path, ROUTES, extensions=EXTS).replace('"udp:127.0.0.1:0"', f'"udp:127.0.0.1:{port}"')
    text = text.replace('"127.0.0.1:0"', f'"127.0.0.1:{api}"').replace("  security:", '  rtp: {ports: "38000-38999", workers: 1}\n  security:')
    plan.write_text(text)
    proc = subprocess.Popen([sys.executable, "-m", "centralino", "run", "--config", str(plan), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: subprocess.run([sys.executable, "-m", "centralino", "status", "--config", str(plan)],
                                           capture_output=True).returncode == 0, 15)
    return proc, plan


def cdrs(plan):
    out = subprocess.run([sys.executable, "-m", "centralino", "cdr", "--config", str(plan), "--format", "json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def answered_call(server):
    bob = Phone(server, "1002", "pw1002").start()
    alice = Caller(server, "1001", "pw1001")
    resp = alice.call("1002")
    assert resp.status == 200
    alice._ack(alice.last_invite, resp)
    return alice, bob, resp


def test_kill_9_loses_no_finished_call(tmp_path):
    port, api = free_port(), free_port(socket.SOCK_STREAM)
    proc, plan = start(tmp_path, port, api)
    try:
        alice, bob, resp = answered_call(("127.0.0.1", port))
        assert alice.hang_up(resp, 6).status == 200  # the 200 comes after the CDR commit is queued
        time.sleep(0.3)
        bob.stop()
        answered_call(("127.0.0.1", port))  # a second call still going on
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        rows = cdrs(plan)  # read straight from the database file, no switch running
        assert len(rows) == 1 and rows[0]["disposition"] == "ANSWERED" and rows[0]["hangup_by"] == "caller"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigterm_refuses_new_calls_then_hangs_up_and_flushes(tmp_path):
    port, api = free_port(), free_port(socket.SOCK_STREAM)
    proc, plan = start(tmp_path, port, api, "--drain", "2")
    try:
        alice, bob, _ = answered_call(("127.0.0.1", port))
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        late = Caller(("127.0.0.1", port), "1001", "pw1001")
        resp = late.call("1002")
        assert resp is not None and resp.status == 503 and resp.header("Retry-After")
        assert wait_for(lambda: any(m.method == "BYE" for m in bob.received), 5), "the callee got a BYE"
        got_bye = False
        deadline = time.time() + 3
        while time.time() < deadline and not got_bye:
            msg = alice.recv(0.3)
            got_bye = getattr(msg, "method", "") == "BYE"
        assert got_bye, "the caller got a BYE"
        assert proc.wait(10) == 0
        rows = cdrs(plan)
        assert len(rows) == 1 and rows[0]["hangup_by"] == "shutdown" and rows[0]["disposition"] == "ANSWERED"
        bob.stop()
    finally:
        if proc.poll() is None:
            proc.kill()
