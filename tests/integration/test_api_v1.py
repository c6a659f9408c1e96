"""/api/v1 as its users meet it: every route answers 401 without a token and 403 to a role that
may not call it (the role matrix, walked from the app's own route table); a browser session needs
its CSRF token and its own origin; logins expire and failed ones are limited and logged; integration
tokens from `centralino token create` work until revoked; the WebSocket stream delivers the events
of SIPp calls through a queue in order, resumes after a disconnect with no gap, and cuts off a
subscriber that stops reading without holding up the others."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import re
import subprocess
import sys
import textwrap
import time

import pytest
from centralino.api.http import ROUTE_ROLES
from centralino.bench.sipp import run_sipp
from centralino.config.users import Role
from helpers import RunningSwitch, db_rows, free_port, need_tool, plan_text, wait_for

websockets = pytest.importorskip("websockets.sync.client")

EXTS = """\
extensions:
  "1001": {password: "pw1001"}
  "1002": {password: "pw1002"}
  "1003": {password: "pw1003"}
  "1004": {password: "pw1004"}
"""
PLAN = """\
routes:
  - {match: {to: "^1\\\\d{3}$"}, action: {dial: "${to}", timeout: 10}}
  - {match: {to: "800"}, action: {queue: sales}}
schedules:
  office: {timezone: UTC, open: {mon-sun: "00:00-23:59"}}
agents:
  "1002": {name: Bob}
  "1003": {name: Carol}
  "1004": {name: Dave}
queues:
  sales: {members: ["1002", "1003"], supervisors: ["1001"]}
  support: {members: ["1004"]}
users:
  root: {role: admin, password: "root-pw"}
  alice: {role: supervisor, extension: "1001", password: "alice-pw"}
  bob: {role: agent, extension: "1002", password: "bob-pw"}
