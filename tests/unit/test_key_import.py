"""A private JWK brought in by ImportKey is checked whole before anything reaches the HSM:
every bad one is a 400 that names members and never a value."""

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from strongroom import base64url
from strongroom.vault import keyimport
from strongroom.vault.errors import BadParameter
from strongroom.vault.routes import shapes

RSA_KEY = rsa.generate_private_key(65537, 2048)
EC_KEYS = {
    "P-256": ec.generate_private_key(ec.SECP256R1()),
    "P-384": ec.generate_private_key(ec.SECP384R1()),
    "P-521": ec.generate_private_key(ec.SECP521R1()),
}
SIZES = {"P-256": 32, "P-384": 48, "P-521": 66}


def u(value: int, size: int | None = None) -> str:
    return base64url.encode_uint(value, size)


def rsa_jwk(key: rsa.RSAPrivateKey = RSA_KEY) -> dict[str, Any]:
    numbers = key.private_numbers()
    public = numbers.public_numbers
    return {
        "kty": "RSA",
        "n": u(public.n),
        "e": u(public.e),
        "d": u(numbers.d),
        "p": u(numbers.p),
        "q": u(numbers.q),
        "dp": u(numbers.dmp1),
        "dq": u(numbers.dmq1),
        "qi": u(numbers.iqmp),
    }


def ec_jwk(crv: str = "P-256") -> dict[str, Any]:
    numbers = EC_KEYS[crv].private_numbers()
    size = SIZES[crv]
    return {
        "kty": "EC",
        "crv": crv,
        "x": u(numbers.public_numbers.x, size),
        "y": u(numbers.public_numbers.y, size),
        "d": u(numbers.private_value, size),
    }


def test_an_rsa_jwk_gives_its_parts() -> None:
    material = keyimport.from_jwk(rsa_jwk())
    numbers = RSA_KEY.private_numbers()
    assert (material.family, material.size, material.crv) == ("RSA", 2048, None)
    assert int.from_bytes(material.parts["d"], "big") == numbers.d
    assert set(material.parts) == {"n", "e", "d", "p", "q", "dp", "dq", "qi"}
    assert material == keyimport.from_private_key(RSA_KEY)


def test_an_rsa_jwk_with_n_e_d_only_has_its_primes_recovered() -> None:
    jwk = {name: rsa_jwk()[name] for name in ("kty", "n", "e", "d")}
    assert keyimport.from_jwk(jwk) == keyimport.from_jwk(rsa_jwk())


@pytest.mark.parametrize("crv", sorted(EC_KEYS))
def test_an_ec_jwk_gives_its_parts(crv: str) -> None:
    material = keyimport.from_jwk(ec_jwk(crv) | {"kty": "EC-HSM"})
    assert (material.family, material.crv) == ("EC", crv)
    assert all(len(material.parts[name]) == SIZES[crv] for name in ("x", "y", "d"))
    assert material == keyimport.from_private_key(EC_KEYS[crv])


@pytest.mark.parametrize("size", [16, 24, 32])
def test_an_oct_jwk_gives_its_key(size: int) -> None:
    material = keyimport.from_jwk({"kty": "oct", "k": base64url.encode(b"\x07" * size)})
    assert (material.family, material.size, material.parts) == (
        "oct",
        size * 8,
        {"k": b"\x07" * size},
    )


def test_the_material_never_shows_its_parts() -> None:
    material = keyimport.from_jwk(rsa_jwk())
    shown = repr(material) + str(material)
    assert "RSA" in shown
    for value in material.parts.values():
        assert value.hex() not in shown and str(int.from_bytes(value, "big")) not in shown


