"""Pure stepping logic of the benchmark runner: which rate to try next, and what counts as a
pass. Kept free of I/O so the unit tests can drive it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Criteria:
    max_failure_ratio: float = 0.001  # < 0.1 % failed calls
    max_p95_ms: float = 200.0


@dataclass(frozen=True)
class Step:
    rate: float
    failure_ratio: float
    p95_ms: float | None
    achieved_rate: float

    def passes(self, criteria: Criteria) -> bool:
        if self.failure_ratio > criteria.max_failure_ratio:
            return False
        if self.p95_ms is not None and self.p95_ms > criteria.max_p95_ms:
            return False
        # SIPp could not even offer the rate: the client, not the switch, is the limit
        return self.achieved_rate >= 0.9 * self.rate


def next_rate(history: list[Step], criteria: Criteria, *, start: float, factor: float = 1.5,
              max_rate: float = 20000.0, refinements: int = 2) -> float | None:
    """Grow geometrically until a step fails, then bisect between the best pass and the first
    failure ``refinements`` times. None when done."""
    if not history:
        return start
    passed = [s.rate for s in history if s.passes(criteria)]
    failed = [s.rate for s in history if not s.passes(criteria)]
    if not failed:
        nxt = history[-1].rate * factor
        return min(nxt, max_rate) if history[-1].rate < max_rate else None
    best = max((r for r in passed if r < min(failed)), default=None)
    if best is None:
        return None  # even the first rate failed
    bisections = sum(1 for s in history if s.rate > history[0].rate and _is_bisection(s.rate, history))
    if bisections >= refinements:
        return None
    mid = round((best + min(failed)) / 2)
    if mid in (best, min(failed)) or any(abs(s.rate - mid) < 1 for s in history):
        return None
    return float(mid)


def _is_bisection(rate: float, history: list[Step]) -> bool:
    rates = [s.rate for s in history]
    i = rates.index(rate)
    return i > 0 and rate < max(rates[:i])


def best_rate(history: list[Step], criteria: Criteria) -> Step | None:
    """The highest rate that passed below the first failing one."""
    failed = [s.rate for s in history if not s.passes(criteria)]
    limit = min(failed) if failed else float("inf")
    good = [s for s in history if s.passes(criteria) and s.rate < limit]
    return max(good, key=lambda s: s.rate) if good else None
