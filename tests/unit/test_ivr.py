"""IVR flows without sockets: the short form compiles to nodes, conditions, collect, the
dry run's path for a time and keys, and plan errors with file, line and key path."""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from centralino.config.loader import PlanInvalid, parse_plan_text
from centralino.ivr.engine import dry_run
from centralino.ivr.flow import evaluate

GRAPH = """\
extensions: {"1001": {password: x}}
schedules:
  office: {timezone: Europe/Rome, open: {mon-fri: "09:00-18:00"}, holidays: ["2026-12-25"]}
queues:
  vip: {members: ["1001"]}
  general: {members: ["1001"]}
ivr:
  main:
    nodes:
      hours: {schedule: office, open: language, closed: {play: "closed, goodbye"}}
      language: {menu: {prompt: menu, choices: {"1": english, "2": italian}, timeout: 3, retries: 1}}
      english: {set: {language: en}, next: account}
      italian: {set: {language: it, skill.italian: "7"}, next: account}
      account: {collect: {prompt: enter-pin, var: account, min_digits: 4, max_digits: 6}, next: check}
      check: {if: "${account} matches 9\\\\d+", then: {queue: vip}, else: {queue: general}}
"""


def at(day: int, hour: int) -> datetime:
    return datetime(2026, 11, day, hour, 0, tzinfo=ZoneInfo("Europe/Rome"))


def run(text: str, when: datetime, keys: str):
    plan = parse_plan_text(text, "plan.yaml").plan
    return asyncio.run(dry_run(plan, "main", when, keys))


def test_graph_paths_for_time_and_keys():
    action, trace = run(GRAPH, at(23, 10), "29123#")
    assert action is not None and action.queue == "vip"
    assert trace[0].startswith("main/hours: schedule office: open")
    assert "main/italian: set language=it, skill.italian=7" in trace
    assert "main/account: collected account=9123" in trace
    action, _ = run(GRAPH, at(23, 10), "1123456")  # max 6 digits, no terminator needed
    assert action.queue == "general"
    action, trace = run(GRAPH, at(22, 10), "")  # Sunday
    assert action.play == "closed, goodbye" and "closed" in trace[0]
    action, _ = run(GRAPH, datetime(2026, 12, 25, 10, tzinfo=ZoneInfo("Europe/Rome")), "1")
    assert action.play == "closed, goodbye"  # a holiday


def test_menu_timeouts_and_invalid_keys_end_in_goodbye():
    action, trace = run(GRAPH, at(23, 10), "7-")
    assert action.play == "goodbye"
    assert any("invalid key 7 (try 1 of 2)" in t for t in trace)
    assert any("no key in 3s (try 2 of 2)" in t for t in trace)
    action, trace = run(GRAPH, at(23, 10), "112#12#")  # too short twice
    assert action.play == "goodbye" and sum("need 4" in t for t in trace) == 3  # retries: 2


def test_short_form_compiles_to_the_same_walk():
    text = """\
extensions: {"1001": {password: x}}
schedules: {office: {timezone: UTC, open: {mon-sun: "00:00-24:00"}}}
queues: {sales: {members: ["1001"]}}
ivr:
  main: {greeting: welcome, schedule: office, menu: {"1": {queue: sales}, "0": {dial: "1001"}}}
"""
    action, trace = run(text, at(22, 3), "1")
    assert action.queue == "sales"
    assert [t.split(":")[0] for t in trace] == ["main/hours", "main/greeting", "main/menu", "main/menu"]


def test_conditions():
    v = {"n": "42", "s": "abc"}
    assert evaluate("${n} > 7", v) and evaluate("${n} == 42", v) and not evaluate("${n} < 7", v)
    assert evaluate("${s} != abd", v) and evaluate("${s} matches a.c", v)
    assert evaluate("${s}", v) and not evaluate("${missing}", v)


def test_unknown_nodes_queues_and_prompts_are_load_errors_with_lines():
    bad = GRAPH.replace("next: check", "next: chekc").replace("{queue: vip}", "{queue: vipp}").replace(
        "prompt: enter-pin", "prompt: no-such-prompt")
    with pytest.raises(PlanInvalid) as exc:
        parse_plan_text(bad, "plan.yaml")
    text = str(exc.value)
    assert "plan.yaml:15" in text and "ivr.main.nodes.account.next" in text and "chekc" in text
    assert "ivr.main.nodes.check.then.queue" in text and "vipp" in text
    assert "no-such-prompt" in text
    with pytest.raises(PlanInvalid, match="exactly one of play, menu"):
        parse_plan_text(GRAPH.replace("{set: {language: en}, next: account}",
                                      "{set: {language: en}, play: welcome, next: account}"), "plan.yaml")


def test_the_callers_keys_are_kept_in_order_and_secrets_masked():
    """Menu choices and collected entries go to the ``ivr_digits`` variable (the CDR, the agent's
    call card and the webhooks read it); an invalid key is not a choice; a ``secret`` entry is '*'."""
    from centralino.ivr.engine import ScriptedPort, Walk, compile_flow, run_flow

    plan = parse_plan_text(GRAPH, "plan.yaml").plan
    variables: dict[str, str] = {}
    asyncio.run(run_flow(plan, compile_flow("main", plan.ivr["main"]), ScriptedPort(at(23, 10), "729123#"),
                         variables, Walk()))
    assert variables["ivr_digits"] == "2,9123" and variables["account"] == "9123"
    secret = GRAPH.replace("min_digits: 4, max_digits: 6}", "min_digits: 4, max_digits: 6, secret: true}")
    plan = parse_plan_text(secret, "plan.yaml").plan
    variables = {}
    walk = Walk()
    asyncio.run(run_flow(plan, compile_flow("main", plan.ivr["main"]), ScriptedPort(at(23, 10), "19123#"),
                         variables, walk))
    assert variables["ivr_digits"] == "1,*" and variables["account"] == "9123"  # the flow itself still has it
    assert "main/account: collected account=*" in walk.trace and not any("9123" in t for t in walk.trace)
