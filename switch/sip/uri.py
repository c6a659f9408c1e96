"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966) and opaque absolute URIs.

Components keep their escaped wire form so that parse → serialise round-trips byte for byte;
``unescape()`` gives the decoded value where a comparison needs it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from urllib.parse import unquote_to_bytes

from .errors import RemoteProtocolError

Params = tuple[tuple[str, str | None], ...]

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+\-.]*):")
# hostname / IPv4 / [IPv6]; lenient on label length, strict on characters.
_HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9.])?)$")
# user / password: unreserved, escaped and user-unreserved (RFC 3261 §25.1)
_USER_RE = re.compile(r"^(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})*$")
_PASSWORD_RE = re.compile(r"^(?:[A-Za-z0-9\-_.!~*'()&=+$,]|%[0-9A-Fa-f]{2})*$")
_PARAM_RE = re.compile(r"^(?:[A-Za-z0-9\-_.!~*'()\[\]/:&+$]|%[0-9A-Fa-f]{2})+$")
_BAD_CHARS = re.compile(r'[ \t\r\n<>"]')
_TEL_RE = re.compile(r"^\+?[0-9A-Fa-f*#\-.()pPwW]+$")


def unescape(text: str) -> str:
    """Decode %HH escapes (invalid UTF-8 survives as surrogate escapes)."""
    if "%" not in text:
        return text
    return unquote_to_bytes(text).decode("utf-8", "surrogateescape")


def _parse_params(text: str, what: str) -> Params:
    params: list[tuple[str, str | None]] = []
    for item in text.split(";"):
        if item == "":
            raise RemoteProtocolError(f"empty {what} parameter")
        name, sep, value = item.partition("=")
        if not _PARAM_RE.match(name) or (sep and value and not _PARAM_RE.match(value)):
            raise RemoteProtocolError(f"bad {what} parameter {item!r}")
        params.append((name, value if sep else None))
    return tuple(params)


def _format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


@dataclass(frozen=True, slots=True)
class URI:
    """A sip:, sips: or tel: URI. ``user`` is the telephone number for tel:."""

    scheme: str
    user: str | None = None
    host: str = ""
    port: int | None = None
    password: str | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()

    @staticmethod
    def parse(text: str) -> URI | AbsoluteURI:
        return parse_uri(text)

    def serialize(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user}{_format_params(self.params)}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(_format_params(self.params))
        if self.headers:
            out.append("?" + "&".join(f"{k}={v}" for k, v in self.headers))
        return "".join(out)

    __str__ = serialize

    def param(self, name: str, default: str | None = None) -> str | None:
        lname = name.lower()
        for k, v in self.params:
            if k.lower() == lname:
                return v if v is not None else ""
        return default

    def has_param(self, name: str) -> bool:
        lname = name.lower()
        return any(k.lower() == lname for k, _ in self.params)

    def with_params(self, **changes: str | None) -> URI:
        """Copy with parameters set (``None`` value: flag parameter) — keeps the others' order."""
        params = [p for p in self.params if p[0].lower() not in {k.lower() for k in changes}]
        params.extend(changes.items())
        return replace(self, params=tuple(params))

    def without_params(self, *names: str) -> URI:
        lower = {n.lower() for n in names}
        return replace(self, params=tuple(p for p in self.params if p[0].lower() not in lower))

    @property
    def user_unescaped(self) -> str | None:
        return None if self.user is None else unescape(self.user)

    @property
    def transport(self) -> str:
        t = self.param("transport")
        if t:
            return t.lower()
        return "tls" if self.scheme == "sips" else "udp"

    @property
    def host_port(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def aor(self) -> str:
        """Address of record: scheme:user@host, lower-cased host, no parameters."""
        user = "" if self.user is None else unescape(self.user) + "@"
        return f"{'sip' if self.scheme in ('sip', 'sips') else self.scheme}:{user}{self.host.lower()}"


@dataclass(frozen=True, slots=True)
class AbsoluteURI:
    """Any other scheme (http:, urn:, isbn:, ...), kept opaque."""

    scheme: str
    opaque: str

    def serialize(self) -> str:
        return f"{self.scheme}:{self.opaque}"

    __str__ = serialize

    user = None
    host = ""
    port = None
    params: Params = ()

    def param(self, name: str, default: str | None = None) -> str | None:
        return default

    def has_param(self, name: str) -> bool:
        return False

    def aor(self) -> str:
        return self.serialize()


AnyURI = URI | AbsoluteURI


_PARSED: dict[str, URI | AbsoluteURI] = {}  # URIs are immutable and repeat (AORs, trunk hosts)


def parse_uri(text: str) -> URI | AbsoluteURI:
    """Parse a URI; raises RemoteProtocolError(400) when it is malformed."""
    uri = _PARSED.get(text)
    if uri is None:
        uri = _parse_uri(text)
        if len(_PARSED) >= 8192:
            _PARSED.clear()  # bounded: a flood of distinct URIs costs a re-parse, not memory
        _PARSED[text] = uri
    return uri


def _parse_uri(text: str) -> URI | AbsoluteURI:
    m = _SCHEME_RE.match(text)
    if not m:
        raise RemoteProtocolError(f"not a URI: {text[:80]!r}")
    scheme_text = m.group(1)
    scheme = scheme_text.lower()
    rest = text[m.end():]
    if _BAD_CHARS.search(text):
        raise RemoteProtocolError(f"bad characters in URI {text[:80]!r}")
    if scheme == "tel":
        number, _, ptext = rest.partition(";")
        if not number or not _TEL_RE.match(number):
            raise RemoteProtocolError(f"bad tel URI {text[:80]!r}")
        return URI("tel", user=number, params=_parse_params(ptext, "tel") if ptext else ())
    if scheme not in ("sip", "sips"):
        if not rest:
            raise RemoteProtocolError(f"empty {scheme}: URI")
        return AbsoluteURI(scheme_text, rest)

    user = password = None
    at = rest.find("@")  # '@' cannot appear unescaped in userinfo; '?' and ',' can
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1:]
        user, colon, pw = userinfo.partition(":")
        if colon:
            if not _PASSWORD_RE.match(pw):
                raise RemoteProtocolError("bad password in URI")
            password = pw
        if not user or not _USER_RE.match(user):
            raise RemoteProtocolError(f"bad user part in URI {text[:80]!r}")
    rest, qmark, htext = rest.partition("?")
    headers: tuple[tuple[str, str], ...] = ()
    if qmark:
        hs = []
        for item in htext.split("&"):
            k, eq, v = item.partition("=")
            if not k or not eq:
                raise RemoteProtocolError(f"bad URI header {item!r}")
            hs.append((k, v))
        headers = tuple(hs)
    hostport, semi, ptext = rest.partition(";")
    params = _parse_params(ptext, "URI") if semi else ()
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise RemoteProtocolError("unterminated IPv6 reference")
        host, portpart = hostport[: end + 1], hostport[end + 1:]
        if portpart and not portpart.startswith(":"):
            raise RemoteProtocolError("bad host")
        port_text = portpart[1:] if portpart else None
    else:
        host, colon, port_text = hostport.partition(":")
        if not colon:
            port_text = None
    if not host or not _HOST_RE.match(host):
        raise RemoteProtocolError(f"bad host in URI {text[:80]!r}")
    port = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise RemoteProtocolError("bad port in URI")
        port = int(port_text)
    return URI(scheme, user, host, port, password, params, headers)
