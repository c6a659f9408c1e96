"""With the default security settings (a 100 requests/s per-source limit) the switch must not
limit the answers to its own requests or the requests inside its own calls: a SIPp answerer
registered as one extension, or a provider trunk without allow_from, sends ~3 responses per call
(100 Trying/180/200, the 200 for the BYE) from one address. Before, those were limited with the
requests, the switch retransmitted its INVITEs and 15-35 % of the calls ended in 408."""

from __future__ import annotations

import textwrap

from centralino.bench.sipp import run_sipp, start_sipp
from helpers import RunningSwitch, SipClient, db_rows, free_port, need_tool

RATE, CALLS = 100, 400


def defaults_plan(tmp_path, provider_port: int) -> str:
    """Everything at its default but addresses and files: security on, qualify on, info logs."""
    return textwrap.dedent(f"""\
        server:
          sip: {{listen: ["udp:127.0.0.1:0"], domain: example.com}}
          api: {{listen: "127.0.0.1:0"}}
          storage: "sqlite:{tmp_path / 'centralino.db'}"
          rtp: {{ports: "36000-37999", workers: 1}}
        extensions:
          "1002": {{password: "pw1002"}}
        trunks:
          carrier: {{host: 127.0.0.10, port: 9, allow_from: ["127.0.0.10/32"], qualify: 0}}
          provider: {{host: "127.0.0.1:{provider_port}", qualify: 0}}
        routes:
          - {{match: {{to: "^9(\\\\d+)$", source: carrier}}, action: {{trunk: provider, number: "${{1}}"}}}}
          - {{match: {{to: "^1002$"}}, action: {{dial: "1002"}}}}
        """)


def test_default_limits_do_not_drop_answers_to_our_own_calls(tmp_path):
    need_tool("sipp")
    provider_port = free_port()
    with RunningSwitch(defaults_plan(tmp_path, provider_port)) as sw:
        sw.tmp = tmp_path
        assert sw.switch.plan.server.security.rate_limit == 100  # the default, untouched
        target = "{}:{}".format(*sw.address("udp"))
        # 1. calls from the carrier to an extension answered by one SIPp UAS registered as 1002
        uas_port = free_port()
        uas = start_sipp("uas_echo.xml", local_ip="127.0.0.1", port=uas_port, media_port=free_port(),
                         count=CALLS, log_dir=tmp_path)
        reg = SipClient(sw.address("udp")).register_with_auth("1002", "pw1002",
                                                              contact=f"<sip:1002@127.0.0.1:{uas_port}>")
        assert reg is not None and reg.status == 200
        res = run_sipp("uac_cps.xml", target, rate=RATE, count=CALLS, local_ip="127.0.0.10",
                       extra=["-s", "1002"], timeout=60)
        assert res.successful == CALLS and res.failed == 0, res.errors
        uas.wait(20)
        # 2. the same rate out through a provider trunk that has no allow_from (its responses
        # come from an address the switch never trusted for requests)
        provider = start_sipp("uas_echo.xml", local_ip="127.0.0.1", port=provider_port,
                              media_port=free_port(), count=CALLS, log_dir=tmp_path)
        res = run_sipp("uac_cps.xml", target, rate=RATE, count=CALLS, local_ip="127.0.0.10",
                       extra=["-s", "95550000"], timeout=60)
        assert res.successful == CALLS and res.failed == 0, res.errors
        provider.wait(20)
        security = sw.status()["security"]
        assert security["dropped_rate_limited"] == 0, security
        rows = db_rows(sw, "SELECT disposition, COUNT(*) AS n FROM cdr WHERE leg = 'call' GROUP BY disposition")
        assert rows == [{"disposition": "ANSWERED", "n": 2 * CALLS}]


def test_new_requests_from_one_source_are_still_limited(tmp_path):
    """What the limit is for: OPTIONS (out of dialog) from a stranger beyond 100/s + burst are
    dropped, while a second source is served."""
    with RunningSwitch(defaults_plan(tmp_path, free_port())) as sw:
        flood = SipClient(sw.address("udp"), local_ip="127.0.0.20")
        for i in range(600):
            flood.send(
                f"OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.20:{flood.local[1]};branch=z9hG4bKf{i}\r\n"
                f"From: <sip:x@example.com>;tag=f\r\nTo: <sip:example.com>\r\nCall-ID: flood{i}\r\n"
                "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n".encode())
        assert sw.status()["security"]["dropped_rate_limited"] > 300
        other = SipClient(sw.address("udp"), local_ip="127.0.0.21")
        assert other.register_with_auth("1002", "pw1002").status == 200
