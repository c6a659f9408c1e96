"""SDP (RFC 4566/8866): parse and serialise session descriptions, with typed views.

Lines are kept in order as (type, value) pairs so that unknown attributes survive a round trip;
typed accessors (connection, rtpmap, fmtp, direction) read and rewrite those lines.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from .errors import RemoteProtocolError

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_LINE_RE = re.compile(r"^([a-z])=(.*)$")
_LINE_SPLIT = re.compile(r"\r?\n")
_SESSION_ORDER = "vosiuepcbtrzkam"


@dataclass(frozen=True, slots=True)
class RtpMap:
    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    def serialize(self) -> str:
        ch = f"/{self.channels}" if self.channels else ""
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{ch}"


@dataclass(frozen=True, slots=True)
class Connection:
    net_type: str
    addr_type: str
    address: str

    def serialize(self) -> str:
        return f"{self.net_type} {self.addr_type} {self.address}"

    @staticmethod
    def parse(value: str) -> Connection:
        return _parse_connection(value)


@functools.lru_cache(maxsize=1024)  # frozen, so a cached value is safe to share; a call reads it ~6 times
def _parse_connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise RemoteProtocolError(f"bad SDP c= line {value!r}", 488)
    return Connection(*parts)


_RTPMAP_RE = re.compile(r"^(\d+)\s+([^/\s]+)/(\d+)(?:/(\d+))?")


@functools.lru_cache(maxsize=1024)
def _parse_rtpmap(value: str) -> RtpMap | None:
    m = _RTPMAP_RE.match(value)
    if not m:
        return None
    return RtpMap(int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4)) if m.group(4) else None)


def _attr(lines: list[tuple[str, str]], name: str) -> list[str]:
    out = []
    prefix = name + ":"
    for t, v in lines:
        if t == "a" and (v == name or v.startswith(prefix)):
            out.append(v[len(prefix):] if v.startswith(prefix) else "")
    return out


def _direction(lines: list[tuple[str, str]]) -> str | None:
    for t, v in lines:
        if t == "a" and v in DIRECTIONS:
            return v
    return None


def _set_direction(lines: list[tuple[str, str]], direction: str) -> list[tuple[str, str]]:
    out = [(t, v) for t, v in lines if not (t == "a" and v in DIRECTIONS)]
    out.append(("a", direction))
    return out


@dataclass(slots=True)
class MediaDescription:
    media: str
    port: int
    proto: str
    formats: list[str]
    port_count: int | None = None
    lines: list[tuple[str, str]] = field(default_factory=list)  # i= c= b= k= a= in order

    @property
    def connection(self) -> Connection | None:
        for t, v in self.lines:
            if t == "c":
                return Connection.parse(v)
        return None

    @connection.setter
    def connection(self, conn: Connection | None) -> None:
        rest = [(t, v) for t, v in self.lines if t != "c"]
        if conn is not None:
            # c= goes after i= (RFC 8866 §5 order)
            idx = 1 if rest and rest[0][0] == "i" else 0
            rest.insert(idx, ("c", conn.serialize()))
        self.lines = rest

    def attributes(self, name: str) -> list[str]:
        return _attr(self.lines, name)

    @property
    def rtpmaps(self) -> dict[int, RtpMap]:
        out: dict[int, RtpMap] = {}
        for value in self.attributes("rtpmap"):
            rtpmap = _parse_rtpmap(value)
            if rtpmap is not None:
                out[rtpmap.payload_type] = rtpmap
        return out

    @property
    def fmtps(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for value in self.attributes("fmtp"):
            pt, _, params = value.partition(" ")
            if pt.isdigit():
                out[int(pt)] = params.strip()
        return out

    @property
    def direction(self) -> str:
        return _direction(self.lines) or ""

    @direction.setter
    def direction(self, value: str) -> None:
        self.lines = _set_direction(self.lines, value)

    def serialize_lines(self) -> list[str]:
        port = f"{self.port}/{self.port_count}" if self.port_count else str(self.port)
        out = [f"m={self.media} {port} {self.proto} {' '.join(self.formats)}".rstrip()]
        out.extend(f"{t}={v}" for t, v in self.lines)
        return out


@dataclass(slots=True)
class SessionDescription:
    lines: list[tuple[str, str]] = field(default_factory=list)  # v= o= s= ... session level
    media: list[MediaDescription] = field(default_factory=list)

    @staticmethod
    def parse(data: bytes | str) -> SessionDescription:
        return parse_sdp(data)

    def serialize(self) -> bytes:
        out = [f"{t}={v}" for t, v in self.lines]
        for m in self.media:
            out.extend(m.serialize_lines())
        return ("\r\n".join(out) + "\r\n").encode("utf-8", "surrogateescape")

    def _get(self, kind: str) -> str | None:
        for t, v in self.lines:
            if t == kind:
                return v
        return None

    def _set(self, kind: str, value: str) -> None:
        for i, (t, _) in enumerate(self.lines):
            if t == kind:
                self.lines[i] = (kind, value)
                return
        # insert respecting the session-level order
        rank = _SESSION_ORDER.index(kind)
        for i, (t, _) in enumerate(self.lines):
            if _SESSION_ORDER.index(t) > rank:
                self.lines.insert(i, (kind, value))
                return
        self.lines.append((kind, value))

    @property
    def version(self) -> int:
        return int(self._get("v") or 0)

    @property
    def origin(self) -> str | None:
        return self._get("o")

    @origin.setter
    def origin(self, value: str) -> None:
        self._set("o", value)

    @property
    def session_name(self) -> str | None:
        return self._get("s")

    @property
    def connection(self) -> Connection | None:
        v = self._get("c")
        return Connection.parse(v) if v is not None else None

    @connection.setter
    def connection(self, conn: Connection) -> None:
        self._set("c", conn.serialize())

    def attributes(self, name: str) -> list[str]:
        return _attr(self.lines, name)

    @property
    def direction(self) -> str:
        return _direction(self.lines) or ""

    def media_direction(self, index: int) -> str:
        """Effective direction of a media stream: media-level, else session-level, else sendrecv."""
        return self.media[index].direction or self.direction or "sendrecv"

    def media_connection(self, index: int) -> Connection | None:
        return self.media[index].connection or self.connection


def parse_sdp(data: bytes | str) -> SessionDescription:
    """Parse an SDP body; raises RemoteProtocolError(400) for malformed ones."""
    text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
    sd = SessionDescription()
    current: MediaDescription | None = None
    for raw in _LINE_SPLIT.split(text):
        if not raw:
            continue
        m = _LINE_RE.match(raw)
        if not m:
            raise RemoteProtocolError(f"malformed SDP line {raw[:60]!r}")
        kind, value = m.group(1), m.group(2)
        if kind == "m":
            parts = value.split()
            if len(parts) < 3:
                raise RemoteProtocolError(f"malformed SDP m= line {raw[:60]!r}")
            media, port_field, proto, *formats = parts
            port_text, _, count = port_field.partition("/")
            if not port_text.isdigit() or int(port_text) > 65535 or (count and not count.isdigit()):
                raise RemoteProtocolError(f"bad port in SDP m= line {raw[:60]!r}")
            current = MediaDescription(
                media, int(port_text), proto, formats, int(count) if count else None
            )
            sd.media.append(current)
        elif current is None:
            sd.lines.append((kind, value))
        else:
            current.lines.append((kind, value))
    if not sd.lines or sd.lines[0][0] != "v":
        raise RemoteProtocolError("SDP does not start with v=")
    return sd
