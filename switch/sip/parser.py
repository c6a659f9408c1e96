"""Parsing SIP messages from datagrams and framing them out of byte streams (RFC 3261 §7, §18.3).

Only RemoteProtocolError ever leaves this module for bad input. The mandatory headers every
transaction needs (Via, From, To, Call-ID, CSeq, Max-Forwards, Content-Length) are checked here;
the rest are parsed lazily by the message's typed getters.
"""

from __future__ import annotations

import re

from .errors import RemoteProtocolError
from .headers import SINGLE_VALUED, canonical_name, is_token, parse_uint
from .message import Message, Request, Response
from .uri import parse_uri

MAX_MESSAGE_SIZE = 65535
MAX_HEADERS = 256
MAX_LINE_LENGTH = 16384

_LINE_SPLIT = re.compile(rb"\r?\n")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_CONTENT_TYPE = re.compile(rb"^(?:content-type|c)[ \t]*:", re.I | re.M)
_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(.*?)[ \t]*\r?$", re.I | re.M)
_SINGLE_VALUED_ORDER = tuple(sorted(SINGLE_VALUED))  # a fixed order: the same message, the same error
_REQUIRED_REQUEST = tuple((n, n.lower()) for n in ("Via", "From", "To", "Call-ID", "CSeq"))
_TO_TAG = re.compile(rb"\n(?:to|t)[ \t]*:[^\r\n]*;[ \t]*tag[ \t]*=", re.I)


def is_new_invite(data: bytes) -> bool:
    """Whether a datagram looks like an INVITE opening a call (no To tag), without parsing it:
    under overload these wait behind everything that finishes calls already under way. Only a
    priority hint; the core decides on the parsed message."""
    if not data.startswith(b"INVITE "):
        return False
    head_end = data.find(b"\n\r\n")
    return _TO_TAG.search(data, 0, head_end if head_end >= 0 else len(data)) is None


class Partial:
    """What could be read from a rejected request: enough to address a 4xx response."""

    def __init__(self, method: str | None, headers: list[tuple[str, str]]) -> None:
        self.method = method
        self.headers = headers


_LINES = re.compile(r"\r?\n")
_NAMES: dict[str, str] = {}  # header names as written (already checked to be tokens) → canonical


def _split_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    text = head.decode("utf-8", "surrogateescape")
    lines = _LINES.split(text)
    start = lines[0]
    headers: list[tuple[str, str]] = []
    bad: str | None = None
    for line in lines[1:]:
        if len(line) > MAX_LINE_LENGTH:
            bad = bad or "header line too long"
            continue
        if line[:1] in (" ", "\t"):
            if not headers:
                bad = bad or "continuation line before any header"
                continue
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        if not line:
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        cname = _NAMES.get(name)
        if cname is None or not colon:
            if not colon or not name or not is_token(name):
                bad = bad or f"malformed header line {line[:60]!r}"
                continue
            cname = canonical_name(name)
            if len(_NAMES) < 4096:
                _NAMES[name] = cname
        headers.append((cname, value.strip(" \t")))
        if len(headers) > MAX_HEADERS:
            bad = bad or "too many headers"
            break
    if bad is not None:
        method = start.split(" ", 1)[0] if not start.startswith("SIP/") else None
        raise RemoteProtocolError(bad, 400 if method else None, partial=Partial(method, headers))
    return start, headers


def _content_length(headers: list[tuple[str, str]]) -> int | None:
    values = [v for n, v in headers if n == "Content-Length"]
    if not values:
        return None
    if len(values) > 1:
        raise RemoteProtocolError("more than one Content-Length", fatal=True)
    v = values[0].strip()
    if not v.isdigit():
        raise RemoteProtocolError(f"bad Content-Length {v[:20]!r}", fatal=True)
    return int(v) if len(v) < 12 else MAX_MESSAGE_SIZE + 1


