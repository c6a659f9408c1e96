"""Signed links: a URL that works without a token until it expires — for a CRM's player or a
Bitrix24/amoCRM record that fetches a call's recording. The signature is an HMAC of what the link
opens and its expiry, keyed by the switch's API secret (meta ``api-secret``), so a link cannot be
turned into another recording's or made to live longer; changing the secret voids them all."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote

V1 = "/api/v1"


def signature(secret: bytes, subject: str, expires: int) -> str:
    return hmac.new(secret, f"{subject}:{expires}".encode(), hashlib.sha256).hexdigest()


def valid(secret: bytes, subject: str, expires: int, sig: str, now: float | None = None) -> bool:
    if expires < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(sig, signature(secret, subject, expires))


def recording_path(ident: str, expires: int, secret: bytes) -> str:
    """One recording (by its id), as the API lists it."""
    return f"{V1}/recordings/{quote(ident)}/signed?expires={expires}&sig={signature(secret, f'recording:{ident}', expires)}"


def call_recording_path(call_id: str, expires: int, secret: bytes) -> str:
    """A call's recording (by the CDR's call id): what webhooks carry, resolved when fetched, so
    it holds even though the file is re-encoded after the call."""
    return f"{V1}/cdr/{quote(call_id)}/recording?expires={expires}&sig={signature(secret, f'call:{call_id}', expires)}"
