"""Keys of one vault: lifecycle, versions, soft delete, backup and cryptography.

Private and secret key material stays in the HSM; public-key operations
(verify, RSA encrypt and wrap) run here on the public JWK, as Azure does.
"""

import base64
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from ..api.vocabulary import KEY_OPS, family
from ..hsm.errors import (
    HsmError,
    HsmUnavailable,
    KeyNotFound,
    KeyNotLoaded,
    OperationNotAllowed,
    TokenNotFound,
)
from .encoding import b64url, now, unb64url
from .errors import BadParameter, Conflict, Forbidden, VaultError, from_hsm
from .objects import (
    CURVES,
    EC_ALGORITHM_CURVE,
    KEY_TYPES,
    OCT_SIZES,
    OWNER_TAG,
    RSA_ENCRYPTION,
    RSA_SIZES,
    SIGN_ALGORITHMS,
    Attributes,
    KeyEntry,
    KeyVersion,
    check_tags,
    parse_duration,
    reserved_tags,
)
from .store import KEY_CACHE_ENTRIES, ObjectStore, guarded, stored

_HASHES: dict[str, hashes.HashAlgorithm] = {
    "256": hashes.SHA256(),
    "384": hashes.SHA384(),
    "512": hashes.SHA512(),
}
_CURVE_CLASSES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
log = logging.getLogger(__name__)
T = TypeVar("T")
_SIGNING = SIGN_ALGORITHMS["RSA"] + SIGN_ALGORITHMS["EC"]
_AES = tuple(f"A{bits}{mode}" for bits in OCT_SIZES for mode in ("GCM", "CBC", "CBCPAD"))
_AES_KW = tuple(f"A{bits}KW" for bits in OCT_SIZES)
KNOWN_ALGORITHMS = {
    "sign": _SIGNING,
    "verify": _SIGNING,
    "encrypt": RSA_ENCRYPTION + _AES,
    "decrypt": RSA_ENCRYPTION + _AES,
    "wrapKey": RSA_ENCRYPTION + _AES_KW,
    "unwrapKey": RSA_ENCRYPTION + _AES_KW,
}
# The one answer to a ciphertext that does not decrypt or unwrap, whatever the reason
# (OAEP decoding, GCM tag, CBC padding, key wrap integrity): no oracle in the message.
DECRYPT_FAILED = "The value could not be decrypted with this key and algorithm."
# Rotation policy durations: at most 100 years, so that now + expiryTime is a valid exp.