def _validate(msg: Message, method: str | None) -> None:
    """Check the headers every message must carry, well-formed and not repeated."""
    index = msg.header_index()
    for key in _SINGLE_VALUED_ORDER:
        values = index.get(key)
        if values is not None and len(values) > 1:
            raise RemoteProtocolError(f"{canonical_name(key)} appears more than once")
    for name, key in _REQUIRED_REQUEST:
        if key not in index:
            raise RemoteProtocolError(f"missing {name}")
    if not msg.vias:
        raise RemoteProtocolError("missing Via")
    msg.call_id  # noqa: B018 - presence check
    msg.from_  # noqa: B018
    msg.to  # noqa: B018
    cseq = msg.cseq
    if method is not None:
        if cseq.method != method:
            raise RemoteProtocolError("CSeq method does not match the request method")
        msg.max_forwards  # noqa: B018
    exp = msg.header("Expires")
    if exp is not None:
        parse_uint(exp, "Expires", 2**32 - 1)


def parse_head_and_body(head: bytes, body: bytes, *, stream: bool) -> Message:
    start, headers = _split_head(head)
    if start.startswith("SIP/"):
        return _parse_response(start, headers, body, stream)
    return _parse_request(start, headers, body, stream)


def _parse_request(start: str, headers: list[tuple[str, str]], body: bytes, stream: bool) -> Request:
    # Lenient on runs of spaces and trailing whitespace (RFC 4475 lwsstart, trws: accepted);
    # a Request-URI containing whitespace (lwsruri) yields more than three parts: 400.
    parts = start.split()
    method = parts[0] if parts else None
    partial = Partial(method, headers)
    if len(parts) != 3 or not is_token(parts[0]):
        raise RemoteProtocolError("malformed request line", partial=partial)
    method, uri_text, version = parts
    if not version.upper().startswith("SIP/"):
        raise RemoteProtocolError("malformed request line", partial=partial)
    if version.upper() != "SIP/2.0":
        raise RemoteProtocolError(f"SIP version {version} not supported", 505, partial=partial)
    try:
        uri = parse_uri(uri_text)
        length = _content_length(headers)
    except RemoteProtocolError as exc:
        exc.partial = partial
        raise
    body = _fit_body(body, length, stream, partial)
    req = Request.parsed(method, uri, headers, body)
    try:
        _validate(req, method)
    except RemoteProtocolError as exc:
        exc.partial = partial
        raise
    return req


def _parse_response(start: str, headers: list[tuple[str, str]], body: bytes, stream: bool) -> Response:
    parts = start.split(" ", 2)
    if len(parts) < 2 or parts[0].upper() != "SIP/2.0":
        raise RemoteProtocolError("malformed status line", None)
    code = parts[1]
    if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 699:
        raise RemoteProtocolError("bad status code", None)
    try:
        length = _content_length(headers)
        body = _fit_body(body, length, stream, None)
        resp = Response.parsed(int(code), parts[2].strip() if len(parts) > 2 else "", headers, body)
        _validate(resp, None)
    except RemoteProtocolError as exc:
        raise RemoteProtocolError(exc.reason, None, fatal=exc.fatal) from None
    return resp


def _fit_body(body: bytes, length: int | None, stream: bool, partial: Partial | None) -> bytes:
    if length is None:
        return body  # datagram without Content-Length: the rest of the packet
    if len(body) < length:
        raise RemoteProtocolError(
            "body shorter than Content-Length", partial=partial, fatal=stream
        )
    return body[:length]  # extra octets in a datagram are discarded (RFC 3261 §18.3)


def parse_datagram(data: bytes) -> Message | None:
    """Parse one message from a UDP datagram. ``None`` for a keep-alive (CRLF / empty)."""
    if len(data) > MAX_MESSAGE_SIZE:
        raise RemoteProtocolError("message too large", 513 if not data.startswith(b"SIP/") else None)
    data = data.lstrip(b"\r\n")
    if not data.strip():
        return None
    m = _HEAD_END.search(data)
    if m is None:
        # No blank line: treat what is there as headers with no body.
        head, body = data.rstrip(b"\r\n"), b""
    else:
        head, body = data[: m.start()], data[m.end():]
    return parse_head_and_body(head, body, stream=False)


