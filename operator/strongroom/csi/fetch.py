"""Fetching vault objects with the pod's own token, without multiplying vault calls.

Pods that run as the same ServiceAccount are, to the vault, the same caller:
the vault's access list is per subject. So a fetched object is shared for a
short time between pods whose tokens verify to the same subject, and
identical fetches in flight are made once. A token whose subject cannot be
verified locally shares nothing.
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
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .tokens import TokenVerifier
from .volume import VaultObject

API_VERSION = "7.6"
CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}


class FetchError(Exception):
    """The vault refused or failed; `status` is its HTTP status (0 when unreachable)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Cached:
    body: dict[str, Any]
    until: float


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


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
    jwk = body.get("key") or {}
    public = {
        k: v for k, v in jwk.items() if k in ("kid", "kty", "key_ops", "n", "e", "crv", "x", "y")
    }
    if obj.format == "jwk":
        return json.dumps(public, indent=2).encode() + b"\n"
    kty = str(jwk.get("kty", "")).removesuffix("-HSM")
    if kty == "RSA":
        key: Any = rsa.RSAPublicNumbers(
            int.from_bytes(_b64url(jwk["e"]), "big"), int.from_bytes(_b64url(jwk["n"]), "big")
        ).public_key()
    elif kty == "EC":
        key = ec.EllipticCurvePublicNumbers(
            int.from_bytes(_b64url(jwk["x"]), "big"),
            int.from_bytes(_b64url(jwk["y"]), "big"),
            CURVES[jwk["crv"]],
        ).public_key()
    else:
        raise FetchError(f"key {obj.name} is {jwk.get('kty')} and has no public key to mount", 400)
    return bytes(
        key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


class Fetcher:
    def __init__(
        self,
        ca_file: str | None,
        verifier: TokenVerifier | None,
        share_seconds: float = 30.0,
        timeout: float = 15.0,
    ) -> None:
        self._ssl = ssl.create_default_context(cafile=ca_file)
        self._verifier = verifier
        self._share_seconds = share_seconds
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._cache: dict[tuple[str, ...], _Cached] = {}
        self._inflight: dict[tuple[str, ...], asyncio.Future[dict[str, Any]]] = {}
        self._session: aiohttp.ClientSession | None = None
        self.vault_calls = 0

    def _identity(self, token: str) -> str:
        if self._verifier is not None:
            subject = self._verifier.subject(token)
            if subject is not None:
                return "sub:" + subject
        return "token:" + hashlib.sha256(token.encode()).hexdigest()

    async def fetch(self, vault_url: str, obj: VaultObject, token: str) -> bytes:
        collection = "secrets" if obj.kind == "secret" else "keys"
        key = (self._identity(token), vault_url, collection, obj.name, obj.version)
        cached = self._cache.get(key)
        if cached is not None and cached.until > time.monotonic():
            return render(obj, cached.body)
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._inflight[key] = pending
            try:
                body = await self._get(vault_url, collection, obj, token)
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[key] = _Cached(body, time.monotonic() + self._share_seconds)
                pending.set_result(body)
            except BaseException as exc:
                pending.set_exception(exc)
                raise
            finally:
                del self._inflight[key]
                if pending.done() and not pending.cancelled():
                    pending.exception()  # mark retrieved: the waiters each get their own copy
            return render(obj, body)
        return render(obj, await asyncio.shield(pending))

    async def _get(
        self, vault_url: str, collection: str, obj: VaultObject, token: str
    ) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        url = f"{vault_url}/{collection}/{quote(obj.name)}/{obj.version}?api-version={API_VERSION}"
        self.vault_calls += 1
        try:
            async with self._session.get(
                url, ssl=self._ssl, headers={"Authorization": f"Bearer {token}"}
            ) as response:
                payload = await response.json(content_type=None)
                if response.status != 200:
                    error = (payload or {}).get("error", {}) if isinstance(payload, dict) else {}
                    message = str(error.get("message") or f"HTTP {response.status}")[:300]
                    raise FetchError(
                        f"the vault refused {obj.kind} {obj.name}: {message}", response.status
                    )
                if not isinstance(payload, dict):
                    raise FetchError("the vault answered with something other than an object", 502)
                return payload
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise FetchError(
                f"the vault at {vault_url} cannot be reached ({type(exc).__name__})", 0
            ) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
