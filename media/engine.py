"""The media engine of a worker: commands in, replies and events out; and the 20 ms tick.

Bridged endpoints with the same codec relay packets untouched (relay.py, the hot path). Anything
the switch itself must hear or say goes through the tick, which works on all channels at once:

1. gather: one frame per listened endpoint from its jitter buffer, decoded into one
   ``(channels, 160)`` int16 array (G.711 rows by table lookup in one operation);
2. detect: in-band DTMF, AMD magnitudes and beep tones on their rows, vectorised;
3. mix: every room's N−1 mix (conferences, supervision) from the same array (mixer.py);
4. generate: per endpoint whose output the switch makes — mix, the bridged partner's audio
   (transcoding), a prompt, DTMF — one frame, encoded (G.711 for all such rows at once) and sent;
5. record: each recording appends its two sides (recorder.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np

from .amd import AmdParams, AnsweringMachineDetector, BeepDetector, dominant_tones, magnitudes
from .codecs import FRAME, codec_named, make_decoder, make_encoder, timestamp_step
from .codecs.g711 import ALAW_TO_PCM, PCM_TO_ALAW, PCM_TO_ULAW, ULAW_TO_PCM
from .dtmf import EVENTS, TelephoneEvent
from .dtmf_inband import InbandDetector
from .jitter import FrameKind, JitterBuffer
from .mixer import Member, MixPlan, Room
from .player import Playback, PromptCache, PromptError, comfort_noise, tone
from .recorder import Layout, Recording
from .relay import Endpoint, EventSink

TICK = 0.02
log = logging.getLogger("centralino.media")

_DTMF_FREQS = {d: f for d, f in zip("123A456B789C*0#D", [(r, c) for r in (697, 770, 852, 941) for c in (1209, 1336, 1477, 1633)], strict=True)}
_ZERO = np.zeros(FRAME, np.int16)


class MediaEngine:
    """Everything one worker does."""

    def __init__(self, bind_ip: str, port_low: int, port_high: int, emit: EventSink | None = None) -> None:
        self.bind_ip = bind_ip
        self.port_low = port_low + (port_low % 2)
        self.port_high = port_high
        self.endpoints: dict[str, Endpoint] = {}
        self._ids = itertools.count(1)
        self._next_port = self.port_low
        self.emit: EventSink = emit or (lambda e: None)
        self.prompts = PromptCache()
        self.rooms: dict[str, Room] = {}
        self.recordings: dict[str, Recording] = {}
        self._listening: list[Endpoint] = []
        self._generating: set[Endpoint] = set()
        self._inband: list[Endpoint] = []  # detector channel i listens to _inband[i]
        self._inband_set: set[Endpoint] = set()
        self._detector = InbandDetector(0)
        self._plan: MixPlan | None = None
        self._tick: asyncio.TimerHandle | None = None
        self._rng = np.random.default_rng()
        self.tick_seconds = 0.0  # time spent in ticks (stats)
        self.ticks = 0
        self.totals = {"created": 0, "dropped_source": 0, "rx": 0, "tx": 0, "lost": 0}

    # == commands ===================================================================================
    def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Run one command and return its reply. Every command completes at once, with no
        awaits: a command that waited would hold up the ones behind it, and on a worker busy
        relaying each wait is a long loop iteration (``pair.create`` took seconds that way)."""
        op = str(cmd.get("cmd"))
        handler = getattr(self, "cmd_" + op.replace(".", "_"), None)
        if handler is None:
            return {"ok": False, "error": f"unknown command {op!r}"}
        try:
            return {"ok": True, **(handler(cmd) or {})}
        except KeyError as exc:
            return {"ok": False, "error": f"unknown {exc.args[0]!r}"}
        except (OSError, ValueError) as exc:
            return {"ok": False, "error": str(exc)}

    def cmd_endpoint_create(self, cmd: dict[str, Any]) -> dict[str, Any]:
        ep = self._create(str(cmd.get("call", "")))
        return {"endpoint": ep.id, "ip": ep.ip, "port": ep.port}

    def cmd_pair_create(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """A call's two endpoints, bridged: one round trip instead of three per call."""
        call = str(cmd.get("call", ""))
        a = self._create(call)
        try:
            b = self._create(call)
        except OSError:
            self._retire(self.endpoints.pop(a.id))
            raise
        self.cmd_bridge({"a": a.id, "b": b.id})
        first = cmd.get("first")
        if first is not None:
            try:
                self.cmd_endpoint_update({**first, "endpoint": a.id})
            except (KeyError, OSError, ValueError):  # a bad first update leaves no endpoints behind
                for ep in (a, b):
                    self._retire(self.endpoints.pop(ep.id))
                raise
        return {side: {"endpoint": ep.id, "ip": ep.ip, "port": ep.port} for side, ep in (("a", a), ("b", b))}

    def cmd_batch(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Several commands in one frame, in order (each with its own reply)."""
        return {"results": [self.handle(c) for c in cmd["commands"]]}

    def cmd_endpoint_update(self, cmd: dict[str, Any]) -> dict[str, Any]:
        ep = self.endpoints[cmd["endpoint"]]
        reply: dict[str, Any] = {}
        if cmd.get("ip") and cmd.get("port"):
            # the far end moved (a re-INVITE, a transfer): learn the new party, never the old
            previous = ep.repoint((cmd["ip"], int(cmd["port"])),
                                  (cmd["ip"], int(cmd.get("rtcp_port") or int(cmd["port"]) + 1)),
                                  cmd.get("latch_ip"))
            if previous is not None:
                self.totals["rx"] += previous["rx"]
                self.totals["lost"] += previous["lost"]
                self.totals["dropped_source"] += previous["dropped_source"]
                reply["previous"] = previous
        if cmd.get("dtmf_pts"):  # every telephone-event payload type of the SDP → its clock rate
            ep.dtmf_pts = {int(pt): int(rate) for pt, rate in dict(cmd["dtmf_pts"]).items()}
        if cmd.get("dtmf_pt") is not None:
            ep.dtmf_pt = int(cmd["dtmf_pt"])
            ep.dtmf_pts.setdefault(ep.dtmf_pt, 8000)
        if "inband_dtmf" in cmd:  # a side without telephone-events sends its keys as tones
            ep.inband = bool(cmd["inband_dtmf"])
            self._need(ep, "dtmf", ep.inband)
        if cmd.get("codecs"):  # {payload type: encoding name} of this side's SDP
            ep.decodable = {int(pt): str(name).upper() if str(name).lower() != "opus" else "opus"
                            for pt, name in dict(cmd["codecs"]).items() if codec_named(str(name))}
        if cmd.get("codec"):
            name = str(cmd["codec"])
            info = codec_named(name)
            if info is None:
                raise ValueError(f"unsupported codec {name}")
            ep.codec = info.name
            ep.negotiated = True
            ep.pt = int(cmd.get("pt", info.static_pt if info.static_pt is not None else 96))
            ep.decodable.setdefault(ep.pt, ep.codec)
            ep.encoder = None
        ep.clocks = {pt: (info.clock if (info := codec_named(name)) else 8000) for pt, name in ep.decodable.items()}
        ep.clocks.update(ep.dtmf_pts)
        self._rewire(ep)
        return reply

    def cmd_bridge(self, cmd: dict[str, Any]) -> None:
        a, b = self.endpoints[cmd["a"]], self.endpoints[cmd["b"]]
        for ep in (a, b):
            if ep.bridged is not None and ep.bridged not in (a, b):
                self._unbridge(ep)
        a.bridged, b.bridged = b, a
        a.terminated = b.terminated = False
        self._rewire(a)

    def cmd_unbridge(self, cmd: dict[str, Any]) -> None:
        ep = self.endpoints[cmd["endpoint"]]
        self._unbridge(ep)
        ep.terminated = bool(cmd.get("terminate", True))
        self._rewire(ep)

    def cmd_timeout(self, cmd: dict[str, Any]) -> None:
        for ident in cmd["endpoints"]:
            self.endpoints[ident].arm_timeout(float(cmd["seconds"]))

    def cmd_detect(self, cmd: dict[str, Any]) -> None:
        ep = self.endpoints[cmd["endpoint"]]
        if "inband_dtmf" in cmd or not ("amd" in cmd or "beep" in cmd):
            ep.inband = bool(cmd.get("inband_dtmf", True))
            self._need(ep, "dtmf", ep.inband)
        if "amd" in cmd:
            ep.amd = AnsweringMachineDetector(AmdParams.from_config(cmd["amd"])) if cmd["amd"] is not False else None
        if "beep" in cmd:
            ep.beep = BeepDetector() if cmd["beep"] else None
        self._need(ep, "amd", ep.amd is not None or ep.beep is not None)

    def cmd_play(self, cmd: dict[str, Any]) -> dict[str, Any]:
        ep = self.endpoints[cmd["endpoint"]]
        items = cmd.get("items") or [cmd["file"]]
        try:
            pcm = [self.prompts.load(str(item)) for item in items]
        except PromptError as exc:
            raise ValueError(str(exc)) from exc
        if ep.playback is not None:
            self._play_done(ep, "replaced")
        ident = str(cmd.get("playback") or f"play-{next(self._ids)}")
        ep.playback = Playback(pcm, loop=bool(cmd.get("loop")), barge_in=bool(cmd.get("barge_in")), ident=ident)
        self._generate(ep)
        return {"playback": ident, "ms": int(sum(len(p) for p in pcm) / 8)}

    def cmd_stop(self, cmd: dict[str, Any]) -> dict[str, Any]:
        ep = self.endpoints[cmd["endpoint"]]
        if ep.playback is None:
            return {"stopped": False}
        self._play_done(ep, "stopped")
        return {"stopped": True}

    def cmd_dtmf_send(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Digits to a side: RFC 4733 events when its SDP has telephone-event, tones otherwise."""
        ep = self.endpoints[cmd["endpoint"]]
        frames = max(2, int(cmd.get("duration_ms", 100)) // 20)
        digits = [d for d in str(cmd["digits"]).upper() if d in EVENTS]
        if ep.dtmf_pt is not None:
            ep.dtmf_out.extend((EVENTS.index(d), frames) for d in digits)
            self._generate(ep)
            return {"method": "rfc4733", "digits": "".join(digits)}
        tones = []
        for d in digits:
            tones += [tone(list(_DTMF_FREQS[d]), frames * 20, level=0.2), np.zeros(8 * 60, np.int16)]
        if ep.playback is not None:
            self._play_done(ep, "replaced")
        ep.playback = Playback(tones, ident=f"dtmf-{next(self._ids)}")
        self._generate(ep)
        return {"method": "inband", "digits": "".join(digits)}

    def cmd_record_start(self, cmd: dict[str, Any]) -> dict[str, Any]:
        left = self.endpoints[cmd["a"]]
        right = self.endpoints[cmd["b"]] if cmd.get("b") else None
        ident = str(cmd.get("recording") or f"rec-{next(self._ids)}")
        if ident in self.recordings:
            raise ValueError(f"recording {ident} exists")
        rec = Recording(ident, Path(cmd["path"]), left.id, right.id if right else None,
                        Layout(cmd.get("layout", "stereo")), cmd.get("encode"))
        rec.meta = dict(cmd.get("meta") or {})
        if cmd.get("max_seconds"):
            rec.max_frames = int(float(cmd["max_seconds"]) * 50)
        if cmd.get("silence_seconds"):
            rec.silence_frames = int(float(cmd["silence_seconds"]) * 50)
        self.recordings[ident] = rec
        for ep in (left, right):
            if ep is not None:
                self._need(ep, "record", True)
        self._ensure_tick()
        return {"recording": ident, "path": str(rec.path)}

    def cmd_record_update(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """The right channel becomes ``b`` (a queue call: IVR and music first, then the agent)."""
        rec = self.recordings[cmd["recording"]]
        right = self.endpoints[cmd["b"]]
        rec.right = right.id
        rec.meta.update(cmd.get("meta") or {})
        self._need(right, "record", True)
        return {"recording": rec.id}

    def cmd_record_pause(self, cmd: dict[str, Any]) -> dict[str, Any]:
        rec = self.recordings[cmd["recording"]]
        rec.paused = bool(cmd.get("paused", True))
        return {"paused": rec.paused, "at": round(rec.frames * 0.02, 2)}

    def cmd_record_stop(self, cmd: dict[str, Any]) -> dict[str, Any]:
        return self._finish_recording(self.recordings[cmd["recording"]])

    def cmd_mix_join(self, cmd: dict[str, Any]) -> None:
        ep = self.endpoints[cmd["endpoint"]]
        room = self.rooms.setdefault(str(cmd["room"]), Room(str(cmd["room"])))
        room.members[ep.id] = Member(-1, talks=bool(cmd.get("talks", True)), hears=bool(cmd.get("hears", True)))
        ep.in_rooms.add(room.name)
        self._need(ep, "mix", True)
        self._generate(ep)
        self._plan = None

    def cmd_mix_update(self, cmd: dict[str, Any]) -> None:
        room = self.rooms[str(cmd["room"])]
        member = room.members[cmd["endpoint"]]
        if "talks" in cmd:
            member.talks = bool(cmd["talks"])
        if "hears" in cmd:
            member.hears = bool(cmd["hears"])
        if "corrections" in cmd:
            room.corrections = [(str(a), str(b), int(g)) for a, b, g in cmd["corrections"]]
        self._plan = None

    def cmd_mix_leave(self, cmd: dict[str, Any]) -> None:
        ep = self.endpoints.get(cmd["endpoint"])
        room = self.rooms.get(str(cmd["room"]))
        if room is None or ep is None:
            return
        self._leave(room, ep)

    def cmd_monitor(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Supervision of a live call: ``supervisor`` listens to, whispers to or barges into the
        call between ``caller`` and ``agent``. The pair moves from relay to the mixer."""
        mode = str(cmd.get("mode", "listen"))
        if mode not in ("listen", "whisper", "barge"):
            raise ValueError(f"unknown monitor mode {mode}")
        sup, caller, agent = (self.endpoints[cmd[k]] for k in ("supervisor", "caller", "agent"))
        name = f"monitor:{sup.id}"
        room = self.rooms.get(name)
        if room is None:
            for ep, talks in ((caller, True), (agent, True), (sup, mode != "listen")):
                self.cmd_mix_join({"room": name, "endpoint": ep.id, "talks": talks})
            room = self.rooms[name]
        room.members[sup.id].talks = mode != "listen"
        room.corrections = [(caller.id, sup.id, -1)] if mode == "whisper" else []
        self._plan = None
        return {"room": name, "mode": mode}

    def cmd_endpoint_stats(self, cmd: dict[str, Any]) -> dict[str, Any]:
        return self.endpoints[cmd["endpoint"]].snapshot()

    def cmd_endpoint_destroy(self, cmd: dict[str, Any]) -> dict[str, Any]:
        ep = self.endpoints.pop(cmd["endpoint"], None)
        if ep is None:
            raise ValueError("no such endpoint")
        snap = ep.snapshot()
        self._retire(ep)
        return snap

    def cmd_stats(self, cmd: dict[str, Any]) -> dict[str, Any]:
        live = list(self.endpoints.values())
        return {"endpoints": len(live),
                "rx": self.totals["rx"] + sum(e.rx for e in live),
                "tx": self.totals["tx"] + sum(e.tx for e in live),
                "lost": self.totals["lost"] + sum(e.stats.lost for e in live),
                "dropped_source": self.totals["dropped_source"] + sum(e.dropped_source for e in live),
                "created": self.totals["created"], "listening": len(self._listening),
                "generating": len(self._generating), "rooms": len(self.rooms),
                "recordings": len(self.recordings), "ticks": self.ticks,
                "tick_ms_avg": round(1000 * self.tick_seconds / self.ticks, 3) if self.ticks else 0.0}

    def cmd_ping(self, cmd: dict[str, Any]) -> None:
        return None

    # == wiring =====================================================================================
    def _need(self, ep: Endpoint, reason: str, on: bool) -> None:
        """Listen to (decode) an endpoint while any reason wants it."""
        if on:
            ep.listen_for.add(reason)
        else:
            ep.listen_for.discard(reason)
        if ep.listen_for and ep.jitter is None:
            ep.jitter = JitterBuffer()
            self._listening.append(ep)
            self._plan = None
        elif not ep.listen_for and ep.jitter is not None:
            ep.jitter = None
            self._listening.remove(ep)
            self._plan = None
        detecting = ep.inband and ep.jitter is not None
        if detecting != (ep in self._inband_set):
            # channels follow membership one by one, so every other call keeps its detector state
            if detecting:
                self._inband.append(ep)
                self._inband_set.add(ep)
                self._detector.add_channel()
            else:
                self._detector.remove_channel(self._inband.index(ep))
                self._inband.remove(ep)
                self._inband_set.discard(ep)
        self._ensure_tick()

    def _generate(self, ep: Endpoint) -> None:
        self._generating.add(ep)
        self._rewire(ep)
        self._ensure_tick()

    def _rewire(self, ep: Endpoint) -> None:
        """Decide, for ``ep`` and its partner, who gets packets relayed and who is transcoded."""
        partner = ep.bridged
        for side, other in ((ep, partner), (partner, ep)):
            if side is None:
                continue
            # does ``side`` receive straight packets from ``other``? Only when nothing else feeds it
            generated = bool(side.playback or side.in_rooms or side.dtmf_out)
            # no transcoding towards or from a side whose codec is not known yet (a callee ringing)
            transcode = other is not None and other.negotiated and side.negotiated and other.codec != side.codec
            if other is not None:
                other.peer = side if not generated and not transcode else None
                self._need(other, "transcode", transcode and not generated)
            if generated or transcode or (other is None and side.terminated):
                self._generating.add(side)
            else:
                self._generating.discard(side)
        self._ensure_tick()

    def _unbridge(self, ep: Endpoint) -> None:
        partner = ep.bridged
        ep.bridged = None
        ep.peer = None
        if partner is not None:
            partner.bridged = None
            partner.peer = None
            self._need(partner, "transcode", False)
            self._rewire(partner)
        self._need(ep, "transcode", False)

    def _leave(self, room: Room, ep: Endpoint) -> None:
        room.members.pop(ep.id, None)
        room.corrections = [c for c in room.corrections if ep.id not in c[:2]]
        ep.in_rooms.discard(room.name)
        if not room.members:
            del self.rooms[room.name]
        if not ep.in_rooms:
            self._need(ep, "mix", False)
            self._rewire(ep)
        if room.name.startswith("monitor:") and ep.id == room.name[8:]:
            # the supervisor left: the call goes back to a plain relay
            for other in list(room.members):
                self._leave(room, self.endpoints[other])
        self._plan = None

    def digit(self, ep: Endpoint, digit: str, duration_ms: int, method: str) -> None:
        self.emit({"event": "dtmf", "endpoint": ep.id, "call": ep.call, "digit": digit,
                   "duration_ms": duration_ms, "method": method})
        if ep.playback is not None and ep.playback.barge_in:
            self._play_done(ep, "barge-in", digit=digit)

    def _play_done(self, ep: Endpoint, reason: str, digit: str | None = None) -> None:
        pb, ep.playback = ep.playback, None
        if pb is None:
            return
        event = {"event": "play.done", "endpoint": ep.id, "call": ep.call, "playback": pb.id,
                 "reason": reason, "played_ms": pb.frames * 20}
        if digit is not None:
            event["digit"] = digit
        self.emit(event)
        self._rewire(ep)

    # == the tick ===================================================================================
    def _ensure_tick(self) -> None:
        if self._tick is None and (self._listening or self._generating or self.recordings):
            loop = asyncio.get_running_loop()
            self._tick = loop.call_at(loop.time() + TICK, self._on_tick, loop.time() + TICK)

    def _on_tick(self, due: float) -> None:
        loop = asyncio.get_running_loop()
        if not (self._listening or self._generating or self.recordings):
            self._tick = None
            return
        started = time.perf_counter()
        try:
            self.step(time.monotonic())
        except Exception:  # one bad frame must never stop every call's media
            log.exception("media tick failed")
        self.tick_seconds += time.perf_counter() - started
        self.ticks += 1
        nxt = due + TICK  # a steady cadence, not drifting with the callback's own delay
        if nxt < loop.time() - 5 * TICK:
            nxt = loop.time() + TICK  # fell far behind (a stall): skip, do not burst
        self._tick = loop.call_at(max(nxt, loop.time()), self._on_tick, nxt)

    def step(self, now: float) -> None:
        listening = self._listening
        pcm = self._gather(listening, now)
        row = {ep.id: i for i, ep in enumerate(listening)}
        self._detect(pcm, row)
        out: dict[str, np.ndarray] = {}
        if self.rooms:
            if self._plan is None:
                for room in self.rooms.values():
                    for ident, m in room.members.items():
                        m.row = row.get(ident, -1)
                self._plan = MixPlan([Room(r.name, {k: m for k, m in r.members.items() if m.row >= 0}, r.corrections)
                                      for r in self.rooms.values()])
            mixed = self._plan.mix(pcm) if len(pcm) else np.zeros((0, FRAME), np.int16)
            out.update(zip(self._plan.out_ids, mixed, strict=True))
        self._produce(out, pcm, row)
        for rec in list(self.recordings.values()):
            left = pcm[row[rec.left]] if rec.left in row else _ZERO
            if rec.right is not None:
                right = pcm[row[rec.right]] if rec.right in row else _ZERO
            else:  # one side recorded: the other channel is what that side heard
                heard = self.endpoints.get(rec.left)
                right = heard.last_out if heard is not None and heard.last_out is not None else _ZERO
            rec.add(left, right)
            if rec.stop_reason is not None:
                self._finish_recording(rec)

    def _gather(self, listening: list[Endpoint], now: float) -> np.ndarray:
        """One decoded frame per listened endpoint; G.711 rows decoded in one lookup."""
        n = len(listening)
        pcm = np.zeros((n, FRAME), np.int16)
        g711_rows, g711_bytes, g711_alaw = [], [], []
        for i, ep in enumerate(listening):
            frame = ep.jitter.get(now) if ep.jitter is not None else None
            if frame is None or frame.kind is FrameKind.EMPTY:
                continue
            if frame.kind is FrameKind.LOST:
                dec = ep.decoders.get(ep.codec)
                if dec is not None:
                    pcm[i] = dec.conceal()
                continue
            payload = frame.payload or b""
            name = ep.decodable.get(payload[0], "")
            if name in ("PCMU", "PCMA") and len(payload) == FRAME + 1:
                g711_rows.append(i)
                g711_bytes.append(payload[1:])
                g711_alaw.append(name == "PCMA")
                continue
            dec = ep.decoders.get(name)
            if dec is None:
                try:
                    dec = ep.decoders[name] = make_decoder(name)
                except ValueError:
                    continue
            pcm[i] = dec.decode(payload[1:])[:FRAME]
        if g711_rows:
            raw = np.frombuffer(b"".join(g711_bytes), np.uint8).reshape(len(g711_rows), FRAME)
            alaw = np.array(g711_alaw)[:, None]
            pcm[g711_rows] = np.where(alaw, ALAW_TO_PCM[raw], ULAW_TO_PCM[raw])
        return pcm

    def _detect(self, pcm: np.ndarray, row: dict[str, int]) -> None:
        if self._inband:
            sub = pcm[[row[ep.id] for ep in self._inband]]
            for channel, digit in self._detector.feed(sub):
                self.digit(self._inband[channel], digit, 0, "inband")
        analysed = [ep for ep in self._listening if ep.amd is not None or ep.beep is not None]
        if not analysed:
            return
        rows = pcm[[row[ep.id] for ep in analysed]]
        mags = magnitudes(rows)
        freqs, purity = dominant_tones(rows) if any(ep.beep for ep in analysed) else (None, None)
        for i, ep in enumerate(analysed):
            if ep.amd is not None:
                decision = ep.amd.feed(float(mags[i]))
                if decision is not None:
                    self.emit({"event": "amd", "endpoint": ep.id, "call": ep.call, "result": decision.result.value,
                               "cause": decision.cause, "ms": decision.elapsed_ms})
                    ep.amd = None
            if ep.beep is not None and freqs is not None:
                hit = ep.beep.feed(float(freqs[i]), float(purity[i]), float(mags[i]))
                if hit is not None:
                    self.emit({"event": "beep", "endpoint": ep.id, "call": ep.call, "hz": hit[0],
                               "tone_ms": hit[1], "at_ms": hit[2]})
                    ep.beep = None
            if ep.amd is None and ep.beep is None:
                self._need(ep, "amd", False)

    def _produce(self, out: dict[str, np.ndarray], pcm: np.ndarray, row: dict[str, int]) -> None:
        """Frames for every endpoint whose audio the switch makes, encoded and sent."""
        frames: list[tuple[Endpoint, np.ndarray]] = []
        for ep in list(self._generating):
            if ep.dtmf_out:
                self._send_event(ep)
                continue
            frame = out.get(ep.id)
            partner = ep.bridged
            if frame is None and partner is not None and not ep.in_rooms and partner.id in row:
                frame = pcm[row[partner.id]]  # transcoding: the partner's decoded audio
            if ep.playback is not None:
                played = ep.playback.next_frame()
                if played is None:
                    self._play_done(ep, "finished")
                elif frame is None:
                    frame = played
                else:
                    frame = np.clip(frame.astype(np.int32) + played, -32768, 32767).astype(np.int16)
            if frame is None:
                if not ep.terminated and partner is None and not ep.in_rooms:
                    continue
                frame = comfort_noise(self._rng)
            ep.last_out = frame
            frames.append((ep, frame))
        self._encode_send(frames)

    def _encode_send(self, frames: list[tuple[Endpoint, np.ndarray]]) -> None:
        g711 = [(ep, f) for ep, f in frames if ep.codec in ("PCMU", "PCMA")]
        if g711:
            stack = np.stack([f for _, f in g711]).astype(np.int32) + 32768
            alaw = np.array([ep.codec == "PCMA" for ep, _ in g711])[:, None]
            coded = np.where(alaw, PCM_TO_ALAW[stack], PCM_TO_ULAW[stack])
            for (ep, _), payload in zip(g711, coded, strict=True):
                ep.send_payload(ep.pt, payload.tobytes(), FRAME)
        for ep, frame in frames:
            if ep.codec in ("PCMU", "PCMA"):
                continue
            if ep.encoder is None:
                ep.encoder = make_encoder(ep.codec)
            payload = ep.encoder.encode(frame)
            if payload:
                ep.send_payload(ep.pt, payload, timestamp_step(ep.codec))

    def _send_event(self, ep: Endpoint) -> None:
        """One 20 ms step of the RFC 4733 digit at the head of ``ep.dtmf_out``."""
        event, left = ep.dtmf_out[0]
        assert ep.dtmf_pt is not None
        state = ep.dtmf_sending
        if state is None or state[0] is not ep.dtmf_out[0]:
            state = ep.dtmf_sending = [ep.dtmf_out[0], ep.out_ts, 0]
        _, start_ts, sent = state
        step = ep.dtmf_pts.get(ep.dtmf_pt, 8000) // 50  # 20 ms at the event's clock (960 beside Opus)
        if sent < left:
            sent += 1
            te = TelephoneEvent(event, False, 10, step * sent)
            ep.send_payload(ep.dtmf_pt, te.serialize(), step, marker=sent == 1, advance=False, timestamp=start_ts)
        elif sent < left + 3:  # the end packet, three times (RFC 4733 §2.5.1.4)
            sent += 1
            te = TelephoneEvent(event, True, 10, step * left)
            ep.send_payload(ep.dtmf_pt, te.serialize(), step, advance=False, timestamp=start_ts)
        elif sent < left + 6:  # 60 ms between digits
            sent += 1
        else:
            ep.dtmf_out.pop(0)
            ep.out_ts = (start_ts + step * (left + 6)) & 0xFFFFFFFF
            ep.dtmf_sending = None
            if not ep.dtmf_out:
                self.emit({"event": "dtmf.sent", "endpoint": ep.id, "call": ep.call})
                self._rewire(ep)
            return
        state[2] = sent

    # == lifecycle ==================================================================================
    def _finish_recording(self, rec: Recording) -> dict[str, Any]:
        self.recordings.pop(rec.id, None)
        info = {**rec.meta, **rec.close()}
        for ident in (rec.left, rec.right):
            ep = self.endpoints.get(ident) if ident else None
            if ep is not None and not any(ident in (r.left, r.right) for r in self.recordings.values()):
                self._need(ep, "record", False)
        if rec.encode:
            loop = asyncio.get_running_loop()
            fut = loop.run_in_executor(None, _encode_after, rec.path, rec.encode)
            fut.add_done_callback(lambda f: self.emit({"event": "record.encoded", "recording": rec.id,
                                                       "path": f.result() if not f.exception() else str(rec.path)}))
        self.emit({"event": "record.done", **info})
        return info

    def _retire(self, ep: Endpoint) -> None:
        for rec in [r for r in self.recordings.values() if ep.id in (r.left, r.right)]:
            self._finish_recording(rec)
        for name in list(ep.in_rooms):
            if name in self.rooms:
                self._leave(self.rooms[name], ep)
        if ep.playback is not None:
            self._play_done(ep, "hangup")
        if ep.bridged is not None:
            self._unbridge(ep)
        ep.listen_for.clear()
        self._need(ep, "none", False)
        self._generating.discard(ep)
        for key, value in (("rx", ep.rx), ("tx", ep.tx), ("lost", ep.stats.lost), ("dropped_source", ep.dropped_source)):
            self.totals[key] += value
        if ep.peer is not None and ep.peer.peer is ep:
            ep.peer.peer = None
        ep.close()

    def _create(self, call: str) -> Endpoint:
        rtp_sock, rtcp_sock, port = self._bind_pair()
        ep = Endpoint.open(self, f"{port}-{next(self._ids)}", self.bind_ip, port, call, rtp_sock, rtcp_sock)
        self.endpoints[ep.id] = ep
        self.totals["created"] += 1
        return ep

    def _bind_pair(self) -> tuple[socket.socket, socket.socket, int]:
        """The next free even/odd port pair of the worker's range, bound (RTP, RTCP)."""
        family = socket.AF_INET6 if ":" in self.bind_ip else socket.AF_INET
        for _ in range(max(1, (self.port_high - self.port_low) // 2)):
            port = self._next_port
            self._next_port += 2
            if self._next_port + 1 > self.port_high:
                self._next_port = self.port_low
            socks = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(2)]
            try:
                for offset, sock in enumerate(socks):
                    sock.setblocking(False)
                    sock.bind((self.bind_ip, port + offset))
            except OSError:
                for sock in socks:
                    sock.close()
                continue
            return socks[0], socks[1], port
        raise OSError("no free RTP port in the worker's range")

    def close(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        for rec in list(self.recordings.values()):
            self.recordings.pop(rec.id, None)
            rec.close()
        for ep in list(self.endpoints.values()):
            ep.close()
        self.endpoints.clear()


def _encode_after(path: Path, fmt: str) -> str:
    from .recorder import encode_file

    return str(encode_file(path, fmt))
