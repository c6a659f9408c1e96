"""Supervisors on agents' live calls: ``*222`` + the agent's extension from a desk phone.

The supervisor's call is answered on the media worker of the agent's call and joins it through
the worker's ``monitor`` command: listen (hears both, heard by none), whisper (heard by the agent
only: coaching) or barge (a third party heard by both). Keys during the session switch the mode:
1 listen, 2 whisper, 3 barge; ``POST /monitor`` does the same from a wallboard. Hanging up leaves
the call as it was (the worker puts the pair back on its plain relay); the agent's call ending ends
the session. Who may supervise whom is the plan's ``queues.<name>.supervisors``: a supervisor of a
queue may monitor its members.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config.schema import Plan
from ..switch.b2bua.call import Call, CallState

log = logging.getLogger("centralino.acd")

MODES = {"1": "listen", "2": "whisper", "3": "barge"}


@dataclass(eq=False)
class MonitorSession:
    supervisor: Call  # the supervisor's own call (answered by the switch)
    target: Call  # the agent's call
    agent: str
    agent_side: str  # "a" or "b": the agent's endpoint in the target call
    mode: str = "listen"
    started: float = field(default_factory=time.time)

    def endpoints(self) -> dict[str, str]:
        media = self.target.media
        assert media is not None and self.supervisor.media is not None
        other = "b" if self.agent_side == "a" else "a"
        return {"supervisor": self.supervisor.media.a["endpoint"],
                "agent": getattr(media, self.agent_side)["endpoint"],
                "caller": getattr(media, other)["endpoint"]}


class Supervision:
    def __init__(self, b2bua: Any, plan_of: Callable[[], Plan]) -> None:
        self.b2bua, self.plan_of = b2bua, plan_of
        self.sessions: dict[str, MonitorSession] = {}  # supervisor's call id → session
        self.install_features()

    def install_features(self) -> None:
        for code in [c for c, h in self.b2bua.features.items() if h == self._monitor_code]:
            del self.b2bua.features[code]
        code = self.plan_of().server.features.monitor
        if code:
            self.b2bua.features[code] = self._monitor_code

    def may_supervise(self, supervisor: str, agent: str) -> bool:
        return any(supervisor in q.supervisors and agent in q.members for q in self.plan_of().queues.values())

    def live_call_of(self, ext: str) -> tuple[Call, str] | None:
        """The bridged call ``ext`` is talking on, and which side of it ``ext`` is."""
        for call in self.b2bua.calls.values():
            if call.state is not CallState.ANSWERED or call.media is None or call.answered is None:
                continue  # not bridged to a callee (an IVR, a queue, a feature code)
            if call.answered.destination == f"extension:{ext}":
                return call, "b"
            if call.source == "extension" and call.caller == ext:
                return call, "a"
        return None

    async def _monitor_code(self, call: Call, rest: str) -> None:
        agent = rest
        if not agent:
            await self.b2bua.refuse(call, 484, "monitor: which extension?")
            return
        if not self.may_supervise(call.caller, agent):
            log.info("monitor: %s may not supervise %s", call.caller, agent)
            await self.b2bua.refuse(call, 403, f"{call.caller} is not a supervisor of {agent}")
            return
        found = self.live_call_of(agent)
        if found is None:
            await self.b2bua.refuse(call, 480, f"{agent} is not on a call")
            return
        target, side = found
        assert target.media is not None
        await self.b2bua.answer_locally(call, worker=target.media.worker, destination=f"monitor:{agent}")
        if call.state is not CallState.ANSWERED:
            return
        session = MonitorSession(call, target, agent, side)
        self.sessions[call.id] = session
        try:
            await self.set_mode(session, "listen")
            log.info("call %s: %s monitors %s on call %s", call.id, call.caller, agent, target.id)
            while call.state is CallState.ANSWERED and target.state is CallState.ANSWERED:
                key = await self.b2bua.next_digit(call, 1.0)
                if key in MODES and target.state is CallState.ANSWERED:
                    await self.set_mode(session, MODES[key])
        finally:
            self.sessions.pop(call.id, None)
            if call.state is CallState.ANSWERED:
                await self.b2bua.hangup(call, by="switch")
            log.info("call %s: monitoring of %s ended", call.id, agent)

    async def set_mode(self, session: MonitorSession, mode: str) -> None:
        if mode not in MODES.values():
            raise ValueError(f"unknown monitor mode {mode!r}")
        assert session.target.media is not None
        await session.target.media.worker.request({"cmd": "monitor", "mode": mode, **session.endpoints()})
        if mode != session.mode:
            log.info("call %s: monitor mode %s", session.supervisor.id, mode)
        session.mode = mode

    def find(self, supervisor: str) -> MonitorSession | None:
        """The live session of a supervisor (by extension) or of a supervisor's call (by id)."""
        return self.sessions.get(supervisor) or next(
            (s for s in self.sessions.values() if s.supervisor.caller == supervisor), None)

    def snapshot(self) -> list[dict[str, Any]]:
        return [{"supervisor": s.supervisor.caller, "call": s.supervisor.id, "agent": s.agent,
                 "agent_call": s.target.id, "mode": s.mode, "seconds": round(time.time() - s.started, 1)}
                for s in self.sessions.values()]
