"""The dialer in the running switch: a runner per campaign of the plan, the disposition feature
code (``*5`` + the disposition's number, from the agent's phone after a campaign call), and
what the control API and the CLI ask (start, pause, stop, status, dispositions)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..acd.service import AcdService
from ..config.schema import Plan
from ..events import EventBus
from ..storage.database import Database
from ..switch.b2bua.call import Call
from ..switch.b2bua.control import CallControl
from .runner import CampaignRunner, CampaignState

log = logging.getLogger("centralino.dialer")

DISPOSITION_CODE = "*5"  # then the disposition's number in the campaign's list (1 = the first)
DISPOSITION_WINDOW = 600.0  # an agent sets the disposition of a call that ended this recently


class DialerService:
    def __init__(self, control: CallControl, plan_of: Callable[[], Plan], acd: AcdService, bus: EventBus,
                 db: Database) -> None:
        self.control, self.plan_of, self.acd, self.bus, self.db = control, plan_of, acd, bus, db
        self.runners: dict[str, CampaignRunner] = {}
        self.plan_changed(plan_of())

    def plan_changed(self, plan: Plan) -> None:
        for name in plan.campaigns:
            if name not in self.runners:
                self.runners[name] = CampaignRunner(name, self.plan_of, self.control, self.acd, self.bus, self.db)
        for name in [n for n in self.runners if n not in plan.campaigns]:
            self.runners.pop(name).stop()
        for runner in self.runners.values():
            runner.pacer = runner._make_pacer() if runner.state is CampaignState.STOPPED else runner.pacer
        self.control.unregister_feature(self._disposition_code)
        if plan.campaigns:
            self.control.register_feature(DISPOSITION_CODE, self._disposition_code)

    def runner(self, name: str) -> CampaignRunner:
        if name not in self.runners:
            raise KeyError(f"no campaign {name!r}")
        return self.runners[name]

    async def action(self, name: str, action: str) -> dict[str, Any]:
        runner = self.runner(name)
        if action == "start":
            await runner.start()
        elif action == "pause":
            runner.pause()
        elif action == "stop":
            runner.stop()
        elif action != "status":
            raise ValueError(f"unknown campaign action {action!r} (start, pause, stop, status)")
        return await runner.status()

    def lead_of_agent(self, agent: str) -> tuple[CampaignRunner, int] | None:
        """The campaign and lead of the agent's latest campaign call (for its disposition)."""
        best: tuple[CampaignRunner, int, float] | None = None
        for runner in self.runners.values():
            found = runner.last_lead_of.get(agent)
            if found is not None and (best is None or found[1] > best[2]):
                best = (runner, found[0], found[1])
        if best is None or time.time() - best[2] > DISPOSITION_WINDOW + 7200:
            return None
        return best[0], best[1]

    async def disposition(self, agent: str, disposition: str, *, lead: int | None = None, campaign: str | None = None,
                          callback_at: float | None = None, callback_agent: str = "") -> dict[str, Any]:
        if lead is not None and campaign is not None:
            runner, lead_id = self.runner(campaign), lead
        else:
            found = self.lead_of_agent(agent)
            if found is None:
                raise KeyError(f"agent {agent} has no recent campaign call")
            runner, lead_id = found
        await runner.set_disposition(lead_id, agent, disposition, callback_at=callback_at,
                                     callback_agent=callback_agent)
        return {"ok": True, "campaign": runner.name, "lead": lead_id, "disposition": disposition}

    async def _disposition_code(self, call: Call, rest: str) -> None:
        """``*5N`` from the agent's phone: the N-th disposition of the campaign of its last call."""
        found = self.lead_of_agent(call.caller)
        if found is None or not rest.isdigit():
            await self.control.refuse(call, 404, "no recent campaign call or no disposition number")
            return
        runner, lead_id = found
        options = runner.campaign.dispositions
        index = int(rest) - 1
        if not 0 <= index < len(options):
            await self.control.refuse(call, 484, f"disposition 1-{len(options)}")
            return
        await self.control.answer_locally(call, destination=f"feature:disposition-{options[index]}")
        await runner.set_disposition(lead_id, call.caller, options[index])
        await self.control.play(call, ["tone:880/200"])
        await self.control.hangup(call, by="switch")

    def stop_all(self) -> None:
        for runner in self.runners.values():
            runner.stop()
