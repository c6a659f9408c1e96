"""Erlang C staffing maths (M/M/N queue, callers wait as long as needed).

Workload A = calls per second × average handling time (Erlangs). With N agents (N > A):
  P(wait > 0)          = C(N, A), from the Erlang B recursion (stable for hundreds of agents)
  service level(t)     = 1 − C · exp(−(N − A) · t / AHT)
  average speed of ans = C · AHT / (N − A)
  occupancy            = A / N
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Staffing:
    agents: int
    erlangs: float
    wait_probability: float
    service_level: float  # fraction answered within the target seconds
    asa: float  # average speed of answer, seconds
    occupancy: float


def erlang_b(agents: int, erlangs: float) -> float:
    b = 1.0
    for k in range(1, agents + 1):
        b = erlangs * b / (k + erlangs * b)
    return b


def erlang_c(agents: int, erlangs: float) -> float:
    """Probability that a caller waits (1.0 when the agents cannot keep up)."""
    if agents <= erlangs:
        return 1.0
    b = erlang_b(agents, erlangs)
    return agents * b / (agents - erlangs * (1 - b))


def staffing(agents: int, calls_per_hour: float, aht: float, target_seconds: float) -> Staffing:
    a = calls_per_hour * aht / 3600.0
    c = erlang_c(agents, a)
    if agents <= a:
        return Staffing(agents, a, 1.0, 0.0, math.inf, 1.0)
    sl = 1.0 - c * math.exp(-(agents - a) * target_seconds / aht)
    return Staffing(agents, a, c, sl, c * aht / (agents - a), a / agents)


def agents_needed(calls_per_hour: float, aht: float, target_level: float, target_seconds: float,
                  max_occupancy: float = 1.0) -> Staffing:
    """The fewest agents whose service level reaches ``target_level`` (0–1) within
    ``target_seconds`` (and whose occupancy stays under ``max_occupancy``)."""
    if calls_per_hour <= 0 or aht <= 0:
        raise ValueError("calls per hour and handling time must be positive")
    a = calls_per_hour * aht / 3600.0
    n = max(1, math.floor(a) + 1)
    while True:
        s = staffing(n, calls_per_hour, aht, target_seconds)
        if s.service_level >= target_level and s.occupancy <= max_occupancy:
            return s
        n += 1


def parse_target(text: str) -> tuple[float, float]:
    """'80/20' → (0.80, 20.0): 80% of calls answered within 20 s."""
    level, _, seconds = text.partition("/")
    try:
        pct, secs = float(level), float(seconds)
    except ValueError:
        raise ValueError(f"expected a service-level target like 80/20, got {text!r}") from None
    if not (0 < pct < 100 and secs >= 0):
        raise ValueError(f"expected a percentage in (0, 100) and seconds >= 0, got {text!r}")
    return pct / 100.0, secs
