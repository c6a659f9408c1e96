"""Control ⇄ media-worker frames: a 4-byte big-endian length, then a msgpack map.

Commands carry an ``id`` and get a reply with the same ``id``; events carry ``event``.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgpack

_LEN = struct.Struct("!I")
MAX_FRAME = 1 << 20


def encode_frame(obj: dict[str, Any]) -> bytes:
    body = msgpack.packb(obj, use_bin_type=True)
    return _LEN.pack(len(body)) + body


class FrameDecoder:
    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buf += data
        out = []
        while len(self._buf) >= 4:
            (n,) = _LEN.unpack_from(self._buf)
            if n > MAX_FRAME:
                raise ValueError(f"frame of {n} bytes exceeds the limit")
            if len(self._buf) < 4 + n:
                break
            out.append(msgpack.unpackb(bytes(self._buf[4:4 + n]), raw=False, strict_map_key=False))
            del self._buf[:4 + n]
        return out


class CoalescingWriter:
    """Frames written during one loop iteration leave in one send: under load an iteration
    carries many commands (or replies), and a system call each costs more than their work."""

    __slots__ = ("_parts", "_scheduled", "_writer")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._parts: list[bytes] = []
        self._scheduled = False

    def write(self, frame: bytes) -> None:
        self._parts.append(frame)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        data = b"".join(self._parts)
        self._parts.clear()
        if not self._writer.is_closing():
            self._writer.write(data)
