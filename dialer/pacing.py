"""Pacing, sans-I/O: how many calls a campaign places now. Fed a ``Snapshot`` of the agents and
the calls in flight (and, for the predictive pacer, what it has learnt from outcomes), it returns a
number; no asyncio, no clock but the ``now`` it is given — the runner and the simulation
(``bench/dialer_sim.py``) drive the same objects.

- preview: none by itself (an agent asks for the next lead);
- progressive: one call per free agent;
- power: ``ratio`` calls per free agent;
- predictive: keeps ``gain`` expected live answers in flight per agent free now or about to be
  (wrap-up ending before answers come), with the contact rate learnt from outcomes in the order
  calls were placed; the gain is steered by each answer towards a setpoint under the target
  abandonment rate, and the pacer falls back to progressive when a window of the abandonment
  ledger (30 days, 24 hours) has nearly spent its budget;
- broadcast: agentless, up to ``max_concurrent`` and the trunks' channels;
- a VICIdial-style adaptive pacer (a dial level fed back from the drop rate since midnight, clamped
  at 3 %), as a baseline for the simulator.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum


class Mode(StrEnum):
    PREVIEW = "preview"
    PROGRESSIVE = "progressive"
    POWER = "power"
    PREDICTIVE = "predictive"
    BROADCAST = "broadcast"


class Outcome(StrEnum):
    """How an attempt ended (the lead life cycle's states after ``dialing``)."""

    HUMAN = "answered-human"
    MACHINE = "machine"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"
    INVALID = "invalid"
    ABANDONED = "abandoned"  # a human answered and no agent was connected within 2 s
    CONGESTION = "congestion"  # the trunk refused (503, channels): retried without spending an attempt


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the pacer sees at ``now``."""

    now: float
    ready: int  # agents logged in and free (not reserved for a call being connected)
    busy: tuple[float, ...] = ()  # each talking agent: seconds it has talked so far
    wrapping: tuple[float, ...] = ()  # each agent in wrap-up: seconds of wrap-up left
    dialing: tuple[float, ...] = ()  # each call placed and not yet resolved: its age in seconds
    connecting: int = 0  # answered humans waiting for an agent right now
    active: int = 0  # agentless calls under way (broadcast)
    channels_free: int | None = None  # what the campaign's trunks can still carry


# == what the predictive pacer learns =================================================================
@dataclass
class Estimates:
    """Online estimates from outcomes, starting from priors: the share of attempts answered by a
    person, how long answers take (log-normal), how long agents talk and wrap up."""

    human: float = 0.3
    machine: float = 0.1
    quick: float = 0.1  # busy, failed, invalid: resolved within seconds
    answer_mu: float = math.log(9.0)  # log seconds to answer (people and machines alike)
    answer_sigma: float = 0.5
    talk: float = 150.0
    wrapup: float = 30.0
    ring_timeout: float = 25.0
    weight: float = 0.02  # exponential forgetting: ~50 outcomes of memory for shares
    settle: float = 15.0  # after the ring timeout, every attempt placed by then has resolved
    _log_answers: deque[float] = field(default_factory=lambda: deque(maxlen=400))
    _pending: list[tuple[float, int, Outcome, float]] = field(default_factory=list)  # heap by placing time
    _seq: int = 0
    _fits: int = 0

    def observe(self, outcome: Outcome, ring_seconds: float, at: float) -> None:
        """An attempt placed at ``at − ring_seconds`` ended with ``outcome`` at ``at``. Shares are
        learnt in the order attempts were *placed*, once all attempts placed at that time have
        resolved: in the order they resolve, the quick ones (busy) come first and people (who
        take seconds to answer) last, and a fresh campaign would think nobody answers."""
        if outcome in (Outcome.CONGESTION, Outcome.INVALID):
            return
        self._seq += 1
        heapq.heappush(self._pending, (at - ring_seconds, self._seq, outcome, ring_seconds))
        self.release(at)

    def release(self, now: float) -> None:
        horizon = now - self.ring_timeout - self.settle
        while self._pending and self._pending[0][0] <= horizon:
            _placed, _seq, outcome, ring_seconds = heapq.heappop(self._pending)
            self._learn(outcome, ring_seconds)

    def _learn(self, outcome: Outcome, ring_seconds: float) -> None:
        w = self.weight
        human = outcome in (Outcome.HUMAN, Outcome.ABANDONED)
        self.human += w * ((1.0 if human else 0.0) - self.human)
        self.machine += w * ((1.0 if outcome is Outcome.MACHINE else 0.0) - self.machine)
        self.quick += w * ((1.0 if outcome in (Outcome.BUSY, Outcome.FAILED) else 0.0) - self.quick)
        if human or outcome is Outcome.MACHINE:
            self._log_answers.append(math.log(max(0.5, ring_seconds)))
            self._fits += 1
            if len(self._log_answers) >= 20 and self._fits % 20 == 0:  # refit now and then
                data = list(self._log_answers)
                mu = sum(data) / len(data)
                var = sum((x - mu) ** 2 for x in data) / (len(data) - 1)
                self.answer_mu, self.answer_sigma = mu, max(0.15, math.sqrt(var))

    def observe_handled(self, talk: float, wrapup: float) -> None:
        self.talk += 0.05 * (talk - self.talk)
        self.wrapup += 0.05 * (wrapup - self.wrapup)

    def answer_survival(self, age: float) -> float:
        """P(an answer that will come has not come by ``age``)."""
        if age <= 0:
            return 1.0
        z = (math.log(age) - self.answer_mu) / self.answer_sigma
        return 0.5 * math.erfc(z / math.sqrt(2.0))

    def human_given_unresolved(self, age: float) -> float:
        """P(a call still ringing at ``age`` ends with a person answering)."""
        s = self.answer_survival(age)
        ringing_out = max(0.0, 1.0 - self.human - self.machine - self.quick) * (1.0 if age < self.ring_timeout else 0.0)
        denom = (self.human + self.machine) * s + ringing_out + self.quick * math.exp(-age / 2.0)
        return self.human * s / denom if denom > 0 else 0.0

    def mean_answer(self) -> float:
        return math.exp(self.answer_mu + self.answer_sigma ** 2 / 2)


# == the abandonment ledger ============================================================================
DAY = 86_400.0


class AbandonLedger:
    """Live answers and abandoned ones, for the rates the rules are written in: per rolling
    30 days (US TSR) and per 24 hours (UK Ofcom); both are always reported. Counts per window are
    kept as running sums, so asking is O(1) whatever the traffic."""

    def __init__(self, windows: tuple[float, ...] = (30 * DAY, DAY)) -> None:
        self.windows = tuple(sorted(set(windows), reverse=True))
        self.events: deque[tuple[float, bool]] = deque()  # (when, abandoned), the longest window's
        self._tails = {w: 0 for w in self.windows}  # index into events where each window starts
        self._counts = {w: [0, 0] for w in self.windows}  # window → [answered, abandoned]
        self._base = 0  # events dropped from the left of the deque

    @property
    def window(self) -> float:
        return self.windows[0]

    def record(self, at: float, abandoned: bool) -> None:
        self.events.append((at, abandoned))
        for counts in self._counts.values():
            counts[0] += 1
            counts[1] += abandoned
        self._advance(at)

    def _advance(self, now: float) -> None:
        for w in self.windows:
            counts, i = self._counts[w], self._tails[w]
            while i - self._base < len(self.events) and self.events[i - self._base][0] < now - w:
                dropped = self.events[i - self._base][1]
                counts[0] -= 1
                counts[1] -= dropped
                i += 1
            self._tails[w] = i
        oldest = min(self._tails.values())
        while self._base < oldest:
            self.events.popleft()
            self._base += 1

    def observe(self, outcome: Outcome, at: float) -> None:
        """An attempt ended: a person connected to an agent or abandoned counts; nothing else does."""
        if outcome in (Outcome.HUMAN, Outcome.ABANDONED):
            self.record(at, outcome is Outcome.ABANDONED)

    def counts(self, now: float, window: float) -> tuple[int, int]:
        """(live answers, abandoned) in the ``window`` seconds before ``now``."""
        if window not in self._counts:
            answered = abandoned = 0
            for at, dropped in reversed(self.events):
                if at < now - window:
                    break
                answered += 1
                abandoned += dropped
            return answered, abandoned
        self._advance(now)
        answered, abandoned = self._counts[window]
        return answered, abandoned

    def rate(self, now: float, window: float) -> float:
        answered, abandoned = self.counts(now, window)
        return abandoned / answered if answered else 0.0


# == pacers ============================================================================================
class Pacer:
    mode: Mode
    fallback_reason: str = ""  # why a predictive pacer is dialling progressively right now

    def calls_to_place(self, s: Snapshot) -> int:
        raise NotImplementedError

    def observe(self, outcome: Outcome, ring_seconds: float, at: float) -> None:
        """An attempt ended. The owner of the ledger records it there first (``AbandonLedger.observe``)."""

    def observe_handled(self, talk: float, wrapup: float) -> None:
        """An agent finished a call (talk, then wrap-up)."""


class PreviewPacer(Pacer):
    mode = Mode.PREVIEW

    def calls_to_place(self, s: Snapshot) -> int:
        return 0


class ProgressivePacer(Pacer):
    mode = Mode.PROGRESSIVE

    def calls_to_place(self, s: Snapshot) -> int:
        return max(0, s.ready - len(s.dialing) - s.connecting)


class PowerPacer(Pacer):
    mode = Mode.POWER

    def __init__(self, ratio: float = 2.0) -> None:
        self.ratio = ratio

    def calls_to_place(self, s: Snapshot) -> int:
        return max(0, math.floor(self.ratio * max(0, s.ready - s.connecting) + 1e-9) - len(s.dialing))


class BroadcastPacer(Pacer):
    mode = Mode.BROADCAST

    def __init__(self, max_concurrent: int = 10) -> None:
        self.max_concurrent = max_concurrent

    def calls_to_place(self, s: Snapshot) -> int:
        room = self.max_concurrent - len(s.dialing) - s.active
        if s.channels_free is not None:
            room = min(room, s.channels_free)
        return max(0, room)


class PredictivePacer(Pacer):
    """Keeps ``gain`` × (agents free now and about to be) expected live answers in flight, each
    call counted by the chance of a person it had when placed (the learnt contact rate); agents in
    wrap-up that ends before answers usually come count as free (a person cannot wait for a
    talking agent: 2 s, then the safe-harbour message). So a change in the contact rate changes how many calls
    are placed at once, not the expected answers they bring. ``gain`` follows the abandonment of
    the last ~200 answers towards ``target`` (up while under, down faster while over); and no
    window of the ledger (30 days, 24 hours) may run out: when one's budget is nearly spent the
    pacer dials progressively and says why."""

    mode = Mode.PREDICTIVE

    def __init__(self, *, target: float = 0.025, limit: float = 0.03, ledger: AbandonLedger | None = None,
                 estimates: Estimates | None = None, amd_seconds: float = 2.0,
                 windows: tuple[float, ...] = (30 * DAY, DAY), reserve_abandons: float = 0.5,
                 gain: float = 0.45, step: float = 0.02, setpoint_share: float = 0.85) -> None:
        self.target, self.limit = target, limit
        self.ledger = ledger if ledger is not None else AbandonLedger(windows)
        self.est = estimates or Estimates()
        self.amd_seconds = amd_seconds
        self.windows = windows
        self.reserve_abandons = reserve_abandons  # less room than this in a window's budget: progressive
        self.gain = gain  # live answers kept in flight per agent free (adapted)
        self.step, self.setpoint_share = step, setpoint_share
        self.min_gain, self.max_gain = 0.25, 2.0
        self.min_contact = 0.02  # below this contact rate a list is not worth predictive dialling
        self.max_lines = 10  # calls in flight per agent free, at most
        self._recent: deque[bool] = deque(maxlen=200)

    def observe(self, outcome: Outcome, ring_seconds: float, at: float) -> None:
        self.est.observe(outcome, ring_seconds, at)
        if outcome not in (Outcome.HUMAN, Outcome.ABANDONED):
            return
        dropped = outcome is Outcome.ABANDONED  # the campaign has put it in the shared ledger
        self._recent.append(dropped)
        if self.fallback_reason:
            return  # dialling progressively: nothing here says how the gain does (no wind-up)
        # stochastic approximation towards ``setpoint`` (a little under the target, so that the
        # day-to-day spread stays under it): every abandon takes ~2 % off the gain, every
        # connected person adds setpoint/(1 − setpoint) of that; they balance at the setpoint
        setpoint = self.setpoint_share * self.target
        self.gain *= math.exp(self.step * (setpoint - (1.0 if dropped else 0.0)))
        if dropped and len(self._recent) >= 100 and sum(self._recent) / len(self._recent) > self.limit:
            self.gain *= 0.97  # the last answers run over the limit: brake
        self.gain = min(max(self.gain, self.min_gain), self.max_gain)

    def observe_handled(self, talk: float, wrapup: float) -> None:
        self.est.observe_handled(talk, wrapup)

    def room(self, now: float, pending: float = 0.0) -> float:
        """Abandons the tightest window of the ledger can still take: what the target allows for
        the answers it holds (at least one, so that a window can start), less those it holds,
        less ``pending`` (the people the calls in flight may bring beyond the agents free)."""
        room = math.inf
        for window in self.windows:
            answered, abandoned = self.ledger.counts(now, window)
            room = min(room, max(1.0, self.target * answered) - abandoned - pending)
        return room

    def calls_to_place(self, s: Snapshot) -> int:
        progressive = max(0, s.ready - len(s.dialing) - s.connecting)
        est = self.est
        est.release(s.now)
        # a person answering cannot wait (2 s, then the safe-harbour message): only agents free
        # now, or whose wrap-up ends before answers usually come, can take the calls placed now
        soon = math.exp(est.answer_mu) + self.amd_seconds
        agents = max(0, s.ready - s.connecting) + sum(1 for left in s.wrapping if left <= soon)
        p_new = max(self.min_contact, est.human_given_unresolved(0.0))
        # the people the calls in flight may bring beyond the agents there for them, with one
        # standard deviation of margin (binomial): a small team's budget is a handful of abandons
        n = len(s.dialing)
        pending = max(0.0, p_new * n + s.connecting - agents + math.sqrt(n * p_new * (1.0 - p_new)))
        if self.room(s.now, pending) < self.reserve_abandons:
            self.fallback_reason = "abandonment budget nearly spent: dialling progressively"
            return progressive
        self.fallback_reason = ""
        # every call in flight counts with its chance at placing: one that has rung a while is no
        # less likely to turn into a person *now* than the fresh one that would replace it
        wanted = min(self.gain * agents / p_new, self.max_lines * agents) - len(s.dialing)
        return max(progressive, math.floor(wanted + 1e-9) if wanted > 0 else 0)


class VicidialPacer(Pacer):
    """A VICIdial-style adaptive pacer (AST_VDadapt): a dial level (calls per available agent,
    at most 3.0) raised while agents wait and lowered when calls drop, clamped to 1.0 once the
    drop rate *since midnight* passes the limit — the baseline the predictive pacer is measured
    against in simulation."""

    mode = Mode.PREDICTIVE

    def __init__(self, *, limit: float = 0.03, max_level: float = 3.0, every: float = 15.0) -> None:
        self.limit, self.max_level, self.every = limit, max_level, every
        self.level = 1.0
        self.day_start = 0.0
        self.answered = self.dropped = 0  # since midnight
        self.period_dropped = 0
        self.waiting = 0.0  # agent-seconds spent ready in this period
        self._last = 0.0
        self._last_adjust = 0.0

    def observe(self, outcome: Outcome, ring_seconds: float, at: float) -> None:
        if at - self.day_start >= DAY:
            self.day_start = at - (at % DAY)
            self.answered = self.dropped = 0
        if outcome in (Outcome.HUMAN, Outcome.ABANDONED):
            self.answered += 1
            if outcome is Outcome.ABANDONED:
                self.dropped += 1
                self.period_dropped += 1

    def calls_to_place(self, s: Snapshot) -> int:
        self.waiting += s.ready * max(0.0, s.now - self._last)
        self._last = s.now
        if s.now - self._last_adjust >= self.every:
            drop = self.dropped / self.answered if self.answered else 0.0
            if drop > self.limit:
                self.level = 1.0
            elif self.period_dropped:
                self.level = max(1.0, self.level - 0.1 * self.period_dropped)
            elif self.waiting > self.every * 0.5:
                self.level = min(self.max_level, self.level + 0.1)
            self.period_dropped, self.waiting, self._last_adjust = 0, 0.0, s.now
        return max(0, math.floor(self.level * max(0, s.ready - s.connecting) + 1e-9) - len(s.dialing))


def pacer_for(mode: Mode | str, *, ratio: float = 2.0, max_concurrent: int = 10, target: float = 0.025,
              limit: float = 0.03, ledger: AbandonLedger | None = None, ring_timeout: float = 25.0) -> Pacer:
    mode = Mode(mode)
    if mode is Mode.PREVIEW:
        return PreviewPacer()
    if mode is Mode.PROGRESSIVE:
        return ProgressivePacer()
    if mode is Mode.POWER:
        return PowerPacer(ratio)
    if mode is Mode.BROADCAST:
        return BroadcastPacer(max_concurrent)
    return PredictivePacer(target=target, limit=limit, ledger=ledger, estimates=Estimates(ring_timeout=ring_timeout))
