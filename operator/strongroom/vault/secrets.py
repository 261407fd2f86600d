"""Secrets of one vault: values with versions, soft delete and backup.

Values live in private data objects of the vault's token; they appear in
answers to get and set and nowhere else: not in lists, logs or audit lines.
"""

import asyncio
import base64
import json
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from ..hsm.client import HsmClient
from ..hsm.errors import HsmError
from .config import VaultConfig
from .encoding import b64url, now, unb64url
from .errors import BadParameter, Conflict, Forbidden, NotFound, from_hsm
from .objects import (
    OWNER_TAG,
    SECRET_MAX_BYTES,
    Attributes,
    Deletion,
    SecretEntry,
    SecretVersion,
    check_tags,
    owner_of,
)

DAY = 86400
ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
ENCODINGS = ("base64", "hex", "alphanumeric")


def alphanumeric_length(random_bytes: int) -> int:
    """Characters of [0-9A-Za-z] that carry as much randomness as `random_bytes` bytes."""
    return math.ceil(random_bytes * 8 / math.log2(len(ALPHANUMERIC)))


def encode_random(raw: bytes, encoding: str) -> str:
    """A generated value from random bytes: base64, hex, or as many alphanumeric characters
    as the unbiased bytes give (bytes >= 248 are dropped, so that each character is uniform)."""
    if encoding == "base64":
        return base64.b64encode(raw).decode()
    if encoding == "hex":
        return raw.hex()
    if encoding == "alphanumeric":
        return "".join(ALPHANUMERIC[b % 62] for b in raw if b < 248)
    raise BadParameter(f"'encoding' is one of {', '.join(ENCODINGS)}")


def _secret_not_found(name: str) -> NotFound:
    return NotFound(
        f"A secret with (name/id) {name} was not found in this key vault.", code="SecretNotFound"
    )


