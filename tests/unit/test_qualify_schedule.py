"""The qualify schedule: a heap of due times, no socket, a given clock — contacts are pinged
when due and once per interval, new ones found by the interval's pass, gone or expired ones
dropped."""

from __future__ import annotations

from centralino.switch.location import Binding
from centralino.switch.qualify import Qualifier
from centralino.switch.transport.base import Flow


class _Location:
    def __init__(self) -> None:
        self.bindings: dict[tuple[str, str], Binding] = {}

    def add(self, aor: str, n: int, expires_at: float = 1e12) -> None:
        uri = f"sip:{aor}@10.0.0.{n}:5060"
        self.bindings[(aor, uri)] = Binding(aor, uri, f"<{uri}>", expires_at, 1.0, f"c{n}", 1,
                                            Flow("udp", (f"10.0.0.{n}", 5060), ("10.0.0.254", 5060)))

    def all(self) -> list[Binding]:
        return list(self.bindings.values())

    def binding(self, aor: str, uri: str) -> Binding | None:
        return self.bindings.get((aor, uri))


def _due(q: Qualifier, now: float) -> list[str]:
    return sorted(b.aor for b in q._take_due(now))


def test_contacts_are_pinged_once_per_interval_and_the_set_follows_the_location() -> None:
    loc = _Location()
    for i in range(3):
        loc.add(f"10{i}", i)
    q = Qualifier(None, loc, 30.0)  # type: ignore[arg-type]
    q._discover(0.0)
    assert _due(q, 0.0) == ["100", "101", "102"]  # new contacts: due at once
    assert _due(q, 29.9) == []  # nothing until the interval has passed
    loc.add("103", 3)
    del loc.bindings[("101", "sip:101@10.0.0.1:5060")]
    q._discover(30.0)  # the interval's pass: 103 found, 101 forgotten
    assert _due(q, 30.0) == ["100", "102", "103"]
    assert ("101", "sip:101@10.0.0.1:5060") not in q._due
    loc.add("104", 4, expires_at=40.0)
    q._discover(35.0)
    assert _due(q, 35.0) == ["104"]
    assert _due(q, 60.0) == ["100", "102", "103"]
    assert _due(q, 65.0) == []  # 104 expired at 40: dropped when next due, not pinged
    assert set(q._due) == {("100", "sip:100@10.0.0.0:5060"), ("102", "sip:102@10.0.0.2:5060"),
                           ("103", "sip:103@10.0.0.3:5060")}
