"""`centralino check` on good and bad plans: every error names file, line and key path."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from centralino.config.loader import PlanInvalid, load_plan, parse_plan_text

ROOT = Path(__file__).resolve().parents[2]


def check(*files: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "centralino", "check", *files],
                          capture_output=True, text=True, timeout=60)


def test_default_and_example_plans_are_valid():
    assert load_plan(None).plan.server.sip.listen == ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
    r = check(str(ROOT / "config" / "examples" / "callcentre.yaml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK" in r.stdout


def test_bad_plan_lists_every_error_with_line_and_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent("""\
        server:
          sip:
            listen: ["udp:1.2.3.4"]
            domian: pbx.example.com
        extensions:
          "1001": {password: x, max_contacts: 0}
        routes:
          - match: {to: "[unclosed"}
            action: {dial: "1001"}
        """))
    r = check(str(bad))
    assert r.returncode == 1
    lines = r.stdout.strip().splitlines()
    assert f"{bad}:3: server.sip.listen:" in lines[0] and "transport:host:port" in lines[0]
    assert any(line.startswith(f"{bad}:4: server.sip.domian: unknown key") for line in lines)
    assert any(line.startswith(f"{bad}:6: extensions.1001.max_contacts:") for line in lines)
    assert any(line.startswith(f"{bad}:8: routes[0].match.to: not a valid regular expression") for line in lines)


def test_cross_references(tmp_path):
    text = textwrap.dedent("""\
        extensions:
          "1001": {password: x}
        routes:
          - match: {to: "800"}
            action: {ivr: nope}
        queues:
          sales: {members: ["1001", "2002"]}
        """)
    with pytest.raises(PlanInvalid) as info:
        parse_plan_text(text, "p.yaml")
    msgs = [str(e) for e in info.value.errors]
    assert "p.yaml:5: routes[0].action.ivr: unknown ivr 'nope'" in msgs
    assert "p.yaml:7: queues.sales.members[1]: unknown extension '2002'" in msgs


def test_yaml_syntax_error_has_line(tmp_path):
    bad = tmp_path / "syntax.yaml"
    bad.write_text("extensions:\n  '1001': {password: x\nroutes: []\n")
    r = check(str(bad))
    assert r.returncode == 1 and f"{bad}:" in r.stdout and "YAML syntax error" in r.stdout


def test_action_needs_exactly_one_verb():
    with pytest.raises(PlanInvalid) as info:
        parse_plan_text("routes:\n  - action: {dial: '1', hangup: 486}\n", "p.yaml")
    assert "p.yaml:2: routes[0].action: an action needs exactly one of" in str(info.value)


def test_numbers_as_names_and_values():
    plan = parse_plan_text("extensions:\n  1001: {password: 1234}\nroutes:\n  - action: {dial: 1001}\n", "p").plan
    assert plan.extensions["1001"].password == "1234" and plan.routes[0].action.dial == "1001"


def test_duplicate_key_is_an_error():
    with pytest.raises(PlanInvalid) as info:
        parse_plan_text("extensions:\n  '1001': {password: a}\n  '1001': {password: b}\n", "p.yaml")
    assert "p.yaml:3: extensions.1001: duplicate key" in str(info.value)


@pytest.mark.parametrize(("host", "expected"), [
    ('"127.0.0.1:5070"', ("127.0.0.1", 5070, "udp")),  # FreeSWITCH's proxy = host:port
    ('"sip:127.0.0.1:5070;transport=tcp"', ("127.0.0.1", 5070, "tcp")),  # Asterisk's contact
    ('"sips:203.0.113.7"', ("203.0.113.7", 5061, "tls")),
    ('"[2001:db8::5]:5080"', ("2001:db8::5", 5080, "udp")),
    ("203.0.113.7", ("203.0.113.7", 5060, "udp")),
])
def test_trunk_host_forms(host, expected):
    plan = parse_plan_text(f"trunks:\n  t: {{host: {host}}}\n", "p.yaml").plan
    t = plan.trunks["t"]
    assert (t.host, t.port, t.transport) == expected


@pytest.mark.parametrize(("trunk", "message"), [
    ('{host: "127.0.0.1:5070", port: 5080}', "host says port 5070 but port: is 5080"),
    ('{host: "sip:user@127.0.0.1"}', "has a user part"),
    ('{host: "pbx example com"}', "not a host name"),
    ('{host: "sip:127.0.0.1;transport=sctp"}', "not udp, tcp or tls"),
])
def test_bad_trunk_hosts_are_errors_with_their_line(trunk, message):
    with pytest.raises(PlanInvalid) as info:
        parse_plan_text(f"extensions: {{}}\ntrunks:\n  t: {trunk}\n", "p.yaml")
    assert any(str(e).startswith("p.yaml:3: trunks.t") and message in str(e) for e in info.value.errors), info.value


def test_check_rejects_a_trunk_host_that_does_not_resolve(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text("trunks:\n  provider:\n    host: no-such-host.invalid\n")
    r = check(str(plan))
    assert r.returncode == 1
    assert r.stdout.startswith(f"{plan}:3: trunks.provider.host: cannot resolve 'no-such-host.invalid'"), r.stdout


def test_check_names_unknown_dial_targets(tmp_path):
    with pytest.raises(PlanInvalid) as info:
        parse_plan_text('extensions: {"1001": {}}\nroutes:\n  - {match: {to: "9"}, action: {dial: "1001,1009"}}\n'
                        '  - {match: {to: "8"}, action: {dial: "${to}"}}\n', "p.yaml")
    assert [str(e) for e in info.value.errors] == ["p.yaml:3: routes[0].action.dial: unknown extension '1009'"]
