"""The media worker's own audio over real UDP sockets: prompts (and barge-in), dual-channel
recording with pause, the N−1 conference mixer, supervisor listen/whisper/barge, transcoding,
DTMF sending and AMD — each judged by decoding what arrived (frequency, level, duration)."""

from __future__ import annotations

import asyncio
import wave

import numpy as np
import pytest
from audio import RtpPhone, dominant, level_at, rms, sine
from centralino.media.dtmf import TelephoneEvent
from centralino.media.dtmf_inband import InbandDetector
from centralino.media.rtp import RtpPacket
from centralino.media.worker import MediaPool


async def attach(w, phone: RtpPhone, call: str = "c", codec: str | None = None, dtmf_pt: int | None = None):
    ep = await w.request({"cmd": "endpoint.create", "call": call})
    update = {"cmd": "endpoint.update", "endpoint": ep["endpoint"], "ip": phone.address[0],
              "port": phone.address[1], "codec": codec or phone.codec, "pt": phone.pt,
              "codecs": {phone.pt: codec or phone.codec}}
    if dtmf_pt is not None:
        update["dtmf_pt"] = dtmf_pt
    assert (await w.request(update))["ok"]
    return ep


def run(coro_fn, workers: int = 0, ports=(44000, 44199)):
    async def main():
        events: list[dict] = []
        pool = MediaPool("127.0.0.1", ports, workers, events.append)
        await pool.start()
        try:
            return await coro_fn(pool.pick(), events)
        finally:
            await pool.close()
    return asyncio.run(main())


@pytest.mark.parametrize("workers", [0, 1])
def test_prompt_is_heard_with_its_length_and_play_done(workers):
    phone = RtpPhone("PCMA")

    async def scenario(w, events):
        ep = await attach(w, phone)
        reply = await w.request({"cmd": "play", "endpoint": ep["endpoint"], "items": ["welcome"]})
        assert reply["ok"], reply
        await asyncio.sleep(reply["ms"] / 1000 + 0.5)
        return reply, [e for e in events if e.get("event") == "play.done"]

    try:
        reply, done = run(scenario, workers)
        audio = phone.audio()
    finally:
        phone.close()
    assert 1500 < reply["ms"] < 2500  # "Welcome to Centralino." is ~1.9 s
    assert done and done[0]["reason"] == "finished"
    voiced = np.array([rms(audio[i:i + 160]) for i in range(0, len(audio) - 159, 160)]) > 300
    # speech energy spans roughly the prompt's length (comfort noise after it is far below)
    span_ms = (np.flatnonzero(voiced)[-1] - np.flatnonzero(voiced)[0] + 1) * 20
    assert reply["ms"] - 600 <= span_ms <= reply["ms"] + 100
    assert rms(audio) > 1000


def test_barge_in_stops_the_prompt_on_a_key():
    phone = RtpPhone("PCMU")

    async def scenario(w, events):
        ep = await attach(w, phone, dtmf_pt=101)
        await w.request({"cmd": "play", "endpoint": ep["endpoint"], "items": ["menu"], "barge_in": True})
        await asyncio.sleep(0.6)
        for i, end in enumerate([False, False, True, True, True]):  # key 5, RFC 4733
            te = TelephoneEvent(5, end, 10, 160 * (i + 1)).serialize()
            phone.sock.sendto(bytes([0x80, 101, 0, i, 0, 0, 0, 0, 0, 0, 0, 1]) + te, ("127.0.0.1", ep["port"]))
        await asyncio.sleep(0.6)
        return [e for e in events if e.get("event") in ("play.done", "dtmf")]

    try:
        got = run(scenario)
        audio = phone.audio()
    finally:
        phone.close()
    done = next(e for e in got if e["event"] == "play.done")
    assert done["reason"] == "barge-in" and done["digit"] == "5"
    assert 400 <= done["played_ms"] <= 900  # the menu prompt is ~5 s long: it was cut
    assert any(e["event"] == "dtmf" and e["digit"] == "5" for e in got)
    assert len(audio) / 8 <= done["played_ms"] + 60  # nothing of the prompt after the key


