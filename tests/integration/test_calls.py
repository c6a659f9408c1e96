"""Calls through the B2BUA with scripted phones over real UDP: answer, busy, cancel, ring
timeout to the route's else, forking, no open relay; and their CDR rows."""

from __future__ import annotations

import time

import pytest
from centralino.events import CallEvent
from centralino.switch.sip.sdp import parse_sdp
from helpers import SDP_OFFER, Caller, Phone, RunningSwitch, db_rows, plan_text, wait_for

ROUTES = """\
trunks:
  provider: {host: 127.0.0.1, port: 9, allow_from: ["127.0.0.10/32"], dids: ["88005553535"], country_code: "7"}
routes:
  - {match: {to: "88005553535"}, action: {dial: "1002"}}
  - {match: {to: "^9(\\\\d+)$", from: extension}, action: {trunk: provider, number: "${1}"}}
  - {match: {to: "^1003$"}, action: {dial: "1003", timeout: 1, else: {dial: "1004"}}}
  - {match: {to: "^1\\\\d{3}$"}, action: {dial: "${to}", timeout: 10}}
"""
EXTS = """\
extensions:
  "1001": {password: "pw1001", name: Alice}
  "1002": {password: "pw1002", name: Bob, max_contacts: 3}
  "1003": {password: "pw1003"}
  "1004": {password: "pw1004"}
"""


@pytest.fixture
def sw(tmp_path):
    text = plan_text(tmp_path, ROUTES, extensions=EXTS) + ""
    text = text.replace("  security:", "  rtp: {ports: \"34000-34999\", workers: 0}\n  security:")
    with RunningSwitch(text) as s:
        s.tmp = tmp_path
        yield s


def cdr(sw, leg="call"):
    return db_rows(sw, "SELECT * FROM cdr WHERE leg = ? ORDER BY id", (leg,))


def test_answered_call_and_bye_leave_a_cdr(sw):
    bob = Phone(sw.address("udp"), "1002", "pw1002").start()
    alice = Caller(sw.address("udp"), "1001", "pw1001")
    resp = alice.call("1002")
    assert resp is not None and resp.status == 200
    assert any(r.status == 180 for r in alice.responses)
    # the caller's answer points at the media worker, not at Bob's phone
    offer_to_bob = parse_sdp(bob.invite.body)
    answer = parse_sdp(resp.body)
    assert answer.connection.address == "127.0.0.1" and 34000 <= answer.media[0].port <= 34999
    assert 34000 <= offer_to_bob.media[0].port <= 34999 and offer_to_bob.media[0].port != answer.media[0].port
    assert bob.invite.from_.uri.user == "1001" and bob.invite.from_.display == '"Alice"'
    alice._ack(alice.last_invite, resp)
    time.sleep(0.3)
    # Alice hangs up
    assert alice.hang_up(resp, 3).status == 200
    assert wait_for(lambda: any(m.method == "BYE" for m in bob.received), 3)
    rows = wait_for(lambda: cdr(sw), 3)
    assert rows[0]["disposition"] == "ANSWERED" and rows[0]["caller"] == "1001" and rows[0]["called"] == "1002"
    assert rows[0]["source"] == "extension:1001" and rows[0]["hangup_by"] == "caller" and rows[0]["talk_seconds"] > 0.2
    assert rows[0]["q850_cause"] == 16
    bob.stop()


def test_busy(sw):
    bob = Phone(sw.address("udp"), "1002", "pw1002", behaviour="busy").start()
    resp = Caller(sw.address("udp"), "1001", "pw1001").call("1002")
    assert resp.status == 486 and "cause=17" in resp.header("Reason")
    row = wait_for(lambda: cdr(sw), 3)[0]
    assert (row["disposition"], row["sip_status"], row["q850_cause"]) == ("BUSY", 486, 17)
    bob.stop()


def test_cancel_before_answer(sw):
    bob = Phone(sw.address("udp"), "1002", "pw1002", behaviour="ring").start()
    alice = Caller(sw.address("udp"), "1001", "pw1001")
    assert alice.call("1002", until=180).status == 180
    alice.cancel()
    final = None
    deadline = time.time() + 3
    while time.time() < deadline and final is None:
        msg = alice.recv(0.5)
        if msg is not None and getattr(msg, "status", 0) == 487:
            final = msg
    assert final is not None
    assert wait_for(lambda: any(m.method == "CANCEL" for m in bob.received), 3), "the fork was cancelled"
    row = wait_for(lambda: cdr(sw), 3)[0]
    assert row["disposition"] == "CANCELLED" and row["hangup_by"] == "caller"
    bob.stop()


