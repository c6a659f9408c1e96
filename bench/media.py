"""`centralino bench mixer` and `centralino bench amd`.

mixer: the cost of one 20 ms tick's N−1 mix for 10/100/1000 channels in conference rooms of 5,
vectorised (``MixPlan.mix``) against the same mix with a Python loop per sample
(``mix_per_sample``), and the whole tick core (G.711 decode → mix → G.711 encode).

amd: a labelled corpus spoken by espeak-ng — people answering ("Hello?", "Yes?", …) and
answering machines (long greetings ending in a beep) — with random voices, speeds, leading
silence, line noise and levels, passed through G.711 like a phone line, then through the same
detector the workers run. Reports accuracy, the false-machine rate (people classified as
machines: the costly error, they get hung up on), NOTSURE, and the median decision time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

from ..media.amd import (
    AmdParams,
    AmdResult,
    AnsweringMachineDetector,
    BeepDetector,
    dominant_tones,
    magnitudes,
)
from ..media.codecs.g711 import PCM_TO_ULAW, ULAW_TO_PCM
from ..media.mixer import Member, MixPlan, Room, mix_per_sample

HUMAN = ["Hello?", "Yes?", "Hello.", "Hi!", "Hello?", "Yeah?", "Speaking.", "Hallo?", "Hello!", "Allo?",
         "Yes, hello?", "Good morning."]
MACHINE = [
    "Hi, you have reached the voicemail of John Smith. I am not available right now. Please leave a message after the tone.",
    "Thank you for calling Acme Plumbing. Our office is closed. Leave your name and number and we will call you back.",
    "The person you are calling is not available. Please record your message after the beep.",
    "Hello, this is Maria. Sorry I missed your call, leave me a message and I will get back to you.",
    "You have reached five five five, one two three four. Please leave a message.",
    "Hi, it's Tom and Anna, we can't come to the phone right now, leave a message!",
]
VOICES = ["en-us", "en", "en-gb-x-rp", "en-029", "en-us+f3", "en+m3", "en-us+f2", "en+f4"]


def bench_mixer(channels: list[int], room_size: int = 5) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    rows = []
    for n in channels:
        rooms = [Room(f"r{r}", {f"c{r}-{m}": Member(r * room_size + m) for m in range(room_size)})
                 for r in range(n // room_size)]
        pcm = rng.integers(-8000, 8000, (n, 160)).astype(np.int16)
        plan = MixPlan(rooms)
        reps = max(20, 20000 // n)
        t0 = time.perf_counter()
        for _ in range(reps):
            plan.mix(pcm)
        vec = (time.perf_counter() - t0) / reps
        ulaw = PCM_TO_ULAW[pcm.astype(np.int32) + 32768]
        t0 = time.perf_counter()
        for _ in range(reps):  # the tick's core: decode all, mix, encode all
            out = plan.mix(ULAW_TO_PCM[ulaw])
            PCM_TO_ULAW[out.astype(np.int32) + 32768]
        core = (time.perf_counter() - t0) / reps
        lists = pcm.tolist()
        loops = 1 if n >= 500 else 3
        t0 = time.perf_counter()
        for _ in range(loops):
            mix_per_sample(lists, rooms)
        loop = (time.perf_counter() - t0) / loops
        rows.append({"channels": n, "vectorised_ms": round(vec * 1000, 4), "tick_core_ms": round(core * 1000, 4),
                     "per_sample_ms": round(loop * 1000, 2), "speedup": round(loop / vec, 1),
                     "budget_share": round(core / 0.02, 4)})
    return rows


def _speak(text: str, voice: str, speed: int, path: Path) -> np.ndarray:
    if not path.exists():
        raw = path.with_suffix(".raw.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True,
                       capture_output=True)
        subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(path)], check=True)
        raw.unlink()
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64)


def corpus(n: int, cache: Path, seed: int = 7) -> list[tuple[str, np.ndarray]]:
    """``n`` labelled line recordings: ("human"|"machine", 8 kHz int16 after G.711)."""
    rng = np.random.default_rng(seed)
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        label = "human" if i % 2 == 0 else "machine"
        text = str(rng.choice(HUMAN if label == "human" else MACHINE))
        voice = str(rng.choice(VOICES))
        speed = int(rng.integers(130, 200))
        key = hashlib.sha1(f"{text}|{voice}|{speed}".encode()).hexdigest()[:16]
        speech = _speak(text, voice, speed, cache / f"{key}.wav")
        gain = 10 ** (rng.uniform(-12, 0) / 20)
        lead = np.zeros(int(8000 * rng.uniform(0.1, 1.2)))
        if label == "human":  # the person then waits for the caller to speak
            tail = np.zeros(int(8000 * rng.uniform(1.5, 3.0)))
            audio = np.concatenate([lead, speech * gain, tail])
        else:
            gap = np.zeros(int(8000 * rng.uniform(0.2, 0.8)))
            beep_hz = float(rng.choice([440, 800, 1000, 1400]))
            t = np.arange(int(8000 * rng.uniform(0.3, 1.0))) / 8000
            beep = np.sin(2 * np.pi * beep_hz * t) * 9000 * gain
            audio = np.concatenate([lead, speech * gain, gap, beep, np.zeros(8000)])
        noise_db = rng.uniform(-70, -45)  # line noise, dBFS
        audio = audio + rng.standard_normal(len(audio)) * 32767 * 10 ** (noise_db / 20)
        pcm = np.clip(audio, -32768, 32767).astype(np.int16)
        pcm = ULAW_TO_PCM[PCM_TO_ULAW[pcm.astype(np.int32) + 32768]]  # the phone line
        out.append((label, pcm[: len(pcm) - len(pcm) % 160]))
    return out


def classify(pcm: np.ndarray, params: AmdParams | None = None) -> tuple[str, str, int, int | None]:
    """The worker's analysis on one recording: (result, cause, decision ms, beep ms or None)."""
    frames = pcm.reshape(-1, 160)
    mags = magnitudes(frames)
    freqs, purity = dominant_tones(frames)
    amd, beep = AnsweringMachineDetector(params), BeepDetector()
    decision, beep_at = None, None
    for i in range(len(frames)):
        if decision is None:
            decision = amd.feed(float(mags[i]))
        if beep_at is None:
            hit = beep.feed(float(freqs[i]), float(purity[i]), float(mags[i]))
            if hit is not None:
                beep_at = hit[2]
    if decision is None:
        decision = amd.hangup()
    return decision.result.value, decision.cause, decision.elapsed_ms, beep_at


