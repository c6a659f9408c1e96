"""HTTP digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760), server and client.

Server nonces are stateless and signed: ``<time>.<random>.<mac>``; a nonce past its lifetime is
``stale`` (the client retries with the new one without asking its user). Replays are refused by
nonce-count tracking: with qop the nc must grow; without qop a nonce is good for one request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

ALGORITHMS: dict[str, Callable[[bytes], object]] = {
    "MD5": hashlib.md5,
    "SHA-256": hashlib.sha256,
}


def _h(algorithm: str, text: str) -> str:
    base = algorithm.upper().removesuffix("-SESS")
    return ALGORITHMS[base](text.encode("utf-8")).hexdigest()  # type: ignore[attr-defined]


_PARAM_RE = re.compile(r'\s*([A-Za-z0-9\-_]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)')


def parse_auth_params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _PARAM_RE.match(text, pos)
        if not m or m.end() == pos:
            break
        value = m.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[m.group(1).lower()] = value
        pos = m.end()
    return params


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: str | None = "auth"
    opaque: str | None = None
    stale: bool = False

    def serialize(self) -> str:
        parts = [f"realm={_quote(self.realm)}", f"nonce={_quote(self.nonce)}"]
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        parts.append(f"algorithm={self.algorithm}")
        if self.qop:
            parts.append(f'qop="{self.qop}"')
        if self.stale:
            parts.append("stale=true")
        return "Digest " + ", ".join(parts)

    @staticmethod
    def parse(value: str) -> DigestChallenge | None:
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() != "digest":
            return None
        p = parse_auth_params(rest)
        if "realm" not in p or "nonce" not in p:
            return None
        return DigestChallenge(
            realm=p["realm"], nonce=p["nonce"], algorithm=p.get("algorithm", "MD5"),
            qop=p.get("qop"), opaque=p.get("opaque"), stale=p.get("stale", "").lower() == "true",
        )


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None

    @staticmethod
    def parse(value: str) -> DigestCredentials | None:
        """``None`` when the header is not a usable Digest credential (e.g. another scheme)."""
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() != "digest":
            return None
        p = parse_auth_params(rest)
        try:
            return DigestCredentials(
                username=p["username"], realm=p["realm"], nonce=p["nonce"], uri=p["uri"],
                response=p["response"], algorithm=p.get("algorithm", "MD5"), qop=p.get("qop"),
                nc=p.get("nc"), cnonce=p.get("cnonce"), opaque=p.get("opaque"),
            )
        except KeyError:
            return None

    def serialize(self) -> str:
        parts = [
            f"username={_quote(self.username)}", f"realm={_quote(self.realm)}",
            f"nonce={_quote(self.nonce)}", f"uri={_quote(self.uri)}",
            f"response={_quote(self.response)}", f"algorithm={self.algorithm}",
        ]
        if self.qop:
            parts += [f"qop={self.qop}", f"nc={self.nc}", f"cnonce={_quote(self.cnonce or '')}"]
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        return "Digest " + ", ".join(parts)


def digest_response(
    *, algorithm: str, username: str, realm: str, password: str | None = None,
    ha1: str | None = None, method: str, uri: str, nonce: str,
    qop: str | None = None, nc: str | None = None, cnonce: str | None = None, body: bytes = b"",
) -> str:
    """The request-digest of RFC 7616 §3.4.1 (qop auth / auth-int / none)."""
    if ha1 is None:
        ha1 = _h(algorithm, f"{username}:{realm}:{password}")
    if algorithm.upper().endswith("-SESS"):
        ha1 = _h(algorithm, f"{ha1}:{nonce}:{cnonce}")
    if qop == "auth-int":
        body_hash = _h(algorithm, body.decode("utf-8", "surrogateescape"))
        ha2 = _h(algorithm, f"{method}:{uri}:{body_hash}")
    else:
        ha2 = _h(algorithm, f"{method}:{uri}")
    if qop:
        return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _h(algorithm, f"{ha1}:{nonce}:{ha2}")


class AuthResult(Enum):
    OK = "ok"
    STALE = "stale"  # good credentials on an expired nonce: re-challenge with stale=true
    FAILED = "failed"  # wrong password, unknown user, forged nonce, realm mismatch
    REPLAY = "replay"  # a nonce-count seen before


class NonceManager:
    """Signed, self-dating nonces plus the nonce-count ledger that stops replays."""

    def __init__(self, secret: bytes | None = None, lifetime: float = 300.0, max_tracked: int = 200_000):
        self._secret = secret or os.urandom(32)
        self.lifetime = lifetime
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()  # nonce → (issued, last nc)
        self._max = max_tracked

    def _mac(self, stamp: str, rand: str) -> str:
        mac = hmac.new(self._secret, f"{stamp}.{rand}".encode(), hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def issue(self, now: float) -> str:
        stamp = f"{int(now * 1000):x}"
        rand = base64.urlsafe_b64encode(os.urandom(9)).decode()
        return f"{stamp}.{rand}.{self._mac(stamp, rand)}"

    def issued_at(self, nonce: str) -> float | None:
        """When we issued it, or None if it is not one of ours."""
        parts = nonce.split(".")
        if len(parts) != 3:
            return None
        stamp, rand, mac = parts
        if not hmac.compare_digest(mac, self._mac(stamp, rand)):
            return None
        try:
            return int(stamp, 16) / 1000.0
        except ValueError:
            return None

    def is_stale(self, issued: float, now: float) -> bool:
        return now - issued > self.lifetime or issued - now > 5.0

    def use(self, nonce: str, nc: str | None, issued: float, now: float) -> bool:
        """Record one use of a nonce; False when it is a replay."""
        if nc is not None:
            try:
                count = int(nc, 16)
            except ValueError:
                return False
        else:
            count = 1  # without qop a nonce may be used once
        prev = self._seen.get(nonce)
        if prev is not None and count <= prev[1]:
            return False
        self._seen[nonce] = (issued, count)
        self._seen.move_to_end(nonce)
        self._prune(now)
        return True

    def _prune(self, now: float) -> None:
        # Entries are in order of last use; forget those whose nonce has expired anyway.
        while self._seen:
            _nonce, (issued, _) = next(iter(self._seen.items()))
            if len(self._seen) > self._max or now - issued > self.lifetime + 5:
                self._seen.popitem(last=False)
            else:
                break


class DigestServer:
    """Challenges and verifies digest credentials for one realm."""

    def __init__(
        self,
        realm: str,
        nonces: NonceManager | None = None,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
    ) -> None:
        self.realm = realm
        self.nonces = nonces or NonceManager()
        self.algorithms = tuple(a.upper() for a in algorithms)
        self.opaque = base64.urlsafe_b64encode(os.urandom(6)).decode()

    def challenges(self, now: float, *, stale: bool = False) -> list[str]:
        """One WWW-/Proxy-Authenticate value per algorithm, preferred first (RFC 8760 §2.4)."""
        nonce = self.nonces.issue(now)
        return [
            DigestChallenge(self.realm, nonce, alg, "auth", self.opaque, stale).serialize()
            for alg in self.algorithms
        ]

    def verify(
        self,
        creds: DigestCredentials,
        method: str,
        password_of: Callable[[str], str | None],
        now: float,
        body: bytes = b"",
    ) -> AuthResult:
        algorithm = creds.algorithm.upper()
        if algorithm.removesuffix("-SESS") not in self.algorithms or creds.realm != self.realm:
            return AuthResult.FAILED
        if creds.qop not in (None, "auth", "auth-int") or (creds.qop and not (creds.nc and creds.cnonce)):
            return AuthResult.FAILED
        issued = self.nonces.issued_at(creds.nonce)
        if issued is None:
            return AuthResult.FAILED
        password = password_of(creds.username)
        # Unknown users still cost a hash so timing does not reveal which users exist.
        expected = digest_response(
            algorithm=algorithm, username=creds.username, realm=self.realm,
            password=password if password is not None else os.urandom(8).hex(),
            method=method, uri=creds.uri, nonce=creds.nonce, qop=creds.qop, nc=creds.nc,
            cnonce=creds.cnonce, body=body,
        )
        if password is None or not hmac.compare_digest(expected, creds.response.lower()):
            return AuthResult.FAILED
        if self.nonces.is_stale(issued, now):
            return AuthResult.STALE
        if not self.nonces.use(creds.nonce, creds.nc if creds.qop else None, issued, now):
            return AuthResult.REPLAY
        return AuthResult.OK


class DigestClient:
    """Answers challenges for one account (used for trunks and by the test clients)."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password
        self._nc: dict[str, int] = {}

    def authorize(
        self, challenge: DigestChallenge, method: str, uri: str, body: bytes = b""
    ) -> str:
        qop = None
        if challenge.qop:
            offered = [q.strip() for q in challenge.qop.split(",")]
            qop = "auth" if "auth" in offered else ("auth-int" if "auth-int" in offered else None)
        nc_value = self._nc.get(challenge.nonce, 0) + 1
        self._nc[challenge.nonce] = nc_value
        nc = f"{nc_value:08x}" if qop else None
        cnonce = os.urandom(8).hex() if qop else None
        response = digest_response(
            algorithm=challenge.algorithm, username=self.username, realm=challenge.realm,
            password=self.password, method=method, uri=uri, nonce=challenge.nonce, qop=qop,
            nc=nc, cnonce=cnonce, body=body,
        )
        return DigestCredentials(
            self.username, challenge.realm, challenge.nonce, uri, response,
            challenge.algorithm, qop, nc, cnonce, challenge.opaque,
        ).serialize()

    @staticmethod
    def pick(challenges: list[str]) -> DigestChallenge | None:
        """The strongest challenge we support among several (RFC 8760: SHA-256 over MD5)."""
        parsed = [c for c in (DigestChallenge.parse(v) for v in challenges) if c is not None]
        for alg in ("SHA-256", "SHA-256-SESS", "MD5", "MD5-SESS"):
            for c in parsed:
                if c.algorithm.upper() == alg:
                    return c
        return None
