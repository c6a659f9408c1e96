"""``users:`` of the plan: who may log in to the API and the web pages, with which role.

A user is an ``admin`` (everything), a ``supervisor`` (its queues: their figures, their agents'
states, listening in on their calls) or an ``agent`` (itself: its state, its calls, its
dispositions). Passwords are kept as scrypt hashes (``centralino user hash`` makes one); a user
with neither ``password`` nor ``password_hash`` gets one generated at the first start, printed
once, and only its hash is kept.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import Field, field_validator, model_validator

from .base import Strict

if TYPE_CHECKING:
    from .schema import Plan

USER_NAME = re.compile(r"^[A-Za-z0-9_.\-@]{1,64}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class Role(StrEnum):
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    AGENT = "agent"


class User(Strict):
    role: Role
    name: str | None = None  # shown on the pages
    password: str | None = None  # plain text: fine for a lab, use password_hash elsewhere
    password_hash: str | None = None  # scrypt$N$r$p$salt$hash, from `centralino user hash`
    extension: str | None = None  # the agent's own extension; the supervisor's phone (listen-in)
    # a supervisor's queues; empty: those whose `supervisors` name its extension
    queues: list[str] = Field(default_factory=list)

    @field_validator("password_hash")
    @classmethod
    def _hash_form(cls, value: str | None) -> str | None:
        if value is not None and parse_hash(value) is None:
            raise ValueError("expected scrypt$N$r$p$salt$hash (make one with `centralino user hash`)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> User:
        if self.password is not None and self.password_hash is not None:
            raise ValueError("give password or password_hash, not both")
        if self.role is Role.AGENT and not self.extension:
            raise ValueError("an agent user needs its extension")
        if self.role is not Role.SUPERVISOR and self.queues:
            raise ValueError("queues: only a supervisor has them (an agent's are its queue memberships)")
        return self


def user_errors(plan: Plan) -> list[tuple[tuple, str]]:
    """References from ``users:`` to the rest of the plan, as (key path, message)."""
    errors: list[tuple[tuple, str]] = []
    for name, user in plan.users.items():
        if not USER_NAME.match(name):
            errors.append((("users", name), f"user name {name!r} is not 1-64 letters, digits or _.-@"))
        if user.extension is not None and user.extension not in plan.extensions:
            errors.append((("users", name, "extension"), f"unknown extension {user.extension!r}"))
        if user.role is Role.AGENT and user.extension is not None and user.extension not in plan.agents:
            errors.append((("users", name, "extension"), f"{user.extension!r} is not in agents:"))
        for i, queue in enumerate(user.queues):
            if queue not in plan.queues:
                errors.append((("users", name, "queues", i), f"unknown queue {queue!r}"))
    return errors


def supervised_queues(plan: Plan, user: User) -> frozenset[str]:
    """The queues a user may watch and act on (every queue for an admin)."""
    if user.role is Role.ADMIN:
        return frozenset(plan.queues)
    if user.role is Role.SUPERVISOR:
        if user.queues:
            return frozenset(user.queues)
        return frozenset(n for n, q in plan.queues.items() if user.extension and user.extension in q.supervisors)
    return frozenset(n for n, q in plan.queues.items() if user.extension in q.members)


# -- password hashes --------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT, dklen=32)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${_b64(salt)}${_b64(digest)}"


def parse_hash(text: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = text.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        return None
    if n < 2 or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16 or n > 2**20 or len(digest) < 16:
        return None
    return n, r, p, salt, digest


def verify_password(password: str, hashed: str) -> bool:
    parsed = parse_hash(hashed)
    if parsed is None:
        return False
    n, r, p, salt, digest = parsed
    got = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(digest),
                         maxmem=256 * n * r + (1 << 20))
    return hmac.compare_digest(got, digest)
