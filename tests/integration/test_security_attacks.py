"""The switch probed as an attacker would, over real sockets on loopback (raw clients and
SIPp as the attackers; the legitimate phone a separate loopback source): password guessing
interleaved with an insider's good logins, a digest replayed towards another number, a forged
From hairpinning through the trunk, forged scanner packets and failures from a phone's address,
a flood from a trusted address, and slow or piled-up TCP connections."""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from centralino.bench.sipp import run_sipp, start_sipp
from centralino.switch.sip.auth import DigestClient
from centralino.switch.sip.message import Request
from centralino.switch.sip.parser import parse_datagram
from centralino.switch.sip.uri import parse_uri
from helpers import Caller, RunningSwitch, SipClient, free_port, need_tool, plan_text, wait_for

EXTS = textwrap.dedent("""\
    extensions:
      "1001": {password: "pw1001"}
      "1002": {password: "pw1002"}
      "1003": {password: "pw1003"}
    """)


def defaults(tmp_path, extra: str = "", **replace) -> str:
    """plan_text with the default security settings (the helper turns the rate limit off)."""
    text = plan_text(tmp_path, extra, extensions=EXTS).replace("  security: {rate_limit: 0}\n", "")
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


def wrong_guess(c: SipClient, user: str) -> int | None:
    first = c.transact(c.register(user), timeout=1.0)
    if first is None:
        return None
    ch = DigestClient.pick(first.header_values("WWW-Authenticate"))
    r = c.transact(c.register(user, auth=DigestClient(user, f"guess{uuid.uuid4().hex[:6]}").authorize(
        ch, "REGISTER", "sip:example.com")), timeout=1.0)
    return None if r is None else r.status


