"""Dialog state (RFC 3261 §12): identifiers, route set, CSeq numbers, remote target."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum

from .errors import RemoteProtocolError
from .headers import NameAddr
from .message import Request, Response
from .uri import URI, AbsoluteURI


class _RandomPool:
    """Kernel randomness (os.urandom, as unguessable as secrets') read 4 KiB at a time: a call
    takes a dozen tags and branches, and one getrandom() per identifier showed in the profile.
    Never shared across a fork: a child starts with an empty pool."""

    SIZE = 4096

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._buf, self._pos = b"", 0

    def hex(self, nbytes: int) -> str:
        pos = self._pos
        if pos + nbytes > len(self._buf):
            self._buf, pos = os.urandom(self.SIZE), 0
        self._pos = pos + nbytes
        return self._buf[pos:pos + nbytes].hex()


_random = _RandomPool()


def new_tag() -> str:
    return _random.hex(6)


def new_branch() -> str:
    return "z9hG4bK" + _random.hex(9)


def new_call_id(host: str) -> str:
    return f"{_random.hex(12)}@{host}"


class DialogState(Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr
    remote_uri: NameAddr
    remote_target: URI | AbsoluteURI
    route_set: list[NameAddr] = field(default_factory=list)
    local_seq: int = 0
    remote_seq: int | None = None
    secure: bool = False
    state: DialogState = DialogState.EARLY

    @property
    def id(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def from_uac(cls, request: Request, response: Response) -> Dialog:
        """Our request created it (§12.1.2): route set is the reversed Record-Route."""
        contacts = response.contacts
        if not contacts:
            raise RemoteProtocolError("dialog-creating response without Contact")
        remote_tag = response.to.tag
        if remote_tag is None:
            raise RemoteProtocolError("dialog-creating response without To tag")
        return cls(
            call_id=request.call_id, local_tag=request.from_.tag or "", remote_tag=remote_tag,
            local_uri=request.from_, remote_uri=response.to, remote_target=contacts[0].uri,
            route_set=list(reversed(response.record_routes)), local_seq=request.cseq.seq,
            secure=getattr(request.uri, "scheme", "") == "sips",
            state=DialogState.CONFIRMED if response.status < 300 and response.status >= 200 else DialogState.EARLY,
        )

    @classmethod
    def from_uas(cls, request: Request, local_tag: str) -> Dialog:
        """A request we answered created it (§12.1.1): route set is Record-Route in order."""
        contacts = request.contacts
        if not contacts:
            raise RemoteProtocolError("dialog-creating request without Contact")
        return cls(
            call_id=request.call_id, local_tag=local_tag, remote_tag=request.from_.tag or "",
            local_uri=request.to.with_param("tag", local_tag), remote_uri=request.from_,
            remote_target=contacts[0].uri, route_set=list(request.record_routes),
            remote_seq=request.cseq.seq, secure=getattr(request.uri, "scheme", "") == "sips",
        )

    def create_request(self, method: str, via: str, contact: str | None = None, body: bytes = b"",
                       extra: list[tuple[str, str]] | None = None) -> Request:
        """A mid-dialog request (§12.2.1.1); ACK reuses the INVITE's CSeq number."""
        if method != "ACK" and method != "CANCEL":
            self.local_seq += 1
        uri = self.remote_target
        routes = list(self.route_set)
        if routes and not routes[0].uri.has_param("lr"):
            # strict router: it goes in the Request-URI, the remote target at the end
            uri = routes[0].uri
            routes = [*routes[1:], NameAddr(self.remote_target)]
        headers = [("Via", via), ("Max-Forwards", "70")]
        headers += [("Route", r.serialize()) for r in routes]
        headers += [
            ("From", self.local_uri.with_param("tag", self.local_tag).serialize()),
            ("To", self.remote_uri.with_param("tag", self.remote_tag).serialize()
             if self.remote_tag else self.remote_uri.serialize()),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.local_seq} {method}"),
        ]
        if contact:
            headers.append(("Contact", contact))
        headers += extra or []
        return Request(method, uri, headers, body)

    def check_request(self, request: Request) -> None:
        """CSeq must grow in a dialog (§12.2.2); a target refresh updates the remote target."""
        seq = request.cseq.seq
        if request.method not in ("ACK", "CANCEL"):
            if self.remote_seq is not None and seq <= self.remote_seq:
                raise RemoteProtocolError("CSeq lower than the dialog's", 500)
            self.remote_seq = seq
        if request.method in ("INVITE", "UPDATE") and request.contacts:
            self.remote_target = request.contacts[0].uri
