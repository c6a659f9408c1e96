"""SDP rewriting for media anchoring: every leg sees the media worker's address, and the codec
list is the intersection of what the offer carries and what the relay supports."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from ..sip.errors import RemoteProtocolError
from ..sip.sdp import Connection, SessionDescription, parse_sdp

# Static payload types we relay, and dynamic ones by encoding name.
STATIC = {"0": "PCMU", "8": "PCMA"}
DYNAMIC = {"telephone-event"}
_ORIGIN_VERSION = itertools.count(1)
# SDP attributes that describe the far end's transport and must not leak through the anchor
_DROP = ("candidate", "ice-ufrag", "ice-pwd", "ice-options", "ice-lite", "rtcp", "end-of-candidates",
         "remote-candidates", "crypto", "fingerprint", "setup", "rtcp-mux")


@dataclass(frozen=True)
class MediaTarget:
    """Where a leg's audio comes from / should go, as its SDP declares."""

    ip: str
    port: int
    rtcp_port: int
    formats: tuple[str, ...]
    direction: str
    dtmf_pt: int | None = None  # telephone-event payload type, if offered


def audio_target(sdp: SessionDescription) -> MediaTarget | None:
    for i, m in enumerate(sdp.media):
        if m.media == "audio" and m.port:
            conn = sdp.media_connection(i)
            if conn is None:
                raise RemoteProtocolError("SDP without a connection address", 488)
            rtcp = m.port + 1
            for value in m.attributes("rtcp"):
                first = value.split()[0]
                if first.isdigit():
                    rtcp = int(first)
            dtmf = next((pt for pt, r in m.rtpmaps.items() if r.encoding.lower() == "telephone-event"), None)
            return MediaTarget(conn.address, m.port, rtcp, tuple(m.formats), sdp.media_direction(i), dtmf)
    return None


def supported_formats(sdp: SessionDescription, index: int) -> list[str]:
    m = sdp.media[index]
    maps = m.rtpmaps
    keep = []
    for fmt in m.formats:
        if (fmt in STATIC and (int(fmt) not in maps or maps[int(fmt)].encoding.upper() == STATIC[fmt])) or (fmt.isdigit() and int(fmt) in maps and maps[int(fmt)].encoding.lower() in DYNAMIC):
            keep.append(fmt)
    return keep


def anchor(body: bytes, ip: str, port: int, *, session_id: str) -> tuple[bytes, MediaTarget | None]:
    """Rewrite an SDP so its audio goes to (ip, port): returns the new SDP and what the original
    declared. Unsupported codecs are removed; other media lines are refused (port 0)."""
    sdp = parse_sdp(body)
    original = audio_target(sdp)
    out = SessionDescription(list(sdp.lines), [])
    out.origin = f"Centralino {session_id} {next(_ORIGIN_VERSION)} IN IP4 {ip}"
    out.connection = Connection("IN", "IP4", ip)
    found_audio = False
    for i, m in enumerate(sdp.media):
        lines = [(t, v) for t, v in m.lines if not (t == "a" and v.split(":", 1)[0] in _DROP)]
        if m.media != "audio" or m.port == 0 or found_audio:
            m2 = type(m)(m.media, 0, m.proto, list(m.formats), None, [(t, v) for t, v in lines if t != "c"])
            out.media.append(m2)
            continue
        formats = supported_formats(sdp, i)
        if not formats:
            raise RemoteProtocolError("no common codec (PCMU, PCMA)", 488)
        kept_pt = set(formats)
        lines = [
            (t, v) for t, v in lines
            if not (t == "a" and v.split(":", 1)[0] in ("rtpmap", "fmtp") and v.split(":", 1)[1].split(" ")[0] not in kept_pt)
            and t != "c"
        ]
        m2 = type(m)(m.media, port, "RTP/AVP", formats, None, lines)
        out.media.append(m2)
        found_audio = True
    if not found_audio:
        raise RemoteProtocolError("no audio stream in the SDP", 488)
    return out.serialize(), original
