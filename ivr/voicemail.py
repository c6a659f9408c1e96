"""Voicemail: the ``voicemail`` action (greeting, tone, the caller's message recorded until the
box's length cap, a run of silence, # or a hang-up) and ``*97`` to listen (PIN, then each
message newest first: 7 deletes, 5 repeats, any other key or the end goes on). Messages are WAV
files under ``<recordings>/voicemail/<box>/`` indexed in SQLite's ``voicemail`` table; every
change lights or clears the message-waiting lamps of the box's ``notify`` extensions (MWI).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from ..config.schema import Action, Mailbox, Plan, mailbox_for
from ..events import EventBus, VoicemailLeft
from ..storage.database import Database
from ..switch.b2bua.call import Call, CallState
from ..switch.b2bua.control import CallControl
from .engine import CallPort, number_prompts, read_digits

log = logging.getLogger("centralino.voicemail")

MIN_SECONDS = 1.0  # shorter messages are hang-ups after the tone, not messages
BEEP = "tone:1000/400"
PIN_TRIES = 3


class MessageWaiting(Protocol):
    """Who lights the lamps (switch/mwi.py): told which extensions' counts changed."""

    async def changed(self, extensions: list[str]) -> None: ...


class VoicemailService:
    def __init__(self, control: CallControl, plan_of: Callable[[], Plan], db: Database, mwi: MessageWaiting,
                 bus: EventBus) -> None:
        self.control, self.plan_of, self.db, self.mwi, self.bus = control, plan_of, db, mwi, bus
        control.register_application("voicemail", self.leave_message)
        self.install_features()

    def plan_changed(self, plan: Plan) -> None:
        self.install_features()

    def install_features(self) -> None:
        self.control.unregister_feature(self._listen_code)
        code = self.plan_of().server.features.voicemail
        if code:
            self.control.register_feature(code, self._listen_code)

    # -- leaving a message -----------------------------------------------------------------------------
    async def leave_message(self, call: Call, action: Action) -> None:
        name = str(action.voicemail)
        box = mailbox_for(self.plan_of(), name)
        if box is None:
            await self.control.refuse(call, 404, f"no mailbox {name}")
            return
        await self.control.answer_locally(call, destination=f"voicemail:{name}")
        if call.state is not CallState.ANSWERED:
            return
        await self.control.play(call, [box.greeting or "leave-message", BEEP])
        if call.state is not CallState.ANSWERED:
            return
        when = datetime.now()
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", call.id)[:60]
        path = Path(self.plan_of().server.recordings) / "voicemail" / name / f"{when:%Y%m%d-%H%M%S}-{safe}.wav"
        result = await self.control.record_message(call, path, max_seconds=box.max_seconds,
                                                 silence_seconds=box.silence_seconds)
        seconds = float(result.get("seconds", 0.0))
        if seconds < MIN_SECONDS:
            log.info("call %s: no message for %s (%.1fs)", call.id, name, seconds)
            if result.get("path"):
                Path(str(result["path"])).unlink(missing_ok=True)
        else:
            await self.db.write([("INSERT INTO voicemail (mailbox, caller, call_id, at, seconds, path)"
                                  " VALUES (?, ?, ?, ?, ?, ?)",
                                  (name, call.caller, call.id, when.timestamp(), seconds, str(result["path"])))])
            log.info("call %s: %.1fs message for %s from %s (%s)", call.id, seconds, name, call.caller,
                     result.get("reason"))
            self.bus.publish(VoicemailLeft(call.id, mailbox=name, caller=call.caller, seconds=seconds,
                                           path=str(result["path"])))
            self.control.spawn(self.mwi.changed(box.notify))
        if call.state is CallState.ANSWERED:
            await self.control.play(call, ["goodbye"])
            await self.control.hangup(call, by="switch")

    # -- the mailbox owner ---------------------------------------------------------------------------
    async def _listen_code(self, call: Call, rest: str) -> None:
        name = rest or call.caller
        box = mailbox_for(self.plan_of(), name)
        if box is None:
            await self.control.refuse(call, 404, f"no mailbox {name}")
            return
        if box.pin is None and name != call.caller:
            await self.control.refuse(call, 403, f"mailbox {name} has no PIN: only its own phone opens it")
            return
        await self.control.answer_locally(call, destination=f"voicemail-box:{name}")
        port = CallPort(self.control, call)
        if box.pin is not None and not await self._pin_ok(port, box):
            log.info("call %s: wrong PIN for mailbox %s from %s", call.id, name, call.caller)
            await self.control.play(call, ["goodbye"])
            await self.control.hangup(call, by="switch")
            return
        messages = await self.messages(name)
        fresh = [m for m in messages if not m["heard"]]
        await port.play(["you-have", *number_prompts(len(fresh)), "new-messages"] if fresh else ["no-messages"],
                        barge_in=True)
        changed = False
        for message in [*fresh, *[m for m in messages if m["heard"]]]:
            key = "5"
            while key == "5" and not port.gone():
                await port.play([message["path"]], barge_in=True)
                key = await port.digit(3.0) or ""
            if port.gone():
                break
            if key == "7":
                await self.delete(name, message["id"], notify=False)
                changed = True
            elif not message["heard"]:
                await self.db.write([("UPDATE voicemail SET heard = 1 WHERE id = ?", (message["id"],))])
                changed = True
        if changed:
            self.control.spawn(self.mwi.changed(box.notify))
        if call.state is CallState.ANSWERED:
            await self.control.play(call, ["goodbye"])
            await self.control.hangup(call, by="switch")

    async def _pin_ok(self, port: CallPort, box: Mailbox) -> bool:
        for _ in range(PIN_TRIES):
            await port.play(["enter-pin"], barge_in=True)
            if port.gone():
                return False
            if await read_digits(port, 12, "#", 5.0) == box.pin:
                return True
            await port.play(["invalid"], barge_in=True)
        return False

    # -- the store (also the API's) ----------------------------------------------------------------------
    async def messages(self, name: str) -> list[dict[str, Any]]:
        rows = await self.db.fetchall("SELECT id, mailbox, caller, call_id, at, seconds, path, heard FROM voicemail"
                                      " WHERE mailbox = ? ORDER BY at DESC", (name,))
        return [dict(r) for r in rows]

    async def delete(self, name: str, ident: int, *, notify: bool = True) -> bool:
        row = await self.db.fetchone("SELECT path FROM voicemail WHERE id = ? AND mailbox = ?", (ident, name))
        if row is None:
            return False
        await self.db.write([("DELETE FROM voicemail WHERE id = ?", (ident,))])
        try:
            os.unlink(row["path"])
        except FileNotFoundError:
            pass
        box = mailbox_for(self.plan_of(), name)
        if notify and box is not None:
            self.control.spawn(self.mwi.changed(box.notify))
        return True

    async def mark_heard(self, name: str, ident: int) -> bool:
        row = await self.db.fetchone("SELECT id FROM voicemail WHERE id = ? AND mailbox = ?", (ident, name))
        if row is None:
            return False
        await self.db.write([("UPDATE voicemail SET heard = 1 WHERE id = ?", (ident,))])
        box = mailbox_for(self.plan_of(), name)
        if box is not None:
            self.control.spawn(self.mwi.changed(box.notify))
        return True

    async def counts_for(self, extension: str) -> tuple[int, int]:
        """(new, old) over every box that lights ``extension``'s lamp: its own and shared ones."""
        plan = self.plan_of()
        boxes = [n for n, b in plan.mailboxes.items() if extension in b.notify]
        if extension in plan.extensions and extension not in plan.mailboxes:
            boxes.append(extension)
        if not boxes:
            return 0, 0
        marks = ",".join("?" * len(boxes))
        row = await self.db.fetchone(
            f"SELECT COALESCE(SUM(heard = 0), 0) AS new, COALESCE(SUM(heard = 1), 0) AS old FROM voicemail"
            f" WHERE mailbox IN ({marks})", boxes)
        return (int(row["new"]), int(row["old"])) if row is not None else (0, 0)
