"""Per-source and per-user protection: rate limits, failed-authentication bans and lockouts,
a User-Agent deny list.

Checks before a datagram is parsed (bans, rate) are O(1) dictionary look-ups on the source IP.
Guessing is counted per source (a short and a long window, fail2ban style) *and* per target user;
a success only clears that user's failures from that source. A lockout stops new sources from
guessing one user while the addresses it registers from keep working, and nothing unauthenticated
can ban an address that holds a live registration or call (UDP sources can be forged). Every ban,
lockout and refusal is reported as a security event.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import deque
from collections.abc import Callable

from ..config.schema import Plan, SecurityConfig
from ..events import SecurityEvent

log = logging.getLogger("centralino.security")

KNOWN_SOURCE_SECONDS = 86_400.0  # an address that authenticated as a user stays "known" this long


class SecurityGuard:
    def __init__(self, config: SecurityConfig, on_event: Callable[[SecurityEvent], None] | None = None):
        self.on_event = on_event
        self.configure(config)
        self._bans: dict[str, tuple[float, str]] = {}  # ip → (until, reason)
        self._failures: dict[str, deque[tuple[float, str]]] = {}  # ip → (when, user) of failed attempts
        self._user_failures: dict[str, deque[float]] = {}  # user → when, from any source
        self._locks: dict[str, tuple[float, str]] = {}  # user → (until, reason)
        self._known: dict[str, dict[str, float]] = {}  # user → {ip: last successful authentication}
        # addresses a ban was due for but that hold a live session: they may still authenticate
        # as the users they did before, not guess others (ip → (until, reason))
        self._guess_blocks: dict[str, tuple[float, str]] = {}
        self._buckets: dict[str, list[float]] = {}  # ip → [tokens, last refill]
        # set by the app: whether an address holds a live registration or call (never banned for
        # unauthenticated traffic: it could be forged)
        self.protected: Callable[[str], bool] = lambda ip: False
        self.dropped_rate = 0
        self.dropped_banned = 0
        self.dropped_user_agent = 0
        self.refused_locked = 0

    def plan_changed(self, plan: Plan) -> None:
        self.configure(plan.server.security)
        self.trust([n for t in plan.trunks.values() for n in t.allow_from])

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
        """A scanner's User-Agent: its request is dropped (silence gives scanners nothing), counted
        and logged, but never a ban — one forged datagram could otherwise cut a phone off."""
        if not user_agent or not self._deny:
            return False
        ua = user_agent.lower()
        for bad in self._deny:
            if bad in ua:
                self.dropped_user_agent += 1
                if self.dropped_user_agent <= 10 or self.dropped_user_agent % 1000 == 0:
                    self._report(now, ip, "user-agent",
                                             f"dropped a request from User-Agent {user_agent[:60]!r} "
                                             f"({self.dropped_user_agent} so far)")
                return True
        return False

    def user_locked(self, user: str, ip: str, now: float) -> bool:
        """Whether attempts for ``user`` from ``ip`` are refused without looking at the password:
        the user is locked out, or ``ip`` may no longer guess (a ban was due but it holds a live
        session) — unless ``ip`` is an address ``user`` authenticated from recently."""
        seen = self._known.get(user, {}).get(ip)
        if seen is not None and now - seen < KNOWN_SOURCE_SECONDS:
            return False
        refused = False
        lock = self._locks.get(user)
        if lock is not None:
            if now >= lock[0]:
                del self._locks[user]
            else:
                refused = True
        block = self._guess_blocks.get(ip)
        if block is not None:
            if now >= block[0]:
                del self._guess_blocks[ip]
            else:
                refused = True
        if refused:
            self.refused_locked += 1
        return refused

    def auth_failed(self, ip: str, now: float, username: str) -> bool:
        """Count a failed authentication against the source and the user; True when it got the
        source banned."""
        cfg = self.config
        user = username[:64]
        self._report(now, ip, "auth-failure", f"user {user!r}", user)
        # per target user: a longer window over every source; past it, new sources are locked out
        uq = self._user_failures.setdefault(user, deque())
        uq.append(now)
        while uq and now - uq[0] > cfg.user_failure_window:
            uq.popleft()
        if len(uq) >= cfg.user_max_failures and cfg.user_lock_seconds > 0 and user not in self._locks:
            self._locks[user] = (now + cfg.user_lock_seconds,
                                 f"{len(uq)} failed authentications in {cfg.user_failure_window:g}s")
            self._report(now, ip, "user-locked",
                                     f"user {user!r} locked for {cfg.user_lock_seconds:g}s to addresses it has "
                                     f"not authenticated from ({len(uq)} failures in {cfg.user_failure_window:g}s)",
                                     user)
        if len(self._user_failures) > 100_000:
            self._user_failures = {u: q for u, q in self._user_failures.items() if q and now - q[-1] < cfg.user_failure_window}
        # per source: a short window (a burst) and a long one (a slow guesser)
        if len(self._failures) > 100_000:  # a flood from many (forged) addresses
            self._failures = {a: f for a, f in self._failures.items() if f and now - f[-1][0] < cfg.failure_window}
        q = self._failures.setdefault(ip, deque())
        q.append((now, user))
        longest = max(cfg.failure_window, cfg.long_failure_window)
        while q and now - q[0][0] > longest:
            q.popleft()
        short = sum(1 for t, _ in q if now - t <= cfg.failure_window)
        if short >= cfg.max_auth_failures:
            del self._failures[ip]
            return self.ban(ip, now, f"{short} failed authentications in {cfg.failure_window:g}s",
                            cfg.ban_seconds)
        if len(q) >= cfg.long_max_failures:
            del self._failures[ip]
            return self.ban(ip, now, f"{len(q)} failed authentications in {cfg.long_failure_window:g}s",
                            cfg.long_ban_seconds)
        return False

    def auth_succeeded(self, ip: str, user: str, now: float) -> None:
        """A good login clears that user's failures from that source only: another user's
        success (an insider's own phone) never resets the count against a victim."""
        q = self._failures.get(ip)
        if q:
            kept = deque((t, u) for t, u in q if u != user)
            if kept:
                self._failures[ip] = kept
            else:
                del self._failures[ip]
        known = self._known.setdefault(user, {})
        known[ip] = now
        if len(known) > 64:  # a user roams over a few addresses, not thousands
            for old in sorted(known, key=known.__getitem__)[: len(known) - 64]:
                del known[old]

    def ban(self, ip: str, now: float, reason: str, seconds: float | None = None) -> bool:
        seconds = self.config.ban_seconds if seconds is None else seconds
        if self.is_trusted(ip) or seconds <= 0:
            self._report(now, ip, "ban-skipped", f"{reason}; trusted source or bans off")
            return False
        if self.protected(ip):
            # the address holds a live registration or call and the failures may be forged UDP:
            # no ban, but from now on it may only authenticate as the users it already did
            self._guess_blocks[ip] = (now + seconds, reason)
            self._report(now, ip, "ban-skipped",
                                     f"{reason}; not banned: it holds a live registration or call; it may "
                                     f"authenticate only as its own users for {seconds:g}s")
            return False
        self._bans[ip] = (now + seconds, reason)
        self._report(now, ip, "ban", f"{reason}; banned for {seconds:g}s")
        return True

    def unlock(self, user: str, now: float) -> bool:
        self._user_failures.pop(user, None)
        if self._locks.pop(user, None) is None:
            return False
        self._report(now, "-", "user-unlocked", f"user {user!r} unlocked by the admin", user)
        return True

    def locks(self, now: float) -> list[dict[str, object]]:
        return [{"user": u, "until": until, "remaining": round(until - now, 1), "reason": reason}
                for u, (until, reason) in self._locks.items() if until > now]

    def unban(self, ip: str, now: float = 0.0) -> bool:
        if self._bans.pop(ip, None) is None and self._guess_blocks.pop(ip, None) is None:
            return False
        self._failures.pop(ip, None)
        self._report(now, ip, "unban", "unbanned by the admin")
        return True

    def is_banned(self, ip: str, now: float) -> bool:
        ban = self._bans.get(ip)
        return ban is not None and now < ban[0]

    def bans(self, now: float) -> list[dict[str, object]]:
        """Banned addresses, and (``scope: own-users``) addresses only barred from guessing."""
        out: list[dict[str, object]] = [
            {"source": ip, "until": until, "remaining": round(until - now, 1), "reason": reason, "scope": "all"}
            for ip, (until, reason) in self._bans.items() if until > now
        ]
        out += [{"source": ip, "until": until, "remaining": round(until - now, 1), "reason": reason,
                 "scope": "own-users"} for ip, (until, reason) in self._guess_blocks.items() if until > now]
        return out

    def _report(self, now: float, ip: str, kind: str, detail: str, user: str = "") -> None:
        self._emit(SecurityEvent(ip, kind, detail, user, at=now))

    def _emit(self, event: SecurityEvent) -> None:
        level = logging.WARNING if event.kind in ("ban", "user-locked") else logging.INFO
        log.log(level, "security event %s from %s: %s", event.kind, event.source, event.detail,
                extra={"kv": {"event": "security", "kind": event.kind, "source": event.source}})
        if self.on_event is not None:
            self.on_event(event)