def test_stereo_recording_has_each_side_in_its_channel_and_pause_leaves_silence(tmp_path):
    caller, agent = RtpPhone("PCMU"), RtpPhone("PCMA")
    path = tmp_path / "rec.wav"

    async def scenario(w, events):
        a = await attach(w, caller, "rec")
        b = await attach(w, agent, "rec")
        await w.request({"cmd": "bridge", "a": a["endpoint"], "b": b["endpoint"]})
        rec = await w.request({"cmd": "record.start", "a": a["endpoint"], "b": b["endpoint"], "path": str(path)})
        assert rec["ok"], rec
        caller.send(sine(1000, 3.0), ("127.0.0.1", a["port"]))
        agent.send(sine(600, 3.0), ("127.0.0.1", b["port"]))
        await asyncio.sleep(1.0)
        paused = await w.request({"cmd": "record.pause", "recording": rec["recording"], "paused": True})
        await asyncio.sleep(1.0)
        await w.request({"cmd": "record.pause", "recording": rec["recording"], "paused": False})
        await asyncio.sleep(1.2)
        info = await w.request({"cmd": "record.stop", "recording": rec["recording"]})
        return paused, info, [e for e in events if e.get("event") == "record.done"]

    try:
        paused, info, done = run(scenario)
    finally:
        caller.close()
        agent.close()
    assert done and done[0]["path"] == str(path)
    with wave.open(str(path)) as wav:
        assert wav.getnchannels() == 2 and wav.getframerate() == 8000
        data = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, 2)
    assert abs(len(data) / 8000 - info["seconds"]) < 0.05 and 3.0 <= info["seconds"] <= 3.5
    left, right = data[:, 0], data[:, 1]
    first = slice(2000, int(8000 * paused["at"]) - 400)
    assert round(dominant(left[first]), -1) == 1000 and round(dominant(right[first]), -1) == 600
    assert level_at(left[first], 600) < 300 and level_at(right[first], 1000) < 300  # no crosstalk
    start = int(8000 * paused["at"])
    gap = data[start + 400:start + 8000 - 400]
    assert np.abs(gap).max() == 0  # paused: digital silence for the span
    after = slice(start + 8000 + 800, start + 8000 + 4000)
    assert round(dominant(left[after]), -1) == 1000 and round(dominant(right[after]), -1) == 600
    assert 0.9 <= info["paused_seconds"] <= 1.1


def test_three_party_conference_each_hears_the_other_two_not_itself():
    tones = {"x": 500.0, "y": 900.0, "z": 1400.0}
    phones = {k: RtpPhone("PCMU") for k in tones}

    async def scenario(w, events):
        eps = {k: await attach(w, p, "conf") for k, p in phones.items()}
        for ep in eps.values():
            assert (await w.request({"cmd": "mix.join", "room": "r1", "endpoint": ep["endpoint"]}))["ok"]
        for k, p in phones.items():
            p.send(sine(tones[k], 2.0, 0.2), ("127.0.0.1", eps[k]["port"]))
        await asyncio.sleep(2.3)

    try:
        run(scenario)
        heard = {k: p.audio()[4000:12000] for k, p in phones.items()}
    finally:
        for p in phones.values():
            p.close()
    for me, audio in heard.items():
        for other, freq in tones.items():
            level = level_at(audio, freq)
            if other == me:
                assert level < 200, (me, other, level)
            else:
                assert level > 3000, (me, other, level)


@pytest.mark.parametrize("mode", ["listen", "whisper", "barge"])
def test_supervisor_modes(mode):
    freqs = {"caller": 500.0, "agent": 900.0, "sup": 1400.0}
    phones = {k: RtpPhone("PCMU") for k in freqs}

    async def scenario(w, events):
        eps = {k: await attach(w, p, "mon") for k, p in phones.items()}
        await w.request({"cmd": "bridge", "a": eps["caller"]["endpoint"], "b": eps["agent"]["endpoint"]})
        reply = await w.request({"cmd": "monitor", "mode": mode, "supervisor": eps["sup"]["endpoint"],
                                 "caller": eps["caller"]["endpoint"], "agent": eps["agent"]["endpoint"]})
        assert reply["ok"], reply
        for k, p in phones.items():
            p.send(sine(freqs[k], 2.0, 0.2), ("127.0.0.1", eps[k]["port"]))
        await asyncio.sleep(2.3)
        # the supervisor leaves: the call is a plain relay again
        await w.request({"cmd": "mix.leave", "room": reply["room"], "endpoint": eps["sup"]["endpoint"]})
        phones["caller"].received.clear()
        phones["agent"].send(sine(freqs["agent"], 0.6, 0.2), ("127.0.0.1", eps["agent"]["port"]))
        await asyncio.sleep(0.8)

    try:
        run(scenario)
        heard = {k: p.audio() for k, p in phones.items()}
    finally:
        for p in phones.values():
            p.close()
    expect = {  # who hears the supervisor
        "listen": {"caller": False, "agent": False},
        "whisper": {"caller": False, "agent": True},
        "barge": {"caller": True, "agent": True},
    }[mode]
    sup = heard["sup"][4000:12000]
    assert level_at(sup, freqs["caller"]) > 3000 and level_at(sup, freqs["agent"]) > 3000
    agent_heard = heard["agent"][4000:12000]
    assert level_at(agent_heard, freqs["caller"]) > 3000
    assert (level_at(agent_heard, freqs["sup"]) > 3000) is expect["agent"]
    # the caller's audio after the supervisor left: the agent, relayed
    caller_after = heard["caller"]
    assert level_at(caller_after, freqs["agent"]) > 3000 and level_at(caller_after, freqs["sup"]) < 200


