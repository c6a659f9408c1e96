"""In-band DTMF: tones generated with sox are detected, on one channel among several, once per
key press; silence, noise, a 1 kHz tone and speech-like noise give nothing."""

from __future__ import annotations

import subprocess
import wave

import numpy as np
from centralino.media.dtmf_inband import HIGH, KEYS, LOW, InbandDetector
from helpers import need_tool


def sox_key(tmp_path, key: str, ms: int) -> np.ndarray:
    r = next(i for i, row in enumerate(KEYS) if key in row)
    c = KEYS[r].index(key)
    out = tmp_path / f"k{ord(key)}.wav"
    subprocess.run([need_tool("sox"), "-n", "-r", "8000", "-b", "16", "-c", "1", str(out), "synth", f"{ms / 1000}",
                    "sine", str(LOW[r]), "sine", str(HIGH[c]), "remix", "-", "vol", "0.4"], check=True)
    with wave.open(str(out)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def frames_of(signal: np.ndarray, block: int = 160) -> np.ndarray:
    pad = (-len(signal)) % block
    return np.concatenate([signal, np.zeros(pad, dtype=np.int16)]).reshape(-1, block)


def test_sox_tones_are_detected_once_each_among_other_channels(tmp_path):
    rng = np.random.default_rng(1)
    silence = np.zeros(800, dtype=np.int16)
    seq = "1593*#0D"
    signal = np.concatenate([np.concatenate([sox_key(tmp_path, k, 100), silence]) for k in seq])
    noise = rng.normal(0, 3000, len(signal)).astype(np.int16)
    t = np.arange(len(signal)) / 8000
    tone = (8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    chans = np.stack([frames_of(signal), frames_of(np.zeros_like(signal)), frames_of(noise), frames_of(tone)], axis=1)
    det = InbandDetector(4)
    got = [hit for tick in chans for hit in det.feed(tick)]
    assert [d for ch, d in got if ch == 0] == list(seq)
    assert all(ch == 0 for ch, _ in got), f"false detections: {[g for g in got if g[0] != 0]}"


def test_a_key_held_long_is_one_press_and_a_gap_makes_two(tmp_path):
    det = InbandDetector(1)
    five = sox_key(tmp_path, "5", 600)
    twice = np.concatenate([five, np.zeros(480, dtype=np.int16), five])
    hits = [h for f in frames_of(twice) for h in det.feed(f[None, :])]
    assert [d for _, d in hits] == ["5", "5"]


def test_a_frame_lost_inside_a_tone_is_not_a_second_press(tmp_path):
    det = InbandDetector(1)
    frames = frames_of(sox_key(tmp_path, "7", 200))
    frames[5] = 0  # one 20 ms frame missing (an underrun) in the middle of the key
    hits = [h for f in frames for h in det.feed(f[None, :])]
    assert [d for _, d in hits] == ["7"]


def test_other_calls_coming_and_going_do_not_reset_a_key_in_progress(tmp_path):
    """On a busy switch channels are added and removed every tick; a key on a channel that stays
    must still be heard (it used to be lost: every membership change reset all channels)."""
    det = InbandDetector(0)
    det.add_channel()  # channel 0: a call that stays, pressing 4
    frames = frames_of(np.concatenate([sox_key(tmp_path, "4", 120), np.zeros(480, dtype=np.int16)]))
    hits = []
    for frame in frames:
        det.add_channel()  # a call starts (channel 1, silent) ...
        tick = np.stack([frame, np.zeros_like(frame)])
        hits += [(ch, d) for ch, d in det.feed(tick) if ch == 0]
        det.remove_channel(1)  # ... and ends before the next tick
    assert hits == [(0, "4")]
    # removing a channel before it moves the others down with their state
    det = InbandDetector(3)
    key = frames_of(sox_key(tmp_path, "9", 120))
    det.feed(np.stack([np.zeros_like(key[0]), key[0], np.zeros_like(key[0])]))
    det.remove_channel(0)
    assert [h for f in key[1:] for h in det.feed(np.stack([f, np.zeros_like(f)]))] == [(0, "9")]
