"""The event bus: sequence numbers, routing by type, isolation of subscribers (a raising one, a
slow one), durable subscribers awaited, and a JSON form for every event type."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import typing

import pytest
from centralino import events as ev
from centralino.events import CallDtmf, CallEvent, CallTrying, Event, EventBus, QueueLogRow, to_json


def sample(cls: type[Event]) -> Event:
    """An instance of any event class, every field filled with a value of its type."""
    hints = typing.get_type_hints(cls)
    values: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        if f.name in ("at", "seq"):
            continue
        hint = hints[f.name]
        text = str(hint)
        if hint is str or text == "str":
            values[f.name] = f"{f.name}-x"
        elif hint is int:
            values[f.name] = 7
        elif hint is float:
            values[f.name] = 1.5
        elif hint is bool:
            values[f.name] = True
        elif "QueueLogRow" in text:
            values[f.name] = QueueLogRow(12.0, "ENTER", "c1", "sales", position=1)
        elif "CdrRecord" in text:
            values[f.name] = (ev.CdrRecord("c1", "call", 1.0, 2.0, "ANSWERED"),)
        elif "bool" in text or "float" in text:
            values[f.name] = None
        else:
            values[f.name] = f"{f.name}-x"
    return cls(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", ev.event_types(), ids=lambda c: c.type)
def test_every_event_type_has_a_json_form(cls):
    bus = EventBus()
    event = bus.publish(sample(cls))
    data = to_json(event)
    assert data["type"] == cls.type and data["seq"] == 1 and isinstance(data["at"], float)
    assert json.loads(json.dumps(data)) == data  # JSON-ready: no dataclasses, enums or tuples left
    assert set(data) == {"type", "seq", "at"} | {f.name for f in dataclasses.fields(cls) if f.name not in ("at", "seq")}


def test_every_event_the_issue_names_exists():
    names = {c.__name__ for c in ev.event_types()}
    assert {"CallTrying", "CallRinging", "CallAnswered", "CallConnected", "CallDisconnected", "CallFailed",
            "CallDtmf", "CallOriginated", "CallEnded", "AmdResult", "BeepDetected", "RecordingReady",
            "AgentStateChanged", "QueueEntered", "QueueLeft", "QueueConnected", "QueueAbandoned",
            "CallbackRequested", "VoicemailLeft", "RegistrationChanged", "TrunkStateChanged",
            "SecurityEvent"} <= names


def test_sequence_numbers_and_routing_by_type():
    bus = EventBus()
    calls, dtmf, everything = [], [], []
    bus.subscribe(calls.append, CallEvent)
    bus.subscribe(dtmf.append, CallDtmf)
    bus.subscribe(everything.append)
    bus.publish(CallTrying("c1", caller="1001", called="1002", source="extension"))
    bus.publish(CallDtmf("c1", digit="5", side="caller", duration_ms=100))
    bus.publish(ev.TrunkStateChanged(trunk="t", reachable=False, registered=False, reason="down"))
    assert [e.seq for e in everything] == [1, 2, 3]
    assert [type(e) for e in calls] == [CallTrying, CallDtmf] and [e.digit for e in dtmf] == ["5"]
    assert bus.wants(ev.VoicemailLeft)  # the catch-all subscriber wants every type
    quiet = EventBus()
    quiet.subscribe(calls.append, CallEvent)
    assert quiet.wants(CallDtmf) and not quiet.wants(ev.TrunkStateChanged)


def test_a_raising_subscriber_does_not_stop_the_others(caplog):
    bus = EventBus()
    got = []

    def broken(event):
        raise RuntimeError("boom")

    bus.subscribe(broken)
    bus.subscribe(got.append)
    bus.publish(CallTrying("c1", caller="a", called="b", source="extension"))
    assert len(got) == 1 and "boom" in caplog.text


def test_a_slow_async_subscriber_does_not_hold_up_publishing_and_keeps_order():
    async def main():
        bus = EventBus()
        seen: list[int] = []
        release = asyncio.Event()

        async def slow(event):
            await release.wait()
            seen.append(event.seq)

        bus.subscribe(slow)
        for i in range(50):
            bus.publish(CallDtmf(f"c{i}", digit="1", side="caller", duration_ms=0))  # returns at once
        assert seen == []
        release.set()
        await bus.drain()
        return seen

    assert asyncio.run(main()) == list(range(1, 51))


def test_a_subscriber_far_behind_loses_its_oldest_events_only(monkeypatch):
    monkeypatch.setattr(ev, "QUEUE_LIMIT", 10)

    async def main():
        bus = EventBus()
        seen: list[int] = []
        gate = asyncio.Event()

        async def stuck(event):
            await gate.wait()
            seen.append(event.seq)

        sub = bus.subscribe(stuck)
        for _ in range(25):
            bus.publish(CallDtmf("c", digit="1", side="caller", duration_ms=0))
        gate.set()
        await bus.drain()
        return seen, sub.dropped

    seen, dropped = asyncio.run(main())
    assert dropped >= 14 and seen[-1] == 25 and seen == sorted(seen)


def test_durable_subscribers_are_awaited_by_publish_durable():
    async def main():
        bus = EventBus()
        order: list[str] = []

        async def writer(event):
            await asyncio.sleep(0.01)
            order.append("written")

        bus.subscribe(writer, ev.CallEnded, durable=True)
        await bus.publish_durable(ev.CallEnded("c1", records=()))
        order.append("forgotten")
        return order

    assert asyncio.run(main()) == ["written", "forgotten"]


def test_a_durable_subscriber_must_be_async():
    with pytest.raises(ValueError):
        EventBus().subscribe(lambda e: None, durable=True)


def test_the_api_event_tail_gives_events_after_a_sequence_number_and_long_polls_for_more():
    from centralino.api.events import EventTail
    from centralino.events import DialerAttempt, LeadConnected, TrunkStateChanged

    async def main():
        bus = EventBus()
        tail = EventTail(bus, keep=3)
        bus.publish(TrunkStateChanged(trunk="t", reachable=True, registered=False, reason="up"))
        first = bus.publish(DialerAttempt(campaign="c", lead_id=1, phone="+7", outcome="busy", call_id="call-0", ring_seconds=2.0))
        found, last = tail.since(0, ("dialer.",))
        assert [e["type"] for e in found] == ["dialer.attempt"] and last == first.seq
        assert tail.since(last) == ([], last)
        waiting = asyncio.ensure_future(tail.wait(last, ("dialer.connected",), 5.0))
        await asyncio.sleep(0)
        bus.publish(TrunkStateChanged(trunk="t", reachable=False, registered=False, reason="down"))  # not what it waits for
        await asyncio.sleep(0)
        assert not waiting.done()
        card = bus.publish(LeadConnected("call-1", campaign="c", lead_id=1, agent="1002", phone="+7", name="Ivan",
                                         fields={"amount": "12"}))
        found, last = await asyncio.wait_for(waiting, 1.0)
        assert [e["fields"] for e in found] == [{"amount": "12"}] and last == card.seq
        # nothing new: the wait ends empty at its timeout
        assert await tail.wait(last, (), 0.05) == ([], last)
        for i in range(5):  # a bounded buffer: the oldest are gone
            bus.publish(TrunkStateChanged(trunk="t", reachable=True, registered=False, reason=str(i)))
        assert len(tail.since(0)[0]) == 3

    asyncio.run(main())
