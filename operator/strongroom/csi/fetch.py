"""Fetching vault objects with the pod's own token, without multiplying vault calls.

Pods that run as the same ServiceAccount are, to the vault, the same caller:
the vault's access list is per subject. So a fetched object is shared for a
short time between pods whose tokens verify to the same subject, and
identical fetches in flight are made once. A token whose subject cannot be
verified locally shares nothing.

The vault is a server the pod's tenant may run, so nothing it sends is trusted
to be small or quick: each answer is read incrementally up to MAX_BODY and
refused beyond, compressed answers are refused (no decompression bomb), header
lines and counts are capped, every fetch has connect, read and total
timeouts, at most MAX_CONCURRENT fetches run at once, and the shared cache
holds at most MAX_CACHE_BYTES.
"""

import asyncio
import base64
import hashlib
import json
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from .. import jwk
from .tokens import IssuerKeys
from .volume import VaultObject

API_VERSION = "7.6"
MAX_BODY = 1024 * 1024  # an Azure Key Vault secret is at most 25 KB; a JWK far less
MAX_HEADER_LINE = 8190
MAX_HEADERS = 64
MAX_CONCURRENT = 32
MAX_CACHE_BYTES = 32 * 1024 * 1024
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 5.0


class FetchError(Exception):
    """The vault refused or failed; `status` is its HTTP status (0 when unreachable)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Cached:
    body: dict[str, Any]
    until: float
    size: int


PKCS12 = "application/x-pkcs12"
PEM = "application/x-pem-file"


def render_files(obj: VaultObject, body: dict[str, Any]) -> list[tuple[str, bytes]]:
    """The files of a fetched object, by path inside the volume: one, or a certificate's
    chain and (when exportable) its private key, both from the one version fetched."""
    if obj.kind != "certificate":
        return [(obj.path, render(obj, body))]
    key, chain, content_type = _certificate_parts(obj, body)
    if obj.format == "pfx":
        if content_type == PKCS12:
            return [(obj.path, base64.b64decode(str(body["value"])))]
        blob = pkcs12.serialize_key_and_certificates(
            None, key, chain[0], chain[1:] or None, serialization.NoEncryption()
        )
        return [(obj.path, blob)]
    files = [(obj.path, b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))]
    if key is None:
        if obj.key_required:
            raise FetchError(
                f"certificate {obj.name} is not exportable: its private key never leaves the "
                f"vault's HSM, so keyPath {obj.key_path!r} cannot be written; remove keyPath "
                "from the volume's object, or make the certificate exportable",
                400,
            )
        return files
    files.append(
        (
            obj.key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
    )
    return files


def _certificate_parts(
    obj: VaultObject, body: dict[str, Any]
) -> tuple[rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None, list[x509.Certificate], str]:
    """(private key or None, chain leaf first, content type) of a certificate's secret."""
    value, content_type = body.get("value"), body.get("contentType")
    if not body.get("kid") or not isinstance(value, str):
        raise FetchError(
            f"secret {obj.name} is not a certificate's secret: mount it as kind secret", 400
        )
    bad = FetchError(f"the vault returned certificate {obj.name} in a form it cannot read", 502)
    key: Any = None
    try:
        if content_type == PKCS12:
            key, leaf, extra = pkcs12.load_key_and_certificates(
                base64.b64decode(value, validate=True), None
            )
            certificates = ([leaf] if leaf is not None else []) + list(extra)
        elif content_type == PEM:
            blocks = value.encode()
            if b"PRIVATE KEY-----" in blocks:
                key = serialization.load_pem_private_key(blocks, None)
            certificates = x509.load_pem_x509_certificates(blocks)
        else:
            raise bad
    except ValueError:
        raise bad from None
    if not certificates or (
        key is not None and not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    ):
        raise bad
    return key, _leaf_first(certificates), str(content_type)


