"""Calls driven by SIPp on both sides: a phone (SIPp, 407 digest) or a SIPp "trunk" on the
8-800 DID calls an extension registered for a SIPp UAS; G.711 RTP from SIPp's pcap is echoed
back through the media worker. Many calls in a row and in parallel. And an extension dials out
through a SIPp "provider" that challenges with 407."""

from __future__ import annotations

import time

import pytest
from centralino.bench.sipp import run_sipp, start_sipp
from centralino.events import CallEvent
from centralino.switch.sip.sdp import parse_sdp
from helpers import (
    Caller,
    RunningSwitch,
    SipClient,
    db_rows,
    free_port,
    need_tool,
    plan_text,
    wait_for,
)

PLAN = """\
trunks:
  # qualify off: the SIPp provider scenarios expect an INVITE first, and a ping that reaches one
  # just after it binds aborts it (a race with the switch's first OPTIONS)
  sippy: {{host: 127.0.0.1, port: {provider_port}, username: centralino, password: trunkpw,
          allow_from: ["127.0.0.10/32"], dids: ["88005553535"], country_code: "7", qualify: 0}}
routes:
  - {{match: {{to: "88005553535"}}, action: {{dial: "1002"}}}}
  - {{match: {{to: "^9(\\\\d+)$", from: extension}}, action: {{trunk: sippy, number: "${{1}}"}}}}
  - {{match: {{to: "^1\\\\d{{3}}$"}}, action: {{dial: "${{to}}"}}}}
"""
EXTS = 'extensions:\n  "1001": {password: "pw1001"}\n  "1002": {password: "pw1002"}\n'


@pytest.fixture
def sw(tmp_path):
    need_tool("sipp")
    provider_port = free_port()
    text = plan_text(tmp_path, PLAN.format(provider_port=provider_port), extensions=EXTS)
    text = text.replace("  security:", '  rtp: {ports: "35000-35999", workers: 1}\n  security:')
    with RunningSwitch(text) as s:
        s.tmp, s.provider_port = tmp_path, provider_port
        yield s


def answering_phone(sw, calls: int, tmp_path):
    """A SIPp UAS echoing RTP, registered as 1002 (its Contact is the UAS's address)."""
    port, media = free_port(), free_port()
    uas = start_sipp("uas_echo.xml", local_ip="127.0.0.1", port=port, media_port=media, count=calls,
                     extra=["-rtp_echo"], log_dir=tmp_path)
    reg = SipClient(sw.address("udp")).register_with_auth("1002", "pw1002", contact=f"<sip:1002@127.0.0.1:{port}>")
    assert reg.status == 200
    return uas


def rows(sw):
    return db_rows(sw, "SELECT * FROM cdr WHERE leg = 'call' ORDER BY id")


def media_totals(sw):
    return sw.call(sw.switch.media.stats)[0]


def test_phone_calls_extension_in_a_row_and_in_parallel(sw, tmp_path):
    uas = answering_phone(sw, 15, tmp_path)
    target = "{}:{}".format(*sw.address("udp"))
    common = ["-s", "1002", "-au", "1001", "-ap", "pw1001", "-auth_uri", f"1002@{target}", "-key", "caller", "1001",
              "-d", "1500"]
    in_a_row = run_sipp("uac_call.xml", target, rate=2, count=5, extra=[*common, "-l", "1", "-mp", str(free_port())])
    assert in_a_row.successful == 5 and in_a_row.failed == 0, in_a_row.errors
    parallel = run_sipp("uac_call.xml", target, rate=20, count=10, extra=[*common, "-l", "10", "-mp", str(free_port())])
    assert parallel.successful == 10 and parallel.failed == 0, parallel.errors
    uas.wait(15)
    calls = wait_for(lambda: len(rows(sw)) == 15 and rows(sw), 5)
    assert all(r["disposition"] == "ANSWERED" and r["talk_seconds"] >= 1.0 for r in calls)
    # audio went both ways through the worker: SIPp's pcap in, the echo back
    assert all(r["rtp_rx"] and r["rtp_rx"] > 20 and r["rtp_lost"] == 0 for r in calls)
    totals = media_totals(sw)
    assert totals["rx"] >= 2 * sum(r["rtp_rx"] for r in calls) * 0.9  # both directions relayed
    assert totals["dropped_source"] == 0


def test_trunk_calls_8800_did(sw, tmp_path):
    uas = answering_phone(sw, 3, tmp_path)
    target = "{}:{}".format(*sw.address("udp"))
    res = run_sipp("uac_call.xml", target, rate=3, count=3, local_ip="127.0.0.10",
                   extra=["-s", "+78005553535", "-key", "caller", "84951234567", "-d", "1000", "-mp", str(free_port())])
    assert res.successful == 3 and res.failed == 0, res.errors
    uas.wait(10)
    calls = wait_for(lambda: len(rows(sw)) == 3 and rows(sw), 5)
    assert {(r["source"], r["did"], r["called"], r["caller"]) for r in calls} == {
        ("trunk:sippy", "88005553535", "88005553535", "84951234567")}


@pytest.mark.parametrize("scenario", ["uas_challenge.xml", "uas_challenge407.xml"])
def test_extension_dials_out_through_challenging_provider(sw, tmp_path, scenario):
    provider = start_sipp(scenario, local_ip="127.0.0.1", port=sw.provider_port,
                          media_port=free_port(), count=1, extra=["-rtp_echo"], log_dir=tmp_path)
    time.sleep(0.3)
    alice = Caller(sw.address("udp"), "1001", "pw1001")
    resp = alice.call("95551234", timeout=8)
    assert resp is not None and resp.status == 200, provider.stderr.read() if provider.poll() is not None else ""
    answer = parse_sdp(resp.body)
    # the answer points at Centralino's media worker, not at the provider's RTP port
    assert answer.connection.address == "127.0.0.1" and 35000 <= answer.media[0].port <= 35999
    alice._ack(alice.last_invite, resp)
    assert alice.hang_up(resp, 4).status == 200
    assert provider.wait(10) == 0, "the provider saw a correct digest, the call and the BYE"
    row = wait_for(lambda: rows(sw), 3)[0]
    assert row["destination"] == "trunk:sippy:5551234" and row["disposition"] == "ANSWERED"


def test_rfc2833_digits_from_sipp_pcaps_reach_the_control_process(sw, tmp_path):
    from centralino.events import CallDtmf

    events = []
    sw.call(lambda: sw.switch.bus.subscribe(events.append, CallEvent))
    uas = answering_phone(sw, 1, tmp_path)
    target = "{}:{}".format(*sw.address("udp"))
    res = run_sipp("uac_dtmf.xml", target, rate=1, count=1,
                   extra=["-s", "1002", "-au", "1001", "-ap", "pw1001", "-auth_uri", f"1002@{target}",
                          "-key", "caller", "1001", "-mp", str(free_port())])
    assert res.successful == 1, res.errors
    uas.wait(10)
    digits = [e for e in events if isinstance(e, CallDtmf)]
    assert [d.digit for d in digits] == ["1", "5", "9", "0"]
    assert all(d.side == "caller" and d.duration_ms == 280 for d in digits)
