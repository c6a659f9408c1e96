"""The benchmark runner's pure parts: stepping decisions and SIPp output parsing."""

from __future__ import annotations

from centralino.bench.sipp import SippResult, _epoch, parse_rtt_csv, parse_stat_csv, write_users_csv
from centralino.bench.stepping import Criteria, Step, best_rate, next_rate

C = Criteria(max_failure_ratio=0.001, max_p95_ms=200)


def ok(rate):
    return Step(rate, 0.0, 10.0, rate)


def bad(rate, why="fail"):
    return Step(rate, 0.01, 10.0, rate) if why == "fail" else Step(rate, 0.0, 500.0, rate)


def test_grows_geometrically_while_passing():
    assert next_rate([], C, start=100) == 100
    assert next_rate([ok(100)], C, start=100, factor=2) == 200
    assert next_rate([ok(100), ok(200)], C, start=100, factor=2, max_rate=300) == 300
    assert next_rate([ok(100), ok(200), ok(300)], C, start=100, factor=2, max_rate=300) is None


def test_bisects_after_first_failure_then_stops():
    h = [ok(100), ok(200), bad(400)]
    assert next_rate(h, C, start=100, factor=2) == 300
    h.append(ok(300))
    assert next_rate(h, C, start=100, factor=2) == 350
    h.append(bad(350, "latency"))
    assert next_rate(h, C, start=100, factor=2, refinements=2) is None
    assert best_rate(h, C).rate == 300


def test_first_step_failing_ends_the_run():
    assert next_rate([bad(100)], C, start=100) is None
    assert best_rate([bad(100)], C) is None


def test_latency_and_client_limit_fail_a_step():
    assert not Step(1000, 0.0, 250.0, 1000).passes(C)
    assert not Step(1000, 0.0, 10.0, 700).passes(C)  # SIPp could not offer the rate
    assert Step(1000, 0.0009, 199.0, 995).passes(C)


def test_parse_sipp_files(tmp_path):
    stat = tmp_path / "stat.csv"
    stat.write_text("StartTime;CurrentTime;SuccessfulCall(C);FailedCall(C);Retransmissions(C);\n"
                    "2026-11-24\t01:05:01.295192\t1795482301.295192;2026-11-24\t01:05:03.300487\t1795482303.300487;"
                    "600;2;7;\n")
    row = parse_stat_csv(stat)
    assert row["SuccessfulCall(C)"] == "600" and row["FailedCall(C)"] == "2"
    assert round(_epoch(row["CurrentTime"]) - _epoch(row["StartTime"]), 3) == 2.005
    rtt = tmp_path / "x_rtt.csv"
    rtt.write_text("Date_ms;response_time_ms;rtd_no\n16.001;4;1\n24.001;0;1\n30;12.5;1\n")
    assert parse_rtt_csv(rtt) == [4.0, 0.0, 12.5]


def test_result_figures():
    r = SippResult(target_rate=100, successful=999, failed=1, elapsed=10.0, rtt_ms=[float(i) for i in range(1, 101)])
    assert r.failure_ratio == 0.001 and r.achieved_rate == 99.9
    assert r.percentile(50) == 50.5 and r.percentile(95) == 95.05


def test_users_file(tmp_path):
    path = write_users_csv(tmp_path / "u.csv", [("1001", "pw")], "example.com")
    assert path.read_text() == "SEQUENTIAL\n1001;[authentication username=1001 password=pw];example.com;\n"


def test_report_ratios_against_kamailio():
    from centralino.bench.runner import _markdown

    row = {"rate": 100, "achieved": 100, "successful": 600, "failed": 0, "failure_ratio": 0.0, "p50_ms": 0.0,
           "p95_ms": 4.0, "retransmissions": 0, "switch_cpu": 0.5, "udp_rcvbuf_errors": 0, "passed": True}
    best = {"rate": 100.0, "failure_ratio": 0.0, "p95_ms": 4.0}
    report = {"scenario": "calls", "command": "centralino bench calls", "when": "now",
              "machine": {"cpus": 2, "python": "3.11"}, "criteria": {"max_failure_ratio": 0.001, "max_p95_ms": 200},
              "targets": {"centralino": {"steps": [row], "best": {**best, "achieved_rate": 500.0}},
                          "kamailio": {"steps": [row], "best": {**best, "achieved_rate": 1000.0}},
                          "sippy": {"steps": [row], "best": None}}}
    md = _markdown(report)
    assert "| centralino | 500 | 0.50x |" in md and "| kamailio | 1000 | 1.00x |" in md
    assert "| sippy | 0 | 0.00x |" in md


def test_peer_install_hints(monkeypatch):
    from centralino.bench import peers

    monkeypatch.setattr(peers.shutil, "which", lambda name: None)
    assert peers.missing("kamailio") == "Kamailio is not installed: apt-get install kamailio"
    assert "pip install" in peers.missing("sippy")


