"""Webhooks as a CRM receives them: a local receiver that fails the first three deliveries still
gets every call's event exactly once (by its webhook-id) with a valid Standard Webhooks signature;
a `kill -9` of the switch while the receiver is down loses none (the outbox resumes after the
restart); a 410 disables the endpoint until an admin enables it; an event past its retry time is
a dead letter that an admin can replay."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from centralino.api.server import call_api
from helpers import Caller, Phone, RunningSwitch, free_port, plan_text, wait_for

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
EXTS = 'extensions:\n  "1001": {password: "pw1001"}\n  "1002": {password: "pw1002"}\n'
ROUTES = 'routes:\n  - {match: {to: "^100\\\\d$"}, action: {dial: "${to}", timeout: 10}}\n'


class Receiver:
    """A CRM endpoint: answers with ``status()`` (a callable, so a test can change its mind)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self.answer = lambda n: 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = receiver.answer(len(receiver.requests))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def accepted(self) -> dict[str, dict]:
        """webhook-id → the body, for the deliveries answered 2xx."""
        out: dict[str, dict] = {}
        for headers, body, status in self.requests:
            if 200 <= status < 300:
                assert headers["webhook-id"] not in out, "an event was accepted twice"
                out[headers["webhook-id"]] = json.loads(body)
        return out

    def close(self) -> None:
        self.server.shutdown()


def valid_signature(headers: dict[str, str], body: bytes) -> bool:
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(sig.partition(",")[2], expected) for sig in headers["webhook-signature"].split())


def webhook_plan(url: str, extra: str = "") -> str:
    return (f'webhooks:\n  crm: {{url: "{url}", events: ["call.ended"], secret: "{SECRET}", '
            f"retry_base: 0.2{extra}}}\n")


def make_calls(address, n: int) -> None:
    bob = Phone(address, "1002", "pw1002").start()
    try:
        for _ in range(n):
            alice = Caller(address, "1001", "pw1001")
            resp = alice.call("1002")
            assert resp is not None and resp.status == 200
            alice._ack(alice.last_invite, resp)
            time.sleep(0.1)
            assert alice.hang_up(resp, 3).status == 200
            alice.close()
    finally:
        bob.stop()


def test_failing_receiver_gets_every_event_once_signed(tmp_path):
    crm = Receiver()
    crm.answer = lambda n: 500 if n < 3 else 200  # the first three deliveries fail
    try:
        text = plan_text(tmp_path, ROUTES + webhook_plan(crm.url), extensions=EXTS)
        with RunningSwitch(text) as sw:
            make_calls(sw.address("udp"), 3)
            assert wait_for(lambda: len(crm.accepted()) == 3, 20), crm.requests
            status, hooks = call_api(sw.api, "GET", "/api/v1/webhooks")
            assert status == 200 and hooks["webhooks"]["crm"]["delivered"] == 3
            assert hooks["webhooks"]["crm"]["pending"] == 0
            host, port = sw.api.rsplit(":", 1)
            conn = http.client.HTTPConnection(host, int(port), timeout=5)
            token = (tmp_path / "api-token").read_text().strip()
            conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"})
            scrape = conn.getresponse().read().decode()
            assert 'centralino_webhook_backlog{webhook="crm"} 0.0' in scrape
            assert 'centralino_webhook_dead_letters{webhook="crm"} 0.0' in scrape
            cdr = sqlite3.connect(tmp_path / "centralino.db").execute(
                "SELECT call_id, talk_seconds FROM cdr WHERE leg = 'call'").fetchall()
        assert all(valid_signature(h, b) for h, b, _ in crm.requests)
        assert sum(s == 500 for _, _, s in crm.requests) == 3
        bodies = crm.accepted().values()
        assert {b["type"] for b in bodies} == {"call.ended"}
        assert {b["data"]["call_id"] for b in bodies} == {c for c, _ in cdr}
        assert all(b["data"]["caller"] == "1001" and b["data"]["destination"] == "extension:1002" and b["data"]["result"] == "ANSWERED" and b["data"]["agent"] is None
                   and b["data"]["direction"] == "internal" for b in bodies)
        # a retried delivery carries the same id: the first three failures were retried, not duplicated
        ids = [h["webhook-id"] for h, _, _ in crm.requests]
        assert len(set(ids)) == 3 and len(ids) == 6
    finally:
        crm.close()


def test_kill_9_loses_no_delivery(tmp_path):
    crm = Receiver()
    crm.answer = lambda n: 503  # down while the calls are made
    sip_port, api_port = free_port(), free_port(socket.SOCK_STREAM)
    text = plan_text(tmp_path, ROUTES + webhook_plan(crm.url), extensions=EXTS)
    text = text.replace('["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]', f'["udp:127.0.0.1:{sip_port}"]')
    text = text.replace('api: {listen: "127.0.0.1:0"}', f'api: {{listen: "127.0.0.1:{api_port}"}}')
    plan = tmp_path / "plan.yaml"
    plan.write_text(text)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path / "run")}

    def start() -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "centralino", "run", "--config", str(plan)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp_path)
        assert wait_for(lambda: _answers(api_port) and call_api(
            f"127.0.0.1:{api_port}", "GET", "/api/v1/status", data_dir=tmp_path)[0] == 200, 30)
        return proc

    def pending() -> int:
        try:
            return sqlite3.connect(tmp_path / "centralino.db").execute(
                "SELECT COUNT(*) FROM webhook_outbox WHERE state = 'pending'").fetchone()[0]
        except sqlite3.Error:
            return -1

    try:
        proc = start()
        make_calls(("127.0.0.1", sip_port), 2)
        assert wait_for(lambda: pending() == 2 and len(crm.requests) >= 2, 10)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        crm.answer = lambda n: 200
        proc = start()
        try:
            assert wait_for(lambda: len(crm.accepted()) == 2, 20), crm.requests
            assert wait_for(lambda: pending() == 0, 5)
        finally:
            proc.terminate()
            proc.wait(20)
        assert all(valid_signature(h, b) for h, b, _ in crm.requests)
    finally:
        crm.close()


def _answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_gone_endpoint_is_disabled_and_dead_letters_replay(tmp_path):
    crm = Receiver()
    crm.answer = lambda n: 410
    try:
        text = plan_text(tmp_path, ROUTES + webhook_plan(crm.url, ", retry_for: 1.0"), extensions=EXTS)
        with RunningSwitch(text) as sw:
            make_calls(sw.address("udp"), 1)
            assert wait_for(lambda: call_api(sw.api, "GET", "/api/v1/webhooks")[1]["webhooks"]["crm"]["disabled"], 10)
            time.sleep(0.5)
            assert len(crm.requests) == 1  # disabled: no more attempts
            crm.answer = lambda n: 500  # back, but failing: the event dies after retry_for
            assert call_api(sw.api, "POST", "/api/v1/webhooks/crm/enable")[0] == 200
            dead = wait_for(lambda: call_api(sw.api, "GET", "/api/v1/webhooks/dead")[1]["dead"], 15)
            assert dead and dead[0]["last_error"] == "HTTP 500"
            crm.answer = lambda n: 200
            assert call_api(sw.api, "POST", f"/api/v1/webhooks/dead/{dead[0]['id']}/replay")[0] == 200
            assert wait_for(lambda: len(crm.accepted()) == 1, 10)
            assert call_api(sw.api, "GET", "/api/v1/webhooks/dead")[1]["dead"] == []
            assert call_api(sw.api, "POST", "/api/v1/webhooks/dead/999/replay")[0] == 404
    finally:
        crm.close()
