"""Runs an IVR flow against a port: the live call (prompts through the media worker, keys from
RFC 4733 / INFO / in-band) or a scripted dry run (a time and a digit sequence, for
``centralino route``). The walk is the same code for both, so the dry run shows what a caller
would really go through. Returns the action that leaves the IVR (queue, dial, ...) or None
(hang up).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from ..config.schema import Action, IvrCollect, IvrMenu, Plan, Step, prompt_list
from ..events import IVR_DIGITS
from ..schedules import ScheduleOverrides, schedule_open
from ..switch.b2bua.call import Call, CallState
from ..switch.b2bua.control import CallControl
from .flow import Flow, compile_flow, evaluate, expand

log = logging.getLogger("centralino.ivr")

MAX_STEPS = 500  # a flow that loops forever (goto cycles without input) is cut here
GOODBYE = Action(play="goodbye")


class Port(Protocol):
    async def play(self, prompts: list[str], *, barge_in: bool) -> bool:
        """Play; False when the caller is gone."""

    async def digit(self, timeout: float) -> str | None:
        """The next key, or None after ``timeout`` (or when the caller is gone)."""

    def now(self) -> datetime: ...

    def gone(self) -> bool: ...


@dataclass
class Walk:
    """What happened: one line per step (for logs and dry runs)."""

    trace: list[str] = field(default_factory=list)

    def __call__(self, text: str) -> None:
        self.trace.append(text)


async def run_flow(plan: Plan, flow: Flow, port: Port, variables: dict[str, str], walk: Walk,
                   forced: Mapping[str, bool] | None = None) -> Action | None:
    node_name = flow.start
    # a secret entry (PIN) is "*" wherever the walk is told: the log, dry runs
    secret = {n.collect.var for n in flow.nodes.values() if n.collect is not None and n.collect.secret}

    def shown(text: str) -> str:
        return expand(text, {**variables, **{k: "*" for k in secret if k in variables}} if secret else variables)

    for _ in range(MAX_STEPS):
        if port.gone():
            walk(f"{flow.name}/{node_name}: caller hung up")
            return None
        node = flow.nodes[node_name]
        where = f"{flow.name}/{node_name}"
        step: Step | None
        if node.play is not None:
            walk(f"{where}: play {', '.join(prompt_list(node.play))}")
            await port.play([expand(p, variables) for p in prompt_list(node.play)], barge_in=False)
            step = node.next
        elif node.set is not None:
            for key, value in node.set.items():
                variables[key] = expand(value, variables)
            walk(f"{where}: set " + ", ".join(f"{k}={shown(v)}" for k, v in node.set.items()))
            step = node.next
        elif node.if_ is not None:
            result = evaluate(node.if_, variables)
            walk(f"{where}: if {shown(node.if_)} → {'then' if result else 'else'}")
            step = node.then if result else node.else_
        elif node.schedule is not None:
            opened, why = schedule_open(plan.schedules, node.schedule, port.now(), forced or {})
            walk(f"{where}: schedule {node.schedule}: {'open' if opened else 'closed'} ({why})")
            step = node.open if opened else node.closed
        elif node.menu is not None:
            step = await _menu(node.menu, port, walk, where, variables)
        else:
            assert node.collect is not None
            step = await _collect(node.collect, port, variables, walk, where, node.next)
        if step is None:
            walk(f"{where}: end, hang up")
            return None
        if isinstance(step, str):
            node_name = step
            continue
        walk(f"{where}: leave the IVR → {_describe(step)}")
        return step
    walk(f"{flow.name}: more than {MAX_STEPS} steps without leaving, hang up")
    return None


def _keyed(variables: dict[str, str], entry: str) -> None:
    """Keep what the caller keyed, in order, for the CDR, the queue's call card and the CRM."""
    before = variables.get(IVR_DIGITS, "")
    variables[IVR_DIGITS] = f"{before},{entry}" if before else entry


async def _menu(menu: IvrMenu, port: Port, walk: Walk, where: str, variables: dict[str, str]) -> Step | None:
    for attempt in range(menu.retries + 1):
        if not await port.play(prompt_list(menu.prompt), barge_in=True):
            return None
        key = await port.digit(menu.timeout)
        if key is not None and key in menu.choices:
            walk(f"{where}: menu key {key}")
            _keyed(variables, key)
            return menu.choices[key]
        walk(f"{where}: menu " + (f"invalid key {key}" if key is not None else f"no key in {menu.timeout:g}s")
             + f" (try {attempt + 1} of {menu.retries + 1})")
        if port.gone():
            return None
        if key is not None and menu.invalid:
            await port.play(prompt_list(menu.invalid), barge_in=False)
    walk(f"{where}: menu failed")
    return menu.on_fail if menu.on_fail is not None else GOODBYE


def number_prompts(n: int) -> list[str]:
    """Prompts saying ``n`` (0–20 are recorded whole, larger numbers digit by digit)."""
    return [f"digit-{n}"] if 0 <= n <= 20 else [f"digit-{d}" for d in str(n)]


