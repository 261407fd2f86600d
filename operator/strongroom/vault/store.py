"""What keys and secrets have in common: records in the vault's token, soft delete, backup.

Each object is a head record `<kind>/<name>` listing its versions, and one
record `<kind>/<name>/<version>` per version; a name's lock serializes changes
to it. Records of the first layout (all versions in the head) still load and
are rewritten in this one on their next change. Deleting
marks the object deleted until its retention ends; purging removes the
record (and, for keys, the HSM objects: see KeyStore._purged).
"""

import asyncio
import json
import logging
from collections.abc import Iterable
from typing import Any, Generic, Protocol, TypeVar

from ..hsm.client import HsmClient
from ..hsm.errors import HsmError
from .config import VaultConfig
from .encoding import b64url, now, unb64url
from .errors import BadParameter, Conflict, Forbidden, NotFound, VaultError, from_hsm
from .objects import MAX_OBJECTS, MAX_VERSIONS, Deletion, owner_of

DAY = 86400
log = logging.getLogger(__name__)


class QuotaExceeded(VaultError):
    status = 409
    code = "QuotaExceeded"


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

    kind = "object"  # "key" or "secret": record prefix, routes and messages

    def __init__(self, config: VaultConfig, hsm: HsmClient) -> None:
        self.config = config
        self.hsm = hsm
        self.entries: dict[str, E] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # Objects still in the first record layout: their next save writes every version.
        self._legacy: set[str] = set()

    def parse(self, raw: bytes) -> E:
        """An object from one document holding every version (a backup, the first layout)."""
        raise NotImplementedError

    def from_parts(self, head: dict[str, Any], versions: list[dict[str, Any]]) -> E:
        raise NotImplementedError

    def dump_version(self, version: Any) -> bytes:
        raise NotImplementedError

    @property
    def _title(self) -> str:
        return self.kind.capitalize()

    # --- persistence ----------------------------------------------------------

    def lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name.lower(), asyncio.Lock())

    async def _hsm(self, op: str, **args: Any) -> Any:
        try:
            return await self.hsm.call(op, vault=self.config.name, **args)
        except HsmError as exc:
            raise from_hsm(exc) from exc

    def _record(self, name: str) -> str:
        return f"{self.kind}/{name.lower()}"

    async def _save(self, entry: E, changed: Iterable[Any] = ()) -> None:
        """Write the changed versions, then the head that lists them."""
        key = entry.name.lower()
        versions = entry.versions if key in self._legacy else list(changed)
        for version in versions:
            await self._hsm(
                "put_record",
                name=f"{self._record(key)}/{version.version}",
                value=self.dump_version(version),
            )
        await self._hsm("put_record", name=self._record(key), value=entry.head())
        self._legacy.discard(key)
        self.entries[key] = entry

    async def _forget(self, entry: E) -> None:
        """Remove an object's records: the head first, so no head names a missing version."""
        key = entry.name.lower()
        await self._hsm("delete_record", name=self._record(key))
        if key not in self._legacy:
            for version in entry.versions:
                await self._hsm("delete_record", name=f"{self._record(key)}/{version.version}")
        self._legacy.discard(key)

    def load(self, records: dict[str, bytes]) -> None:
        """Read this kind's objects; a record that cannot be read is skipped, with its name."""
        prefix = f"{self.kind}/"
        for record, raw in records.items():
            if not record.startswith(prefix) or "/" in record[len(prefix) :]:
                continue
            try:
                head = json.loads(raw)
                listed = head["versions"]
                legacy = all(isinstance(v, dict) for v in listed) and bool(listed)
                parts = listed if legacy else [json.loads(records[f"{record}/{v}"]) for v in listed]
                entry = self.from_parts(head, parts)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                log.warning(
                    "vault %s: record %s is skipped, it cannot be read (%s)",
                    self.config.name,
                    record,
                    type(exc).__name__,
                )
                continue
            self.entries[entry.name.lower()] = entry
            if legacy:
                self._legacy.add(entry.name.lower())

    def check_quota(self, name: str) -> None:
        """Refuse one more version of `name` (or one more object) beyond the vault's quota."""
        entry = self.entries.get(name.lower())
        if entry is None and len(self.entries) >= MAX_OBJECTS:
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

    def live(self, name: str) -> E:
        entry = self.entries.get(name.lower())
        if entry is None or entry.deletion is not None or not entry.versions:
            raise self.not_found(name)
        return entry

    def deleted(self, name: str) -> E:
        entry = self.entries.get(name.lower())
        if entry is None or entry.deletion is None:
            raise NotFound(
                f"Deleted {self._title} not found: {name}", code=f"{self._title}NotFound"
            )
        return entry

    def owned(self, name: str, owner: str) -> E | None:
        """The object `owner` made under this name, or None; call under the name's lock.

        Another owner's object, or a deleted one, is refused with 409 and a code the
        caller can act on.
        """
        entry = self.entries.get(name.lower())
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
            entry = self.live(name)
            moment = now()
            entry.deletion = Deletion(moment, moment + self.config.retention_days * DAY)
            await self._save(entry)
            return entry

    async def recover(self, name: str) -> E:
        async with self.lock(name):
            entry = self.deleted(name)
            entry.deletion = None
            await self._save(entry)
            return entry

    async def purge(self, name: str, *, expired: bool = False) -> None:
        async with self.lock(name):
            entry = self.deleted(name)
            if self.config.purge_protection and not expired:
                raise Forbidden(
                    f'Operation "purge" is not allowed because purge protection is enabled '
                    f"for this vault. {self._title} {name} will be purged after its retention "
                    "period."
                )
            await self._forget(entry)
            del self.entries[entry.name.lower()]
            await self._purged(entry)

    async def _purged(self, entry: E) -> None:
        """What else goes with a purged record."""

    async def purge_expired(self) -> None:
        moment = now()
        for entry in list(self.entries.values()):
            if entry.deletion is not None and entry.deletion.scheduled_purge_date <= moment:
                await self.purge(entry.name, expired=True)

    # --- backup -------------------------------------------------------------------

    def _aad(self) -> bytes:
        return f"strongroom-backup:{self.config.name}".encode()

    async def seal(self, entry: E) -> str:
        """A backup blob: the record, sealed by the vault's own key inside the HSM."""
        blob = json.dumps({"kind": self.kind, "entry": json.loads(entry.dump())}).encode()
        return b64url(await self._hsm("seal", plaintext=blob, aad=self._aad()))

    async def unseal(self, body: dict[str, Any]) -> E:
        sealed = unb64url(body.get("value"), "value")
        try:
            blob = await self.hsm.call(
                "unseal", vault=self.config.name, blob=sealed, aad=self._aad()
            )
            data = json.loads(blob)
            if data.get("kind") != self.kind:
                raise ValueError
            return self.parse(json.dumps(data["entry"]).encode())
        except (HsmError, ValueError, KeyError, TypeError):
            raise BadParameter(
                "The backup blob is invalid, or was not made by this vault."
            ) from None

    def check_free(self, entry: E) -> None:
        if entry.name.lower() in self.entries:
            raise Conflict(f"{self._title} {entry.name} already exists; restore needs a free name.")
        self.check_quota(entry.name)
        if len(entry.versions) > MAX_VERSIONS:
            raise QuotaExceeded(f"A {self.kind} has at most {MAX_VERSIONS} versions.")
