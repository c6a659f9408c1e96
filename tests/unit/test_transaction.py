"""The §17 state machines under simulated time: no sockets, no sleeping."""

from __future__ import annotations

import itertools

import pytest
from centralino.switch.sip.message import Request, Response, make_response
from centralino.switch.sip.parser import parse_datagram
from centralino.switch.sip.transaction import (
    ResponseReceived,
    State,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
)
from centralino.switch.sip.uri import parse_uri


def request(method: str = "INVITE", branch: str = "z9hG4bKabc123") -> Request:
    return Request(method, parse_uri("sip:bob@example.com"), [
        ("Via", f"SIP/2.0/UDP 127.0.0.1:5070;branch={branch}"),
        ("Max-Forwards", "70"), ("From", "<sip:alice@example.com>;tag=a1"),
        ("To", "<sip:bob@example.com>"), ("Call-ID", "call-1"), ("CSeq", f"1 {method}"),
    ])


def run_until(layer: TransactionLayer, end: float) -> list[tuple[float, bytes]]:
    """Fire every timer up to ``end``; return (time, datagram) for each send."""
    sent = []
    while (t := layer.get_timer()) is not None and t <= end:
        layer.handle_timer(t)
        sent += [(t, d) for d, _ in layer.datagrams_to_send()]
    return sent


def events(layer: TransactionLayer) -> list:
    out = []
    while (e := layer.next_event()) is not None:
        out.append(e)
    return out


def test_invite_client_retransmits_doubling_then_times_out_at_64_t1():
    layer = TransactionLayer()
    txn = layer.send_request(request(), "dest", reliable=False, now=0.0)
    assert len(layer.datagrams_to_send()) == 1
    sent = run_until(layer, 40.0)
    # Timer A: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s after start (intervals 0.5, 1, 2, 4, 8, 16)
    times = [t for t, _ in sent]
    assert times == pytest.approx([0.5, 1.5, 3.5, 7.5, 15.5, 31.5])
    intervals = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert intervals == pytest.approx([0.5, 1, 2, 4, 8, 16])
    evs = events(layer)
    assert any(isinstance(e, TransactionTimeout) for e in evs)
    assert txn.state is State.TERMINATED
    # Timer B fired at exactly 64*T1 = 32 s
    assert layer.get_timer() is None


def test_invite_client_timeout_time_is_32s():
    layer = TransactionLayer()
    layer.send_request(request(), "dest", reliable=False, now=100.0)
    layer.datagrams_to_send()
    fired_at = None
    while (t := layer.get_timer()) is not None:
        layer.handle_timer(t)
        layer.datagrams_to_send()
        if any(isinstance(e, TransactionTimeout) for e in events(layer)):
            fired_at = t
    assert fired_at == pytest.approx(132.0)


def test_non_invite_client_caps_at_t2():
    layer = TransactionLayer()
    layer.send_request(request("OPTIONS"), "dest", reliable=False, now=0.0)
    layer.datagrams_to_send()
    times = [t for t, _ in run_until(layer, 40.0)]
    intervals = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert intervals[:4] == pytest.approx([0.5, 1, 2, 4])
    assert all(i == pytest.approx(4.0) for i in intervals[4:])  # capped at T2
    assert times[-1] < 32.0


def test_non_invite_proceeding_retransmits_every_t2():
    layer = TransactionLayer()
    req = request("OPTIONS")
    layer.send_request(req, "dest", reliable=False, now=0.0)
    layer.datagrams_to_send()
    layer.receive_response(make_response(req, 100), 0.1)
    times = [t for t, _ in run_until(layer, 20.0)]
    assert times[0] == pytest.approx(0.5)
    intervals = [b - a for a, b in itertools.pairwise(times)]
    assert all(i == pytest.approx(4.0) for i in intervals)


@pytest.mark.parametrize("method", ["INVITE", "OPTIONS"])
def test_no_retransmission_over_reliable_transport(method):
    layer = TransactionLayer()
    txn = layer.send_request(request(method), "dest", reliable=True, now=0.0)
    assert len(layer.datagrams_to_send()) == 1
    assert run_until(layer, 100.0) == []
    assert txn.state is State.TERMINATED  # Timer B/F still applies
    assert any(isinstance(e, TransactionTimeout) for e in events(layer))


def test_invite_client_error_response_sends_ack_and_absorbs_retransmissions():
    layer = TransactionLayer()
    req = request()
    txn = layer.send_request(req, "dest", reliable=False, now=0.0)
    layer.datagrams_to_send()
    resp = make_response(req, 486, to_tag="xyz")
    layer.receive_response(resp, 0.2)
    acks = layer.datagrams_to_send()
    assert len(acks) == 1
    ack = parse_datagram(acks[0][0])
    assert ack.method == "ACK" and ack.top_via.branch == "z9hG4bKabc123" and ack.to.tag == "xyz"
    assert txn.state is State.COMPLETED
    # a retransmitted 486 is answered with the ACK again, not passed up
    events(layer)
    layer.receive_response(make_response(req, 486, to_tag="xyz"), 1.0)
    assert len(layer.datagrams_to_send()) == 1
    assert not [e for e in events(layer) if isinstance(e, ResponseReceived)]
    run_until(layer, 33.0)  # Timer D = 32 s
    assert txn.state is State.TERMINATED


def test_invite_client_2xx_goes_to_tu_including_retransmissions():
    layer = TransactionLayer()
    req = request()
    txn = layer.send_request(req, "dest", reliable=False, now=0.0)
    layer.receive_response(make_response(req, 180, to_tag="t"), 0.1)
    layer.receive_response(make_response(req, 200, to_tag="t"), 0.2)
    layer.receive_response(make_response(req, 200, to_tag="t"), 0.7)
    statuses = [e.response.status for e in events(layer) if isinstance(e, ResponseReceived)]
    assert statuses == [180, 200, 200]
    assert txn.state is State.ACCEPTED
    run_until(layer, 33.0)  # Timer M
    assert txn.state is State.TERMINATED


