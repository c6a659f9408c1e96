"""The seam applications drive calls through: ``CallControl``.

The IVR, the ACD, supervision, voicemail — and next the dialer and the operations API — are
typed against this protocol and touch nothing else of the B2BUA. What happens to calls they
learn from the event bus (``centralino.events``), never from the B2BUA's dicts. The B2BUA
(``engine.B2BUA``) implements it; ``tests/unit/test_boundaries.py`` keeps the seam in place.

Calls and legs are ``call.Call`` and ``call.Fork`` objects: applications read their fields
(caller, called, state, vars, destination …) and hand them back to these methods.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from ...config.schema import Action
from .call import Call, Fork

Application = Callable[[Call, Action], Awaitable[None]]  # runs a plan verb (ivr, queue, voicemail…)
Feature = Callable[[Call, str], Awaitable[None]]  # a feature code dialled from an extension; gets the rest
MonitorMode = Literal["listen", "whisper", "barge"]
RINGBACK = ["tone:425/1000", "silence/4000"]  # what a caller hears while the switch rings someone (ETSI)
Detection = Literal["amd", "beep", "dtmf"]


class CallControl(Protocol):
    # -- plugging in ------------------------------------------------------------------------------
    def register_application(self, verb: str, app: Application) -> None:
        """Calls whose plan action is ``verb`` (``{queue: sales}``) are handed to ``app``."""

    def register_feature(self, code: str, handler: Feature) -> None:
        """Extensions dialling ``code`` (and digits after it) reach ``handler``."""

    def unregister_feature(self, handler: Feature) -> None:
        """Every code that reaches ``handler`` (before a reload installs the new ones)."""

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run background work in the switch's task group (a failure is logged, never fatal)."""

    # -- finding calls ----------------------------------------------------------------------------
    def find(self, call_id: str) -> Call | None:
        """A live call by its id."""

    def live_calls(self) -> list[Call]:
        """Every call the switch holds now (a copy: the caller may keep it)."""

    def live_call_of(self, extension: str) -> tuple[Call, str] | None:
        """The bridged call ``extension`` talks on, and its side of it ("a" caller, "b" callee)."""

    def is_registered(self, extension: str) -> bool:
        """Whether ``extension`` has a live registration (can be rung)."""

    # -- answering and media ---------------------------------------------------------------------
    async def answer_locally(self, call: Call, *, beside: Call | None = None, destination: str = "") -> None:
        """Answer with the switch as the far end (prompts, keys, recording). ``beside``: on the
        media worker of that call (supervision mixes the two)."""

    async def play(self, call: Call, names: list[str], *, barge_in: bool = False, loop: bool = False,
                   side: str = "a", wait: bool = True) -> dict[str, Any]:
        """Play prompts to a side; returns the ``play.done`` event (reason finished, barge-in…)."""

    async def stop_playing(self, call: Call, side: str = "a") -> None: ...

    async def next_digit(self, call: Call, timeout: float) -> str | None:
        """The caller's next key, or None after ``timeout`` or a hang-up."""

    def resolve_prompts(self, names: list[str]) -> list[str]:
        """Prompt names to files (PromptError when one is missing)."""

    async def detect(self, call: Call, what: Detection, params: dict[str, Any] | None = None, *,
                     side: str = "a", timeout: float = 30.0) -> dict[str, Any] | None:
        """Run a detector on a side and wait for its result: AMD (HUMAN/MACHINE/NOTSURE with its
        cause), a beep (frequency, when), or in-band DTMF switched on (returns at once). None on
        timeout or hang-up. The result is also on the bus (AmdResult, BeepDetected)."""

    async def start_recording(self, call: Call, *, agent: str = "") -> str | None: ...

    async def pause_recording(self, call: Call, paused: bool | None = None) -> dict[str, Any]: ...

    async def record_message(self, call: Call, path: Path, *, max_seconds: float, silence_seconds: float,
                             stop_key: str = "#") -> dict[str, Any]:
        """The caller's voice alone (a voicemail message), until length, silence, key or hang-up."""

    async def set_muted(self, room: str, call_id: str, muted: bool) -> bool: ...

    async def conference(self, call: Call, action: Action) -> None: ...

    async def monitor(self, call: Call, supervisor: Call, mode: MonitorMode, agent_side: str,
                      supervisor_side: str = "a") -> None:
        """``supervisor`` (answered ``beside`` the call, or originated beside it: then its phone is
        side "b") listens to, whispers to (the agent's side ``agent_side`` only) or barges into
        ``call``."""

    # -- connecting ---------------------------------------------------------------------------------
    async def ring(self, call: Call, extensions: Sequence[str], timeout: float, *, side: str = "b") -> Fork | int:
        """Ring every contact of the extensions; the answered leg (bridge it) or a final status."""

    async def ring_out(self, call: Call, number: str, timeout: float, *, trunks: list[str],
                       side: str = "b") -> Fork | int:
        """Ring an extension or a number through the first usable trunk (failover)."""

    async def bridge(self, call: Call, fork: Fork) -> bool:
        """Connect the caller to the leg ``ring`` returned."""

    async def originate(self, *, caller: str, source: str, did: str, destination: str,
                        presented: str | None = None, beside: Call | None = None) -> Call:
        """A call with no incoming leg (callbacks, the dialer): answered by the switch from the
        start. ``caller`` is the customer it is for (what agents' phones show); ``presented``,
        if given, is the number its trunk legs show the customer instead; ``beside``: its media
        on that call's worker (a supervisor rung to join it)."""

    async def hold_first_leg(self, call: Call, fork: Fork) -> None:
        """A call the switch placed: its first leg answered and waits (ringback) for the partner."""

    async def ring_partner(self, call: Call, number: str, timeout: float, *, trunk: str | None = None,
                           trunks: list[str] | None = None, ringback: bool = True) -> Fork | int:
        """A call the switch placed: dial its caller side (the callback's customer, the dialer's
        callee) through ``trunks``; it can then be bridged to an agent like any caller."""

    async def transfer(self, call: Call, target: str) -> int:
        """Blind-transfer the caller from its connected leg to what the plan routes ``target``
        to: 202 ringing (``call.transferred`` when answered), 409 not connected, 480 nobody there."""

    async def execute(self, call: Call, action: Action) -> None:
        """Run a plan action on a call (an application hands it on)."""

    async def hangup(self, call: Call, *, by: str, cause: int = 16) -> None: ...

    async def refuse(self, call: Call, status: int, why: str) -> None:
        """Turn a call down with a final status (or hang up an answered one)."""
