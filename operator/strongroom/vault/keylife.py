"""Keys of one vault, their lifecycle: making them in the HSM or importing them (BYOK),
versions, updates, soft delete, backup and restore. Cryptography is in keycrypto.py,
rotation policies in keyrotation.py; vault/keys.py puts the three together as KeyStore.
"""

import asyncio
import base64
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from ..api.vocabulary import KEY_OPS, family
from ..hsm.errors import (
    HsmError,
    KeyNotLoaded,
)
from . import keyimport
from .encoding import now
from .errors import BadParameter, Conflict, from_hsm
from .keyimport import KeyMaterial, PrivateKey
from .objects import (
    CURVES,
    KEY_TYPES,
    OCT_SIZES,
    OWNER_TAG,
    RSA_SIZES,
    Attributes,
    KeyEntry,
    KeyVersion,
    check_tags,
    parse_duration,
    reserved_tags,
)
from .store import KEY_CACHE_ENTRIES, ObjectStore, guarded

log = logging.getLogger(__name__)
T = TypeVar("T")


class KeyLifecycle(ObjectStore[KeyEntry]):
    """Keys of one vault: making, versions, updates, soft delete, backup and restore."""

    kind = "key"
    cache_size = KEY_CACHE_ENTRIES

    def scheduled(self, entry: KeyEntry) -> bool:
        return bool(entry.rotation_policy)

    def parse(self, raw: bytes) -> KeyEntry:
        return KeyEntry.load(raw)

    def from_parts(self, head: dict[str, Any], versions: list[dict[str, Any]]) -> KeyEntry:
        return KeyEntry.from_parts(head, versions)

    def dump_version(self, version: Any) -> bytes:
        return KeyEntry.dump_version(version)

    async def _with_key(self, version: KeyVersion, label: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run an HSM operation on a working key, loading the key from its wrapped blob
        first when the HSM does not hold it (a restart, or evicted from its bounded set)."""
        try:
            return await op()
        except KeyNotLoaded:
            await guarded(
                self.hsm.load_key(
                    self.vault,
                    version.version,
                    label,
                    version.kty,
                    base64.b64decode(version.wrapped),
                )
            )
        except HsmError as exc:
            raise from_hsm(exc) from exc
        return await guarded(op())

    # --- wire shapes ------------------------------------------------------------

    def kid(self, base: str, entry: KeyEntry, version: KeyVersion) -> str:
        return f"{base}/keys/{entry.name}/{version.version}"

    def bundle(self, base: str, entry: KeyEntry, version: KeyVersion) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": version.jwk(self.kid(base, entry, version)),
            "attributes": self._attributes(version.attributes),
        }
        if version.tags:
            out["tags"] = version.tags
        if version.managed:
            out["managed"] = True
        return out | self.deletion_fields(base, entry)

    def item(self, base: str, entry: KeyEntry, version: KeyVersion) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kid": self.kid(base, entry, version),
            "attributes": self._attributes(version.attributes),
        }
        if version.tags:
            out["tags"] = version.tags
        if version.managed:
            out["managed"] = True
        return out | self.deletion_fields(base, entry)

    def _attributes(self, attributes: Attributes) -> dict[str, Any]:
        wire = attributes.wire(self.config.retention_days, self.config.purge_protection)
        wire["exportable"] = False
        return wire

    # --- lookup ---------------------------------------------------------------

    async def live_version(self, name: str, version: str | None) -> tuple[KeyEntry, KeyVersion]:
        entry = await self.live(name)
        found = entry.version(version)
        if found is None:
            raise self.not_found(f"{name}/{version}")
        return entry, found

    # --- lifecycle ------------------------------------------------------------

    async def create(self, name: str, body: dict[str, Any]) -> tuple[KeyEntry, KeyVersion]:
        async with self.lock(name):
            return await self._create_locked(name, body)

    async def create_owned(
        self, name: str, owner: str, body: dict[str, Any]
    ) -> tuple[KeyEntry, bool]:
        """Create the key for `owner` unless it exists; True when it was made now.

        The look and the create happen under the key's lock, so a retried or
        concurrent request never makes a second version. A key of another owner,
        or a deleted one, is refused with 409 and a code the caller can act on.
        """
        async with self.lock(name):
            existing = await self.owned(name, owner)
            if existing is not None:
                return existing, False
            entry, _ = await self._create_locked(name, body, {OWNER_TAG: owner})
            return entry, True

    async def _create_locked(
        self, name: str, body: dict[str, Any], reserved: dict[str, str] | None = None
    ) -> tuple[KeyEntry, KeyVersion]:
        """Make a new version; `reserved` are the operator's tags, which callers cannot set."""
        kty = body.get("kty")
        if kty not in KEY_TYPES:
            raise BadParameter(f"'kty' must be one of {', '.join(KEY_TYPES)} (got {kty!r})")
        return await self._add_version_locked(
            name, lambda: self._generate(name, kty, body, reserved or {})
        )

    async def _add_version_locked(
        self, name: str, make: Callable[[], Awaitable[KeyVersion]]
    ) -> tuple[KeyEntry, KeyVersion]:
        """Add the version `make` makes in the HSM to the key (a new key if there is none),
        under the name's lock; the key's HSM object goes again if the write fails."""
        entry = await self.find(name)
        if entry is not None:
            self.refuse_managed(entry, "changed")
        await self.check_quota(name, entry)
        if entry is not None and entry.deletion is not None:
            raise Conflict(
                f"Key {name} is currently in a deleted but recoverable state, and its name "
                "cannot be reused; in this state, the key can only be recovered or purged.",
                code="Conflict",
            )
        version = await make()
        new = entry is None
        entry = entry or KeyEntry(name=name)
        entry.versions.append(version)
        try:
            await self._save(entry, [version], new=new)
        except BaseException:
            entry.versions.remove(version)
            await self._destroy_quietly(version.version)
            raise
        return entry, version

    @staticmethod
    def _key_ops(kty: str, key_ops: object) -> list[str]:
        """A new version's key_ops: all its family allows when none are given."""
        allowed = KEY_OPS[family(kty)]
        if key_ops is None:
            return list(allowed)
        if not isinstance(key_ops, list) or not all(isinstance(o, str) for o in key_ops):
            raise BadParameter("'key_ops' must be a list of strings")
        bad = [o for o in key_ops if o not in allowed]
        if bad:
            raise BadParameter(f"key_ops {', '.join(bad)} are not valid for key type {kty}")
        return list(dict.fromkeys(key_ops))

    @staticmethod
    def _new_metadata(
        attributes: object, tags: object, reserved: dict[str, str]
    ) -> tuple[Attributes, dict[str, str]]:
        checked = Attributes()
        checked.update_from(attributes)
        return checked, (check_tags(tags) or {}) | reserved

    async def _generate(
        self, name: str, kty: str, body: dict[str, Any], reserved: dict[str, str]
    ) -> KeyVersion:
        kind = family(kty)
        size = body.get("key_size")
        crv = body.get("crv")
        key_ops = self._key_ops(kty, body.get("key_ops"))
        exponent = body.get("public_exponent")
        # Azure takes no exponent, 0 (the service's choice: what the Java SDK sends when the
        # caller sets none) or 65537, the only one the vault makes.
        if exponent is not None and (type(exponent) is not int or exponent not in (0, 65537)):
            raise BadParameter(
                "'public_exponent' must be 65537, or 0 or absent for the default (65537); "
                "no other RSA public exponent is supported"
            )
        attributes, tags = self._new_metadata(body.get("attributes"), body.get("tags"), reserved)
        version_id = uuid.uuid4().hex
        if kind == "RSA":
            size = 2048 if size is None else size
            if crv is not None or size not in RSA_SIZES:
                raise BadParameter(f"RSA keys take key_size {RSA_SIZES} and no curve")
            generated = await guarded(self.hsm.generate_rsa(self.vault, version_id, name, size))
        elif kind == "EC":
            crv = "P-256" if crv is None else crv
            if size is not None or crv not in CURVES:
                raise BadParameter(f"EC keys take crv {CURVES} and no key_size")
            generated = await guarded(self.hsm.generate_ec(self.vault, version_id, name, crv))
        else:
            size = 256 if size is None else size
            if crv is not None or size not in OCT_SIZES:
                raise BadParameter(f"oct-HSM keys take key_size {OCT_SIZES} and no curve")
            generated = await guarded(self.hsm.generate_aes(self.vault, version_id, name, size))
        return KeyVersion(
            version=version_id,
            kty=kty,
            key_ops=list(key_ops),
            public={k: str(v) for k, v in generated.public.items()},
            wrapped=base64.b64encode(generated.wrapped).decode(),
            size=size if kind != "EC" else None,
            crv=crv if kind == "EC" else None,
            attributes=attributes,
            tags=tags,
        )

    # --- import (BYOK) ---------------------------------------------------------

    async def import_key(self, name: str, body: dict[str, Any]) -> tuple[KeyEntry, KeyVersion]:
        """Key Vault's ImportKey: `{"key": a JWK with its private members, "Hsm": bool,
        "attributes", "tags"}`; a new version when the key exists, as a create."""
        jwk = body.get("key")
        if not isinstance(jwk, dict):
            raise BadParameter("'key' is required: a JSON Web Key with its private members")
        hsm = _hsm_flag(body)
        material = await asyncio.to_thread(keyimport.from_jwk, jwk)
        return await self.import_private_key(
            name,
            material,
            hsm=hsm or str(jwk["kty"]).endswith("-HSM"),
            key_ops=jwk.get("key_ops"),
            attributes=body.get("attributes"),
            tags=body.get("tags"),
        )

    async def import_private_key(
        self,
        name: str,
        key: PrivateKey | KeyMaterial | Mapping[str, Any],
        *,
        hsm: bool = True,
        key_ops: list[str] | None = None,
        attributes: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        reserved: dict[str, str] | None = None,
    ) -> tuple[KeyEntry, KeyVersion]:
        """Import a private key as the key's new version (the key is made if there is none)
        and return both: the one way a caller's key material enters the vault.

        `key` is a `cryptography` RSA or EC private key, a JWK with its private members,
        or material already checked by `keyimport`. The key is kept as a generated one is:
        a SENSITIVE working key in the HSM, wrapped once under the vault's KEK, then
        non-extractable; the version record holds its public parts and that blob only.
        `hsm` makes the key type RSA-HSM or EC-HSM rather than RSA or EC (an oct key is
        always oct-HSM). `key_ops` (default: all the key's family allows), `attributes`
        and `tags` are those of a create; `reserved` are the operator's tags. A bad key is
        a BadParameter (400) naming what is wrong, never a value, and nothing is stored.
        """
        if isinstance(key, KeyMaterial):
            material = key
        elif isinstance(key, Mapping):
            material = await asyncio.to_thread(keyimport.from_jwk, key)
        else:
            material = await asyncio.to_thread(keyimport.from_private_key, key)
        kty = material.family + "-HSM" if hsm or material.family == "oct" else material.family
        ops = self._key_ops(kty, key_ops)
        checked, all_tags = self._new_metadata(attributes, tags, reserved or {})

        async def make() -> KeyVersion:
            version_id = uuid.uuid4().hex
            imported = await guarded(
                self.hsm.import_key(
                    self.vault, version_id, name, kty, material.crv or "", material.parts
                )
            )
            return KeyVersion(
                version=version_id,
                kty=kty,
                key_ops=ops,
                public={k: str(v) for k, v in imported.public.items()},
                wrapped=base64.b64encode(imported.wrapped).decode(),
                size=material.size,
                crv=material.crv,
                attributes=checked,
                tags=all_tags,
            )

        async with self.lock(name):
            return await self._add_version_locked(name, make)

    async def _destroy_quietly(self, version_id: str) -> None:
        try:
            await self.hsm.destroy_key(self.vault, version_id)
        except Exception as exc:  # noqa: BLE001 - the orphan sweep at start-up catches the rest
            log.warning(
                "key object %s was left for the orphan sweep: %s", version_id, type(exc).__name__
            )

    async def rotate(self, name: str) -> tuple[KeyEntry, KeyVersion]:
        entry = await self.live(name)
        self.refuse_managed(entry, "rotated")
        current = entry.current
        reserved = reserved_tags(current.tags)
        body: dict[str, Any] = {
            "kty": current.kty,
            "key_ops": current.key_ops,
            "tags": {k: v for k, v in current.tags.items() if k not in reserved},
        }
        if current.crv:
            body["crv"] = current.crv
        else:
            body["key_size"] = current.size
        expiry = (entry.rotation_policy or {}).get("attributes", {}).get("expiryTime")
        if expiry:
            body["attributes"] = {"exp": now() + parse_duration(expiry)}
        async with self.lock(name):
            return await self._create_locked(name, body, reserved)

    async def update(
        self, name: str, version: str | None, body: dict[str, Any]
    ) -> tuple[KeyEntry, KeyVersion]:
        async with self.lock(name):
            entry, found = await self.live_version(name, version)
            self.refuse_managed(entry, "updated")
            tags = check_tags(body.get("tags"))
            if "key_ops" in body and body["key_ops"] is not None:
                ops = body["key_ops"]
                allowed = KEY_OPS[family(found.kty)]
                if not isinstance(ops, list) or any(o not in allowed for o in ops):
                    raise BadParameter(f"key_ops must be a subset of {', '.join(allowed)}")
                found.key_ops = list(dict.fromkeys(ops))
            found.attributes.update_from(body.get("attributes"))
            if tags is not None:
                found.tags = tags | reserved_tags(found.tags)
            await self._save(entry, [found])
            return entry, found

    async def _purged(self, entry: KeyEntry) -> None:
        for version in entry.versions:
            await self._destroy_quietly(version.version)

    # --- backup ----------------------------------------------------------------

    async def backup(self, name: str) -> str:
        entry = await self.live(name)
        self.refuse_managed(entry, "backed up")
        return await self.seal(entry)

    async def restore(self, body: dict[str, Any]) -> tuple[KeyEntry, KeyVersion]:
        entry = await self.unseal(body)
        for version in entry.versions:
            version.attributes.check()
        async with self.lock(entry.name):
            await self.check_free(entry)
            restored: list[str] = []
            try:
                for version in entry.versions:
                    # Loading proves the blob unwraps under this vault's KEK before the
                    # records are written.
                    await guarded(
                        self.hsm.load_key(
                            self.vault,
                            version.version,
                            entry.name,
                            version.kty,
                            base64.b64decode(version.wrapped),
                        )
                    )
                    restored.append(version.version)
                entry.deletion = None
                await self._save(entry, entry.versions, new=True)
            except BaseException:
                for version_id in restored:
                    await self._destroy_quietly(version_id)
                raise
            return entry, entry.current


def _hsm_flag(body: dict[str, Any]) -> bool:
    """ImportKey's `Hsm` (the wire name; `hsm` is read too): whether the key is an -HSM key."""
    values = [body.get(name) for name in ("Hsm", "hsm") if body.get(name) is not None]
    if not all(isinstance(v, bool) for v in values):
        raise BadParameter("'Hsm' must be true or false")
    if len(set(values)) > 1:
        raise BadParameter("'Hsm' and 'hsm' disagree")
    return bool(values and values[0])
