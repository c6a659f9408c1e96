"""The ACD core, sans-I/O: which agent gets which caller, and when.

Fed with events (agent login/pause, caller enters/leaves, ring answered/missed, call ended)
and ``now``; returns ``Offer``s (ring these agents for this caller). Timers (wrap-up ends,
skill escalation steps, retry after a missed ring, max wait) via ``get_timer()`` /
``handle_timer(now)``. The live switch (acd/service.py) and the simulation (bench/acd_sim.py)
drive the same object, the first with the wall clock, the second with simulated time.

Fairness across queues: free agents are matched to callers in order of *effective wait*
(seconds waited + 60 s per priority level of queue and caller), over every queue the agent
serves, so an agent in sales and support takes whichever caller has waited longest — not the
first queue's caller (Asterisk's app_queue checks queues independently).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable

from ..config.schema import Queue, Strategy
from .models import Agent, AgentState, Caller, Offer, StateChange

PRIORITY_SECONDS = 60.0  # one priority level is worth this much waiting


class QueueRejected(Exception):
    """A caller could not join: ``reason`` is 'full' or 'empty'."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Distributor:
    def __init__(self, queues: dict[str, Queue], agents: Iterable[Agent], *,
                 reachable: Callable[[str], bool] = lambda ext: True, rng: random.Random | None = None) -> None:
        self.queues = dict(queues)
        self.agents: dict[str, Agent] = {a.extension: a for a in agents}
        self.changes: list[StateChange] = []  # agent state changes not yet taken by drain_changes()
        for a in self.agents.values():
            a.changes = self.changes
        self.waiting: dict[str, list[Caller]] = {name: [] for name in self.queues}
        self.reachable = reachable
        self.rng = rng or random.Random()
        self._rr_last: dict[str, str] = {}  # queue → the agent rung last (round-robin memory)
        self.decisions = 0  # assign() calls that produced at least one offer (for the benchmark)

    # -- agents ------------------------------------------------------------------------------------------
    def login(self, ext: str, now: float) -> Agent:
        agent = self.agents[ext]
        if agent.state is AgentState.LOGGED_OUT:
            agent.seconds.clear()
            agent.answered = agent.missed = agent.missed_in_row = 0
            agent.since = now
            agent.enter(AgentState.AVAILABLE, now)
            agent.idle_since = now
        return agent

    def logout(self, ext: str, now: float) -> Agent:
        agent = self.agents[ext]
        if agent.state in (AgentState.AVAILABLE, AgentState.PAUSED, AgentState.WRAPUP):
            agent.enter(AgentState.LOGGED_OUT, now)
        elif agent.state is not AgentState.LOGGED_OUT:
            agent.wrapup_until = -1.0  # logs out when the call ends
        return agent

    def pause(self, ext: str, reason: str, now: float) -> Agent:
        agent = self.agents[ext]
        if agent.state is AgentState.LOGGED_OUT:
            raise ValueError(f"agent {ext} is not logged in")
        agent.pause_reason = reason or "break"
        if agent.state in (AgentState.AVAILABLE, AgentState.WRAPUP):
            agent.enter(AgentState.PAUSED, now)
        return agent

    def unpause(self, ext: str, now: float) -> Agent:
        agent = self.agents[ext]
        if agent.state is AgentState.PAUSED:
            agent.pause_reason = ""
            agent.missed_in_row = 0
            agent.enter(AgentState.AVAILABLE, now)
            agent.idle_since = now
        elif agent.state is not AgentState.LOGGED_OUT:
            agent.pause_reason = ""  # paused during a call: back to normal after it
        return agent

    def drain_changes(self) -> list[StateChange]:
        out, self.changes[:] = list(self.changes), []
        return out

    def logged_in(self, queue: str) -> list[Agent]:
        return [a for a in self.agents.values() if queue in a.queues and a.state is not AgentState.LOGGED_OUT]

    # -- callers ---------------------------------------------------------------------------------------
    def enqueue(self, caller: Caller, now: float) -> int:
        """Add a caller; returns its position (1 = next) or raises QueueRejected."""
        rules = self.queues[caller.queue]
        line = self.waiting[caller.queue]
        if rules.max_len is not None and len(line) >= rules.max_len:
            raise QueueRejected("full")
        if not rules.join_empty and not self._staffed(caller.queue):
            raise QueueRejected("empty")
        if not caller.requires:
            caller.requires = dict(rules.requires)
        if rules.escalate is not None and caller.requires:
            caller.next_step = caller.entered + rules.escalate.every
        line.append(caller)
        line.sort(key=lambda c: (-c.priority, c.entered))
        caller.entry_position = self.position(caller)
        return caller.entry_position

    def position(self, caller: Caller) -> int:
        line = self.waiting.get(caller.queue, [])
        return line.index(caller) + 1 if caller in line else 0

    def remove(self, caller: Caller, now: float) -> int:
        """The caller left (abandon, timeout, connected elsewhere): returns the position it had."""
        pos = self.position(caller)
        if pos:
            self.waiting[caller.queue].remove(caller)
        for ext in caller.ringing:
            agent = self.agents.get(ext)
            if agent is not None and agent.state is AgentState.RINGING and agent.current == caller.call_id:
                agent.enter(AgentState.AVAILABLE, now)
                agent.current = None
        caller.ringing = ()
        return pos

    def _staffed(self, queue: str) -> bool:
        return any(a.state is not AgentState.PAUSED for a in self.logged_in(queue))

    def leave_when_empty(self) -> list[Caller]:
        """Callers of queues with ``leave_when_empty`` and nobody logged in (or all paused)."""
        out = []
        for name, rules in self.queues.items():
            if rules.leave_when_empty and not self._staffed(name):
                out += [c for c in self.waiting[name] if not c.ringing]
        return out

    # -- ringing and calls -----------------------------------------------------------------------------
    def answered(self, caller: Caller, ext: str, now: float) -> None:
        """``ext`` answered: the caller leaves the queue, the agent is on the call."""
        others = tuple(e for e in caller.ringing if e != ext)
        caller.ringing = others
        self.remove(caller, now)
        agent = self.agents[ext]
        agent.enter(AgentState.ON_CALL, now)
        agent.current, agent.current_queue = caller.call_id, caller.queue
        agent.missed_in_row = 0
        agent.answered += 1
        agent.calls[caller.queue] = agent.calls.get(caller.queue, 0) + 1

    def missed(self, caller: Caller | None, ext: str, now: float) -> bool:
        """``ext`` did not answer in time (or refused). Returns True if that auto-paused it."""
        agent = self.agents[ext]
        if caller is not None:
            caller.ringing = tuple(e for e in caller.ringing if e != ext)
            rules = self.queues[caller.queue]
            caller.declined[ext] = now + rules.retry
        if agent.state is not AgentState.RINGING:
            return False
        agent.current = None
        agent.missed += 1
        agent.missed_in_row += 1
        limit = self.queues[caller.queue].max_no_answer if caller is not None else 0
        if limit and agent.missed_in_row >= limit:
            agent.pause_reason = "no-answer"
            agent.enter(AgentState.PAUSED, now)
            return True
        agent.enter(AgentState.AVAILABLE, now)
        return False

    def call_ended(self, ext: str, now: float) -> None:
        """The agent's call is over: wrap-up (the queue's), then available again."""
        agent = self.agents[ext]
        if agent.state is not AgentState.ON_CALL:
            return
        logout = agent.wrapup_until < 0
        queue = self.queues.get(agent.current_queue or "")
        agent.current = None
        wrapup = queue.wrapup if queue is not None else 0
        if logout:
            agent.enter(AgentState.LOGGED_OUT, now)
        elif wrapup > 0:
            agent.wrapup_until = now + wrapup
            agent.enter(AgentState.WRAPUP, now)
        else:
            self._free(agent, now)

    def _free(self, agent: Agent, now: float) -> None:
        agent.idle_since = now
        agent.wrapup_until = 0.0
        agent.enter(AgentState.PAUSED if agent.pause_reason else AgentState.AVAILABLE, now)

    # -- timers ----------------------------------------------------------------------------------------
    def get_timer(self) -> float | None:
        """The next moment something changes without an event: a wrap-up ends, a caller's skill
        requirement widens, a declined agent may be rung again, a caller reaches max wait."""
        times: list[float] = [a.wrapup_until for a in self.agents.values()
                              if a.state is AgentState.WRAPUP and a.wrapup_until > 0]
        for name, line in self.waiting.items():
            rules = self.queues[name]
            for c in line:
                times += c.declined.values()
                if c.next_step:
                    times.append(c.next_step)
                if rules.max_wait is not None:
                    times.append(c.entered + rules.max_wait)
        future = [t for t in times if t is not None and t > 0]
        return min(future) if future else None

    def handle_timer(self, now: float) -> list[Caller]:
        """Ends wrap-ups and expires declines; returns the callers past their queue's max wait
        (they are removed: the caller's session takes the queue's timeout action)."""
        for agent in self.agents.values():
            if agent.state is AgentState.WRAPUP and 0 < agent.wrapup_until <= now:
                self._free(agent, now)
        expired: list[Caller] = []
        for name, line in self.waiting.items():
            rules = self.queues[name]
            for c in list(line):
                c.declined = {e: t for e, t in c.declined.items() if t > now}
                if c.next_step and c.next_step <= now:
                    assert rules.escalate is not None
                    c.next_step = c.next_step + rules.escalate.every if self.required(c, now) else 0.0
                if rules.max_wait is not None and now - c.entered >= rules.max_wait and not c.ringing:
                    self.remove(c, now)
                    expired.append(c)
        return expired

    # -- the decision -------------------------------------------------------------------------------------
    def required(self, caller: Caller, now: float) -> dict[str, int]:
        """The caller's skill requirement now: escalation lowers every level by ``step`` each
        ``every`` seconds of waiting."""
        rules = self.queues[caller.queue]
        if rules.escalate is None:
            return caller.requires
        drop = rules.escalate.step * _steps_done(caller, rules, now)
        return {skill: level - drop for skill, level in caller.requires.items() if level - drop > 0}

    def assign(self, now: float) -> list[Offer]:
        """Match free agents to waiting callers, longest effective wait first, across queues."""
        free = {ext: a for ext, a in self.agents.items()
                if a.state is AgentState.AVAILABLE and self.reachable(ext)}
        if not free:
            return []
        callers = [c for line in self.waiting.values() for c in line if not c.ringing]
        if not callers:
            return []
        callers.sort(key=lambda c: -self.effective_wait(c, now))
        offers: list[Offer] = []
        for caller in callers:
            rules = self.queues[caller.queue]
            need = self.required(caller, now)
            candidates = [a for a in free.values()
                          if caller.queue in a.queues and caller.declined.get(a.extension, 0) <= now
                          and all(a.skills.get(s, 0) >= lvl for s, lvl in need.items())]
            if not candidates:
                continue
            chosen = self.pick(rules.strategy, caller.queue, candidates, need, now)
            for agent in chosen:
                del free[agent.extension]
                agent.enter(AgentState.RINGING, now)
                agent.current = caller.call_id
            caller.ringing = tuple(a.extension for a in chosen)
            offers.append(Offer(caller, caller.ringing))
            if not free:
                break
        if offers:
            self.decisions += 1
        return offers

    def effective_wait(self, caller: Caller, now: float) -> float:
        weight = self.queues[caller.queue].priority + caller.priority
        return (now - caller.entered) + PRIORITY_SECONDS * weight

    def pick(self, strategy: Strategy, queue: str, candidates: list[Agent], need: dict[str, int],
             now: float) -> list[Agent]:
        """Which of the free, eligible members to ring (ringall: all of them)."""
        members = self.queues[queue].members
        order = {ext: i for i, ext in enumerate(members)}
        candidates.sort(key=lambda a: order.get(a.extension, len(order)))  # stable: plan order
        if strategy is Strategy.RINGALL:
            return candidates
        if strategy is Strategy.RANDOM:
            return [self.rng.choice(candidates)]
        if strategy is Strategy.ROUND_ROBIN:
            last = self._rr_last.get(queue)
            start = order.get(last, -1) if last is not None else -1
            after = [a for a in candidates if order.get(a.extension, len(order)) > start]
            agent = (after or candidates)[0]
            self._rr_last[queue] = agent.extension
            return [agent]
        if strategy is Strategy.FEWEST_CALLS:
            return [min(candidates, key=lambda a: (a.calls.get(queue, 0), a.idle_since))]
        if strategy is Strategy.SKILLS:
            # the best match for what the caller needs (or overall skill), then longest idle
            def score(a: Agent) -> float:
                relevant = need or {s: 0 for s in a.skills}
                return sum(a.skills.get(s, 0) for s in relevant)
            return [max(candidates, key=lambda a: (score(a), -a.idle_since))]
        return [min(candidates, key=lambda a: a.idle_since)]  # longest-idle

    # -- real-time view --------------------------------------------------------------------------------
    def queue_snapshot(self, name: str, now: float) -> dict[str, object]:
        line = self.waiting[name]
        states: dict[str, int] = {s.value: 0 for s in AgentState}
        for a in self.agents.values():
            if name in a.queues:
                states[a.state.value] += 1
        return {"waiting": len(line), "longest_wait": round(max((now - c.entered for c in line), default=0.0), 1),
                "agents": states}


def _steps_done(caller: Caller, rules: Queue, now: float) -> int:
    assert rules.escalate is not None
    return max(0, math.floor((now - caller.entered) / rules.escalate.every))
