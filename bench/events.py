"""`centralino bench events`: the event stream and /metrics under a SIPp queue load, at defaults.

The switch runs as a user runs it (``centralino run``, default settings) with a queue of
``--agents`` logged-out agents, so SIPp callers from a trusted carrier wait in it and hang up after
``--hold`` seconds. ``--subscribers`` WebSocket clients (logged in as the admin) follow
``/api/v1/events?types=queue.``; each frame's latency is its receipt time minus the event's own
``at`` (stamped when the bus publishes it: the SIP message that caused it was handled just
before). Meanwhile ``/metrics`` is scraped once a second and timed. Prints and writes a JSON and
Markdown report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path

from .live import SwitchDidNotStart, live_switch, save, stamp
from .runner import _free_port
from .sipp import run_sipp, sipp_binary


def _plan(work: Path, sip_port: int, api_port: int, agents: int) -> Path:
    members = ", ".join(f'"{2000 + i}"' for i in range(agents))
    exts = "".join(f'  "{2000 + i}": {{password: "pw{i}"}}\n' for i in range(agents))
    agent_rows = "".join(f'  "{2000 + i}": {{}}\n' for i in range(agents))
    plan = work / "events-plan.yaml"
    plan.write_text(
        "server:\n"
        f'  sip: {{listen: ["udp:127.0.0.1:{sip_port}"], domain: bench.local}}\n'
        f'  api: {{listen: "127.0.0.1:{api_port}"}}\n'
        f'  storage: "sqlite:{work / "bench.db"}"\n'
        "trunks:\n  carrier: {host: 127.0.0.1, port: 9, allow_from: [\"127.0.0.10/32\"], qualify: 0}\n"
        'routes:\n  - {match: {to: "88005553535"}, action: {queue: sales}}\n'
        "extensions:\n" + exts + "agents:\n" + agent_rows
        + f"queues:\n  sales: {{members: [{members}]}}\n"
        + 'users:\n  admin: {role: admin, password: "bench-admin"}\n'
    )
    return plan


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _subscribe(api: str, token: str, latencies: list[float], counts: list[int], index: int,
                     stop: asyncio.Event) -> None:
    from websockets.asyncio.client import connect

    async with connect(f"ws://{api}/api/v1/events?types=queue.", additional_headers={
            "Authorization": f"Bearer {token}"}, max_queue=None) as ws:
        await ws.recv()  # hello
        while not stop.is_set():
            try:
                frame = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            now = time.time()
            event = json.loads(frame)
            latencies.append(now - float(event["at"]))
            counts[index] += 1


async def _scrape(api: str, token: str, times: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def one() -> float:
        req = urllib.request.Request(f"http://{api}/metrics", headers={"Authorization": f"Bearer {token}"})
        t0 = time.perf_counter()
        urllib.request.urlopen(req, timeout=10).read()
        return time.perf_counter() - t0

    while not stop.is_set():
        times.append(await loop.run_in_executor(None, one))
        await asyncio.sleep(1.0)


async def _run(args: argparse.Namespace, api: str, sip: str, token: str) -> dict:
    latencies: list[float] = []
    counts = [0] * args.subscribers
    scrapes: list[float] = []
    stop = asyncio.Event()
    subs = [asyncio.ensure_future(_subscribe(api, token, latencies, counts, i, stop)) for i in range(args.subscribers)]
    scraper = asyncio.ensure_future(_scrape(api, token, scrapes, stop))
    await asyncio.sleep(1.0)
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(None, lambda: run_sipp(
        "uac_call.xml", sip, rate=args.rate, count=args.calls, local_ip="127.0.0.10",
        extra=["-s", "88005553535", "-key", "caller", "84951234567", "-d", str(int(args.hold * 1000)),
               "-mp", str(_free_port(2)), "-l", str(int(args.rate * (args.hold + 2)))]))
    await asyncio.sleep(2.0)
    stop.set()
    await asyncio.gather(*subs, scraper, return_exceptions=True)
    ms = [x * 1000 for x in latencies]
    return {
        "calls": {"offered_rate": args.rate, "count": args.calls, "successful": result.successful,
                  "failed": result.failed},
        "subscribers": args.subscribers,
        "frames": len(latencies), "frames_per_subscriber_min": min(counts), "frames_per_subscriber_max": max(counts),
        "latency_ms": {"p50": round(_pct(ms, 0.5), 2), "p95": round(_pct(ms, 0.95), 2),
                       "p99": round(_pct(ms, 0.99), 2), "max": round(max(ms), 2) if ms else None},
        "metrics_scrape_ms": {"agents": args.agents, "scrapes": len(scrapes),
                              "median": round(statistics.median(scrapes) * 1000, 1) if scrapes else None,
                              "max": round(max(scrapes) * 1000, 1) if scrapes else None},
    }


def main(args: argparse.Namespace) -> int:
    if sipp_binary() is None:
        print("centralino bench events needs SIPp: apt-get install sip-tester", file=sys.stderr)
        return 2
    try:
        with live_switch("centralino-events-", lambda w, s, a: _plan(w, s, a, args.agents)) as sw:
            report = stamp(asyncio.run(_run(args, sw.api, sw.sip, sw.token)))
    except SwitchDidNotStart:
        return 1
    lat, scrape, calls = report["latency_ms"], report["metrics_scrape_ms"], report["calls"]
    md = (f"# Event stream and /metrics under a queue load ({report['settings']})\n\n`{report['command']}`\n\n"
          f"| SIPp calls/s | calls ok / failed | subscribers | frames | publish→frame p50 | p95 | p99 | max | "
          f"/metrics with {scrape['agents']} agents: median | max |\n|---|---|---|---|---|---|---|---|---|---|\n"
          f"| {calls['offered_rate']} | {calls['successful']} / {calls['failed']} | {report['subscribers']} | "
          f"{report['frames']} | {lat['p50']} ms | {lat['p95']} ms | {lat['p99']} ms | {lat['max']} ms | "
          f"{scrape['median']} ms | {scrape['max']} ms |\n")
    save(args.out, "events", report, md)
    return 0 if calls["failed"] == 0 else 1
