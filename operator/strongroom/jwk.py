"""Public JSON Web Keys (RFC 7517, 7518) and cryptography's key objects, both ways.

The one place strongroom reads or writes a JWK: RSA and EC keys on P-256, P-384 and P-521.
Only public members are read or written; a private member (`d`, `p`, ...) in what is read
is ignored, never turned into a private key. Azure Key Vault's `RSA-HSM` and `EC-HSM` key
types read as `RSA` and `EC`.
"""

from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from . import base64url

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

# Curve name -> (curve, coordinate bytes, the one JWS algorithm for it: RFC 7518, 3.4).
_CURVES: dict[str, tuple[type[ec.EllipticCurve], int, str]] = {
    "P-256": (ec.SECP256R1, 32, "ES256"),
    "P-384": (ec.SECP384R1, 48, "ES384"),
    "P-521": (ec.SECP521R1, 66, "ES512"),
}
RSA_ALGORITHMS = ("RS256", "RS384", "RS512")
# The public members of an Azure Key Vault key's JWK.
PUBLIC_MEMBERS = ("kid", "kty", "key_ops", "n", "e", "crv", "x", "y")


class JwkError(ValueError):
    """The JWK is not a public RSA or EC key this module reads; the message says why."""


def public_key(jwk: Mapping[str, Any]) -> PublicKey:
    """The public key a JWK describes; JwkError if it describes none."""
    kty = jwk.get("kty")
    kty = kty.removesuffix("-HSM") if isinstance(kty, str) else kty
    try:
        if kty == "RSA":
            e, n = _uint(jwk, "e"), _uint(jwk, "n")
            return rsa.RSAPublicNumbers(e, n).public_key()
        if kty == "EC":
            crv = jwk.get("crv")
            if not isinstance(crv, str) or crv not in _CURVES:
                raise JwkError(f"an EC JWK's crv must be one of {', '.join(_CURVES)}")
            curve, size, _ = _CURVES[crv]
            x, y = _uint(jwk, "x", size), _uint(jwk, "y", size)
            return ec.EllipticCurvePublicNumbers(x, y, curve()).public_key()
    except JwkError:
        raise
    except ValueError:
        # cryptography's refusal: an EC point off its curve, an RSA exponent out of range.
        raise JwkError(f"the {kty} JWK is not a valid public key") from None
    raise JwkError("a JWK's kty must be RSA or EC")


def from_public_key(key: PublicKey) -> dict[str, str]:
    """The public JWK of a key: kty with n and e, or kty, crv, x and y."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {
            "kty": "RSA",
            "n": base64url.encode_uint(numbers.n),
            "e": base64url.encode_uint(numbers.e),
        }
    crv = curve_name(key)
    point = key.public_numbers()
    size = _CURVES[crv][1]
    return {
        "kty": "EC",
        "crv": crv,
        "x": base64url.encode_uint(point.x, size),
        "y": base64url.encode_uint(point.y, size),
    }


def public_members(jwk: Mapping[str, Any]) -> dict[str, Any]:
    """The JWK with its public members only (`PUBLIC_MEMBERS`)."""
    return {name: value for name, value in jwk.items() if name in PUBLIC_MEMBERS}


def curve_name(key: ec.EllipticCurvePublicKey) -> str:
    for name, (curve, _, _) in _CURVES.items():
        if isinstance(key.curve, curve):
            return name
    raise JwkError(f"the curve {key.curve.name} has no JWK name here")


def signature_algorithms(key: PublicKey) -> tuple[str, ...]:
    """The JWS algorithms this key verifies: RS256/384/512 for RSA, and for EC the one its
    curve is for. Never a symmetric one (HS*), never `none`."""
    if isinstance(key, rsa.RSAPublicKey):
        return RSA_ALGORITHMS
    return (_CURVES[curve_name(key)][2],)


def _uint(jwk: Mapping[str, Any], name: str, size: int | None = None) -> int:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise JwkError(f"the JWK has no {name}")
    try:
        raw = base64url.decode(value)
    except base64url.Base64UrlError as exc:
        raise JwkError(f"the JWK's {name} {exc}") from None
    if not raw or (size is not None and len(raw) > size):
        raise JwkError(f"the JWK's {name} has the wrong length")
    return int.from_bytes(raw, "big")
