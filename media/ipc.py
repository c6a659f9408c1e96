"""Control ⇄ media-worker frames: a 4-byte big-endian length, then a msgpack map.

Commands carry an ``id`` and get a reply with the same ``id``; events carry ``event``.
"""

from __future__ import annotations

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