async def read_digits(port: Port, max_digits: int, terminator: str, timeout: float) -> str:
    """Keys until ``max_digits``, the terminator, ``timeout`` s of nothing, or a hang-up."""
    digits = ""
    while len(digits) < max_digits:
        key = await port.digit(timeout)
        if key is None or key == terminator:
            break
        digits += key
    return digits


async def _collect(spec: IvrCollect, port: Port, variables: dict[str, str], walk: Walk, where: str,
                   after: Step | None) -> Step | None:
    for attempt in range(spec.retries + 1):
        if not await port.play(prompt_list(spec.prompt), barge_in=True):
            return None
        digits = await read_digits(port, spec.max_digits, spec.terminator, spec.timeout)
        if len(digits) >= spec.min_digits:
            variables[spec.var] = digits
            shown = "*" if spec.secret else digits
            walk(f"{where}: collected {spec.var}={shown}")
            _keyed(variables, shown)
            return after
        walk(f"{where}: collected {len(digits)} digits, need {spec.min_digits} (try {attempt + 1} of {spec.retries + 1})")
        if port.gone():
            return None
        if spec.invalid:
            await port.play(prompt_list(spec.invalid), barge_in=False)
    return spec.on_fail if spec.on_fail is not None else GOODBYE


def _describe(action: Action) -> str:
    for verb in ("queue", "dial", "trunk", "voicemail", "conference", "ivr", "hangup", "play"):
        value = getattr(action, verb)
        if value is not None:
            return f"{verb} {value if not isinstance(value, list) else ', '.join(value)}"
    return "?"


class CallPort:
    """The live call: prompts played by the media worker (in the caller's language when a
    ``<language>/<prompt>`` file exists), keys from the call's key queue."""

    def __init__(self, control: CallControl, call: Call, clock: Callable[[], datetime] | None = None) -> None:
        self.control, self.call = control, call
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now().astimezone())

    def _localised(self, prompts: list[str]) -> list[str]:
        language = self.call.vars.get("language")
        if not language:
            return prompts
        out = []
        for name in prompts:
            try:
                self.control.resolve_prompts([f"{language}/{name}"])
                out.append(f"{language}/{name}")
            except Exception:
                out.append(name)
        return out

    async def play(self, prompts: list[str], *, barge_in: bool) -> bool:
        if barge_in and not self.call.keys().empty():
            return not self.gone()  # type-ahead: a key is already waiting, skip the prompt
        await self.control.play(self.call, self._localised(prompts), barge_in=barge_in)
        return not self.gone()

    async def digit(self, timeout: float) -> str | None:
        return await self.control.next_digit(self.call, timeout)

    def now(self) -> datetime:
        return self.clock()

    def gone(self) -> bool:
        return self.call.state is CallState.ENDED


class ScriptedPort:
    """A dry run: a fixed time and the keys a caller would press (one per prompt/collect read;
    '-' for "no key before the timeout")."""

    def __init__(self, at: datetime, keys: str) -> None:
        self.at = at
        self._keys: Iterator[str] = iter(keys)

    async def play(self, prompts: list[str], *, barge_in: bool) -> bool:
        return True

    async def digit(self, timeout: float) -> str | None:
        key = next(self._keys, None)
        return None if key in (None, "-") else key

    def now(self) -> datetime:
        return self.at

    def gone(self) -> bool:
        return False


async def dry_run(plan: Plan, ivr_name: str, at: datetime, keys: str,
                  variables: dict[str, str] | None = None) -> tuple[Action | None, list[str]]:
    walk = Walk()
    flow = compile_flow(ivr_name, plan.ivr[ivr_name])
    action = await run_flow(plan, flow, ScriptedPort(at, keys), dict(variables or {}), walk)
    return action, walk.trace


class IvrService:
    """The ``ivr`` application: answer, walk the flow, hand the call to the exit action."""

    def __init__(self, control: CallControl, plan_of: Callable[[], Plan], overrides: ScheduleOverrides) -> None:
        self.control, self.plan_of, self.overrides = control, plan_of, overrides
        self.clock: Callable[[], datetime] = lambda: datetime.now().astimezone()  # tests freeze it
        control.register_application("ivr", self.ivr_app)

    async def ivr_app(self, call: Call, action: Action) -> None:
        plan = self.plan_of()
        name = str(action.ivr)
        flow = compile_flow(name, plan.ivr[name])
        await self.control.answer_locally(call, destination=f"ivr:{name}")
        if call.state is not CallState.ANSWERED:
            return
        variables = call.vars
        variables.setdefault("caller", call.caller)
        variables.setdefault("did", call.did or call.called)
        walk = Walk()
        exit_action = await run_flow(plan, flow, CallPort(self.control, call, self.clock), variables, walk,
                                     self.overrides.forced)
        log.info("call %s IVR path: %s", call.id, " | ".join(walk.trace))
        if call.state is not CallState.ANSWERED:
            return
        await self.control.stop_playing(call)
        if exit_action is None:
            await self.control.hangup(call, by="switch")
        else:
            await self.control.execute(call, exit_action)
