"""`centralino bench webhooks`: CRM webhook deliveries under a SIPp queue load, at defaults.

The switch runs as a user runs it (``centralino run``) with one standard webhook for
``call.ended`` and ``queue.`` events pointing at a receiver in this process (an asyncio HTTP/1.1
server that checks every Standard Webhooks signature). Two phases, each ``--event-calls`` SIPp
calls at ``--rate`` into a queue nobody answers (each caller waits ``--hold`` s and hangs up:
three deliveries per call — queue.entered, queue.abandoned, call.ended):

1. **live** — the receiver answers 200: delivery latency is the receipt time minus the event's own
   ``timestamp`` (when the bus published it; the CDR/queue-log row and its outbox row were written
   in between).
2. **backlog** — the receiver answers 410 Gone, so the endpoint is disabled and every delivery
   waits in the outbox; after the calls it answers 200 and the admin enables the endpoint again
   (``POST /api/v1/webhooks/bench/enable``): the drain rate is the sender's throughput.

Prints and writes a JSON and Markdown report.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import sys
import threading
import time
import urllib.request
from pathlib import Path

from .events import _pct
from .live import SwitchDidNotStart, live_switch, save, stamp
from .runner import _free_port
from .sipp import run_sipp, sipp_binary

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()


class Receiver:
    """A CRM endpoint on loopback: keep-alive HTTP/1.1, a status to answer, every request noted."""

    def __init__(self) -> None:
        self.status = 200
        self.received: dict[str, float] = {}  # webhook-id → latency (receipt - event timestamp), accepted only
        self.requests = 0
        self.bad_signatures = 0
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        threading.Thread(target=self._main, args=(ready,), daemon=True).start()
        ready.wait(10)

    def _main(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {}
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name:
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                now = time.time()
                self.requests += 1
                status = self.status
                if status == 200:
                    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
                    expected = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
                    if headers.get("webhook-signature", "").partition(",")[2] != expected:
                        self.bad_signatures += 1
                    at = json.loads(body)["timestamp"]
                    self.received.setdefault(headers["webhook-id"], now - _epoch(at))
                reason = {200: "OK", 410: "Gone"}.get(status, "Error")
                writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def _plan(work: Path, sip_port: int, api_port: int, hook_port: int) -> Path:
    plan = work / "webhooks-plan.yaml"
    plan.write_text(
        "server:\n"
        f'  sip: {{listen: ["udp:127.0.0.1:{sip_port}"], domain: bench.local}}\n'
        f'  api: {{listen: "127.0.0.1:{api_port}"}}\n'
        f'  storage: "sqlite:{work / "bench.db"}"\n'
        "trunks:\n  carrier: {host: 127.0.0.1, port: 9, allow_from: [\"127.0.0.10/32\"], qualify: 0}\n"
        'routes:\n  - {match: {to: "88005553535"}, action: {queue: sales}}\n'
        'extensions:\n  "2000": {password: "pw2000"}\nagents:\n  "2000": {}\n'
        'queues:\n  sales: {members: ["2000"]}\n'
        'users:\n  admin: {role: admin, password: "bench-admin"}\n'
        f'webhooks:\n  bench: {{url: "http://127.0.0.1:{hook_port}/hook", events: ["call.ended", "queue."], '
        f'secret: "{SECRET}"}}\n'
    )
    return plan


def _calls(args: argparse.Namespace, sip: str) -> tuple[int, int]:
    result = run_sipp("uac_call.xml", sip, rate=args.rate, count=args.calls, local_ip="127.0.0.10",
                      extra=["-s", "88005553535", "-key", "caller", "84951234567", "-d", str(int(args.hold * 1000)),
                             "-mp", str(_free_port(2)), "-l", str(int(args.rate * (args.hold + 2)))])
    return result.successful, result.failed


def _wait(check, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.05)
    return check()


def _run(args: argparse.Namespace, api: str, sip: str, token: str, hook: Receiver) -> dict:
    expected = 3 * args.calls
    # 1. live
    ok1, failed1 = _calls(args, sip)
    _wait(lambda: len(hook.received) >= expected, 60)
    live = [x * 1000 for x in hook.received.values()]
    live_count = len(hook.received)
    # 2. backlog: 410 disables the endpoint; every delivery waits in the outbox
    hook.status = 410
    hook.received.clear()
    ok2, failed2 = _calls(args, sip)
    time.sleep(2.0)  # the last calls' rows are written
    hook.status = 200
    req = urllib.request.Request(f"http://{api}/api/v1/webhooks/bench/enable", method="POST", data=b"{}",
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    t0 = time.monotonic()
    urllib.request.urlopen(req, timeout=10).read()
    drained = _wait(lambda: len(hook.received) >= expected, 300)
    elapsed = time.monotonic() - t0
    return {
        "calls": {"offered_rate": args.rate, "count_per_phase": args.calls, "successful": ok1 + ok2,
                  "failed": failed1 + failed2},
        "live": {"deliveries": live_count, "expected": expected,
                 "latency_ms": {"p50": round(_pct(live, 0.5), 1), "p95": round(_pct(live, 0.95), 1),
                                "p99": round(_pct(live, 0.99), 1), "max": round(max(live), 1) if live else None}},
        "backlog": {"deliveries": len(hook.received), "drained": drained, "seconds": round(elapsed, 2),
                    "per_second": round(len(hook.received) / elapsed, 1) if elapsed else None},
        "bad_signatures": hook.bad_signatures, "requests": hook.requests,
    }


def main(args: argparse.Namespace) -> int:
    if sipp_binary() is None:
        print("centralino bench webhooks needs SIPp: apt-get install sip-tester", file=sys.stderr)
        return 2
    hook = Receiver()
    try:
        with live_switch("centralino-webhooks-", lambda w, s, a: _plan(w, s, a, hook.port)) as sw:
            report = stamp(_run(args, sw.api, sw.sip, sw.token, hook))
    except SwitchDidNotStart:
        return 1
    live, backlog, calls = report["live"], report["backlog"], report["calls"]
    lat = live["latency_ms"]
    md = (f"# Webhook deliveries under a queue load ({report['settings']})\n\n`{report['command']}`\n\n"
          f"| SIPp calls/s | calls ok / failed | live deliveries | event→receiver p50 | p95 | p99 | max | "
          f"backlog drained | drain rate | bad signatures |\n|---|---|---|---|---|---|---|---|---|---|\n"
          f"| {calls['offered_rate']} | {calls['successful']} / {calls['failed']} | "
          f"{live['deliveries']} / {live['expected']} | {lat['p50']} ms | {lat['p95']} ms | {lat['p99']} ms | "
          f"{lat['max']} ms | {backlog['deliveries']} in {backlog['seconds']} s | {backlog['per_second']}/s | "
          f"{report['bad_signatures']} |\n")
    save(args.out, "webhooks", report, md)
    good = calls["failed"] == 0 and live["deliveries"] >= live["expected"] and backlog["drained"]
    return 0 if good and report["bad_signatures"] == 0 else 1
