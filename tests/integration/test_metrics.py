"""`GET /metrics`: the Prometheus exposition parses with prometheus-client's own parser, its
counters match the calls and registrations made over real sockets, and it needs the API
credential like every route."""

from __future__ import annotations

import http.client
import time

from helpers import Caller, Phone, RunningSwitch, db_rows, plan_text, wait_for
from prometheus_client.parser import text_string_to_metric_families

ROUTES = """\
routes:
  - {match: {to: "^1\\\\d{3}$"}, action: {dial: "${to}", timeout: 10}}
queues:
  sales: {members: ["1003"]}
"""
EXTS = """\
extensions:
  "1001": {password: "pw1001"}
  "1002": {password: "pw1002"}
  "1003": {password: "pw1003"}
"""


def scrape(sw, token: str | None) -> tuple[int, str, str]:
    host, port = sw.switch.api.address
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"} if token else {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read().decode()
    finally:
        conn.close()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_parse_and_count_what_happened(tmp_path):
    text = plan_text(tmp_path, ROUTES, extensions=EXTS).replace(
        "  security:", "  rtp: {ports: \"35000-35999\", workers: 0}\n  security:")
    with RunningSwitch(text) as sw:
        assert scrape(sw, None)[0] == 401  # the credential, like every route
        bob = Phone(sw.address("udp"), "1002", "pw1002").start()
        answered = 0
        for _ in range(3):
            alice = Caller(sw.address("udp"), "1001", "pw1001")
            resp = alice.call("1002")
            assert resp is not None and resp.status == 200
            alice._ack(alice.last_invite, resp)
            time.sleep(0.1)
            assert alice.hang_up(resp, 3).status == 200
            answered += 1
        missing = Caller(sw.address("udp"), "1001", "pw1001").call("1009", until=400)
        assert missing is not None and missing.status >= 400
        wait_for(lambda: len(db_rows(sw, "SELECT * FROM cdr WHERE leg = 'call'")) == 4, 5)

        status, content_type, body = scrape(sw, sw.switch.api.token)
        assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
        got = samples(body)
        rows = db_rows(sw, "SELECT disposition FROM cdr WHERE leg = 'call'")
        for disposition in {r["disposition"] for r in rows}:
            n = sum(1 for r in rows if r["disposition"] == disposition)
            key = ("centralino_calls_ended_total", (("disposition", disposition), ("source", "extension")))
            assert got[key] == n, (disposition, got)
        assert got[("centralino_calls_ended_total", (("disposition", "ANSWERED"), ("source", "extension")))] == answered
        assert got[("centralino_calls_active", ())] == 0
        assert got[("centralino_registrations", ())] == 1
        # every INVITE the callers sent (each once more with credentials after the 407) was counted
        assert got[("centralino_sip_requests_received_total", (("method", "INVITE"),))] >= 2 * 4
        assert got[("centralino_sip_requests_received_total", (("method", "BYE"),))] == answered
        assert got[("centralino_sip_responses_received_total", (("code", "200"),))] >= answered
        assert got[("centralino_queue_waiting", (("queue", "sales"),))] == 0
        assert ("centralino_media_packets_received_total", (("worker", "0"),)) in got
        assert got[("centralino_security_dropped_total", (("reason", "banned"),))] == 0
        bob.stop()