@pytest.mark.parametrize("codecs", [("PCMU", "PCMA"), ("PCMA", "G722"), ("PCMU", "opus")])
def test_transcoding_between_legs_without_a_common_codec(codecs):
    a_phone, b_phone = RtpPhone(codecs[0]), RtpPhone(codecs[1])

    async def scenario(w, events):
        a = await attach(w, a_phone, "tc")
        b = await attach(w, b_phone, "tc")
        await w.request({"cmd": "bridge", "a": a["endpoint"], "b": b["endpoint"]})
        a_phone.send(sine(700, 1.5, 0.3), ("127.0.0.1", a["port"]))
        b_phone.send(sine(1100, 1.5, 0.3), ("127.0.0.1", b["port"]))
        await asyncio.sleep(1.8)

    try:
        run(scenario)
        at_b, at_a = b_phone.audio(), a_phone.audio()
    finally:
        a_phone.close()
        b_phone.close()
    assert round(dominant(at_b[2000:8000]), -1) == 700, codecs
    assert round(dominant(at_a[2000:8000]), -1) == 1100, codecs
    assert level_at(at_b[2000:8000], 700) > 5000 and level_at(at_a[2000:8000], 1100) > 5000


def test_dtmf_sent_as_rfc4733_events_and_as_tones():
    events_phone, tones_phone = RtpPhone("PCMU"), RtpPhone("PCMA")

    async def scenario(w, events):
        a = await attach(w, events_phone, "d", dtmf_pt=101)
        b = await attach(w, tones_phone, "d")
        r1 = await w.request({"cmd": "dtmf.send", "endpoint": a["endpoint"], "digits": "19#"})
        r2 = await w.request({"cmd": "dtmf.send", "endpoint": b["endpoint"], "digits": "42*"})
        await asyncio.sleep(1.2)
        return r1, r2

    try:
        r1, r2 = run(scenario)
        packets = [p for p in events_phone.received if p.payload_type == 101]
        tones = tones_phone.audio()
    finally:
        events_phone.close()
        tones_phone.close()
    assert r1["method"] == "rfc4733" and r2["method"] == "inband"
    ends = {}
    for p in packets:
        te = TelephoneEvent.parse(p.payload)
        if te.end:
            ends[p.timestamp] = "0123456789*#"[te.event]
    assert list(ends.values()) == ["1", "9", "#"]
    assert sum(1 for p in packets if p.marker) == 3
    detector = InbandDetector(1)
    got = []
    for i in range(0, len(tones) - 159, 160):
        got += [d for _, d in detector.feed(tones[i:i + 160].reshape(1, -1))]
    assert got == ["4", "2", "*"]


def test_inband_key_heard_while_other_calls_start_and_end():
    """A key pressed as tones on one call while other calls' tone-listening sides come and go
    every few milliseconds, as on a busy switch (it used to reset every channel's detector and
    the key was never heard)."""
    phone = RtpPhone("PCMA")
    t = np.arange(int(0.12 * 8000)) / 8000
    key6 = (5000 * (np.sin(2 * np.pi * 770 * t) + np.sin(2 * np.pi * 1477 * t))).astype(np.int16)
    audio = np.concatenate([np.zeros(800, np.int16), key6, np.zeros(1600, np.int16)])

    async def scenario(w, events):
        ep = await attach(w, phone, "keys")
        assert (await w.request({"cmd": "endpoint.update", "endpoint": ep["endpoint"], "inband_dtmf": True}))["ok"]
        loop = asyncio.get_running_loop()
        sending = loop.run_in_executor(None, lambda: phone.send(audio, ("127.0.0.1", ep["port"]), block=True))
        churned = 0
        while not sending.done():
            other = await w.request({"cmd": "endpoint.create", "call": f"o{churned}"})
            await w.request({"cmd": "endpoint.update", "endpoint": other["endpoint"], "ip": "127.0.0.1",
                             "port": 9, "codec": "PCMA", "pt": 8, "inband_dtmf": True})
            await asyncio.sleep(0.004)
            await w.request({"cmd": "endpoint.destroy", "endpoint": other["endpoint"]})
            churned += 1
        await sending
        await asyncio.sleep(0.2)
        return churned, [e["digit"] for e in events if e.get("event") == "dtmf" and e.get("call") == "keys"]

    try:
        churned, digits = run(scenario)
    finally:
        phone.close()
    assert churned > 20
    assert digits == ["6"]


