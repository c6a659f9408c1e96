"""Prompts and music on hold: files of any format av can read, decoded once to 8 kHz mono int16
and cached; a ``Playback`` hands out one 20 ms frame per tick through a playlist, looping or not.

Prompt names resolve against the plan's prompt directories and then the packaged defaults
(``media/prompts/*.wav``, spoken by espeak-ng at build time), so ``welcome`` or
``prompts/welcome.wav`` both work. ``tone:FREQ[+FREQ2]/MS`` and ``silence/MS`` are synthetic
items (beeps for conference join/leave, pauses between prompts).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from .codecs import FRAME

PACKAGED = Path(__file__).resolve().parent / "prompts"
_SUFFIXES = ("", ".wav", ".mp3", ".ogg", ".flac", ".opus")


class PromptError(ValueError):
    pass


def tone(freqs: list[float], ms: int, level: float = 0.25, rate: int = 8000) -> np.ndarray:
    n = int(rate * ms / 1000)
    t = np.arange(n) / rate
    wave = sum(np.sin(2 * np.pi * f * t) for f in freqs) / max(1, len(freqs))
    ramp = min(n // 2, int(rate * 0.005))  # 5 ms fade: no click
    env = np.ones(n)
    if ramp:
        env[:ramp] = np.linspace(0, 1, ramp)
        env[-ramp:] = np.linspace(1, 0, ramp)
    return (wave * env * level * 32767).astype(np.int16)


def comfort_noise(rng: np.random.Generator, level_dbov: float = -65.0) -> np.ndarray:
    """Low-level white noise for a channel with nothing to play: phones treat digital silence as
    a dead line, and some VAD-less gateways close idle streams."""
    amplitude = 32767 * 10 ** (level_dbov / 20)
    return (rng.standard_normal(FRAME) * amplitude).astype(np.int16)


def decode_file(path: Path) -> np.ndarray:
    """Any audio file av can open → 8 kHz mono int16."""
    import av

    try:
        container = av.open(str(path))
    except Exception as exc:  # av raises its own error classes per FFmpeg code
        raise PromptError(f"{path}: cannot open ({exc})") from exc
    with container:
        stream = next((s for s in container.streams if s.type == "audio"), None)
        if stream is None:
            raise PromptError(f"{path}: no audio stream")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=8000)
        chunks = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(chunks).astype(np.int16) if chunks else np.zeros(0, np.int16)


class PromptCache:
    """Decoded prompts by resolved path, re-read when the file changes (mtime)."""

    def __init__(self, directories: list[Path] | None = None) -> None:
        self.directories = list(directories or [])
        self._cache: dict[str, tuple[float, np.ndarray]] = {}
        self._lock = threading.Lock()

    def resolve(self, name: str) -> Path:
        candidates = []
        base = Path(name)
        for root in [*self.directories, PACKAGED]:
            for variant in (base, Path(base.name)):
                for suffix in _SUFFIXES:
                    candidates.append((variant if variant.is_absolute() else root / variant).with_name(variant.name + suffix))
        for path in candidates:
            if path.is_file():
                return path
        raise PromptError(f"prompt {name!r} not found in {', '.join(str(d) for d in [*self.directories, PACKAGED])}")

    def load(self, name: str) -> np.ndarray:
        synthetic = synth(name)
        if synthetic is not None:
            return synthetic
        path = self.resolve(name)
        key = str(path)
        mtime = os.stat(path).st_mtime
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] == mtime:
            return hit[1]
        pcm = decode_file(path)
        with self._lock:
            self._cache[key] = (mtime, pcm)
        return pcm


def synth(name: str) -> np.ndarray | None:
    """``tone:440/200``, ``tone:350+440/1000`` or ``silence/500``; None for a file name."""
    try:
        if name.startswith("tone:"):
            spec, ms = name[5:].split("/")
            return tone([float(f) for f in spec.split("+")], int(ms))
        if name.startswith("silence/"):
            return np.zeros(int(8 * int(name.split("/")[1])), np.int16)
    except ValueError as exc:
        raise PromptError(f"bad synthetic prompt {name!r}: {exc}") from exc
    return None


class Playback:
    """A playlist being played on one channel."""

    def __init__(self, items: list[np.ndarray], *, loop: bool = False, barge_in: bool = False,
                 ident: str = "") -> None:
        self.items = [i for i in items if len(i)] or [np.zeros(FRAME, np.int16)]
        self.loop = loop
        self.barge_in = barge_in
        self.id = ident
        self.item = 0
        self.offset = 0
        self.frames = 0

    def next_frame(self) -> np.ndarray | None:
        """The next 20 ms, or None when the playlist is over."""
        out = np.zeros(FRAME, np.int16)
        filled = 0
        while filled < FRAME:
            if self.item >= len(self.items):
                if not self.loop:
                    break
                self.item = 0
            current = self.items[self.item]
            take = min(FRAME - filled, len(current) - self.offset)
            out[filled:filled + take] = current[self.offset:self.offset + take]
            filled += take
            self.offset += take
            if self.offset >= len(current):
                self.item += 1
                self.offset = 0
        if filled == 0:
            return None
        self.frames += 1
        return out

    @property
    def done(self) -> bool:
        return not self.loop and self.item >= len(self.items)


__all__ = ["Playback", "PromptCache", "PromptError", "comfort_noise", "decode_file", "synth", "tone"]
