"""The log path: records leave the calling thread as queued records and a writer thread writes
them, in order, with the message fixed at the call, tracebacks rendered, gaps reported."""

from __future__ import annotations

import io
import json
import logging
import queue
import threading

import pytest
from centralino import logsetup


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    logsetup.stop_logging()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_records_are_written_by_the_writer_thread_in_order_with_the_message_fixed(capsys) -> None:
    logsetup.setup_logging("info")
    writer_threads: set[str] = set()
    handler = logsetup._writer.handlers[0]
    original = handler.emit

    def spying_emit(record: logging.LogRecord) -> None:
        writer_threads.add(threading.current_thread().name)
        original(record)

    handler.emit = spying_emit  # type: ignore[method-assign]
    log = logging.getLogger("centralino.test")
    state = {"n": 0}
    for i in range(200):
        state["n"] = i
        log.info("call %d state %s", i, state)  # the dict changes after the call
    state["n"] = -1
    log.debug("not at info")
    logsetup.stop_logging()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 200
    for i, line in enumerate(lines):
        assert line.endswith(f"centralino.test: call {i} state {{'n': {i}}}")
    assert writer_threads and threading.current_thread().name not in writer_threads


def test_json_lines_keep_fields_and_the_traceback(capsys) -> None:
    logsetup.setup_logging("info", "json")
    log = logging.getLogger("centralino.test")
    try:
        raise ValueError("bad thing")
    except ValueError:
        log.exception("failed %s", "here", extra={"kv": {"call": "c-1"}})
    logsetup.stop_logging()
    obj = json.loads(capsys.readouterr().err.strip())
    assert obj["msg"] == "failed here" and obj["call"] == "c-1" and obj["level"] == "error"
    assert "ValueError: bad thing" in obj["exc"]


def test_a_full_queue_counts_drops_and_the_writer_reports_the_gap() -> None:
    q: queue.Queue = queue.Queue(2)
    front = logsetup._QueueingHandler(q)
    log = logging.getLogger("centralino.test.drops")
    log.propagate = False
    log.addHandler(front)
    try:
        for i in range(5):
            log.warning("record %d", i)
    finally:
        log.removeHandler(front)
    assert front.dropped == 3
    out = io.StringIO()
    target = logging.StreamHandler(out)
    target.setFormatter(logging.Formatter("%(name)s %(message)s"))
    writer = logsetup._Writer(q, target, front)
    writer.start()
    writer.stop()
    assert out.getvalue().splitlines() == [
        "centralino.log 3 log records dropped: the log writer fell behind",
        "centralino.test.drops record 0",
        "centralino.test.drops record 1",
    ]


def test_unthreaded_mode_writes_at_once(capsys) -> None:
    logsetup.setup_logging("info", threaded=False)
    logging.getLogger("centralino.test").warning("now")
    assert capsys.readouterr().err.rstrip().endswith("centralino.test: now")
