"""ACD simulation: Poisson arrivals and exponential handling times run through the real queue
engine (acd.distributor.Distributor) with simulated time, compared with Erlang C.

    centralino bench acd --agents 80 --calls-per-hour 1500 --aht 180 --target-sl 80/20

Callers wait as long as needed and agents answer at once with no wrap-up, which is what
Erlang C assumes; any gap between the two columns is then the engine's doing (or noise: the
run is long enough for the sampling error to be well under a point).
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import time
from dataclasses import asdict, dataclass

from ..acd.distributor import Distributor
from ..acd.erlang import agents_needed, parse_target, staffing
from ..acd.models import Agent, Caller
from ..config.schema import Queue


@dataclass(frozen=True)
class SimResult:
    agents: int
    calls_per_hour: float
    aht: float
    target_seconds: float
    calls: int
    service_level: float  # simulated, fraction answered within target_seconds
    wait_probability: float
    asa: float
    occupancy: float
    erlang_service_level: float
    erlang_wait_probability: float
    erlang_asa: float
    decision_us: float  # engine time per routing decision (assign() that connected a caller)


def simulate(agents: int, calls_per_hour: float, aht: float, target_seconds: float, calls: int,
             seed: int = 1, strategy: str = "longest-idle", warmup: int = 2000) -> SimResult:
    rng = random.Random(seed)
    names = [f"a{i:03d}" for i in range(agents)]
    queue = Queue(strategy=strategy, members=names, wrapup=0, max_no_answer=0, retry=0)
    dist = Distributor({"sim": queue}, [Agent(n, queues={"sim"}) for n in names], rng=random.Random(seed + 1))
    for n in names:
        dist.login(n, 0.0)
    events: list[tuple[float, int, str, str]] = []  # (time, seq, kind, agent)
    seq = 0
    t = 0.0
    arrived = 0
    waits: list[float] = []
    busy_seconds = 0.0
    routing_seconds = 0.0
    routed = 0
    next_arrival = rng.expovariate(calls_per_hour / 3600.0)
    measure_start = None

    def route(now: float) -> None:
        nonlocal seq, routing_seconds, routed, busy_seconds
        t0 = time.perf_counter()
        offers = dist.assign(now)
        for offer in offers:
            ext = offer.agents[0]
            dist.answered(offer.caller, ext, now)
        routing_seconds += time.perf_counter() - t0
        for offer in offers:
            routed += 1
            ext = offer.agents[0]
            caller = offer.caller
            if int(caller.call_id) >= warmup:
                waits.append(now - caller.entered)
            service = rng.expovariate(1.0 / aht)
            if measure_start is not None:
                busy_seconds += service
            seq += 1
            heapq.heappush(events, (now + service, seq, "end", ext))

    while arrived < calls + warmup or events:
        if arrived < calls + warmup and (not events or next_arrival <= events[0][0]):
            t = next_arrival
            if arrived == warmup:
                measure_start = t
            dist.enqueue(Caller(str(arrived), "sim", t), t)
            arrived += 1
            next_arrival = t + rng.expovariate(calls_per_hour / 3600.0)
            route(t)
        else:
            t, _, _kind, ext = heapq.heappop(events)
            dist.call_ended(ext, t)
            route(t)
        if arrived >= calls + warmup and not any(dist.waiting.values()) and not events:
            break
    measured = len(waits)
    erl = staffing(agents, calls_per_hour, aht, target_seconds)
    span = (t - measure_start) if measure_start is not None else 1.0
    return SimResult(
        agents=agents, calls_per_hour=calls_per_hour, aht=aht, target_seconds=target_seconds, calls=measured,
        service_level=sum(1 for w in waits if w <= target_seconds) / measured,
        wait_probability=sum(1 for w in waits if w > 0) / measured,
        asa=sum(waits) / measured, occupancy=min(1.0, busy_seconds / (span * agents)),
        erlang_service_level=erl.service_level, erlang_wait_probability=erl.wait_probability,
        erlang_asa=erl.asa, decision_us=routing_seconds / max(1, routed) * 1e6,
    )


def markdown(results: list[SimResult]) -> str:
    rows = ["| agents | calls/h | AHT s | calls | SL sim | SL Erlang C | Δ pts | P(wait) sim | P(wait) Erlang C "
            "| Δ pts | ASA sim s | ASA Erlang C s | µs/decision |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        rows.append(
            f"| {r.agents} | {r.calls_per_hour:.0f} | {r.aht:.0f} | {r.calls:,} | {100 * r.service_level:.1f}% "
            f"| {100 * r.erlang_service_level:.1f}% | {100 * (r.service_level - r.erlang_service_level):+.1f} "
            f"| {100 * r.wait_probability:.1f}% | {100 * r.erlang_wait_probability:.1f}% "
            f"| {100 * (r.wait_probability - r.erlang_wait_probability):+.1f} | {r.asa:.1f} | {r.erlang_asa:.1f} "
            f"| {r.decision_us:.1f} |")
    return "\n".join(rows)


def main(args: argparse.Namespace) -> int:
    level, seconds = parse_target(args.target_sl)
    needed = agents_needed(args.calls_per_hour, args.aht, level, seconds)
    print(f"Erlang C: {args.calls_per_hour:g} calls/h x {args.aht:g} s = {needed.erlangs:.1f} Erlangs; "
          f"{needed.agents} agents reach {args.target_sl} (SL {100 * needed.service_level:.1f}%)")
    counts = args.agents or [needed.agents - 2, needed.agents, needed.agents + 3, needed.agents + 8]
    results = []
    for n in counts:
        if n <= needed.erlangs:
            print(f"{n} agents cannot carry {needed.erlangs:.1f} Erlangs: the queue grows without bound, skipped")
            continue
        results.append(simulate(n, args.calls_per_hour, args.aht, seconds, args.calls, seed=args.seed))
    print(markdown(results))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    return 0
