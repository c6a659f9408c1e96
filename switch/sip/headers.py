"""Header names and the typed header values: Via, CSeq, name-addr (From/To/Contact/Route).

Values are parsed lazily by the message's getters; these functions raise RemoteProtocolError(400)
on malformed input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .errors import RemoteProtocolError
from .uri import URI, AbsoluteURI, Params, parse_uri

COMPACT_FORMS = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To",
    "v": "Via", "o": "Event", "r": "Refer-To", "b": "Referred-By", "x": "Session-Expires",
    "u": "Allow-Events", "a": "Accept-Contact", "j": "Reject-Contact", "d": "Request-Disposition",
    "y": "Identity", "n": "Identity-Info",
}
_WELL_KNOWN = [
    "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Authentication-Info",
    "Authorization", "Call-ID", "Call-Info", "Contact", "Content-Disposition", "Content-Encoding",
    "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date", "Error-Info", "Expires",
    "From", "In-Reply-To", "Max-Forwards", "Min-Expires", "MIME-Version", "Organization",
    "Priority", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "Record-Route",
    "Reply-To", "Require", "Retry-After", "Route", "Server", "Subject", "Supported", "Timestamp",
    "To", "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate", "Event",
    "Allow-Events", "Refer-To", "Referred-By", "Replaces", "Session-Expires", "Min-SE",
    "P-Asserted-Identity", "P-Preferred-Identity", "Privacy", "Reason", "RSeq", "RAck", "Path",
    "Subscription-State", "Diversion", "Remote-Party-ID", "Accept-Contact", "Reject-Contact",
    "Request-Disposition", "Identity", "Identity-Info", "Service-Route", "SIP-ETag", "SIP-If-Match",
]
_CANONICAL = {h.lower(): h for h in _WELL_KNOWN}
for _short, _long in COMPACT_FORMS.items():
    _CANONICAL[_short] = _long

# Headers whose grammar is not a comma-separated list (RFC 3261 §7.3.1 exceptions).
NOT_COMMA_SEPARATED = frozenset(
    h.lower() for h in (
        "WWW-Authenticate", "Authorization", "Proxy-Authenticate", "Proxy-Authorization",
        "Date", "Call-ID", "CSeq", "From", "To", "Content-Length", "Content-Type",
        "Max-Forwards", "Expires", "Min-Expires", "User-Agent", "Server", "Subject",
        "Retry-After", "Timestamp", "Organization", "Refer-To", "Referred-By", "Replaces",
        "Session-Expires", "Min-SE", "Authentication-Info", "Event", "Subscription-State",
        "RSeq", "RAck", "MIME-Version", "Priority", "Reply-To", "In-Reply-To",
        "Content-Disposition", "SIP-ETag", "SIP-If-Match",
    )
)
# Headers that must appear at most once in a request or response (RFC 3261 §20).
SINGLE_VALUED = frozenset(
    h.lower() for h in (
        "Call-ID", "CSeq", "From", "To", "Content-Length", "Content-Type", "Max-Forwards",
        "Expires", "Min-Expires",
    )
)

_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")


_CANONICAL_SEEN: dict[str, str] = {}  # names as written → canonical (a bounded memo: parsing is hot)


def canonical_name(name: str) -> str:
    """Long canonical form of a header name: 'v' → 'Via', 'call-id' → 'Call-ID'."""
    known = _CANONICAL_SEEN.get(name)
    if known is None:
        known = _CANONICAL.get(name.lower(), name)
        if len(_CANONICAL_SEEN) < 4096:
            _CANONICAL_SEEN[name] = known
    return known


_KEYS: dict[str, str] = {}


def header_key(name: str) -> str:
    """The lookup key of a header name in any spelling: its canonical name, lower case."""
    key = _KEYS.get(name)
    if key is None:
        key = canonical_name(name).lower()
        if len(_KEYS) < 4096:
            _KEYS[name] = key
    return key


def is_token(text: str) -> bool:
    return bool(_TOKEN_RE.match(text))


def split_commas(value: str) -> list[str]:
    """Split a header value at commas outside quotes and <...>."""
    if "," not in value:
        return [value.strip()]
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == "<":
            depth += 1
        elif c == ">":
            depth = max(0, depth - 1)
        elif c == "," and depth == 0:
            parts.append(value[start:i].strip())
            start = i + 1
        i += 1
    if quoted:
        raise RemoteProtocolError("unbalanced quotes in header value")
    parts.append(value[start:].strip())
    return parts


_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_PLAIN_PARAMS = re.compile(rf"(?:;{_TOKEN}(?:=[A-Za-z0-9\-.!%*_+`'~:\[\]@/?&$]*)?)*")
_PLAIN_PARAM = re.compile(rf";({_TOKEN})(?:=([^;]*))?")


def parse_header_params(text: str, what: str) -> Params:
    """Parse ';name=value;flag' after a header's main value (values may be quoted)."""
    if _PLAIN_PARAMS.fullmatch(text):
        # the usual case (no spaces, no quotes): one regex instead of the character walk below
        return tuple((m[1], m[2]) for m in _PLAIN_PARAM.finditer(text))
    params: list[tuple[str, str | None]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            break
        if text[i] != ";":
            raise RemoteProtocolError(f"bad {what} parameters {text[:60]!r}")
        i += 1
        j = i
        while j < n and text[j] not in "=;":
            j += 1
        name = text[i:j].strip()
        if not name or not is_token(name):
            raise RemoteProtocolError(f"bad {what} parameter name {name!r}")
        value: str | None = None
        if j < n and text[j] == "=":
            j += 1
            while j < n and text[j] in " \t":
                j += 1
            if j < n and text[j] == '"':
                k = j + 1
                while k < n and text[k] != '"':
                    k += 2 if text[k] == "\\" else 1
                if k >= n:
                    raise RemoteProtocolError(f"unbalanced quotes in {what} parameter")
                value = text[j: k + 1]
                j = k + 1
            else:
                k = j
                while k < n and text[k] != ";":
                    k += 1
                value = text[j:k].strip()
                j = k
        params.append((name, value))
        i = j
    return tuple(params)


def format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def _get_param(params: Params, name: str) -> str | None:
    lname = name.lower()
    for k, v in params:
        if k.lower() == lname:
            return "" if v is None else v
    return None


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NameAddr:
    """``"Display" <uri>;params`` or ``uri;params`` (From, To, Contact, Route, Record-Route)."""

    uri: URI | AbsoluteURI
    display: str | None = None
    params: Params = ()
    bracketed: bool = True

    def param(self, name: str) -> str | None:
        return _get_param(self.params, name)

    @property
    def tag(self) -> str | None:
        return _get_param(self.params, "tag")

    def with_param(self, name: str, value: str | None) -> NameAddr:
        params = (*tuple(p for p in self.params if p[0].lower() != name.lower()), (name, value))
        return replace(self, params=params)

    def serialize(self) -> str:
        if self.display is not None:
            head = f"{self.display} <{self.uri.serialize()}>"
        elif self.bracketed:
            head = f"<{self.uri.serialize()}>"
        else:
            head = self.uri.serialize()
        return head + format_params(self.params)

    __str__ = serialize

    @staticmethod
    def parse(value: str) -> NameAddr:
        return parse_name_addr(value)


_NAME_ADDR_CACHE: dict[str, NameAddr] = {}
_NAME_ADDR_CACHE_SIZE = 4096


def parse_name_addr(value: str) -> NameAddr:
    """Parse a From/To/Contact/Route value. A dialog's From and To strings come back in every
    request and response of its call, and NameAddr is frozen, so parsed values are remembered
    (bounded; cleared when full, as the set in use is the calls in progress)."""
    cached = _NAME_ADDR_CACHE.get(value)
    if cached is not None:
        return cached
    parsed = _parse_name_addr(value)
    if len(_NAME_ADDR_CACHE) >= _NAME_ADDR_CACHE_SIZE:
        _NAME_ADDR_CACHE.clear()
    _NAME_ADDR_CACHE[value] = parsed
    return parsed


def _parse_name_addr(value: str) -> NameAddr:
    value = value.strip()
    if not value:
        raise RemoteProtocolError("empty address")
    display: str | None = None
    if value.startswith('"'):
        k = 1
        n = len(value)
        while k < n and value[k] != '"':
            k += 2 if value[k] == "\\" else 1
        if k >= n:
            raise RemoteProtocolError("unbalanced quotes in display name")
        display = value[: k + 1]
        rest = value[k + 1:].lstrip()
        if not rest.startswith("<"):
            raise RemoteProtocolError("quoted display name without <uri>")
    else:
        lt = value.find("<")
        semi = value.find(";")
        rest = value
        if lt >= 0 and (semi < 0 or lt < semi):
            # name-addr; an unquoted display name should be tokens, we accept any text (lenient)
            display = value[:lt].strip() or None
            rest = value[lt:]
        elif '"' in value.partition(";")[0]:
            raise RemoteProtocolError("unbalanced quotes in address")
    if rest.startswith("<"):
        gt = rest.find(">")
        if gt < 0:
            raise RemoteProtocolError("unterminated <uri>")
        uri_text = rest[1:gt].strip()  # lenient: '< sip:x >' (RFC 4475 badaspec) is accepted
        params = parse_header_params(rest[gt + 1:], "address")
        return NameAddr(parse_uri(uri_text), display, params, True)
    # addr-spec: a URI without <>; its ';' params belong to the header, '?' is not allowed.
    uri_text, semi, ptext = rest.partition(";")
    if "?" in uri_text or "," in uri_text:
        raise RemoteProtocolError("addr-spec with '?' or ',' must be enclosed in <>")
    params = parse_header_params(semi + ptext, "address") if semi else ()
    return NameAddr(parse_uri(uri_text.strip()), None, params, False)


def parse_name_addr_list(values: list[str]) -> list[NameAddr]:
    out = []
    for v in values:
        for part in split_commas(v):
            if part:
                out.append(parse_name_addr(part))
    return out


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Via:
    transport: str
    host: str
    port: int | None = None
    params: Params = ()
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return _get_param(self.params, "branch")

    @property
    def received(self) -> str | None:
        return _get_param(self.params, "received")

    @property
    def rport(self) -> str | None:
        return _get_param(self.params, "rport")

    def param(self, name: str) -> str | None:
        return _get_param(self.params, name)

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def with_param(self, name: str, value: str | None) -> Via:
        lname = name.lower()
        params = []
        replaced = False
        for k, v in self.params:
            if k.lower() == lname:
                params.append((k, value))
                replaced = True
            else:
                params.append((k, v))
        if not replaced:
            params.append((name, value))
        return replace(self, params=tuple(params))

    def serialize(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"

    __str__ = serialize


_VIA_RE = re.compile(
    r"^\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)"
    r"\s+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?:\s*:\s*(\d+))?\s*(.*)$",
    re.S,
)


def parse_via(value: str) -> Via:
    m = _VIA_RE.match(value)
    if not m:
        raise RemoteProtocolError(f"bad Via {value[:80]!r}")
    name, version, transport, host, port, rest = m.groups()
    if port is not None and not 0 < int(port) < 65536:
        raise RemoteProtocolError("bad Via port")
    params = parse_header_params(rest, "Via")
    return Via(transport.upper(), host, int(port) if port else None, params, f"{name}/{version}")


def parse_via_list(values: list[str]) -> list[Via]:
    out = []
    for v in values:
        for part in split_commas(v):
            if not part:
                raise RemoteProtocolError("empty Via value")
            out.append(parse_via(part))
    return out


# ---------------------------------------------------------------------------------------------
MAX_CSEQ = 2**31 - 1


@dataclass(frozen=True, slots=True)
class CSeq:
    seq: int
    method: str

    def serialize(self) -> str:
        return f"{self.seq} {self.method}"

    __str__ = serialize


def parse_cseq(value: str) -> CSeq:
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or not is_token(parts[1]):
        raise RemoteProtocolError(f"bad CSeq {value[:60]!r}")
    seq = int(parts[0])
    if seq > MAX_CSEQ:
        raise RemoteProtocolError("CSeq number out of range")
    return CSeq(seq, parts[1])


def parse_uint(value: str, what: str, maximum: int) -> int:
    value = value.strip()
    if not value.isdigit():
        raise RemoteProtocolError(f"bad {what} {value[:40]!r}")
    n = int(value) if len(value) < 20 else maximum + 1
    if n > maximum:
        raise RemoteProtocolError(f"{what} out of range")
    return n


@dataclass(frozen=True, slots=True)
class MediaType:
    type: str
    subtype: str
    params: Params = ()

    @property
    def mime(self) -> str:
        return f"{self.type}/{self.subtype}".lower()


def parse_media_type(value: str) -> MediaType:
    main, semi, rest = value.partition(";")
    t, slash, sub = main.strip().partition("/")
    if not slash or not is_token(t.strip()) or not is_token(sub.strip()):
        raise RemoteProtocolError(f"bad media type {value[:60]!r}")
    params = parse_header_params(semi + rest, "media type") if semi else ()
    return MediaType(t.strip(), sub.strip(), params)
