"""Who is calling: the pool's administrator by its TLS client certificate, everyone else by a
bearer token bound to the vault it is sent to (Kubernetes TokenReview, or a local JWT issuer
in dev).

A token is accepted for a vault when one of its audiences is the vault's own URI
(`VaultConfig.audience`), from any namespace; or when it is the shared audience
(`strongroom.io/vault`, what the CSI driver asks for) and the subject is a ServiceAccount of
the pool's own namespace (when the server knows it). A token one vault receives is thus
worth nothing at another vault, in this pool or any other.

Unauthenticated requests cost little: a token larger than `MAX_TOKEN_BYTES` or not shaped
like a JWT is refused without any review; a refused token is remembered for
`NEGATIVE_CACHE_SECONDS`; at most `REVIEWS_IN_FLIGHT` reviews run at once and
`REVIEWS_PER_SECOND` start each second, beyond which callers get 429 with Retry-After and the
API server is not asked. An accepted token is remembered for at most `POSITIVE_CACHE_SECONDS`
and never past its `exp`: a revoked token keeps working for at most that long.

Tokens are never logged or kept: caches are keyed by a SHA-256 of the token.
"""

import hashlib
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .. import jose, jwk
from ..tls import OPERATOR_CLIENT_NAME
from .config import SHARED_AUDIENCE, VaultConfig
from .errors import ServiceUnavailable, Unauthorized, VaultError

# How long an accepted token is trusted without asking again: the longest a revoked token
# keeps working. Never past the token's own expiry.
POSITIVE_CACHE_SECONDS = 10.0
# How long a refused token is refused without asking again.
NEGATIVE_CACHE_SECONDS = 30.0
CACHE_ENTRIES = 10_000
MAX_TOKEN_BYTES = jose.MAX_TOKEN_BYTES
REVIEWS_IN_FLIGHT = 8
REVIEWS_PER_SECOND = 20.0
REVIEW_TIMEOUT_SECONDS = 10.0
# Clock skew allowed between this server and the token's issuer.
LEEWAY_SECONDS = jose.LEEWAY_SECONDS
# How the refusal of a shared-audience token from another namespace begins.
FOREIGN_NAMESPACE = "A token for the shared audience"


class Throttled(VaultError):
    """Too many token reviews at once: retry after `retry_after` seconds."""

    status = 429
    code = "Throttled"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Authenticator(Protocol):
    async def authenticate(self, token: str, vault: VaultConfig) -> str:
        """Return the caller's subject if the token is valid for this vault, else raise
        Unauthorized (or Throttled / ServiceUnavailable when it cannot be checked now)."""


class AdminClient:
    """The pool's administrator: a TLS peer whose client certificate verified against the
    client CA and names `name` as its subject CN. No bearer token is ever the administrator."""

    def __init__(self, name: str = OPERATOR_CLIENT_NAME) -> None:
        self.name = name
        self.caller = f"tls-client:{name}"  # how audit records name it

    def common_name(self, request: web.Request) -> str | None:
        """The subject CN of the request's verified client certificate, if it sent one."""
        transport = request.transport
        if transport is None:
            return None
        # `ssl` returns the peer certificate's fields only once it verified; {} or None else.
        peer = transport.get_extra_info("peercert")
        if not isinstance(peer, dict) or not peer:
            return None
        names = [
            value for rdn in peer.get("subject", ()) for key, value in rdn if key == "commonName"
        ]
        return names[0] if len(names) == 1 else None

    def matches(self, request: web.Request) -> bool:
        return self.common_name(request) == self.name


@dataclass(frozen=True)
class Review:
    """What a token proved: its subject, which of the audiences asked it holds, its expiry."""

    subject: str
    audiences: frozenset[str]
    expires: float | None  # seconds since the epoch


@dataclass
class _Cached:
    review: Review | None
    refusal: str
    until: float


