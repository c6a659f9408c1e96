"""AMD on a labelled corpus generated with espeak-ng (240 samples: people answering and
answering machines with beeps, random voices, speeds, pauses, noise and levels, through G.711):
the same detector the workers run must sort them, and find every machine's beep."""

from __future__ import annotations

from centralino.bench.media import bench_amd
from helpers import need_tool


def test_amd_corpus_accuracy(tmp_path):
    need_tool("espeak-ng")
    need_tool("sox")
    defaults, three_words = bench_amd(240, tmp_path / "corpus")
    assert defaults["samples"] == 240 and defaults["humans"] == 120
    # app_amd's defaults count two-word greetings ("Yes, hello?") as machines (MAXWORDS)
    assert defaults["accuracy"] >= 0.85 and defaults["missed_machine_rate"] <= 0.02
    assert three_words["accuracy"] >= 0.95 and three_words["false_machine_rate"] <= 0.05
    assert defaults["beep_found_in_machines"] >= 0.95 and defaults["beep_false_in_humans"] == 0
    assert 800 <= three_words["median_decision_ms"] <= 3000
