"""What keys and secrets have in common: sealed records in the storage, soft delete, backup.

Each object is a head record (name, deletion, the list of its versions, a rotation
policy) and one record per version, sealed by the vault's sealing key in the HSM
(AES-GCM, bound to vault, kind, name and version as associated data) and kept in the
pool's storage (storage/). The server holds no value it is not serving: an object is
read from the storage when a request needs it; keys, whose records hold no value
(public parts and a wrapped blob), are kept in a bounded cache for the sign path.
A name's lock serializes changes to it. Deleting marks the object deleted until its
retention ends; purging removes its records (and, for keys, the HSM objects).
"""

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Iterable
from typing import Any, Generic, Protocol, TypeVar

from ..hsm.api import Hsm
from ..hsm.errors import HsmError, HsmUnavailable
from ..storage import ObjectRow, Storage, StorageError, Write
from .config import VaultConfig
from .encoding import b64url, now, unb64url
from .errors import (
    BadParameter,
    Conflict,
    Forbidden,
    NotFound,
    QuotaExceeded,
    RecordUnreadable,
    ServiceUnavailable,
    VaultError,
    from_hsm,
)
from .objects import MAX_OBJECTS, MAX_VERSIONS, OWNER_TAG, Deletion, owner_of

DAY = 86400
log = logging.getLogger(__name__)
T = TypeVar("T")

# Bytes sealed or opened in one HSM call (the engine takes at most 2 MiB).
SEAL_BATCH_BYTES = 1024 * 1024
# Key objects kept parsed in memory (public parts and wrapped blobs, never a value).
KEY_CACHE_ENTRIES = 4096


async def guarded(call: Awaitable[T]) -> T:
    """The answer of an HSM call, its errors as the vault's."""
    try:
        return await call
    except HsmError as exc:
        raise from_hsm(exc) from exc


def record_aad(vault: str, kind: str, name: str, version: str = "") -> bytes:
    """What a sealed record is bound to: it opens under no other vault, kind, name or
    version (a head has the empty version; version ids are never empty)."""
    return "\0".join(("strongroom-record-v1", vault, kind, name, version)).encode()


class Sealer:
    """Seals and opens one vault's records in the HSM, in batches of bounded size."""

    def __init__(self, hsm: Hsm, vault: str) -> None:
        self.hsm = hsm
        self.vault = vault

    async def _batched(self, aads: list[bytes], items: list[bytes], seal: bool) -> list[bytes]:
        out: list[bytes] = []
        start = 0
        while start < len(items):
            end, size = start, 0
            while end < len(items) and (end == start or size + len(items[end]) <= SEAL_BATCH_BYTES):
                size += len(items[end])
                end += 1
            if seal:
                out += await guarded(
                    self.hsm.seal_records(self.vault, aads[start:end], items[start:end])
                )
            else:
                out += await guarded(
                    self.hsm.unseal_records(self.vault, aads[start:end], items[start:end])
                )
            start = end
        return out

    async def seal(self, aads: list[bytes], plaintexts: list[bytes]) -> list[bytes]:
        return await self._batched(aads, plaintexts, seal=True)

    async def open(self, aads: list[bytes], blobs: list[bytes]) -> list[bytes]:
        return await self._batched(aads, blobs, seal=False)


async def stored(call: Awaitable[T]) -> T:
    try:
        return await call
    except StorageError as exc:
        raise ServiceUnavailable(f"The vault's storage failed: {exc}") from exc


