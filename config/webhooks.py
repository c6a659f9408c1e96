"""``webhooks:`` of the plan: where the switch posts its events (a CRM, a ticket system).

Each endpoint names the event types it wants (prefixes: ``call.ended``, ``queue.``, ``dialer.``),
the secret its deliveries are signed with (Standard Webhooks: ``whsec_`` + base64, or any text)
and the body format. Deliveries come from a durable outbox (storage/outbox.py, api/webhooks.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from .base import Strict


class Webhook(Strict):
    url: str
    events: list[str] = Field(default_factory=lambda: ["call.ended"])  # event type prefixes
    secret: str = Field(min_length=8)
    format: Literal["standard"] = "standard"
    timeout: float = Field(10.0, gt=0, le=60)  # seconds per delivery attempt
    retry_base: float = Field(5.0, gt=0)  # the first retry's delay; doubled each time, with jitter
    retry_for: float = Field(86400.0, gt=0)  # after this long undelivered, an event goes to the dead letters

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("a webhook url is http:// or https://")
        return value