class SecretStore:
    def __init__(self, config: VaultConfig, hsm: HsmClient) -> None:
        self.config = config
        self.hsm = hsm
        self.entries: dict[str, SecretEntry] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name.lower(), asyncio.Lock())

    async def _hsm(self, op: str, **args: Any) -> Any:
        try:
            return await self.hsm.call(op, vault=self.config.name, **args)
        except HsmError as exc:
            raise from_hsm(exc) from exc

    async def _save(self, entry: SecretEntry) -> None:
        await self._hsm("put_record", name=f"secret/{entry.name.lower()}", value=entry.dump())
        self.entries[entry.name.lower()] = entry

    def load(self, records: dict[str, bytes]) -> None:
        for record, raw in records.items():
            if record.startswith("secret/"):
                entry = SecretEntry.load(raw)
                self.entries[entry.name.lower()] = entry

    # --- wire shapes ------------------------------------------------------------

    def _attributes(self, attributes: Attributes) -> dict[str, Any]:
        return attributes.wire(self.config.retention_days, self.config.purge_protection)

    def _deletion(self, base: str, entry: SecretEntry) -> dict[str, Any]:
        if entry.deletion is None:
            return {}
        return {
            "recoveryId": f"{base}/deletedsecrets/{entry.name}",
            "deletedDate": entry.deletion.deleted_date,
            "scheduledPurgeDate": entry.deletion.scheduled_purge_date,
        }

    def item(self, base: str, entry: SecretEntry, version: SecretVersion) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": f"{base}/secrets/{entry.name}/{version.version}",
            "attributes": self._attributes(version.attributes),
        }
        if version.content_type is not None:
            out["contentType"] = version.content_type
        if version.tags:
            out["tags"] = version.tags
        return out | self._deletion(base, entry)

    def bundle(
        self, base: str, entry: SecretEntry, version: SecretVersion, *, with_value: bool
    ) -> dict[str, Any]:
        out = self.item(base, entry, version)
        if with_value:
            out["value"] = version.value
        return out

    # --- lookup ---------------------------------------------------------------

    def live(self, name: str) -> SecretEntry:
        entry = self.entries.get(name.lower())
        if entry is None or entry.deletion is not None or not entry.versions:
            raise _secret_not_found(name)
        return entry

    def deleted(self, name: str) -> SecretEntry:
        entry = self.entries.get(name.lower())
        if entry is None or entry.deletion is None:
            raise NotFound(f"Deleted Secret not found: {name}", code="SecretNotFound")
        return entry

    def live_version(self, name: str, version: str | None) -> tuple[SecretEntry, SecretVersion]:
        entry = self.live(name)
        found = entry.version(version)
        if found is None:
            raise _secret_not_found(f"{name}/{version}")
        return entry, found

    def readable(self, name: str, version: str | None) -> tuple[SecretEntry, SecretVersion]:
        entry, found = self.live_version(name, version)
        reason = found.attributes.usable_now()
        if reason is not None:
            raise Forbidden(reason.replace("object", "secret"), code="Forbidden")
        return entry, found

    # --- lifecycle ------------------------------------------------------------

    async def set(self, name: str, body: dict[str, Any]) -> tuple[SecretEntry, SecretVersion]:
        version = self._new_version(body)
        async with self.lock(name):
            return await self._add_locked(name, version)

    async def set_owned(
        self, name: str, owner: str, body: dict[str, Any], value: Callable[[], Awaitable[str]]
    ) -> tuple[SecretEntry, bool]:
        """Set the secret for `owner` unless it exists; True when it was set now.

        `value` is asked for only when the secret is made, under the secret's lock:
        a retried request neither makes a second version nor a second value.
        """
        async with self.lock(name):
            entry = self.entries.get(name.lower())
            if entry is not None and entry.versions:
                if owner_of(entry.versions[0].tags) != owner:
                    raise Conflict(
                        f"A secret named {name} exists in this vault and belongs to another owner.",
                        code="SecretOwnedElsewhere",
                    )
                if entry.deletion is not None:
                    raise Conflict(
                        f"Secret {name} is deleted and recoverable; recover it or purge it.",
                        code="SecretDeleted",
                    )
                return entry, False
            tags = dict(check_tags(body.get("tags")) or {}) | {OWNER_TAG: owner}
            version = self._new_version(body | {"value": await value(), "tags": tags})
            entry, _ = await self._add_locked(name, version)
            return entry, True

    async def generate_value(self, length: int, encoding: str) -> str:
        """A value from the HSM's random number generator: `length` bytes of randomness."""
        if encoding != "alphanumeric":
            return encode_random(await self._hsm("random", count=length), encoding)
        wanted = alphanumeric_length(length)
        value = ""
        while len(value) < wanted:
            value += encode_random(await self._hsm("random", count=wanted), encoding)
        return value[:wanted]

    @staticmethod
    def _new_version(body: dict[str, Any]) -> SecretVersion:
        value = body.get("value")
        if not isinstance(value, str):
            raise BadParameter("'value' is required and must be a string")
        if len(value.encode()) > SECRET_MAX_BYTES:
            raise BadParameter(f"secret values are at most {SECRET_MAX_BYTES} bytes")
        content_type = body.get("contentType")
        if content_type is not None and not isinstance(content_type, str):
            raise BadParameter("'contentType' must be a string")
        attributes = Attributes()
        attributes.update_from(body.get("attributes"))
        return SecretVersion(
            uuid.uuid4().hex, value, content_type, attributes, check_tags(body.get("tags")) or {}
        )

    async def _add_locked(
        self, name: str, version: SecretVersion
    ) -> tuple[SecretEntry, SecretVersion]:
        entry = self.entries.get(name.lower())
        if entry is not None and entry.deletion is not None:
            raise Conflict(
                f"Secret {name} is currently in a deleted but recoverable state, and its "
                "name cannot be reused; in this state, the secret can only be recovered or "
                "purged."
            )
        entry = entry or SecretEntry(name=name)
        entry.versions.append(version)
        try:
            await self._save(entry)
        except BaseException:
            entry.versions.remove(version)
            raise
        return entry, version

    async def update(
        self, name: str, version: str | None, body: dict[str, Any]
    ) -> tuple[SecretEntry, SecretVersion]:
        async with self.lock(name):
            entry, found = self.live_version(name, version)
            if "contentType" in body:
                if body["contentType"] is not None and not isinstance(body["contentType"], str):
                    raise BadParameter("'contentType' must be a string")
                found.content_type = body["contentType"]
            found.attributes.update_from(body.get("attributes"))
            tags = check_tags(body.get("tags"))
            if tags is not None:
                found.tags = tags
            await self._save(entry)
            return entry, found

    async def delete(self, name: str) -> SecretEntry:
        async with self.lock(name):
            entry = self.live(name)
            moment = now()
            entry.deletion = Deletion(moment, moment + self.config.retention_days * DAY)
            await self._save(entry)
            return entry

    async def recover(self, name: str) -> SecretEntry:
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
                    f"for this vault. Secret {name} will be purged after its retention period."
                )
            await self._hsm("delete_record", name=f"secret/{entry.name.lower()}")
            del self.entries[entry.name.lower()]

    async def purge_expired(self) -> None:
        moment = now()
        for entry in list(self.entries.values()):
            if entry.deletion is not None and entry.deletion.scheduled_purge_date <= moment:
                await self.purge(entry.name, expired=True)

    # --- backup ----------------------------------------------------------------

    def _aad(self) -> bytes:
        return f"strongroom-backup:{self.config.name}".encode()

    async def backup(self, name: str) -> str:
        entry = self.live(name)
        blob = json.dumps({"kind": "secret", "entry": json.loads(entry.dump())}).encode()
        return b64url(await self._hsm("seal", plaintext=blob, aad=self._aad()))

    async def restore(self, body: dict[str, Any]) -> tuple[SecretEntry, SecretVersion]:
        sealed = unb64url(body.get("value"), "value")
        try:
            blob = await self.hsm.call(
                "unseal", vault=self.config.name, blob=sealed, aad=self._aad()
            )
            data = json.loads(blob)
            if data.get("kind") != "secret":
                raise ValueError
            entry = SecretEntry.load(json.dumps(data["entry"]).encode())
        except (HsmError, ValueError, KeyError, TypeError):
            raise BadParameter(
                "The backup blob is invalid, or was not made by this vault."
            ) from None
        async with self.lock(entry.name):
            if entry.name.lower() in self.entries:
                raise Conflict(f"Secret {entry.name} already exists; restore needs a free name.")
            entry.deletion = None
            await self._save(entry)
            return entry, entry.versions[-1]