class NameLocks:
    """One asyncio lock per name, kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __call__(self, name: str) -> "_NameLock":
        return _NameLock(self, name.lower())

    def __len__(self) -> int:
        return len(self._locks)


class _NameLock:
    def __init__(self, owner: NameLocks, key: str) -> None:
        self._owner = owner
        self._key = key

    async def __aenter__(self) -> None:
        lock, users = self._owner._locks.get(self._key, (asyncio.Lock(), 0))
        self._owner._locks[self._key] = (lock, users + 1)
        try:
            await lock.acquire()
        except BaseException:
            self._release_user()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._owner._locks[self._key][0].release()
        self._release_user()

    def _release_user(self) -> None:
        lock, users = self._owner._locks[self._key]
        if users <= 1:
            del self._owner._locks[self._key]
        else:
            self._owner._locks[self._key] = (lock, users - 1)


class Entry(Protocol):
    name: str
    deletion: Deletion | None

    @property
    def versions(self) -> list[Any]: ...

    def dump(self) -> bytes: ...

    def head(self) -> bytes: ...


E = TypeVar("E", bound=Entry)


class ObjectStore(Generic[E]):
    """The objects of one kind in one vault; subclasses name the kind and parse records."""

    kind = "object"  # "key" or "secret": record kind, routes and messages
    cache_size = 0  # objects kept parsed in memory; only for kinds that hold no value

    def __init__(self, config: VaultConfig, hsm: Hsm, storage: Storage) -> None:
        self.config = config
        self.hsm = hsm
        self.storage = storage
        self.sealer = Sealer(hsm, config.name)
        self.lock = NameLocks()
        self._cache: OrderedDict[str, E] = OrderedDict()
        self._count: int | None = None
        self._count_lock = asyncio.Lock()

    def parse(self, raw: bytes) -> E:
        """An object from one document holding every version (a backup, the first layout)."""
        raise NotImplementedError

    def from_parts(self, head: dict[str, Any], versions: list[dict[str, Any]]) -> E:
        raise NotImplementedError

    def dump_version(self, version: Any) -> bytes:
        raise NotImplementedError

    def scheduled(self, entry: E) -> bool:
        """Whether the object has work of its own for the maintenance task."""
        return False

    @property
    def _title(self) -> str:
        return self.kind.capitalize()

    @property
    def vault(self) -> str:
        return self.config.name

    # --- reading --------------------------------------------------------------------

    async def find(self, name: str) -> E | None:
        """The object of this name, deleted or not, or None."""
        key = name.lower()
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        row = await stored(self.storage.get_object(self.vault, self.kind, key))
        if row is None:
            return None
        entry = (await self._load_rows([row], skip=False))[0]
        self._remember(entry)
        return entry

    async def _load_rows(self, rows: list[ObjectRow], *, skip: bool) -> list[E]:
        """Objects from their heads. A record that does not open is an error naming the
        object, or (`skip`, for lists) left out with its name logged."""
        try:
            return await self._load_batch(rows)
        except RecordUnreadable:
            if len(rows) == 1 and not skip:
                raise
        loaded: list[E] = []
        for row in rows:
            try:
                loaded += await self._load_batch([row])
            except RecordUnreadable as exc:
                if not skip:
                    raise
                log.warning("vault %s: %s", self.vault, exc.message)
        return loaded

    async def _open(
        self, rows: list[ObjectRow], aads: list[bytes], blobs: list[bytes]
    ) -> list[bytes]:
        try:
            return await self.sealer.open(aads, blobs)
        except VaultError as exc:
            if isinstance(exc.__cause__, HsmUnavailable):
                raise
            names = ", ".join(r.name for r in rows)
            raise RecordUnreadable(
                f"{self.kind} {names}: its stored record cannot be read (damaged storage?)"
            ) from exc

    async def _load_batch(self, rows: list[ObjectRow]) -> list[E]:
        """Objects from their rows: heads and every stored version opened in one HSM call
        (or as few as the batch size allows), then checked against each head's list."""
        missing = [r.name for r in rows if r.versions is None]
        fetched = (
            await stored(self.storage.get_versions(self.vault, self.kind, missing))
            if missing
            else {}
        )
        stored_versions = [r.versions if r.versions is not None else fetched[r.name] for r in rows]
        aads = [record_aad(self.vault, self.kind, r.name) for r in rows]
        blobs = [r.head for r in rows]
        for row, versions in zip(rows, stored_versions, strict=True):
            for version, blob in versions.items():
                aads.append(record_aad(self.vault, self.kind, row.name, version))
                blobs.append(blob)
        opened = await self._open(rows, aads, blobs)
        bodies = iter(opened[len(rows) :])
        entries = []
        heads = opened[: len(rows)]
        for row, raw_head, versions in zip(rows, heads, stored_versions, strict=True):
            by_version = {version: next(bodies) for version in versions}
            try:
                head = json.loads(raw_head)
                listed = head["versions"]
                parts = [json.loads(by_version[version]) for version in listed]
                entries.append(self.from_parts(head, parts))
            except KeyError as exc:
                raise RecordUnreadable(
                    f"{self.kind} {row.name}: a version its head lists is missing from the "
                    "vault's storage"
                ) from exc
            except (ValueError, TypeError, AttributeError) as exc:
                raise RecordUnreadable(
                    f"{self.kind} {row.name}: its stored record cannot be parsed"
                ) from exc
        return entries

    def _remember(self, entry: E) -> None:
        if not self.cache_size:
            return
        self._cache[entry.name.lower()] = entry
        self._cache.move_to_end(entry.name.lower())
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    async def page(self, *, deleted: bool, after: str, limit: int) -> tuple[list[E], str | None]:
        """Up to `limit` objects by name after `after`, and the name to continue after."""
        rows = await stored(
            self.storage.page(self.vault, self.kind, deleted=deleted, after=after, limit=limit + 1)
        )
        more = len(rows) > limit
        rows = rows[:limit]
        entries = await self._load_rows(rows, skip=True)
        return entries, (rows[-1].name if more and rows else None)

    async def count(self) -> int:
        if self._count is None:
            self._count = await stored(self.storage.count(self.vault, self.kind))
        return self._count

    # --- writing --------------------------------------------------------------------

    async def _save(self, entry: E, changed: Iterable[Any] = (), *, new: bool = False) -> None:
        """Write the changed versions and the head that lists them, in one durable write."""
        write = Write(self.vault)
        await self.stage(write, entry, changed)
        await self.commit(write, [(self, entry, new)])

    async def stage(self, write: Write, entry: E, changed: Iterable[Any] = ()) -> None:
        """Add the sealed changed versions and head of `entry` to `write` (which may carry
        other kinds' records too: a certificate writes its key and secret with it)."""
        key = entry.name.lower()
        changed = list(changed)
        aads = [record_aad(self.vault, self.kind, key, v.version) for v in changed]
        aads.append(record_aad(self.vault, self.kind, key))
        plaintexts = [self.dump_version(v) for v in changed] + [entry.head()]
        sealed = await self.sealer.seal(aads, plaintexts)
        deletion = entry.deletion
        write.put_versions += [
            (self.kind, key, v.version, blob) for v, blob in zip(changed, sealed, strict=False)
        ]
        write.put_objects.append(
            (
                self.kind,
                ObjectRow(
                    key,
                    sealed[-1],
                    deleted=deletion is not None,
                    purge_at=deletion.scheduled_purge_date if deletion is not None else None,
                    scheduled=self.scheduled(entry),
                ),
            )
        )

    @staticmethod
    async def commit(write: Write, staged: "list[tuple[ObjectStore[Any], Any, bool]]") -> None:
        """Write `write` durably; then each (store, entry, new) it staged is remembered."""
        try:
            await stored(staged[0][0].storage.write(write))
        except BaseException:
            for store, entry, _ in staged:
                store._cache.pop(entry.name.lower(), None)  # memory may be ahead of storage
            raise
        for store, entry, new in staged:
            if new and store._count is not None:
                store._count += 1
            store._remember(entry)

    def refuse_managed(self, entry: E, action: str) -> None:
        """A certificate's key or secret changes only through its certificate (403)."""
        if entry.versions and getattr(entry.versions[-1], "managed", False):
            raise Forbidden(
                f"{self._title} {entry.name} is managed by certificate {entry.name}: it cannot "
                f"be {action} through the {self.kind}s API; use the certificate's operations.",
                code="Forbidden",
            )

    async def _forget(self, entry: E) -> None:
        """Remove an object and every one of its versions, in one durable write."""
        key = entry.name.lower()
        write = Write(self.vault, delete_objects=[(self.kind, key)])
        self._cache.pop(key, None)
        await stored(self.storage.write(write))
        if self._count is not None:
            self._count -= 1

    async def check_quota(self, name: str, entry: E | None) -> None:
        """Refuse one more version of `name` (or one more object) beyond the vault's quota."""
        if entry is None and await self.count() >= MAX_OBJECTS:
            raise QuotaExceeded(
                f"This vault holds its quota of {MAX_OBJECTS} {self.kind}s, deleted ones "
                f"included; purge or reuse one to make room."
            )
        if entry is not None and len(entry.versions) >= MAX_VERSIONS:
            raise QuotaExceeded(
                f"{self._title} {name} has its quota of {MAX_VERSIONS} versions; "
                f"delete and purge it, or use a new name."
            )

    # --- lookup ---------------------------------------------------------------

    def not_found(self, name: str) -> NotFound:
        return NotFound(
            f"A {self.kind} with (name/id) {name} was not found in this key vault.",
            code=f"{self._title}NotFound",
        )

    async def live(self, name: str) -> E:
        entry = await self.find(name)
        if entry is None or entry.deletion is not None or not entry.versions:
            raise self.not_found(name)
        return entry

    async def deleted(self, name: str) -> E:
        entry = await self.find(name)
        if entry is None or entry.deletion is None:
            raise NotFound(
                f"Deleted {self._title} not found: {name}", code=f"{self._title}NotFound"
            )
        return entry

    async def owned(self, name: str, owner: str) -> E | None:
        """The object `owner` made under this name, or None; call under the name's lock.

        Another owner's object, or a deleted one, is refused with 409 and a code the
        caller can act on.
        """
        entry = await self.find(name)
        if entry is None or not entry.versions:
            return None
        if owner_of(entry.versions[0].tags) != owner:
            raise Conflict(
                f"A {self.kind} named {name} exists in this vault and belongs to another owner.",
                code=f"{self._title}OwnedElsewhere",
            )
        if entry.deletion is not None:
            raise Conflict(
                f"{self._title} {name} is deleted and recoverable; recover it or purge it.",
                code=f"{self._title}Deleted",
            )
        return entry

    async def adopt(self, name: str, owner: str) -> E:
        """Give an object that has no owner (it was made through the data plane) to `owner`:
        the owner tag on every one of its versions, in one durable write under the name's
        lock, so that a killed or retried adoption leaves it unowned or adopted, never half.

        The same owner again changes nothing. Another owner's object, or a deleted one, is
        refused with 409 and a code the caller can act on; a missing one with 404.
        """
        async with self.lock(name):
            entry = await self.find(name)
            if entry is None or not entry.versions:
                raise self.not_found(name)
            found = owner_of(entry.versions[0].tags)
            if found == owner:
                return entry
            self.refuse_managed(entry, "adopted")
            if found is not None:
                raise Conflict(
                    f"A {self.kind} named {name} exists in this vault and belongs to another "
                    "owner; it cannot be adopted.",
                    code=f"{self._title}OwnedElsewhere",
                )
            if entry.deletion is not None:
                raise Conflict(
                    f"{self._title} {name} is deleted and recoverable; recover it before it "
                    "can be adopted.",
                    code=f"{self._title}Deleted",
                )
            changed = [v for v in entry.versions if owner_of(v.tags) != owner]
            before = [v.tags for v in changed]
            for version in changed:
                version.tags = version.tags | {OWNER_TAG: owner}
            try:
                await self._save(entry, changed)
            except BaseException:
                for version, tags in zip(changed, before, strict=True):
                    version.tags = tags
                raise
            return entry

    def deletion_fields(self, base: str, entry: E) -> dict[str, Any]:
        if entry.deletion is None:
            return {}
        return {
            "recoveryId": f"{base}/deleted{self.kind}s/{entry.name}",
            "deletedDate": entry.deletion.deleted_date,
            "scheduledPurgeDate": entry.deletion.scheduled_purge_date,
        }

    # --- soft delete ------------------------------------------------------------

    async def delete(self, name: str) -> E:
        async with self.lock(name):
            entry = await self.live(name)
            self.refuse_managed(entry, "deleted")
            moment = now()
            entry.deletion = Deletion(moment, moment + self.config.retention_days * DAY)
            await self._save(entry)
            return entry

    async def recover(self, name: str) -> E:
        async with self.lock(name):
            entry = await self.deleted(name)
            self.refuse_managed(entry, "recovered")
            entry.deletion = None
            await self._save(entry)
            return entry

    async def purge(self, name: str, *, expired: bool = False) -> None:
        async with self.lock(name):
            entry = await self.deleted(name)
            if not expired:
                self.refuse_managed(entry, "purged")
            if self.config.purge_protection and not expired:
                raise Forbidden(
                    f'Operation "purge" is not allowed because purge protection is enabled '
                    f"for this vault. {self._title} {name} will be purged after its retention "
                    "period."
                )
            await self._forget(entry)
            await self._purged(entry)

    async def _purged(self, entry: E) -> None:
        """What else goes with a purged record."""

    async def purge_expired(self) -> None:
        moment = now()
        while True:
            due = await stored(self.storage.due_purges(self.vault, self.kind, moment, 100))
            if not due:
                return
            for name in due:
                entry = await self.find(name)
                if entry is None or entry.deletion is None:
                    continue
                await self.purge(entry.name, expired=True)

    # --- backup -------------------------------------------------------------------

    def _aad(self) -> bytes:
        return f"strongroom-backup:{self.config.name}".encode()

    async def seal(self, entry: E) -> str:
        """A backup blob: the record, sealed by the vault's own key inside the HSM."""
        blob = json.dumps({"kind": self.kind, "entry": json.loads(entry.dump())}).encode()
        return b64url(await guarded(self.hsm.seal(self.vault, blob, self._aad())))

    async def unseal(self, body: dict[str, Any]) -> E:
        sealed = unb64url(body.get("value"), "value")
        try:
            blob = await self.hsm.unseal(self.vault, sealed, self._aad())
            data = json.loads(blob)
            if data.get("kind") != self.kind:
                raise ValueError
            return self.parse(json.dumps(data["entry"]).encode())
        except (HsmError, ValueError, KeyError, TypeError):
            raise BadParameter(
                "The backup blob is invalid, or was not made by this vault."
            ) from None

    async def check_free(self, entry: E) -> None:
        if await self.find(entry.name) is not None:
            raise Conflict(f"{self._title} {entry.name} already exists; restore needs a free name.")
        await self.check_quota(entry.name, None)
        if len(entry.versions) > MAX_VERSIONS:
            raise QuotaExceeded(f"A {self.kind} has at most {MAX_VERSIONS} versions.")

    # --- migration from the first design ---------------------------------------------

    def import_legacy(self, records: dict[str, bytes]) -> list[E]:
        """This kind's objects from the token records of the first design; a record that
        cannot be read is skipped, with its name."""
        prefix = f"{self.kind}/"
        found: list[E] = []
        for record, raw in records.items():
            if not record.startswith(prefix) or "/" in record[len(prefix) :]:
                continue
            try:
                head = json.loads(raw)
                listed = head["versions"]
                legacy = all(isinstance(v, dict) for v in listed) and bool(listed)
                parts = listed if legacy else [json.loads(records[f"{record}/{v}"]) for v in listed]
                found.append(self.from_parts(head, parts))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                log.warning(
                    "vault %s: record %s is skipped, it cannot be read (%s)",
                    self.vault,
                    record,
                    type(exc).__name__,
                )
        return found

    async def migration_write(self, entries: list[E], write: Write) -> None:
        """Add the sealed records of `entries` to `write`."""
        aads: list[bytes] = []
        plaintexts: list[bytes] = []
        for entry in entries:
            key = entry.name.lower()
            for version in entry.versions:
                aads.append(record_aad(self.vault, self.kind, key, version.version))
                plaintexts.append(self.dump_version(version))
            aads.append(record_aad(self.vault, self.kind, key))
            plaintexts.append(entry.head())
        sealed = iter(await self.sealer.seal(aads, plaintexts))
        for entry in entries:
            key = entry.name.lower()
            for version in entry.versions:
                write.put_versions.append((self.kind, key, version.version, next(sealed)))
            deletion = entry.deletion
            write.put_objects.append(
                (
                    self.kind,
                    ObjectRow(
                        key,
                        next(sealed),
                        deleted=deletion is not None,
                        purge_at=deletion.scheduled_purge_date if deletion else None,
                        scheduled=self.scheduled(entry),
                    ),
                )
            )