def test_a_callee_still_ringing_costs_no_tick_work():
    """Until the callee's SDP sets its codec, a call is not transcoded (the worker used to
    decode the caller and send transcoded silence for every ringing call, because the callee's
    side defaulted to PCMU); once the codecs are known and differ, both sides are."""
    async def scenario(w, events):
        pair = await w.request({"cmd": "pair.create", "call": "r"})
        a, b = pair["a"]["endpoint"], pair["b"]["endpoint"]
        await w.request({"cmd": "endpoint.update", "endpoint": a, "ip": "127.0.0.1", "port": 9,
                         "codec": "PCMA", "pt": 8, "codecs": {8: "PCMA"}})
        ringing = await w.request({"cmd": "stats"})
        await w.request({"cmd": "endpoint.update", "endpoint": b, "ip": "127.0.0.1", "port": 11,
                         "codec": "PCMU", "pt": 0, "codecs": {0: "PCMU"}})
        answered = await w.request({"cmd": "stats"})
        return ringing, answered

    ringing, answered = run(scenario)
    assert (ringing["generating"], ringing["listening"]) == (0, 0)
    assert (answered["generating"], answered["listening"]) == (2, 2)


def test_amd_and_beep_in_the_worker():
    machine = RtpPhone("PCMU")

    async def scenario(w, events):
        ep = await attach(w, machine, "amd")
        await w.request({"cmd": "detect", "endpoint": ep["endpoint"], "amd": {}, "beep": True})
        # a long "greeting" (2 s of modulated noise), then a 1 kHz beep
        rng = np.random.default_rng(3)
        speech = (rng.standard_normal(16000) * 3000 * (1 + np.sin(np.arange(16000) / 400))).astype(np.int16)
        audio = np.concatenate([np.zeros(2400, np.int16), speech, np.zeros(2400, np.int16),
                                sine(1000, 0.5, 0.3), np.zeros(4000, np.int16)])
        machine.send(audio, ("127.0.0.1", ep["port"]))
        await asyncio.sleep(len(audio) / 8000 + 0.4)
        return [e for e in events if e.get("event") in ("amd", "beep")]

    try:
        got = run(scenario)
    finally:
        machine.close()
    amd = next(e for e in got if e["event"] == "amd")
    beep = next(e for e in got if e["event"] == "beep")
    assert amd["result"] == "MACHINE" and amd["cause"].startswith(("LONGGREETING", "MAXWORDS"))
    assert 980 <= beep["hz"] <= 1020 and 400 <= beep["tone_ms"] <= 600


def _with_extension_and_padding(packet: bytes) -> bytes:
    """The same RTP packet as a WebRTC stack sends it: an RFC 8285 one-byte header extension
    (ssrc-audio-level) after the fixed header, and 4 bytes of padding after the payload."""
    head, payload = packet[:12], packet[12:]
    extension = bytes([0xBE, 0xDE, 0x00, 0x01, 0x10, 0xAA, 0x00, 0x00])  # id 1, level 0xAA, pad
    padding = bytes([0xFF, 0xFF, 0xFF, 0x04])
    return bytes([head[0] | 0x10 | 0x20]) + head[1:] + extension + payload + padding


