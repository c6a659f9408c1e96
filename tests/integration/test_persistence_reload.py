"""The switch as a user runs it (`centralino run` in its own process): bindings survive kill -9,
SIGHUP and `centralino reload` apply a valid plan and refuse an invalid one."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

from centralino.bench.sipp import run_sipp, write_users_csv
from helpers import free_port, need_tool, plan_text, wait_for

USERS = [(str(2000 + i), f"pw{i}") for i in range(30)]


def start(plan, log):
    return subprocess.Popen([sys.executable, "-m", "centralino", "run", "--config", str(plan)],
                            stdout=log, stderr=subprocess.STDOUT)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "centralino", *args], capture_output=True, text=True, timeout=30)


def write_plan(tmp_path, sip_port, api_port, users=USERS, extra=""):
    text = plan_text(tmp_path, extensions="extensions:\n" + "".join(f'  "{u}": {{password: "{p}"}}\n' for u, p in users),
                     extra=extra)
    text = text.replace('"udp:127.0.0.1:0"', f'"udp:127.0.0.1:{sip_port}"').replace(
        '"tcp:127.0.0.1:0"', f'"tcp:127.0.0.1:{sip_port}"').replace('"127.0.0.1:0"', f'"127.0.0.1:{api_port}"')
    plan = tmp_path / "plan.yaml"
    plan.write_text(text)
    return plan


def status(plan):
    r = cli("status", "--config", str(plan), "--json")
    return json.loads(r.stdout) if r.returncode == 0 else None


def test_kill_9_and_restart_keeps_bindings(tmp_path):
    need_tool("sipp")
    sip_port, api_port = free_port(), free_port(socket.SOCK_STREAM)
    plan = write_plan(tmp_path, sip_port, api_port)
    log = open(tmp_path / "switch.log", "w")
    proc = start(plan, log)
    try:
        assert wait_for(lambda: status(plan), 15)
        inf = write_users_csv(tmp_path / "users.csv", USERS, "example.com")
        result = run_sipp("register_digest.xml", f"127.0.0.1:{sip_port}", rate=100, count=len(USERS), inf=inf,
                          auth_uri="example.com")
        assert result.successful == len(USERS), result.errors
        before = {(r["aor"], r["contact"]) for r in status(plan)["registrations"]}
        assert len(before) == len(USERS)
        os.kill(proc.pid, signal.SIGKILL)  # no shutdown, no flush: what was answered 200 must be on disk
        proc.wait(10)
        proc = start(plan, log)
        after = wait_for(lambda: status(plan), 15)
        assert {(r["aor"], r["contact"]) for r in after["registrations"]} == before
        human = cli("status", "--config", str(plan)).stdout
        assert "registrations (30)" in human
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_reload_valid_and_invalid_plans(tmp_path):
    sip_port, api_port = free_port(), free_port(socket.SOCK_STREAM)
    users = USERS[:2]
    plan = write_plan(tmp_path, sip_port, api_port, users=users)
    log = open(tmp_path / "switch.log", "w")
    proc = start(plan, log)
    try:
        assert wait_for(lambda: status(plan), 15)
        from helpers import SipClient
        c = SipClient(("127.0.0.1", sip_port))
        assert c.register_with_auth("2000", "pw0").status == 200
        # a new extension through SIGHUP; the registration stays
        plan = write_plan(tmp_path, sip_port, api_port, users=[*users, ("2999", "newpw")])
        loaded = status(plan)["plan_loaded_at"]
        os.kill(proc.pid, signal.SIGHUP)
        # (registering before the reload lands would count as failed logins, and get us banned)
        assert wait_for(lambda: status(plan)["plan_loaded_at"] > loaded, 10)
        assert SipClient(("127.0.0.1", sip_port)).register_with_auth("2999", "newpw").status == 200
        assert {r["aor"] for r in status(plan)["registrations"]} == {"2000", "2999"}
        # an invalid plan is refused with file:line: path, and the old one stays in force
        good_text = plan.read_text()
        plan.write_text(good_text.replace("extensions:", "extensions:\n  \"3000\": {pasword: x}"))
        r = cli("reload", "--api", f"127.0.0.1:{api_port}")
        assert r.returncode == 1 and f"{plan}:" in r.stderr and "extensions.3000.pasword: unknown key" in r.stderr
        assert SipClient(("127.0.0.1", sip_port)).register_with_auth("2999", "newpw").status == 200
        # a valid plan through `centralino reload`: dropping 2999 drops its binding, keeps 2000's
        plan.write_text(good_text.replace('  "2999": {password: "newpw"}\n', ""))
        r = cli("reload", "--api", f"127.0.0.1:{api_port}")
        assert r.returncode == 0, r.stderr
        assert {r["aor"] for r in status(plan)["registrations"]} == {"2000"}
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