parse_message = parse_datagram


class StreamParser:
    """Frames messages out of a TCP/TLS byte stream by Content-Length.

    ``feed()`` returns the complete messages (or RemoteProtocolErrors) found so far. After a
    fatal error the stream cannot be re-synchronised: the caller answers and closes.
    """

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self._max = max_size
        self._scan_from = 0
        self._await_eof = False  # a message without Content-Length whose body ends with the stream
        self.broken = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Message | RemoteProtocolError]:
        if self.broken:
            return []
        self._buf += data
        if self._await_eof:
            if len(self._buf) > self._max:
                self.broken = True
                self._buf.clear()
                return [RemoteProtocolError("message without Content-Length too large", 513, fatal=True)]
            return []
        out: list[Message | RemoteProtocolError] = []
        while True:
            item = self._next()
            if item is None:
                break
            out.append(item)
            if isinstance(item, RemoteProtocolError) and item.fatal:
                self.broken = True
                self._buf.clear()
                break
        return out

    def eof(self) -> Message | RemoteProtocolError | None:
        """The peer closed its side: a message still incomplete is an error we can answer."""
        if self.broken or not self._buf.strip(b"\r\n"):
            return None
        buf = bytes(self._buf)
        self._buf.clear()
        m = _HEAD_END.search(buf)
        if m is None:
            return RemoteProtocolError("connection closed inside the headers", fatal=True)
        try:
            msg = parse_head_and_body(buf[: m.start()], buf[m.end():], stream=True)
        except RemoteProtocolError as exc:
            exc.fatal = True
            return exc
        return msg if self._await_eof else None

    def _next(self) -> Message | RemoteProtocolError | None:
        buf = self._buf
        # Skip keep-alive CRLFs between messages (RFC 5626 §3.5.1).
        i = 0
        while i < len(buf) and buf[i] in (13, 10):
            i += 1
        if i:
            del buf[:i]
            self._scan_from = 0
        if not buf:
            return None
        m = _HEAD_END.search(buf, max(0, self._scan_from - 3))
        if m is None:
            self._scan_from = len(buf)
            if len(buf) > self._max:
                return RemoteProtocolError("header section too large", 513, fatal=True)
            return None
        head = bytes(buf[: m.start()])
        try:
            lengths = _CONTENT_LENGTH.findall(head)
            if len(lengths) > 1:
                raise RemoteProtocolError("more than one Content-Length", fatal=True)
            if not lengths:
                # RFC 3261 §18.3 makes it mandatory on streams. Lenient framing for RFC 2543
                # peers: no Content-Type means no body; with one, the body ends with the stream.
                if not _CONTENT_TYPE.search(head):
                    lengths = [b"0"]
                else:
                    self._scan_from = len(buf)
                    self._await_eof = True
                    return None
            text = lengths[0].strip()
            if not text.isdigit():
                raise RemoteProtocolError(f"bad Content-Length {text[:20]!r}", fatal=True)
            length = int(text) if len(text) < 12 else self._max + 1
            if m.end() + length > self._max:
                raise RemoteProtocolError("message too large", 513, fatal=True)
        except RemoteProtocolError as exc:
            # Answerable when the rest of the head is sane: parse it for the Partial.
            try:
                parse_head_and_body(head, b"", stream=False)
            except RemoteProtocolError as inner:
                exc.partial = inner.partial
            else:
                exc.partial = _partial_of(head)
            if head.startswith(b"SIP/"):
                exc.status = None
            return exc
        if len(buf) < m.end() + length:
            return None
        body = bytes(buf[m.end(): m.end() + length])
        del buf[: m.end() + length]
        self._scan_from = 0
        try:
            return parse_head_and_body(head, body, stream=True)
        except RemoteProtocolError as exc:
            return exc


def _partial_of(head: bytes) -> Partial | None:
    try:
        start, headers = _split_head(head)
    except RemoteProtocolError as exc:
        return exc.partial  # type: ignore[return-value]
    return Partial(None if start.startswith("SIP/") else start.split(" ", 1)[0], headers)
