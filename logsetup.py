"""Structured logging: 'text' (human, key=value) or 'json' (one object per line).

The switch logs a few INFO lines per call at its default level, so a log call must cost the event
loop next to nothing: the calling thread only fixes the message (``%`` applied, so a mutable
argument cannot change it later) and queues the record; a writer thread formats the timestamp and
fields and writes to stderr. Records are written in order and flushed at exit (``stop_logging``,
also registered with ``atexit``); a burst beyond ``QUEUE_LIMIT`` unwritten records is counted
and reported instead of growing memory without bound.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
import sys
import threading
import time

QUEUE_LIMIT = 100_000  # records waiting for the writer; past it they are counted as dropped


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        line = f"{ts} {record.levelname:<7} {record.name}: {record.getMessage()}"
        kv = getattr(record, "kv", None)
        if kv:
            line += " " + " ".join(f"{k}={v}" for k, v in kv.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:  # rendered by the queueing handler
            line += "\n" + record.exc_text
        return line


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        obj = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        kv = getattr(record, "kv", None)
        if kv:
            obj.update(kv)
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            obj["exc"] = record.exc_text
        return json.dumps(obj, default=str)


class _QueueingHandler(logging.handlers.QueueHandler):
    """Hands records to the writer thread; only the message text is fixed here."""

    def __init__(self, q: queue.Queue[logging.LogRecord | None]) -> None:
        super().__init__(q)
        self.dropped = 0
        self._dropped_lock = threading.Lock()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info:  # a traceback keeps frames alive: render it now, in this thread
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            with self._dropped_lock:
                self.dropped += 1


class _Writer(logging.handlers.QueueListener):
    def __init__(self, q: queue.Queue[logging.LogRecord | None], target: logging.Handler,
                 source: _QueueingHandler) -> None:
        super().__init__(q, target)
        self.source = source
        self.reported = 0

    def enqueue_sentinel(self) -> None:
        self.queue.put(self._sentinel)  # type: ignore[attr-defined]  # waits if the queue is full

    def handle(self, record: logging.LogRecord) -> None:
        dropped = self.source.dropped
        if dropped != self.reported:  # tell the reader the log has a gap, once per burst
            gap = logging.LogRecord("centralino.log", logging.WARNING, __file__, 0,
                                    "%d log records dropped: the log writer fell behind", (dropped - self.reported,), None)
            self.reported = dropped
            super().handle(gap)
        super().handle(record)


_writer: _Writer | None = None


def stop_logging() -> None:
    """Write out what is queued and stop the writer thread (idempotent)."""
    global _writer
    writer, _writer = _writer, None
    if writer is not None:
        writer.stop()
        for handler in writer.handlers:
            handler.flush()


def setup_logging(level: str = "info", fmt: str = "text", *, sip_trace: bool = False,
                  threaded: bool = True) -> None:
    global _writer
    stop_logging()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger()
    if threaded:
        q: queue.Queue[logging.LogRecord | None] = queue.Queue(QUEUE_LIMIT)
        front = _QueueingHandler(q)
        _writer = _Writer(q, handler, front)
        _writer.start()
        atexit.register(stop_logging)
        root.handlers[:] = [front]
        # Nothing we format reads the caller's file, line, thread or process: skip finding them.
        logging._srcfile = None  # type: ignore[attr-defined]  # documented in the logging HOWTO, "Optimization"
        logging.logThreads = False
        logging.logProcesses = False
        logging.logMultiprocessing = False
    else:
        root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
    trace = logging.getLogger("centralino.sip.trace")
    trace.setLevel(logging.INFO if sip_trace else logging.WARNING)
