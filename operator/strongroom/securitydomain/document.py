"""The security domain's documents: what a download returns, and what an upload takes.

Download (`value` of POST /securitydomain/download, version 2)::

    {"EncData": {"data": [{"compact_jwe": <dir JWE>, "tag": <tag>}], "kdf": "sp108_kdf"},
     "SharedKeys": {"enc_shares": [{"enc_key": <RSA-OAEP-256 JWE>, "x5t_256": <thumbprint>}],
                    "key_algorithm": "shamir_share", "required": M},
     "version": 2}

Upload (`value` of POST /securitydomain/upload): the same `EncData`, encrypted under a fresh
key K', and `"WrappedKey": {"enc_key": <K' in an RSA-OAEP-256 JWE>, "x5t_256": <thumbprint
of the transfer key's certificate>}`.

A thumbprint is base64url (no padding) of SHA-256 over the whole certificate DER. Readers
here check every field they use and refuse the rest with a `DomainError` saying what is wrong.
"""

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .. import base64url
from . import jwe, kdf, shamir

VERSION = 2
KDF = "sp108_kdf"
KEY_ALGORITHM = "shamir_share"
MIN_CERTIFICATES, MAX_CERTIFICATES = 3, 10
MIN_REQUIRED, MAX_REQUIRED = 2, 10
MIN_RSA_BITS = 4096 // 2
ROOT_BYTES = 32
MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_DATA_ITEMS = 16


class DomainError(ValueError):
    """A security-domain document or request that is refused; the message says why."""


def thumbprint(certificate: x509.Certificate) -> str:
    return base64url.encode(
        hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()
    )


def certificate_jwk(certificate: x509.Certificate, **extra: Any) -> dict[str, Any]:
    """A certificate as a download request names it (and as the transfer key is served)."""
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise DomainError("a security domain certificate must hold an RSA key")
    numbers = key.public_numbers()
    der = certificate.public_bytes(serialization.Encoding.DER)
    return {
        "kty": "RSA",
        "key_ops": ["verify", "encrypt", "wrapKey"],
        "alg": jwe.RSA_OAEP_256,
        "n": base64url.encode_uint(numbers.n),
        "e": base64url.encode_uint(numbers.e),
        "x5c": [base64.b64encode(der).decode("ascii")],
        "x5t": base64url.encode(hashlib.sha1(der).digest()),  # noqa: S324 - a name, as JOSE has it
        "x5t#S256": thumbprint(certificate),
    } | extra


def _thumbprint_text(value: object, field: str = "x5t#S256") -> str:
    """A thumbprint as sent: base64url, or standard base64, either padded or not."""
    if not isinstance(value, str):
        raise DomainError(f"'{field}' must be a string")
    text = value.replace("+", "-").replace("/", "_").rstrip("=")
    try:
        base64url.decode(text)
    except ValueError:
        raise DomainError(f"'{field}' is not base64url") from None
    return text


def read_certificate(jwk: object, position: int) -> x509.Certificate:
    """The certificate of one JWK of a download request, checked against the JWK."""
    where = f"certificate {position + 1}"
    if not isinstance(jwk, Mapping):
        raise DomainError(f"{where} must be a JSON web key (an object)")
    if jwk.get("kty") not in ("RSA", "RSA-HSM"):
        raise DomainError(f"{where}: 'kty' must be RSA")
    if jwk.get("use") not in (None, "enc"):
        raise DomainError(f"{where}: 'use', when given, must be 'enc'")
    if jwk.get("alg") not in (None, jwe.RSA_OAEP_256):
        raise DomainError(f"{where}: 'alg', when given, must be {jwe.RSA_OAEP_256}")
    chain = jwk.get("x5c")
    if not isinstance(chain, list) or not chain or not isinstance(chain[0], str):
        raise DomainError(f"{where}: 'x5c' must hold the certificate (standard base64 DER)")
    try:
        der = base64.b64decode(chain[0], validate=True)
        certificate = x509.load_der_x509_certificate(der)
    except (ValueError, binascii.Error):
        raise DomainError(f"{where}: 'x5c' does not hold an X.509 certificate") from None
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise DomainError(f"{where}: the certificate's key is not an RSA key")
    if key.key_size < MIN_RSA_BITS:
        raise DomainError(
            f"{where}: the certificate's RSA key has {key.key_size} bits; at least "
            f"{MIN_RSA_BITS} are needed"
        )
    numbers = key.public_numbers()
    try:
        n, e = base64url.decode_uint(jwk.get("n")), base64url.decode_uint(jwk.get("e"))  # type: ignore[arg-type]
    except ValueError:
        raise DomainError(f"{where}: 'n' and 'e' must be base64url integers") from None
    if (n, e) != (numbers.n, numbers.e):
        raise DomainError(f"{where}: 'n' and 'e' are not the key of the certificate in 'x5c'")
    if _thumbprint_text(jwk.get("x5t#S256")) != thumbprint(certificate):
        raise DomainError(f"{where}: 'x5t#S256' is not the SHA-256 thumbprint of 'x5c'")
    return certificate