def test_an_insiders_good_logins_do_not_reset_the_guess_count(tmp_path):
    """Before: one good login as 1002 every 4 wrong guesses for 1001 reset the counter (40+
    guesses went through). Now the fifth wrong guess ends the guessing: an address with no live
    session is banned; the insider's, which holds 1002's registration, may from then on
    authenticate only as 1002 — even 1001's right password is refused from there."""
    with RunningSwitch(defaults(tmp_path)) as sw:
        victim = SipClient(sw.address("udp"), local_ip="127.0.0.3")
        assert victim.register_with_auth("1001", "pw1001").status == 200
        insider = SipClient(sw.address("udp"), local_ip="127.0.0.2")
        for _round in range(3):
            for _ in range(4):
                assert wrong_guess(insider, "1001") == 401  # the same answer, checked or not
            assert insider.register_with_auth("1002", "pw1002").status == 200
        assert insider.register_with_auth("1001", "pw1001").status == 401, "guessing ended at the fifth"
        security = sw.status()["security"]
        assert [(b["source"], b["scope"]) for b in security["bans"]] == [("127.0.0.2", "own-users")]
        assert security["refused_locked"] >= 8
        assert victim.register_with_auth("1001", "pw1001").status == 200  # the real phone goes on
        # an outsider with no session is banned outright at its fifth failure
        outsider = SipClient(sw.address("udp"), local_ip="127.0.0.4")
        assert [wrong_guess(outsider, "1002") for _ in range(6)] == [401] * 5 + [None]
        # the admin clears it (API and CLI)
        out = subprocess.run([sys.executable, "-m", "centralino", "security", "--api", sw.api, "--unban", "127.0.0.4"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and "127.0.0.4" not in out.stdout, out.stdout + out.stderr
        assert wrong_guess(outsider, "1002") == 401


def invite_with_credentials_for(sw, caller: SipClient, to: str, signed_for: str) -> int | None:
    """An INVITE to ``to`` carrying a valid digest computed for the URI ``signed_for``."""
    host, port = caller.local
    def invite(cseq: int, auth: str | None = None) -> Request:
        hdrs = [("Via", f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK{uuid.uuid4().hex};rport"),
                ("Max-Forwards", "70"), ("From", f"<sip:1001@example.com>;tag={caller.tag}"),
                ("To", f"<sip:{to}@example.com>"), ("Call-ID", caller.call_id), ("CSeq", f"{cseq} INVITE"),
                ("Contact", f"<sip:1001@{host}:{port}>"), ("Content-Type", "application/sdp")]
        if auth:
            hdrs.append(("Proxy-Authorization", auth))
        sdp = f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\nm=audio {port + 1} RTP/AVP 0\r\n"
        return Request("INVITE", parse_uri(f"sip:{to}@example.com"), hdrs, sdp.encode())
    first = caller.transact(invite(1), timeout=2)
    assert first is not None and first.status == 407
    ch = DigestClient.pick(first.header_values("Proxy-Authenticate"))
    cred = DigestClient("1001", "pw1001").authorize(ch, "INVITE", signed_for)
    second = caller.transact(invite(2, cred), timeout=2)
    return None if second is None else second.status


def test_a_digest_for_one_uri_does_not_carry_a_call_to_another(tmp_path):
    """Credentials computed for sip:1003 on an INVITE to a premium number are refused (400)
    and nothing reaches the trunk; the same with SIPp's -auth_uri; the honest call goes out."""
    need_tool("sipp")
    provider_port = free_port()
    extra = (f'trunks:\n  provider: {{host: "127.0.0.1:{provider_port}", qualify: 0}}\n'
             'routes:\n  - {match: {to: "^9(\\\\d+)$", from: extension}, action: {trunk: provider, number: "${1}"}}\n'
             '  - {match: {to: "^1\\\\d{3}$"}, action: {dial: "${to}"}}\n')
    provider = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    provider.bind(("127.0.0.1", provider_port))
    provider.settimeout(0.5)
    with RunningSwitch(defaults(tmp_path, extra)) as sw:
        raw = SipClient(sw.address("udp"))
        assert invite_with_credentials_for(sw, raw, "95550002", "sip:1003@example.com") == 400
        try:
            data, _ = provider.recvfrom(65535)
            reached = parse_datagram(data).method == "INVITE"
        except TimeoutError:
            reached = False
        assert not reached, "the redirected call reached the trunk"
        provider.close()
        target = "{}:{}".format(*sw.address("udp"))
        forged = run_sipp("uac_call.xml", target, rate=1, count=1, auth_uri=f"1003@{target}",
                          extra=["-s", "95550002", "-au", "1001", "-ap", "pw1001", "-key", "caller", "1001", "-mp", str(free_port())])
        assert forged.successful == 0 and "400 Bad Request" in forged.errors
        uas = start_sipp("uas_echo.xml", local_ip="127.0.0.1", port=provider_port, media_port=free_port(),
                         count=1, log_dir=tmp_path)
        honest = run_sipp("uac_call.xml", target, rate=1, count=1, auth_uri=f"95550002@{target}",
                          extra=["-s", "95550002", "-au", "1001", "-ap", "pw1001", "-key", "caller", "1001", "-d", "500", "-mp", str(free_port())])
        assert honest.successful == 1, honest.errors
        assert uas.wait(10) == 0


HAIRPIN = """\
trunks:
  provider: {{host: "127.0.0.1:{port}", allow_from: ["127.0.0.10/32"], qualify: 0}}
routes:
  - {{match: {{to: "^00(\\\\d+)$", from: "^10\\\\d\\\\d$"}}, action: {{trunk: provider}}}}
"""


def test_a_forged_from_on_a_trunk_call_does_not_satisfy_a_caller_pattern(tmp_path):
    """The route an admin writes to let extensions 10xx call abroad. A call from the trunk's own
    address with From 1001, or from a stranger with From 1001, must not go out through the trunk;
    extension 1001 (authenticated) does."""
    provider_port = free_port()
    provider = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    provider.bind(("127.0.0.1", provider_port))
    provider.settimeout(0.5)

    def trunk_saw_invite() -> bool:
        try:
            while True:
                data, _ = provider.recvfrom(65535)
                if parse_datagram(data).method == "INVITE":
                    return True
        except TimeoutError:
            return False

    with RunningSwitch(defaults(tmp_path, HAIRPIN.format(port=provider_port))) as sw:
        from_trunk = Caller(sw.address("udp"), "1001", "", local_ip="127.0.0.10")
        assert from_trunk.call("0044123456", until=300).status == 404
        stranger = Caller(sw.address("udp"), "1001", "wrong", local_ip="127.0.0.30")
        assert stranger.call("0044123456", until=400).status == 407  # challenged, never routed
        assert not trunk_saw_invite()
        alice = Caller(sw.address("udp"), "1001", "pw1001")
        alice.call("0044123456", until=600, timeout=1.5)
        assert trunk_saw_invite(), "an authenticated extension takes the route"
    provider.close()
    plan = tmp_path / "hairpin.yaml"
    plan.write_text(HAIRPIN.format(port=provider_port) + '  - {match: {to: "^9(\\\\d+)$"}, action: {trunk: provider}}\n'
                    '  - {match: {to: "^8(\\\\d+)$", from: extension}, action: {trunk: provider}}\n')
    out = subprocess.run([sys.executable, "-m", "centralino", "check", str(plan)], capture_output=True, text=True,
                         timeout=60).stdout
    warnings = [line for line in out.splitlines() if line.endswith("(warning)")]
    assert len(warnings) == 1 and f"{plan}:5: routes[1].action: a call from trunk 'provider'" in warnings[0], out


def test_forged_scanner_packets_and_failures_do_not_cut_off_a_registered_phone(tmp_path):
    """An attacker forges datagrams with the phone's source address: a scanner User-Agent and
    six failed logins. The phone is not banned (failures counted, logged as ban-skipped)."""
    with RunningSwitch(defaults(tmp_path)) as sw:
        phone = SipClient(sw.address("udp"), local_ip="127.0.0.40")
        assert phone.register_with_auth("1002", "pw1002").status == 200
        forger = SipClient(sw.address("udp"), local_ip="127.0.0.40")  # same address, as a forged UDP source is
        forger.send(forger.register("1001", extra=[("User-Agent", "friendly-scanner")]).serialize())
        for _ in range(6):
            wrong_guess(forger, "1003")
        time.sleep(0.2)
        security = sw.status()["security"]
        assert [b["scope"] for b in security["bans"]] == ["own-users"]  # no ban: it may not guess, that is all
        assert security["dropped_user_agent"] == 1
        assert phone.register_with_auth("1002", "pw1002").status == 200
        events = sw.call(lambda: sw.switch.db.fetchall("SELECT kind, detail FROM security_events"))
        assert any(r["kind"] == "ban-skipped" and "live registration" in r["detail"] for r in events)


@pytest.mark.parametrize(("source", "kind"), [("127.0.0.10", "trusted"), ("127.0.0.12", "normal")])
def test_a_flood_leaves_room_for_a_phone(tmp_path, source, kind):
    """3,000 INVITEs/s for 2.5 s 'from the trunk' (UDP sources can be forged) or from a stranger:
    the trusted limit (2,000/s) or the normal one (100/s) drops the excess, and a phone
    re-registering every 50 ms from another address keeps being answered, as does a third
    source. Prints the phone's REGISTER latencies (the README's security figures)."""
    extra = 'trunks:\n  carrier: {host: 127.0.0.10, port: 9, allow_from: ["127.0.0.10/32"], qualify: 0}\n'
    with RunningSwitch(defaults(tmp_path, extra)) as sw:
        target = sw.address("udp")
        flood_script = textwrap.dedent(f"""\
            import socket, time
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(({source!r}, 0))
            port = s.getsockname()[1]
            start, n = time.monotonic(), 0
            while time.monotonic() - start < 2.5:
                s.sendto((f"INVITE sip:99{{n}}@example.com SIP/2.0\\r\\nVia: SIP/2.0/UDP 127.0.0.10:{{port}};branch=z9hG4bKfl{{n}}\\r\\n"
                          f"From: <sip:x@127.0.0.10>;tag=f{{n}}\\r\\nTo: <sip:99{{n}}@example.com>\\r\\nCall-ID: flood-{{n}}\\r\\n"
                          "CSeq: 1 INVITE\\r\\nMax-Forwards: 70\\r\\nContent-Length: 0\\r\\n\\r\\n").encode(), {tuple(target)!r})
                n += 1
                if n % 30 == 0:
                    time.sleep(max(0.0, start + n / 3000 - time.monotonic()))
            print(n)
            """)
        phone = SipClient(target, local_ip="127.0.0.41")
        assert phone.register_with_auth("1002", "pw1002").status == 200
        flooder = subprocess.Popen([sys.executable, "-c", flood_script], stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)
        latencies, lost = [], 0
        t_end = time.monotonic() + 2.0
        while time.monotonic() < t_end:
            t0 = time.monotonic()
            if phone.register_with_auth("1002", "pw1002") is None:
                lost += 1
            else:
                latencies.append(time.monotonic() - t0)
            time.sleep(0.05)
        other = SipClient(target, local_ip="127.0.0.42")
        other_ok = other.register_with_auth("1003", "pw1003")
        sent = int(flooder.communicate(timeout=10)[0])
        p95 = sorted(latencies)[int(0.95 * (len(latencies) - 1))] if latencies else None
        print(f"\nflood from a {kind} address: {len(latencies)} phone REGISTERs answered, {lost} lost, "
              f"median {1000 * statistics.median(latencies):.1f} ms, p95 {1000 * p95:.1f} ms; "
              f"rate-limited {sw.status()['security']['dropped_rate_limited']} of {sent} flood INVITEs")
        # No REGISTER is lost. How many fit in the 2 s depends on the machine: 2,000 INVITEs/s
        # from a trusted address pass the limit, and where that is beyond the switch's capacity
        # the phone is answered later (the README gives the measured latencies), not dropped.
        assert lost == 0 and len(latencies) >= (10 if kind == "normal" else 3)
        assert other_ok is not None and other_ok.status == 200
        limited = sw.status()["security"]["dropped_rate_limited"]
        assert limited > (1000 if kind == "trusted" else 7000)  # a high limit for trusted sources, not none


def test_tcp_slowloris_and_piles_of_connections(tmp_path):
    """200 connections from one address, each sending half a request and then a byte now and
    then: at most 50 are accepted, and those are closed when no whole message came within the
    deadline; a banned source's connections are refused at accept; another client is served."""
    text = defaults(tmp_path).replace("domain: example.com", "domain: example.com\n    tcp_message_timeout: 1.5")
    text = text.replace("  registrar:", "  security: {max_auth_failures: 2}\n  registrar:")
    with RunningSwitch(text) as sw:
        host, port = sw.address("tcp")
        conns, refused = [], 0
        for _ in range(200):
            s = socket.socket()
            s.bind(("127.0.0.50", 0))
            s.connect((host, port))
            s.sendall(b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.50")
            conns.append(s)
        time.sleep(0.3)
        open_now = sw.status()["connections"]
        assert open_now <= 50, open_now
        for s in conns:  # a byte now and then keeps a slowloris alive against an idle timer only
            try:
                s.sendall(b";")
            except OSError:
                refused += 1
        assert wait_for(lambda: sw.status()["connections"] == 0, 5), sw.status()["connections"]
        closed_slow = sw.status()["counters"]["tcp_closed_slow"]
        assert closed_slow == open_now and sw.status()["counters"]["tcp_refused"] >= 150
        for s in conns:
            s.close()
        # a source banned for failed logins is refused at accept, before anything is read
        attacker = SipClient((host, port), transport="tcp", local_ip="127.0.0.51")
        for _ in range(2):
            wrong_guess(attacker, "1001")
        attacker.close()
        assert wait_for(lambda: any(b["source"] == "127.0.0.51" for b in sw.status()["security"]["bans"]), 3)
        s = socket.socket()
        s.bind(("127.0.0.51", 0))
        s.connect((host, port))
        s.settimeout(2)
        assert s.recv(10) == b"", "the banned source's connection is closed at once"
        s.close()
        good = SipClient((host, port), transport="tcp", local_ip="127.0.0.52")
        assert good.register_with_auth("1002", "pw1002").status == 200
        print(f"\nslowloris: {open_now} of 200 connections accepted, all closed after 1.5 s without a whole message")
