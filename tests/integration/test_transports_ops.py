"""TLS listener, idle TCP reaping, --sip-trace and JSON logs of `centralino run`."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import sys
import time

import pytest
from centralino.switch.sip.auth import DigestClient
from centralino.switch.sip.message import Response
from helpers import RunningSwitch, SipClient, free_port, plan_text, wait_for


def make_cert(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def test_register_over_tls(tmp_path):
    cert, key = make_cert(tmp_path)
    text = plan_text(tmp_path).replace(
        '"tcp:127.0.0.1:0"]', f'"tcp:127.0.0.1:0", "tls:127.0.0.1:0"]\n    tls: {{cert: "{cert}", key: "{key}"}}')
    with RunningSwitch(text) as sw:
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        raw = socket.create_connection(sw.address("tls"), timeout=3)
        conn = ctx.wrap_socket(raw, server_hostname="localhost")
        client = SipClient(sw.address("tls"), transport="tls", sock=conn)
        first = client.transact(client.register("1001"))
        assert isinstance(first, Response) and first.status == 401
        ch = DigestClient.pick(first.header_values("WWW-Authenticate"))
        auth = DigestClient("1001", "secret1001").authorize(ch, "REGISTER", "sip:example.com")
        assert client.transact(client.register("1001", auth=auth)).status == 200
        assert sw.status()["registrations"][0]["source"].startswith("tls:127.0.0.1:")
        conn.close()


def test_idle_tcp_connections_are_reaped(tmp_path):
    text = plan_text(tmp_path).replace("domain: example.com", "domain: example.com\n    tcp_idle_timeout: 1")
    with RunningSwitch(text) as sw:
        c = SipClient(sw.address("tcp"), transport="tcp")
        assert c.register_with_auth("1001", "secret1001").status == 200
        assert sw.status()["connections"] == 1
        assert wait_for(lambda: sw.status()["connections"] == 0, 5)
        c.sock.settimeout(1)
        assert c.sock.recv(10) == b""  # closed by the switch


def test_sip_trace_and_json_logs(tmp_path):
    port, api = free_port(), free_port(socket.SOCK_STREAM)
    plan = tmp_path / "plan.yaml"
    plan.write_text(plan_text(tmp_path).replace('"udp:127.0.0.1:0"', f'"udp:127.0.0.1:{port}"')
                    .replace('"127.0.0.1:0"', f'"127.0.0.1:{api}"'))
    proc = subprocess.Popen([sys.executable, "-m", "centralino", "run", "--config", str(plan), "--sip-trace",
                             "--log-format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        c = SipClient(("127.0.0.1", port))
        assert wait_for(lambda: c.transact(c.register("1001"), timeout=0.5) is not None, 10)
        time.sleep(0.3)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    traces = [r for r in records if r["logger"] == "centralino.sip.trace"]
    inbound = next(r for r in traces if "<<<" in r["msg"])
    outbound = next(r for r in traces if ">>>" in r["msg"])
    assert f"127.0.0.1:{port} <- 127.0.0.1:{c.local[1]}" in inbound["msg"] and "REGISTER sip:example.com" in inbound["msg"]
    assert "SIP/2.0 401 Unauthorized" in outbound["msg"] and isinstance(outbound["ts"], float)
    assert any(r["level"] == "info" and r["logger"] == "centralino.transport" for r in records)


def test_a_failing_background_task_does_not_take_the_switch_down(tmp_path):
    async def broken():
        raise RuntimeError("a bug in some call's task")

    with RunningSwitch(plan_text(tmp_path)) as sw:
        sw.call(lambda: sw.switch.core.spawn(broken()))
        c = SipClient(sw.address("udp"))
        assert c.register_with_auth("1001", "secret1001").status == 200
        assert sw.status()["registrations"]


def test_overload_turns_new_calls_away_and_recovers(tmp_path):
    """With max_setups requests already in hand, a new INVITE gets 503 Overloaded with
    Retry-After at once (no call state, no media); when the backlog clears calls go through."""
    import asyncio

    from helpers import Caller, Phone

    text = plan_text(tmp_path, 'routes:\n  - {match: {to: "^100\\\\d$"}, action: {dial: "${to}"}}\n',
                     extensions='extensions:\n  "1001": {password: pw1}\n  "1002": {password: pw2}\n')
    text = text.replace("    domain: example.com", "    domain: example.com\n    max_setups: 5", 1)
    with RunningSwitch(text) as sw:
        assert sw.switch.core.max_setups == 5
        bob = Phone(sw.address("udp"), "1002", "pw2").start()
        busy = []

        def backlog():
            busy[:] = [asyncio.get_running_loop().create_future() for _ in range(5)]
            sw.switch.core._inflight.update(busy)
        sw.call(backlog)
        try:
            refused = Caller(sw.address("udp"), "1001", "pw1").call("1002")
            assert refused is not None and refused.status == 503 and refused.reason == "Overloaded"
            assert refused.header("Retry-After") == "1" and sw.switch.core.counters["shed"] >= 1
            assert bob.invite is None  # turned away before any leg was placed
            sw.call(lambda: sw.switch.core._inflight.difference_update(busy))
            answered = Caller(sw.address("udp"), "1001", "pw1").call("1002")
            assert answered is not None and answered.status == 200
        finally:
            bob.stop()
