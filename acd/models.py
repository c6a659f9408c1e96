"""What the ACD knows about agents and waiting callers: plain data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class AgentState(StrEnum):
    LOGGED_OUT = "logged-out"
    AVAILABLE = "available"
    RINGING = "ringing"
    ON_CALL = "on-call"
    WRAPUP = "wrap-up"
    PAUSED = "paused"


@dataclass(frozen=True)
class StateChange:
    agent: str
    previous: AgentState
    state: AgentState
    seconds: float  # time spent in ``previous``
    at: float
    reason: str = ""  # the pause reason


@dataclass(eq=False)
class Agent:
    extension: str
    skills: dict[str, int] = field(default_factory=dict)
    queues: set[str] = field(default_factory=set)  # queues this agent is a member of
    state: AgentState = AgentState.LOGGED_OUT
    since: float = 0.0  # when the current state began
    idle_since: float = 0.0  # when the agent last became free (longest-idle)
    pause_reason: str = ""
    missed_in_row: int = 0  # rings not answered since the last answered one
    calls: dict[str, int] = field(default_factory=dict)  # queue → calls taken (fewest-calls)
    wrapup_until: float = 0.0
    current: str | None = None  # call id being rung or talked to
    current_queue: str | None = None
    # totals since login, by state (seconds) and counters, for real-time statistics
    seconds: dict[str, float] = field(default_factory=dict)
    answered: int = 0
    missed: int = 0
    changes: list[StateChange] | None = None  # where state changes are reported (the distributor's)

    def enter(self, state: AgentState, now: float) -> None:
        spent = max(0.0, now - self.since)
        self.seconds[self.state.value] = self.seconds.get(self.state.value, 0.0) + spent
        if self.changes is not None and state is not self.state:
            self.changes.append(StateChange(self.extension, self.state, state, spent, now, self.pause_reason))
        self.state, self.since = state, now

    def time_in(self, state: AgentState, now: float) -> float:
        current = max(0.0, now - self.since) if self.state is state else 0.0
        return self.seconds.get(state.value, 0.0) + current


@dataclass(eq=False)
class Caller:
    """A caller waiting in a queue (or a callback request that keeps its place)."""

    call_id: str
    queue: str
    entered: float
    caller: str = ""
    did: str = ""
    ivr: str = ""  # the keys the caller pressed in the IVR before the queue (the call card shows them)
    priority: int = 0
    requires: dict[str, int] = field(default_factory=dict)  # skill → minimum level
    callback: str | None = None  # the number to call back (the caller hung up)
    ringing: tuple[str, ...] = ()  # agents being rung for this caller
    declined: dict[str, float] = field(default_factory=dict)  # agent → not before (after a miss)
    entry_position: int = 0
    next_step: float = 0.0  # when the skill requirement widens next (0: never)


@dataclass(frozen=True)
class Offer:
    """The distributor's decision: ring these agents for this caller."""

    caller: Caller
    agents: tuple[str, ...]