def test_forking_first_answer_wins(sw):
    ringing = Phone(sw.address("udp"), "1002", "pw1002", behaviour="ring").start()
    answering = Phone(sw.address("udp"), "1002", "pw1002", behaviour="answer").start()
    resp = Caller(sw.address("udp"), "1001", "pw1001").call("1002")
    assert resp.status == 200
    assert answering.invite is not None
    assert wait_for(lambda: ringing.invite is not None, 3), "both contacts were rung"
    assert wait_for(lambda: any(m.method == "CANCEL" for m in ringing.received), 3)
    ringing.stop()
    answering.stop()


def test_ring_timeout_takes_the_else_action(sw):
    silent = Phone(sw.address("udp"), "1003", "pw1003", behaviour="ring").start()
    busy = Phone(sw.address("udp"), "1004", "pw1004", behaviour="busy").start()
    resp = Caller(sw.address("udp"), "1001", "pw1001").call("1003", timeout=5)
    assert resp.status == 486
    assert silent.invite is not None and busy.invite is not None
    silent.stop()
    busy.stop()


def test_unregistered_extension_is_temporarily_unavailable(sw):
    resp = Caller(sw.address("udp"), "1001", "pw1001").call("1004")
    assert resp.status == 480
    assert wait_for(lambda: cdr(sw), 3)[0]["disposition"] == "NO ANSWER"


def test_no_open_relay(sw):
    """An unknown source without credentials is challenged, and no leg ever goes to the trunk."""
    import socket

    provider = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    provider.bind(("127.0.0.1", 0))
    provider.settimeout(1.0)
    stranger = Caller(sw.address("udp"), "1001", "wrong", local_ip="127.0.0.20")
    req = stranger.invite("9555123")
    resp = stranger.transact(req)
    assert resp.status == 407
    with pytest.raises(OSError):
        provider.recvfrom(2048)
    assert cdr(sw) == []
    # with wrong credentials it is challenged again, still no leg
    assert Caller(sw.address("udp"), "1001", "wrong", local_ip="127.0.0.20").call("9555123").status == 407


def test_trunk_caller_reaches_did_without_auth(sw):
    bob = Phone(sw.address("udp"), "1002", "pw1002").start()
    trunk = Caller(sw.address("udp"), "84951234567", "", local_ip="127.0.0.10")
    req = trunk.invite("+78005553535")
    trunk.send(req.serialize())
    final = None
    deadline = time.time() + 3
    while time.time() < deadline and final is None:
        msg = trunk.recv(0.5)
        if msg is not None and msg.status >= 200:
            final = msg
    assert final is not None and final.status == 200
    trunk._ack(req, final)
    assert bob.invite is not None
    bob.stop()


def test_hold_and_unhold_reinvite_is_relayed(sw):
    from centralino.switch.sip.dialog import Dialog

    bob = Phone(sw.address("udp"), "1002", "pw1002").start()
    alice = Caller(sw.address("udp"), "1001", "pw1001")
    resp = alice.call("1002")
    alice._ack(alice.last_invite, resp)
    d = Dialog.from_uac(alice.last_invite, resp)
    via = f"SIP/2.0/UDP {alice.local[0]}:{alice.local[1]};branch=z9hG4bK"
    for n, (direction, expected) in enumerate((("sendonly", "recvonly"), ("sendrecv", "sendrecv"))):
        offer = alice.invite("1002").body.decode().replace("a=sendrecv", f"a={direction}").encode()
        reinvite = d.create_request("INVITE", via + f"hold{n}", contact=f"<sip:1001@{alice.local[0]}:{alice.local[1]}>",
                                    body=offer, extra=[("Content-Type", "application/sdp")])
        answer = alice.transact(reinvite)
        assert answer.status == 200
        assert f"a={expected}" in answer.body.decode()
        assert parse_sdp(answer.body).media[0].port == parse_sdp(resp.body).media[0].port  # same anchor
        relayed = [m for m in bob.received if m.method == "INVITE" and m.to.tag is not None][-1]
        assert f"a={direction}" in relayed.body.decode()
        assert parse_sdp(relayed.body).connection.address == "127.0.0.1"  # Bob sees the worker, not Alice
    info = d.create_request("INFO", via + "info", body=b"Signal=5\r\nDuration=160\r\n",
                            extra=[("Content-Type", "application/dtmf-relay")])
    events = []
    sw.call(lambda: sw.switch.bus.subscribe(events.append, CallEvent))
    assert alice.transact(info).status == 200
    assert wait_for(lambda: any(m.method == "INFO" and b"Signal=5" in m.body for m in bob.received), 3)
    from centralino.events import CallDtmf
    assert [(e.digit, e.side, e.duration_ms) for e in events if isinstance(e, CallDtmf)] == [("5", "caller", 160)]
    bob.stop()


