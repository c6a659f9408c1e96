"""Media workers: separate processes (or one in-process engine with ``rtp.workers: 0``) that own
a slice of the RTP port range each, driven over msgpack frames on a Unix socket.

    python -m centralino.media.worker --connect SOCKET --ip IP --ports LOW-HIGH --index N

A worker exits when the control process's socket closes, so none is ever orphaned.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import itertools
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .engine import MediaEngine
from .ipc import CoalescingWriter, FrameDecoder, encode_frame
from .protocol import Batch, Command, MediaClient

REQUEST_TIMEOUT = 10.0  # seconds a media worker has to answer a command
SWEEP_INTERVAL = 1.0  # how often unanswered commands are checked against it

log = logging.getLogger("centralino.media")

EventHandler = Callable[[dict[str, Any]], None]


# -- the worker process ------------------------------------------------------------------------------
async def worker_main(connect: str, ip: str, low: int, high: int, index: int) -> None:
    reader, stream = await asyncio.open_unix_connection(connect)
    writer = CoalescingWriter(stream)
    engine = MediaEngine(ip, low, high, emit=lambda event: writer.write(encode_frame(event)))
    _tune_gc()
    writer.write(encode_frame({"hello": index, "pid": os.getpid()}))
    decoder = FrameDecoder()
    try:
        while data := await reader.read(1 << 16):
            for cmd in decoder.feed(data):
                reply = engine.handle(cmd)
                reply["id"] = cmd.get("id")
                writer.write(encode_frame(reply))
    finally:
        engine.close()


def _tune_gc() -> None:
    """Every packet allocates tracked tuples (the address, recvfrom's pair), so at 50,000 packets/s
    the default thresholds run a young collection ~140 times a second and a full one — walking
    numpy, the codecs and every endpoint — more than once a second, holding every socket's packets
    for its duration: the late tail of the relay's latency. Start-up objects are frozen out of
    collection and the generations are collected less often; the relay path makes no cycles, so
    nothing accumulates meanwhile."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="centralino-media-worker")
    p.add_argument("--connect", required=True)
    p.add_argument("--ip", required=True)
    p.add_argument("--ports", required=True)
    p.add_argument("--index", type=int, default=0)
    args = p.parse_args(argv)
    low, high = (int(x) for x in args.ports.split("-"))
    # A SIGTERM to the whole process group (systemd, timeout) must not cut the media of calls the
    # control process is still draining: a worker ends when the control socket closes.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        runner(worker_main(args.connect, args.ip, low, high, args.index))
    except (ConnectionError, KeyboardInterrupt):
        pass
    return 0


# -- the control side ----------------------------------------------------------------------------------
WorkerHandle = MediaClient  # how the control process drives one worker (media/protocol.py)


class LocalWorker(MediaClient):
    """``rtp.workers: 0``: the engine runs in the control process's own loop."""

    def __init__(self, ip: str, low: int, high: int, on_event: EventHandler) -> None:
        self.index = 0
        self.engine = MediaEngine(ip, low, high, emit=on_event)

    async def request(self, cmd: Command | Batch) -> dict[str, Any]:
        return self.engine.handle(dict(cmd))

    async def close(self) -> None:
        self.engine.close()


class RemoteWorker(MediaClient):
    def __init__(self, index: int, proc: asyncio.subprocess.Process) -> None:
        self.index = index
        self.proc = proc
        self.writer: asyncio.StreamWriter | None = None
        self.frames: CoalescingWriter | None = None  # commands of one loop iteration in one send
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._deadlines: collections.deque[tuple[float, int]] = collections.deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self.connected = asyncio.get_running_loop().create_future()
        self.reader_task: asyncio.Task[None] | None = None

    async def request(self, cmd: Command | Batch) -> dict[str, Any]:
        if self.writer is None:
            await asyncio.wait_for(asyncio.shield(self.connected), 10)
        assert self.writer is not None
        ident = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = fut
        if self.frames is None:
            self.frames = CoalescingWriter(self.writer)
        self.frames.write(encode_frame({**cmd, "id": ident}))
        # Requests are answered in order, so their deadlines are too: one sweep a second expires
        # the late ones (a call makes ~6 requests; a timer and wait_for's extra future each
        # showed in the profile).
        self._deadlines.append((time.monotonic() + REQUEST_TIMEOUT, ident))
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP_INTERVAL, self._sweep)
        try:
            return await fut
        finally:
            self._pending.pop(ident, None)

    def _sweep(self) -> None:
        now = time.monotonic()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, ident = self._deadlines.popleft()
            fut = self._pending.get(ident)
            if fut is not None and not fut.done():
                fut.set_exception(TimeoutError(f"media worker {self.index} did not answer in {REQUEST_TIMEOUT:.0f} s"))
        while self._deadlines and self._deadlines[0][1] not in self._pending:
            self._deadlines.popleft()  # answered: nothing to expire
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP_INTERVAL, self._sweep) if self._deadlines else None

    def _on_frame(self, frame: dict[str, Any], on_event: EventHandler) -> None:
        ident = frame.get("id")
        if ident is not None and ident in self._pending:
            fut = self._pending[ident]
            if not fut.done():
                fut.set_result(frame)
        elif "event" in frame:
            frame["worker"] = self.index
            on_event(frame)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self.writer is not None:
            self.writer.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 3)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("media worker closed"))


