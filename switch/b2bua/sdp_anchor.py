"""SDP rewriting for media anchoring: every leg sees the media worker's address, and the codec
list is the intersection of what the offer carries and what the media workers support.

Codec choice per leg: ``chosen_codec`` reads what a leg's SDP settled on; ``offer_for_callee``
adds the codecs we can transcode to an offer; ``answer_with`` answers an offer with exactly one
codec (the switch terminating the media itself, or the far leg chose one this caller lacks)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from ...media.codecs import KNOWN, codec_named
from ..sip.errors import RemoteProtocolError
from ..sip.sdp import Connection, SessionDescription, parse_sdp

# Static payload types we relay, and dynamic ones by encoding name.
STATIC = {"0": "PCMU", "8": "PCMA", "9": "G722"}
DYNAMIC = {"telephone-event", "opus", "l16"}
ALWAYS = ("PCMU", "PCMA")  # what we add to an offer to a callee: we transcode to these
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
    dtmf_pt: int | None = None  # the telephone-event payload type at the first codec's clock rate
    dtmf_rates: tuple[tuple[int, int], ...] = ()  # every telephone-event payload type → its clock rate


def telephone_events(m: Any) -> dict[int, int]:
    """The telephone-event payload types of a media line and their clock rates (a softphone with
    Opus offers one at 48000 and one at 8000)."""
    maps = m.rtpmaps
    return {pt: r.clock_rate for pt, r in maps.items()
            if r.encoding.lower() == "telephone-event" and str(pt) in m.formats}


def event_for_clock(events: dict[int, int], clock: int) -> int | None:
    """The telephone-event to use beside a codec of this RTP clock: the one at the same rate
    (RFC 4733 §2.1: the events share the audio's timestamps), else the first offered."""
    return next((pt for pt, rate in events.items() if rate == clock), next(iter(events), None))


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
            events = telephone_events(m)
            codecs = _codec_map(sdp, i)
            first = next((codecs[int(f)] for f in m.formats if f.isdigit() and int(f) in codecs), "PCMU")
            info = codec_named(first)
            dtmf = event_for_clock(events, info.clock if info else 8000)
            return MediaTarget(conn.address, m.port, rtcp, tuple(m.formats), sdp.media_direction(i), dtmf,
                               tuple(events.items()))
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


@dataclass(frozen=True)
class Chosen:
    """The codec a leg's SDP settled on (its first supported format) and its payload map."""

    codec: str
    pt: int
    codecs: dict[int, str]  # every supported payload type of that SDP → codec name
    dtmf_pt: int | None = None  # the telephone-event that goes with it (same clock), if any


def chosen_codec(body: bytes) -> Chosen | None:
    if not body:
        return None
    sdp = parse_sdp(body)
    for i, m in enumerate(sdp.media):
        if m.media != "audio" or not m.port:
            continue
        codecs = _codec_map(sdp, i)
        for fmt in m.formats:
            if fmt.isdigit() and int(fmt) in codecs:
                info = codec_named(codecs[int(fmt)])
                return Chosen(codecs[int(fmt)], int(fmt), codecs,
                              event_for_clock(telephone_events(m), info.clock if info else 8000))
        return None
    return None


def _codec_map(sdp: SessionDescription, index: int) -> dict[int, str]:
    m = sdp.media[index]
    maps = m.rtpmaps
    out: dict[int, str] = {}
    for fmt in m.formats:
        if not fmt.isdigit():
            continue
        pt = int(fmt)
        name = maps[pt].encoding if pt in maps else STATIC.get(fmt)
        info = codec_named(name) if name else None
        if info is not None:
            out[pt] = info.name
    return out


def offer_for_callee(body: bytes, ip: str, port: int, *, session_id: str) -> bytes:
    """The caller's offer, anchored, with PCMU and PCMA appended when it lacks them: a callee
    that has no codec in common with the caller still gets a call (the worker transcodes)."""
    anchored, _ = anchor(body, ip, port, session_id=session_id)
    sdp = parse_sdp(anchored)
    for i, m in enumerate(sdp.media):
        if m.media != "audio" or not m.port:
            continue
        have = set(_codec_map(sdp, i).values())
        for name in ALWAYS:
            info = KNOWN[name.lower()]
            if name not in have and str(info.static_pt) not in m.formats:
                events = [f for f in m.formats if f.isdigit() and int(f) in m.rtpmaps
                          and m.rtpmaps[int(f)].encoding.lower() == "telephone-event"]
                at = m.formats.index(events[0]) if events else len(m.formats)
                m.formats.insert(at, str(info.static_pt))
                m.lines.append(("a", f"rtpmap:{info.static_pt} {info.rtpmap}"))
        break
    return sdp.serialize()


def answer_with(offer: bytes, ip: str, port: int, *, session_id: str, prefer: str | None = None) -> tuple[bytes, Chosen]:
    """Answer ``offer`` with one codec — ``prefer`` if the offer has it, else the offer's first
    supported one — plus telephone-event when offered; other streams are refused."""
    sdp = parse_sdp(offer)
    out = SessionDescription(list(sdp.lines), [])
    out.origin = f"Centralino {session_id} {next(_ORIGIN_VERSION)} IN IP4 {ip}"
    out.connection = Connection("IN", "IP4", ip)
    chosen: Chosen | None = None
    for i, m in enumerate(sdp.media):
        lines = [(t, v) for t, v in m.lines if not (t == "a" and v.split(":", 1)[0] in _DROP) and t != "c"]
        codecs = _codec_map(sdp, i) if m.media == "audio" and m.port else {}
        if chosen is not None or not codecs:
            out.media.append(type(m)(m.media, 0, m.proto, list(m.formats), None, lines))
            continue
        pts = [int(f) for f in m.formats if f.isdigit() and int(f) in codecs]
        pick = next((pt for pt in pts if prefer and codecs[pt].lower() == prefer.lower()), pts[0])
        info = KNOWN[codecs[pick].lower()]
        maps = m.rtpmaps
        # the offer's own payload numbers and rates: a telephone-event at the codec's clock
        event = event_for_clock(telephone_events(m), info.clock)
        chosen = Chosen(codecs[pick], pick, codecs, event)
        formats = [str(pick), *([str(event)] if event is not None else [])]
        attrs = [("a", f"rtpmap:{pick} {maps[pick].serialize().split(' ', 1)[1] if pick in maps else info.rtpmap}")]
        fmtp = m.fmtps.get(pick)
        if fmtp:
            attrs.append(("a", f"fmtp:{pick} {fmtp}"))
        if event is not None:
            attrs += [("a", f"rtpmap:{event} {maps[event].serialize().split(' ', 1)[1]}"),
                      ("a", f"fmtp:{event} {m.fmtps.get(event, '0-16')}")]
        direction = {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}.get(m.direction, "sendrecv")
        attrs += [("a", "ptime:20"), ("a", direction)]
        out.media.append(type(m)("audio", port, "RTP/AVP", formats, None, attrs))
    if chosen is None:
        raise RemoteProtocolError("no common codec (PCMU, PCMA, G722, opus)", 488)
    return out.serialize(), chosen

