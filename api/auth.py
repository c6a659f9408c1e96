"""Who is asking: users of the plan, login tokens, integration tokens and the CLI's credential.

A token is 32 random bytes; only its SHA-256 is kept (in memory and in SQLite's ``api_tokens``),
so a copy of the database logs nobody in. A login gives a token that expires after
``server.api.session_hours``; the web pages carry it in an ``HttpOnly; SameSite=Strict`` cookie and
send a CSRF token (derived from it with the switch's secret) in ``X-CSRF-Token`` on every change.
Scripts send ``Authorization: Bearer``. The CLI's local credential (``api-token``, 0600) is an
admin. Failed logins are counted per source (``login_failures`` in ``login_window`` → 429) and
per user (twenty in an hour locks that user out for sources that never logged in as it, so a
guesser cannot lock a user out of the desk they use); each failure is a security event.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..config.schema import ApiConfig, Plan
from ..config.users import Role, User, hash_password, supervised_queues, verify_password
from ..events import EventBus, SecurityEvent
from ..storage.database import Database

USER_FAILURES = 20  # failed logins per user per hour before new sources are refused for it
USER_WINDOW = 3600.0


@functools.cache
def _stranger_hash() -> str:
    """A fixed hash to check unknown users' passwords against (computed once, not per login)."""
    return hash_password("x", b"0" * 16)


class Via(StrEnum):
    COOKIE = "cookie"
    BEARER = "bearer"
    LOCAL = "local"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated party of one request."""

    user: str  # a plan user, "token:NAME" for an integration token, "local" for the CLI
    role: Role
    extension: str | None
    queues: frozenset[str]  # the queues it may see and act on
    via: Via
    token_id: str  # the token's hash: the key of its rate limit and of logout

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


@dataclass(frozen=True, slots=True)
class TokenRecord:
    token_id: str
    kind: str  # "session" (a login) or "api" (an integration token)
    user: str  # the plan user it acts as ("" for a role token)
    role: Role
    name: str
    created: float
    expires: float | None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class LoginLimiter:
    """Failed logins per source and per user (pure: given the time)."""

    def __init__(self, failures: int, window: float) -> None:
        self.failures, self.window = failures, window
        self._by_source: dict[str, deque[float]] = defaultdict(deque)
        self._by_user: dict[str, deque[float]] = defaultdict(deque)
        self._known: set[tuple[str, str]] = set()  # (user, source) that logged in before

    @staticmethod
    def _trim(times: deque[float], since: float) -> None:
        while times and times[0] < since:
            times.popleft()

    def retry_after(self, source: str, user: str, now: float) -> float | None:
        """Seconds this source must wait before trying ``user`` again, or None."""
        times = self._by_source.get(source)
        if times is not None:
            self._trim(times, now - self.window)
            if len(times) >= self.failures:
                return max(1.0, times[0] + self.window - now)
        utimes = self._by_user.get(user)
        if utimes is not None and (user, source) not in self._known:
            self._trim(utimes, now - USER_WINDOW)
            if len(utimes) >= USER_FAILURES:
                return max(1.0, utimes[0] + USER_WINDOW - now)
        return None

    def failed(self, source: str, user: str, now: float) -> None:
        self._by_source[source].append(now)
        self._by_user[user].append(now)
        if len(self._by_source) > 10_000:  # bounded: forget the quietest sources
            for key in [k for k, v in self._by_source.items() if not v or v[-1] < now - self.window]:
                del self._by_source[key]

    def succeeded(self, source: str, user: str) -> None:
        self._by_source.pop(source, None)
        self._known.add((user, source))


class TokenBucket:
    """Requests per second per token: ``rate`` sustained, twice that in a burst."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, now: float) -> float | None:
        """None if the request may go, else the seconds until it could."""
        burst = 2 * self.rate
        level, at = self._buckets.get(key, (burst, now))
        level = min(burst, level + (now - at) * self.rate)
        if level < 1.0:
            self._buckets[key] = (level, now)
            return (1.0 - level) / self.rate
        self._buckets[key] = (level - 1.0, now)
        if len(self._buckets) > 50_000:
            self._buckets = {k: v for k, v in self._buckets.items() if v[1] > now - 60}
        return None


