"""The Bitrix24 and amoCRM adapters against local stand-ins of those CRMs' REST endpoints (they
answer as the real ones do: register → a CALL_ID; /api/v4/calls → the created calls), with SIPp
callers from a trunk into a recorded queue and an agent that is a SIPp phone. An answered call is
registered when the agent answers, finished when it ends (a failed finish is retried without a
second register) and its recording attached as the file's bytes; an abandoned call is registered
and finished as missed. amoCRM gets one entry per call whose recording link plays without a token
(and not when tampered with)."""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from centralino.api.server import call_api
from centralino.bench.sipp import run_sipp
from helpers import RunningSwitch, db_rows, free_port, need_tool, plan_text, sipp_phone, wait_for
from sipp_ivr import ivr_caller

EXTS = 'extensions:\n  "1002": {password: "pw1002"}\n'


class Crm:
    """A CRM's REST endpoint on loopback: records each request; ``reply(path, body, n)`` answers."""

    def __init__(self, reply) -> None:
        self.requests: list[tuple[str, dict[str, str], dict | list, int]] = []
        crm = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")
                status, answer = reply(self.path, body, self.headers, len(crm.requests))
                crm.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body, status))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def calls_to(self, method: str) -> list[tuple[dict, int]]:
        return [(b, s) for p, _, b, s in self.requests if p.endswith(f"/{method}.json")]

    def close(self) -> None:
        self.server.shutdown()


def bitrix_reply():
    registered: list[str] = []
    failed_finish = []

    def reply(path, body, headers, n):
        method = path.rsplit("/", 1)[-1].removesuffix(".json")
        if not path.startswith("/rest/1/k3y/"):
            return 401, {"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"}
        if method == "telephony.externalcall.register":
            registered.append(f"externalCall.{len(registered) + 1:04d}")
            return 200, {"result": {"CALL_ID": registered[-1], "CRM_CREATED_LEAD": None}, "time": {}}
        if body.get("CALL_ID") not in registered:
            return 400, {"error": "ERROR_NOT_FOUND", "error_description": "Call is not found or finished"}
        if method == "telephony.externalcall.finish" and not failed_finish:
            failed_finish.append(1)  # the first finish meets a portal that is down for a moment
            return 503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
        return 200, {"result": {"CALL_ID": body["CALL_ID"]}}
    return reply


def amo_reply(path, body, headers, n):
    if headers.get("Authorization") != "Bearer amo-long-lived":
        return 401, {"title": "Unauthorized", "status": 401}
    if path != "/api/v4/calls":
        return 404, {"title": "Not found"}
    return 200, {"_embedded": {"calls": [{"id": 100 + n, "uniq": c["uniq"]} for c in body]}}


@pytest.fixture
def crms():
    bitrix, amo = Crm(bitrix_reply()), Crm(amo_reply)
    yield bitrix, amo
    bitrix.close()
    amo.close()


def caller(sw, tmp_path: Path, name: str, number: str, hold_ms: int):
    scenario = ivr_caller(tmp_path / f"{name}.xml", [], hold_ms=hold_ms)
    return run_sipp(scenario, "{}:{}".format(*sw.address("udp")), rate=1, count=1, local_ip="127.0.0.10",
                    extra=["-s", "88001234567", "-key", "caller", number, "-mp", str(free_port())], timeout=60)


