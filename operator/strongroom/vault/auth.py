"""Who is calling: bearer tokens checked by Kubernetes TokenReview, or by a local JWT issuer in dev.

Tokens are never logged or kept: the cache is keyed by a SHA-256 of the token.
"""

import hashlib
import json
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from .encoding import b64url, unb64url
from .errors import BadParameter, ServiceUnavailable, Unauthorized

CACHE_SECONDS = 60.0


class Authenticator(Protocol):
    async def authenticate(self, token: str) -> str:
        """Return the caller's subject, or raise Unauthorized."""


@dataclass
class _Cached:
    subject: str
    until: float


class _Cache:
    def __init__(self) -> None:
        self._entries: dict[bytes, _Cached] = {}

    def get(self, token: str) -> str | None:
        entry = self._entries.get(hashlib.sha256(token.encode()).digest())
        if entry is None or entry.until < time.monotonic():
            return None
        return entry.subject

    def put(self, token: str, subject: str, seconds: float) -> None:
        if len(self._entries) > 10_000:
            self._entries.clear()
        key = hashlib.sha256(token.encode()).digest()
        self._entries[key] = _Cached(subject, time.monotonic() + seconds)


class TokenReviewAuthenticator:
    """Asks the Kubernetes API server whether a ServiceAccount token is valid for our audience."""

    def __init__(
        self, api_server: str, ca_file: Path, token_file: Path, audiences: tuple[str, ...]
    ) -> None:
        self._url = api_server.rstrip("/") + "/apis/authentication.k8s.io/v1/tokenreviews"
        self._ssl = ssl.create_default_context(cafile=str(ca_file))
        self._token_file = token_file
        self._audiences = audiences
        self._cache = _Cache()
        self._session: aiohttp.ClientSession | None = None

    async def authenticate(self, token: str) -> str:
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        if self._session is None:
            self._session = aiohttp.ClientSession()
        review = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": list(self._audiences)},
        }
        own = self._token_file.read_text().strip()
        try:
            async with self._session.post(
                self._url,
                json=review,
                ssl=self._ssl,
                headers={"Authorization": f"Bearer {own}"},
            ) as response:
                if response.status != 201 and response.status != 200:
                    raise ServiceUnavailable(f"TokenReview failed with HTTP {response.status}")
                status = (await response.json()).get("status", {})
        except aiohttp.ClientError as exc:
            raise ServiceUnavailable("the Kubernetes API server cannot be reached") from exc
        if not status.get("authenticated"):
            raise Unauthorized("The bearer token is not valid for this vault.")
        if not set(status.get("audiences") or []) & set(self._audiences):
            raise Unauthorized("The bearer token was issued for another audience.")
        subject = str(status.get("user", {}).get("username", ""))
        self._cache.put(token, subject, CACHE_SECONDS)
        return subject

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class DevIssuer:
    """A local ES256 token issuer for `strongroom dev` and the tests.

    Its tokens are shaped like Kubernetes ServiceAccount tokens: sub, aud, exp.
    """

    ISSUER = "https://strongroom.dev/issuer"

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key

    @classmethod
    def load_or_create(cls, path: Path) -> "DevIssuer":
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            return cls(key)
        key = ec.generate_private_key(ec.SECP256R1())
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)
        return cls(key)

    def issue(self, subject: str, audience: str, ttl: int = 86400, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        header = {"alg": "ES256", "typ": "JWT"}
        claims = {
            "iss": self.ISSUER,
            "sub": subject,
            "aud": [audience],
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl,
        }
        signing_input = ".".join(b64url(json.dumps(part).encode()) for part in (header, claims))
        r, s = decode_dss_signature(
            self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        )
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return signing_input + "." + b64url(signature)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The issuer's public key as a JWKS document, as an OIDC issuer publishes it."""
        numbers = self._key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "EC",
                    "crv": "P-256",
                    "alg": "ES256",
                    "use": "sig",
                    "x": b64url(numbers.x.to_bytes(32, "big")),
                    "y": b64url(numbers.y.to_bytes(32, "big")),
                }
            ]
        }

    def authenticator(self, audiences: tuple[str, ...]) -> "DevAuthenticator":
        return DevAuthenticator(self._key.public_key(), audiences)


class DevAuthenticator:
    def __init__(self, public_key: ec.EllipticCurvePublicKey, audiences: tuple[str, ...]):
        self._public_key = public_key
        self._audiences = audiences
        self._cache = _Cache()

    async def authenticate(self, token: str) -> str:
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        subject, expires = self._verify(token)
        self._cache.put(token, subject, min(CACHE_SECONDS, expires - time.time()))
        return subject

    def _verify(self, token: str) -> tuple[str, int]:
        parts = token.split(".")
        if len(parts) != 3:
            raise Unauthorized("The bearer token is malformed.")
        try:
            signature = unb64url(parts[2], "signature")
            claims = json.loads(unb64url(parts[1], "claims"))
        except (BadParameter, ValueError):
            raise Unauthorized("The bearer token is malformed.") from None
        if len(signature) != 64 or not isinstance(claims, dict):
            raise Unauthorized("The bearer token is malformed.")
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        try:
            self._public_key.verify(
                der, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256())
            )
        except InvalidSignature:
            raise Unauthorized("The bearer token signature is not valid.") from None
        now = time.time()
        if not isinstance(claims.get("exp"), int) or claims["exp"] < now:
            raise Unauthorized("The bearer token has expired.")
        if isinstance(claims.get("nbf"), int) and claims["nbf"] > now + 60:
            raise Unauthorized("The bearer token is not valid yet.")
        audiences = claims.get("aud")
        if isinstance(audiences, str):
            audiences = [audiences]
        if not isinstance(audiences, list) or not set(audiences) & set(self._audiences):
            raise Unauthorized("The bearer token was issued for another audience.")
        return str(claims.get("sub", "")), int(claims["exp"])
