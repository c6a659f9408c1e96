from __future__ import annotations

import pytest
from centralino.switch.sip.errors import RemoteProtocolError
from centralino.switch.sip.headers import parse_name_addr
from centralino.switch.sip.sdp import Connection, parse_sdp
from centralino.switch.sip.uri import URI, AbsoluteURI, parse_uri, unescape


def test_sip_uri_components():
    u = parse_uri("sips:alice:pw@[2001:db8::1]:5061;transport=tcp;lr?Subject=hi&Priority=urgent")
    assert isinstance(u, URI)
    assert (u.scheme, u.user, u.password, u.host, u.port) == ("sips", "alice", "pw", "[2001:db8::1]", 5061)
    assert u.param("transport") == "tcp" and u.has_param("lr") and u.param("LR") == ""
    assert u.headers == (("Subject", "hi"), ("Priority", "urgent"))
    assert str(u) == "sips:alice:pw@[2001:db8::1]:5061;transport=tcp;lr?Subject=hi&Priority=urgent"


def test_escapes_are_kept_and_decodable():
    u = parse_uri("sip:sips%3Auser%40example.com@example.net")
    assert u.user == "sips%3Auser%40example.com"
    assert u.user_unescaped == "sips:user@example.com"
    assert unescape("null-%00-null") == "null-\x00-null"


def test_tel_and_other_schemes():
    t = parse_uri("tel:+7-800-555-35-35;phone-context=example.com")
    assert t.scheme == "tel" and t.user == "+7-800-555-35-35" and t.param("phone-context") == "example.com"
    assert isinstance(parse_uri("urn:service:sos"), AbsoluteURI)


@pytest.mark.parametrize("bad", ["sip:", "sip:user@", "sip:a b@host", "sip:host:99999", "nocolon", "sip:<x>"])
def test_bad_uris(bad):
    with pytest.raises(RemoteProtocolError):
        parse_uri(bad)


def test_name_addr_forms():
    na = parse_name_addr('"Bob" <sip:bob@example.com;transport=udp>;tag=x;expires=30')
    assert na.display == '"Bob"' and na.tag == "x" and na.param("expires") == "30"
    assert na.uri.param("transport") == "udp"
    bare = parse_name_addr("sip:bob@example.com;tag=y")
    assert bare.tag == "y" and bare.uri.params == ()
    with pytest.raises(RemoteProtocolError):
        parse_name_addr("sip:bob@example.com?x=y")  # '?' needs <>


SDP = (b"v=0\r\no=alice 2890844526 2890844526 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\n"
       b"t=0 0\r\na=sendrecv\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
       b"a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
       b"a=ptime:20\r\nm=video 0 RTP/AVP 31\r\na=inactive\r\n")


def test_sdp_parse_and_views():
    sd = parse_sdp(SDP)
    assert sd.version == 0 and sd.connection == Connection("IN", "IP4", "10.0.0.1")
    audio, _video = sd.media
    assert audio.port == 49170 and audio.formats == ["0", "8", "101"]
    assert audio.rtpmaps[101].encoding == "telephone-event" and audio.fmtps[101] == "0-16"
    assert sd.media_direction(0) == "sendrecv" and sd.media_direction(1) == "inactive"
    assert audio.attributes("ptime") == ["20"]
    assert sd.serialize() == SDP


def test_sdp_rewrite_connection_and_direction():
    sd = parse_sdp(SDP)
    sd.connection = Connection("IN", "IP4", "192.0.2.1")
    sd.media[0].direction = "sendonly"
    sd.media[0].port = 30000
    again = parse_sdp(sd.serialize())
    assert again.connection.address == "192.0.2.1"
    assert again.media_direction(0) == "sendonly" and again.media[0].port == 30000


def test_sdp_rejects_garbage():
    with pytest.raises(RemoteProtocolError):
        parse_sdp(b"v=0\r\nm =video 3227 RTP/AVP 31\r\n")
