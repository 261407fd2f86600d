"""The storage interface: narrow, so that a replicated implementation can sit behind it.

Every method is async. `write` applies one `Write` atomically and returns only once it
is durable: a crash (kill -9, power loss) after it returned loses nothing of it, and a
crash before leaves none of it. Reads see every write that has returned.
"""

from dataclasses import dataclass, field
from typing import Protocol


class StorageError(Exception):
    """The storage failed; the message names what, never a value."""


@dataclass(frozen=True)
class ObjectRow:
    """One object's head: sealed, with the clear columns the storage indexes."""

    name: str  # lower-cased: names are case-insensitive
    head: bytes
    deleted: bool = False
    purge_at: int | None = None  # when a deleted object is due to be purged
    scheduled: bool = False  # the object has work of its own to check (a rotation policy)
    # Read with the head when asked for: {version: sealed body}. Not written from here.
    versions: dict[str, bytes] | None = None


@dataclass
class Write:
    """Changes to one vault's records, applied all together or not at all."""

    vault: str
    put_objects: list[tuple[str, ObjectRow]] = field(default_factory=list)  # (kind, row)
    put_versions: list[tuple[str, str, str, bytes]] = field(default_factory=list)
    # (kind, name, version, sealed body)
    delete_objects: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)
    # Every version of the named object goes with it.
    put_meta: list[tuple[str, bytes]] = field(default_factory=list)
    delete_meta: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not (
            self.put_objects
            or self.put_versions
            or self.delete_objects
            or self.put_meta
            or self.delete_meta
        )


class Storage(Protocol):
    async def open(self) -> None:
        """Make the storage ready (create its schema); idempotent."""

    async def close(self) -> None: ...

    async def write(self, change: Write) -> None:
        """Apply `change` atomically; durable when this returns."""

    async def get_object(self, vault: str, kind: str, name: str) -> ObjectRow | None:
        """An object's head and every one of its versions, in one read."""

    async def get_versions(
        self, vault: str, kind: str, names: list[str]
    ) -> dict[str, dict[str, bytes]]:
        """Every stored version of each named object: {name: {version: sealed body}}."""

    async def page(
        self, vault: str, kind: str, *, deleted: bool, after: str, limit: int
    ) -> list[ObjectRow]:
        """Up to `limit` objects with names after `after`, by name; live or deleted ones."""

    async def count(self, vault: str, kind: str) -> int:
        """Objects of a kind in a vault, deleted ones included."""

    async def due_purges(self, vault: str, kind: str, moment: int, limit: int) -> list[str]:
        """Names of deleted objects whose purge date is at or before `moment`."""

    async def scheduled(self, vault: str, kind: str, after: str, limit: int) -> list[str]:
        """Names (after `after`, by name) of objects flagged as having scheduled work."""

    async def get_meta(self, vault: str, name: str) -> bytes | None: ...

    async def vaults_with_meta(self, name: str) -> list[str]:
        """The vaults that hold a meta record of this name."""
