"""The media engine's pure parts: codecs and resampling, the mixer against a per-sample
reference, playlists, the recorder's file, and the AMD decision logic."""

from __future__ import annotations

import wave

import numpy as np
import pytest
from audio import dominant, level_at, sine
from centralino.media.amd import (
    AmdParams,
    AmdResult,
    AnsweringMachineDetector,
    BeepDetector,
    dominant_tones,
)
from centralino.media.codecs import make_decoder, make_encoder
from centralino.media.codecs.resample import Resampler
from centralino.media.mixer import Member, MixPlan, Room, mix_per_sample
from centralino.media.player import Playback, PromptCache, PromptError, synth
from centralino.media.recorder import Layout, Recording


@pytest.mark.parametrize("codec", ["PCMU", "PCMA", "L16", "G722", "opus"])
def test_codec_round_trip_keeps_a_tone(codec):
    enc, dec = make_encoder(codec), make_decoder(codec)
    pcm = sine(1000, 1.0, 0.3)
    out = np.concatenate([dec.decode(enc.encode(pcm[i:i + 160])) for i in range(0, len(pcm), 160)])
    assert len(out) == len(pcm)
    body = out[2000:]
    assert round(dominant(body), -1) == 1000
    assert 0.8 * 0.3 * 32767 < level_at(body, 1000) < 1.1 * 0.3 * 32767


def test_g711_known_vectors():
    assert make_encoder("PCMU").encode(np.array([0, 32767, -32768], np.int16)) == bytes([0xFF, 0x80, 0x00])
    assert make_encoder("PCMA").encode(np.array([0, 32767, -32768], np.int16)) == bytes([0xD5, 0xAA, 0x2A])


def test_damaged_payload_is_concealed_not_raised():
    dec = make_decoder("opus")
    assert dec.decode(b"\xff\xfe garbage").shape == (160,)


