"""Click-to-call (``POST /api/v1/calls {agent, number}``): the agent's phone rings first, showing
the number it is about to call; once the agent answers, the number is dialled the way the plan
would take it from that agent's extension (an extension directly, else the trunk(s) of the first
route that matches) and the two are bridged. The call is the switch's own (no incoming leg), so
it is recorded, logged and published like a callback."""

from __future__ import annotations

import logging

from ..config.schema import Plan
from ..switch.b2bua.call import Call
from ..switch.b2bua.control import CallControl
from ..switch.router import CallContext, Router

log = logging.getLogger("centralino.api")

AGENT_RING_SECONDS = 30.0
CALLEE_RING_SECONDS = 60.0


def way_out(plan: Plan, agent: str, number: str) -> tuple[str, list[str]]:
    """(the number to dial, the trunks to dial it through; none: an extension). ValueError when
    the plan has no way from ``agent`` to ``number``."""
    if number in plan.extensions:
        return number, []
    action = Router(plan).route(CallContext(to=number, caller=agent, source="extension")).action
    trunks = [action.trunk] if isinstance(action.trunk, str) else list(action.trunk or [])
    if not trunks:
        raise ValueError(f"no route takes {number!r} out through a trunk from extension {agent}")
    return action.number or number, trunks


async def click_to_call(control: CallControl, plan: Plan, agent: str, number: str) -> Call:
    """Start the call; the rest runs in the background (the bus tells how it goes)."""
    target, trunks = way_out(plan, agent, number)
    call = await control.originate(caller=number, source="extension", did="", destination=f"click-to-call:{agent}",
                                   presented=agent)
    call.vars["click_to_call"] = agent
    control.spawn(_connect(control, call, agent, target, trunks))
    return call


async def _connect(control: CallControl, call: Call, agent: str, target: str, trunks: list[str]) -> None:
    first = await control.ring(call, [agent], AGENT_RING_SECONDS)
    if isinstance(first, int):
        log.info("call %s: click-to-call: %s did not answer (%d)", call.id, agent, first)
        await control.hangup(call, by="switch")
        return
    await control.hold_first_leg(call, first)
    leg = await control.ring_partner(call, target, CALLEE_RING_SECONDS, trunks=trunks)
    if isinstance(leg, int):
        log.info("call %s: click-to-call: %s answered %d", call.id, target, leg)
        await control.hangup(call, by="switch")
        return
    await control.bridge(call, first)