def _leaf_first(certificates: list[x509.Certificate]) -> list[x509.Certificate]:
    """The chain from the leaf (the one certificate that issued none of the others) up,
    then any certificate not on that path, in the order given."""
    issuers = {c.issuer for c in certificates if c.issuer != c.subject}
    leaves = [c for c in certificates if c.subject not in issuers]
    if not leaves:
        return certificates
    chain = [leaves[0]]
    rest = [c for c in certificates if c is not leaves[0]]
    while chain[-1].issuer != chain[-1].subject:
        parent = next((c for c in rest if c.subject == chain[-1].issuer), None)
        if parent is None:
            break
        chain.append(parent)
        rest.remove(parent)
    return chain + rest


def render(obj: VaultObject, body: dict[str, Any]) -> bytes:
    """The file content of a fetched object in the requested format."""
    if obj.kind == "secret":
        value = body.get("value")
        if not isinstance(value, str):
            raise FetchError(f"the vault returned no value for secret {obj.name}", 502)
        if obj.format == "base64":
            try:
                return base64.b64decode(value, validate=True)
            except ValueError:
                raise FetchError(f"secret {obj.name} is not base64, as format asks", 400) from None
        return value.encode()
    document = body.get("key")
    if not isinstance(document, dict):
        raise FetchError(f"the vault returned no public key for key {obj.name}", 502)
    if obj.format == "jwk":
        return json.dumps(jwk.public_members(document), indent=2).encode() + b"\n"
    kty = str(document.get("kty", "")).removesuffix("-HSM")
    if kty not in ("RSA", "EC"):
        raise FetchError(
            f"key {obj.name} is {document.get('kty')} and has no public key to mount", 400
        )
    try:
        key = jwk.public_key(document)
    except jwk.JwkError as exc:
        message = f"the vault returned key {obj.name} with a bad public key: {exc}"
        raise FetchError(message, 502) from None
    return bytes(
        key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


class Fetcher:
    def __init__(
        self,
        ca_file: str | None,
        verifier: IssuerKeys | None,
        share_seconds: float = 30.0,
        timeout: float = 15.0,
        addresses: dict[str, str] | None = None,
    ) -> None:
        """`addresses` maps a vault's host name to the base URL to reach it at instead
        (set by the node's administrator, e.g. when the plugin runs outside the cluster)."""
        self._ssl = ssl.create_default_context(cafile=ca_file)
        self._verifier = verifier
        self._share_seconds = share_seconds
        self._total = timeout
        self._timeout = aiohttp.ClientTimeout(
            total=timeout,
            connect=min(CONNECT_TIMEOUT, timeout),
            sock_connect=min(CONNECT_TIMEOUT, timeout),
            sock_read=min(READ_TIMEOUT, timeout),
        )
        self._addresses = dict(addresses or {})
        self._cache: dict[tuple[str, ...], _Cached] = {}
        self._cache_bytes = 0
        self._inflight: dict[tuple[str, ...], asyncio.Future[dict[str, Any]]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)
        self.vault_calls = 0
        self.cache_hits = 0  # fetches answered from the shared cache
        self.joined = 0  # fetches that waited for an identical one in flight

    async def _identity(self, token: str) -> str:
        if self._verifier is not None:
            subject = await self._verifier.subject(token)
            if subject is not None:
                return "sub:" + subject
        return "token:" + hashlib.sha256(token.encode()).hexdigest()

    def _remember(self, key: tuple[str, ...], body: dict[str, Any], size: int) -> None:
        if len(self._cache) >= 10_000 or self._cache_bytes + size > MAX_CACHE_BYTES:
            self._cache.clear()
            self._cache_bytes = 0
        self._cache[key] = _Cached(body, time.monotonic() + self._share_seconds, size)
        self._cache_bytes += size

    async def fetch(self, vault_url: str, obj: VaultObject, token: str) -> bytes:
        """One file's content (a secret, a key)."""
        return render(obj, await self._fetched(vault_url, obj, token))

    async def fetch_files(
        self, vault_url: str, obj: VaultObject, token: str
    ) -> list[tuple[str, bytes]]:
        """The object's files by path: a certificate's all come from one fetched version
        of its secret (certificate and key of the same version, never a mix)."""
        return render_files(obj, await self._fetched(vault_url, obj, token))

    async def _fetched(self, vault_url: str, obj: VaultObject, token: str) -> dict[str, Any]:
        # A certificate is read through its secret: the PKCS#12 or PEM, with the private
        # key when the certificate is exportable.
        collection = "keys" if obj.kind == "key" else "secrets"
        key = (await self._identity(token), vault_url, collection, obj.name, obj.version)
        cached = self._cache.get(key)
        if cached is not None and cached.until > time.monotonic():
            self.cache_hits += 1
            return cached.body
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._inflight[key] = pending
            try:
                body, size = await self._get(vault_url, collection, obj, token)
                self._remember(key, body, size)
                pending.set_result(body)
            except BaseException as exc:
                pending.set_exception(exc)
                raise
            finally:
                del self._inflight[key]
                if pending.done() and not pending.cancelled():
                    pending.exception()  # mark retrieved: the waiters each get their own copy
            return body
        self.joined += 1
        return await asyncio.shield(pending)

    def _base_url(self, vault_url: str) -> str:
        host = vault_url.removeprefix("https://")
        return self._addresses.get(host, vault_url).rstrip("/")

    async def _get(
        self, vault_url: str, collection: str, obj: VaultObject, token: str
    ) -> tuple[dict[str, Any], int]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                auto_decompress=False,
                max_line_size=MAX_HEADER_LINE,
                max_field_size=MAX_HEADER_LINE,
                max_headers=MAX_HEADERS,
            )
        base = self._base_url(vault_url)
        url = f"{base}/{collection}/{quote(obj.name)}/{obj.version}?api-version={API_VERSION}"
        headers = {"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"}
        async with self._slots:
            self.vault_calls += 1
            try:
                async with asyncio.timeout(self._total):
                    async with self._session.get(
                        url, ssl=self._ssl, headers=headers, allow_redirects=False
                    ) as response:
                        raw = await _read_capped(response, vault_url)
                        status = response.status
            except TimeoutError:
                raise FetchError(
                    f"the vault at {vault_url} did not answer within {self._total:g}s", 0
                ) from None
            except aiohttp.ClientResponseError as exc:
                raise FetchError(
                    f"the vault at {vault_url} sent an invalid answer (header or status line "
                    f"too long, or too many headers): {exc.message[:200]}",
                    0,
                ) from None
            except aiohttp.ClientError as exc:
                raise FetchError(
                    f"the vault at {vault_url} cannot be reached ({type(exc).__name__})", 0
                ) from None
        try:
            payload = json.loads(raw)
        except ValueError:
            raise FetchError(
                f"the vault at {vault_url} answered with something not JSON", 502
            ) from None
        if status != 200:
            error = payload.get("error", {}) if isinstance(payload, dict) else {}
            error = error if isinstance(error, dict) else {}
            message = str(error.get("message") or f"HTTP {status}")[:300]
            raise FetchError(f"the vault refused {obj.kind} {obj.name}: {message}", status)
        if not isinstance(payload, dict):
            raise FetchError("the vault answered with something other than an object", 502)
        return payload, len(raw)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def _read_capped(response: aiohttp.ClientResponse, vault_url: str) -> bytes:
    """The body, read a chunk at a time; refused once it passes MAX_BODY, unbuffered."""
    too_big = FetchError(f"the vault at {vault_url} answered with more than {MAX_BODY} bytes", 502)
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise FetchError(
            f"the vault at {vault_url} answered with content encoding {encoding[:40]!r}, "
            "not the identity encoding asked for",
            502,
        )
    if response.content_length is not None and response.content_length > MAX_BODY:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    while chunk := await response.content.read(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)