def test_invite_server_retransmits_error_until_ack_then_timer_i():
    layer = TransactionLayer()
    req = request()
    txn, new = layer.receive_request(req, "src", reliable=False, now=0.0)
    assert new
    layer.send_response(txn, make_response(req, 404, to_tag="q"), 0.0)
    layer.datagrams_to_send()
    sent = run_until(layer, 3.0)  # Timer G: 0.5, 1.5 (then doubling, capped at T2)
    assert [t for t, _ in sent] == pytest.approx([0.5, 1.5])
    ack = parse_datagram(b"ACK sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKabc123\r\n"
                         b"From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=q\r\n"
                         b"Call-ID: call-1\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    matched, is_new = layer.receive_request(ack, "src", reliable=False, now=3.2)
    assert matched is txn and not is_new
    assert txn.state is State.CONFIRMED
    assert run_until(layer, 20.0) == []  # no more retransmissions
    assert txn.state is State.TERMINATED  # Timer I = T4


def test_invite_server_without_ack_times_out_with_timer_h():
    layer = TransactionLayer()
    req = request()
    txn, _ = layer.receive_request(req, "src", reliable=False, now=0.0)
    layer.send_response(txn, make_response(req, 480, to_tag="q"), 0.0)
    sent = run_until(layer, 40.0)
    intervals = [b - a for a, b in zip([0.0] + [t for t, _ in sent], [t for t, _ in sent], strict=False)]
    assert max(intervals) == pytest.approx(4.0)
    assert any(isinstance(e, TransactionTimeout) for e in events(layer))
    assert txn.state is State.TERMINATED


def test_server_retransmission_gets_last_response():
    layer = TransactionLayer()
    req = request("REGISTER")
    txn, _ = layer.receive_request(req, "src", reliable=False, now=0.0)
    layer.send_response(txn, make_response(req, 401, to_tag="t"), 0.0)
    first = layer.datagrams_to_send()
    again, is_new = layer.receive_request(request("REGISTER"), "src", reliable=False, now=0.5)
    assert again is txn and not is_new
    assert layer.datagrams_to_send() == first
    run_until(layer, 33.0)  # Timer J = 64*T1
    assert txn.state is State.TERMINATED
    assert any(isinstance(e, TransactionTerminated) for e in events(layer))


def test_rfc2543_fallback_matching():
    layer = TransactionLayer()
    old = request("INVITE", branch="")
    old.set_header("Via", "SIP/2.0/UDP 10.0.0.1:5060")
    txn, new = layer.receive_request(old, "src", reliable=False, now=0.0)
    again = request("INVITE", branch="")
    again.set_header("Via", "SIP/2.0/UDP 10.0.0.1:5060")
    txn2, new2 = layer.receive_request(again, "src", reliable=False, now=0.5)
    assert new and not new2 and txn2 is txn
    other = request("INVITE", branch="")
    other.set_header("Via", "SIP/2.0/UDP 10.0.0.1:5060")
    other.set_header("CSeq", "2 INVITE")
    assert layer.receive_request(other, "src", reliable=False, now=0.6)[1]


def test_server_invite_accepted_retransmits_2xx_until_ack():
    layer = TransactionLayer()
    req = request()
    txn, _ = layer.receive_request(req, "src", reliable=False, now=0.0)
    layer.send_response(txn, make_response(req, 200, to_tag="t"), 0.0)
    layer.datagrams_to_send()
    assert [t for t, _ in run_until(layer, 2.0)] == pytest.approx([0.5, 1.5])
    ack = request("ACK", branch="z9hG4bKother")
    assert layer.match_2xx_ack(ack, 2.0) is txn
    assert run_until(layer, 10.0) == []


def test_waiting_transactions_let_go_of_messages_and_their_user():
    """While they only absorb retransmissions (up to 32 s) transactions keep bytes, not the
    parsed request nor the transaction user (a call): thousands of them must not pin calls."""
    layer = TransactionLayer()
    req = request("BYE")
    nist, _ = layer.receive_request(req, "src", reliable=False, now=0.0)
    nist.user_data = object()
    layer.send_response(nist, make_response(req, 200, to_tag="t"), 0.0)
    answer = layer.datagrams_to_send()
    assert nist.request is None and nist.user_data is None and nist.method == "BYE"
    layer.receive_request(request("BYE"), "src", reliable=False, now=1.0)
    assert layer.datagrams_to_send() == answer  # still answers a retransmission
    invite = request(branch="z9hG4bKinv")
    ist, _ = layer.receive_request(invite, "src", reliable=False, now=0.0)
    ist.user_data = object()
    layer.send_response(ist, make_response(invite, 200, to_tag="t"), 0.0)
    assert ist.user_data is not None  # no ACK yet: Timer L's timeout goes to the user
    assert layer.match_2xx_ack(request("ACK", branch="z9hG4bKack"), 0.1) is ist
    assert ist.request is None and ist.user_data is None and ist.last_response is None
    run_until(layer, 40.0)
    assert ist.state is State.TERMINATED and not layer._accepted


def test_response_matches_client_transaction_by_branch_and_method():
    layer = TransactionLayer()
    req = request("OPTIONS")
    layer.send_request(req, "dest", reliable=False, now=0.0)
    stray = make_response(request("OPTIONS", branch="z9hG4bKnope"), 200)
    assert layer.receive_response(stray, 0.1) is None
    assert layer.receive_response(make_response(req, 200), 0.1) is not None


def test_response_to_original_request_is_fine():
    assert isinstance(make_response(request(), 180), Response)
