"""Registration end to end over real sockets with independent clients: SIPp (digest REGISTER
scenario, UDP and TCP), pyVoIP, and baresip (in its own network namespace)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from centralino.bench.sipp import run_sipp, write_users_csv
from helpers import (
    NetNamespace,
    RunningSwitch,
    baresip_config,
    free_port,
    need_tool,
    plan_text,
    wait_for,
)

USERS = [(str(1000 + i), f"pw-{1000 + i}") for i in range(1, 21)]


def _extensions(users=USERS) -> str:
    return "extensions:\n" + "".join(f'  "{u}": {{password: "{p}"}}\n' for u, p in users)


@pytest.fixture
def switch(tmp_path):
    with RunningSwitch(plan_text(tmp_path, extensions=_extensions())) as sw:
        yield sw


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_sipp_registers_with_digest(switch, tmp_path, transport):
    need_tool("sipp")
    inf = write_users_csv(tmp_path / "users.csv", USERS, "example.com")
    proto = "udp" if transport == "u1" else "tcp"
    host, port = switch.address(proto)
    result = run_sipp("register_digest.xml", f"{host}:{port}", rate=50, count=len(USERS), inf=inf,
                      transport=transport, auth_uri="example.com")
    assert result.successful == len(USERS) and result.failed == 0, result.errors
    regs = switch.status()["registrations"]
    assert {r["aor"] for r in regs} == {u for u, _ in USERS}
    assert all(r["user_agent"] == "SIPp" for r in regs)
    assert all(r["source"].startswith(proto) for r in regs)


def test_sipp_wrong_password_is_refused(switch, tmp_path):
    need_tool("sipp")
    inf = write_users_csv(tmp_path / "bad.csv", [("1001", "wrong")], "example.com")
    host, port = switch.address("udp")
    result = run_sipp("register_digest.xml", f"{host}:{port}", rate=10, count=1, inf=inf, auth_uri="example.com")
    assert result.successful == 0 and result.failed == 1
    assert "401" in result.errors  # the authenticated REGISTER got another challenge, not a 200
    assert switch.status()["registrations"] == []


def test_pyvoip_registers_and_unregisters(switch):
    from pyVoIP.VoIP import PhoneStatus, VoIPPhone

    host, port = switch.address("udp")
    sip_port = free_port()
    phone = VoIPPhone(host, port, "1005", "pw-1005", myIP="127.0.0.1", sipPort=sip_port,
                      rtpPortLow=(rtp := free_port()), rtpPortHigh=rtp + 10)
    phone.start()
    try:
        assert wait_for(lambda: phone.get_status() == PhoneStatus.REGISTERED, 10)
        regs = switch.status()["registrations"]
        assert [(r["aor"], r["user_agent"]) for r in regs] == [("1005", "pyVoIP 1.6.8")]
        assert regs[0]["contact"].startswith(f"sip:1005@127.0.0.1:{sip_port}")
    finally:
        phone.stop()
    assert wait_for(lambda: switch.status()["registrations"] == [], 5), "Expires: 0 removes the binding"




def test_baresip_registers_and_shows_in_status(tmp_path):
    """The README's promise: baresip registers to a running switch and `centralino status`
    shows it. Both run in a network namespace (baresip 1.0 does not use loopback)."""
    baresip = need_tool("baresip")
    with NetNamespace() as ns:
        plan = tmp_path / "plan.yaml"
        api_port = free_port(host="127.0.0.1")
        plan.write_text(plan_text(tmp_path, extensions=_extensions(), host=ns.switch_ip)
                        .replace(f'"udp:{ns.switch_ip}:0"', f'"udp:{ns.switch_ip}:5060"')
                        .replace(f'"tcp:{ns.switch_ip}:0"', f'"tcp:{ns.switch_ip}:5060"')
                        .replace('"127.0.0.1:0"', f'"127.0.0.1:{api_port}"'))
        server = subprocess.Popen(ns.cmd(sys.executable, "-m", "centralino", "run", "--config", str(plan)),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        conf = tmp_path / "baresip"
        conf.mkdir()
        (conf / "config").write_text(baresip_config(ns.phone_ip, 5070))
        (conf / "accounts").write_text(f"<sip:1003@{ns.switch_ip}:5060;transport=udp>;auth_pass=pw-1003;regint=300\n")
        phone = None
        try:
            def status():
                r = subprocess.run(ns.cmd(sys.executable, "-m", "centralino", "status", "--api",
                                          f"127.0.0.1:{api_port}", "--json"), capture_output=True, text=True)
                return json.loads(r.stdout) if r.returncode == 0 else None
            assert wait_for(status, 15), "switch did not start"
            phone = subprocess.Popen(ns.cmd(baresip, "-f", str(conf)), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
            regs = wait_for(lambda: (status() or {}).get("registrations"), 15)
            assert regs, "baresip did not register"
            assert regs[0]["aor"] == "1003" and regs[0]["user_agent"].startswith("baresip")
            assert regs[0]["source"] == f"udp:{ns.phone_ip}:5070"
            human = subprocess.run(ns.cmd(sys.executable, "-m", "centralino", "status", "--api",
                                          f"127.0.0.1:{api_port}"), capture_output=True, text=True)
            assert "1003" in human.stdout and "baresip" in human.stdout
        finally:
            for proc in (phone, server):
                if proc is not None:
                    proc.terminate()
                    try:
                        proc.wait(5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
