"""Integer-ratio resampling of a continuous stream in 20 ms pieces (8 kHz ⇄ 16/48 kHz):
a windowed-sinc low-pass FIR applied as a polyphase filter, its history carried across calls so
frame edges leave no clicks."""

from __future__ import annotations

import numpy as np


def _lowpass(cutoff: float, taps: int) -> np.ndarray:
    n = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(2 * cutoff * n) * np.kaiser(taps, 8.0)
    return h / h.sum()


class Resampler:
    def __init__(self, rate_in: int, rate_out: int, taps_per_phase: int = 16) -> None:
        if rate_in % rate_out and rate_out % rate_in:
            raise ValueError("only integer ratios")
        self.up = max(1, rate_out // rate_in)
        self.down = max(1, rate_in // rate_out)
        ratio = max(self.up, self.down)
        self.taps = taps_per_phase * ratio
        # cut at 0.45 of the narrower Nyquist band, in units of the (up-sampled) rate
        self.h = _lowpass(0.45 / ratio, self.taps) * self.up
        self.history = np.zeros(self.taps - 1, np.float64)
        self.phase = 0

    def process(self, pcm: np.ndarray) -> np.ndarray:
        x = pcm.astype(np.float64)
        if self.up > 1:
            stuffed = np.zeros(len(x) * self.up)
            stuffed[:: self.up] = x
            x = stuffed
        joined = np.concatenate([self.history, x])
        y = np.convolve(joined, self.h, mode="valid")
        self.history = joined[-(self.taps - 1):]
        if self.down > 1:
            start = (-self.phase) % self.down
            y = y[start:: self.down]
            self.phase = (self.phase + len(x)) % self.down
        return np.clip(np.rint(y), -32768, 32767).astype(np.int16)
