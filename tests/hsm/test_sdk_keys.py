"""The official azure-keyvault-keys clients against `strongroom dev`: every key type and alg."""

import base64
import hashlib
import os

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.keys import (
    KeyRotationLifetimeAction,
    KeyRotationPolicy,
    KeyRotationPolicyAction,
    KeyType,
)
from azure.keyvault.keys.crypto import EncryptionAlgorithm, KeyWrapAlgorithm, SignatureAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from .conftest import Clients

DIGESTS = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}
HASHES = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}
CURVE_ALG = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
CURVES = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}


def _int(data: bytes) -> int:
    return int.from_bytes(data, "big")


def verify_locally_rsa(jwk, alg: str, digest: bytes, signature: bytes) -> None:  # type: ignore[no-untyped-def]
    public = rsa.RSAPublicNumbers(_int(jwk.e), _int(jwk.n)).public_key()
    chosen = HASHES[alg[2:]]
    pad = (
        padding.PKCS1v15()
        if alg.startswith("RS")
        else padding.PSS(padding.MGF1(chosen), chosen.digest_size)
    )
    public.verify(signature, digest, pad, utils.Prehashed(chosen))


def verify_locally_ec(jwk, alg: str, digest: bytes, signature: bytes) -> None:  # type: ignore[no-untyped-def]
    public = ec.EllipticCurvePublicNumbers(_int(jwk.x), _int(jwk.y), CURVES[jwk.crv]).public_key()
    half = len(signature) // 2
    der = utils.encode_dss_signature(_int(signature[:half]), _int(signature[half:]))
    public.verify(der, digest, ec.ECDSA(utils.Prehashed(HASHES[alg[2:]])))


@pytest.mark.parametrize("size", [2048, 3072, 4096])
@pytest.mark.parametrize("hsm", [True, False])
def test_rsa_keys_sign_encrypt_and_wrap(clients: Clients, size: int, hsm: bool) -> None:
    name = f"rsa-{size}-{'hsm' if hsm else 'soft'}"
    key = clients.keys.create_rsa_key(name, size=size, hardware_protected=hsm)
    assert key.key_type == (KeyType.rsa_hsm if hsm else KeyType.rsa)
    assert len(key.key.n) * 8 == size and key.key.e == b"\x01\x00\x01"
    crypto = clients.crypto(key.id)
    for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"):
        digest = DIGESTS[alg[2:]](alg.encode()).digest()
        result = crypto.sign(SignatureAlgorithm(alg), digest)
        verify_locally_rsa(key.key, alg, digest, result.signature)
        assert crypto.verify(SignatureAlgorithm(alg), digest, result.signature).is_valid
    local = clients.crypto(key)  # encrypts locally from the JWK
    for alg in ("RSA-OAEP", "RSA-OAEP-256", "RSA1_5"):
        encrypted = local.encrypt(EncryptionAlgorithm(alg), b"plaintext " + alg.encode())
        assert crypto.decrypt(EncryptionAlgorithm(alg), encrypted.ciphertext).plaintext == (
            b"plaintext " + alg.encode()
        )
        wrapped = local.wrap_key(KeyWrapAlgorithm(alg), b"k" * 32)
        assert crypto.unwrap_key(KeyWrapAlgorithm(alg), wrapped.encrypted_key).key == b"k" * 32


@pytest.mark.parametrize("curve", ["P-256", "P-384", "P-521"])
@pytest.mark.parametrize("hsm", [True, False])
def test_ec_keys_sign_and_verify_against_the_jwk(clients: Clients, curve: str, hsm: bool) -> None:
    key = clients.keys.create_ec_key(f"ec-{curve}-{hsm}", curve=curve, hardware_protected=hsm)
    assert key.key.crv == curve
    alg = CURVE_ALG[curve]
    digest = DIGESTS[alg[2:]](b"message").digest()
    crypto = clients.crypto(key.id)
    signature = crypto.sign(SignatureAlgorithm(alg), digest).signature
    verify_locally_ec(key.key, alg, digest, signature)
    assert crypto.verify(SignatureAlgorithm(alg), digest, signature).is_valid
    assert not crypto.verify(SignatureAlgorithm(alg), digest, bytes(len(signature))).is_valid


@pytest.mark.parametrize("size", [128, 192, 256])
def test_oct_hsm_keys_encrypt_and_wrap_in_the_vault(clients: Clients, size: int) -> None:
    """AES-GCM through the SDK, opened by the vault's REST API (an operation the SDK ran
    locally would not open there); CBC and key wrap through the REST API both ways."""
    key = clients.keys.create_oct_key(f"oct-{size}", size=size, hardware_protected=True)
    assert key.key_type == KeyType.oct_hsm
    assert key.key.k is None
    crypto = clients.crypto(key.id)
    path = f"/keys/{key.name}/{key.properties.version}"
    plaintext = b"sixteen byte msg" * 3
    gcm = crypto.encrypt(
        EncryptionAlgorithm(f"A{size}GCM"), plaintext, additional_authenticated_data=b"context"
    )
    assert gcm.iv and gcm.tag
    opened = _rest(
        clients,
        f"{path}/decrypt",
        alg=f"A{size}GCM",
        value=gcm.ciphertext,
        iv=gcm.iv,
        tag=gcm.tag,
        aad=b"context",
    )
    assert opened == plaintext
    # AES-CBC through the REST API both ways: the SDK runs it locally for some key sizes.
    for mode in ("CBC", "CBCPAD"):
        iv = os.urandom(16)
        data = plaintext if mode == "CBC" else b"not a block multiple"
        sealed = _rest(clients, f"{path}/encrypt", alg=f"A{size}{mode}", value=data, iv=iv)
        assert sealed != data and len(sealed) % 16 == 0
        assert _rest(clients, f"{path}/decrypt", alg=f"A{size}{mode}", value=sealed, iv=iv) == data
    # Key wrap through the REST API both ways: for an oct key the SDK's CryptographyClient
    # wraps and unwraps locally, under a random key of its own (its JWK has no `k`), so its
    # answer would say nothing about the vault.
    wrapped = _rest(clients, f"{path}/wrapkey", alg=f"A{size}KW", value=b"w" * 32)
    assert len(wrapped) == 40
    assert _rest(clients, f"{path}/unwrapkey", alg=f"A{size}KW", value=wrapped) == b"w" * 32
    local = crypto.wrap_key(KeyWrapAlgorithm(f"A{size}KW"), b"w" * 32).encrypted_key
    assert local != wrapped  # made elsewhere: the reason for the REST calls above


