"""Answering-machine detection in the style of Asterisk's app_amd, with its parameters and
defaults, fed one 20 ms frame's average magnitude at a time (the worker computes the
magnitudes of all analysed channels in one array operation); plus a beep detector for leaving
a message after a machine's tone. Pure: no clock but the frames themselves.

The decision logic follows app_amd: a word is ``minimum_word_length`` of voice after silence;
``between_words_silence`` of silence ends a word; too long an initial silence, a greeting longer
than ``greeting``, a word longer than ``maximum_word_length`` or too many words mean MACHINE;
``after_greeting_silence`` of silence after a short greeting means HUMAN; running out of
``total_analysis_time`` means NOTSURE.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

FRAME_MS = 20


class AmdResult(Enum):
    HUMAN = "HUMAN"
    MACHINE = "MACHINE"
    NOTSURE = "NOTSURE"
    HANGUP = "HANGUP"


@dataclass(frozen=True)
class AmdParams:
    initial_silence: int = 2500
    greeting: int = 1500
    after_greeting_silence: int = 800
    total_analysis_time: int = 5000
    minimum_word_length: int = 100
    between_words_silence: int = 50
    maximum_number_of_words: int = 2
    silence_threshold: int = 256
    maximum_word_length: int = 5000

    @classmethod
    def from_config(cls, values: dict[str, int] | None) -> AmdParams:
        return cls(**{k: int(v) for k, v in (values or {}).items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class AmdDecision:
    result: AmdResult
    cause: str  # app_amd's AMDCAUSE, e.g. "INITIALSILENCE-2500-2500", "HUMAN-300-800"
    elapsed_ms: int


class AnsweringMachineDetector:
    def __init__(self, params: AmdParams | None = None) -> None:
        self.p = params or AmdParams()
        self.total = 0
        self.silence = 0  # current run of silence, ms
        self.voice = 0  # total voice, ms
        self.consecutive_voice = 0
        self.words = 0
        self.in_word = True  # as app_amd: voice from the first frame is not yet a counted word
        self.in_initial_silence = True
        self.in_greeting = False
        self.decision: AmdDecision | None = None

    def feed(self, magnitude: float) -> AmdDecision | None:
        """One frame's average absolute sample value; a decision once, then None."""
        if self.decision is not None:
            return None
        p = self.p
        self.total += FRAME_MS
        if self.total >= p.total_analysis_time:
            return self._decide(AmdResult.NOTSURE, f"TOOLONG-{self.total}")
        if magnitude < p.silence_threshold:
            self.silence += FRAME_MS
            if self.silence >= p.between_words_silence:
                self.in_word = False  # a gap shorter than this is inside a word
                self.consecutive_voice = 0
            if self.in_initial_silence and self.silence >= p.initial_silence:
                return self._decide(AmdResult.MACHINE, f"INITIALSILENCE-{self.silence}-{p.initial_silence}")
            if self.in_greeting and self.silence >= p.after_greeting_silence:
                return self._decide(AmdResult.HUMAN, f"HUMAN-{self.voice}-{self.silence}")
            return None
        self.silence = 0
        self.consecutive_voice += FRAME_MS
        self.voice += FRAME_MS
        if self.consecutive_voice >= p.minimum_word_length and not self.in_word:
            self.words += 1
            self.in_word = True
        if self.consecutive_voice >= p.minimum_word_length:
            self.in_initial_silence = False
            self.in_greeting = True
        if self.consecutive_voice >= p.maximum_word_length:
            return self._decide(AmdResult.MACHINE, f"MAXWORDLENGTH-{self.consecutive_voice}")
        if self.words >= p.maximum_number_of_words:
            return self._decide(AmdResult.MACHINE, f"MAXWORDS-{self.words}-{p.maximum_number_of_words}")
        if self.in_greeting and self.voice >= p.greeting:
            return self._decide(AmdResult.MACHINE, f"LONGGREETING-{self.voice}-{p.greeting}")
        return None

    def hangup(self) -> AmdDecision:
        return self.decision or self._decide(AmdResult.HANGUP, f"HANGUP-{self.total}")

    def _decide(self, result: AmdResult, cause: str) -> AmdDecision:
        self.decision = AmdDecision(result, cause, self.total)
        return self.decision


def magnitudes(pcm: np.ndarray) -> np.ndarray:
    """Average absolute value per row of a (channels, samples) array."""
    return np.abs(pcm.astype(np.int32)).mean(axis=1)


# -- beep: a sustained pure tone between 400 and 2000 Hz -------------------------------------------
_NFFT = 512
_FREQS = np.fft.rfftfreq(_NFFT, 1 / 8000)
_BAND = (_FREQS >= 400) & (_FREQS <= 2000)


def dominant_tones(pcm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the strongest frequency in 400–2000 Hz and how much of the frame's energy lies
    within ±2 bins of it (1.0 is a pure tone)."""
    x = pcm.astype(np.float64) * np.hanning(pcm.shape[1])
    power = np.abs(np.fft.rfft(x, _NFFT, axis=1)) ** 2
    total = power.sum(axis=1) + 1e-9
    banded = np.where(_BAND, power, 0.0)
    peak = banded.argmax(axis=1)
    idx = np.clip(peak[:, None] + np.arange(-2, 3), 0, power.shape[1] - 1)
    near = np.take_along_axis(power, idx, axis=1).sum(axis=1)
    return _FREQS[peak], near / total


class BeepDetector:
    """Reports a tone once it has held steady for ``min_ms`` and then ended (the message starts
    after the beep, not during it) — or after ``max_ms`` of tone."""

    def __init__(self, min_ms: int = 120, max_ms: int = 2500, purity: float = 0.8,
                 min_magnitude: float = 200.0) -> None:
        self.min_ms = min_ms
        self.max_ms = max_ms
        self.purity = purity
        self.min_magnitude = min_magnitude
        self.freq = 0.0
        self.run = 0
        self.elapsed = 0
        self.detected: tuple[float, int, int] | None = None  # (Hz, tone ms, at ms)

    def feed(self, freq: float, purity: float, magnitude: float) -> tuple[float, int, int] | None:
        if self.detected is not None:
            return None
        self.elapsed += FRAME_MS
        tonal = purity >= self.purity and magnitude >= self.min_magnitude
        if tonal and (self.run == 0 or abs(freq - self.freq) <= 40):
            self.freq = freq if self.run == 0 else self.freq
            self.run += FRAME_MS
            if self.run >= self.max_ms:
                self.detected = (round(self.freq), self.run, self.elapsed)
            return self.detected
        if self.run >= self.min_ms:
            self.detected = (round(self.freq), self.run, self.elapsed)
            return self.detected
        self.run = FRAME_MS if tonal else 0
        self.freq = freq if tonal else 0.0
        return None
