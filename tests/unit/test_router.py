"""The routing plan: first match wins, regex groups, sources, schedules, DID normalisation;
and the `centralino route` dry run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime

from centralino.config.loader import parse_plan_text
from centralino.switch.router import CallContext, Router, normalise

PLAN = textwrap.dedent("""\
    extensions: {"1001": {password: x}, "1002": {password: y}}
    trunks:
      provider: {host: 127.0.0.1, dids: ["88005553535"], country_code: "7"}
    schedules:
      business: {timezone: Europe/Rome, open: {mon-fri: "09:00-18:00"}, holidays: ["2026-12-25"]}
    routes:
      - {name: office hours, match: {to: "88005553535", schedule: business}, action: {dial: "1001"}}
      - {name: closed, match: {to: "88005553535"}, action: {hangup: 480}}
      - {match: {to: "^9(\\\\d+)$", from: extension}, action: {trunk: provider, number: "${1}"}}
      - {match: {to: "^1\\\\d{3}$", from: "^10\\\\d\\\\d$"}, action: {dial: "${to}", timeout: 20, else: {dial: "${from}"}}}
    """)


def route(to, caller="1001", source="extension", at=datetime(2026, 11, 24, 10, 0, tzinfo=UTC)):
    plan = parse_plan_text(PLAN, "p.yaml").plan
    return Router(plan).route(CallContext(to=to, caller=caller, source=source, at=at))


def test_day_night_override_forces_a_schedule_either_way():
    plan = parse_plan_text(PLAN, "p.yaml").plan
    day, night = datetime(2026, 11, 24, 10, 0, tzinfo=UTC), datetime(2026, 11, 24, 22, 0, tzinfo=UTC)
    closed = Router(plan, {"business": False}).route(CallContext(to="88005553535", caller="1", source="provider", at=day))
    assert closed.action.hangup == 480 and "forced closed by an override" in closed.describe()
    opened = Router(plan, {"business": True}).route(CallContext(to="88005553535", caller="1", source="provider", at=night))
    assert opened.action.dial == "1001"
    assert Router(plan, {}).route(CallContext(to="88005553535", caller="1", source="provider", at=night)).action.hangup == 480


def test_schedule_open_and_closed_and_holiday():
    assert route("88005553535", source="provider").action.dial == "1001"  # Tuesday 11:00 in Rome
    night = route("88005553535", source="provider", at=datetime(2026, 11, 24, 20, 0, tzinfo=UTC))
    assert night.action.hangup == 480 and night.index == 1
    assert any("outside opening hours" in r for r in night.reasons)
    xmas = route("88005553535", source="provider", at=datetime(2026, 12, 25, 10, 0, tzinfo=UTC))
    assert xmas.action.hangup == 480 and any("holiday" in r for r in xmas.reasons)


def test_groups_sources_and_else_substitution():
    out = route("95551234")
    assert out.action.trunk == "provider" and out.action.number == "5551234"
    assert route("95551234", source="provider").action.hangup == 404  # only extensions dial out
    d = route("1002", caller="1001")
    assert d.action.dial == "1002" and d.action.else_.dial == "1001"
    assert route("1002", caller="2001").action.hangup == 404


def test_did_normalisation():
    trunk = parse_plan_text(PLAN, "p").plan.trunks["provider"]
    assert normalise("+7 (800) 555-35-35", trunk) == "88005553535"
    assert normalise("78005553535", trunk) == "88005553535"
    assert normalise("5551234", trunk) == "5551234"


def test_route_command_dry_run(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    r = subprocess.run([sys.executable, "-m", "centralino", "route", "+78005553535", "--source", "provider",
                        "--at", "2026-11-24T21:00:00+01:00", "--config", str(plan)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "call to '88005553535'" in r.stdout and "route #1" in r.stdout
    assert "schedule business: Tue 21:00 Europe/Rome is outside opening hours" in r.stdout
    assert 'action: {"hangup": 480}' in r.stdout