def test_bitrix24_and_amocrm_log_the_calls_with_the_recording(tmp_path, crms):
    need_tool("sipp")
    bitrix, amo = crms
    plan = f"""\
trunks:
  carrier: {{host: 127.0.0.10, port: 5999, allow_from: ["127.0.0.10/32"], dids: ["88001234567"], qualify: 0}}
routes:
  - {{match: {{to: "88001234567"}}, action: {{queue: sales}}}}
agents:
  "1002": {{logged_in: true}}
queues:
  sales: {{members: ["1002"], wrapup: 0, record: true}}
webhooks:
  b24: {{url: "{bitrix.url}/rest/1/k3y/", format: bitrix24, default_user: 1, retry_base: 0.2}}
  amo: {{url: "{amo.url}", format: amocrm, token: amo-long-lived, users: {{"1002": 9001}}, default_user: 9000,
         retry_base: 0.2}}
"""
    text = plan_text(tmp_path, plan, extensions=EXTS)
    text = text.replace("  security:", '  rtp: {ports: "32000-32999", workers: 1}\n  security:')
    with RunningSwitch(text) as sw:
        agent = sipp_phone(sw, "1002", tmp_path, 1)
        answered = caller(sw, tmp_path, "answered", "+74951234567", 2000)
        assert answered.successful == 1, answered.errors
        assert agent.wait(10) == 0
        assert call_api(sw.api, "POST", "/api/v1/agents/1002/state", json.dumps({"action": "pause"}).encode())[0] == 200
        abandoned = caller(sw, tmp_path, "abandoned", "+74957654321", 1500)
        assert abandoned.successful == 1, abandoned.errors

        assert wait_for(lambda: len(bitrix.calls_to("telephony.externalCall.attachRecord")) == 1
                        and sum(s == 200 for _, s in bitrix.calls_to("telephony.externalcall.finish")) == 2, 30), \
            bitrix.requests
        assert wait_for(lambda: len(amo.requests) == 2, 20), amo.requests
        cdr = db_rows(sw, "SELECT call_id, caller FROM cdr WHERE leg = 'call' ORDER BY id")
        ids = {r["caller"]: r["call_id"] for r in cdr}
        status, hooks = call_api(sw.api, "GET", "/api/v1/webhooks")
        assert status == 200 and hooks["webhooks"]["b24"]["delivered"] == 3 and hooks["webhooks"]["amo"]["delivered"] == 2
        rec = db_rows(sw, "SELECT path FROM recordings WHERE call_id = ?", (ids["+74951234567"],))
        assert len(rec) == 1
        recording = Path(rec[0]["path"]).read_bytes()

        # Bitrix24: one register per call (the answered call's at the agent's answer, with the
        # agent's inner number; the missed one's at its end, to the default user)
        registers = [b for b, s in bitrix.calls_to("telephony.externalcall.register")]
        assert len(registers) == 2
        assert registers[0]["USER_PHONE_INNER"] == "1002" and registers[0]["PHONE_NUMBER"] == "+74951234567"
        assert registers[0]["TYPE"] == 2 and registers[0]["LINE_NUMBER"] == "88001234567" and registers[0]["SHOW"] == 1
        assert registers[1]["USER_ID"] == 1 and registers[1]["PHONE_NUMBER"] == "+74957654321"
        finishes = bitrix.calls_to("telephony.externalcall.finish")
        assert [s for _, s in finishes] == [503, 200, 200]
        talked, missed = finishes[1][0], finishes[2][0]
        assert talked["CALL_ID"] == "externalCall.0001" and talked["STATUS_CODE"] == "200"
        assert talked["USER_PHONE_INNER"] == "1002" and 1 <= talked["DURATION"] <= 3
        assert missed["CALL_ID"] == "externalCall.0002" and missed["STATUS_CODE"] == "304" and missed["DURATION"] == 0
        ((attach, _),) = bitrix.calls_to("telephony.externalCall.attachRecord")
        assert attach["CALL_ID"] == "externalCall.0001" and attach["FILENAME"] == f"{ids['+74951234567']}.wav"
        assert base64.b64decode(attach["FILE_CONTENT"]) == recording and recording[:4] == b"RIFF"

        # amoCRM: one entry per call, the recording's link plays without a token
        entries = {b[0]["uniq"]: b[0] for _, _, b, s in amo.requests}
        assert set(entries) == set(ids.values())
        good, lost = entries[ids["+74951234567"]], entries[ids["+74957654321"]]
        assert good["direction"] == "inbound" and good["call_status"] == 4 and good["responsible_user_id"] == 9001
        assert good["phone"] == "+74951234567" and 1 <= good["duration"] <= 3 and good["source"] == "Centralino"
        assert lost["call_status"] == 6 and lost["duration"] == 0 and lost["responsible_user_id"] == 9000
        assert "link" not in lost
        with urllib.request.urlopen(good["link"], timeout=5) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "audio/wav"
            assert resp.read() == recording
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(good["link"].replace("sig=", "sig=0"), timeout=5)
        assert refused.value.code == 403