def test_blind_transfer_by_refer(sw):
    from helpers import refer

    bob = Phone(sw.address("udp"), "1002", "pw1002").start()
    carol = Phone(sw.address("udp"), "1004", "pw1004").start()
    alice = Caller(sw.address("udp"), "1001", "pw1001")
    resp = alice.call("1002")
    alice._ack(alice.last_invite, resp)
    time.sleep(0.2)
    refer(bob, "1004")
    notifies = wait_for(lambda: [m for m in bob.received if m.method == "NOTIFY"][1:] and
                        [m for m in bob.received if m.method == "NOTIFY"], 5)
    frags = [m.body.decode().strip() for m in notifies]
    assert frags[0].startswith("SIP/2.0 100") and frags[-1] == "SIP/2.0 200 OK"
    assert notifies[-1].header("Subscription-State").startswith("terminated")
    assert carol.invite is not None and carol.invite.from_.uri.user == "1001"
    assert wait_for(lambda: any(m.method == "BYE" for m in bob.received), 3), "the transferor is released"
    # the caller was never re-INVITEd (its media endpoint did not move) and now talks to Carol
    assert not any(isinstance(m, type(alice.last_invite)) and m.method == "INVITE" for m in alice.responses)
    assert alice.hang_up(resp, 10).status == 200
    assert wait_for(lambda: any(m.method == "BYE" for m in carol.received), 3)
    rows = wait_for(lambda: cdr(sw), 3)
    assert len(rows) == 1 and rows[0]["destination"] == "extension:1004" and rows[0]["disposition"] == "ANSWERED"
    legs = cdr(sw, "b")
    assert [r["destination"] for r in legs] == ["extension:1002", "extension:1004"]
    bob.stop()
    carol.stop()


def test_attended_transfer_with_replaces(sw):
    from helpers import refer

    bob = Phone(sw.address("udp"), "1002", "pw1002").start()
    carol = Phone(sw.address("udp"), "1004", "pw1004").start()
    alice = Caller(sw.address("udp"), "1001", "pw1001")
    r1 = alice.call("1002")
    alice._ack(alice.last_invite, r1)
    endpoint_to_bob = parse_sdp(bob.invite.body).media[0].port  # call 1's callee-facing endpoint
    bob2 = Caller(sw.address("udp"), "1002", "pw1002")  # Bob's second line calls Carol
    r2 = bob2.call("1004")
    bob2._ack(bob2.last_invite, r2)
    time.sleep(0.2)
    refer(bob, "1004", replaces=f"{bob2.call_id};to-tag={r2.to.tag};from-tag={bob2.tag}")
    reinvited = wait_for(lambda: [m for m in carol.received if m.method == "INVITE" and m.to.tag], 5)
    assert reinvited, "Carol is re-INVITEd towards call 1's endpoint"
    assert parse_sdp(reinvited[-1].body).media[0].port == endpoint_to_bob
    notifies = wait_for(lambda: [m for m in bob.received if m.method == "NOTIFY" and b"200 OK" in m.body], 5)
    assert notifies
    assert wait_for(lambda: any(m.method == "BYE" for m in bob.received), 3), "Bob's first line released"
    assert wait_for(lambda: any(getattr(m, "method", "") == "BYE" for m in iter(lambda: bob2.recv(0.2), None)), 3), \
        "Bob's second line released"
    assert alice.hang_up(r1, 10).status == 200
    assert wait_for(lambda: any(m.method == "BYE" for m in carol.received), 3), "Carol talked to Alice until now"
    rows = wait_for(lambda: len(cdr(sw)) == 2 and cdr(sw), 3)
    first, second = sorted(rows, key=lambda r: r["start"])
    assert first["caller"] == "1001" and first["destination"] == "extension:1004"
    assert second["caller"] == "1002" and second["hangup_by"] == "transfer"
    # every dialog of both calls, including the one the transfer moved between them, is gone
    b2bua = sw.switch.b2bua
    assert wait_for(lambda: sw.call(lambda: not b2bua.calls and not b2bua.dialogs), 3), sw.call(lambda: b2bua.dialogs)
    bob.stop()
    carol.stop()


