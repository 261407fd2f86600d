"""Secrets of one vault: values with versions, soft delete and backup.

Values live in sealed records of the vault's storage, read when a request needs
them; they appear in answers to get and set and nowhere else: not in lists, logs or
audit lines.
"""

import base64
import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from .errors import BadParameter, Conflict, Forbidden
from .objects import (
    OWNER_TAG,
    SECRET_MAX_BYTES,
    Attributes,
    SecretEntry,
    SecretVersion,
    check_content_type,
    check_tags,
    reserved_tags,
)
from .store import ObjectStore, guarded
from .x509build import convert

ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# The out content types of a secret GET: Key Vault converts a certificate's PFX to PEM.
OUT_CONTENT_TYPES = ("application/x-pkcs12", "application/x-pem-file")
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


class SecretStore(ObjectStore[SecretEntry]):
    kind = "secret"

    def parse(self, raw: bytes) -> SecretEntry:
        return SecretEntry.load(raw)

    def from_parts(self, head: dict[str, Any], versions: list[dict[str, Any]]) -> SecretEntry:
        return SecretEntry.from_parts(head, versions)

    def dump_version(self, version: Any) -> bytes:
        return SecretEntry.dump_version(version)

    # --- wire shapes ------------------------------------------------------------

    def _attributes(self, attributes: Attributes) -> dict[str, Any]:
        return attributes.wire(self.config.retention_days, self.config.purge_protection)

    def item(self, base: str, entry: SecretEntry, version: SecretVersion) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": f"{base}/secrets/{entry.name}/{version.version}",
            "attributes": self._attributes(version.attributes),
        }
        if version.content_type is not None:
            out["contentType"] = version.content_type
        if version.tags:
            out["tags"] = version.tags
        if version.managed:
            out["managed"] = True
            out["kid"] = f"{base}/keys/{entry.name}/{version.version}"
        return out | self.deletion_fields(base, entry)

    def bundle(
        self, base: str, entry: SecretEntry, version: SecretVersion, *, with_value: bool
    ) -> dict[str, Any]:
        out = self.item(base, entry, version)
        if with_value:
            out["value"] = version.value
        return out

    # --- lookup ---------------------------------------------------------------

    async def live_version(
        self, name: str, version: str | None
    ) -> tuple[SecretEntry, SecretVersion]:
        entry = await self.live(name)
        found = entry.version(version)
        if found is None:
            raise self.not_found(f"{name}/{version}")
        return entry, found

    async def readable(
        self, name: str, version: str | None, out_content_type: str | None = None
    ) -> tuple[SecretEntry, SecretVersion]:
        if out_content_type is not None and out_content_type not in OUT_CONTENT_TYPES:
            raise BadParameter(
                f"'outContentType' must be one of {', '.join(OUT_CONTENT_TYPES)}",
                code="BadParameter",
            )
        entry, found = await self.live_version(name, version)
        reason = found.attributes.usable_now()
        if reason is not None:
            raise Forbidden(reason.replace("object", "secret"), code="Forbidden")
        if found.managed and out_content_type and out_content_type != found.content_type:
            # A certificate's secret converts between PKCS#12 and PEM, as in Key Vault.
            value = convert(found.value, found.content_type or "", out_content_type)
            return entry, replace(found, value=value, content_type=out_content_type)
        if out_content_type is not None and out_content_type != found.content_type:
            # Key Vault converts only a certificate's secret; any other value is only
            # ever returned as it was stored.
            raise BadParameter(
                f"This secret cannot be converted to {out_content_type}: only a certificate's "
                "secret converts, and a secret is returned in its own content type "
                f"({found.content_type or 'none'}).",
                code="BadParameter",
            )
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
            existing = await self.owned(name, owner)
            if existing is not None:
                return existing, False
            await self.check_quota(name, None)
            version = self._new_version(body | {"value": await value()})
            version.tags[OWNER_TAG] = owner
            entry, _ = await self._add_locked(name, version)
            return entry, True

    async def rotate_owned(
        self,
        name: str,
        owner: str,
        if_current: str,
        body: dict[str, Any],
        value: Callable[[], Awaitable[str]],
    ) -> tuple[SecretEntry, bool]:
        """Add a version to `owner`'s secret if its current version is still `if_current`;
        True when it was added now.

        The check and the add happen under the secret's lock, and `value` is asked for only
        when the version is added: a retried rotation finds a newer current version and adds
        nothing, so one rotation makes one version whatever the retries.
        """
        async with self.lock(name):
            existing = await self.owned(name, owner)
            if existing is None:
                raise self.not_found(name)
            current = existing.versions[-1]
            if current.version != if_current:
                return existing, False
            inherited = {"contentType": current.content_type}
            version = self._new_version(inherited | body | {"value": await value()})
            version.tags[OWNER_TAG] = owner
            entry, _ = await self._add_locked(name, version)
            return entry, True

    async def generate_value(self, length: int, encoding: str) -> str:
        """A value from the HSM's random number generator: `length` bytes of randomness."""
        if encoding != "alphanumeric":
            return encode_random(await guarded(self.hsm.random(self.vault, length)), encoding)
        wanted = alphanumeric_length(length)
        value = ""
        while len(value) < wanted:
            value += encode_random(await guarded(self.hsm.random(self.vault, wanted)), encoding)
        return value[:wanted]

    @staticmethod
    def _new_version(body: dict[str, Any]) -> SecretVersion:
        value = body.get("value")
        if not isinstance(value, str):
            raise BadParameter("'value' is required and must be a string")
        if len(value.encode()) > SECRET_MAX_BYTES:
            raise BadParameter(f"secret values are at most {SECRET_MAX_BYTES} bytes")
        content_type = check_content_type(body.get("contentType"))
        tags = check_tags(body.get("tags")) or {}
        attributes = Attributes()
        attributes.update_from(body.get("attributes"))
        return SecretVersion(uuid.uuid4().hex, value, content_type, attributes, tags)

    async def _add_locked(
        self, name: str, version: SecretVersion
    ) -> tuple[SecretEntry, SecretVersion]:
        entry = await self.find(name)
        if entry is not None:
            self.refuse_managed(entry, "set")
        await self.check_quota(name, entry)
        if entry is not None and entry.deletion is not None:
            raise Conflict(
                f"Secret {name} is currently in a deleted but recoverable state, and its "
                "name cannot be reused; in this state, the secret can only be recovered or "
                "purged."
            )
        new = entry is None
        entry = entry or SecretEntry(name=name)
        entry.versions.append(version)
        try:
            await self._save(entry, [version], new=new)
        except BaseException:
            entry.versions.remove(version)
            raise
        return entry, version

    async def update(
        self, name: str, version: str | None, body: dict[str, Any]
    ) -> tuple[SecretEntry, SecretVersion]:
        async with self.lock(name):
            entry, found = await self.live_version(name, version)
            self.refuse_managed(entry, "updated")
            tags = check_tags(body.get("tags"))
            if "contentType" in body:
                found.content_type = check_content_type(body["contentType"])
            found.attributes.update_from(body.get("attributes"))
            if tags is not None:
                found.tags = tags | reserved_tags(found.tags)
            await self._save(entry, [found])
            return entry, found

    # --- backup ----------------------------------------------------------------

    async def backup(self, name: str) -> str:
        entry = await self.live(name)
        self.refuse_managed(entry, "backed up")
        return await self.seal(entry)

    async def restore(self, body: dict[str, Any]) -> tuple[SecretEntry, SecretVersion]:
        entry = await self.unseal(body)
        for version in entry.versions:
            version.attributes.check()
        async with self.lock(entry.name):
            await self.check_free(entry)
            entry.deletion = None
            await self._save(entry, entry.versions, new=True)
            return entry, entry.versions[-1]
