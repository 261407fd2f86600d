"""Key import (BYOK) with the official azure-keyvault-keys client against `strongroom dev`:
RSA, EC and oct keys made here, imported, then used in the vault and checked here against
the original key; bad JWKs refused with a 400 in Key Vault's error body, nothing stored."""

import base64
import hashlib
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.keys import JsonWebKey, KeyType
from azure.keyvault.keys.crypto import EncryptionAlgorithm, SignatureAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap

from .conftest import Clients, DevServer

CURVES = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
COORDINATE = {"P-256": 32, "P-384": 48, "P-521": 66}
EC_ALG = {"P-256": ("ES256", hashes.SHA256()), "P-384": ("ES384", hashes.SHA384())}
EC_ALG["P-521"] = ("ES512", hashes.SHA512())


def _bytes(value: int, size: int | None = None) -> bytes:
    return value.to_bytes(size or (value.bit_length() + 7) // 8, "big")


def rsa_jwk(key: rsa.RSAPrivateKey, kty: str = "RSA", **extra: Any) -> JsonWebKey:
    numbers = key.private_numbers()
    public = numbers.public_numbers
    return JsonWebKey(
        kty=kty,
        n=_bytes(public.n),
        e=_bytes(public.e),
        d=_bytes(numbers.d),
        p=_bytes(numbers.p),
        q=_bytes(numbers.q),
        dp=_bytes(numbers.dmp1),
        dq=_bytes(numbers.dmq1),
        qi=_bytes(numbers.iqmp),
        **extra,
    )


def ec_jwk(key: ec.EllipticCurvePrivateKey, crv: str, kty: str = "EC") -> JsonWebKey:
    numbers = key.private_numbers()
    size = COORDINATE[crv]
    return JsonWebKey(
        kty=kty,
        crv=crv,
        x=_bytes(numbers.public_numbers.x, size),
        y=_bytes(numbers.public_numbers.y, size),
        d=_bytes(numbers.private_value, size),
    )


@pytest.mark.parametrize("size", [2048, 3072])
@pytest.mark.parametrize("hsm", [True, False])
def test_an_imported_rsa_key_signs_and_decrypts_as_the_original(
    clients: Clients, size: int, hsm: bool
) -> None:
    original = rsa.generate_private_key(65537, size)
    name = f"imported-rsa-{size}-{hsm}"
    key = clients.keys.import_key(name, rsa_jwk(original), hardware_protected=hsm)
    assert key.key_type == (KeyType.rsa_hsm if hsm else KeyType.rsa)
    assert int.from_bytes(key.key.n, "big") == original.public_key().public_numbers().n
    assert key.key.d is None and key.key.p is None  # the answer has public members only
    assert set(key.key_operations) == {
        "encrypt",
        "decrypt",
        "sign",
        "verify",
        "wrapKey",
        "unwrapKey",
    }
    crypto = clients.crypto(key.id)
    digest = hashlib.sha256(b"signed by an imported key").digest()
    prehashed = utils.Prehashed(hashes.SHA256())
    signature = crypto.sign(SignatureAlgorithm.rs256, digest).signature
    original.public_key().verify(signature, digest, padding.PKCS1v15(), prehashed)
    pss = crypto.sign(SignatureAlgorithm.ps256, digest).signature
    original.public_key().verify(
        pss, digest, padding.PSS(padding.MGF1(hashes.SHA256()), 32), prehashed
    )
    oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    ciphertext = original.public_key().encrypt(b"for the imported key", oaep)
    decrypted = crypto.decrypt(EncryptionAlgorithm.rsa_oaep_256, ciphertext).plaintext
    assert decrypted == b"for the imported key"


@pytest.mark.parametrize("crv", ["P-256", "P-384", "P-521"])
@pytest.mark.parametrize("hsm", [True, False])
def test_an_imported_ec_key_signs_as_the_original(clients: Clients, crv: str, hsm: bool) -> None:
    original = ec.generate_private_key(CURVES[crv])
    key = clients.keys.import_key(
        f"imported-ec-{crv}-{hsm}", ec_jwk(original, crv), hardware_protected=hsm
    )
    assert key.key_type == (KeyType.ec_hsm if hsm else KeyType.ec)
    assert key.key.crv == crv and key.key.d is None
    numbers = original.public_key().public_numbers()
    assert key.key.x == _bytes(numbers.x, COORDINATE[crv])
    alg, chosen = EC_ALG[crv]
    digest = hashlib.new(chosen.name, b"signed on " + crv.encode()).digest()
    signature = clients.crypto(key.id).sign(SignatureAlgorithm(alg), digest).signature
    half = len(signature) // 2
    der = utils.encode_dss_signature(
        int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
    )
    original.public_key().verify(der, digest, ec.ECDSA(utils.Prehashed(chosen)))
    assert clients.crypto(key.id).verify(SignatureAlgorithm(alg), digest, signature).is_valid


@pytest.mark.parametrize("size", [128, 256])
@pytest.mark.parametrize("hsm", [True, False])
def test_an_imported_aes_key_encrypts_and_wraps_as_the_original(
    clients: Clients, size: int, hsm: bool
) -> None:
    secret = os.urandom(size // 8)
    key = clients.keys.import_key(
        f"imported-oct-{size}-{hsm}", JsonWebKey(kty="oct", k=secret), hardware_protected=hsm
    )
    # strongroom has no software oct key: an imported one is oct-HSM either way.
    assert key.key_type == KeyType.oct_hsm
    assert key.key.k is None
    crypto = clients.crypto(key.id)
    gcm = crypto.encrypt(
        EncryptionAlgorithm(f"A{size}GCM"), b"plain text", additional_authenticated_data=b"ad"
    )
    assert AESGCM(secret).decrypt(gcm.iv, gcm.ciphertext + gcm.tag, b"ad") == b"plain text"
    # Key wrap through the REST API: for an oct key without `k` the SDK's CryptographyClient
    # wraps locally under a random key of its own (its SymmetricKey makes one when the JWK
    # has none), so its answer says nothing about the vault.
    kid = key.id.rsplit("/", 1)[1]
    wrapped = _post(clients.dev, f"/keys/{key.name}/{kid}/wrapkey", f"A{size}KW", b"w" * 32)
    assert aes_key_unwrap(secret, wrapped) == b"w" * 32
    unwrapped = _post(
        clients.dev,
        f"/keys/{key.name}/{kid}/unwrapkey",
        f"A{size}KW",
        aes_key_wrap(secret, b"u" * 24),
    )
    assert unwrapped == b"u" * 24


def _post(dev: DevServer, path: str, alg: str, value: bytes) -> bytes:
    answer = requests.post(
        f"{dev.url}{path}?api-version=7.6",
        json={"alg": alg, "value": _b64(value)},
        headers={"Authorization": f"Bearer {dev.token}"},
        verify=dev.ca,
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return base64.urlsafe_b64decode(answer.json()["value"] + "==")


def test_an_import_over_a_key_adds_a_version_with_its_ops_attributes_and_tags(
    clients: Clients,
) -> None:
    made = clients.keys.create_ec_key("reimported", curve="P-256")
    original = ec.generate_private_key(ec.SECP256R1())
    jwk = ec_jwk(original, "P-256", kty="EC-HSM")
    jwk.key_ops = ["sign"]
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    imported = clients.keys.import_key(
        "reimported", jwk, tags={"from": "outside"}, expires_on=expires
    )
    assert imported.properties.version != made.properties.version
    assert imported.key_type == KeyType.ec_hsm  # the JWK's -HSM kty, Hsm unset
    assert imported.key_operations == ["sign"]
    assert (
        imported.properties.tags == {"from": "outside"}
        and imported.properties.expires_on == expires
    )
    assert clients.keys.get_key("reimported").id == imported.id
    versions = {p.version for p in clients.keys.list_properties_of_key_versions("reimported")}
    assert versions == {made.properties.version, imported.properties.version}
    digest = hashlib.sha256(b"x").digest()
    with pytest.raises(HttpResponseError) as refused:
        clients.crypto(imported.id).verify(SignatureAlgorithm.es256, digest, b"\0" * 64)
    assert refused.value.status_code == 403  # key_ops: sign only
    disabled = clients.keys.import_key("reimported", ec_jwk(original, "P-256"), enabled=False)
    with pytest.raises(HttpResponseError) as refused:
        clients.crypto(disabled.id).sign(SignatureAlgorithm.es256, digest)
    assert refused.value.status_code == 403
    # The backup of an imported key restores a key that signs as the original.
    clients.keys.update_key_properties("reimported", disabled.properties.version, enabled=True)
    backup = clients.keys.backup_key("reimported")
    clients.keys.begin_delete_key("reimported").wait()
    clients.keys.purge_deleted_key("reimported")
    restored = clients.keys.restore_key_backup(backup)
    signature = clients.crypto(restored.id).sign(SignatureAlgorithm.es256, digest).signature
    der = utils.encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    original.public_key().verify(der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def test_an_rsa_jwk_of_n_e_and_d_alone_is_imported(clients: Clients) -> None:
    original = rsa.generate_private_key(65537, 2048)
    full = rsa_jwk(original)
    key = clients.keys.import_key(
        "imported-ned", JsonWebKey(kty="RSA", n=full.n, e=full.e, d=full.d)
    )
    digest = hashlib.sha256(b"primes recovered").digest()
    signature = clients.crypto(key.id).sign(SignatureAlgorithm.rs256, digest).signature
    original.public_key().verify(
        signature, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _wire(jwk: JsonWebKey) -> dict[str, Any]:
    return {
        name: (_b64(value) if isinstance(value, bytes) else value)
        for name, value in vars(jwk).items()
        if value is not None and not name.startswith("_")
    }


def _bad_bodies() -> list[tuple[str, dict[str, Any], str]]:
    good_rsa = _wire(rsa_jwk(rsa.generate_private_key(65537, 2048)))
    small = _wire(rsa_jwk(rsa.generate_private_key(65537, 1024)))  # noqa: S505 - refused
    numbers = ec.generate_private_key(ec.SECP256R1()).private_numbers()
    good_ec = _wire(ec_jwk(ec.generate_private_key(ec.SECP256R1()), "P-256"))
    d_wrong = int.from_bytes(base64.urlsafe_b64decode(good_rsa["d"] + "=="), "big") + 2
    return [
        ("public key only", {k: v for k, v in good_rsa.items() if k != "d"}, "no private part"),
        ("missing n", {k: v for k, v in good_rsa.items() if k != "n"}, "has no 'n'"),
        ("inconsistent RSA", good_rsa | {"d": _b64(_bytes(d_wrong))}, "not one consistent"),
        ("RSA 1024", small, "1024 bits"),
        ("partial CRT", {k: v for k, v in good_rsa.items() if k != "qi"}, "but not qi"),
        (
            "off the curve",
            good_ec | {"y": _b64(_bytes(numbers.public_numbers.y ^ 1, 32))},
            "on the curve",
        ),  # noqa: E501
        (
            "not d's point",
            good_ec | {"d": _b64(_bytes(numbers.private_value, 32))},
            "d's public point",
        ),  # noqa: E501
        ("short coordinate", good_ec | {"x": good_ec["x"][:20]}, "32 bytes each"),
        ("unknown crv", good_ec | {"crv": "P-192"}, "'key.crv'"),
        ("unknown kty", good_ec | {"kty": "OKP"}, "'key.kty'"),
        ("oct of 20 bytes", {"kty": "oct", "k": _b64(b"k" * 20)}, "20 bytes"),
        ("oct without k", {"kty": "oct-HSM"}, "no private part"),
        ("unknown key_ops", good_ec | {"key_ops": ["encrypt"]}, "not valid for key type"),
        ("mixed members", good_ec | {"n": good_rsa["n"]}, "'n'"),
    ]


@pytest.mark.parametrize("case,jwk,message", _bad_bodies(), ids=[c[0] for c in _bad_bodies()])
def test_a_bad_jwk_is_a_400_and_nothing_is_stored(
    clients: Clients, dev: DevServer, case: str, jwk: dict[str, Any], message: str
) -> None:
    name = "bad-import-" + "".join(c if c.isalnum() else "-" for c in case)
    answer = _put(dev, name, {"key": jwk})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "BadParameter" and message in error["message"], error
    for member in ("d", "p", "q", "dp", "dq", "qi", "k"):
        if member in jwk and len(jwk[member]) > 4:
            assert jwk[member] not in answer.text
    with pytest.raises(ResourceNotFoundError):
        clients.keys.get_key(name)


def test_a_failed_import_over_a_key_adds_no_version(clients: Clients, dev: DevServer) -> None:
    key = clients.keys.create_ec_key("kept-as-is", curve="P-256")
    good = _wire(ec_jwk(ec.generate_private_key(ec.SECP256R1()), "P-256"))
    for body in (
        {"key": {k: v for k, v in good.items() if k != "d"}},
        {"key": good, "Hsm": "yes"},
        {"key": good, "release_policy": {"data": "e30"}},
        {"key": good, "attributes": {"exportable": True}},
        {"key": good, "tags": {"strongroom.io/uid": "x"}},
        {"key": "not a JWK"},
        {},
    ):
        answer = _put(dev, "kept-as-is", body)
        assert answer.status_code == 400, (body.keys(), answer.text)
        assert answer.json()["error"]["code"] == "BadParameter"
    versions = [p.version for p in clients.keys.list_properties_of_key_versions("kept-as-is")]
    assert versions == [key.properties.version]


def test_import_needs_the_import_permission(dev: DevServer) -> None:
    good = _wire(ec_jwk(ec.generate_private_key(ec.SECP256R1()), "P-256"))
    answer = _put(dev, "not-allowed", {"key": good}, token=dev.issue("dev:reader"))
    assert answer.status_code == 403, answer.text
    assert "'import'" in answer.json()["error"]["message"]


def _put(
    dev: DevServer, name: str, body: dict[str, Any], token: str | None = None
) -> requests.Response:
    return requests.put(
        f"{dev.url}/keys/{name}?api-version=7.6",
        json=body,
        headers={"Authorization": f"Bearer {token or dev.token}"},
        verify=dev.ca,
        timeout=30,
    )