def test_session_timers(tmp_path):
    """RFC 4028: the caller's leg expires when it stops refreshing; the switch refreshes a
    callee that asked it to (UPDATE every interval/2)."""
    text = plan_text(tmp_path, ROUTES, extensions=EXTS).replace(
        "domain: example.com", "domain: example.com\n    session_expires: 4\n    min_se: 2")
    with RunningSwitch(text) as s:
        s.tmp = tmp_path
        bob = Phone(s.address("udp"), "1002", "pw1002")
        bob.session_expires = 4
        bob.start()
        alice = Caller(s.address("udp"), "1001", "pw1001")
        def with_timer(caller, value):
            plain = caller.invite
            caller.invite = lambda to, **kw: plain(to, **{**kw, "extra": [*kw.get("extra", ()),
                                                   ("Session-Expires", value), ("Supported", "timer")]})
            return caller

        too_short = with_timer(Caller(s.address("udp"), "1001", "pw1001"), "1")
        refused = too_short.call("1002")
        assert refused.status == 422 and refused.header("Min-SE") == "2"
        resp = with_timer(alice, "4;refresher=uac").call("1002")
        assert resp.status == 200
        assert resp.header("Session-Expires") == "4;refresher=uac" and "timer" in resp.header("Require")
        alice._ack(alice.last_invite, resp)
        # the switch refreshes Bob (he asked for refresher=uac) with UPDATE
        assert wait_for(lambda: any(m.method == "UPDATE" for m in bob.received), 4)
        # Alice never refreshes: after 4 - 4/3 s the call is torn down on both sides
        assert wait_for(lambda: any(m.method == "BYE" for m in bob.received), 6)
        row = wait_for(lambda: cdr(s), 3)[0]
        assert row["hangup_by"] == "session-timer" and row["q850_cause"] == 102
        bob.stop()


def test_early_media_183_is_relayed_with_anchored_sdp(sw):
    bob = Phone(sw.address("udp"), "1002", "pw1002", behaviour="early").start()
    alice = Caller(sw.address("udp"), "1001", "pw1001")
    early = alice.call("1002", until=183)
    assert early.status == 183 and early.body
    sdp = parse_sdp(early.body)
    assert sdp.connection.address == "127.0.0.1" and 34000 <= sdp.media[0].port <= 34999
    assert sdp.media[0].port != 40004  # the caller hears the early media through the worker
    alice.cancel()
    bob.stop()


def test_callee_answer_crossing_the_cancel_is_acked_and_hung_up(sw):
    bob = Phone(sw.address("udp"), "1002", "pw1002", behaviour="answer-on-cancel")
    bob.behaviour = "ring"
    bob.start()
    alice = Caller(sw.address("udp"), "1001", "pw1001")
    assert alice.call("1002", until=180).status == 180
    bob.behaviour = "answer-on-cancel"
    alice.cancel()
    assert wait_for(lambda: any(m.method == "ACK" for m in bob.received), 3), "the late 200 is ACKed"
    assert wait_for(lambda: any(m.method == "BYE" for m in bob.received), 3), "and the leg hung up"
    row = wait_for(lambda: cdr(sw), 3)[0]
    assert row["disposition"] == "CANCELLED"
    bob.stop()


