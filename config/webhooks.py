"""``webhooks:`` of the plan: where the switch posts its events (a CRM, a ticket system).

Each endpoint names the body ``format``:

- ``standard``: our JSON in Standard Webhooks' envelope, signed with ``secret`` (``whsec_`` +
  base64, or any text); ``events`` are the event type prefixes it wants (``call.ended``,
  ``queue.``, ``dialer.``).
- ``bitrix24``: ``url`` is the portal's inbound webhook (``https://co.bitrix24.ru/rest/1/<code>/``);
  a queue call is registered (``telephony.externalcall.register``, the agent's card pops) when an
  agent answers, finished (``.finish``: duration, status) when it ends and its recording attached
  (``telephony.externalCall.attachRecord``). Bitrix24 users are found by their inner phone number
  (the agent's extension) unless ``users`` maps an extension to a Bitrix24 user id; a call no
  agent answered goes to ``default_user``.
- ``amocrm``: ``url`` is the account (``https://co.amocrm.ru``); each ended call is one entry of
  ``POST /api/v4/calls`` with ``token`` (a long-lived access token) and ``users`` mapping
  extensions to amoCRM user ids.

Deliveries come from a durable outbox (storage/outbox.py, api/webhooks.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from .base import Strict

CRM_EVENTS = {"bitrix24": ["call.ended", "queue.connected"], "amocrm": ["call.ended"]}


class Webhook(Strict):
    url: str
    events: list[str] = Field(default_factory=lambda: ["call.ended"])  # event type prefixes (standard)
    secret: str | None = Field(None, min_length=8)  # signs standard deliveries
    format: Literal["standard", "bitrix24", "amocrm"] = "standard"
    token: str | None = None  # amoCRM's long-lived access token (Authorization: Bearer)
    users: dict[str, int] = {}  # extension → the CRM's user id
    default_user: int | None = None  # the CRM user of a call no agent answered (bitrix24: required)
    source: str = "Centralino"  # amoCRM's "source" of each call
    recording_link_hours: float = Field(24.0, gt=0)  # how long a signed recording URL in a delivery works
    timeout: float = Field(10.0, gt=0, le=60)  # seconds per delivery attempt
    retry_base: float = Field(5.0, gt=0)  # the first retry's delay; doubled each time, with jitter
    retry_for: float = Field(86400.0, gt=0)  # after this long undelivered, an event goes to the dead letters

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("a webhook url is http:// or https://")
        return value

    @model_validator(mode="after")
    def _format_needs(self) -> Webhook:
        if self.format == "standard" and self.secret is None:
            raise ValueError("a standard webhook needs a secret (its deliveries are signed with it)")
        if self.format == "bitrix24" and self.default_user is None:
            raise ValueError("a bitrix24 webhook needs default_user: the Bitrix24 user id of calls no agent answered")
        if self.format == "amocrm" and not self.token:
            raise ValueError("an amocrm webhook needs token: a long-lived access token of the amoCRM account")
        return self

    @property
    def wants(self) -> tuple[str, ...]:
        """The event type prefixes this endpoint is sent: a CRM adapter's own, or ``events``."""
        return tuple(CRM_EVENTS.get(self.format, self.events))

    def method_url(self, method: str) -> str:
        """A Bitrix24 REST method's address under the inbound webhook's URL."""
        return self.url.rstrip("/") + f"/{method}.json"

    def user_of(self, extension: str | None) -> int | None:
        return self.users.get(extension or "")
