"""The record storage's rows in memory (storage/sqlite.py): a row read once is served
without the reader thread, and a read never sees less than every write that has returned
(a write queued, committed, failed, or racing a read in flight)."""

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from strongroom.storage import sqlite as sqlite_module
from strongroom.storage.base import ObjectRow, StorageError, Write
from strongroom.storage.sqlite import SqliteStorage

VAULT, KIND = "v1", "secret"


def _put(name: str, head: bytes, versions: dict[str, bytes] | None = None) -> Write:
    write = Write(VAULT)
    write.put_objects.append((KIND, ObjectRow(name, head)))
    for version, body in (versions or {}).items():
        write.put_versions.append((KIND, name, version, body))
    return write


def _run(scenario: Callable[[SqliteStorage], Awaitable[None]], tmp_path: Path) -> None:
    async def main() -> None:
        storage = SqliteStorage(tmp_path / "records.db")
        await storage.open()
        try:
            await scenario(storage)
        finally:
            await storage.close()

    asyncio.run(main())


def _count_reads(storage: SqliteStorage) -> list[int]:
    """Counts the work handed to the reader thread."""
    reads = [0]
    run = storage._run

    async def counting(thread: Any, work: Any) -> Any:
        if thread is storage._reader_thread:
            reads[0] += 1
        return await run(thread, work)

    storage._run = counting  # type: ignore[method-assign]
    return reads


def test_a_row_read_once_is_served_again_without_the_reader_thread(tmp_path: Path) -> None:
    async def scenario(storage: SqliteStorage) -> None:
        await storage.write(_put("a", b"head-1", {"v1": b"body-1"}))
        reads = _count_reads(storage)
        first = await storage.get_object(VAULT, KIND, "a")
        again = await storage.get_object(VAULT, KIND, "a")
        assert first is not None and again == first
        assert again.head == b"head-1" and again.versions == {"v1": b"body-1"}
        assert reads[0] == 1
        assert await storage.get_object(VAULT, KIND, "missing") is None
        assert await storage.get_object(VAULT, KIND, "missing") is None
        assert reads[0] == 3  # an absent row is not kept

    _run(scenario, tmp_path)


def test_every_write_that_returned_is_seen_by_the_next_read(tmp_path: Path) -> None:
    async def scenario(storage: SqliteStorage) -> None:
        await storage.write(_put("a", b"head-1", {"v1": b"body-1"}))
        assert (await storage.get_object(VAULT, KIND, "a")).head == b"head-1"  # type: ignore[union-attr]
        await storage.write(_put("a", b"head-2", {"v2": b"body-2"}))
        row = await storage.get_object(VAULT, KIND, "a")
        assert row is not None and row.head == b"head-2"
        assert row.versions == {"v1": b"body-1", "v2": b"body-2"}
        # A version alone (no head) drops the row too.
        version_only = Write(VAULT, put_versions=[(KIND, "a", "v3", b"body-3")])
        await storage.write(version_only)
        row = await storage.get_object(VAULT, KIND, "a")
        assert row is not None and set(row.versions or {}) == {"v1", "v2", "v3"}
        await storage.write(Write(VAULT, delete_objects=[(KIND, "a")]))
        assert await storage.get_object(VAULT, KIND, "a") is None

    _run(scenario, tmp_path)


def test_a_read_racing_a_write_is_not_kept(tmp_path: Path) -> None:
    """The read runs its SQL before the write commits and returns after the write has
    returned: it may answer the old row, but must not keep it for the reads after."""

    async def scenario(storage: SqliteStorage) -> None:
        await storage.write(_put("a", b"old"))
        gate = asyncio.Event()
        run = storage._run

        async def held(thread: Any, work: Any) -> Any:
            result = await run(thread, work)
            if thread is storage._reader_thread and not gate.is_set():
                await gate.wait()  # the read is done in the database, not yet returned
            return result

        storage._run = held  # type: ignore[method-assign]
        racing = asyncio.create_task(storage.get_object(VAULT, KIND, "a"))
        await asyncio.sleep(0.2)
        await storage.write(_put("a", b"new"))
        gate.set()
        stale = await racing
        assert stale is not None and stale.head == b"old"
        row = await storage.get_object(VAULT, KIND, "a")
        assert row is not None and row.head == b"new"

    _run(scenario, tmp_path)


def test_a_write_that_fails_drops_the_rows_it_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(storage: SqliteStorage) -> None:
        await storage.write(_put("a", b"head-1"))
        assert await storage.get_object(VAULT, KIND, "a") is not None
        reads = _count_reads(storage)

        def failing(changes: list[Write]) -> None:
            raise sqlite_module.sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(storage, "_commit", failing)
        with pytest.raises(StorageError):
            await storage.write(_put("a", b"head-2"))
        row = await storage.get_object(VAULT, KIND, "a")
        assert row is not None and row.head == b"head-1"
        assert reads[0] == 1  # read again from the database, not from memory
        # The failed write is over: rows are kept again.
        assert await storage.get_object(VAULT, KIND, "a") == row
        assert reads[0] == 1

    _run(scenario, tmp_path)


def test_the_rows_kept_stay_within_their_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "ROW_CACHE_BYTES", 16 * 1000)

    async def scenario(storage: SqliteStorage) -> None:
        for index in range(50):
            await storage.write(_put(f"n{index:02d}", b"h" * 900))
        for index in range(50):
            assert await storage.get_object(VAULT, KIND, f"n{index:02d}") is not None
        assert storage._rows_bytes <= 16 * 1000
        assert len(storage._rows) == 17  # 17 rows of 900 bytes fit in 16,000, 18 do not
        assert ("v1", KIND, "n49") in storage._rows and ("v1", KIND, "n00") not in storage._rows
        await storage.write(_put("big", b"h" * 1001))  # over a sixteenth of the bound
        assert await storage.get_object(VAULT, KIND, "big") is not None
        assert ("v1", KIND, "big") not in storage._rows

    _run(scenario, tmp_path)