def _rest(clients: Clients, path: str, alg: str, **parts: bytes) -> bytes:
    """A crypto operation through the REST API itself; the answer's value, decoded."""
    body: dict[str, str] = {"alg": alg}
    for name, raw in parts.items():
        body[name] = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    answer = requests.post(
        f"{clients.dev.url}{path}?api-version=7.6",
        json=body,
        headers={"Authorization": f"Bearer {clients.dev.token}"},
        verify=clients.dev.ca,
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    value = answer.json()["value"]
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def test_versions_update_and_latest(clients: Clients) -> None:
    first = clients.keys.create_ec_key("versioned", curve="P-256")
    second = clients.keys.create_ec_key("versioned", curve="P-256")
    assert first.properties.version != second.properties.version
    assert clients.keys.get_key("versioned").id == second.id
    assert clients.keys.get_key("versioned", first.properties.version).id == first.id
    versions = {p.version for p in clients.keys.list_properties_of_key_versions("versioned")}
    assert versions == {first.properties.version, second.properties.version}
    updated = clients.keys.update_key_properties(
        "versioned", first.properties.version, enabled=False, tags={"team": "payments"}
    )
    assert updated.properties.enabled is False and updated.properties.tags == {"team": "payments"}
    with pytest.raises(HttpResponseError) as refused:
        clients.crypto(first.id).sign(SignatureAlgorithm.es256, b"\x00" * 32)
    assert refused.value.status_code == 403
    names = {p.name for p in clients.keys.list_properties_of_keys()}
    assert "versioned" in names


def test_listing_pages_follow_next_links(clients: Clients) -> None:
    for index in range(30):
        clients.keys.create_ec_key(f"paged-{index}", curve="P-256")
    names = [p.name for p in clients.keys.list_properties_of_keys()]
    assert len([n for n in names if n.startswith("paged-")]) == 30
    assert len(names) == len(set(names))


def test_soft_delete_recover_and_purge(clients: Clients) -> None:
    key = clients.keys.create_rsa_key("deletable", size=2048)
    deleted = clients.keys.begin_delete_key("deletable").result()
    assert deleted.recovery_id.endswith("/deletedkeys/deletable")
    assert deleted.scheduled_purge_date > deleted.deleted_date
    with pytest.raises(ResourceNotFoundError):
        clients.keys.get_key("deletable")
    assert "deletable" in {k.name for k in clients.keys.list_deleted_keys()}
    with pytest.raises(HttpResponseError) as conflict:
        clients.keys.create_rsa_key("deletable", size=2048)
    assert conflict.value.status_code == 409
    recovered = clients.keys.begin_recover_deleted_key("deletable").result()
    assert recovered.id == key.id
    clients.keys.begin_delete_key("deletable").wait()
    clients.keys.purge_deleted_key("deletable")
    with pytest.raises(ResourceNotFoundError):
        clients.keys.get_deleted_key("deletable")


def test_backup_then_purge_then_restore_signs_with_the_same_key(clients: Clients) -> None:
    key = clients.keys.create_ec_key("backed-up", curve="P-384")
    backup = clients.keys.backup_key("backed-up")
    clients.keys.begin_delete_key("backed-up").wait()
    clients.keys.purge_deleted_key("backed-up")
    restored = clients.keys.restore_key_backup(backup)
    assert restored.id == key.id and restored.key.x == key.key.x
    digest = hashlib.sha384(b"after restore").digest()
    signature = clients.crypto(restored.id).sign(SignatureAlgorithm.es384, digest).signature
    verify_locally_ec(key.key, "ES384", digest, signature)
    with pytest.raises(HttpResponseError) as conflict:
        clients.keys.restore_key_backup(backup)
    assert conflict.value.status_code == 409


def test_rotate_and_rotation_policy(clients: Clients) -> None:
    key = clients.keys.create_rsa_key("rotating", size=2048)
    policy = clients.keys.update_key_rotation_policy(
        "rotating",
        KeyRotationPolicy(
            lifetime_actions=[
                KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="P30D")
            ],
            expires_in="P90D",
        ),
    )
    assert policy.expires_in == "P90D"
    fetched = clients.keys.get_key_rotation_policy("rotating")
    assert fetched.lifetime_actions[0].time_after_create == "P30D"
    rotated = clients.keys.rotate_key("rotating")
    assert rotated.properties.version != key.properties.version
    assert rotated.properties.expires_on is not None
    assert rotated.key.n != key.key.n


def test_random_bytes_come_from_the_hsm(clients: Clients) -> None:
    first = clients.keys.get_random_bytes(32)
    assert len(first) == 32 and first != clients.keys.get_random_bytes(32)
