"""Security by default: bans after repeated failures (per source), User-Agent deny list (dropped,
not banned), per-source rate limit; every ban is a logged and stored security event."""

from __future__ import annotations

import sqlite3

import pytest
from centralino.switch.sip.auth import DigestClient
from helpers import RunningSwitch, SipClient, plan_text


def wrong_password(c: SipClient, user: str = "1001"):
    first = c.transact(c.register(user), timeout=1.0)
    if first is None:
        return None
    ch = DigestClient.pick(first.header_values("WWW-Authenticate"))
    return c.transact(c.register(user, auth=DigestClient(user, "wrong").authorize(ch, "REGISTER", "sip:example.com")),
                      timeout=1.0)


def test_ban_after_repeated_failures_while_other_source_keeps_working(tmp_path):
    sec = ", max_auth_failures: 3, ban_seconds: 60"
    with RunningSwitch(plan_text(tmp_path, security=sec)) as sw:
        attacker = SipClient(sw.address("udp"), local_ip="127.0.0.2")
        for _ in range(3):
            r = wrong_password(attacker)
            assert r is not None and r.status == 401
        # banned: nothing comes back any more, not even to a correct password
        assert attacker.transact(attacker.register("1001"), timeout=1.0) is None
        # another source is unaffected
        good = SipClient(sw.address("udp"), local_ip="127.0.0.1")
        assert good.register_with_auth("1001", "secret1001").status == 200
        bans = sw.status()["security"]["bans"]
        assert [b["source"] for b in bans] == ["127.0.0.2"]
        assert "failed authentications" in bans[0]["reason"]
        # over TCP the banned source is refused as well: its connection is dropped at accept
        try:
            tcp = SipClient(sw.address("tcp"), transport="tcp", local_ip="127.0.0.2")
            assert tcp.transact(tcp.register("1001"), timeout=1.0) is None
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            pass
    rows = sqlite3.connect(tmp_path / "centralino.db").execute(
        "SELECT source, kind FROM security_events").fetchall()
    assert ("127.0.0.2", "ban") in rows


def test_scanner_user_agent_is_dropped_not_banned(tmp_path):
    """A scanner's User-Agent gets silence, but no ban: one forged datagram with it could
    otherwise cut off whoever owns that address. The next request from there is answered."""
    with RunningSwitch(plan_text(tmp_path)) as sw:
        scanner = SipClient(sw.address("udp"), local_ip="127.0.0.3")
        req = scanner.register("1001", extra=[("User-Agent", "friendly-scanner")])
        assert scanner.transact(req, timeout=1.0) is None
        assert scanner.transact(scanner.register("1001"), timeout=1.0).status == 401
        security = sw.status()["security"]
        assert security["bans"] == [] and security["dropped_user_agent"] == 1


def test_rate_limit_drops_a_flood_from_one_source(tmp_path):
    with RunningSwitch(plan_text(tmp_path, security="").replace("rate_limit: 0", "rate_limit: 20, rate_burst: 20")) as sw:
        flood = SipClient(sw.address("udp"), local_ip="127.0.0.4")
        for _ in range(200):
            flood.send(flood.register("1001").serialize())
        answered = 0
        while flood.recv(0.3) is not None:
            answered += 1
        assert 15 <= answered <= 60  # the burst, plus what the rate refills meanwhile
        assert sw.status()["security"]["dropped_rate_limited"] >= 140
        other = SipClient(sw.address("udp"), local_ip="127.0.0.5")
        assert other.register_with_auth("1001", "secret1001").status == 200


@pytest.mark.parametrize("data", [b"\x00" * 100, b"INVITE\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n" * 3])
def test_garbage_never_breaks_the_switch(tmp_path, data):
    with RunningSwitch(plan_text(tmp_path)) as sw:
        c = SipClient(sw.address("udp"))
        c.send(data)
        assert c.register_with_auth("1001", "secret1001").status == 200