def test_header_extensions_and_padding_are_not_read_as_payload(tmp_path):
    """What the worker records and listens to is the payload only: a tone sent with extension
    headers and padding is recorded clean, and a key sent that way is heard."""
    from centralino.media.codecs import make_encoder
    from centralino.media.rtp import RtpPacket

    phone = RtpPhone("PCMU")
    path = tmp_path / "ext.wav"

    async def scenario(w, events):
        ep = await attach(w, phone, "ext", dtmf_pt=101)
        rec = await w.request({"cmd": "record.start", "a": ep["endpoint"], "b": None, "path": str(path)})
        assert rec["ok"], rec
        to = ("127.0.0.1", ep["port"])
        enc, tone = make_encoder("PCMU"), sine(1000, 1.5)
        for i in range(0, len(tone) - 159, 160):
            pkt = RtpPacket(0, i // 160, i, 0x77, enc.encode(tone[i:i + 160])).serialize()
            phone.sock.sendto(_with_extension_and_padding(pkt), to)
            await asyncio.sleep(0.02)
        for k, end in enumerate([False, False, True, True, True]):  # key 7, RFC 4733
            te = TelephoneEvent(7, end, 10, 160 * (k + 1)).serialize()
            pkt = RtpPacket(101, 100 + k, 12000, 0x77, te).serialize()
            phone.sock.sendto(_with_extension_and_padding(pkt), to)
        await asyncio.sleep(0.3)
        await w.request({"cmd": "record.stop", "recording": rec["recording"]})
        return [e for e in events if e.get("event") == "dtmf"]

    try:
        digits = run(scenario)
    finally:
        phone.close()
    assert [d["digit"] for d in digits] == ["7"]
    with wave.open(str(path)) as wav:
        left = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, 2)[:, 0]
    voiced = left[1600:9600]  # 0.2-1.2 s: the middle of the tone
    assert round(dominant(voiced), -1) == 1000
    # a clean sine has amplitude / rms = sqrt(2); 8 bytes of header read as audio in every
    # 20 ms frame (what happened before) add broadband noise and pull it well below
    assert level_at(voiced, 1000) / rms(voiced) > 1.35, level_at(voiced, 1000) / rms(voiced)


@pytest.mark.parametrize(("codec", "pt"), [("opus", 111), ("G722", 9), ("PCMU", 0)])
def test_jitter_is_reported_at_the_codecs_clock(codec, pt):
    """An Opus stream (48 kHz timestamps) or a G.722 one (8 kHz timestamps, RFC 3551) paced at
    50 packets/s on loopback has well under a millisecond of jitter; with a fixed 8 kHz clock
    every Opus call reported ~100 ms in its CDR."""
    phone = RtpPhone(codec, pt=pt)

    async def scenario(w, events):
        ep = await attach(w, phone, "jit")
        phone.send(sine(440, 1.5), ("127.0.0.1", ep["port"]), block=False)
        await asyncio.sleep(1.8)
        return await w.request({"cmd": "endpoint.stats", "endpoint": ep["endpoint"]})

    try:
        stats = run(scenario)
    finally:
        phone.close()
    assert stats["rx"] >= 70 and stats["lost"] == 0
    assert stats["jitter_ms"] < 5.0, stats


def test_pair_create_applies_the_caller_sides_first_update_in_the_same_round_trip():
    """`pair.create` with `first`: side a is pointed at the caller before the reply (a packet the
    callee sends comes out to the caller at once); a bad first update fails the command and
    leaves no endpoint behind."""
    import socket as socketlib

    caller = socketlib.socket(socketlib.AF_INET, socketlib.SOCK_DGRAM)
    callee = socketlib.socket(socketlib.AF_INET, socketlib.SOCK_DGRAM)
    for sock in (caller, callee):
        sock.bind(("127.0.0.1", 0))
    caller.settimeout(2)

    async def scenario(w, events):
        pair = await w.request({"cmd": "pair.create", "call": "f",
                                "first": {"cmd": "endpoint.update", "endpoint": "", "ip": "127.0.0.1",
                                          "port": caller.getsockname()[1], "codec": "PCMA", "pt": 8,
                                          "codecs": {8: "PCMA"}}})
        callee.sendto(RtpPacket(8, 1, 160, 7, b"\xd5" * 160).serialize(), ("127.0.0.1", pair["b"]["port"]))
        loop = asyncio.get_running_loop()
        data = await loop.run_in_executor(None, caller.recv, 2048)
        before = await w.request({"cmd": "stats"})
        bad = await w.request({"cmd": "pair.create", "call": "g",
                               "first": {"cmd": "endpoint.update", "endpoint": "", "ip": "127.0.0.1",
                                         "port": "not a port"}})
        after = await w.request({"cmd": "stats"})
        return pair, data, before, bad, after

    try:
        pair, data, before, bad, after = run(scenario)
    finally:
        caller.close()
        callee.close()
    assert pair["ok"] and RtpPacket.parse(data).payload == b"\xd5" * 160
    assert not bad["ok"] and after["endpoints"] == before["endpoints"] == 2
