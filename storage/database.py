"""The embedded store: one SQLite database (WAL) through aiosqlite, with versioned migrations.

Writes that must be durable before we answer (a REGISTER's binding) go through ``write()``:
concurrent writers are grouped into one transaction, so a burst of REGISTERs costs one commit.
WAL with synchronous=NORMAL survives a killed process (kill -9); FULL also survives power loss.

A file database commits on a connection of its own, in a writer thread, one hand-over per
transaction (BEGIN, the statements and COMMIT run there together): through aiosqlite each
statement was a hand-over between threads, and with the event loop's thread busy each one waited
for the interpreter lock, so a commit took tens of milliseconds under load. Reads go through
aiosqlite and see every committed write (WAL). ``:memory:`` has no second connection to the same
data, so it keeps writing through aiosqlite.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiosqlite

from ..private_files import private_file
from .migrations import MIGRATIONS

log = logging.getLogger("centralino.storage")
MAX_WRITERS = 256  # writers (calls' CDRs, queue-log rows) sharing one ordinary transaction

Statement = tuple[str, Sequence[Any]]


def storage_path(url: str) -> str:
    """'sqlite:///abs/path.db' → '/abs/path.db'; 'sqlite:rel.db' → 'rel.db'; a bare path as is."""
    if url.startswith("sqlite://"):
        return url[len("sqlite://"):]
    if url.startswith("sqlite:"):
        return url[len("sqlite:"):]
    return url


def read_rows(path: str, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """A read-only query for command-line tools (cdr, report); a database not migrated yet
    (no such table) reads as empty."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()


class Database:
    def __init__(self, path: str, *, synchronous: str = "NORMAL") -> None:
        self.path = path
        self._synchronous = synchronous
        self._db: aiosqlite.Connection | None = None
        self._pending: list[tuple[list[Statement], asyncio.Future[None]]] = []
        self._urgent: list[tuple[list[Statement], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._checkpointer: aiosqlite.Connection | None = None
        self._checkpoint_task: asyncio.Task[None] | None = None
        self._writer: ThreadPoolExecutor | None = None  # the writer thread (file databases)
        self._write_conn: sqlite3.Connection | None = None  # used only in that thread

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("database is not open")
        return self._db

    async def open(self) -> None:
        if self.path != ":memory:":
            private_file(Path(self.path))
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        self._db.row_factory = aiosqlite.Row
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute(f"PRAGMA synchronous={self._synchronous}")
        await self._db.execute("PRAGMA foreign_keys=ON")
        await self._db.execute("PRAGMA busy_timeout=5000")
        await self.migrate()
        if self.path != ":memory:":
            # Checkpoints (which fsync) run on their own connection and thread, so a commit —
            # and the REGISTER waiting on it — never stalls behind one.
            await self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = await aiosqlite.connect(self.path, isolation_level=None)
            await self._checkpointer.execute("PRAGMA busy_timeout=5000")
            self._checkpoint_task = asyncio.create_task(self._checkpoint_loop())
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="centralino-db-writer")
            await asyncio.get_running_loop().run_in_executor(self._writer, self._open_writer)

    def _open_writer(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's business
        self._write_conn = conn

    def _commit_sync(self, runs: list[tuple[str, list[Sequence[Any]]]]) -> None:
        """One transaction in the writer thread: every run of same-SQL statements, then COMMIT."""
        conn = self._write_conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in runs:
                conn.executemany(sql, params)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _close_writer(self) -> None:
        if self._write_conn is not None:
            self._write_conn.close()
            self._write_conn = None

    async def migrate(self) -> int:
        db = self.conn
        await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        async with db.execute("SELECT MAX(version) FROM schema_version") as cur:
            row = await cur.fetchone()
        current = row[0] or 0
        for version, sql in MIGRATIONS:
            if version <= current:
                continue
            log.info("applying migration %d", version)
            await db.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _split_sql(sql):
                    await db.execute(stmt)
                await db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            current = version
        return current

    async def _checkpoint_loop(self, interval: float = 5.0) -> None:
        assert self._checkpointer is not None
        while True:
            await asyncio.sleep(interval)
            try:
                await self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except aiosqlite.Error as exc:  # busy: the next round catches up
                log.debug("checkpoint skipped: %s", exc)

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        if self._writer is not None:
            await asyncio.get_running_loop().run_in_executor(self._writer, self._close_writer)
            self._writer.shutdown(wait=True)
            self._writer = None
        if self._checkpoint_task is not None:
            self._checkpoint_task.cancel()
            try:
                await self._checkpoint_task
            except asyncio.CancelledError:
                pass
        if self._checkpointer is not None:
            await self._checkpointer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            await self._checkpointer.close()
            self._checkpointer = None
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        async with self.conn.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        async with self.conn.execute(sql, params) as cur:
            return await cur.fetchone()

    async def write(self, statements: Iterable[Statement], *, urgent: bool = False) -> None:
        """Run statements atomically and durably; returns once they are committed.

        Writers waiting together share one transaction. ``urgent`` ones (a registration, whose
        200 waits for its commit) go first, in a transaction of their own, so they never queue
        behind a flood's worth of CDR rows; other transactions take at most ``MAX_WRITERS``
        writers, so the wait of an urgent one is bounded by one of them."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (self._urgent if urgent else self._pending).append((list(statements), fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await fut

    def _next_batch(self) -> list[tuple[list[Statement], asyncio.Future[None]]]:
        if self._urgent:
            batch, self._urgent = self._urgent, []
            return batch
        batch, self._pending = self._pending[:MAX_WRITERS], self._pending[MAX_WRITERS:]
        return batch

    async def _flush(self) -> None:
        while self._pending or self._urgent:
            batch = self._next_batch()
            runs = _runs(batch)
            try:
                if self._writer is not None:
                    await asyncio.get_running_loop().run_in_executor(self._writer, self._commit_sync, runs)
                else:
                    await self._commit_async(runs)
            except Exception as exc:  # report to every writer of the batch, keep the flusher alive
                _settle(batch, exc)
                continue
            _settle(batch, None)

    async def _commit_async(self, runs: list[tuple[str, list[Sequence[Any]]]]) -> None:
        """The same transaction through aiosqlite (``:memory:``, which has no second connection)."""
        db = self.conn
        await db.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in runs:
                await db.executemany(sql, params)
            await db.execute("COMMIT")
        except BaseException:
            try:
                await db.execute("ROLLBACK")
            except Exception:
                pass
            raise


Batch = list[tuple[list[Statement], "asyncio.Future[None]"]]


def _runs(batch: Batch) -> list[tuple[str, list[Sequence[Any]]]]:
    """Consecutive statements with the same SQL, across the batch's writers: one executemany each."""
    runs: list[tuple[str, list[Sequence[Any]]]] = []
    for statements, _ in batch:
        for sql, params in statements:
            if runs and runs[-1][0] == sql:
                runs[-1][1].append(params)
            else:
                runs.append((sql, [params]))
    return runs


def _settle(batch: Batch, exc: Exception | None) -> None:
    for _, fut in batch:
        if not fut.done():
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
