"""Delivering the webhook outbox (storage/outbox.py) with httpx, signed as Standard Webhooks.

Each delivery is a POST of the stored body with ``webhook-id`` (the row's fixed message id),
``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``
keyed by the endpoint's secret (``whsec_`` + base64, or the text itself). A 2xx marks the row
delivered; a 410 disables the endpoint (its rows wait until the plan's URL changes or an admin
enables it again); anything else — another status, a timeout, a refused connection — is retried
after ``retry_base`` × 2^attempts (at most an hour) with ±50 % jitter, until the event is
``retry_for`` old (24 h by default): then it is a dead letter, listed and replayable through the
API. Rows survive restarts (the sender resumes after a ``kill -9``). At most ``PARALLEL``
deliveries are in flight at once, one at a time per endpoint (in order; measured, a window of
16 in flight per endpoint was slower with httpx, not faster). Successes are marked delivered in
one write per batch: a crash in between re-sends them (same ``webhook-id``), never loses them.

The CRM formats (storage/webhook_formats.py) are sent the CRM's way: amoCRM's body to
``/api/v4/calls`` with the account's bearer token; Bitrix24's row is a sequence of REST calls,
done step by step with the call's Bitrix24 CALL_ID remembered between rows (``crm_calls``) and the
recording read and attached when it is complete. The same retry rules hold for every format.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from ..config.schema import Plan
from ..config.webhooks import Webhook
from ..storage.database import Database

log = logging.getLogger("centralino.webhooks")

PARALLEL = 8
BATCH = 100
MAX_DELAY = 3600.0
RECORDING_WAIT = 600  # seconds a Bitrix24 attach waits for the call's recording to be complete
BITRIX_REGISTER = "telephony.externalcall.register"
PRUNE_EVERY = 3600.0


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
        pruned = 0.0
        try:
            while True:
                if time.monotonic() - pruned > PRUNE_EVERY:
                    pruned = time.monotonic()
                    await self.prune()
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
            f"SELECT id, webhook, event_id, payload, created, attempts, progress FROM webhook_outbox "
            f"WHERE state = 'pending' AND next_at <= ? AND webhook IN ({marks}) ORDER BY id LIMIT ?",
            (now, *names, BATCH))
        by_hook: dict[str, list[Any]] = {}
        for row in rows:
            by_hook.setdefault(row["webhook"], []).append(row)
        gate = asyncio.Semaphore(PARALLEL)

        async def endpoint(name: str, queue: list[Any]) -> None:
            delivered: list[tuple[float, int]] = []  # marked in one write: a crash re-sends, never loses
            async with gate:
                try:
                    for row in queue:
                        if not await self._deliver(hooks[name], name, row, delivered):
                            break  # keep its order: the rest waits for this one's retry
                finally:
                    if delivered:
                        await self.db.write([(
                            "UPDATE webhook_outbox SET state = 'delivered', attempts = attempts + 1, done_at = ?, "
                            "last_error = '' WHERE id = ?", d) for d in delivered])

        await asyncio.gather(*(endpoint(n, q) for n, q in by_hook.items()))
        if len(rows) == BATCH:
            return 0.0
        nxt = await self.db.fetchone(
            f"SELECT MIN(next_at) AS at FROM webhook_outbox WHERE state = 'pending' AND webhook IN ({marks})",
            tuple(names))
        if nxt is None or nxt["at"] is None:
            return 30.0
        return max(0.0, min(30.0, nxt["at"] - time.time()))

    async def _deliver(self, hook: Webhook, name: str, row: Any, delivered: list[tuple[float, int]]) -> bool:
        try:
            if hook.format == "bitrix24":
                status, error = await self._send_bitrix24(hook, name, row)
            else:
                status, error = await self._send_one(hook, row)
        except httpx.HTTPError as exc:
            status, error = 0, f"{type(exc).__name__}: {exc}"[:200]
        now = time.time()
        if 200 <= status < 300:
            self.delivered += 1
            delivered.append((now, row["id"]))
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

    async def _send_one(self, hook: Webhook, row: Any) -> tuple[int, str]:
        """One POST: a standard delivery signed as Standard Webhooks, or amoCRM's /api/v4/calls."""
        body = row["payload"].encode()
        if hook.format == "amocrm":
            url = hook.url if hook.url.rstrip("/").endswith("/api/v4/calls") else hook.url.rstrip("/") + "/api/v4/calls"
            headers = {"Authorization": f"Bearer {hook.token}"}
        else:
            url, ts = hook.url, int(time.time())
            assert hook.secret is not None  # the plan's check: a standard webhook has one
            headers = {"webhook-id": row["event_id"], "webhook-timestamp": str(ts),
                       "webhook-signature": sign(hook.secret, row["event_id"], ts, body)}
        resp = await self._client.post(url, content=body, headers=headers, timeout=hook.timeout)
        return resp.status_code, f"HTTP {resp.status_code}"

    async def _send_bitrix24(self, hook: Webhook, name: str, row: Any) -> tuple[int, str]:
        """The row's REST calls in order, from the first not yet done (``progress`` survives a
        retry and a restart, so a finish is never sent twice). Register is skipped when the call
        already has its Bitrix24 CALL_ID, which the later steps are given."""
        steps = json.loads(row["payload"])["steps"]
        for index in range(row["progress"], len(steps)):
            step = steps[index]
            external = await self._external_id(name, step["call"])
            params = dict(step["params"])
            if step["method"] == BITRIX_REGISTER:
                if external is None:
                    status, answer = await self._bitrix_call(hook, step["method"], params)
                    if not 200 <= status < 300:
                        return status, answer
                    try:
                        external = str(json.loads(answer)["result"]["CALL_ID"])
                    except (ValueError, KeyError, TypeError):
                        return 502, f"register answered without a CALL_ID: {answer[:120]}"
                    await self.db.write([("INSERT OR REPLACE INTO crm_calls (webhook, call_id, external_id, created) "
                                          "VALUES (?, ?, ?, ?)", (name, step["call"], external, time.time()))])
            else:
                if external is None:
                    return 0, "no Bitrix24 CALL_ID yet (the call's register step has not succeeded)"
                params["CALL_ID"] = external
                if step.get("recording"):
                    found = await self._recording_file(step["call"], row["created"])
                    if isinstance(found, str):
                        return 0, found  # not ready yet: retried
                    if found is None:  # no usable file: the call is logged without it
                        await self._progress(row["id"], index + 1)
                        continue
                    params["FILENAME"], params["FILE_CONTENT"] = found[0], found[1]
                status, answer = await self._bitrix_call(hook, step["method"], params)
                if not 200 <= status < 300:
                    return status, answer
            await self._progress(row["id"], index + 1)
        return 200, ""

    async def _bitrix_call(self, hook: Webhook, method: str, params: dict[str, Any]) -> tuple[int, str]:
        resp = await self._client.post(hook.method_url(method), content=json.dumps(params).encode(),
                                       timeout=hook.timeout)
        text = resp.text
        if 200 <= resp.status_code < 300 and '"error"' in text[:200]:
            with contextlib.suppress(ValueError):
                if "error" in json.loads(text):  # Bitrix24 can answer an error with 200
                    return 502, f"{method}: {text[:160]}"
        return resp.status_code, text if 200 <= resp.status_code < 300 else f"HTTP {resp.status_code} {method}: {text[:160]}"

    async def _progress(self, ident: int, done: int) -> None:
        await self.db.write([("UPDATE webhook_outbox SET progress = ? WHERE id = ?", (done, ident))])

    async def _external_id(self, name: str, call_id: str) -> str | None:
        row = await self.db.fetchone("SELECT external_id FROM crm_calls WHERE webhook = ? AND call_id = ?",
                                     (name, call_id))
        return None if row is None else str(row["external_id"])

    async def _recording_file(self, call_id: str, created: float) -> tuple[str, str] | str | None:
        """The call's recording as (file name, base64), a reason to wait (its index row is written
        when the file is complete), or None when there is nothing Bitrix24 can take (no file after
        ``RECORDING_WAIT`` s, gone, or not WAV/MP3)."""
        row = await self.db.fetchone("SELECT path FROM recordings WHERE call_id = ? ORDER BY started DESC LIMIT 1",
                                     (call_id,))
        if row is None:
            if time.time() - created < RECORDING_WAIT:
                return "the call's recording is not complete yet"
            log.warning("webhook: call %s has no recording to attach after %d s", call_id, RECORDING_WAIT)
            return None
        path = Path(row["path"])
        if path.suffix.lower() not in (".wav", ".mp3") or not path.is_file():
            log.warning("webhook: recording %s of call %s cannot go to Bitrix24 (gone, or not WAV/MP3)", path, call_id)
            return None
        content = await asyncio.to_thread(path.read_bytes)
        return f"{call_id}{path.suffix.lower()}", base64.b64encode(content).decode()

    async def prune(self, keep_days: float = 7.0) -> None:
        """Delivered rows and CRM call ids older than ``keep_days`` go (dead letters stay until replayed)."""
        cutoff = time.time() - keep_days * 86400
        await self.db.write([("DELETE FROM webhook_outbox WHERE state = 'delivered' AND done_at < ?", (cutoff,)),
                             ("DELETE FROM crm_calls WHERE created < ?", (cutoff,))])

    # -- what the API shows and does ----------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        counts = await self.db.fetchall("SELECT webhook, state, COUNT(*) AS n FROM webhook_outbox GROUP BY webhook, state")
        out: dict[str, Any] = {}
        for name, hook in self.plan_of().webhooks.items():
            out[name] = {"url": hook.url, "format": hook.format, "events": list(hook.wants), "disabled": name in self.disabled,
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
