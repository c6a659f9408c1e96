"""Property tests (hypothesis): round trips for URIs, messages and SDP; and the fuzz target —
mutated messages may only ever raise RemoteProtocolError."""

from __future__ import annotations

from centralino.switch.sip.errors import RemoteProtocolError
from centralino.switch.sip.message import Request, Response
from centralino.switch.sip.parser import StreamParser, parse_datagram
from centralino.switch.sip.sdp import parse_sdp
from centralino.switch.sip.uri import URI, parse_uri
from helpers import TORTURE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

token = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~", min_size=1, max_size=12)
user_text = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()&=+$,;?/", min_size=1, max_size=16)
label = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)
host = st.one_of(
    st.lists(label, min_size=1, max_size=4).map(".".join),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
)
param_value = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=10)
params = st.lists(st.tuples(label, st.one_of(st.none(), param_value)), max_size=3, unique_by=lambda p: p[0])


@st.composite
def sip_uris(draw) -> URI:
    return URI(
        scheme=draw(st.sampled_from(["sip", "sips"])),
        user=draw(st.one_of(st.none(), user_text.filter(lambda u: "@" not in u and ":" not in u))),
        host=draw(host),
        port=draw(st.one_of(st.none(), st.integers(1, 65535))),
        params=tuple(draw(params)),
    )


@given(sip_uris())
def test_uri_round_trip(uri):
    text = uri.serialize()
    parsed = parse_uri(text)
    assert parsed == uri
    assert parsed.serialize() == text


@st.composite
def requests(draw) -> Request:
    uri = draw(sip_uris())
    method = draw(st.sampled_from(["INVITE", "REGISTER", "OPTIONS", "BYE", "X-" + draw(token)]))
    headers = [
        ("Via", f"SIP/2.0/{draw(st.sampled_from(['UDP', 'TCP', 'TLS']))} {draw(host)}:{draw(st.integers(1, 65535))}"
                f";branch=z9hG4bK{draw(label)}"),
        ("Max-Forwards", str(draw(st.integers(0, 255)))),
        ("From", f'"{draw(st.text("abc xyz", max_size=8))}" <{draw(sip_uris()).serialize()}>;tag={draw(label)}'),
        ("To", f"<{draw(sip_uris()).serialize()}>"),
        ("Call-ID", draw(token)),
        ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"),
    ]
    for _ in range(draw(st.integers(0, 4))):
        headers.append(("X-" + draw(token), draw(st.text("abcdef 0123;=", max_size=20)).strip() or "v"))
    body = draw(st.binary(max_size=200))
    return Request(method, uri, headers, body)


@given(requests())
def test_message_round_trip(req):
    data = req.serialize()
    parsed = parse_datagram(data)
    assert parsed == req
    assert parse_datagram(parsed.serialize()) == parsed
    # and the same over a stream, split anywhere
    mid = len(data) // 2
    p = StreamParser()
    items = p.feed(data[:mid]) + p.feed(data[mid:])
    assert items == [req]


@given(st.integers(100, 699), st.text("abcdefgh ", max_size=20))
def test_response_round_trip(status, reason):
    resp = Response(status, reason.strip(), [
        ("Via", "SIP/2.0/UDP h:5060;branch=z9hG4bKx"), ("From", "<sip:a@b>;tag=1"),
        ("To", "<sip:c@d>;tag=2"), ("Call-ID", "x"), ("CSeq", "1 INVITE"),
    ])
    assert parse_datagram(resp.serialize()) == resp


@st.composite
def sdps(draw) -> bytes:
    ip = draw(st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))))
    lines = ["v=0", f"o=- {draw(st.integers(0, 2**32))} 1 IN IP4 {ip}", "s=-", f"c=IN IP4 {ip}", "t=0 0"]
    for _ in range(draw(st.integers(1, 3))):
        pts = draw(st.lists(st.integers(0, 127), min_size=1, max_size=5, unique=True))
        lines.append(f"m={draw(st.sampled_from(['audio', 'video']))} {draw(st.integers(0, 65535))} RTP/AVP "
                     + " ".join(map(str, pts)))
        for pt in pts:
            lines.append(f"a=rtpmap:{pt} {draw(st.sampled_from(['PCMU', 'PCMA', 'opus', 'telephone-event']))}/8000")
        lines.append("a=" + draw(st.sampled_from(["sendrecv", "sendonly", "recvonly", "inactive"])))
    return ("\r\n".join(lines) + "\r\n").encode()


@given(sdps())
def test_sdp_round_trip(data):
    sd = parse_sdp(data)
    assert sd.serialize() == data
    again = parse_sdp(sd.serialize())
    assert [m.rtpmaps for m in again.media] == [m.rtpmaps for m in sd.media]


# -- fuzz target ------------------------------------------------------------------------------------
SEEDS = [p.read_bytes() for p in sorted(TORTURE.glob("*.dat"))]


def fuzz_one(data: bytes) -> None:
    """The fuzz target: anything but RemoteProtocolError escaping is a bug."""
    try:
        msg = parse_datagram(data)
        if msg is not None:
            msg.serialize()
            for getter in ("vias", "contacts", "routes", "record_routes", "content_type", "expires"):
                try:
                    getattr(msg, getter)
                except RemoteProtocolError:
                    pass
    except RemoteProtocolError:
        pass
    p = StreamParser()
    for i in range(0, len(data), 7):
        for item in p.feed(data[i:i + 7]):
            assert isinstance(item, (Request, Response, RemoteProtocolError))
    p.eof()


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.integers(0, 3))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == 0 and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == 1:
            data[pos:pos] = draw(st.sampled_from([b"\r\n", b":", b";", b",", b"<", b">", b'"', b"\x00",
                                                  b" ", b"%", b"\r\n\r\n", b"Content-Length: 99\r\n"]))
        elif op == 2 and data:
            del data[pos:pos + draw(st.integers(1, 40))]
        else:
            data[pos:pos] = draw(st.binary(max_size=16))
    return bytes(data)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(mutated())
def test_fuzz_parser_only_raises_protocol_errors(data):
    fuzz_one(data)
