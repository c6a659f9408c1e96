"""The registrar (RFC 3261 §10.3): REGISTER with digest auth against the plan's extensions.

It talks to bindings only through the LocationService API.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from email.utils import formatdate

from ..config.schema import Plan, RegistrarConfig
from .authentication import Authenticator
from .core import IncomingRequest, SipCore
from .location import Binding, LocationService
from .sip.errors import RemoteProtocolError
from .sip.headers import NameAddr
from .sip.message import Response
from .sip.uri import URI, unescape

log = logging.getLogger("centralino.registrar")


class Registrar:
    def __init__(
        self,
        core: SipCore,
        location: LocationService,
        auth: Authenticator,
        config: RegistrarConfig,
        max_contacts_of: Callable[[str], int | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.core = core
        self.location = location
        self.auth = auth
        self.config = config
        self.max_contacts_of = max_contacts_of  # None: not an extension
        self.clock = clock
        core.on("REGISTER", self.handle)

    def plan_changed(self, plan: Plan) -> None:
        self.config = plan.server.registrar

    async def handle(self, inc: IncomingRequest) -> Response:
        req = inc.request
        core = self.core
        now = self.clock()
        to_uri = req.to.uri
        if not isinstance(to_uri, URI) or to_uri.scheme not in ("sip", "sips") or not to_uri.user:
            return core.make_response(inc, 400, "Bad AOR")
        try:
            contacts = req.contacts
            star = req.contact_star
        except RemoteProtocolError as exc:
            return core.make_response(inc, 400, f"Bad Contact: {exc.reason}"[:100])

        outcome = self.auth.check(req, inc.source_ip, now)
        if outcome.user is None:
            return core.make_response(inc, outcome.status, headers=outcome.headers)
        aor = unescape(to_uri.user)
        max_contacts = self.max_contacts_of(aor)
        if max_contacts is None or outcome.user != aor:
            log.info("%s may not register %s", outcome.user, aor)
            return core.make_response(inc, 403, "Forbidden")

        current = {b.contact_uri: b for b in self.location.lookup(aor)}
        call_id = req.call_id
        cseq = req.cseq.seq
        header_expires = req.expires

        if star:
            if header_expires != 0 or len(req.header_values("Contact")) != 1:
                return core.make_response(inc, 400, "Contact * needs Expires: 0 and no other Contact")
            removals = [uri for uri, b in current.items() if not (b.call_id == call_id and cseq <= b.cseq)]
            await self.location.apply(aor, [], removals)
            log.info("unregistered all contacts of %s", aor)
            return self._ok(inc, aor, now)

        upserts: list[Binding] = []
        removals: list[str] = []
        for na in contacts:
            uri_text = na.uri.serialize()
            exp_param = na.param("expires")
            if exp_param is not None and exp_param.isdigit():
                expires = int(exp_param) if len(exp_param) < 11 else 2**32
            elif header_expires is not None:
                expires = header_expires
            else:
                expires = self.config.default_expires
            old = current.get(uri_text)
            if old is not None and old.call_id == call_id and cseq <= old.cseq:
                return core.make_response(inc, 500, "Out of order CSeq")
            if expires == 0:
                if old is not None:
                    removals.append(uri_text)
                continue
            if expires < self.config.min_expires:
                return core.make_response(
                    inc, 423, headers=[("Min-Expires", str(self.config.min_expires))]
                )
            expires = min(expires, self.config.max_expires)
            q = _q_value(na)
            keep = tuple((k, v) for k, v in na.params if k.lower() not in ("expires",))
            stored = NameAddr(na.uri, None, keep, True).serialize()
            instance = na.param("+sip.instance")
            upserts.append(Binding(
                aor=aor, contact_uri=uri_text, contact=stored, expires_at=now + expires, q=q,
                call_id=call_id, cseq=cseq, flow=inc.flow, user_agent=req.header("User-Agent") or "",
                instance=instance, registered_at=now,
            ))

        # Over the limit: the oldest bindings make room (a rebooted phone re-registering from a
        # new port must not be locked out by its own stale binding).
        remaining = {u: b for u, b in current.items() if u not in removals}
        for b in upserts:
            remaining[b.contact_uri] = b
        if len(remaining) > max_contacts:
            new_uris = {b.contact_uri for b in upserts}
            if len(new_uris) > max_contacts:
                return core.make_response(inc, 403, f"At most {max_contacts} contacts")
            evictable = sorted(
                (b for u, b in remaining.items() if u not in new_uris), key=lambda b: b.registered_at
            )
            for b in evictable[: len(remaining) - max_contacts]:
                removals.append(b.contact_uri)
                log.info("evicting oldest binding of %s: %s", aor, b.contact_uri)

        if upserts or removals:
            await self.location.apply(aor, upserts, removals)
        for b in upserts:
            log.info("registered %s → %s for %ds via %s", aor, b.contact_uri, b.expires_in(now), b.flow)
        return self._ok(inc, aor, now)

    def _ok(self, inc: IncomingRequest, aor: str, now: float) -> Response:
        headers = [
            ("Contact", f"{b.contact};expires={b.expires_in(now)}") for b in self.location.lookup(aor, now)
        ]
        headers.append(("Date", formatdate(now, usegmt=True)))
        return self.core.make_response(inc, 200, headers=headers)


def _q_value(na: NameAddr) -> float:
    q = na.param("q")
    try:
        value = float(q) if q else 1.0
    except ValueError:
        return 1.0
    return min(1.0, max(0.0, value))

