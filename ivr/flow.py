"""An IVR as a graph of named nodes. The short form of the plan (greeting, schedule, closed,
menu) is compiled into the same graph, so the engine and the dry run know one shape only."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..config.schema import Action, Ivr, IvrMenu, IvrNode, Step, prompt_list


@dataclass(frozen=True)
class Flow:
    name: str
    start: str
    nodes: dict[str, IvrNode]


def compile_flow(name: str, ivr: Ivr) -> Flow:
    if ivr.nodes:
        return Flow(name, ivr.start or next(iter(ivr.nodes)), dict(ivr.nodes))
    nodes: dict[str, IvrNode] = {}
    first = "menu" if ivr.menu else None
    if ivr.menu:
        nodes["menu"] = IvrNode(menu=IvrMenu(prompt=ivr.prompt, choices=dict(ivr.menu), timeout=ivr.timeout,
                                             retries=ivr.retries))
    if ivr.greeting:
        nodes["greeting"] = IvrNode(play=prompt_list(ivr.greeting), next=first)
        first = "greeting"
    assert first is not None  # the schema requires a greeting or a menu
    if ivr.schedule is not None:
        closed: Step | None = None
        if ivr.closed is not None:
            then = ivr.closed.then
            if ivr.closed.play:
                nodes["closed"] = IvrNode(play=prompt_list(ivr.closed.play), next=then)
                closed = "closed"
            else:
                closed = then
        nodes["hours"] = IvrNode(schedule=ivr.schedule, open=first,
                                 closed=closed or Action(play="closed, goodbye"))
        first = "hours"
    return Flow(name, first, nodes)


_VAR = re.compile(r"\$\{([A-Za-z0-9_.]+)\}")
_CONDITION = re.compile(r"^\s*(.*?)\s*(==|!=|<=|>=|<|>|\bmatches\b)\s*(.*?)\s*$")


def expand(text: str, variables: dict[str, str]) -> str:
    return _VAR.sub(lambda m: variables.get(m.group(1), ""), text)


def evaluate(condition: str, variables: dict[str, str]) -> bool:
    """``left op right`` after ${var} expansion; numbers compare as numbers. A bare value is
    true when not empty."""
    m = _CONDITION.match(condition)
    if m is None:
        return bool(expand(condition, variables).strip())
    left, op, right = expand(m.group(1), variables).strip("'\""), m.group(2), expand(m.group(3), variables).strip("'\"")
    if op == "matches":
        return re.fullmatch(right, left) is not None
    a: float | str
    b: float | str
    try:
        a, b = float(left), float(right)
    except ValueError:
        a, b = left, right
    return {"==": a == b, "!=": a != b, "<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]  # type: ignore[operator]
