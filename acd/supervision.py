"""Supervisors on agents' live calls: ``*222`` + the agent's extension from a desk phone.

The supervisor's call is answered on the media worker of the agent's call and joins it through
the worker's ``monitor`` command: listen (hears both, heard by none), whisper (heard by the agent
only: coaching) or barge (a third party heard by both). Keys during the session switch the mode:
1 listen, 2 whisper, 3 barge; ``PUT /api/v1/monitor/{supervisor}`` does the same from a wallboard,
and ``POST /api/v1/agents/{ext}/monitor`` rings the supervisor's phone to start a session (``ring_in``). Hanging up leaves
the call as it was (the worker puts the pair back on its plain relay); the agent's call ending ends
the session. Who may supervise whom is the plan's ``queues.<name>.supervisors``: a supervisor of a
queue may monitor its members.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from ..config.schema import Plan
from ..switch.b2bua.call import Call, CallState
from ..switch.b2bua.control import CallControl, MonitorMode

log = logging.getLogger("centralino.acd")

MODES: dict[str, MonitorMode] = {"1": "listen", "2": "whisper", "3": "barge"}


@dataclass(eq=False)
class MonitorSession:
    supervisor: Call  # the supervisor's own call (answered by the switch)
    target: Call  # the agent's call
    agent: str
    agent_side: str  # "a" or "b": the agent's endpoint in the target call
    mode: MonitorMode = "listen"
    started: float = field(default_factory=time.time)
    supervisor_side: str = "a"  # "b" when the switch rang the supervisor's phone (ring_in)
    supervisor_ext: str = ""  # whose phone it is (the caller of a *222 call)

    def __post_init__(self) -> None:
        self.supervisor_ext = self.supervisor_ext or self.supervisor.caller


class Supervision:
    def __init__(self, control: CallControl, plan_of: Callable[[], Plan]) -> None:
        self.control, self.plan_of = control, plan_of
        self.sessions: dict[str, MonitorSession] = {}  # supervisor's call id → session
        self.install_features()

    def plan_changed(self, plan: Plan) -> None:
        self.install_features()

    def install_features(self) -> None:
        self.control.unregister_feature(self._monitor_code)
        code = self.plan_of().server.features.monitor
        if code:
            self.control.register_feature(code, self._monitor_code)

    def may_supervise(self, supervisor: str, agent: str) -> bool:
        return any(supervisor in q.supervisors and agent in q.members for q in self.plan_of().queues.values())

    async def _monitor_code(self, call: Call, rest: str) -> None:
        agent = rest
        if not agent:
            await self.control.refuse(call, 484, "monitor: which extension?")
            return
        if not self.may_supervise(call.caller, agent):
            log.info("monitor: %s may not supervise %s", call.caller, agent)
            await self.control.refuse(call, 403, f"{call.caller} is not a supervisor of {agent}")
            return
        found = self.control.live_call_of(agent)
        if found is None:
            await self.control.refuse(call, 480, f"{agent} is not on a call")
            return
        target, side = found
        await self.control.answer_locally(call, beside=target, destination=f"monitor:{agent}")
        if call.state is not CallState.ANSWERED:
            return
        session = MonitorSession(call, target, agent, side)
        self.sessions[call.id] = session
        try:
            await self.set_mode(session, "listen")
            log.info("call %s: %s monitors %s on call %s", call.id, call.caller, agent, target.id)
            while call.state is CallState.ANSWERED and target.state is CallState.ANSWERED:
                key = await self.control.next_digit(call, 1.0)
                if key in MODES and target.state is CallState.ANSWERED:
                    await self.set_mode(session, MODES[key])
        finally:
            self.sessions.pop(call.id, None)
            if call.state is CallState.ANSWERED:
                await self.control.hangup(call, by="switch")
            log.info("call %s: monitoring of %s ended", call.id, agent)

    async def set_mode(self, session: MonitorSession, mode: str) -> None:
        if mode not in MODES.values():
            raise ValueError(f"unknown monitor mode {mode!r}")
        chosen = cast(MonitorMode, mode)
        await self.control.monitor(session.target, session.supervisor, chosen, session.agent_side,
                                   session.supervisor_side)
        if chosen != session.mode:
            log.info("call %s: monitor mode %s", session.supervisor.id, chosen)
        session.mode = chosen

    def find(self, supervisor: str) -> MonitorSession | None:
        """The live session of a supervisor (by extension) or of a supervisor's call (by id)."""
        return self.sessions.get(supervisor) or next(
            (s for s in self.sessions.values() if s.supervisor_ext == supervisor), None)

    async def ring_in(self, supervisor: str, agent: str, mode: str, timeout: float = 30.0) -> MonitorSession:
        """From a wallboard: ring ``supervisor``'s phone and, once it answers, join ``agent``'s
        live call in ``mode``. Raises PermissionError (not its supervisor), LookupError (no call,
        no answer) or ValueError (unknown mode)."""
        if mode not in MODES.values():
            raise ValueError(f"unknown monitor mode {mode!r}")
        if not self.may_supervise(supervisor, agent):
            raise PermissionError(f"{supervisor} is not a supervisor of {agent}")
        if self.find(supervisor) is not None:
            raise LookupError(f"{supervisor} is already monitoring a call (switch its mode instead)")
        found = self.control.live_call_of(agent)
        if found is None:
            raise LookupError(f"{agent} is not on a call")
        target, side = found
        call = await self.control.originate(caller=agent, source="monitor", did="", destination=f"monitor:{agent}",
                                            beside=target)
        leg = await self.control.ring(call, [supervisor], timeout)
        if isinstance(leg, int) or target.state is not CallState.ANSWERED:
            await self.control.hangup(call, by="switch")
            raise LookupError(f"{supervisor}'s phone did not answer ({leg})" if isinstance(leg, int)
                              else f"{agent}'s call ended")
        await self.control.hold_first_leg(call, leg)
        session = MonitorSession(call, target, agent, side, supervisor_side="b", supervisor_ext=supervisor)
        self.sessions[call.id] = session
        try:
            await self.set_mode(session, mode)
        except BaseException:
            self.sessions.pop(call.id, None)
            await self.control.hangup(call, by="switch")
            raise
        log.info("call %s: %s monitors %s on call %s (rung from the API)", call.id, supervisor, agent, target.id)
        self.control.spawn(self._until_over(session))
        return session

    async def _until_over(self, session: MonitorSession) -> None:
        call, target = session.supervisor, session.target
        try:
            while call.state is CallState.ANSWERED and target.state is CallState.ANSWERED:
                await self.control.next_digit(call, 1.0)  # a 1 s wait that returns at once on a hang-up
        finally:
            self.sessions.pop(call.id, None)
            if call.state is CallState.ANSWERED:
                await self.control.hangup(call, by="switch")
            log.info("call %s: monitoring of %s ended", call.id, session.agent)

    def snapshot(self) -> list[dict[str, Any]]:
        return [{"supervisor": s.supervisor_ext, "call": s.supervisor.id, "agent": s.agent,
                 "agent_call": s.target.id, "mode": s.mode, "seconds": round(time.time() - s.started, 1)}
                for s in self.sessions.values()]