def _body_str(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value:
        raise BadParameter(f"'{field}' is required and must be a string")
    return value


class KeyStore(ObjectStore[KeyEntry]):
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
        return out | self.deletion_fields(base, entry)

    def item(self, base: str, entry: KeyEntry, version: KeyVersion) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kid": self.kid(base, entry, version),
            "attributes": self._attributes(version.attributes),
        }
        if version.tags:
            out["tags"] = version.tags
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
        entry = await self.find(name)
        await self.check_quota(name, entry)
        if entry is not None and entry.deletion is not None:
            raise Conflict(
                f"Key {name} is currently in a deleted but recoverable state, and its name "
                "cannot be reused; in this state, the key can only be recovered or purged.",
                code="Conflict",
            )
        version = await self._generate(name, kty, body, reserved or {})
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

    async def _generate(
        self, name: str, kty: str, body: dict[str, Any], reserved: dict[str, str]
    ) -> KeyVersion:
        kind = family(kty)
        size = body.get("key_size")
        crv = body.get("crv")
        key_ops = body.get("key_ops")
        allowed = KEY_OPS[kind]
        if key_ops is None:
            key_ops = list(allowed)
        if not isinstance(key_ops, list) or not all(isinstance(o, str) for o in key_ops):
            raise BadParameter("'key_ops' must be a list of strings")
        bad = [o for o in key_ops if o not in allowed]
        if bad:
            raise BadParameter(f"key_ops {', '.join(bad)} are not valid for key type {kty}")
        key_ops = list(dict.fromkeys(key_ops))
        exponent = body.get("public_exponent")
        # Azure takes no exponent, 0 (the service's choice: what the Java SDK sends when the
        # caller sets none) or 65537, the only one the vault makes.
        if exponent is not None and (type(exponent) is not int or exponent not in (0, 65537)):
            raise BadParameter(
                "'public_exponent' must be 65537, or 0 or absent for the default (65537); "
                "no other RSA public exponent is supported"
            )
        attributes = Attributes()
        attributes.update_from(body.get("attributes"))
        tags = (check_tags(body.get("tags")) or {}) | reserved
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

    async def _destroy_quietly(self, version_id: str) -> None:
        try:
            await self.hsm.destroy_key(self.vault, version_id)
        except Exception as exc:  # noqa: BLE001 - the orphan sweep at start-up catches the rest
            log.warning(
                "key object %s was left for the orphan sweep: %s", version_id, type(exc).__name__
            )

    async def rotate(self, name: str) -> tuple[KeyEntry, KeyVersion]:
        entry = await self.live(name)
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
        return await self.seal(await self.live(name))

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

    # --- rotation policy ---------------------------------------------------------

    async def rotation_policy(self, base: str, name: str) -> dict[str, Any]:
        entry = await self.live(name)
        policy = entry.rotation_policy or {
            "lifetimeActions": [
                {"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}}
            ],
            "attributes": {},
        }
        return {"id": f"{base}/keys/{entry.name}/rotationpolicy"} | policy

    async def set_rotation_policy(
        self, base: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        raw_actions = body.get("lifetimeActions")
        actions = _lifetime_actions([] if raw_actions is None else raw_actions)
        raw_attributes = body.get("attributes")
        if raw_attributes is None:
            raw_attributes = {}
        if not isinstance(raw_attributes, dict):
            raise BadParameter("'attributes' of a rotation policy must be an object")
        attributes: dict[str, Any] = {}
        expiry = raw_attributes.get("expiryTime")
        if expiry is not None:
            if not isinstance(expiry, str):
                raise BadParameter(
                    "'attributes.expiryTime' of a rotation policy must be an ISO 8601 duration "
                    "string such as P90D"
                )
            parse_duration(expiry)
            attributes["expiryTime"] = expiry
        async with self.lock(name):
            entry = await self.live(name)
            created = (entry.rotation_policy or {}).get("attributes", {}).get("created", now())
            attributes.update({"created": created, "updated": now()})
            entry.rotation_policy = {"lifetimeActions": actions, "attributes": attributes}
            await self._save(entry)
        return await self.rotation_policy(base, name)

    async def rotate_due(self) -> None:
        """Rotate every key whose policy's Rotate action is due."""
        moment = now()
        after = ""
        while True:
            names = await stored(self.storage.scheduled(self.vault, self.kind, after, 100))
            if not names:
                return
            after = names[-1]
            for name in names:
                entry = await self.find(name)
                if entry is not None:
                    await self._rotate_if_due(entry, moment)

    async def _rotate_if_due(self, entry: KeyEntry, moment: int) -> None:
        if entry.deletion is None and entry.rotation_policy and entry.versions:
            current = entry.current
            for action in entry.rotation_policy.get("lifetimeActions", []):
                if (action.get("action") or {}).get("type", "").lower() != "rotate":
                    continue
                trigger = action.get("trigger") or {}
                after = trigger.get("timeAfterCreate")
                before = trigger.get("timeBeforeExpiry")
                due = (after and moment >= current.attributes.created + parse_duration(after)) or (
                    before
                    and current.attributes.exp is not None
                    and moment >= current.attributes.exp - parse_duration(before)
                )
                if due:
                    try:
                        await self.rotate(entry.name)
                    except VaultError as exc:
                        # One key that cannot rotate must not hold back the others.
                        log.warning("rotating key %s failed: %s", entry.name, exc.code)
                    break

    # --- cryptography --------------------------------------------------------------

    async def _usable(self, name: str, version: str | None, op: str) -> tuple[KeyEntry, KeyVersion]:
        entry, found = await self.live_version(name, version)
        reason = found.attributes.usable_now()
        if reason is not None:
            raise Forbidden(reason)
        if op not in found.key_ops:
            raise Forbidden(
                f"Operation {op} is not allowed by the key's key_ops "
                f"({', '.join(found.key_ops) or 'none'}).",
                code="Forbidden",
            )
        return entry, found

    @staticmethod
    def _algorithm(body: dict[str, Any], op: str) -> str:
        alg = _body_str(body, "alg")
        if alg not in KNOWN_ALGORITHMS[op]:
            raise BadParameter(
                f"Algorithm {alg!r} is not a known algorithm for {op}; use one "
                f"of {', '.join(KNOWN_ALGORITHMS[op])}."
            )
        return alg

    async def sign(self, name: str, version: str | None, body: dict[str, Any]) -> tuple[str, bytes]:
        alg = self._algorithm(body, "sign")
        digest = unb64url(body.get("value"), "value")
        entry, key = await self._usable(name, version, "sign")
        self._check_sign_alg(key, alg)
        expected = int(alg[2:]) // 8
        if len(digest) != expected:
            raise BadParameter(
                f"{alg} signs a {expected}-byte digest; the value has {len(digest)} bytes"
            )
        signature = await self._with_key(
            key, entry.name, lambda: self.hsm.sign(self.vault, key.version, alg, digest)
        )
        return key.version, signature

    @staticmethod
    def _check_sign_alg(key: KeyVersion, alg: str) -> None:
        kind = family(key.kty)
        if alg not in SIGN_ALGORITHMS.get(kind, ()):
            raise BadParameter(f"Algorithm {alg} is not supported by key type {key.kty}")
        if kind == "EC" and EC_ALGORITHM_CURVE[alg] != key.crv:
            raise BadParameter(f"Algorithm {alg} does not match the key's curve {key.crv}")

    async def verify(self, name: str, version: str | None, body: dict[str, Any]) -> bool:
        alg = self._algorithm(body, "verify")
        digest = unb64url(body.get("digest"), "digest")
        signature = unb64url(body.get("value"), "value")
        _, key = await self._usable(name, version, "verify")
        self._check_sign_alg(key, alg)
        chosen = _HASHES[alg[2:]]
        prehashed = utils.Prehashed(chosen)
        if len(digest) != chosen.digest_size:
            raise BadParameter(f"{alg} verifies a {chosen.digest_size}-byte digest")
        try:
            if family(key.kty) == "EC":
                size = (_CURVE_CLASSES[key.crv or ""].key_size + 7) // 8
                if len(signature) != 2 * size:
                    return False
                der = utils.encode_dss_signature(
                    int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
                )
                self._ec_public(key).verify(der, digest, ec.ECDSA(prehashed))
            else:
                pad: padding.AsymmetricPadding = padding.PKCS1v15()
                if alg.startswith("PS"):
                    pad = padding.PSS(padding.MGF1(chosen), chosen.digest_size)
                self._rsa_public(key).verify(signature, digest, pad, prehashed)
        except InvalidSignature:
            return False
        return True

    async def encrypt(
        self,
        name: str,
        version: str | None,
        body: dict[str, Any],
        op: str = "encrypt",
        *,
        caller_may_decrypt: bool = False,
    ) -> tuple[str, dict[str, Any]]:
        """Encrypt or wrap; for AES the vault picks the IV.

        AES-CBC under a caller-chosen IV is the raw block cipher (E_K(IV) for a zero
        block): it would give the keystream of any AES-GCM ciphertext under the key.
        So a caller may choose a CBC IV only when it may decrypt with this key anyway;
        a GCM IV is never the caller's.
        """
        alg = self._algorithm(body, op)
        plaintext = unb64url(body.get("value"), "value")
        entry, key = await self._usable(name, version, op)
        kind = family(key.kty)
        if kind == "RSA":
            if alg not in RSA_ENCRYPTION:
                raise BadParameter(f"Algorithm {alg} is not supported by key type {key.kty}")
            try:
                out = self._rsa_public(key).encrypt(plaintext, _rsa_padding(alg))
            except ValueError:
                raise BadParameter("The value is too long for this key and algorithm") from None
            return key.version, {"value": b64url(out)}
        if kind != "oct":
            raise BadParameter(f"Key type {key.kty} cannot {op}")
        mode = self._oct_mode(key, alg, op)
        if mode == "KW":
            out = await self._with_key(
                key, entry.name, lambda: self.hsm.aes_wrap(self.vault, key.version, plaintext)
            )
            return key.version, {"value": b64url(out)}
        if body.get("iv") and (
            mode == "GCM" or not caller_may_decrypt or "decrypt" not in key.key_ops
        ):
            raise BadParameter(
                f"{alg} encryption takes no 'iv' from this caller: the vault picks a random "
                "one and returns it (a chosen iv needs the decrypt permission and a key "
                "whose key_ops include decrypt; AES-GCM ivs are always the vault's)."
            )
        if mode == "GCM":
            iv = os.urandom(12)
            aad = unb64url(body["aad"], "aad") if body.get("aad") else None
            cipher, tag = await self._with_key(
                key,
                entry.name,
                lambda: self.hsm.aes_gcm_encrypt(self.vault, key.version, plaintext, iv, aad),
            )
            result = {"value": b64url(cipher), "iv": b64url(iv), "tag": b64url(tag)}
            if aad:
                result["aad"] = b64url(aad)
            return key.version, result
        iv = unb64url(body["iv"], "iv") if body.get("iv") else os.urandom(16)
        if len(iv) != 16:
            raise BadParameter("AES-CBC needs a 16-byte iv")
        if mode == "CBC" and len(plaintext) % 16:
            raise BadParameter(f"{alg} needs a value whose length is a multiple of 16 bytes")
        out = await self._with_key(
            key,
            entry.name,
            lambda: self.hsm.aes_cbc(
                self.vault, key.version, plaintext, iv, pad=mode == "CBCPAD", encrypt=True
            ),
        )
        return key.version, {"value": b64url(out), "iv": b64url(iv)}

    async def decrypt(
        self, name: str, version: str | None, body: dict[str, Any], op: str = "decrypt"
    ) -> tuple[str, bytes]:
        alg = self._algorithm(body, op)
        data = unb64url(body.get("value"), "value")
        entry, key = await self._usable(name, version, op)
        kind = family(key.kty)
        if kind == "RSA":
            if alg not in RSA_ENCRYPTION:
                raise BadParameter(f"Algorithm {alg} is not supported by key type {key.kty}")
            return key.version, await self._decrypting(
                key, entry.name, lambda: self.hsm.rsa_decrypt(self.vault, key.version, alg, data)
            )
        if kind != "oct":
            raise BadParameter(f"Key type {key.kty} cannot {op}")
        mode = self._oct_mode(key, alg, op)
        if mode == "KW":
            return key.version, await self._decrypting(
                key, entry.name, lambda: self.hsm.aes_unwrap(self.vault, key.version, data)
            )
        iv = unb64url(body.get("iv"), "iv")
        if mode == "GCM":
            tag = unb64url(body.get("tag"), "tag")
            aad = unb64url(body["aad"], "aad") if body.get("aad") is not None else None
            # The vault makes 12-byte ivs and 16-byte tags: nothing else is its ciphertext.
            if len(iv) != 12 or len(tag) != 16:
                raise BadParameter(f"{alg} decryption takes a 12-byte iv and a 16-byte tag")
            return key.version, await self._decrypting(
                key,
                entry.name,
                lambda: self.hsm.aes_gcm_decrypt(
                    self.vault, key.version, data, iv, aad or None, tag
                ),
            )
        if len(iv) != 16:
            raise BadParameter("AES-CBC needs a 16-byte iv")
        return key.version, await self._decrypting(
            key,
            entry.name,
            lambda: self.hsm.aes_cbc(
                self.vault, key.version, data, iv, pad=mode == "CBCPAD", encrypt=False
            ),
        )

    @staticmethod
    def _oct_mode(key: KeyVersion, alg: str, op: str) -> str:
        for mode in ("GCM", "CBCPAD", "CBC", "KW"):
            if alg.startswith("A") and alg.endswith(mode) and alg[1 : -len(mode)].isdigit():
                bits = int(alg[1 : -len(mode)])
                if bits != key.size:
                    raise BadParameter(
                        f"Algorithm {alg} needs a {bits}-bit key; this key has {key.size} bits"
                    )
                wrapping = op in ("wrapKey", "unwrapKey")
                if (mode == "KW") != wrapping:
                    raise BadParameter(f"Algorithm {alg} cannot be used to {op}")
                return mode
        raise BadParameter(f"Algorithm {alg} is not supported by key type {key.kty}")

    async def _decrypting(
        self, key: KeyVersion, label: str, op: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        """Decrypt or unwrap a caller's value in the HSM. The HSM's InvalidInput, and its
        general failure (how SoftHSM2 reports a wrong GCM tag, CBC padding or key wrap
        integrity), become one fixed 400: the answer tells nothing of why."""
        try:
            return await self._with_key(key, label, op)
        except VaultError as exc:
            cause = exc.__cause__
            if isinstance(cause, HsmError) and not isinstance(
                cause, (HsmUnavailable, TokenNotFound, KeyNotFound, OperationNotAllowed)
            ):
                raise BadParameter(DECRYPT_FAILED, code="BadParameter") from None
            raise

    @staticmethod
    def _rsa_public(key: KeyVersion) -> rsa.RSAPublicKey:
        numbers = rsa.RSAPublicNumbers(int(key.public["e"], 16), int(key.public["n"], 16))
        return numbers.public_key()

    @staticmethod
    def _ec_public(key: KeyVersion) -> ec.EllipticCurvePublicKey:
        curve = _CURVE_CLASSES[key.crv or ""]
        numbers = ec.EllipticCurvePublicNumbers(
            int(key.public["x"], 16), int(key.public["y"], 16), curve
        )
        return numbers.public_key()


def _rsa_padding(alg: str) -> padding.AsymmetricPadding:
    if alg == "RSA1_5":
        return padding.PKCS1v15()
    chosen: hashes.HashAlgorithm = hashes.SHA256()
    if alg == "RSA-OAEP":
        chosen = hashes.SHA1()  # noqa: S303 - RSA-OAEP is defined with SHA-1
    return padding.OAEP(padding.MGF1(chosen), chosen, None)


def _lifetime_actions(raw: object) -> list[dict[str, Any]]:
    """The lifetime actions of a rotation policy, checked and reduced to their known fields."""
    if not isinstance(raw, list) or len(raw) > 2:
        raise BadParameter("'lifetimeActions' is a list of at most 2 actions")
    actions = []
    for action in raw:
        if not isinstance(action, dict) or not isinstance(action.get("action"), dict):
            raise BadParameter("each lifetime action is an object with an 'action' object")
        kind = action["action"].get("type")
        trigger = action.get("trigger")
        if not isinstance(kind, str) or kind.lower() not in ("rotate", "notify"):
            raise BadParameter("each lifetime action's type is Rotate or Notify")
        if not isinstance(trigger, dict):
            raise BadParameter("each lifetime action needs a 'trigger' object")
        durations = {
            k: v
            for k, v in trigger.items()
            if k in ("timeAfterCreate", "timeBeforeExpiry") and v is not None
        }
        if len(durations) != 1:
            raise BadParameter(
                "each trigger has exactly one of timeAfterCreate and timeBeforeExpiry"
            )
        for value in durations.values():
            parse_duration(value)
        actions.append({"trigger": durations, "action": {"type": kind.capitalize()}})
    return actions
