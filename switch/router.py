"""The routing plan: ordered `routes`, first match wins (called number exact or regex, caller,
source, schedule), `${1}`… / `${to}` / `${from}` substitution into the action."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..config.schema import Action, Plan, Trunk
from ..schedules import schedule_open

_VAR = re.compile(r"\$\{(\w+)\}")


@dataclass(frozen=True)
class CallContext:
    to: str  # the called number / user, normalised
    caller: str  # the calling number / extension
    source: str  # "extension" or the trunk's name
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class Decision:
    action: Action
    index: int | None  # which route matched (None: the default)
    reasons: list[str]
    record: bool = False  # the matched route records the call

    def describe(self) -> str:
        head = f"route #{self.index}" if self.index is not None else "no route matched"
        return head + "\n" + "\n".join(f"  - {r}" for r in self.reasons)


NO_ROUTE = Action(hangup=404)


def normalise(number: str, trunk: Trunk | None) -> str:
    """Digits of a number; with a trunk's country code, national (8…) and E.164 (+7…, 7…)
    forms of one of its DIDs become that DID as written in the plan."""
    digits = re.sub(r"[^\d*#]", "", number)
    if trunk is None or not trunk.country_code:
        return digits or number
    def e164(n: str) -> str:
        n = re.sub(r"[^\d]", "", n)
        cc = trunk.country_code or ""
        if cc == "7" and len(n) == 11 and n.startswith("8"):
            return "7" + n[1:]
        return n
    for did in trunk.dids:
        if e164(did) == e164(digits):
            return did
    return digits


_NEEDS_SUBSTITUTION: dict[int, tuple[Action, bool]] = {}


def _has_variables(value: object) -> bool:
    if isinstance(value, str):
        return _VAR.search(value) is not None
    if isinstance(value, Action):
        return any(_has_variables(getattr(value, k)) for k in type(value).model_fields)
    if isinstance(value, list):
        return any(_has_variables(v) for v in value)
    return False


def substitute(action: Action, variables: dict[str, str]) -> Action:
    """The action with ${to}/${from} filled in. Most actions have no variables: they are used as
    they are (the plan's actions are not modified), found once per action object."""
    known = _NEEDS_SUBSTITUTION.get(id(action))
    if known is None or known[0] is not action:
        if len(_NEEDS_SUBSTITUTION) > 4096:
            _NEEDS_SUBSTITUTION.clear()
        known = _NEEDS_SUBSTITUTION[id(action)] = (action, _has_variables(action))
    if not known[1]:
        return action
    return _substitute(action, variables)


def _substitute(action: Action, variables: dict[str, str]) -> Action:
    def sub(value: object) -> object:
        if isinstance(value, str):
            return _VAR.sub(lambda m: variables.get(m.group(1), m.group(0)), value)
        if isinstance(value, Action):
            return _substitute(value, variables)
        if isinstance(value, list):
            return [sub(v) for v in value]
        return value
    return action.model_copy(update={k: sub(getattr(action, k)) for k in type(action).model_fields})


class Router:
    def __init__(self, plan: Plan, forced: dict[str, bool] | None = None) -> None:
        self.plan = plan
        self.forced = forced or {}  # schedules forced open/closed by an administrator

    def route(self, ctx: CallContext) -> Decision:
        reasons: list[str] = []
        for i, route in enumerate(self.plan.routes):
            m = route.match
            label = f"route #{i}" + (f" ({route.name})" if route.name else "")
            variables = {"to": ctx.to, "from": ctx.caller}
            if m.to is not None:
                hit = re.fullmatch(m.to, ctx.to)
                if hit is None:
                    reasons.append(f"{label}: to {ctx.to!r} does not match {m.to!r}")
                    continue
                variables.update({str(n): g or "" for n, g in enumerate(hit.groups(), 1)})
            if m.from_ is not None:
                if m.from_ == "extension" or m.from_ in self.plan.trunks:
                    if ctx.source != m.from_:
                        reasons.append(f"{label}: source {ctx.source!r} is not {m.from_!r}")
                        continue
                elif ctx.source != "extension" and m.source != ctx.source:
                    # a trunk's From is whatever its caller wrote: a caller pattern only counts
                    # on a trunk call when the route names that trunk as its source
                    reasons.append(f"{label}: caller pattern {m.from_!r} is not checked on a call from trunk "
                                   f"{ctx.source!r} (its caller is not authenticated; add source: {ctx.source})")
                    continue
                elif re.fullmatch(m.from_, ctx.caller) is None:
                    reasons.append(f"{label}: caller {ctx.caller!r} does not match {m.from_!r}")
                    continue
            if m.source is not None and m.source not in ("any", ctx.source):
                reasons.append(f"{label}: source {ctx.source!r} is not {m.source!r}")
                continue
            if m.schedule is not None:
                open_, why = schedule_open(self.plan.schedules, m.schedule, ctx.at, self.forced)
                if not open_:
                    reasons.append(f"{label}: schedule {m.schedule}: {why}")
                    continue
                reasons.append(f"{label}: schedule {m.schedule}: {why}")
            reasons.append(f"{label}: matches")
            return Decision(substitute(route.action, variables), i, reasons, route.record)
        reasons.append("default: hangup 404")
        return Decision(NO_ROUTE, None, reasons)