class ApiAuth:
    """Users, tokens and limits of the API; follows the plan on reload."""

    def __init__(self, plan: Plan, db: Database | None, bus: EventBus, local_token: str, secret: bytes) -> None:
        self.plan, self.db, self.bus = plan, db, bus
        self.local_id = token_hash(local_token)
        self.secret = secret
        self.tokens: dict[str, TokenRecord] = {}
        self.hashes: dict[str, str] = {}  # user → password hash (plan's, or generated and stored)
        self.plain: dict[str, str] = {}  # user → the plan's plain password
        self.new_passwords: dict[str, str] = {}  # generated at this start: printed once
        self.limiter = LoginLimiter(plan.server.api.login_failures, plan.server.api.login_window)
        self.bucket = TokenBucket(plan.server.api.rate_limit)
        self.refused = 0  # requests without a valid token, or with a cookie and no CSRF token

    @property
    def config(self) -> ApiConfig:
        return self.plan.server.api

    async def start(self) -> None:
        await self._resolve_passwords()
        if self.db is not None:
            for row in await self.db.fetchall(
                    "SELECT hash, kind, user, role, name, created, expires FROM api_tokens"):
                self.tokens[row["hash"]] = TokenRecord(row["hash"], row["kind"], row["user"], Role(row["role"]),
                                                       row["name"], row["created"], row["expires"])

    def plan_changed(self, plan: Plan) -> None:
        self.plan = plan
        self.limiter.failures, self.limiter.window = plan.server.api.login_failures, plan.server.api.login_window
        self.bucket.rate = plan.server.api.rate_limit

    async def reload(self, plan: Plan) -> None:
        self.plan_changed(plan)
        await self._resolve_passwords()

    async def _resolve_passwords(self) -> None:
        """Users without a password get one generated once; only its hash is kept."""
        self.plain = {n: u.password for n, u in self.plan.users.items() if u.password is not None}
        hashes = {n: u.password_hash for n, u in self.plan.users.items() if u.password_hash is not None}
        for name, user in self.plan.users.items():
            if user.password is not None or user.password_hash is not None:
                continue
            key = f"user-password:{name}"
            row = await self.db.fetchone("SELECT value FROM meta WHERE key = ?", (key,)) if self.db else None
            if row is None:
                password = secrets.token_urlsafe(9)
                hashed = hash_password(password)
                if self.db is not None:
                    await self.db.write([("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, hashed))])
                self.new_passwords[name] = password
            else:
                hashed = row["value"]
            hashes[name] = hashed
        self.hashes = hashes

    async def reset_password(self, name: str) -> str:
        """A new generated password for ``name`` (shown once to the admin who asked)."""
        user = self.plan.users.get(name)
        if user is None:
            raise KeyError(f"no user {name!r}")
        if user.password is not None or user.password_hash is not None:
            raise ValueError(f"{name}'s password is set in the plan; change it there")
        password = secrets.token_urlsafe(9)
        hashed = hash_password(password)
        if self.db is not None:
            await self.db.write([("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                  (f"user-password:{name}", hashed))])
        self.hashes[name] = hashed
        await self._revoke_where(lambda r: r.user == name and r.kind == "session")
        return password

    # -- logging in ------------------------------------------------------------------------------
    def _password_ok(self, name: str, password: str) -> bool:
        if name in self.plain:
            return hmac.compare_digest(self.plain[name].encode(), password.encode())
        hashed = self.hashes.get(name)
        if hashed is None:
            verify_password(password, _stranger_hash())  # one scrypt, as for a known user
            return False
        return verify_password(password, hashed)

    async def login(self, name: str, password: str, source: str) -> tuple[str, TokenRecord] | float:
        """A new session token, or the seconds to wait (too many failures) as a float; raises
        PermissionError on a wrong name or password."""
        now = time.time()
        wait = self.limiter.retry_after(source, name, now)
        if wait is not None:
            self.bus.publish(SecurityEvent(source=source, kind="api-login-limited", detail=f"user {name[:64]}",
                                           user=name[:64]))
            return wait
        if name not in self.plan.users or not self._password_ok(name, password):
            self.limiter.failed(source, name, now)
            self.bus.publish(SecurityEvent(source=source, kind="api-login-failure", detail=f"user {name[:64]}",
                                           user=name[:64]))
            raise PermissionError("wrong user name or password")
        self.limiter.succeeded(source, name)
        user = self.plan.users[name]
        return await self.issue("session", name, user.role, name, now + self.config.session_hours * 3600)

    async def issue(self, kind: str, user: str, role: Role, name: str, expires: float | None) -> tuple[str, TokenRecord]:
        token = secrets.token_urlsafe(32)
        record = TokenRecord(token_hash(token), kind, user, role, name, time.time(), expires)
        self.tokens[record.token_id] = record
        if self.db is not None:
            await self.db.write([(
                "INSERT INTO api_tokens (hash, kind, user, role, name, created, expires) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (record.token_id, kind, user, role.value, name, record.created, expires))])
        return token, record

    async def revoke(self, token_id: str) -> bool:
        return await self._revoke_where(lambda r: r.token_id == token_id) > 0

    async def revoke_named(self, name: str) -> int:
        return await self._revoke_where(lambda r: r.kind == "api" and r.name == name)

    async def _revoke_where(self, pick: Any) -> int:
        gone = [r.token_id for r in self.tokens.values() if pick(r)]
        for token_id in gone:
            del self.tokens[token_id]
        if gone and self.db is not None:
            await self.db.write([("DELETE FROM api_tokens WHERE hash = ?", (t,)) for t in gone])
        return len(gone)

    # -- each request ----------------------------------------------------------------------------
    def csrf_for(self, token_id: str) -> str:
        return hmac.new(self.secret, b"csrf:" + token_id.encode(), hashlib.sha256).hexdigest()[:32]

    def principal(self, token: str, via: Via, now: float) -> Principal | None:
        """The party a presented token stands for, or None (unknown, expired, user gone)."""
        token_id = token_hash(token)
        if hmac.compare_digest(token_id, self.local_id):
            return Principal("local", Role.ADMIN, None, frozenset(self.plan.queues), Via.LOCAL, token_id)
        record = self.tokens.get(token_id)
        if record is None or (record.expires is not None and record.expires <= now):
            return None
        if record.user:
            user: User | None = self.plan.users.get(record.user)
            if user is None:
                return None  # removed from the plan: its tokens die with it
            return Principal(record.user, user.role, user.extension, supervised_queues(self.plan, user), via,
                             token_id)
        queues = frozenset(self.plan.queues) if record.role is Role.ADMIN else frozenset()
        return Principal(f"token:{record.name}", record.role, None, queues, via, token_id)

    def listing(self) -> list[dict[str, Any]]:
        return [{"name": r.name, "kind": r.kind, "user": r.user, "role": r.role.value, "created": r.created,
                 "expires": r.expires} for r in sorted(self.tokens.values(), key=lambda r: r.created)]

    def user_card(self, name: str) -> dict[str, Any]:
        user = self.plan.users[name]
        return {"user": name, "name": user.name or name, "role": user.role.value, "extension": user.extension,
                "queues": sorted(supervised_queues(self.plan, user))}
