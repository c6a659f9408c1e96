"""Call recording in the worker: every tick appends one 20 ms frame per recording (caller on
the left, agent on the right, or a mono mix) to an in-memory block; blocks reach the file one
second at a time, never a write per packet. While paused (card numbers) the tick writes silence,
so the file's timeline stays the call's timeline. After the call the WAV may be re-encoded to
Opus/OGG or MP3 through av."""

from __future__ import annotations

import logging
import os
import struct
import time
from enum import Enum
from pathlib import Path

import numpy as np

from ..private_files import open_private
from .codecs import FRAME

log = logging.getLogger("centralino.media")

BLOCK_FRAMES = 50  # one second of audio per write


class Layout(Enum):
    STEREO = "stereo"  # left: the first endpoint (caller), right: the second (agent)
    MONO = "mono"  # both sides mixed
    LEFT = "left"  # the first endpoint only (a voicemail message: the caller's voice)


def _wav_header(channels: int, frames: int, rate: int = 8000) -> bytes:
    data = frames * channels * 2
    return (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16)
            + b"data" + struct.pack("<I", data))


class Recording:
    def __init__(self, ident: str, path: Path, left: str, right: str | None, layout: Layout,
                 encode: str | None = None) -> None:
        self.id = ident
        self.path = path
        self.left = left
        self.right = right
        self.layout = layout
        self.channels = 2 if layout is Layout.STEREO else 1
        self.encode = encode  # "opus" | "mp3" | None (keep the WAV)
        self.paused = False
        self.meta: dict[str, object] = {}  # echoed in record.done (the call it belongs to)
        self.paused_frames = 0
        self.frames = 0
        # stop conditions (voicemail): a length cap, and a run of quiet frames once there was sound
        self.max_frames: int | None = None
        self.silence_frames: int | None = None
        self.quiet = 0  # quiet frames in a row at the end
        self.heard_sound = False
        self.stop_reason: str | None = None
        self.started = time.time()
        self._block: list[np.ndarray] = []
        self._file = open_private(path)  # 0600: calls are personal data; our 1 s blocks are the buffer
        self._file.write(_wav_header(self.channels, 0))

    def add(self, left: np.ndarray, right: np.ndarray) -> None:
        """One tick: this recording's two sides (zeros for a side with nothing)."""
        if self.paused:
            left = right = _SILENCE
            self.paused_frames += 1
        if self.layout is Layout.STEREO:
            frame = np.empty(2 * FRAME, np.int16)
            frame[0::2] = left
            frame[1::2] = right
        elif self.layout is Layout.LEFT:
            frame = left
        else:
            frame = np.clip(left.astype(np.int32) + right, -32768, 32767).astype(np.int16)
        self._block.append(frame)
        self.frames += 1
        if self.silence_frames is not None:
            # -40 dBFS: below any voice, above G.711's idle noise and comfort noise
            loud = int(np.abs(left).max()) > 600 and float(np.sqrt(np.mean(left.astype(np.float32) ** 2))) > 330
            self.quiet = 0 if loud else self.quiet + 1
            self.heard_sound = self.heard_sound or loud
            if self.heard_sound and self.quiet >= self.silence_frames:
                self.stop_reason = "silence"
        if self.max_frames is not None and self.frames >= self.max_frames:
            self.stop_reason = "max-length"
        if len(self._block) >= BLOCK_FRAMES:
            self.flush()

    def flush(self) -> None:
        if self._block:
            self._file.write(np.concatenate(self._block).astype("<i2").tobytes())
            self._block.clear()

    def close(self) -> dict[str, object]:
        """Finish the file (header sizes) and return what the index needs. A recording that
        ended on silence loses that silence but half a second."""
        self.flush()
        if self.stop_reason == "silence":
            self.frames -= max(0, self.quiet - 25)
            self._file.truncate(44 + self.frames * FRAME * 2 * self.channels)
        self._file.seek(0)
        self._file.write(_wav_header(self.channels, self.frames * FRAME))
        self._file.close()
        return {"recording": self.id, "path": str(self.path), "seconds": round(self.frames * 0.02, 2),
                "reason": self.stop_reason or "stopped",
                "paused_seconds": round(self.paused_frames * 0.02, 2), "channels": self.channels,
                "started": self.started, "encode": self.encode}


_SILENCE = np.zeros(FRAME, np.int16)


def encode_file(wav: Path, fmt: str) -> Path:
    """Re-encode a finished WAV to Opus in OGG or MP3 (runs in a thread after the call); the
    WAV is removed when the new file is complete."""
    import av

    codec, suffix, rate = {"opus": ("libopus", ".ogg", 48000), "mp3": ("libmp3lame", ".mp3", 8000)}[fmt]
    target = wav.with_suffix(suffix)
    open_private(target).close()  # created 0600 before av writes into it
    with av.open(str(wav)) as src, av.open(str(target), "w") as dst:
        stream_in = src.streams.audio[0]
        layout = "stereo" if stream_in.channels == 2 else "mono"
        out = dst.add_stream(codec, rate=rate)
        out.layout = layout
        resampler = av.AudioResampler(format=out.format.name if out.format else "s16", layout=layout, rate=rate)
        for frame in src.decode(stream_in):
            frame.pts = None
            for r in resampler.resample(frame):
                for packet in out.encode(r):
                    dst.mux(packet)
        for packet in out.encode(None):
            dst.mux(packet)
    os.unlink(wav)
    return target
