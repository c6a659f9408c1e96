"""Digest authentication of requests against the plan's extensions, counted per source and
per user.

Unknown users, wrong passwords and locked-out users get exactly the same answer as a request
without credentials: a fresh challenge. Only the security guard knows the difference. The
credentials are bound to the request: their ``uri`` must name the Request-URI (RFC 3261 §22.4,
RFC 7616 §3.4.6), so a digest seen on one INVITE cannot carry another to a premium number.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ..config.schema import Plan
from .security import SecurityGuard
from .sip.auth import AuthResult, DigestCredentials, DigestServer, NonceManager
from .sip.message import Request
from .sip.uri import URI, parse_uri

log = logging.getLogger("centralino.auth")


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    user: str | None  # the authenticated user name, or None
    status: int = 0  # 401 / 407 when a challenge must be sent
    headers: list[tuple[str, str]] = field(default_factory=list)


class Authenticator:
    def __init__(
        self,
        realm: str,
        password_of: Callable[[str], str | None],
        security: SecurityGuard,
        *,
        algorithms: tuple[str, ...] = ("MD5",),
        nonce_lifetime: float = 300.0,
        secret: bytes | None = None,
    ) -> None:
        self.password_of = password_of
        self.security = security
        self.server = DigestServer(realm, NonceManager(secret, nonce_lifetime), algorithms)

    def plan_changed(self, plan: Plan) -> None:
        sip, sec = plan.server.sip, plan.server.security
        self.configure(sip.realm or sip.domain, tuple(sec.auth_algorithms), sec.nonce_lifetime)

    def configure(self, realm: str, algorithms: tuple[str, ...], nonce_lifetime: float) -> None:
        self.server.realm = realm
        self.server.algorithms = tuple(a.upper() for a in algorithms)
        self.server.nonces.lifetime = nonce_lifetime

    def check(self, request: Request, source_ip: str, now: float, *, proxy: bool = False) -> AuthOutcome:
        status = 407 if proxy else 401
        cred_header = "Proxy-Authorization" if proxy else "Authorization"
        challenge_header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        creds = None
        for value in request.header_values(cred_header):
            c = DigestCredentials.parse(value)
            if c is not None and c.realm == self.server.realm:
                creds = c
                break
        stale = False
        if creds is not None:
            if not same_resource(creds.uri, request.uri):
                log.info("digest uri %r from %s does not name the Request-URI %s", creds.uri[:80], source_ip,
                         request.uri)
                return AuthOutcome(None, 400, [("Warning", '399 - "the digest uri is not the Request-URI"')])
            if self.security.user_locked(creds.username, source_ip, now):
                result = AuthResult.FAILED  # the password is not even looked at
            else:
                result = self.server.verify(creds, request.method, self.password_of, now, request.body)
            if result is AuthResult.OK:
                self.security.auth_succeeded(source_ip, creds.username, now)
                return AuthOutcome(creds.username)
            if result is AuthResult.FAILED:
                self.security.auth_failed(source_ip, now, creds.username)
            else:
                stale = True
                log.debug("%s nonce from %s for %s", result.value, source_ip, creds.username)
        challenges = self.server.challenges(now, stale=stale)
        return AuthOutcome(None, status, [(challenge_header, c) for c in challenges])


def same_resource(digest_uri: str, request_uri: object) -> bool:
    """Whether a digest's ``uri`` names the Request-URI: same scheme, user, host and port
    (parameters aside, which phones order and spell differently)."""
    try:
        theirs = parse_uri(digest_uri.strip())
    except Exception:
        return False
    if not isinstance(theirs, URI) or not isinstance(request_uri, URI):
        return str(digest_uri).strip() == str(request_uri)

    def key(u: URI) -> tuple[str, str, str, int]:
        default = 5061 if u.scheme == "sips" else 5060
        return u.scheme, u.user or "", u.host.lower().strip("[]"), u.port or default

    return key(theirs) == key(request_uri)
