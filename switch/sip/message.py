"""SIP requests and responses: an ordered header list with lazily parsed, cached typed getters."""

from __future__ import annotations

from collections.abc import Iterable

from .errors import RemoteProtocolError
from .headers import (
    CSeq,
    MediaType,
    NameAddr,
    Via,
    canonical_name,
    header_key,
    parse_cseq,
    parse_media_type,
    parse_name_addr,
    parse_name_addr_list,
    parse_uint,
    parse_via_list,
    split_commas,
)
from .uri import URI, AbsoluteURI

REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Moved Temporarily", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required",
    423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending", 500: "Server Internal Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Server Time-out", 505: "Version Not Supported", 513: "Message Too Large",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}

_MISSING = object()


# header name (lower case) → the key its parsed view is cached under
_CACHE_KEY = {"via": "via", "cseq": "cseq", "from": "From", "to": "To", "contact": "contact", "route": "route",
              "record-route": "record-route", "content-type": "ctype"}


class Message:
    """Common part of Request and Response.

    ``headers`` is the ordered list of (canonical name, value) pairs. Mutate it only through
    the methods below, which drop the cached typed values.
    """

    __slots__ = ("_cache", "_index", "body", "headers")

    def __init__(self, headers: Iterable[tuple[str, str]] = (), body: bytes = b"") -> None:
        self.headers: list[tuple[str, str]] = [(canonical_name(n), v) for n, v in headers]
        self.body = body
        self._cache: dict[str, object] = {}
        self._index: dict[str, list[str]] | None = None

    @classmethod
    def _from_canonical(cls, headers: list[tuple[str, str]], body: bytes) -> Message:
        """Construction from headers whose names are already canonical (parser, responses)."""
        msg = cls.__new__(cls)
        msg.headers = headers
        msg.body = body
        msg._cache = {}
        msg._index = None
        return msg

    def _lookup(self) -> dict[str, list[str]]:
        # name (lower case) → values, built once per message: lookups are then O(1)
        index = self._index
        if index is None:
            index = {}
            for n, v in self.headers:
                index.setdefault(n.lower(), []).append(v)
            self._index = index
        return index

    def header_index(self) -> dict[str, list[str]]:
        """Lower-case header name → its values in order (read only; rebuilt after changes)."""
        return self._lookup()

    def compact(self) -> None:
        """Drop the parsed views (they are rebuilt on demand): fewer live objects for messages
        kept only for matching, which keeps the garbage collector's full passes short."""
        self._cache.clear()
        self._index = None

    def _changed(self, key: str | None = None) -> None:
        """Headers changed: forget the index, and the parsed view of header ``key`` (lower-case
        canonical name; None: every view). The others stay valid — a proxy-like rewrite of one
        header (the top Via's received/rport on every request) must not make the From, To and
        CSeq be parsed again."""
        self._index = None
        if key is None:
            self._cache.clear()
        else:
            self._cache.pop(_CACHE_KEY.get(key, key), None)

    # -- raw access ------------------------------------------------------------------------
    def header(self, name: str, default: str | None = None) -> str | None:
        values = self._lookup().get(header_key(name))
        return values[0] if values else default

    def header_values(self, name: str) -> list[str]:
        """Every line of that header, unsplit."""
        return list(self._lookup().get(header_key(name), ()))

    def header_list(self, name: str) -> list[str]:
        """Every element of a comma-separated header across all its lines."""
        out: list[str] = []
        for v in self.header_values(name):
            out.extend(p for p in split_commas(v) if p)
        return out

    def has_header(self, name: str) -> bool:
        return self.header(name) is not None

    def set_header(self, name: str, value: str) -> None:
        """Replace every occurrence by one (kept at the first one's position)."""
        cname = canonical_name(name)
        key = cname.lower()
        out: list[tuple[str, str]] = []
        done = False
        for n, v in self.headers:
            if n.lower() == key:
                if not done:
                    out.append((cname, value))
                    done = True
            else:
                out.append((n, v))
        if not done:
            out.append((cname, value))
        self.headers = out
        self._changed(key)

    def add_header(self, name: str, value: str, *, first: bool = False) -> None:
        cname = canonical_name(name)
        if first:
            key = cname.lower()
            for i, (n, _) in enumerate(self.headers):
                if n.lower() == key:
                    self.headers.insert(i, (cname, value))
                    break
            else:
                self.headers.insert(0, (cname, value))
        else:
            self.headers.append((cname, value))
        self._changed(cname.lower())

    def remove_header(self, name: str) -> None:
        key = canonical_name(name).lower()
        self.headers = [(n, v) for n, v in self.headers if n.lower() != key]
        self._changed(key)

    # -- typed getters (lazy, cached; malformed values raise RemoteProtocolError) ------------
    def _cached(self, key: str, compute):  # type: ignore[no-untyped-def]
        value = self._cache.get(key, _MISSING)
        if value is _MISSING:
            value = compute()
            self._cache[key] = value
        return value

    @property
    def vias(self) -> list[Via]:
        return self._cached("via", lambda: parse_via_list(self.header_values("Via")))

    @property
    def top_via(self) -> Via:
        vias = self.vias
        if not vias:
            raise RemoteProtocolError("missing Via")
        return vias[0]

    def set_top_via(self, via: Via) -> None:
        vias = list(self.vias)
        rest = vias[1:]
        self.remove_header("Via")
        pos = 0
        self.headers.insert(pos, ("Via", via.serialize()))
        for i, v in enumerate(rest, 1):
            self.headers.insert(pos + i, ("Via", v.serialize()))
        self._changed("via")
        self._cache["via"] = [via, *rest]  # what parsing the new lines would give

    @property
    def cseq(self) -> CSeq:
        def compute() -> CSeq:
            v = self.header("CSeq")
            if v is None:
                raise RemoteProtocolError("missing CSeq")
            return parse_cseq(v)

        return self._cached("cseq", compute)

    @property
    def call_id(self) -> str:
        v = self.header("Call-ID")
        if not v:
            raise RemoteProtocolError("missing Call-ID")
        return v.strip()

    def _name_addr(self, name: str) -> NameAddr:
        def compute() -> NameAddr:
            v = self.header(name)
            if v is None:
                raise RemoteProtocolError(f"missing {name}")
            return parse_name_addr(v)

        return self._cached(name, compute)

    @property
    def from_(self) -> NameAddr:
        return self._name_addr("From")

    @property
    def to(self) -> NameAddr:
        return self._name_addr("To")

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact addresses; empty for '*' (check ``contact_star``)."""

        def compute() -> list[NameAddr]:
            values = self.header_values("Contact")
            if any(v.strip() == "*" for v in values):
                return []
            return parse_name_addr_list(values)

        return self._cached("contact", compute)

    @property
    def contact_star(self) -> bool:
        return any(v.strip() == "*" for v in self.header_values("Contact"))

    @property
    def routes(self) -> list[NameAddr]:
        return self._cached("route", lambda: parse_name_addr_list(self.header_values("Route")))

    @property
    def record_routes(self) -> list[NameAddr]:
        return self._cached(
            "record-route", lambda: parse_name_addr_list(self.header_values("Record-Route"))
        )

    @property
    def max_forwards(self) -> int | None:
        v = self.header("Max-Forwards")
        return None if v is None else parse_uint(v, "Max-Forwards", 255)

    @property
    def expires(self) -> int | None:
        v = self.header("Expires")
        return None if v is None else parse_uint(v, "Expires", 2**32 - 1)

    @property
    def content_type(self) -> MediaType | None:
        v = self.header("Content-Type")
        return None if v is None else self._cached("ctype", lambda: parse_media_type(v))

    def option_tags(self, name: str) -> list[str]:
        """Require / Supported / Proxy-Require / Unsupported as option tags."""
        return [t.strip() for t in self.header_list(name) if t.strip()]

    # -- serialisation -----------------------------------------------------------------------
    def _start_line(self) -> str:
        raise NotImplementedError

    def serialize(self) -> bytes:
        lines = [self._start_line()]
        has_length = False
        for n, v in self.headers:
            if n == "Content-Length":
                has_length = True
                v = str(len(self.body))
            lines.append(f"{n}: {v}")
        if not has_length:
            lines.append(f"Content-Length: {len(self.body)}")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("utf-8", "surrogateescape") + self.body

    def __bytes__(self) -> bytes:
        return self.serialize()

    def __eq__(self, other: object) -> bool:
        return (
            type(self) is type(other)
            and self._start_line() == other._start_line()  # type: ignore[attr-defined]
            and self._semantic_headers() == other._semantic_headers()  # type: ignore[attr-defined]
            and self.body == other.body  # type: ignore[attr-defined]
        )

    __hash__ = None  # type: ignore[assignment]

    def _semantic_headers(self) -> list[tuple[str, str]]:
        # Content-Length is derived from the body on output: not part of a message's identity.
        return [(n, v) for n, v in self.headers if n != "Content-Length"]


class Request(Message):
    __slots__ = ("method", "uri")

    def __init__(
        self,
        method: str,
        uri: URI | AbsoluteURI,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = uri

    @classmethod
    def parsed(cls, method: str, uri: URI | AbsoluteURI, headers: list[tuple[str, str]], body: bytes) -> Request:
        msg = cls._from_canonical(headers, body)
        msg.method = method
        msg.uri = uri
        return msg

    def _start_line(self) -> str:
        return f"{self.method} {self.uri.serialize()} SIP/2.0"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    __slots__ = ("reason", "status")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = REASONS.get(status, "Unknown") if reason is None else reason

    @classmethod
    def parsed(cls, status: int, reason: str | None, headers: list[tuple[str, str]], body: bytes) -> Response:
        msg = cls._from_canonical(headers, body)
        msg.status = status
        msg.reason = REASONS.get(status, "Unknown") if reason is None else reason
        return msg

    def _start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """A response copying Via, From, To, Call-ID, CSeq (RFC 3261 §8.2.6.2)."""
    copied: list[tuple[str, str]] = []
    for n, v in request.headers:
        if n in ("Via", "From", "Call-ID", "CSeq", "Record-Route") and (
            n != "Record-Route" or 100 < status < 300
        ):
            copied.append((n, v))
        elif n == "To":
            if to_tag is not None and status != 100:
                try:
                    if request.to.tag is None:
                        v = f"{v};tag={to_tag}"
                except RemoteProtocolError:
                    pass
            copied.append((n, v))
    copied.extend((canonical_name(n), v) for n, v in headers)
    if status == 100 and request.header("Timestamp"):
        copied.append(("Timestamp", request.header("Timestamp") or ""))
    return Response.parsed(status, reason, copied, body)
