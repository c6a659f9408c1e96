"""The store's writer: transactions in a writer thread of their own, urgent writers (a REGISTER's
binding) ahead of a backlog of ordinary ones, ordinary transactions of bounded size."""

from __future__ import annotations

import asyncio
import sqlite3

from centralino.storage import database
from centralino.storage.database import Database


def test_an_urgent_write_overtakes_a_backlog_and_every_write_is_committed(tmp_path, monkeypatch):
    monkeypatch.setattr(database, "MAX_WRITERS", 50)
    path = tmp_path / "store.db"
    done: list[str] = []

    async def main() -> None:
        db = Database(str(path))
        await db.open()
        try:
            await db.write([("CREATE TABLE IF NOT EXISTS t (n INTEGER, kind TEXT)", ())])

            async def one(n: int, urgent: bool) -> None:
                kind = "urgent" if urgent else "ordinary"
                await db.write([("INSERT INTO t VALUES (?, ?)", (n, kind))], urgent=urgent)
                done.append(kind)

            ordinary = [asyncio.ensure_future(one(n, False)) for n in range(300)]
            await asyncio.sleep(0)  # the first transaction (50 writers) is under way
            urgent = asyncio.ensure_future(one(-1, True))
            await asyncio.gather(*ordinary, urgent)
            assert db._writer is not None  # a file database commits in its writer thread
        finally:
            await db.close()

    asyncio.run(main())
    assert done.index("urgent") <= 100  # after at most the two transactions already taken
    rows = sqlite3.connect(path).execute("SELECT kind, COUNT(*) FROM t GROUP BY kind ORDER BY kind").fetchall()
    assert rows == [("ordinary", 300), ("urgent", 1)]


def test_a_failing_transaction_fails_its_writers_and_the_next_one_commits(tmp_path):
    path = tmp_path / "store.db"

    async def main() -> tuple[str, list[int]]:
        db = Database(str(path))
        await db.open()
        try:
            await db.write([("CREATE TABLE IF NOT EXISTS u (n INTEGER PRIMARY KEY)", ())])
            await db.write([("INSERT INTO u VALUES (1)", ())])
            try:
                await db.write([("INSERT INTO u VALUES (2)", ()), ("INSERT INTO u VALUES (1)", ())])
                error = ""
            except sqlite3.IntegrityError as exc:
                error = str(exc)
            await db.write([("INSERT INTO u VALUES (3)", ())])
            rows = await db.fetchall("SELECT n FROM u ORDER BY n")
            return error, [r[0] for r in rows]
        finally:
            await db.close()

    error, rows = asyncio.run(main())
    assert "UNIQUE" in error and rows == [1, 3]  # the failed transaction left nothing behind