def read_certificate_request(body: object) -> tuple[list[x509.Certificate], int]:
    """The certificates and quorum of a download request, every rule checked."""
    if not isinstance(body, Mapping):
        raise DomainError("the request body must be a JSON object")
    jwks = body.get("certificates")
    if not isinstance(jwks, list):
        raise DomainError("'certificates' must be a list of JSON web keys")
    if not MIN_CERTIFICATES <= len(jwks) <= MAX_CERTIFICATES:
        raise DomainError(
            f"'certificates' must hold {MIN_CERTIFICATES} to {MAX_CERTIFICATES} certificates, "
            f"not {len(jwks)}"
        )
    required = body.get("required", MIN_REQUIRED)
    if not isinstance(required, int) or isinstance(required, bool):
        raise DomainError("'required' must be an integer")
    if not MIN_REQUIRED <= required <= MAX_REQUIRED:
        raise DomainError(f"'required' must be from {MIN_REQUIRED} to {MAX_REQUIRED}")
    if required > len(jwks):
        raise DomainError(
            f"'required' ({required}) cannot be more than the number of certificates ({len(jwks)})"
        )
    certificates = [read_certificate(jwk, i) for i, jwk in enumerate(jwks)]
    seen: dict[str, int] = {}
    for i, certificate in enumerate(certificates):
        first = seen.setdefault(thumbprint(certificate), i)
        if first != i:
            raise DomainError(
                f"certificates {first + 1} and {i + 1} are the same certificate: each holder "
                "of a share must have a certificate of their own"
            )
    return certificates, required


def _encrypt_data(root: bytes, items: Mapping[str, bytes]) -> dict[str, Any]:
    return {
        "data": [
            {"compact_jwe": jwe.encrypt_dir(kdf.data_key(root, tag), tag, plain), "tag": tag}
            for tag, plain in items.items()
        ],
        "kdf": KDF,
    }


def build_download(
    root: bytes,
    certificates: list[x509.Certificate],
    required: int,
    items: Mapping[str, bytes],
    coefficient: Callable[[], int] | None = None,
) -> str:
    """The download document for `root`, split among `certificates`, protecting `items`."""
    if len(root) != ROOT_BYTES:
        raise DomainError(f"the root secret is {ROOT_BYTES} bytes")
    split_args = {} if coefficient is None else {"coefficient": coefficient}
    shares = shamir.split(root, required, len(certificates), **split_args)
    enc_shares = []
    for certificate, share in zip(certificates, shares, strict=True):
        key = certificate.public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        enc_shares.append(
            {"enc_key": jwe.encrypt_to_key(key, share), "x5t_256": thumbprint(certificate)}
        )
    document = {
        "EncData": _encrypt_data(root, items),
        "SharedKeys": {
            "enc_shares": enc_shares,
            "key_algorithm": KEY_ALGORITHM,
            "required": required,
        },
        "version": VERSION,
    }
    return json.dumps(document, separators=(",", ":"))