"""


def plan(tmp_path, api_extra: str = "") -> str:
    text = plan_text(tmp_path, PLAN, extensions=EXTS)
    return text.replace('api: {listen: "127.0.0.1:0"}', f'api: {{listen: "127.0.0.1:0"{api_extra}}}')


def request(api: str, method: str, path: str, *, token: str | None = None, body: object = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict, http.client.HTTPResponse]:
    host, port = api.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    try:
        conn.request(method, path, body=data, headers=sent)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = {"text": raw.decode(errors="replace")}
        return resp.status, parsed, resp
    finally:
        conn.close()


def login(api: str, user: str, password: str) -> dict:
    status, reply, _ = request(api, "POST", "/api/v1/auth/login", body={"user": user, "password": password})
    assert status == 200, reply
    return reply


SAMPLE = {"ext": "1002", "box": "1002", "name": "office", "call_id": "no-such-call", "ident": "1",
          "supervisor": "1001", "room": "r1"}
BODIES = {"/api/v1/agents/{ext}/state": {"action": "pause", "reason": "x"},
          "/api/v1/schedules/{name}": {"mode": "auto"}}


OWN = {Role.SUPERVISOR: {"box": "1001"}, Role.AGENT: {}, Role.ADMIN: {}}  # what each may act on


def concrete(path: str, role: Role | None = None) -> str:
    sample = {**SAMPLE, **OWN.get(role, {})} if role else SAMPLE
    return re.sub(r"\{(\w+)\}", lambda m: sample[m.group(1)], path)


def test_role_matrix_every_route(tmp_path):
    path = tmp_path / "plan.yaml"  # POST /reload reads it again
    path.write_text(plan(tmp_path))
    with RunningSwitch(path.read_text(), str(path)) as sw:
        tokens = {Role.ADMIN: login(sw.api, "root", "root-pw")["token"],
                  Role.SUPERVISOR: login(sw.api, "alice", "alice-pw")["token"],
                  Role.AGENT: login(sw.api, "bob", "bob-pw")["token"]}
        app_routes = {(m, r.path) for r in sw.switch.api.app.routes for m in getattr(r, "methods", ()) or ()
                      if m != "HEAD"}
        ours = {k for k in app_routes if k[1].startswith("/api/v1") or k[1] in ("/metrics", "/login", "/wallboard",
                                                                                 "/agent", "/reports", "/")}
        ours -= {("GET", "/api/v1/openapi.json"), ("GET", "/api/v1/docs"), ("GET", "/api/v1/docs/oauth2-redirect")}
        missing = ours - set(ROUTE_ROLES)
        assert not missing, f"routes without a role entry: {missing}"
        checked = 0
        # logout last: it ends the session it is called with
        for (method, path), roles in sorted(ROUTE_ROLES.items(), key=lambda kv: kv[0][1] == "/api/v1/auth/logout"):
            if method == "WS" or not roles:
                continue
            body = BODIES.get(path, {})
            url = concrete(path)
            status, reply, _ = request(sw.api, method, url, body=body)
            assert status == 401, (method, path, status, reply)
            assert set(reply) >= {"error", "status"}
            for role, token in tokens.items():
                status, reply, _ = request(sw.api, method, concrete(path, role), token=token, body=body)
                if role in roles:
                    assert status not in (401, 403), (role, method, path, status, reply)
                else:
                    assert status == 403 and "may not do this" in reply["error"], (role, method, path, status, reply)
            checked += 1
        assert checked >= 30
        # the scope inside a role: an agent acts on itself only, a supervisor on its queues only
        for token in tokens.values():  # logout ended each session
            assert request(sw.api, "GET", "/api/v1/auth/me", token=token)[0] == 401
        bob, alice = login(sw.api, "bob", "bob-pw")["token"], login(sw.api, "alice", "alice-pw")["token"]
        assert request(sw.api, "POST", "/api/v1/agents/1003/state", token=bob, body={"action": "login"})[0] == 403
        assert request(sw.api, "POST", "/api/v1/agents/1002/state", token=bob, body={"action": "login"})[0] == 200
        assert request(sw.api, "POST", "/api/v1/agents/1003/state", token=alice, body={"action": "login"})[0] == 200
        assert request(sw.api, "POST", "/api/v1/agents/1004/state", token=alice, body={"action": "login"})[0] == 403
        status, queues, _ = request(sw.api, "GET", "/api/v1/queues", token=alice)
        assert status == 200 and set(queues["queues"]) == {"sales"} and set(queues["agents"]) == {"1002", "1003"}
        status, queues, _ = request(sw.api, "GET", "/api/v1/queues", token=bob)
        assert set(queues["agents"]) == {"1002"}
        assert request(sw.api, "GET", "/api/v1/voicemail/1003", token=bob)[0] == 403
        # errors have one shape, validation errors name the field
        status, reply, _ = request(sw.api, "POST", "/api/v1/agents/1002/state", token=bob, body={"action": "dance"})
        assert status == 422 and reply["status"] == 422 and "action" in reply["error"]
        status, reply, _ = request(sw.api, "GET", "/api/v1/openapi.json")
        assert status == 200 and "/api/v1/queues" in reply["paths"]


def test_browser_session_needs_csrf_and_same_origin(tmp_path):
    with RunningSwitch(plan(tmp_path)) as sw:
        status, reply, resp = request(sw.api, "POST", "/api/v1/auth/login", body={"user": "alice", "password": "alice-pw"})
        cookie = resp.getheader("Set-Cookie")
        assert status == 200 and "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        session = {"Cookie": cookie.split(";", 1)[0]}
        assert request(sw.api, "GET", "/api/v1/auth/me", headers=session)[1]["user"] == "alice"
        change = ("PUT", "/api/v1/schedules/office")
        assert request(sw.api, *change, body={"mode": "closed"}, headers=session)[0] == 403  # no CSRF token
        assert request(sw.api, *change, body={"mode": "closed"}, headers={**session, "X-CSRF-Token": "0" * 32})[0] == 403
        good = {**session, "X-CSRF-Token": reply["csrf"]}
        assert request(sw.api, *change, body={"mode": "closed"}, headers=good)[0] == 200
        # another site's page, even with the cookie and the token (it cannot read either, but still)
        assert request(sw.api, *change, body={"mode": "auto"}, headers={**good, "Origin": "http://evil.example"})[0] == 403
        assert request(sw.api, *change, body={"mode": "auto"}, headers={**good, "Sec-Fetch-Site": "cross-site"})[0] == 403
        assert request(sw.api, *change, body={"mode": "auto"}, headers={**good, "Origin": f"http://{sw.api}"})[0] == 200
        # logging out ends the session
        assert request(sw.api, "POST", "/api/v1/auth/logout", headers=good)[0] == 200
        assert request(sw.api, "GET", "/api/v1/auth/me", headers=session)[0] == 401
        # the request size limit
        status, reply, _ = request(sw.api, "POST", "/api/v1/auth/login", body={"user": "x" * (2 << 20), "password": ""})
        assert status == 413 and reply["status"] == 413


def test_logins_expire_and_failures_are_limited_and_logged(tmp_path):
    text = plan(tmp_path, ", session_hours: 0.0005, login_failures: 3, login_window: 60")
    with RunningSwitch(text) as sw:
        token = login(sw.api, "bob", "bob-pw")["token"]
        assert request(sw.api, "GET", "/api/v1/auth/me", token=token)[0] == 200
        time.sleep(2.2)  # 0.0005 h = 1.8 s
        assert request(sw.api, "GET", "/api/v1/auth/me", token=token)[0] == 401
        for _ in range(3):
            assert request(sw.api, "POST", "/api/v1/auth/login", body={"user": "bob", "password": "guess"})[0] == 401
        status, reply, resp = request(sw.api, "POST", "/api/v1/auth/login", body={"user": "bob", "password": "bob-pw"})
        assert status == 429 and int(resp.getheader("Retry-After")) >= 1, reply
        def kinds() -> list[str]:
            return [r["kind"] for r in db_rows(sw, "SELECT kind FROM security_events WHERE kind LIKE 'api-login%'")]
        assert wait_for(lambda: "api-login-limited" in kinds(), 5), kinds()
        assert kinds().count("api-login-failure") == 3
        # only the hash of a token is stored
        stored = db_rows(sw, "SELECT hash FROM api_tokens")
        assert stored and all(token not in r["hash"] for r in stored)


def test_integration_token_from_the_cli(tmp_path):
    with RunningSwitch(plan(tmp_path)) as sw:
        cli = [sys.executable, "-m", "centralino", "token"]
        r = subprocess.run([*cli, "create", "--name", "crm", "--api", sw.api], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        token = r.stdout.strip()
        assert request(sw.api, "GET", "/api/v1/status", token=token)[0] == 200
        r = subprocess.run([*cli, "create", "--name", "bobs-script", "--user", "bob", "--api", sw.api],
                           capture_output=True, text=True, timeout=30)
        bob = r.stdout.strip()
        assert request(sw.api, "GET", "/api/v1/status", token=bob)[0] == 403  # it is bob: an agent
        r = subprocess.run([*cli, "list", "--api", sw.api], capture_output=True, text=True, timeout=30)
        assert "crm" in r.stdout and "bobs-script" in r.stdout and token not in r.stdout
        r = subprocess.run([*cli, "revoke", "--name", "crm", "--api", sw.api], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert request(sw.api, "GET", "/api/v1/status", token=token)[0] == 401
        r = subprocess.run([*cli, "create", "--api", sw.api], capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and "Traceback" not in r.stderr


def ws_connect(api: str, token: str, query: str = ""):
    return websockets.connect(f"ws://{api}/api/v1/events{query}", additional_headers={
        "Authorization": f"Bearer {token}"}, open_timeout=5, compression=None)


def test_event_stream_in_order_resumes_without_gap_and_drops_a_stalled_reader(tmp_path):
    need_tool("sipp")
    trunk = textwrap.dedent(f"""\
        trunks:
          carrier: {{host: 127.0.0.1, port: {free_port()}, allow_from: ["127.0.0.10/32"], dids: ["88005553535"],
                    qualify: 0}}
        """)
    text = plan(tmp_path).replace('  - {match: {to: "800"}, action: {queue: sales}}',
                                  '  - {match: {to: "88005553535"}, action: {queue: sales}}') + trunk
    with RunningSwitch(text) as sw:
        admin = login(sw.api, "root", "root-pw")["token"]
        alice = login(sw.api, "alice", "alice-pw")["token"]
        stack = contextlib.ExitStack()
        stalled_sock = stack.enter_context(ws_connect(sw.api, admin))  # never reads after the hello
        stalled_sock.recv(timeout=5)
        received: list[dict] = []
        with ws_connect(sw.api, alice, "?types=queue.") as ws:
            hello = json.loads(ws.recv(timeout=5))
            assert hello["type"] == "hello"
            target = "{}:{}".format(*sw.address("udp"))
            res = run_sipp("uac_call.xml", target, rate=3, count=3, local_ip="127.0.0.10",
                           extra=["-s", "88005553535", "-key", "caller", "84951234567", "-d", "1000",
                                  "-mp", str(free_port())])
            assert res.successful == 3, res.errors
            deadline = time.time() + 10
            while time.time() < deadline and sum(e["type"] == "queue.abandoned" for e in received) < 3:
                try:
                    received.append(json.loads(ws.recv(timeout=1)))
                except TimeoutError:
                    pass
        seqs = [e["seq"] for e in received]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert [e["type"] for e in received].count("queue.entered") == 3, [e["type"] for e in received]
        assert all(e["row"]["queue"] == "sales" for e in received)
        # resume from the middle: exactly the events after that number, nothing missed or doubled
        middle = seqs[len(seqs) // 2]
        with ws_connect(sw.api, alice, f"?types=queue.&since={middle}") as ws:
            assert json.loads(ws.recv(timeout=5))["type"] == "hello"
            replay = [json.loads(ws.recv(timeout=5)) for _ in range(len([s for s in seqs if s > middle]))]
        assert [e["seq"] for e in replay] == [s for s in seqs if s > middle]
        # a stalled reader: flood the bus past its queue; it is cut off, a live reader still gets all
        with ws_connect(sw.api, admin, "?types=security") as live:
            live.recv(timeout=5)
            from centralino.events import SecurityEvent

            async def flood() -> None:  # 12 MB in bursts of 200: more than the socket buffers hold
                for burst in range(15):
                    for i in range(200):
                        sw.switch.bus.publish(SecurityEvent(source="198.51.100.1", kind="test",
                                                            detail=f"{burst}.{i} " + "x" * 4000))
                    await asyncio.sleep(0.05)

            asyncio.run_coroutine_threadsafe(flood(), sw.loop)
            got = 0
            deadline = time.time() + 20
            while got < 3000 and time.time() < deadline:
                try:
                    json.loads(live.recv(timeout=2))
                    got += 1
                except TimeoutError:
                    break
            assert got == 3000
        assert wait_for(lambda: sw.switch.event_tail.cut_off >= 1, 10), "the stalled reader was not cut off"
        stack.close()


def test_recordings_list_download_and_signed_link(tmp_path):
    from helpers import Caller

    text = plan(tmp_path).replace(
        '  - {match: {to: "800"}, action: {queue: sales}}',
        '  - {match: {to: "600"}, action: {play: "tone:1000/800"}, record: true}')
    with RunningSwitch(text) as sw:
        alice = Caller(sw.address("udp"), "1001", "pw1001")
        resp = alice.call("600")
        assert resp is not None and resp.status == 200
        alice._ack(alice.last_invite, resp)
        admin = login(sw.api, "root", "root-pw")["token"]
        listed = wait_for(lambda: request(sw.api, "GET", "/api/v1/recordings", token=admin)[1]["recordings"], 10)
        assert listed and "path" not in listed[0] and listed[0]["caller"] == "1001"
        rec = listed[0]
        time.sleep(1.5)  # the call ends after its tone; the file is complete
        host, port = sw.api.rsplit(":", 1)

        def fetch(path: str, token: str | None = None) -> tuple[int, bytes]:
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
            r = conn.getresponse()
            return r.status, r.read()

        status, audio = fetch(rec["audio"], admin)
        assert status == 200 and audio[:4] == b"RIFF" and len(audio) > 8000
        assert fetch(rec["audio"])[0] == 401
        status, link, _ = request(sw.api, "POST", f"/api/v1/recordings/{rec['id']}/link", token=admin)
        assert status == 200
        # an absolute URL (server.api.public_url, else the API's address): a CRM opens it as it is
        assert link["url"].startswith(f"http://{sw.api}/api/v1/recordings/{rec['id']}/signed?expires=")
        path = link["url"].removeprefix(f"http://{sw.api}")
        status, signed = fetch(path)  # no token: the signature is the credential
        assert status == 200 and signed == audio
        assert fetch(path.replace("sig=", "sig=0"))[0] == 403
        bob = login(sw.api, "bob", "bob-pw")["token"]  # an agent sees its own recordings only
        assert request(sw.api, "GET", "/api/v1/recordings", token=bob)[1]["recordings"] == []
        assert fetch(rec["audio"], bob)[0] == 404


def test_click_to_call_rings_the_agent_then_the_number(tmp_path):
    from helpers import Phone

    with RunningSwitch(plan(tmp_path)) as sw:
        bob = Phone(sw.address("udp"), "1002", "pw1002").start()
        carol = Phone(sw.address("udp"), "1003", "pw1003").start()
        try:
            token = login(sw.api, "bob", "bob-pw")["token"]
            assert request(sw.api, "POST", "/api/v1/calls", token=token, body={"number": "1003", "agent": "1004"})[0] == 403
            status, reply, _ = request(sw.api, "POST", "/api/v1/calls", token=token, body={"number": "5550000"})
            assert status == 422 and "no route" in reply["error"]  # the plan has no trunk route
            status, reply, _ = request(sw.api, "POST", "/api/v1/calls", token=token, body={"number": "1003"})
            assert status == 202 and reply["agent"] == "1002", reply
            assert wait_for(lambda: bob.invite is not None, 5), "the agent's phone did not ring first"
            assert "sip:1003@" in bob.invite.header("From")  # it shows the number about to be called
            assert wait_for(lambda: carol.invite is not None, 10), "the number was not dialled"
            assert "sip:1002@" in carol.invite.header("From")  # the callee sees the agent
            live = wait_for(lambda: [c for c in request(sw.api, "GET", "/api/v1/calls", token=token)[1]["calls"]
                                     if c["id"] == reply["call"] and c["state"] == "answered"], 5)
            assert live and set(live[0]["extensions"]) >= {"1002"}
            assert request(sw.api, "POST", f"/api/v1/calls/{reply['call']}/hangup", token=token)[0] == 200
            assert wait_for(lambda: not request(sw.api, "GET", "/api/v1/calls", token=token)[1]["calls"], 5)
        finally:
            bob.stop()
            carol.stop()