def bench_amd(samples: int, cache: Path) -> list[dict[str, Any]]:
    """The corpus judged with app_amd's defaults, and with maximum_number_of_words = 3 (what
    Asterisk's own amd.conf suggests when people greet with two words)."""
    data = corpus(samples, cache)
    return [{"params": name, **_judge(data, params)}
            for name, params in (("defaults", AmdParams()), ("words=3", AmdParams(maximum_number_of_words=3)))]


def _judge(data: list[tuple[str, np.ndarray]], params: AmdParams) -> dict[str, Any]:
    results = []
    for label, pcm in data:
        result, cause, ms, beep_at = classify(pcm, params)
        results.append({"label": label, "result": result, "cause": cause, "ms": ms, "beep_ms": beep_at})
    humans = [r for r in results if r["label"] == "human"]
    machines = [r for r in results if r["label"] == "machine"]
    correct = sum(1 for r in humans if r["result"] == AmdResult.HUMAN.value) + \
        sum(1 for r in machines if r["result"] == AmdResult.MACHINE.value)
    return {
        "samples": len(results), "humans": len(humans), "machines": len(machines),
        "accuracy": round(correct / len(results), 4),
        "false_machine_rate": round(sum(1 for r in humans if r["result"] == "MACHINE") / len(humans), 4),
        "missed_machine_rate": round(sum(1 for r in machines if r["result"] == "HUMAN") / len(machines), 4),
        "notsure_rate": round(sum(1 for r in results if r["result"] == "NOTSURE") / len(results), 4),
        "median_decision_ms": statistics.median(r["ms"] for r in results),
        "median_decision_ms_human": statistics.median(r["ms"] for r in humans),
        "median_decision_ms_machine": statistics.median(r["ms"] for r in machines),
        "beep_found_in_machines": round(sum(1 for r in machines if r["beep_ms"]) / len(machines), 4),
        "beep_false_in_humans": round(sum(1 for r in humans if r["beep_ms"]) / len(humans), 4),
        "causes": {c: sum(1 for r in results if r["cause"].split("-")[0] == c)
                   for c in sorted({r["cause"].split("-")[0] for r in results})},
    }


def main(args: argparse.Namespace) -> int:
    if args.scenario == "mixer":
        rows = bench_mixer(args.channels)
        print("| channels | vectorised mix | tick core (decode+mix+encode) | per-sample loop | speed-up | share of 20 ms |")
        print("|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['channels']} | {r['vectorised_ms']} ms | {r['tick_core_ms']} ms | {r['per_sample_ms']} ms |"
                  f" {r['speedup']}× | {r['budget_share'] * 100:.1f}% |")
        print(json.dumps(rows))
        return 0
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            print(f"centralino bench amd needs {tool}: apt-get install espeak-ng sox")
            return 2
    reports = bench_amd(args.samples, Path(args.out) / "amd-corpus")
    print("| parameters | samples | accuracy | false MACHINE (humans) | missed machines | NOTSURE | median decision | beep found |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for report in reports:
        print(f"| {report['params']} | {report['samples']} | {report['accuracy'] * 100:.1f}% |"
              f" {report['false_machine_rate'] * 100:.1f}% | {report['missed_machine_rate'] * 100:.1f}% |"
              f" {report['notsure_rate'] * 100:.1f}% | {report['median_decision_ms']:.0f} ms |"
              f" {report['beep_found_in_machines'] * 100:.0f}% |")
    print(json.dumps(reports))
    return 0
