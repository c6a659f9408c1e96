"""Message model and parser: forms, bounds, errors carrying the status to answer with."""

from __future__ import annotations

import pytest
from centralino.switch.sip.errors import RemoteProtocolError
from centralino.switch.sip.message import Request, Response
from centralino.switch.sip.parser import MAX_HEADERS, StreamParser, parse_datagram
from helpers import TORTURE

BASIC = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"v: SIP/2.0/UDP host.example.com:5060;branch=z9hG4bK1\r\n"
    b"Via: SIP/2.0/TCP proxy.example.com;branch=z9hG4bK2, SIP/2.0/UDP last.example.com;branch=z9hG4bK3\r\n"
    b"f: \"Alice \\\"A\\\"\" <sip:alice@example.com>;tag=abc\r\n"
    b"t: sip:bob@example.com\r\n"
    b"i: call-123@example.com\r\n"
    b"CSeq: 7 INVITE\r\n"
    b"Max-Forwards: 70\r\n"
    b"m: <sip:alice@10.0.0.1:5070;transport=tcp>;expires=60;q=0.5, sip:alice@10.0.0.2\r\n"
    b"Subject: a folded\r\n   subject line\r\n"
    b"c: application/sdp\r\n"
    b"l: 4\r\n\r\nv=0\n"
)


def test_compact_forms_and_case_insensitive_names():
    msg = parse_datagram(BASIC)
    assert isinstance(msg, Request)
    assert msg.call_id == "call-123@example.com"
    assert msg.header("CALL-ID") == msg.header("i") == "call-123@example.com"
    assert msg.header("subject") == "a folded subject line"
    assert msg.content_type.mime == "application/sdp"
    assert msg.body == b"v=0\n"


def test_multi_value_via_and_contact():
    msg = parse_datagram(BASIC)
    assert [v.host for v in msg.vias] == ["host.example.com", "proxy.example.com", "last.example.com"]
    assert msg.top_via.port == 5060 and msg.top_via.branch == "z9hG4bK1"
    assert msg.vias[1].transport == "TCP"
    contacts = msg.contacts
    assert [c.uri.host for c in contacts] == ["10.0.0.1", "10.0.0.2"]
    assert contacts[0].param("expires") == "60" and contacts[0].param("q") == "0.5"
    assert contacts[0].uri.param("transport") == "tcp"
    assert msg.from_.display == '"Alice \\"A\\""' and msg.from_.tag == "abc"
    assert msg.to.tag is None and not msg.to.bracketed


def test_round_trip():
    msg = parse_datagram(BASIC)
    again = parse_datagram(msg.serialize())
    assert again == msg
    assert again.serialize() == msg.serialize()


def test_response_parsing():
    resp = parse_datagram(b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
                          b"To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
    assert isinstance(resp, Response) and resp.status == 180 and resp.reason == "Ringing"


@pytest.mark.parametrize("data, status", [
    (b"INVITE sip:a@b SIP/3.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n", 505),
    (b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n", 400),  # missing headers
    (b"INVITE  SIP/2.0\r\n\r\n", 400),
])
def test_errors_carry_status(data, status):
    with pytest.raises(RemoteProtocolError) as info:
        parse_datagram(data)
    assert info.value.status == status


def test_malformed_response_has_no_status():
    with pytest.raises(RemoteProtocolError) as info:
        parse_datagram(b"SIP/2.0 999 Nope\r\nVia: SIP/2.0/UDP h\r\n\r\n")
    assert info.value.status is None


def test_size_bound():
    big = BASIC.replace(b"l: 4\r\n\r\nv=0\n", b"l: 70000\r\n\r\n" + b"x" * 70000)
    with pytest.raises(RemoteProtocolError) as info:
        parse_datagram(big)
    assert info.value.status == 513


def test_header_count_bound():
    many = BASIC.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\n" + b"X-A: 1\r\n" * (MAX_HEADERS + 5))
    with pytest.raises(RemoteProtocolError) as info:
        parse_datagram(many)
    assert info.value.status == 400 and info.value.partial is not None


def test_line_length_bound():
    long = BASIC.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nX-Long: " + b"a" * 20000 + b"\r\n")
    with pytest.raises(RemoteProtocolError):
        parse_datagram(long)


def test_keepalive_is_none():
    assert parse_datagram(b"\r\n\r\n") is None


def test_stream_framing_whole_and_bytewise():
    data = BASIC + BASIC.replace(b"call-123", b"call-456")
    whole = StreamParser().feed(data)
    assert [m.call_id for m in whole] == ["call-123@example.com", "call-456@example.com"]
    p = StreamParser()
    got = []
    for i in range(len(data)):
        got += p.feed(data[i:i + 1])
    assert [m.call_id for m in got] == ["call-123@example.com", "call-456@example.com"]


def test_stream_keepalives_between_messages():
    p = StreamParser()
    assert p.feed(b"\r\n\r\n") == []
    assert len(p.feed(BASIC)) == 1


def test_stream_framing_errors_are_fatal():
    data = (TORTURE / "ncl.dat").read_bytes()
    items = StreamParser().feed(data)
    assert isinstance(items[0], RemoteProtocolError) and items[0].fatal and items[0].status == 400


def test_stream_header_flood_is_bounded():
    p = StreamParser(max_size=1000)
    items = p.feed(b"INVITE sip:a@b SIP/2.0\r\n" + b"X: y\r\n" * 300)
    assert items and isinstance(items[0], RemoteProtocolError) and items[0].fatal


def test_set_and_remove_headers():
    msg = parse_datagram(BASIC)
    msg.set_header("Max-Forwards", "69")
    assert msg.max_forwards == 69
    msg.remove_header("Subject")
    assert msg.header("Subject") is None
    msg.add_header("Via", "SIP/2.0/UDP new.example.com;branch=z9hG4bKnew", first=True)
    assert msg.top_via.host == "new.example.com" and len(msg.vias) == 4
