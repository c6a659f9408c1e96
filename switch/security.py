"""Per-source protection: rate limits, failed-authentication bans, User-Agent deny list.

All checks are O(1) dictionary look-ups on the source IP, done before a datagram is parsed
(bans, rate) or right after (User-Agent). Every ban is reported as a security event.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..config.schema import SecurityConfig

log = logging.getLogger("centralino.security")


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    at: float
    source: str
    kind: str  # "ban", "auth-failure", "user-agent", "rate-limit"
    detail: str


class SecurityGuard:
    def __init__(self, config: SecurityConfig, on_event: Callable[[SecurityEvent], None] | None = None):
        self.on_event = on_event
        self.configure(config)
        self._bans: dict[str, tuple[float, str]] = {}  # ip → (until, reason)
        self._failures: dict[str, deque[float]] = {}
        self._buckets: dict[str, list[float]] = {}  # ip → [tokens, last refill]
        self.dropped_rate = 0
        self.dropped_banned = 0

    def configure(self, config: SecurityConfig) -> None:
        self.config = config
        self._deny = [ua.lower() for ua in config.user_agent_deny]
        self._trusted = [ipaddress.ip_network(n, strict=False) for n in config.trusted]
        self._trusted_cache: dict[str, bool] = {}

    def is_trusted(self, ip: str) -> bool:
        hit = self._trusted_cache.get(ip)
        if hit is None:
            try:
                addr = ipaddress.ip_address(ip)
                hit = any(addr in net for net in self._trusted)
            except ValueError:
                hit = False
            if len(self._trusted_cache) > 100_000:
                self._trusted_cache.clear()
            self._trusted_cache[ip] = hit
        return hit

    def trust(self, networks: list[str]) -> None:
        """Add networks (e.g. the trunks' allow_from) that are never limited or banned."""
        self._trusted.extend(ipaddress.ip_network(n, strict=False) for n in networks)
        self._trusted_cache.clear()

    # -- before parsing -----------------------------------------------------------------------
    def admit(self, ip: str, now: float, counted: bool = True) -> bool:
        """False: drop the packet silently (banned source, or over its rate). ``counted=False``
        for solicited traffic (answers to our requests, requests inside our dialogs), which only
        a ban stops: limiting it would make the switch drop the answers to its own calls."""
        if self._bans:
            ban = self._bans.get(ip)
            if ban is not None:
                if now < ban[0]:
                    self.dropped_banned += 1
                    return False
                del self._bans[ip]
        if not counted:
            return True
        trusted = bool(self._trusted) and self.is_trusted(ip)
        cfg = self.config
        rate = cfg.trusted_rate_limit if trusted else cfg.rate_limit
        if rate <= 0:
            return True
        burst = float(cfg.trusted_rate_burst if trusted else cfg.rate_burst)
        bucket = self._buckets.get(ip)
        if bucket is None:
            if len(self._buckets) > 50_000:
                self._prune_buckets(now)
            self._buckets[ip] = [burst - 1.0, now]
            return True
        tokens = min(burst, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            self.dropped_rate += 1
            return False
        bucket[0] = tokens - 1.0
        return True

    def _prune_buckets(self, now: float) -> None:
        rate = self.config.rate_limit or 1.0
        burst = self.config.rate_burst
        self._buckets = {
            ip: b for ip, b in self._buckets.items() if b[0] + (now - b[1]) * rate < burst
        }

    # -- after parsing --------------------------------------------------------------------------
    def user_agent_denied(self, ip: str, user_agent: str | None, now: float) -> bool:
        if not user_agent or not self._deny:
            return False
        ua = user_agent.lower()
        for bad in self._deny:
            if bad in ua:
                self.ban(ip, now, f"denied User-Agent {user_agent[:60]!r}")
                return True
        return False

    def auth_failed(self, ip: str, now: float, username: str) -> bool:
        """Count a failed authentication; True when it got the source banned."""
        self._emit(SecurityEvent(now, ip, "auth-failure", f"user {username[:40]!r}"))
        window = self.config.failure_window
        q = self._failures.setdefault(ip, deque())
        q.append(now)
        while q and now - q[0] > window:
            q.popleft()
        if len(q) >= self.config.max_auth_failures:
            del self._failures[ip]
            self.ban(ip, now, f"{self.config.max_auth_failures} failed authentications in {window:g}s")
            return True
        return False

    def auth_succeeded(self, ip: str) -> None:
        self._failures.pop(ip, None)

    def ban(self, ip: str, now: float, reason: str) -> None:
        if self.is_trusted(ip) or self.config.ban_seconds <= 0:
            self._emit(SecurityEvent(now, ip, "ban-skipped", reason))
            return
        until = now + self.config.ban_seconds
        self._bans[ip] = (until, reason)
        self._emit(SecurityEvent(now, ip, "ban", f"{reason}; banned for {self.config.ban_seconds:g}s"))

    def unban(self, ip: str) -> bool:
        return self._bans.pop(ip, None) is not None

    def is_banned(self, ip: str, now: float) -> bool:
        ban = self._bans.get(ip)
        return ban is not None and now < ban[0]

    def bans(self, now: float) -> list[dict[str, object]]:
        return [
            {"source": ip, "until": until, "remaining": round(until - now, 1), "reason": reason}
            for ip, (until, reason) in self._bans.items() if until > now
        ]

    def _emit(self, event: SecurityEvent) -> None:
        level = logging.WARNING if event.kind == "ban" else logging.INFO
        log.log(level, "security event %s from %s: %s", event.kind, event.source, event.detail,
                extra={"kv": {"event": "security", "kind": event.kind, "source": event.source}})
        if self.on_event is not None:
            self.on_event(event)
