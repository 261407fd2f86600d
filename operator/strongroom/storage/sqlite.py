"""The default storage: one SQLite database in WAL mode on the pool's volume.

No extra service: the database is a file next to the HSM's token directory. Writes go
through one writer thread that commits whatever is queued in one transaction (group
commit), with `synchronous=FULL`, so each write is durable (its WAL frames synced)
before any waiter is told it is done; concurrent writers share one sync instead of
queueing for one each. Reads run on a second thread with their own connection: in WAL
mode they never wait for a commit in progress.

An object's row (its sealed head and sealed versions, as on disk) is kept in memory once
read, up to `ROW_CACHE_BYTES`, least recently used first out: a point read of a row held
here (a secret's GET) skips the reader thread, whose hand-over costs more CPU than the
read itself. Every write drops the rows it touches when it is queued and again when its
commit ends, and a row read while any write was queued or committing is not kept: a read
never sees less than every write that has returned. Nothing here is ever in clear.
"""

import asyncio
import functools
import logging
import sqlite3
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .base import ObjectRow, StorageError, Write

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    vault TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    head BLOB NOT NULL,
    deleted INTEGER NOT NULL,
    purge_at INTEGER,
    scheduled INTEGER NOT NULL,
    PRIMARY KEY (vault, kind, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS objects_by_state ON objects (vault, kind, deleted, name);
CREATE INDEX IF NOT EXISTS objects_by_purge ON objects (vault, kind, purge_at)
    WHERE purge_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS objects_scheduled ON objects (vault, kind, name) WHERE scheduled = 1;
CREATE TABLE IF NOT EXISTS versions (
    vault TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (vault, kind, name, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    vault TEXT NOT NULL,
    name TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (vault, name)
) WITHOUT ROWID;
"""

# The most writes one group commit takes; the rest wait for the next.
MAX_GROUP = 256
# Sealed rows kept in memory (bytes of head and versions); a row larger than a sixteenth of
# this is never kept.
ROW_CACHE_BYTES = 16 * 1024 * 1024


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=OFF")
    return connection


class SqliteStorage:
    """`Storage` on one SQLite file; see the module's docstring for the threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer_thread = ThreadPoolExecutor(1, thread_name_prefix="storage-writer")
        self._reader_thread = ThreadPoolExecutor(1, thread_name_prefix="storage-reader")
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._queue: list[tuple[Write, asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None
        # Sealed rows by (vault, kind, name), with their sizes; `_writes` counts the writes
        # queued or committing, `_epoch` every start and end of one.
        self._rows: OrderedDict[tuple[str, str, str], tuple[ObjectRow, int]] = OrderedDict()
        self._rows_bytes = 0
        self._writes = 0
        self._epoch = 0

    # --- life -----------------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)

        def setup() -> sqlite3.Connection:
            connection = _connect(self.path)
            connection.executescript(SCHEMA)
            return connection

        self._writer = await self._run(self._writer_thread, setup)
        self.path.chmod(0o600)
        self._reader = await self._run(self._reader_thread, lambda: _connect(self.path))

    async def close(self) -> None:
        if self._flushing is not None:
            await asyncio.shield(self._flushing)
        for connection, thread in (
            (self._reader, self._reader_thread),
            (self._writer, self._writer_thread),
        ):
            if connection is not None:
                await self._run(thread, connection.close)
        self._reader = self._writer = None
        self._rows.clear()
        self._rows_bytes = 0

    @staticmethod
    async def _run(thread: ThreadPoolExecutor, work: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(thread, work)
        except sqlite3.Error as exc:
            raise StorageError(f"the record database failed: {type(exc).__name__}") from exc

    async def _read(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        reader = self._reader
        if reader is None:
            raise StorageError("the record database is not open")
        rows: list[tuple[Any, ...]] = await self._run(
            self._reader_thread, lambda: reader.execute(sql, params).fetchall()
        )
        return rows

    # --- writes ---------------------------------------------------------------

    async def write(self, change: Write) -> None:
        if change.empty():
            return
        self._forget(change, starts=True)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((change, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        # The commit goes on if this caller is cancelled: others share it.
        await asyncio.shield(future)

    async def _flush(self) -> None:
        while self._queue:
            group, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
            changes = [w for w, _ in group]
            try:
                await self._run(self._writer_thread, functools.partial(self._commit, changes))
            except StorageError as exc:
                if len(group) > 1:
                    # One bad write must not fail the others: commit each on its own.
                    for change, future in group:
                        try:
                            await self._run(
                                self._writer_thread, functools.partial(self._commit, [change])
                            )
                        except StorageError as single:
                            self._forget(change, starts=False)
                            future.set_exception(single)
                        else:
                            self._forget(change, starts=False)
                            future.set_result(None)
                    continue
                self._forget(group[0][0], starts=False)
                group[0][1].set_exception(exc)
                continue
            for change, future in group:
                self._forget(change, starts=False)
                if not future.done():
                    future.set_result(None)

    def _commit(self, changes: list[Write]) -> None:
        connection = self._writer
        if connection is None:
            raise sqlite3.OperationalError("not open")
        connection.execute("BEGIN IMMEDIATE")
        try:
            for change in changes:
                self._apply(connection, change)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    @staticmethod
    def _apply(connection: sqlite3.Connection, change: Write) -> None:
        vault = change.vault
        for kind, name in change.delete_objects:
            connection.execute(
                "DELETE FROM versions WHERE vault=? AND kind=? AND name=?", (vault, kind, name)
            )
            connection.execute(
                "DELETE FROM objects WHERE vault=? AND kind=? AND name=?", (vault, kind, name)
            )
        for kind, name, version, body in change.put_versions:
            connection.execute(
                "INSERT OR REPLACE INTO versions VALUES (?,?,?,?,?)",
                (vault, kind, name, version, body),
            )
        for kind, row in change.put_objects:
            connection.execute(
                "INSERT OR REPLACE INTO objects VALUES (?,?,?,?,?,?,?)",
                (
                    vault,
                    kind,
                    row.name,
                    row.head,
                    int(row.deleted),
                    row.purge_at,
                    int(row.scheduled),
                ),
            )
        for name in change.delete_meta:
            connection.execute("DELETE FROM meta WHERE vault=? AND name=?", (vault, name))
        for name, value in change.put_meta:
            connection.execute("INSERT OR REPLACE INTO meta VALUES (?,?,?)", (vault, name, value))

    # --- the rows kept in memory ------------------------------------------------------

    def _forget(self, change: Write, *, starts: bool) -> None:
        """Drop the rows `change` touches, as it is queued (`starts`) and as its commit
        ends, failed or not."""
        self._epoch += 1
        self._writes += 1 if starts else -1
        vault = change.vault
        touched = {(vault, kind, row.name) for kind, row in change.put_objects}
        touched.update((vault, kind, name) for kind, name, _, _ in change.put_versions)
        touched.update((vault, kind, name) for kind, name in change.delete_objects)
        for key in touched:
            kept = self._rows.pop(key, None)
            if kept is not None:
                self._rows_bytes -= kept[1]

    def _keep(self, key: tuple[str, str, str], row: ObjectRow) -> None:
        size = len(row.head) + sum(len(v) + len(b) for v, b in (row.versions or {}).items())
        if size > ROW_CACHE_BYTES // 16:
            return
        earlier = self._rows.pop(key, None)  # two reads of one row may both end here
        if earlier is not None:
            self._rows_bytes -= earlier[1]
        self._rows[key] = (row, size)
        self._rows_bytes += size
        while self._rows_bytes > ROW_CACHE_BYTES:
            _, (_, dropped) = self._rows.popitem(last=False)
            self._rows_bytes -= dropped

    # --- reads ------------------------------------------------------------------

    async def get_object(self, vault: str, kind: str, name: str) -> ObjectRow | None:
        """The row as `Storage` says; the caller must not change it (it may be shared)."""
        key = (vault, kind, name)
        kept = self._rows.get(key)
        if kept is not None:
            self._rows.move_to_end(key)
            return kept[0]
        reader = self._reader
        if reader is None:
            raise StorageError("the record database is not open")
        epoch = self._epoch

        def read() -> ObjectRow | None:
            rows = reader.execute(
                "SELECT name, head, deleted, purge_at, scheduled FROM objects "
                "WHERE vault=? AND kind=? AND name=?",
                (vault, kind, name),
            ).fetchall()
            if not rows:
                return None
            versions = reader.execute(
                "SELECT version, body FROM versions WHERE vault=? AND kind=? AND name=?",
                (vault, kind, name),
            ).fetchall()
            return _row(rows[0], {v: bytes(b) for v, b in versions})

        found: ObjectRow | None = await self._run(self._reader_thread, read)
        if found is not None and self._epoch == epoch and not self._writes:
            self._keep(key, found)
        return found

    async def get_versions(
        self, vault: str, kind: str, names: list[str]
    ) -> dict[str, dict[str, bytes]]:
        out: dict[str, dict[str, bytes]] = {name: {} for name in names}
        for start in range(0, len(names), 500):
            chunk = names[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = await self._read(
                f"SELECT name, version, body FROM versions WHERE vault=? AND kind=? "  # noqa: S608 - placeholders only
                f"AND name IN ({marks})",
                (vault, kind, *chunk),
            )
            for name, version, body in rows:
                out[name][version] = bytes(body)
        return out

    async def page(
        self, vault: str, kind: str, *, deleted: bool, after: str, limit: int
    ) -> list[ObjectRow]:
        rows = await self._read(
            "SELECT name, head, deleted, purge_at, scheduled FROM objects "
            "WHERE vault=? AND kind=? AND deleted=? AND name>? ORDER BY name LIMIT ?",
            (vault, kind, int(deleted), after, limit),
        )
        return [_row(r) for r in rows]

    async def count(self, vault: str, kind: str) -> int:
        rows = await self._read(
            "SELECT count(*) FROM objects WHERE vault=? AND kind=?", (vault, kind)
        )
        return int(rows[0][0])

    async def due_purges(self, vault: str, kind: str, moment: int, limit: int) -> list[str]:
        rows = await self._read(
            "SELECT name FROM objects WHERE vault=? AND kind=? AND purge_at IS NOT NULL "
            "AND purge_at<=? ORDER BY purge_at LIMIT ?",
            (vault, kind, moment, limit),
        )
        return [r[0] for r in rows]

    async def scheduled(self, vault: str, kind: str, after: str, limit: int) -> list[str]:
        rows = await self._read(
            "SELECT name FROM objects WHERE vault=? AND kind=? AND scheduled=1 AND name>? "
            "ORDER BY name LIMIT ?",
            (vault, kind, after, limit),
        )
        return [r[0] for r in rows]

    async def get_meta(self, vault: str, name: str) -> bytes | None:
        rows = await self._read("SELECT value FROM meta WHERE vault=? AND name=?", (vault, name))
        return bytes(rows[0][0]) if rows else None

    async def vaults_with_meta(self, name: str) -> list[str]:
        rows = await self._read("SELECT vault FROM meta WHERE name=? ORDER BY vault", (name,))
        return [r[0] for r in rows]


def _row(raw: tuple[Any, ...], versions: dict[str, bytes] | None = None) -> ObjectRow:
    name, head, deleted, purge_at, scheduled = raw
    return ObjectRow(name, bytes(head), bool(deleted), purge_at, bool(scheduled), versions)
