"""What a service does when the plan is reloaded: ``plan_changed(plan)`` with the new, valid plan
(an invalid plan never reaches it). The app keeps one list of them, so a new service is added
in one place."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .schema import Plan


@runtime_checkable
class Reloadable(Protocol):
    def plan_changed(self, plan: Plan) -> None: ...
