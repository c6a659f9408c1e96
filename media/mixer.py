"""The N−1 mixer: each tick turns one array of every listened channel's 20 ms frame into the
frame each participant hears, in a handful of array operations for all rooms at once.

A room's members all hear the sum of its *talking* members minus their own voice (N−1). Who
hears whom beyond that is expressed as a few signed corrections, which is how supervision fits
the same arithmetic:

- listen: the supervisor is a member who does not talk — hears both, heard by none;
- whisper: the supervisor talks, and a correction of −1 takes their voice out of the caller's
  mix — heard by the agent only;
- barge: a plain talking member — heard by both.

Muting is "does not talk". The mixer is pure: channels are row numbers of the tick's array.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Member:
    row: int  # which row of the tick's input array is this member's voice
    talks: bool = True
    hears: bool = True


@dataclass
class Room:
    name: str
    members: dict[str, Member] = field(default_factory=dict)  # endpoint id → member
    # (listener endpoint, speaker endpoint, gain): added to the listener's mix
    corrections: list[tuple[str, str, int]] = field(default_factory=list)


class MixPlan:
    """Index arrays for one tick's mix, rebuilt only when rooms or rows change."""

    def __init__(self, rooms: list[Room]) -> None:
        rows, talks, out_rows, out_room, self_talks = [], [], [], [], []
        corr_dst, corr_src, corr_gain = [], [], []
        out_index: dict[str, int] = {}
        starts = []
        for room in (room for room in rooms if room.members):
            r = len(starts)
            starts.append(len(rows))
            for ident, m in room.members.items():
                rows.append(m.row)
                talks.append(1 if m.talks else 0)
                if m.hears:
                    out_index[ident] = len(out_rows)
                    out_rows.append(m.row)
                    out_room.append(r)
                    self_talks.append(1 if m.talks else 0)
            for listener, speaker, gain in room.corrections:
                if listener in out_index and speaker in room.members:
                    corr_dst.append(out_index[listener])
                    corr_src.append(room.members[speaker].row)
                    corr_gain.append(gain)
        self.starts = np.array(starts, np.intp)
        self.rows = np.array(rows, np.intp)
        self.talk_gain = np.array(talks, np.int32)[:, None]
        self.out_rows = np.array(out_rows, np.intp)
        self.out_room = np.array(out_room, np.intp)
        self.self_gain = np.array(self_talks, np.int32)[:, None]
        self.corr_dst = np.array(corr_dst, np.intp)
        self.corr_src = np.array(corr_src, np.intp)
        self.corr_gain = np.array(corr_gain, np.int32)[:, None]
        self.out_ids = list(out_index)  # endpoint id of each output row

    def mix(self, pcm: np.ndarray) -> np.ndarray:
        """``pcm``: (channels, samples) int16 → (len(out_ids), samples) int16."""
        if not len(self.out_rows):
            return np.zeros((0, pcm.shape[1]), np.int16)
        voices = pcm[self.rows].astype(np.int32) * self.talk_gain
        sums = np.add.reduceat(voices, self.starts, axis=0)  # members are stored room by room
        out = sums[self.out_room] - pcm[self.out_rows].astype(np.int32) * self.self_gain
        if len(self.corr_dst):
            np.add.at(out, self.corr_dst, pcm[self.corr_src].astype(np.int32) * self.corr_gain)
        return np.clip(out, -32768, 32767).astype(np.int16)


def mix_per_sample(pcm: list[list[int]], rooms: list[Room]) -> dict[str, list[int]]:
    """The same mix as ``MixPlan.mix`` with a Python loop per sample: the baseline the
    benchmark compares the vectorised mixer with, and the tests' reference."""
    out: dict[str, list[int]] = {}
    for room in rooms:
        for ident, m in room.members.items():
            if not m.hears:
                continue
            frame = []
            for i in range(len(pcm[m.row])):
                total = 0
                for other_id, other in room.members.items():
                    if other.talks and other_id != ident:
                        total += pcm[other.row][i]
                for listener, speaker, gain in room.corrections:
                    if listener == ident and speaker in room.members:
                        total += gain * pcm[room.members[speaker].row][i]
                frame.append(max(-32768, min(32767, total)))
            out[ident] = frame
    return out
