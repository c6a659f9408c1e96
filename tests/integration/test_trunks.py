"""Trunks: registration with digest to a SIPp registrar, max_channels, failover to the next
trunk of a route when the first answers 503."""

from __future__ import annotations

import socket
import threading

from centralino.bench.sipp import start_sipp
from centralino.switch.sip.message import Request, make_response
from centralino.switch.sip.parser import parse_datagram
from helpers import Caller, Phone, RunningSwitch, free_port, need_tool, plan_text, wait_for

EXTS = 'extensions:\n  "1001": {password: "pw1001"}\n  "1002": {password: "pw1002"}\n'


def test_trunk_registers_with_digest(tmp_path):
    need_tool("sipp")
    port = free_port()
    registrar = start_sipp("uas_registrar.xml", local_ip="127.0.0.1", port=port, media_port=free_port(),
                           count=1, log_dir=tmp_path)
    extra = (f"trunks:\n  provider: {{host: 127.0.0.1, port: {port}, username: centralino, password: trunkpw,"
             f" register: true, qualify: 0}}\n")
    with RunningSwitch(plan_text(tmp_path, extra, extensions=EXTS)) as sw:
        trunk = wait_for(lambda: sw.status()["trunks"]["provider"]["registered"] and sw.status()["trunks"]["provider"], 10)
        assert trunk and 50 <= trunk["expires_in"] <= 60
    assert registrar.wait(5) == 0, "the registrar saw a correct digest"


def test_max_channels_on_inbound_trunk(tmp_path):
    extra = ('trunks:\n  provider: {host: 127.0.0.1, port: 9, allow_from: ["127.0.0.10/32"], max_channels: 1, qualify: 0}\n'
             'routes:\n  - {match: {to: "^1\\\\d{3}$"}, action: {dial: "${to}"}}\n')
    with RunningSwitch(plan_text(tmp_path, extra, extensions=EXTS)) as sw:
        bob = Phone(sw.address("udp"), "1002", "pw1002", behaviour="ring").start()
        first = Caller(sw.address("udp"), "x", "", local_ip="127.0.0.10")
        assert first.call("1002", until=180).status == 180
        second = Caller(sw.address("udp"), "y", "", local_ip="127.0.0.10")
        resp = second.call("1002")
        assert resp.status == 503 and "cause=34" in resp.header("Reason")
        assert sw.status()["trunks"]["provider"]["channels"] == 1
        bob.stop()


class Refuser(threading.Thread):
    """A trunk that answers every INVITE with 503."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.invites = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            msg = parse_datagram(data)
            if isinstance(msg, Request) and msg.method == "INVITE":
                self.invites += 1
                self.sock.sendto(make_response(msg, 503, to_tag="dead").serialize(), addr)


def test_failover_to_second_trunk(tmp_path):
    need_tool("sipp")
    dead = Refuser()
    dead.start()
    good_port = free_port()
    good = start_sipp("uas_challenge.xml", local_ip="127.0.0.1", port=good_port, media_port=free_port(),
                      count=1, extra=["-rtp_echo"], log_dir=tmp_path)
    extra = (f"trunks:\n  dead: {{host: 127.0.0.1, port: {dead.port}, qualify: 0}}\n"
             f"  good: {{host: 127.0.0.1, port: {good_port}, username: centralino, password: trunkpw, qualify: 0}}\n"
             'routes:\n  - {match: {to: "^9(\\\\d+)$"}, action: {trunk: [dead, good], number: "${1}"}}\n')
    with RunningSwitch(plan_text(tmp_path, extra, extensions=EXTS)) as sw:
        alice = Caller(sw.address("udp"), "1001", "pw1001")
        resp = alice.call("95550000", timeout=8)
        assert resp is not None and resp.status == 200
        assert dead.invites == 1
        alice._ack(alice.last_invite, resp)
    dead.stop.set()
    good.kill()


def test_a_trunk_that_goes_down_says_why(tmp_path, caplog):
    """A silently "down" trunk turns every call to it into a 503: the reason is logged as a
    WARNING and shown by `centralino status`; a trunk never qualified stays usable."""
    import logging
    import subprocess
    import sys

    extra = ("trunks:\n  gone: {host: no-such-host.invalid, qualify: 1}\n"
             '  fresh: {host: "127.0.0.1:9", qualify: 0}\n')
    with caplog.at_level(logging.WARNING, logger="centralino.trunks"), \
            RunningSwitch(plan_text(tmp_path, extra, extensions=EXTS)) as sw:
        trunk = wait_for(lambda: sw.status()["trunks"]["gone"]["reachable"] is False and sw.status()["trunks"]["gone"], 5)
        assert "cannot reach no-such-host.invalid:5060" in trunk["last_error"]
        assert any("trunk gone is DOWN: cannot reach no-such-host.invalid" in r.getMessage() for r in caplog.records)
        fresh = sw.status()["trunks"]["fresh"]
        assert fresh["reachable"] is None and fresh["host"].endswith("127.0.0.1:9")
        assert sw.call(sw.switch.trunks.available, "fresh")
        out = subprocess.run([sys.executable, "-m", "centralino", "status", "--api", sw.api],
                             capture_output=True, text=True, timeout=30).stdout
        assert "gone" in out and "DOWN" in out and "last error: cannot reach no-such-host.invalid" in out