@pytest.mark.parametrize(("rate_in", "rate_out"), [(8000, 16000), (16000, 8000), (8000, 48000), (48000, 8000)])
def test_resampler_keeps_frequency_and_level_across_frames(rate_in, rate_out):
    r = Resampler(rate_in, rate_out)
    pcm = sine(440, 1.0, 0.5, rate_in)
    step = rate_in // 50
    out = np.concatenate([r.process(pcm[i:i + step]) for i in range(0, len(pcm), step)])
    assert len(out) == rate_out
    body = out[rate_out // 10:]
    assert round(dominant(body, rate_out)) in range(435, 446)
    assert abs(level_at(body, 440, rate_out) - 0.5 * 32767) < 0.03 * 32767
    # no click at frame edges: the signal's largest step stays a sine's largest step
    assert np.abs(np.diff(body.astype(np.int32))).max() < 1.2 * 0.5 * 32767 * 2 * np.pi * 440 / rate_out + 50


def test_mixer_matches_the_per_sample_reference():
    rng = np.random.default_rng(7)
    pcm = rng.integers(-20000, 20000, (9, 160)).astype(np.int16)  # loud: clipping is exercised
    rooms = [
        Room("conf", {"a": Member(0), "b": Member(1), "c": Member(2), "m": Member(3, talks=False)}),
        Room("mon", {"caller": Member(4), "agent": Member(5), "sup": Member(6)}, [("caller", "sup", -1)]),
        Room("deaf", {"x": Member(7, hears=False), "y": Member(8)}),
    ]
    plan = MixPlan(rooms)
    out = plan.mix(pcm)
    ref = mix_per_sample(pcm.tolist(), rooms)
    assert plan.out_ids == ["a", "b", "c", "m", "caller", "agent", "sup", "y"]
    for i, ident in enumerate(plan.out_ids):
        assert out[i].tolist() == ref[ident], ident


def test_playback_playlist_and_loop():
    a, b = np.full(200, 1, np.int16), np.full(100, 2, np.int16)
    pb = Playback([a, b])
    f1, f2 = pb.next_frame(), pb.next_frame()
    assert f1.tolist() == [1] * 160 and f2.tolist() == [1] * 40 + [2] * 100 + [0] * 20
    assert pb.next_frame() is None and pb.done
    looping = Playback([b], loop=True)
    assert looping.next_frame().tolist() == [2] * 160 and not looping.done


def test_prompts_resolve_packaged_defaults_and_reject_unknown(tmp_path):
    cache = PromptCache([tmp_path])
    assert cache.resolve("welcome").name == "welcome.wav"
    assert cache.resolve("prompts/welcome.wav").name == "welcome.wav"
    pcm = cache.load("welcome")
    assert pcm.dtype == np.int16 and 12000 < len(pcm) < 20000
    assert cache.load("welcome") is pcm  # cached
    with pytest.raises(PromptError):
        cache.resolve("no-such-prompt")
    assert len(synth("tone:440/200")) == 1600 and round(dominant(synth("tone:440/200")), -1) == 440
    # an MP3 the admin drops into a prompt directory is decoded too
    import av

    with av.open(str(tmp_path / "hello.mp3"), "w") as out:
        stream = out.add_stream("libmp3lame", rate=16000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(sine(500, 1.0, 0.3, 16000).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    mp3 = cache.load("hello")
    assert abs(len(mp3) - 8000) < 2000 and round(dominant(mp3[1000:6000]), -1) == 500


def test_recording_file_is_a_valid_wav_written_in_blocks(tmp_path):
    rec = Recording("r", tmp_path / "x.wav", "a", "b", Layout.STEREO)
    for i in range(120):
        rec.add(np.full(160, i, np.int16), np.full(160, -i, np.int16))
        if i == 10:
            assert (tmp_path / "x.wav").stat().st_size == 44  # nothing written per frame
    info = rec.close()
    assert info["seconds"] == 2.4
    with wave.open(str(tmp_path / "x.wav")) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    assert len(data) == 120 * 160 and data[160 * 7, 0] == 7 and data[160 * 7, 1] == -7
    mono = Recording("m", tmp_path / "m.wav", "a", "b", Layout.MONO)
    mono.add(np.full(160, 100, np.int16), np.full(160, 50, np.int16))
    mono.close()
    with wave.open(str(tmp_path / "m.wav")) as w:
        assert w.getnchannels() == 1 and np.frombuffer(w.readframes(1), "<i2")[0] == 150


def _feed(detector, pattern):
    """pattern: list of (ms, loud) → the decision."""
    for ms, loud in pattern:
        for _ in range(ms // 20):
            d = detector.feed(2000.0 if loud else 20.0)
            if d is not None:
                return d
    return detector.decision


def test_amd_decisions_follow_app_amd():
    d = _feed(AnsweringMachineDetector(), [(300, False), (400, True), (900, False)])
    assert d.result is AmdResult.HUMAN and d.cause.startswith("HUMAN-")
    d = _feed(AnsweringMachineDetector(), [(2600, False)])
    assert d.result is AmdResult.MACHINE and d.cause == "INITIALSILENCE-2500-2500"
    d = _feed(AnsweringMachineDetector(), [(200, False), (1600, True)])
    assert d.result is AmdResult.MACHINE and d.cause.startswith("LONGGREETING")
    d = _feed(AnsweringMachineDetector(), [(200, False), (300, True), (100, False), (300, True)])
    assert d.result is AmdResult.MACHINE and d.cause.startswith("MAXWORDS")
    # a 40 ms gap is inside a word (between_words_silence = 50): still one word
    d = _feed(AnsweringMachineDetector(), [(200, False), (300, True), (40, False), (300, True), (900, False)])
    assert d.result is AmdResult.HUMAN
    d = _feed(AnsweringMachineDetector(AmdParams(total_analysis_time=1000)), [(200, False), (60, True)] * 10)
    assert d.result is AmdResult.NOTSURE
    live = AnsweringMachineDetector()
    _feed(live, [(300, False)])
    assert live.hangup().result is AmdResult.HANGUP
    assert AmdParams.from_config({"greeting": "1200", "bogus": 1}).greeting == 1200


def test_beep_detector_needs_a_steady_pure_tone():
    def run(audio):
        det = BeepDetector()
        for i in range(0, len(audio) - 159, 160):
            f, p = dominant_tones(audio[i:i + 160].reshape(1, -1))
            hit = det.feed(float(f[0]), float(p[0]), float(np.abs(audio[i:i + 160]).mean()))
            if hit:
                return hit
        return None

    hit = run(np.concatenate([np.zeros(800, np.int16), sine(1400, 0.4), np.zeros(1600, np.int16)]))
    assert hit is not None and abs(hit[0] - 1400) < 20 and 360 <= hit[1] <= 440
    rng = np.random.default_rng(1)
    assert run((rng.standard_normal(16000) * 3000).astype(np.int16)) is None  # noise is not a beep
    assert run(np.concatenate([sine(300, 0.5), np.zeros(800, np.int16)])) is None  # below 400 Hz


@pytest.mark.parametrize(("fmt", "suffix"), [("opus", ".ogg"), ("mp3", ".mp3")])
def test_finished_recording_reencoded_keeps_both_channels(tmp_path, fmt, suffix):
    import av
    from centralino.media.recorder import encode_file

    rec = Recording("r", tmp_path / "call.wav", "a", "b", Layout.STEREO)
    left, right = sine(1000, 2.0, 0.3), sine(600, 2.0, 0.3)
    for i in range(0, 16000, 160):
        rec.add(left[i:i + 160], right[i:i + 160])
    rec.close()
    out = encode_file(tmp_path / "call.wav", fmt)
    assert out.suffix == suffix and out.exists() and not (tmp_path / "call.wav").exists()
    with av.open(str(out)) as c:
        stream = c.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="stereo", rate=8000)
        pcm = np.concatenate([f.to_ndarray().reshape(-1, 2) for frame in c.decode(stream)
                              for f in resampler.resample(frame)])
    assert 1.8 < len(pcm) / 8000 < 2.3
    body = pcm[2000:12000]
    assert round(dominant(body[:, 0]), -1) == 1000 and round(dominant(body[:, 1]), -1) == 600


def test_a_media_worker_that_does_not_answer_times_out_the_command_not_the_others(monkeypatch):
    """Requests expire by one sweep over their deadlines (no timer per request): a command the
    worker never answers fails with TimeoutError; an answered one is unaffected."""
    import asyncio

    from centralino.media import worker as worker_mod

    monkeypatch.setattr(worker_mod, "REQUEST_TIMEOUT", 0.2)
    monkeypatch.setattr(worker_mod, "SWEEP_INTERVAL", 0.05)

    class _Writer:  # the socket to the worker: records frames, answers nothing by itself
        def __init__(self):
            self.data = b""

        def write(self, data):
            self.data += data

    async def main():
        remote = worker_mod.RemoteWorker(0, proc=None)  # type: ignore[arg-type]
        remote.writer = _Writer()  # type: ignore[assignment]
        lost = asyncio.ensure_future(remote.request({"cmd": "stats"}))  # type: ignore[typeddict-item]
        answered = asyncio.ensure_future(remote.request({"cmd": "stats"}))  # type: ignore[typeddict-item]
        await asyncio.sleep(0)
        remote._on_frame({"id": 2, "ok": True}, lambda event: None)
        assert (await answered) == {"id": 2, "ok": True}
        try:
            await lost
        except TimeoutError as exc:
            assert "did not answer" in str(exc)
        else:
            raise AssertionError("an unanswered command must time out")
        assert not remote._pending and remote._sweeper is None  # nothing left to sweep

    asyncio.run(main())