class MediaPool:
    """The control process's view of its media workers."""

    def __init__(self, ip: str, ports: tuple[int, int], workers: int, on_event: EventHandler) -> None:
        self.ip = ip
        self.ports = ports
        self.count = workers
        self.on_event = on_event
        self.workers: list[MediaClient] = []
        self._server: asyncio.AbstractServer | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._closing = False

    def slices(self) -> list[tuple[int, int]]:
        low, high = self.ports
        n = max(1, self.count)
        size = ((high - low + 1) // n) & ~1
        return [(low + i * size, low + (i + 1) * size - 1) for i in range(n)]

    async def start(self) -> None:
        if self.count == 0:
            low, high = self.ports
            self.workers = [LocalWorker(self.ip, low, high, self.on_event)]
            return
        self._dir = tempfile.TemporaryDirectory(prefix="centralino-media-")
        path = str(Path(self._dir.name) / "ctl.sock")
        pending: dict[int, RemoteWorker] = {}

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            decoder = FrameDecoder()
            worker: RemoteWorker | None = None
            while data := await reader.read(1 << 16):
                for frame in decoder.feed(data):
                    if worker is None and "hello" in frame:
                        worker = pending.get(int(frame["hello"]))
                        if worker is not None:
                            worker.writer = writer
                            if not worker.connected.done():
                                worker.connected.set_result(None)
                    elif worker is not None:
                        worker._on_frame(frame, self.on_event)
            if worker is not None and not self._closing:
                log.warning("media worker %d disconnected", worker.index)

        self._server = await asyncio.start_unix_server(accept, path)
        for i, (low, high) in enumerate(self.slices()):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "centralino.media.worker", "--connect", path,
                "--ip", self.ip, "--ports", f"{low}-{high}", "--index", str(i),
            )
            worker = RemoteWorker(i, proc)
            pending[i] = worker
            self.workers.append(worker)
        await asyncio.wait_for(asyncio.gather(*(w.connected for w in self.workers)), 15)  # type: ignore[attr-defined]
        log.info("%d media worker(s) on %s ports %d-%d", len(self.workers), self.ip, *self.ports)

    def pick(self) -> MediaClient:
        """The least loaded worker: both endpoints of a call live in the same one."""
        return min(self.workers, key=lambda w: w.endpoints)

    async def stats(self) -> list[dict[str, Any]]:
        out = []
        for w in self.workers:
            try:
                out.append({"worker": w.index, **(await w.stats())})
            except (TimeoutError, ConnectionError):
                out.append({"worker": w.index, "ok": False})
        return out

    async def close(self) -> None:
        self._closing = True
        for w in self.workers:
            await w.close()
        if self._server is not None:
            self._server.close()
        if self._dir is not None:
            self._dir.cleanup()


if __name__ == "__main__":
    raise SystemExit(main())
