"""In-band DTMF detection for phones that send the tones in the audio: one DFT at the eight DTMF
frequencies for every channel of a 20 ms tick in a single matrix product (Goertzel's bins,
vectorised across channels), then per-channel debouncing with array operations."""

from __future__ import annotations

import numpy as np

LOW = (697.0, 770.0, 852.0, 941.0)
HIGH = (1209.0, 1336.0, 1477.0, 1633.0)
KEYS = ("123A", "456B", "789C", "*0#D")
DIGITS = np.array([KEYS[r][c] for r in range(4) for c in range(4)])


class InbandDetector:
    """Feed (channels, samples) int16 frames each tick; get (channel, digit) once per key press.

    A key counts when both groups have a clear peak holding most of the frame's energy, the
    twist (high/low power) stays within -8..+4 dB, and the same key lasts ``min_blocks`` ticks.
    The same key again needs ``min_gap`` ticks without it in between (the inter-digit pause of
    ITU-T Q.24): a frame lost in the middle of a tone must not make it two presses.
    """

    def __init__(self, channels: int, *, rate: int = 8000, block: int = 160, min_blocks: int = 2,
                 min_gap: int = 2, min_level: float = 100.0) -> None:
        n = np.arange(block)
        freqs = np.array(LOW + HIGH)
        window = np.hanning(block)
        self._basis = (np.exp(-2j * np.pi * np.outer(n, freqs) / rate) * window[:, None]).astype(np.complex64)
        # scaled so that a pure tone's bin power equals the tone's energy in the block
        self._norm = float(window.sum() ** 2 / (2 * block))
        self.block = block
        self.min_blocks = min_blocks
        self.min_gap = min_gap
        self.min_level = min_level  # RMS below this (in 16-bit units) is silence
        self._prev = np.full(channels, -1, dtype=np.int8)
        self._count = np.zeros(channels, dtype=np.int16)
        self._reported = np.full(channels, -1, dtype=np.int8)  # last key reported, until a pause
        self._quiet = np.zeros(channels, dtype=np.int16)  # ticks without any key

    def add_channel(self) -> None:
        """One more channel, last; the others keep their state (a key half-way through its
        40 ms must not be lost because another call started)."""
        self._prev = np.append(self._prev, np.int8(-1))
        self._count = np.append(self._count, np.int16(0))
        self._reported = np.append(self._reported, np.int8(-1))
        self._quiet = np.append(self._quiet, np.int16(0))

    def remove_channel(self, index: int) -> None:
        """Drop one channel; those after it move down by one, keeping their state."""
        self._prev = np.delete(self._prev, index)
        self._count = np.delete(self._count, index)
        self._reported = np.delete(self._reported, index)
        self._quiet = np.delete(self._quiet, index)

    def candidates(self, frames: np.ndarray) -> np.ndarray:
        """The key index (0..15) each channel's frame holds, or -1."""
        x = frames.astype(np.float32)
        energy = (x * x).sum(axis=1)
        loud = np.nonzero(np.sqrt(energy / self.block) > self.min_level)[0]
        out = np.full(len(x), -1, dtype=np.int8)
        if len(loud):  # silent channels (most of them, most of the time) skip the DFT
            out[loud] = self._keys(x[loud], energy[loud])
        return out

    def _keys(self, x: np.ndarray, energy: np.ndarray) -> np.ndarray:
        """``candidates`` for channels loud enough to hold a key."""
        power = np.abs(x @ self._basis) ** 2 / self._norm  # (channels, 8)
        low, high = power[:, :4], power[:, 4:]
        li, hi = low.argmax(axis=1), high.argmax(axis=1)
        rows = np.arange(len(x))
        pl, ph = low[rows, li], high[rows, hi]
        low_rest = np.sort(low, axis=1)[:, -2]
        high_rest = np.sort(high, axis=1)[:, -2]
        twist = 10 * np.log10(np.maximum(ph, 1e-9) / np.maximum(pl, 1e-9))
        ok = (
            ((pl + ph) > 0.5 * energy)  # the two tones are most of the signal
            & (pl > 8 * low_rest) & (ph > 8 * high_rest)  # one clear peak per group
            & (twist > -8) & (twist < 4)
        )
        return np.where(ok, li * 4 + hi, -1).astype(np.int8)

    def feed(self, frames: np.ndarray) -> list[tuple[int, str]]:
        cand = self.candidates(frames)
        same = (cand == self._prev) & (cand >= 0)
        self._count = np.where(same, self._count + 1, np.where(cand >= 0, 1, 0)).astype(np.int16)
        self._prev = cand
        self._quiet = np.where(cand < 0, self._quiet + 1, 0).astype(np.int16)
        self._reported = np.where(self._quiet >= self.min_gap, -1, self._reported).astype(np.int8)
        new = (self._count == self.min_blocks) & (cand != self._reported)
        self._reported = np.where(new, cand, self._reported).astype(np.int8)
        hits = np.nonzero(new)[0]
        return [(int(ch), str(DIGITS[cand[ch]])) for ch in hits]
