"""Compact JWE (RFC 7516) as the security domain uses it: content encryption A256CBC-HS512
(RFC 7518, 5.2.5), keys either RSA-OAEP-256 to a certificate's key or `dir` (a key derived
from the domain's root secret).

Decryption demands a 32-byte tag and compares it in constant time before anything is
decrypted; every failure is a `JweError` that says which part is wrong, never what it held.
"""

import hashlib
import hmac
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .. import base64url

ENC = "A256CBC-HS512"
RSA_OAEP_256 = "RSA-OAEP-256"
DIR = "dir"
CEK_BYTES = 64
TAG_BYTES = 32
IV_BYTES = 16
MAX_COMPACT = 1024 * 1024
_compact_json = json.JSONEncoder(separators=(",", ":")).encode


class JweError(ValueError):
    """A JWE that is malformed or does not decrypt; the message says which part."""


def oaep_256() -> OAEP:
    return OAEP(mgf=MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def _mac(mac_key: bytes, aad: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    length = (len(aad) * 8).to_bytes(8, "big")
    return hmac.new(mac_key, aad + iv + ciphertext + length, hashlib.sha512).digest()[:TAG_BYTES]


def cbc_hs512_encrypt(
    cek: bytes, plaintext: bytes, aad: bytes, iv: bytes | None = None
) -> tuple[bytes, bytes, bytes]:
    """(iv, ciphertext, tag) of A256CBC-HS512: MAC key CEK[:32], AES key CEK[32:]."""
    if len(cek) != CEK_BYTES:
        raise JweError(f"A256CBC-HS512 needs a {CEK_BYTES}-byte key")
    iv = os.urandom(IV_BYTES) if iv is None else iv
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(cek[32:]), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    return iv, ciphertext, _mac(cek[:32], aad, iv, ciphertext)


def cbc_hs512_decrypt(cek: bytes, iv: bytes, ciphertext: bytes, tag: bytes, aad: bytes) -> bytes:
    if len(cek) != CEK_BYTES:
        raise JweError(f"A256CBC-HS512 needs a {CEK_BYTES}-byte key")
    if len(tag) != TAG_BYTES:
        raise JweError(f"the authentication tag is {len(tag)} bytes, not {TAG_BYTES}")
    if len(iv) != IV_BYTES or not ciphertext or len(ciphertext) % 16:
        raise JweError("the IV or the ciphertext has the wrong length")
    if not hmac.compare_digest(_mac(cek[:32], aad, iv, ciphertext), tag):
        raise JweError("the authentication tag does not verify")
    decryptor = Cipher(algorithms.AES(cek[32:]), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise JweError("the padding is wrong") from None


@dataclass(frozen=True)
class Compact:
    """The five parts of a compact JWE, decoded, and the header's text as the AAD."""

    header: dict[str, Any]
    aad: bytes
    encrypted_key: bytes
    iv: bytes
    ciphertext: bytes
    tag: bytes

    @classmethod
    def parse(cls, text: object) -> "Compact":
        if not isinstance(text, str) or len(text) > MAX_COMPACT:
            raise JweError("a compact JWE is a string of at most 1 MiB")
        parts = text.split(".")
        if len(parts) != 5:
            raise JweError("a compact JWE has five parts")
        try:
            raw_header = base64url.decode(parts[0])
            header = json.loads(raw_header.decode("ascii"))
            decoded = [base64url.decode(p) for p in parts[1:]]
        except (ValueError, UnicodeDecodeError):
            raise JweError("a part of the JWE is not base64url, or its header not JSON") from None
        if not isinstance(header, dict) or not all(isinstance(v, str) for v in header.values()):
            raise JweError("the JWE header is not an object of strings")
        return cls(header, parts[0].encode("ascii"), *decoded)

    def expect(self, alg: str, kid: str | None = None) -> None:
        if self.header.get("alg") != alg or self.header.get("enc") != ENC:
            raise JweError(f"the JWE must have alg {alg} and enc {ENC}")
        if kid is not None and self.header.get("kid") != kid:
            raise JweError(f"the JWE's kid must be {kid!r}")

    def open(self, cek: bytes) -> bytes:
        return cbc_hs512_decrypt(cek, self.iv, self.ciphertext, self.tag, self.aad)


def _compact(header: dict[str, str], encrypted_key: bytes, cek: bytes, plaintext: bytes) -> str:
    protected = base64url.encode(_compact_json(header).encode("ascii"))
    iv, ciphertext, tag = cbc_hs512_encrypt(cek, plaintext, protected.encode("ascii"))
    return ".".join(
        [protected] + [base64url.encode(p) for p in (encrypted_key, iv, ciphertext, tag)]
    )


def encrypt_to_key(public_key: rsa.RSAPublicKey, plaintext: bytes) -> str:
    """RSA-OAEP-256 of a fresh 64-byte CEK to `public_key`, the plaintext under the CEK."""
    cek = os.urandom(CEK_BYTES)
    header = {"alg": RSA_OAEP_256, "enc": ENC, "kid": "not used"}
    return _compact(header, public_key.encrypt(cek, oaep_256()), cek, plaintext)


def decrypt_with(compact: str, unwrap: Callable[[bytes], bytes]) -> bytes:
    """Open an RSA-OAEP-256 JWE: `unwrap` turns the encrypted key into the CEK (a private
    key here, or the HSM); any failure of it is the same JweError."""
    parsed = Compact.parse(compact)
    parsed.expect(RSA_OAEP_256)
    try:
        cek = unwrap(parsed.encrypted_key)
    except ValueError:
        raise JweError("the content key does not decrypt with this private key") from None
    if len(cek) != CEK_BYTES:
        raise JweError("the content key does not decrypt with this private key")
    return parsed.open(cek)


def decrypt_with_key(compact: str, private_key: rsa.RSAPrivateKey) -> bytes:
    return decrypt_with(compact, lambda data: private_key.decrypt(data, oaep_256()))


def encrypt_dir(cek: bytes, kid: str, plaintext: bytes) -> str:
    """A `dir` JWE: the content key is given (derived from the root secret), the key part
    empty."""
    return _compact({"alg": DIR, "enc": ENC, "kid": kid}, b"", cek, plaintext)


def decrypt_dir(compact: str, cek: bytes, kid: str) -> bytes:
    parsed = Compact.parse(compact)
    parsed.expect(DIR)
    if parsed.header.get("kid") != kid:
        raise JweError(f"the JWE's kid must be its tag {kid!r}")
    if parsed.encrypted_key:
        raise JweError("a dir JWE has an empty key part")
    return parsed.open(cek)
