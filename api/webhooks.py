"""Delivering the webhook outbox (storage/outbox.py) with httpx, signed as Standard Webhooks.

Each delivery is a POST of the stored body with ``webhook-id`` (the row's fixed message id),
``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``
keyed by the endpoint's secret (``whsec_`` + base64, or the text itself). A 2xx marks the row
delivered; a 410 disables the endpoint (its rows wait until the plan's URL changes or an admin
enables it again); anything else — another status, a timeout, a refused connection — is retried
after ``retry_base`` × 2^attempts (at most an hour) with ±50 % jitter, until the event is
``retry_for`` old (24 h by default): then it is a dead letter, listed and replayable through the
API. Rows survive restarts (the sender resumes after a ``kill -9``). At most ``PARALLEL``
deliveries are in flight at once, one at a time per endpoint (in order).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import httpx

from ..config.schema import Plan
from ..config.webhooks import Webhook
from ..storage.database import Database

log = logging.getLogger("centralino.webhooks")

PARALLEL = 8
BATCH = 100
MAX_DELAY = 3600.0


def secret_key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        with contextlib.suppress(ValueError):
            return base64.b64decode(secret[6:] + "=" * (-len(secret[6:]) % 4))
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def retry_delay(hook: Webhook, attempts: int, rand: Callable[[], float] = random.random) -> float:
    """The wait before attempt ``attempts + 1``: exponential, capped, with ±50 % jitter."""
    base = min(MAX_DELAY, hook.retry_base * (2 ** max(0, attempts - 1)))
    return base * (0.5 + rand())


class WebhookSender:
    def __init__(self, db: Database, plan_of: Callable[[], Plan], transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.db, self.plan_of = db, plan_of
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient(transport=transport, follow_redirects=False,
                                         headers={"User-Agent": "Centralino-Webhooks", "Content-Type": "application/json"})
        self.disabled: dict[str, str] = {}  # webhook → the URL that answered 410
        self.delivered = 0
        self.failed_attempts = 0

    def wake(self) -> None:
        self._wake.set()

    async def load(self) -> None:
        for row in await self.db.fetchall("SELECT key, value FROM meta WHERE key LIKE 'webhook-disabled:%'"):
            self.disabled[row["key"].partition(":")[2]] = row["value"]

    def _active(self) -> dict[str, Webhook]:
        hooks = self.plan_of().webhooks
        for name, url in list(self.disabled.items()):
            if name in hooks and hooks[name].url != url:
                del self.disabled[name]  # a new URL in the plan: try again
        return {n: h for n, h in hooks.items() if n not in self.disabled}

    async def run(self) -> None:
        try:
            while True:
                wait = await self._round()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
        finally:
            await self._client.aclose()

    async def _round(self) -> float:
        """Deliver what is due; returns how long to sleep until the next row is."""
        hooks = self._active()
        if not hooks:
            return 30.0
        names = list(hooks)
        marks = ",".join("?" for _ in names)
        now = time.time()
        rows = await self.db.fetchall(
            f"SELECT id, webhook, event_id, payload, created, attempts FROM webhook_outbox "
            f"WHERE state = 'pending' AND next_at <= ? AND webhook IN ({marks}) ORDER BY id LIMIT ?",
            (now, *names, BATCH))
        by_hook: dict[str, list[Any]] = {}
        for row in rows:
            by_hook.setdefault(row["webhook"], []).append(row)
        gate = asyncio.Semaphore(PARALLEL)

        async def endpoint(name: str, queue: list[Any]) -> None:
            async with gate:
                for row in queue:
                    if not await self._deliver(hooks[name], name, row):
                        break  # keep its order: the rest waits for this one's retry

        await asyncio.gather(*(endpoint(n, q) for n, q in by_hook.items()))
        if len(rows) == BATCH:
            return 0.0
        nxt = await self.db.fetchone(
            f"SELECT MIN(next_at) AS at FROM webhook_outbox WHERE state = 'pending' AND webhook IN ({marks})",
            tuple(names))
        if nxt is None or nxt["at"] is None:
            return 30.0
        return max(0.0, min(30.0, nxt["at"] - time.time()))

    async def _deliver(self, hook: Webhook, name: str, row: Any) -> bool:
        body = row["payload"].encode()
        ts = int(time.time())
        headers = {"webhook-id": row["event_id"], "webhook-timestamp": str(ts),
                   "webhook-signature": sign(hook.secret, row["event_id"], ts, body)}
        try:
            resp = await self._client.post(hook.url, content=body, headers=headers, timeout=hook.timeout)
            status, error = resp.status_code, f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            status, error = 0, f"{type(exc).__name__}: {exc}"[:200]
        now = time.time()
        if 200 <= status < 300:
            self.delivered += 1
            await self.db.write([("UPDATE webhook_outbox SET state = 'delivered', attempts = attempts + 1, "
                                  "done_at = ?, last_error = '' WHERE id = ?", (now, row["id"]))])
            return True
        self.failed_attempts += 1
        attempts = row["attempts"] + 1
        if status == 410:
            log.warning("webhook %s: %s answered 410 Gone: endpoint disabled", name, hook.url)
            self.disabled[name] = hook.url
            await self.db.write([
                ("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (f"webhook-disabled:{name}", hook.url)),
                ("UPDATE webhook_outbox SET attempts = ?, last_error = ? WHERE id = ?",
                 (attempts, "410 Gone: endpoint disabled", row["id"]))])
            return False
        if now - row["created"] >= hook.retry_for:
            log.warning("webhook %s: event %s undelivered for %.0f s (%s): dead letter", name, row["event_id"],
                        now - row["created"], error)
            await self.db.write([("UPDATE webhook_outbox SET state = 'dead', attempts = ?, last_error = ?, done_at = ? "
                                  "WHERE id = ?", (attempts, error, now, row["id"]))])
            return False
        delay = retry_delay(hook, attempts)
        log.info("webhook %s: delivery of %s failed (%s); retry %d in %.1f s", name, row["event_id"], error,
                 attempts, delay)
        await self.db.write([("UPDATE webhook_outbox SET attempts = ?, last_error = ?, next_at = ? WHERE id = ?",
                              (attempts, error, now + delay, row["id"]))])
        return False

    # -- what the API shows and does ----------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        counts = await self.db.fetchall("SELECT webhook, state, COUNT(*) AS n FROM webhook_outbox GROUP BY webhook, state")
        out: dict[str, Any] = {}
        for name, hook in self.plan_of().webhooks.items():
            out[name] = {"url": hook.url, "events": hook.events, "disabled": name in self.disabled,
                         "pending": 0, "delivered": 0, "dead": 0}
        for row in counts:
            if row["webhook"] in out:
                out[row["webhook"]][row["state"]] = row["n"]
        return {"webhooks": out}

    async def backlog(self) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) AS n FROM webhook_outbox WHERE state = 'pending'")
        return int(row["n"]) if row else 0

    async def dead_letters(self, limit: int = 200) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT id, webhook, event_id, type, created, attempts, last_error, done_at FROM webhook_outbox "
            "WHERE state = 'dead' ORDER BY id DESC LIMIT ?", (limit,))
        return [dict(r) for r in rows]

    async def replay(self, ident: int) -> bool:
        row = await self.db.fetchone("SELECT state FROM webhook_outbox WHERE id = ?", (ident,))
        if row is None or row["state"] != "dead":
            return False
        now = time.time()
        await self.db.write([("UPDATE webhook_outbox SET state = 'pending', attempts = 0, created = ?, next_at = ?, "
                              "done_at = NULL WHERE id = ?", (now, now, ident))])
        self.wake()
        return True

    async def enable(self, name: str) -> bool:
        if self.disabled.pop(name, None) is None:
            return False
        await self.db.write([("DELETE FROM meta WHERE key = ?", (f"webhook-disabled:{name}",))])
        self.wake()
        return True
