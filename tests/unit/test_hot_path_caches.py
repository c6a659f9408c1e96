"""Caches on the per-call path give the same answers as the uncached code did, and follow a
reload."""

from __future__ import annotations

import os
import textwrap

from centralino.config.loader import parse_plan_text
from centralino.switch.sip.dialog import _RandomPool, new_branch, new_call_id, new_tag
from centralino.switch.trunks import TrunkManager

PLAN = """
trunks:
  carrier:
    host: 198.51.100.10
    allow_from: [198.51.100.0/24, "2001:db8::/32"]
  other:
    host: 203.0.113.5
    allow_from: [203.0.113.5]
"""


def _plan(text: str):
    return parse_plan_text(textwrap.dedent(text), "plan.yaml").plan


def test_trunk_of_matches_networks_and_follows_a_reload() -> None:
    holder = {"plan": _plan(PLAN)}
    trunks = TrunkManager(None, lambda: holder["plan"], None)  # type: ignore[arg-type]
    assert trunks.trunk_of("198.51.100.77") == "carrier"
    assert trunks.trunk_of("2001:db8::5") == "carrier"
    assert trunks.trunk_of("203.0.113.5") == "other"
    assert trunks.trunk_of("203.0.113.6") is None
    assert trunks.trunk_of("not an address") is None
    assert trunks.trunk_of("198.51.100.77") == "carrier"  # remembered, same answer
    holder["plan"] = _plan(PLAN.replace("198.51.100.0/24", "192.0.2.0/24"))  # a reload
    assert trunks.trunk_of("198.51.100.77") is None
    assert trunks.trunk_of("192.0.2.1") == "carrier"


def test_identifiers_are_unique_random_and_of_the_usual_length() -> None:
    tags = {new_tag() for _ in range(5000)}
    assert len(tags) == 5000 and all(len(t) == 12 for t in tags)
    branches = {new_branch() for _ in range(5000)}
    assert len(branches) == 5000 and all(b.startswith("z9hG4bK") and len(b) == 25 for b in branches)
    assert new_call_id("h.example").endswith("@h.example")


def test_the_pool_refills_and_a_forked_child_does_not_repeat_the_parent() -> None:
    pool = _RandomPool()
    first = [pool.hex(9) for _ in range(1000)]  # > 4 KiB: refilled twice
    assert len(set(first)) == 1000
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports its next identifier
        os.write(write, pool.hex(9).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    assert child != pool.hex(9)
