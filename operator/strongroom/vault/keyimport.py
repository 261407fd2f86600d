"""Private keys brought into a vault (BYOK): a JSON Web Key with its private members
(Key Vault's ImportKey), or a `cryptography` private key (a certificate's), checked whole
before anything reaches the HSM.

RSA keys must be one consistent key of 2048, 3072 or 4096 bits (OpenSSL's key check:
p and q prime, n = pq, d, dp, dq and qi agree with them and e); a JWK with only n, e and d
has its primes recovered from them. EC keys are on P-256, P-384 or P-521, with x, y and d
of the curve's size, the point on the curve and d's own. oct keys are AES keys of 16, 24
or 32 bytes. Every refusal is a 400 that names members, never a member's value, and the
parsed material's repr shows no part of it.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .. import base64url
from .errors import BadParameter
from .objects import CURVES, OCT_SIZES, RSA_SIZES

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

JWK_TYPES = ("RSA", "RSA-HSM", "EC", "EC-HSM", "oct", "oct-HSM")
_CURVE_CLASSES: dict[str, type[ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1,
    "P-384": ec.SECP384R1,
    "P-521": ec.SECP521R1,
}
_COORDINATE_BYTES = {"P-256": 32, "P-384": 48, "P-521": 66}
_RSA_PUBLIC = ("n", "e")
_RSA_CRT = ("p", "q", "dp", "dq", "qi")
_MEMBERS = {
    "RSA": ("n", "e", "d", *_RSA_CRT),
    "EC": ("crv", "x", "y", "d"),
    "oct": ("k",),
}
# No RSA member of a 4096-bit key is longer than this; anything longer is refused before
# it is read as a number.
_MAX_RSA_MEMBER_BYTES = 4096 // 8 + 1


@dataclass(frozen=True)
class KeyMaterial:
    """One checked private key, as the HSM's `import_key` takes it: `parts` by JWK member
    name (RSA n, e, d, p, q, dp, dq, qi; EC x, y, d; oct k), big-endian bytes."""

    family: str  # "RSA", "EC" or "oct"
    size: int | None  # RSA and oct: bits
    crv: str | None  # EC: the curve
    parts: dict[str, bytes] = field(repr=False)

    def __repr__(self) -> str:
        return f"KeyMaterial({self.family}, {self.crv or self.size})"


def from_jwk(jwk: object) -> KeyMaterial:
    """The private key a JWK holds (RFC 7517, 7518), or BadParameter saying what is wrong."""
    if not isinstance(jwk, Mapping):
        raise BadParameter("'key' is required: a JSON Web Key with its private members")
    kty = jwk.get("kty")
    if not isinstance(kty, str) or kty not in JWK_TYPES:
        raise BadParameter(f"'key.kty' must be one of {', '.join(JWK_TYPES)}")
    if jwk.get("key_hsm") is not None:
        raise BadParameter(
            "'key.key_hsm' (a key wrapped for a vendor's HSM) cannot be imported here: "
            "import the key's own JWK members"
        )
    family = kty.removesuffix("-HSM")
    foreign = sorted(
        name
        for other, names in _MEMBERS.items()
        if other != family
        for name in names
        if name not in _MEMBERS[family] and jwk.get(name) is not None
    )
    if foreign:
        raise BadParameter(
            f"an {family} key has no member {', '.join(repr(n) for n in foreign)}; "
            "the JWK's members do not match its kty"
        )
    if family == "RSA":
        return _rsa_from_jwk(jwk)
    if family == "EC":
        return _ec_from_jwk(jwk)
    return _oct_from_jwk(jwk)


def from_private_key(key: PrivateKey) -> KeyMaterial:
    """The material of a `cryptography` RSA or EC private key (a certificate's, say)."""
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        public = numbers.public_numbers
        return _rsa_material(
            public.n, public.e, numbers.d, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1,
            numbers.iqmp,
        )  # fmt: skip
    if isinstance(key, ec.EllipticCurvePrivateKey):
        crv = next(
            (name for name, cls in _CURVE_CLASSES.items() if isinstance(key.curve, cls)), None
        )
        if crv is None:
            raise BadParameter(
                f"EC keys on {key.curve.name} cannot be imported: the curve is one of "
                f"{', '.join(CURVES)}"
            )
        point = key.private_numbers()
        size = _COORDINATE_BYTES[crv]
        return KeyMaterial(
            "EC",
            None,
            crv,
            {
                "x": point.public_numbers.x.to_bytes(size, "big"),
                "y": point.public_numbers.y.to_bytes(size, "big"),
                "d": point.private_value.to_bytes(size, "big"),
            },
        )
    raise BadParameter("only RSA and EC private keys can be imported")


def _member(jwk: Mapping[str, Any], name: str, family: str) -> bytes:
    value = jwk.get(name)
    if value is None:
        raise BadParameter(f"the {family} JWK has no '{name}'")
    if not isinstance(value, str):
        raise BadParameter(f"'key.{name}' must be a base64url string")
    try:
        raw = base64url.decode(value)
    except base64url.Base64UrlError as exc:
        raise BadParameter(f"'key.{name}' {exc}") from None
    if not raw:
        raise BadParameter(f"'key.{name}' is empty")
    return raw


def _no_private_part(family: str, member: str) -> BadParameter:
    return BadParameter(
        f"the {family} JWK has no private part ('{member}'): only a private key can be "
        "imported, and a public key alone is none"
    )


def _rsa_from_jwk(jwk: Mapping[str, Any]) -> KeyMaterial:
    if jwk.get("d") is None:
        raise _no_private_part("RSA", "d")
    values: dict[str, int] = {}
    for name in ("n", "e", "d"):
        values[name] = _rsa_number(jwk, name)
    given = [name for name in _RSA_CRT if jwk.get(name) is not None]
    if given and len(given) != len(_RSA_CRT):
        missing = [name for name in _RSA_CRT if name not in given]
        raise BadParameter(
            f"the RSA JWK has {', '.join(given)} but not {', '.join(missing)}: give all of "
            "p, q, dp, dq and qi, or none of them"
        )
    n, e, d = values["n"], values["e"], values["d"]
    _check_rsa_size(n)
    if given:
        p, q, dp, dq, qi = (_rsa_number(jwk, name) for name in _RSA_CRT)
    else:
        try:
            p, q = rsa.rsa_recover_prime_factors(n, e, d)
        except (ValueError, OverflowError):
            raise BadParameter(
                "the RSA JWK's n, e and d are not one RSA key (no primes of n fit them)"
            ) from None
        dp, dq, qi = rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q)
    return _rsa_material(n, e, d, p, q, dp, dq, qi)


