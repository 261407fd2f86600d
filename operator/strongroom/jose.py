"""Signed JWTs (RFC 7519) through PyJWT: the one place that decides whether a token verifies.

What verifies: a compact JWS of at most `MAX_TOKEN_BYTES`, whose header names an algorithm
of `ALLOWED_ALGORITHMS` that the key it is checked with is for (RS256/384/512 for an RSA
key of at least 2048 bits, ES256/384/512 for an EC key on that algorithm's curve), signed
by a key whose `kid` is the header's (a key without a kid is tried for any token); then
claims with an integer `exp` not yet past, `nbf` and `iat` not ahead of now by more than
the leeway, and an `aud` holding one of the audiences asked. `none`, HS* and every other
algorithm are refused whatever the key or the header says (RFC 8725, 2.1 and 3.1).

A verified token gets no leeway on `exp`: the leeway is for the issuer's clock being ahead
(`nbf`, `iat`) and for refusing, unverified, what is long expired (`unverified_claims`).
"""

import re
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from . import jwk

MAX_TOKEN_BYTES = 8 * 1024
ALLOWED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"})
# Clock skew allowed between this host and the token's issuer.
LEEWAY_SECONDS = 60

# Three base64url segments, none empty: no unsigned (alg none) token, no JWE, no padding.
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")

# Why a token is refused, as said to its bearer: never the token or a claim's value.
TOO_LARGE = f"The bearer token is larger than {MAX_TOKEN_BYTES} bytes."
NOT_A_JWT = "The bearer token is malformed: it is not a JWT."
MALFORMED = "The bearer token is malformed."
ALGORITHM = "The bearer token is not signed with an accepted algorithm."
SIGNATURE = "The bearer token signature is not valid."
EXPIRED = "The bearer token has expired."
NOT_YET_VALID = "The bearer token is not valid yet."
AUDIENCE = "The bearer token was issued for another audience."


class TokenRefused(Exception):
    """The token does not verify; `message` says why in words fit for its bearer."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class VerificationKey:
    """A public key tokens are checked with, its kid if it has one, and the algorithms it
    is for (those of its type and curve; narrowed when its JWK names one `alg`)."""

    key: jwk.PublicKey
    kid: str | None = None
    algorithms: tuple[str, ...] = ()

    def allows(self, alg: str) -> bool:
        if alg not in ALLOWED_ALGORITHMS or alg not in jwk.signature_algorithms(self.key):
            return False
        return not self.algorithms or alg in self.algorithms

    @classmethod
    def from_jwk(cls, document: Mapping[str, Any]) -> "VerificationKey":
        """The key of one JWK of a JWKS; JwkError when it is no public signing key."""
        if document.get("use", "sig") != "sig":
            raise jwk.JwkError("the JWK is not for signatures")
        kid, alg = document.get("kid"), document.get("alg")
        if kid is not None and not isinstance(kid, str):
            raise jwk.JwkError("the JWK's kid is not a string")
        if alg is not None and not isinstance(alg, str):
            raise jwk.JwkError("the JWK's alg is not a string")
        return cls(jwk.public_key(document), kid, (alg,) if alg else ())


def _check_form(token: str) -> None:
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenRefused(TOO_LARGE)
    if not _COMPACT.fullmatch(token):
        raise TokenRefused(NOT_A_JWT)


def sign(
    claims: Mapping[str, Any],
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    kid: str | None = None,
) -> str:
    """A compact JWS of the claims: RS256 for an RSA key, ES* of its curve for an EC key."""
    alg = jwk.signature_algorithms(key.public_key())[0]
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(dict(claims), key, algorithm=alg, headers=headers)


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT-shaped token, its signature NOT checked: only for refusing early
    what no check could accept. TokenRefused when it is no JWT."""
    _check_form(token)
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise TokenRefused(MALFORMED) from None
    if not isinstance(claims, dict):
        raise TokenRefused(MALFORMED)
    return claims


def verify(
    token: str,
    keys: Sequence[VerificationKey],
    audiences: Collection[str],
    leeway: float = LEEWAY_SECONDS,
) -> dict[str, Any]:
    """The claims of a token signed by one of `keys` and issued for one of `audiences`;
    TokenRefused, saying why, otherwise."""
    _check_form(token)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenRefused(MALFORMED) from None
    alg, kid = header.get("alg"), header.get("kid")
    if not isinstance(alg, str) or not any(k.allows(alg) for k in keys):
        raise TokenRefused(ALGORITHM)
    candidates = [k for k in keys if k.kid in (None, kid) and k.allows(alg)]
    for candidate in candidates:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                candidate.key,
                algorithms=[alg],
                audience=list(audiences),
                leeway=leeway,
                options={"require": ["exp", "aud"], "enforce_minimum_key_length": True},
            )
        except (jwt.InvalidSignatureError, jwt.InvalidKeyError):
            continue  # another key may have signed it
        except jwt.ExpiredSignatureError:
            raise TokenRefused(EXPIRED) from None
        except jwt.ImmatureSignatureError:
            raise TokenRefused(NOT_YET_VALID) from None
        except jwt.InvalidAudienceError:
            raise TokenRefused(AUDIENCE) from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRefused(AUDIENCE if exc.claim == "aud" else MALFORMED) from None
        except jwt.PyJWTError:
            raise TokenRefused(MALFORMED) from None
        exp = claims["exp"]
        if not isinstance(exp, int) or isinstance(exp, bool):
            raise TokenRefused(MALFORMED)
        if exp < time.time():
            raise TokenRefused(EXPIRED)
        return claims
    raise TokenRefused(SIGNATURE)


def audiences_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """The audiences a verified token's `aud` names (a string or a list of strings)."""
    held = claims.get("aud")
    if isinstance(held, str):
        return frozenset((held,))
    if isinstance(held, list):
        return frozenset(a for a in held if isinstance(a, str))
    return frozenset()
