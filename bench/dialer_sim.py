"""`centralino bench dialer`: a discrete-event simulation of an outbound shift driving the real
pacers of ``dialer/pacing.py`` in simulated time.

Agents take the live answers the pacer's calls produce; answering times are log-normal; each
attempt is a person, a machine, busy or no answer by the scenario's shares; AMD decides within
~2 s and errs both ways; talk and wrap-up times are log-normal. A person whom no agent reaches
within 2 s of the AMD decision is abandoned (the safe-harbour message). Every pacer sees the same
attempts and handling times (common random numbers: the n-th attempt and the n-th call handled
are the same in every run of a shift). Reported per scenario and pacer, over the shifts:
abandonment (mean with a 95 % interval), the share of 24-hour and 30-day windows over the limit
(one shift is one day), occupancy, talk minutes per agent-hour, idle time between calls.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..dialer.pacing import (
    DAY,
    AbandonLedger,
    Outcome,
    Pacer,
    PowerPacer,
    PredictivePacer,
    ProgressivePacer,
    Snapshot,
    VicidialPacer,
)

LIMIT = 0.03
CONNECT_WITHIN = 2.0  # seconds from the AMD decision to an agent, else abandoned


@dataclass(frozen=True)
class Scenario:
    name: str
    agents: int
    human: float  # share of attempts a person answers
    human_late: float | None = None  # the share from mid-shift on (a contact rate that steps)
    machine: float = 0.15
    busy: float = 0.08
    answer_median: float = 8.0  # seconds to answer, log-normal
    answer_sigma: float = 0.5
    ring_timeout: float = 25.0
    talk_mean: float = 150.0  # AHT 180 s = talk 150 + wrap-up 30
    talk_sigma: float = 0.6
    wrap_mean: float = 30.0
    wrap_sigma: float = 0.4
    amd_human_s: float = 1.9  # AMD decision time for a person
    amd_machine_s: float = 3.5
    amd_false_machine: float = 0.03  # a person taken for a machine (lost, not abandoned)
    amd_false_human: float = 0.05  # a machine taken for a person (an agent gets it for 10 s)
    hours: float = 4.0
    wind_down: bool = True  # stop dialling a ring timeout before the end (agents log off then)

    def human_at(self, t: float) -> float:
        if self.human_late is not None and t >= self.hours * 3600 / 2:
            return self.human_late
        return self.human


@dataclass
class ShiftResult:
    answered: int = 0  # people answered (connected or abandoned)
    abandoned: int = 0
    connected: int = 0
    attempts: int = 0
    talk: float = 0.0
    wrap: float = 0.0
    logged: float = 0.0  # agent-seconds
    idle_gaps: list[float] = field(default_factory=list)

    @property
    def abandon_rate(self) -> float:
        return self.abandoned / self.answered if self.answered else 0.0


def _lognormal(rng: np.random.Generator, mean: float, sigma: float, n: int) -> np.ndarray:
    mu = math.log(mean) - sigma ** 2 / 2
    return rng.lognormal(mu, sigma, n)


class Draws:
    """The shift's random numbers, by index (common random numbers across pacers)."""

    def __init__(self, sc: Scenario, seed: int, n: int = 400_000) -> None:
        rng = np.random.default_rng(seed)
        self.kind = rng.random(n)
        self.answer = rng.lognormal(math.log(sc.answer_median), sc.answer_sigma, n)
        self.amd_err = rng.random(n)
        self.talk = _lognormal(rng, sc.talk_mean, sc.talk_sigma, n // 4)
        self.wrap = _lognormal(rng, sc.wrap_mean, sc.wrap_sigma, n // 4)


class Shift:
    """One shift of one pacer: a heap of timed events over agents and calls."""

    def __init__(self, sc: Scenario, pacer: Pacer, ledger: AbandonLedger, draws: Draws, day: float) -> None:
        self.sc, self.pacer, self.ledger, self.d = sc, pacer, ledger, draws
        self.t0 = day
        self.now = day
        self.end = day + sc.hours * 3600
        self.heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self.ready: list[int] = list(range(sc.agents))
        self.ready_since: dict[int, float] = {a: day for a in self.ready}
        self.talking: dict[int, float] = {}  # agent → started talking
        self.wrapping: dict[int, float] = {}  # agent → wrap-up ends
        self.dialing: dict[int, float] = {}  # attempt → placed at
        self.connecting: deque[tuple[int, float, float, bool]] = deque()  # (attempt, deadline, ring, machine)
        self.deciding = 0  # answered calls AMD is still listening to (they may need an agent)
        self.attempt = 0
        self.handled = 0
        self.r = ShiftResult(logged=sc.agents * sc.hours * 3600)

    def observe(self, outcome: Outcome, ring: float, at: float) -> None:
        self.ledger.observe(outcome, at)
        self.pacer.observe(outcome, ring, at)

    def at(self, when: float, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self.heap, (when, self._seq, fn))

    # -- pacing -------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        now = self.now
        return Snapshot(now, len(self.ready), tuple(now - s for s in self.talking.values()),
                        tuple(max(0.0, e - now) for e in self.wrapping.values()),
                        tuple(now - p for p in self.dialing.values()), len(self.connecting) + self.deciding)

    def pace(self) -> None:
        if self.sc.wind_down and self.now >= self.end - self.sc.ring_timeout - 5:
            return  # the last calls of the shift must end while the agents are still there
        for _ in range(self.pacer.calls_to_place(self.snapshot())):
            self.place()

    def tick(self) -> None:
        self.pace()
        if self.now + 1.0 < self.end:
            self.at(self.now + 1.0, self.tick)

    # -- calls --------------------------------------------------------------------------------
    def place(self) -> None:
        i = self.attempt
        self.attempt += 1
        self.r.attempts += 1
        self.dialing[i] = self.now
        sc, d = self.sc, self.d
        u = d.kind[i]
        human = sc.human_at(self.now - self.t0)
        if u < human:
            kind, after = "human", d.answer[i]
        elif u < human + sc.machine:
            kind, after = "machine", d.answer[i]
        elif u < human + sc.machine + sc.busy:
            kind, after = "busy", 2.0 + 2.0 * d.amd_err[i]
        else:
            kind, after = "no-answer", sc.ring_timeout
        if after >= sc.ring_timeout and kind in ("human", "machine"):
            kind, after = "no-answer", sc.ring_timeout
        self.at(self.now + after, lambda: self.resolved(i, kind))

    def resolved(self, i: int, kind: str) -> None:
        placed = self.dialing.pop(i)
        ring = self.now - placed
        sc, d = self.sc, self.d
        if kind == "human":
            if d.amd_err[i] < sc.amd_false_machine:  # AMD takes the person for a machine: a lost contact
                self.observe(Outcome.MACHINE, ring, self.now)
                return
            self.deciding += 1
            self.at(self.now + sc.amd_human_s, lambda: self.human_decided(i, ring))
            return
        if kind == "machine" and d.amd_err[i] < sc.amd_false_human:
            self.deciding += 1
            self.at(self.now + sc.amd_machine_s, lambda: self.human_decided(i, ring, machine=True))
            return
        outcome = {"machine": Outcome.MACHINE, "busy": Outcome.BUSY}.get(kind, Outcome.NO_ANSWER)
        self.observe(outcome, ring, self.now)
        self.pace()

    def human_decided(self, i: int, ring: float, machine: bool = False) -> None:
        self.deciding -= 1
        if self.ready:
            self.connect(i, ring, machine)
            return
        self.connecting.append((i, self.now + CONNECT_WITHIN, ring, machine))
        self.at(self.now + CONNECT_WITHIN, lambda: self.give_up(i, ring, machine))

    def give_up(self, i: int, ring: float, machine: bool) -> None:
        for k, (j, *_rest) in enumerate(self.connecting):
            if j == i:
                del self.connecting[k]
                if not machine:
                    self.r.answered += 1
                    self.r.abandoned += 1
                    self.observe(Outcome.ABANDONED, ring, self.now)
                return

    def connect(self, i: int, ring: float, machine: bool) -> None:
        agent = self.ready.pop(0)  # the longest idle
        gap = self.now - self.ready_since.pop(agent)
        self.r.idle_gaps.append(gap)
        if machine:
            talk, wrap = 10.0, 0.0
        else:
            self.r.answered += 1
            self.r.connected += 1
            self.observe(Outcome.HUMAN, ring, self.now)
            h = self.handled % len(self.d.talk)
            self.handled += 1
            talk, wrap = float(self.d.talk[h]), float(self.d.wrap[h])
        self.talking[agent] = self.now
        self.at(self.now + talk, lambda: self.talked(agent, talk, wrap, machine))

    def _within(self, started: float) -> float:
        """Seconds of [started, now] inside the shift (agents log off at its end)."""
        return max(0.0, min(self.now, self.end) - min(started, self.end))

    def talked(self, agent: int, talk: float, wrap: float, machine: bool) -> None:
        started = self.talking.pop(agent)
        if not machine:
            self.r.talk += self._within(started)
        self.wrapping[agent] = self.now + wrap
        self.at(self.now + wrap, lambda: self.free(agent, talk, wrap, machine))

    def free(self, agent: int, talk: float, wrap: float, machine: bool) -> None:
        ends = self.wrapping.pop(agent)
        if not machine:
            self.r.wrap += self._within(ends - wrap)
            self.pacer.observe_handled(talk, wrap)
        if self.now >= self.end:
            return
        self.ready.append(agent)
        self.ready_since[agent] = self.now
        while self.connecting and self.ready:
            i, deadline, ring, machine_call = self.connecting.popleft()
            if deadline >= self.now:
                self.connect(i, ring, machine_call)
        self.pace()

    def run(self) -> ShiftResult:
        self.at(self.now, self.tick)
        while self.heap:
            when, _, fn = heapq.heappop(self.heap)
            if when > self.end + 3600:
                break
            self.now = when
            fn()
        return self.r


PACERS: dict[str, Callable[[AbandonLedger], Pacer]] = {
    "progressive": lambda ledger: ProgressivePacer(),
    "power 2.0": lambda ledger: PowerPacer(2.0),
    "VICIdial-style": lambda ledger: VicidialPacer(limit=LIMIT),
    "predictive": lambda ledger: PredictivePacer(target=0.025, limit=LIMIT, ledger=ledger),
}


def run_scenario(sc: Scenario, shifts: int, seed: int, pacers: list[str], *,
                 cold: bool = False) -> dict[str, dict[str, Any]]:
    """Each pacer over ``shifts`` shifts: one pacer for the whole campaign, learning across
    shifts, or (``cold``) a new one each shift, as a campaign started from nothing."""
    out: dict[str, dict[str, Any]] = {}
    for name in pacers:
        ledger = AbandonLedger()
        pacer = PACERS[name](ledger)
        results = []
        started = time.perf_counter()
        for k in range(shifts):
            if cold:
                ledger = AbandonLedger()
                pacer = PACERS[name](ledger)
            draws = Draws(sc, seed * 1000 + k)
            results.append(Shift(sc, pacer, ledger, draws, day=k * DAY).run())
        out[name] = summarize(results, sc, time.perf_counter() - started)
    return out


def summarize(results: list[ShiftResult], sc: Scenario, seconds: float) -> dict[str, Any]:
    rates = [r.abandon_rate for r in results]
    mean = statistics.fmean(rates)
    half = 1.96 * statistics.stdev(rates) / math.sqrt(len(rates)) if len(rates) > 1 else 0.0
    windows_30 = []
    for k in range(len(results)):  # the 30-day window ending with each shift
        span = results[max(0, k - 29):k + 1]
        answered = sum(r.answered for r in span)
        windows_30.append(sum(r.abandoned for r in span) / answered if answered else 0.0)
    gaps = [g for r in results for g in r.idle_gaps]
    logged = sum(r.logged for r in results)
    return {
        "abandon_mean": mean, "abandon_ci95": half,
        "days_over": sum(x > LIMIT for x in rates) / len(rates),
        "windows30_over": sum(x > LIMIT for x in windows_30) / len(windows_30),
        "max_day": max(rates),
        "occupancy": (sum(r.talk + r.wrap for r in results)) / logged,
        "talk_min_per_agent_hour": sum(r.talk for r in results) / 60 / (logged / 3600),
        "idle_mean": statistics.fmean(gaps) if gaps else 0.0,
        "idle_p95": float(np.percentile(gaps, 95)) if gaps else 0.0,
        "attempts": sum(r.attempts for r in results), "shifts": len(results), "seconds": round(seconds, 1),
    }


def grid(hours: float) -> list[Scenario]:
    out = []
    for agents in (5, 20, 100):
        for human, late, label in ((0.10, None, "10% live"), (0.30, None, "30% live"), (0.15, 0.35, "15%→35% live")):
            out.append(Scenario(f"{agents} agents, {label}", agents, human, late, hours=hours))
    return out


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = ["| scenario | pacer | abandon (95 % CI) | worst day | days > 3 % | 30-day windows > 3 % | "
             "talk min / agent-hour | occupancy | idle between calls, mean / p95 s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for scenario, pacers in results.items():
        for name, m in pacers.items():
            lines.append(
                f"| {scenario} | {name} | {100 * m['abandon_mean']:.2f} % ± {100 * m['abandon_ci95']:.2f} | "
                f"{100 * m['max_day']:.2f} % | {100 * m['days_over']:.0f} % | {100 * m['windows30_over']:.0f} % | "
                f"{m['talk_min_per_agent_hour']:.1f} | {100 * m['occupancy']:.1f} % | "
                f"{m['idle_mean']:.1f} / {m['idle_p95']:.1f} |")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    scenarios = grid(args.hours)
    if args.agents:
        scenarios = [s for s in scenarios if s.agents in args.agents]
    pacers = args.pacers or list(PACERS)
    unknown = [p for p in pacers if p not in PACERS]
    if unknown:
        print(f"centralino bench dialer: unknown pacer {unknown[0]!r} (one of {', '.join(PACERS)})", file=sys.stderr)
        return 2
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for sc in scenarios:
        print(f"## {sc.name} ({args.shifts} shifts of {sc.hours:g} h)", flush=True)
        results[sc.name] = run_scenario(sc, args.shifts, args.seed, pacers)
        for name, m in results[sc.name].items():
            print(f"  {name:<15} abandon {100 * m['abandon_mean']:5.2f}% worst day {100 * m['max_day']:5.2f}% "
                  f"talk {m['talk_min_per_agent_hour']:5.1f} min/agent-h ({m['seconds']:.0f} s)", flush=True)
    print()
    print(table(results))
    if args.json:
        print(json.dumps(results, indent=2))
    return 0