def _load(text: object, what: str) -> dict[str, Any]:
    if not isinstance(text, str):
        raise DomainError(f"the {what} must be JSON text")
    if len(text) > MAX_DOCUMENT_BYTES:
        raise DomainError(f"the {what} is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        document = json.loads(text)
    except ValueError:
        raise DomainError(f"the {what} is not JSON") from None
    if not isinstance(document, dict):
        raise DomainError(f"the {what} must be a JSON object")
    return document


@dataclass(frozen=True)
class DataItem:
    tag: str
    compact_jwe: str


def _read_data(document: Mapping[str, Any], what: str) -> list[DataItem]:
    enc = document.get("EncData")
    if not isinstance(enc, Mapping) or enc.get("kdf") != KDF:
        raise DomainError(f"the {what}'s 'EncData' must be an object with kdf {KDF!r}")
    data = enc.get("data")
    if not isinstance(data, list) or not 1 <= len(data) <= MAX_DATA_ITEMS:
        raise DomainError(f"the {what}'s 'EncData.data' must list 1 to {MAX_DATA_ITEMS} items")
    items = []
    for item in data:
        if not isinstance(item, Mapping):
            raise DomainError(f"each item of the {what}'s 'EncData.data' must be an object")
        tag, compact = item.get("tag"), item.get("compact_jwe")
        if not isinstance(tag, str) or not tag.isascii() or not 1 <= len(tag) <= 64:
            raise DomainError(f"an item of the {what} has no ASCII 'tag' of 1-64 characters")
        if not isinstance(compact, str):
            raise DomainError(f"the {what}'s item {tag!r} has no 'compact_jwe'")
        items.append(DataItem(tag, compact))
    if len({i.tag for i in items}) != len(items):
        raise DomainError(f"the {what} has two items with one tag")
    return items


def open_data(root: bytes, items: list[DataItem], what: str) -> dict[str, bytes]:
    """Every item decrypted with the key its tag derives from `root`; all or nothing."""
    opened = {}
    for item in items:
        try:
            opened[item.tag] = jwe.decrypt_dir(
                item.compact_jwe, kdf.data_key(root, item.tag), item.tag
            )
        except jwe.JweError as exc:
            raise DomainError(f"the {what}'s item {item.tag!r} does not open: {exc}") from None
    return opened


@dataclass(frozen=True)
class EncryptedShare:
    x5t_256: str
    enc_key: str


@dataclass(frozen=True)
class Download:
    required: int
    shares: list[EncryptedShare]
    data: list[DataItem]


def read_download(text: object) -> Download:
    what = "security domain"
    document = _load(text, what)
    if document.get("version") not in (None, VERSION):
        raise DomainError(f"the {what} has version {document.get('version')!r}, not {VERSION}")
    shared = document.get("SharedKeys")
    if not isinstance(shared, Mapping) or shared.get("key_algorithm") != KEY_ALGORITHM:
        raise DomainError(f"the {what}'s 'SharedKeys' must use {KEY_ALGORITHM!r}")
    required = shared.get("required")
    if not isinstance(required, int) or isinstance(required, bool):
        raise DomainError(f"the {what}'s 'required' must be an integer")
    if not MIN_REQUIRED <= required <= MAX_REQUIRED:
        raise DomainError(f"the {what}'s 'required' must be from {MIN_REQUIRED} to {MAX_REQUIRED}")
    raw_shares = shared.get("enc_shares")
    if not isinstance(raw_shares, list) or len(raw_shares) < required:
        raise DomainError(f"the {what} holds fewer shares than it requires")
    shares = []
    for raw in raw_shares:
        if not isinstance(raw, Mapping):
            raise DomainError(f"each of the {what}'s shares must be an object")
        x5t, enc_key = raw.get("x5t_256"), raw.get("enc_key")
        if not isinstance(x5t, str) or not isinstance(enc_key, str):
            raise DomainError(f"each of the {what}'s shares needs 'x5t_256' and 'enc_key'")
        shares.append(EncryptedShare(_thumbprint_text(x5t, "x5t_256"), enc_key))
    return Download(required, shares, _read_data(document, what))


@dataclass(frozen=True)
class Upload:
    x5t_256: str
    enc_key: str
    data: list[DataItem]


def read_upload(text: object) -> Upload:
    what = "uploaded security domain"
    document = _load(text, what)
    wrapped = document.get("WrappedKey")
    if not isinstance(wrapped, Mapping):
        raise DomainError(
            f"the {what} has no 'WrappedKey': upload the blob made for this pool's transfer "
            "key, not the downloaded security domain itself"
        )
    x5t, enc_key = wrapped.get("x5t_256"), wrapped.get("enc_key")
    if not isinstance(x5t, str) or not isinstance(enc_key, str):
        raise DomainError(f"the {what}'s 'WrappedKey' needs 'x5t_256' and 'enc_key'")
    return Upload(_thumbprint_text(x5t, "WrappedKey.x5t_256"), enc_key, _read_data(document, what))


def build_upload(key: bytes, transfer: x509.Certificate, plaintexts: Mapping[str, bytes]) -> str:
    """The upload document: `plaintexts` under `key` (32 bytes), `key` to the transfer
    certificate. Written as json.dumps writes by default, as Azure's clients do."""
    if len(key) != ROOT_BYTES:
        raise DomainError(f"the upload key is {ROOT_BYTES} bytes")
    public = transfer.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise DomainError("the transfer key must be an RSA key")
    document = {
        "EncData": _encrypt_data(key, plaintexts),
        "WrappedKey": {"enc_key": jwe.encrypt_to_key(public, key), "x5t_256": thumbprint(transfer)},
    }
    return json.dumps(document)


def read_transfer_key(body: object) -> x509.Certificate:
    """The transfer key's certificate from GET /securitydomain/upload's answer (or its
    `transfer_key` alone, as a JWK object or its JSON text)."""
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            raise DomainError("the transfer key is not JSON") from None
    if isinstance(body, Mapping) and "transfer_key" in body:
        if body.get("key_format", "jwk") != "jwk":
            raise DomainError("the transfer key's 'key_format' must be 'jwk'")
        return read_transfer_key(body["transfer_key"])
    return read_certificate(body, 0)
