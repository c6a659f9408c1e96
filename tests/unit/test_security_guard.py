"""The security guard on simulated time: how many passwords an attacker can try, and that no
counter can be reset or turned into a weapon by someone else."""

from __future__ import annotations

from centralino.config.schema import SecurityConfig
from centralino.switch.security import SecurityGuard


def guard(**cfg) -> tuple[SecurityGuard, list]:
    events: list = []
    return SecurityGuard(SecurityConfig(**cfg), on_event=events.append), events


def guesses_before_ban(g: SecurityGuard, ip: str, user: str, every: float, start: float = 0.0,
                       good_login_every: int | None = None, insider: str = "1002",
                       spread: int = 1) -> int:
    """Wrong passwords for ``user`` (or ``spread`` users in turn) from ``ip``, one every
    ``every`` seconds (with a correct login as ``insider`` after each ``good_login_every``
    guesses), until the source is banned."""
    now = start
    for n in range(1, 10_000):
        if g.is_banned(ip, now):
            return n - 1
        g.auth_failed(ip, now, user if spread == 1 else f"{user}{n % spread}")
        if good_login_every and n % good_login_every == 0:
            g.auth_succeeded(ip, insider, now)
        now += every
    return 10_000


def test_another_users_success_does_not_reset_the_count():
    """Before: one good login (an insider's own extension) every 4 guesses reset the counter,
    and 40+ passwords were tried against 1001 without a ban."""
    g, events = guard()
    assert guesses_before_ban(g, "10.0.0.5", "1001", every=1.0, good_login_every=4) == 5
    assert any(e.kind == "ban" and e.source == "10.0.0.5" for e in events)


def test_a_success_clears_only_that_users_failures_from_that_source():
    """A phone that mistyped its own password and then got it right is not one step from a ban."""
    g, _ = guard()
    for t in range(4):
        g.auth_failed("10.0.0.6", float(t), "1001")
    g.auth_succeeded("10.0.0.6", "1001", 4.0)
    for t in range(4):
        assert not g.auth_failed("10.0.0.6", 5.0 + t, "1001")
    assert not g.is_banned("10.0.0.6", 9.0)


def test_a_slow_guesser_is_caught_by_the_long_window():
    """4 guesses a minute (spread over users, so no lockout) never fill the 60 s window; the
    hour window bans at 20."""
    g, _ = guard()
    assert guesses_before_ban(g, "10.0.0.7", "10", every=16.0, spread=50) == 20


def attacker_guesses_per_hour(g: SecurityGuard, sources: int, users: int = 1) -> int:
    """Passwords actually checked in one hour for guesses from ``sources`` addresses against
    ``users`` extensions, each address as fast as the short window lets it (4 a minute),
    coming back after every ban."""
    tried = 0
    for s in range(sources):
        ip = f"198.51.100.{s + 1}"
        now, n = 0.0, 0
        while now < 3600:
            if not g.is_banned(ip, now):
                user = f"10{n % users:02d}"
                if not g.user_locked(user, ip, now):
                    tried += 1
                g.auth_failed(ip, now, user)
                n += 1
            now += 16.0
    return tried


def test_what_an_attacker_gets_per_hour():
    """The README's figures: against one extension 10 passwords an hour, from one address or
    fifty (then it is locked to new addresses); from one address against many extensions, 20."""
    assert attacker_guesses_per_hour(guard()[0], 1) == 10
    assert attacker_guesses_per_hour(guard()[0], 50) == 10
    assert attacker_guesses_per_hour(guard()[0], 1, users=50) == 20


def test_a_locked_user_keeps_working_from_where_it_registers():
    """The lockout cannot lock the real user out: addresses it authenticated from go on."""
    g, events = guard()
    g.auth_succeeded("192.168.1.20", "1001", 0.0)  # the real phone
    for s in range(10):
        g.auth_failed(f"198.51.100.{s}", 10.0 + s, "1001")
    assert any(e.kind == "user-locked" and e.user == "1001" for e in events)
    assert g.user_locked("1001", "198.51.100.99", 100.0)  # a new address: refused unchecked
    assert not g.user_locked("1001", "192.168.1.20", 100.0)  # the phone: checked as usual
    assert not g.user_locked("1002", "198.51.100.99", 100.0)  # other users: untouched
    assert g.locks(100.0)[0]["user"] == "1001"
    assert g.unlock("1001", 101.0) and not g.user_locked("1001", "198.51.100.99", 102.0)
    assert any(e.kind == "user-unlocked" for e in events)


def test_the_lock_ends_by_itself():
    g, _ = guard(user_lock_seconds=600)
    for s in range(10):
        g.auth_failed(f"198.51.100.{s}", float(s), "1001")
    assert g.user_locked("1001", "203.0.113.1", 500.0)
    assert not g.user_locked("1001", "203.0.113.1", 700.0)


def test_unauthenticated_traffic_never_bans_an_address_with_a_live_session():
    """UDP sources are forged at will: failures 'from' a registered phone's address are
    counted and reported, not turned into a ban of that phone."""
    g, events = guard()
    g.protected = lambda ip: ip == "192.168.1.20"
    for t in range(6):
        g.auth_failed("192.168.1.20", float(t), "1003")
    assert not g.is_banned("192.168.1.20", 6.0)
    assert any(e.kind == "ban-skipped" and "live registration" in e.detail for e in events)


def test_a_scanner_user_agent_is_dropped_but_never_banned():
    g, events = guard()
    assert g.user_agent_denied("192.168.1.20", "friendly-scanner", 0.0)
    assert not g.is_banned("192.168.1.20", 1.0)
    assert g.dropped_user_agent == 1 and events[0].kind == "user-agent"
    assert not g.user_agent_denied("192.168.1.20", "Yealink SIP-T46U", 2.0)


def test_trusted_sources_have_a_high_limit_not_none():
    g, _ = guard(trusted=["203.0.113.0/24"], trusted_rate_limit=50, trusted_rate_burst=50)
    admitted = sum(g.admit("203.0.113.9", 0.0) for _ in range(200))
    assert admitted == 50
    assert g.admit("203.0.113.9", 1.0)  # refilled
    # and answers to our own requests are never counted
    assert all(g.admit("203.0.113.9", 1.0, counted=False) for _ in range(1000))