def _bad_rsa() -> list[tuple[str, dict[str, Any], str]]:
    good = rsa_jwk()
    numbers = RSA_KEY.private_numbers()
    small = rsa.generate_private_key(65537, 1024)  # noqa: S505 - the size refused
    return [
        ("no d: a public key", {k: v for k, v in good.items() if k != "d"}, "no private part"),
        ("no n", {k: v for k, v in good.items() if k != "n"}, "has no 'n'"),
        ("d off by two", good | {"d": u(numbers.d + 2)}, "not one consistent"),
        ("p wrong", good | {"p": u(numbers.p + 2)}, "not one consistent"),
        ("qi wrong", good | {"qi": u(numbers.iqmp + 1)}, "not one consistent"),
        ("e wrong", good | {"e": u(3)}, "not one consistent"),
        ("some CRT members", {k: v for k, v in good.items() if k != "dq"}, "but not dq"),
        (
            "n, e and d disagree",
            {"kty": "RSA", "n": good["n"], "e": good["e"], "d": u(numbers.d + 2)},
            "not one RSA key",
        ),  # noqa: E501
        ("1024 bits", rsa_jwk(small), "1024 bits"),
        ("n too long", good | {"n": base64url.encode(b"\x01" * 600)}, "longer than"),
        ("n not base64url", good | {"n": "a+b/"}, "'key.n'"),
        ("n not a string", good | {"n": 5}, "'key.n' must be"),
        ("n empty", good | {"n": ""}, "'key.n' is empty"),
        ("an EC member", good | {"crv": "P-256"}, "'crv'"),
        ("a vendor blob", good | {"key_hsm": "AAAA"}, "key_hsm"),
    ]


def _bad_ec() -> list[tuple[str, dict[str, Any], str]]:
    good = ec_jwk("P-256")
    numbers = EC_KEYS["P-256"].private_numbers()
    other = EC_KEYS["P-384"].private_numbers()
    return [
        ("no d", {k: v for k, v in good.items() if k != "d"}, "no private part"),
        ("no x", {k: v for k, v in good.items() if k != "x"}, "has no 'x'"),
        ("off the curve", good | {"y": u(numbers.public_numbers.y ^ 1, 32)}, "on the curve"),
        ("not d's point", good | {"d": u(numbers.private_value ^ 2, 32)}, "d's public point"),
        ("d of zero", good | {"d": u(0, 32)}, "P-256 private key"),
        ("short x", good | {"x": u(numbers.public_numbers.x % 2**200, 25)}, "32 bytes each"),
        ("a P-384 key as P-256", ec_jwk("P-384") | {"crv": "P-256"}, "32 bytes each"),
        ("P-384 d on P-256", good | {"d": u(other.private_value, 48)}, "32 bytes each"),
        ("unknown crv", good | {"crv": "P-192"}, "'key.crv' must be"),
        ("P-256K", good | {"crv": "P-256K"}, "'key.crv' must be"),
        ("no crv", {k: v for k, v in good.items() if k != "crv"}, "'key.crv' must be"),
        ("an RSA member", good | {"n": "AQAB"}, "'n'"),
    ]


def _bad_other() -> list[tuple[str, object, str]]:
    return [
        ("no key", None, "'key' is required"),
        ("a list", [rsa_jwk()], "'key' is required"),
        ("unknown kty", rsa_jwk() | {"kty": "RSA-PSS"}, "'key.kty' must be"),
        ("no kty", {k: v for k, v in rsa_jwk().items() if k != "kty"}, "'key.kty' must be"),
        ("oct without k", {"kty": "oct-HSM"}, "no private part"),
        ("oct of 20 bytes", {"kty": "oct", "k": base64url.encode(b"k" * 20)}, "20 bytes"),
        ("oct of 64 bytes", {"kty": "oct", "k": base64url.encode(b"k" * 64)}, "64 bytes"),
        ("oct with d", {"kty": "oct", "k": base64url.encode(b"k" * 16), "d": "AQAB"}, "'d'"),
    ]


@pytest.mark.parametrize(
    "jwk,message",
    [
        pytest.param(jwk, message, id=case)
        for case, jwk, message in _bad_rsa() + _bad_ec() + _bad_other()
    ],  # noqa: E501
)
def test_a_bad_jwk_is_a_400_naming_no_value(jwk: Any, message: str) -> None:
    with pytest.raises(BadParameter) as refused:
        keyimport.from_jwk(jwk)
    assert refused.value.status == 400
    assert message in refused.value.message
    if isinstance(jwk, dict):
        for name, value in jwk.items():
            if name not in ("kty", "crv") and isinstance(value, str) and len(value) > 4:
                assert value not in refused.value.message, name


def test_a_key_on_another_curve_is_refused() -> None:
    with pytest.raises(BadParameter, match="secp256k1"):
        keyimport.from_private_key(ec.generate_private_key(ec.SECP256K1()))


def test_the_import_route_is_put_on_the_key() -> None:
    [row] = [m for m in shapes(["keys", "k"]) if m.spec.method == "PUT"]
    assert (row.spec.operation, row.spec.permission, row.spec.has_body) == (
        "KeyImport",
        "import",
        True,
    )