class _ReviewCache:
    """Reviews by SHA-256 of the token and the audiences asked; oldest dropped first."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._entries: OrderedDict[bytes, _Cached] = OrderedDict()
        self._clock = clock

    @staticmethod
    def key(token: str, audiences: tuple[str, ...]) -> bytes:
        digest = hashlib.sha256(token.encode())
        digest.update(b"\0" + "\0".join(audiences).encode())
        return digest.digest()

    def get(self, key: bytes) -> _Cached | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.until <= self._clock():
            del self._entries[key]
            return None
        return entry

    def accepted(self, key: bytes, review: Review) -> None:
        seconds = POSITIVE_CACHE_SECONDS
        if review.expires is not None:
            seconds = min(seconds, review.expires - time.time())
        if seconds > 0:
            self._put(key, _Cached(review, "", self._clock() + seconds))

    def refused(self, key: bytes, message: str) -> None:
        self._put(key, _Cached(None, message, self._clock() + NEGATIVE_CACHE_SECONDS))

    def _put(self, key: bytes, entry: _Cached) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > CACHE_ENTRIES:
            self._entries.popitem(last=False)


def _claims(token: str) -> dict[str, object]:
    """The claims of a JWT-shaped token, unverified; Unauthorized when it is no JWT at all."""
    try:
        return jose.unverified_claims(token)
    except jose.TokenRefused as exc:
        raise Unauthorized(exc.message) from None


def _expiry(claims: dict[str, object]) -> float | None:
    exp = claims.get("exp")
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        return float(exp)
    return None


class _BoundAuthenticator:
    """The policy both authenticators share; `_review` is what each asks of its issuer."""

    def __init__(
        self,
        shared_audiences: tuple[str, ...],
        namespace: str | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._shared = shared_audiences
        self._namespace = namespace
        self._cache = _ReviewCache(clock)

    async def _review(self, token: str, audiences: tuple[str, ...]) -> Review:
        raise NotImplementedError

    def audiences_for(self, vault: VaultConfig) -> tuple[str, ...]:
        own = (vault.audience,) if vault.audience else ()
        return own + tuple(a for a in self._shared if a != vault.audience)

    async def authenticate(self, token: str, vault: VaultConfig) -> str:
        audiences = self.audiences_for(vault)
        key = self._cache.key(token, audiences)
        cached = self._cache.get(key)
        if cached is not None and cached.review is not None:
            # Accepted within the last POSITIVE_CACHE_SECONDS and, by the entry's own bound,
            # not past its expiry: nothing to decode again.
            return self._accept(cached.review, vault)
        claims = _claims(token)
        expires = _expiry(claims)
        if expires is not None and expires < time.time() - LEEWAY_SECONDS:
            raise Unauthorized("The bearer token has expired.")
        if cached is not None:
            if cached.review is None:
                raise Unauthorized(cached.refusal)
            return self._accept(cached.review, vault)
        try:
            review = await self._review(token, audiences)
        except Unauthorized as exc:
            self._cache.refused(key, exc.message)
            raise
        if review.expires is None:
            review = Review(review.subject, review.audiences, expires)
        self._cache.accepted(key, review)
        return self._accept(review, vault)

    def _accept(self, review: Review, vault: VaultConfig) -> str:
        if vault.audience and vault.audience in review.audiences:
            return review.subject
        if not review.audiences & set(self._shared):
            raise Unauthorized("The bearer token was issued for another audience.")
        if self._namespace is not None:
            prefix = f"system:serviceaccount:{self._namespace}:"
            if not review.subject.startswith(prefix):
                own = f" {vault.audience}" if vault.audience else " the vault's own URI"
                raise Unauthorized(
                    f"{FOREIGN_NAMESPACE} {', '.join(self._shared)} is accepted only "
                    f"from ServiceAccounts of namespace {self._namespace}; from elsewhere, "
                    f"send a token for audience{own}."
                )
        return review.subject


class _ReviewBudget:
    """At most `in_flight` reviews at once and `per_second` started each second (a token
    bucket of `per_second` tokens); beyond that, Throttled at once."""

    def __init__(self, in_flight: int, per_second: float, clock: Callable[[], float]) -> None:
        self._free = in_flight
        self._rate = per_second
        self._tokens = per_second
        self._clock = clock
        self._last = clock()

    def take(self) -> None:
        now = self._clock()
        self._tokens = min(self._rate, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._free <= 0 or self._tokens < 1:
            raise Throttled("Too many bearer tokens are being checked; retry shortly.", 1)
        self._free -= 1
        self._tokens -= 1

    def give_back(self) -> None:
        self._free += 1


class TokenReviewAuthenticator(_BoundAuthenticator):
    """Asks the Kubernetes API server whether a ServiceAccount token holds the vault's audience
    or the shared one, and which."""

    def __init__(
        self,
        api_server: str,
        ca_file: Path,
        token_file: Path,
        shared_audiences: tuple[str, ...],
        namespace: str | None,
        clock: Callable[[], float] = time.monotonic,
        in_flight: int = REVIEWS_IN_FLIGHT,
        per_second: float = REVIEWS_PER_SECOND,
    ) -> None:
        super().__init__(shared_audiences, namespace, clock)
        self._url = api_server.rstrip("/") + "/apis/authentication.k8s.io/v1/tokenreviews"
        self._ssl = ssl.create_default_context(cafile=str(ca_file))
        self._token_file = token_file
        self._budget = _ReviewBudget(in_flight, per_second, clock)
        self._session: aiohttp.ClientSession | None = None

    async def _review(self, token: str, audiences: tuple[str, ...]) -> Review:
        self._budget.take()
        try:
            return await self._ask(token, audiences)
        finally:
            self._budget.give_back()

    async def _ask(self, token: str, audiences: tuple[str, ...]) -> Review:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=REVIEW_TIMEOUT_SECONDS)
            )
        review = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": list(audiences)},
        }
        own = self._token_file.read_text().strip()  # re-read: the kubelet rotates it
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
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ServiceUnavailable("the Kubernetes API server cannot be reached") from exc
        if not isinstance(status, dict) or not status.get("authenticated"):
            raise Unauthorized("The bearer token is not valid for this vault.")
        # The API server lists which of the audiences asked the token holds.
        held = status.get("audiences") or []
        matched = frozenset(a for a in held if isinstance(a, str)) & set(audiences)
        if not matched:
            raise Unauthorized("The bearer token was issued for another audience.")
        user = status.get("user")
        subject = user.get("username", "") if isinstance(user, dict) else ""
        if not isinstance(subject, str) or not subject:
            raise Unauthorized("The bearer token names no user.")
        return Review(subject, matched, None)

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
        claims = {
            "iss": self.ISSUER,
            "sub": subject,
            "aud": [audience],
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl,
        }
        return jose.sign(claims, self._key)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The issuer's public key as a JWKS document, as an OIDC issuer publishes it."""
        public = self._key.public_key()
        alg = jwk.signature_algorithms(public)[0]
        return {"keys": [jwk.from_public_key(public) | {"alg": alg, "use": "sig"}]}

    def authenticator(
        self, shared_audiences: tuple[str, ...] = (SHARED_AUDIENCE,), namespace: str | None = None
    ) -> "DevAuthenticator":
        return DevAuthenticator(self._key.public_key(), shared_audiences, namespace)


class DevAuthenticator(_BoundAuthenticator):
    """Checks tokens of a `DevIssuer` locally, with the same binding rules as TokenReview."""

    def __init__(
        self,
        public_key: ec.EllipticCurvePublicKey,
        shared_audiences: tuple[str, ...],
        namespace: str | None,
    ) -> None:
        super().__init__(shared_audiences, namespace)
        self._public_key = public_key

    async def _review(self, token: str, audiences: tuple[str, ...]) -> Review:
        key = jose.VerificationKey(self._public_key, algorithms=("ES256",))
        try:
            claims = jose.verify(token, [key], audiences, leeway=LEEWAY_SECONDS)
        except jose.TokenRefused as exc:
            raise Unauthorized(exc.message) from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthorized("The bearer token names no user.")
        matched = jose.audiences_of(claims) & set(audiences)
        if not matched:  # jose.verify checked one is held; kept as the rule it is
            raise Unauthorized(jose.AUDIENCE)
        return Review(subject, matched, float(claims["exp"]))