def _rsa_number(jwk: Mapping[str, Any], name: str) -> int:
    raw = _member(jwk, name, "RSA")
    if len(raw) > _MAX_RSA_MEMBER_BYTES:
        raise BadParameter(f"'key.{name}' is longer than any member of a 4096-bit RSA key")
    return int.from_bytes(raw, "big")


def _check_rsa_size(n: int) -> None:
    if n.bit_length() not in RSA_SIZES:
        raise BadParameter(
            f"an RSA key of {n.bit_length()} bits cannot be imported: the modulus is one of "
            f"{', '.join(str(s) for s in RSA_SIZES)} bits"
        )


def _rsa_material(n: int, e: int, d: int, p: int, q: int, dp: int, dq: int, qi: int) -> KeyMaterial:
    _check_rsa_size(n)
    try:
        rsa.RSAPrivateNumbers(p, q, d, dp, dq, qi, rsa.RSAPublicNumbers(e, n)).private_key()
    except (ValueError, OverflowError):
        raise BadParameter(
            "the RSA JWK's members are not one consistent RSA private key (n, e, d, p, q, "
            "dp, dq and qi must agree)"
        ) from None
    values = {"n": n, "e": e, "d": d, "p": p, "q": q, "dp": dp, "dq": dq, "qi": qi}
    parts = {
        name: value.to_bytes((value.bit_length() + 7) // 8, "big") for name, value in values.items()
    }
    return KeyMaterial("RSA", n.bit_length(), None, parts)


def _ec_from_jwk(jwk: Mapping[str, Any]) -> KeyMaterial:
    crv = jwk.get("crv")
    if not isinstance(crv, str) or crv not in _CURVE_CLASSES:
        raise BadParameter(f"'key.crv' must be one of {', '.join(CURVES)}")
    if jwk.get("d") is None:
        raise _no_private_part("EC", "d")
    size = _COORDINATE_BYTES[crv]
    raw = {name: _member(jwk, name, "EC") for name in ("x", "y", "d")}
    wrong = [name for name, value in raw.items() if len(value) != size]
    if wrong:
        raise BadParameter(
            f"the {crv} JWK's {', '.join(wrong)} must be {size} bytes each (RFC 7518, 6.2)"
        )
    x, y, d = (int.from_bytes(raw[name], "big") for name in ("x", "y", "d"))
    curve = _CURVE_CLASSES[crv]()
    try:
        public = ec.EllipticCurvePublicNumbers(x, y, curve)
        ec.EllipticCurvePrivateNumbers(d, public).private_key()
    except (ValueError, OverflowError):
        raise BadParameter(
            f"the EC JWK is not a {crv} private key: the point (x, y) must be on the curve "
            "and be d's public point"
        ) from None
    return KeyMaterial("EC", None, crv, raw)


def _oct_from_jwk(jwk: Mapping[str, Any]) -> KeyMaterial:
    if jwk.get("k") is None:
        raise _no_private_part("oct", "k")
    k = _member(jwk, "k", "oct")
    if len(k) * 8 not in OCT_SIZES:
        raise BadParameter(
            f"an oct key of {len(k)} bytes cannot be imported: AES keys are 16, 24 or 32 bytes"
        )
    return KeyMaterial("oct", len(k) * 8, None, {"k": k})