def test_an_answer_long_after_the_call_ended_is_acked_and_hung_up(sw):
    """The call is over (CDR written, its state freed) when the callee's phone answers anyway:
    the INVITE transaction still passes the 2xx on, and the small stand-in left for the finished
    call ACKs it and hangs that leg up."""
    bob = Phone(sw.address("udp"), "1002", "pw1002", behaviour="ring")
    bob.start()
    alice = Caller(sw.address("udp"), "1001", "pw1001")
    assert alice.call("1002", until=180).status == 180
    bob.behaviour = "late-answer"  # 200 to the CANCEL, nothing yet to the INVITE
    alice.cancel()
    assert wait_for(lambda: cdr(sw), 3)[0]["disposition"] == "CANCELLED"
    assert wait_for(lambda: sw.status()["calls"]["active"] == 0, 3)
    bob._reply(bob.invite, 200, SDP_OFFER.format(port=40000).encode())
    assert wait_for(lambda: any(m.method == "ACK" for m in bob.received), 3), "the late 200 is ACKed"
    assert wait_for(lambda: any(m.method == "BYE" for m in bob.received), 3), "and the leg hung up"
    bob.stop()


def test_caller_cancel_crossing_our_200_leaves_the_call_up(sw):
    bob = Phone(sw.address("udp"), "1002", "pw1002").start()
    alice = Caller(sw.address("udp"), "1001", "pw1001")
    resp = alice.call("1002")
    assert resp.status == 200
    alice.cancel()  # too late: the INVITE was answered
    cancel_answer = alice.recv(1.0)
    assert cancel_answer is not None and cancel_answer.status == 200 and cancel_answer.cseq.method == "CANCEL"
    alice._ack(alice.last_invite, resp)
    time.sleep(0.3)
    assert not any(m.method == "BYE" for m in bob.received)
    assert sw.status()["calls"]["answered"] == 1
    bob.stop()


def test_typed_call_events(sw):
    from centralino.events import (
        CallAnswered,
        CallDisconnected,
        CallEnded,
        CallFailed,
        CallRinging,
        CallTrying,
    )

    events = []
    sw.call(lambda: sw.switch.bus.subscribe(events.append, CallEvent))
    bob = Phone(sw.address("udp"), "1002", "pw1002").start()
    alice = Caller(sw.address("udp"), "1001", "pw1001")
    resp = alice.call("1002")
    alice._ack(alice.last_invite, resp)
    alice.hang_up(resp, 6)
    Caller(sw.address("udp"), "1001", "pw1001").call("1003")  # not registered: fails
    wait_for(lambda: len(events) >= 8, 3)
    kinds = [type(e) for e in events]
    assert kinds[:5] == [CallTrying, CallRinging, CallAnswered, CallDisconnected, CallEnded]
    assert kinds[5:8] == [CallTrying, CallFailed, CallEnded]
    assert events[0].caller == "1001" and events[2].destination == "extension:1002"
    assert events[3].by == "caller" and events[6].status == 480
    # the end of a call carries its CDR (the call row, then its legs); the stream is numbered
    assert events[4].summary.disposition == "ANSWERED" and [r.leg for r in events[4].records] == ["call", "a", "b"]
    assert events[7].summary.sip_status == 480
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    bob.stop()


