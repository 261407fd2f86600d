"""Keys of one vault, their cryptography. Private and secret key material stays in the
HSM; public-key operations (verify, RSA encrypt and wrap) run here on the public JWK,
as Azure does."""

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from ..api.vocabulary import family
from ..hsm.errors import (
    HsmError,
    HsmUnavailable,
    KeyNotFound,
    OperationNotAllowed,
    TokenNotFound,
)
from .encoding import b64url, unb64url
from .errors import BadParameter, Forbidden, VaultError
from .keylife import KeyLifecycle
from .objects import (
    EC_ALGORITHM_CURVE,
    OCT_SIZES,
    RSA_ENCRYPTION,
    SIGN_ALGORITHMS,
    KeyEntry,
    KeyVersion,
)

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


class KeyCrypto(KeyLifecycle):
    """Sign, verify, encrypt, decrypt, wrap and unwrap with a vault's keys."""

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