def test_media_columns_and_loss_from_worker_counters():
    from centralino.bench.runner import _markdown, _media_delta

    delta = _media_delta({"rx": 1000, "tx": 990, "lost": 2}, {"rx": 11000, "tx": 10990, "lost": 12})
    assert delta == {"rx": 10000, "tx": 10000, "lost": 10, "loss_ratio": 0.000999}
    assert _media_delta({}, {})["loss_ratio"] == 0.0
    row = {"rate": 50, "achieved": 50, "successful": 300, "failed": 0, "failure_ratio": 0.0, "p50_ms": 0.0,
           "p95_ms": 4.0, "retransmissions": 0, "switch_cpu": 0.4, "udp_rcvbuf_errors": 0, "passed": True,
           "media": delta}
    report = {"scenario": "calls-rtp", "command": "centralino bench calls-rtp", "when": "now",
              "machine": {"cpus": 2, "python": "3.11"}, "criteria": {"max_failure_ratio": 0.001, "max_p95_ms": 200},
              "targets": {"centralino": {"steps": [row], "best": {"rate": 50.0, "failure_ratio": 0.0,
                                                                   "p95_ms": 4.0, "achieved_rate": 50.0}}}}
    md = _markdown(report)
    assert "| RTP packets relayed | RTP loss |" in md and "|---:|---:|:--:|---:|---:|" in md
    assert "| yes | 10000 | 0.100% |" in md


def test_plot_writes_a_png_of_rate_failures_and_latency(tmp_path):
    from centralino.bench.plot import plot

    steps = [{"rate": r, "achieved": a, "failure_ratio": f, "p95_ms": p}
             for r, a, f, p in ((100, 100, 0.0, 4.0), (200, 200, 0.0, 8.0), (400, 300, 0.2, 900.0))]
    report = {"scenario": "calls", "command": "centralino bench calls", "when": "now",
              "criteria": {"max_failure_ratio": 0.001, "max_p95_ms": 200},
              "targets": {"centralino": {"steps": steps}, "kamailio": {"steps": steps[:2]}}}
    path = tmp_path / "calls.png"
    assert plot(report, path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_generated_pcap_is_a_paced_g711a_rtp_stream(tmp_path):
    import itertools
    import struct

    import numpy as np
    from centralino.bench.pcap import write_g711a_pcap
    from centralino.media.codecs import make_decoder

    data = write_g711a_pcap(tmp_path / "a.pcap", 2.0).read_bytes()
    magic, major, minor, _, _, _, link = struct.unpack_from("<IHHiIII", data)
    assert (magic, major, minor, link) == (0xA1B2C3D4, 2, 4, 1)
    offset, packets, decoder, pcm = 24, [], make_decoder("PCMA"), []
    while offset < len(data):
        sec, usec, size, _ = struct.unpack_from("<IIII", data, offset)
        frame = data[offset + 16: offset + 16 + size]
        offset += 16 + size
        assert frame[12:14] == b"\x08\x00" and frame[14 + 9] == 17  # IPv4, UDP
        rtp = frame[14 + 20 + 8:]
        packets.append((sec * 1_000_000 + usec, rtp[1], struct.unpack("!H", rtp[2:4])[0]))
        pcm.append(decoder.decode(rtp[12:]))
    assert len(packets) == 100 and {pt for _, pt, _ in packets} == {8}
    assert [s for _, _, s in packets] == list(range(100))
    assert {b[0] - a[0] for a, b in itertools.pairwise(packets)} == {20_000}
    audio = np.concatenate(pcm).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.fft.rfftfreq(len(audio), 1 / 8000)[int(np.argmax(spectrum))] - 1000) < 5


def test_several_sipp_pairs_merge_into_one_measurement():
    from centralino.bench.sipp import merge

    a = SippResult(target_rate=500, successful=4990, failed=10, elapsed=10.0, retransmissions=3, rtt_ms=[1.0, 2.0])
    b = SippResult(target_rate=500, successful=5000, failed=0, elapsed=10.5, rtt_ms=[3.0])
    m = merge([a, b])
    assert (m.target_rate, m.successful, m.failed, m.elapsed, m.retransmissions) == (1000, 9990, 10, 10.5, 3)
    assert sorted(m.rtt_ms) == [1.0, 2.0, 3.0] and m.failure_ratio == 0.001
    assert merge([a]) is a


def test_naming_a_peer_alone_compares_call_rates(monkeypatch, capsys):
    """`centralino bench --peer kamailio --peer sippy` (no scenario) is the calls comparison."""
    import argparse

    from centralino.bench import runner

    parser = argparse.ArgumentParser()
    runner.add_arguments(parser)
    monkeypatch.setattr(runner, "sipp_binary", lambda: None)  # stop before starting anything
    args = parser.parse_args(["--peer", "kamailio", "--peer", "sippy", "--pairs", "2"])
    assert runner.main(args) == 2 and args.scenario == "calls" and args.pairs == 2
    assert "apt-get install sip-tester" in capsys.readouterr().err
    args = parser.parse_args([])
    runner.main(args)
    assert args.scenario == "register"