def test_max_forwards_exhausted_and_cdr_csv(sw):
    alice = Caller(sw.address("udp"), "1001", "pw1001")
    plain = alice.invite
    alice.invite = lambda to, **kw: _with_max_forwards(plain(to, **kw))
    assert alice.call("1002").status == 483
    resp = Caller(sw.address("udp"), "1001", "pw1001").call("1004")  # not registered: 480
    assert resp.status == 480
    import subprocess
    import sys
    plan = sw.tmp / "plan-for-cdr.yaml"
    plan.write_text(f'server: {{storage: "sqlite:{sw.tmp / "centralino.db"}"}}\n')
    out = subprocess.run([sys.executable, "-m", "centralino", "cdr", "--config", str(plan)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].startswith("id,call_id,leg,") and len(out) == 2 and ",NO ANSWER," in out[1]


def _with_max_forwards(req):
    req.set_header("Max-Forwards", "0")
    return req


def test_rtp_inactivity_timeout_ends_the_call(tmp_path):
    text = plan_text(tmp_path, ROUTES, extensions=EXTS).replace(
        "  security:", '  rtp: {ports: "34000-34999", workers: 0, timeout: 1}\n  security:')
    with RunningSwitch(text) as s:
        s.tmp = tmp_path
        bob = Phone(s.address("udp"), "1002", "pw1002").start()
        alice = Caller(s.address("udp"), "1001", "pw1001")
        resp = alice.call("1002")
        alice._ack(alice.last_invite, resp)
        # neither phone sends any RTP: after 1 s both get a BYE
        assert wait_for(lambda: any(m.method == "BYE" for m in bob.received), 5)
        row = wait_for(lambda: cdr(s), 3)[0]
        assert row["hangup_by"] == "rtp-timeout" and row["disposition"] == "ANSWERED"
        bob.stop()


def test_late_offer_invite_without_sdp(sw):
    """INVITE without SDP: the callee's 200 carries the offer (pointed at the worker for the
    caller), the caller's ACK the answer (pointed at the worker for the callee)."""
    from centralino.switch.sip.message import Request

    bob = Phone(sw.address("udp"), "1002", "pw1002").start()
    alice = Caller(sw.address("udp"), "1001", "pw1001")
    plain = alice.invite

    def no_sdp(to, **kw):
        req = plain(to, **kw)
        req.body = b""
        req.remove_header("Content-Type")
        return req

    alice.invite = no_sdp
    resp = alice.call("1002")
    assert resp.status == 200 and bob.invite.body == b""
    offer = parse_sdp(resp.body)
    assert offer.connection.address == "127.0.0.1" and 34000 <= offer.media[0].port <= 34999
    assert not any(m.method == "ACK" for m in bob.received), "no ACK to Bob before Alice answers"
    answer = SDP_ANSWER.format(port=alice.local[1] + 1).encode()
    ack_headers = [("Via", f"SIP/2.0/UDP {alice.local[0]}:{alice.local[1]};branch=z9hG4bKlateack;rport"),
                   ("Max-Forwards", "70"), ("From", alice.last_invite.header("From")), ("To", resp.header("To")),
                   ("Call-ID", alice.call_id), ("CSeq", f"{alice.last_invite.cseq.seq} ACK"),
                   ("Content-Type", "application/sdp")]
    alice.send(Request("ACK", alice.last_invite.uri, ack_headers, answer).serialize())
    acks = wait_for(lambda: [m for m in bob.received if m.method == "ACK" and m.body], 3)
    assert acks, "Bob's ACK carries the answer"
    relayed = parse_sdp(acks[0].body)
    assert relayed.connection.address == "127.0.0.1" and 34000 <= relayed.media[0].port <= 34999
    assert relayed.media[0].port != alice.local[1] + 1
    bob.stop()


SDP_ANSWER = ("v=0\r\no=alice 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
              "m=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n")


def test_inband_dtmf_from_a_phone_without_telephone_events(sw):
    import socket as _socket

    import numpy as np
    from centralino.events import CallDtmf
    from centralino.media.codecs.g711 import ulaw_encode
    from centralino.media.rtp import RtpPacket

    events = []
    sw.call(lambda: sw.switch.bus.subscribe(events.append, CallEvent))
    bob = Phone(sw.address("udp"), "1002", "pw1002").start()
    alice = Caller(sw.address("udp"), "1001", "pw1001")
    plain = alice.invite

    def pcmu_only(to, **kw):
        req = plain(to, **kw)
        req.body = req.body.replace(b"RTP/AVP 0 8 101", b"RTP/AVP 0").replace(
            b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n", b"")
        return req

    alice.invite = pcmu_only
    resp = alice.call("1002")
    alice._ack(alice.last_invite, resp)
    port = parse_sdp(resp.body).media[0].port
    t = np.arange(960) / 8000
    key9 = (6000 * np.sin(2 * np.pi * 852 * t) + 6000 * np.sin(2 * np.pi * 1477 * t)).astype(np.int16)
    audio = np.concatenate([key9, np.zeros(1600, dtype=np.int16)])
    rtp = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", alice.local[1] + 1))  # the port Alice's SDP declared
    for n in range(len(audio) // 160):
        rtp.sendto(RtpPacket(0, n, n * 160, 7, ulaw_encode(audio[n * 160:(n + 1) * 160]).tobytes()).serialize(),
                   ("127.0.0.1", port))
        time.sleep(0.02)
    digits = wait_for(lambda: [e for e in events if isinstance(e, CallDtmf)], 2)
    assert [(d.digit, d.side) for d in digits] == [("9", "caller")]
    bob.stop()
