"""Errors of the SIP layer, split h11-style into local and remote faults."""

from __future__ import annotations


class SIPError(Exception):
    """Base class of every error the SIP layer raises on purpose."""


class LocalProtocolError(SIPError):
    """We were asked to do something the protocol forbids (a bug on our side)."""


class RemoteProtocolError(SIPError):
    """The peer sent something we cannot accept.

    ``status`` is the SIP status a request should be answered with (400, 416, 420, 505, ...);
    it is ``None`` when the faulty message was a response, which is dropped silently.
    ``partial`` holds whatever headers could be read, so that a response can still be built.
    """

    def __init__(
        self,
        reason: str,
        status: int | None = 400,
        *,
        partial: object | None = None,
        fatal: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.partial = partial
        # Over a stream a framing error leaves us unable to find the next message: close it.
        self.fatal = fatal

    def __repr__(self) -> str:
        return f"RemoteProtocolError({self.status}, {self.reason!r})"