def test_the_live_dialer_bench_plan_is_valid_and_its_figures_come_from_the_records(tmp_path):
    """`bench dialer-live`'s plan is a plan the switch accepts (its own defaults otherwise), its
    leads follow the farm's shares, and its figures count the agents' talk within the run only."""
    import sqlite3

    from centralino.bench.dialer_live import SHARES, _figures, _leads, _plan
    from centralino.config.loader import parse_plan_text
    from centralino.storage.migrations import MIGRATIONS

    leads = _leads(tmp_path / "leads.csv", 4000, seed=3)
    digits = [line.split(",")[0][-1] for line in leads.read_text().splitlines()[1:]]
    for digit, share in SHARES.items():
        assert abs(digits.count(digit) / len(digits) - share) < 0.025
    plan = _plan(tmp_path, 5060, 8080, 5070, [("2001", "pw1"), ("2002", "pw2")], 5, leads)
    loaded = parse_plan_text(plan.read_text(), str(plan))
    assert loaded.plan.campaigns["live"].mode == "predictive"
    assert loaded.plan.server.security.rate_limit > 0 and loaded.plan.server.registrar.qualify_interval > 0

    db = tmp_path / "bench.db"
    conn = sqlite3.connect(db)
    for _v, sql in MIGRATIONS:
        conn.executescript(sql)
    conn.executemany("INSERT INTO lead_attempts (lead_id, campaign, at, outcome, ring_seconds) VALUES (1, 'live', ?, ?, ?)",
                     [(110.0, "answered-human", 8.0), (120.0, "abandoned", 6.0), (130.0, "busy", 2.0),
                      (400.0, "no-answer", 25.0)])  # the last was placed after the run
    conn.executemany("INSERT INTO cdr (call_id, leg, start, answer, end, disposition, destination, campaign)"
                     " VALUES (?, ?, ?, ?, ?, 'ANSWERED', ?, ?)",
                     [("a", "call", 100.0, 108.0, 250.0, "campaign:live", "live"),
                      ("a", "fork", 110.0, 110.0, 250.0, "extension:2001", ""),  # talks 110 → 250, run ends at 200
                      ("b", "call", 100.0, 108.0, 150.0, "campaign:live", "other"),
                      ("b", "fork", 110.0, 110.0, 150.0, "extension:2002", "")])  # another campaign's
    conn.commit()
    conn.close()
    f = _figures(db, agents=2, start=100.0, stop=200.0)
    assert f["attempts"] == 3 and f["live_answers"] == 2 and f["abandon_rate"] == 0.5
    assert f["connected_legs"] == 1
    assert abs(f["talk_min_per_agent_hour"] - (90 / 60) / (2 * 100 / 3600)) < 1e-9


def test_the_split_prototype_divides_pairs_among_processes_sharing_one_database(monkeypatch, tmp_path, capsys):
    """`--split N` (docs/multicore.md): SIPp pair i goes to process i mod N, each pair calls its
    own answerer there, every process writes the one database; bad combinations exit 2."""
    import argparse

    from centralino.bench import peers, runner
    from centralino.bench.sipp import SippResult

    parser = argparse.ArgumentParser()
    runner.add_arguments(parser)
    monkeypatch.setattr(runner, "sipp_binary", lambda: "/usr/bin/sipp")
    for bad in (["calls", "--split", "2", "--pairs", "1"], ["register", "--split", "2", "--pairs", "2"],
                ["calls", "--split", "1", "--pairs", "2"]):
        assert runner.main(parser.parse_args(bad)) == 2
    assert "--split N needs" in capsys.readouterr().err

    shared = tmp_path / "bench.db"
    plan = runner.bench_plan(tmp_path, 5999, 8999, [("5000000", "pw")], storage=shared).read_text()
    assert f'storage: "sqlite:{shared}"' in plan

    targets = [peers.Target("centralino", 6000, None, services=["5000000", "5000002"]),  # type: ignore[arg-type]
               peers.Target("centralino", 6002, None, services=["5000001", "5000003"])]  # type: ignore[arg-type]
    sent: list[tuple[str, str]] = []

    def fake_sipp(scenario, dest, **kw):
        sent.append((dest, kw["extra"][1]))
        return SippResult(target_rate=kw["rate"], successful=10, failed=0, elapsed=1.0, rtt_ms=[1.0])

    monkeypatch.setattr(runner, "run_sipp", fake_sipp)
    args = parser.parse_args(["calls", "--pairs", "4", "--duration", "1"])
    result = runner._run_pairs(args, targets, tmp_path, 400.0, [tmp_path / f"u{i}" for i in range(4)])
    assert sorted(sent) == [("127.0.0.1:6000", "5000000"), ("127.0.0.1:6000", "5000002"),
                            ("127.0.0.1:6002", "5000001"), ("127.0.0.1:6002", "5000003")]
    assert result.successful == 40
