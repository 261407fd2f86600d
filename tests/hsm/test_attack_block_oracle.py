"""Finding 4: a caller holding only `keys: encrypt` must learn nothing about any plaintext.

The attack: AES-CBC encryption of a zero block under a caller-chosen IV is the
raw block cipher, E_K(IV). With IV = the GCM counter block J0+1 of someone
else's AES-GCM ciphertext, E_K(J0+1) is that ciphertext's keystream.
"""

from collections.abc import Iterator

import pytest

from .conftest import DevServer, stop_dev
from .tenants import Caller, b64, ok, refused, start_tenants, unb64

SECRET_BLOCK = b"launch code 7731"  # one AES block


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    base = tmp_path_factory.mktemp("oracle")
    server = start_tenants(base / "state", base / "dev.log")
    yield server
    stop_dev(server)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _counter_block(iv: bytes, counter: int) -> bytes:
    return iv + counter.to_bytes(4, "big")


def test_an_encrypt_only_caller_cannot_read_a_gcm_plaintext(tenants: DevServer) -> None:
    admin = Caller(tenants, "dev:admin")
    attacker = Caller(tenants, "dev:encrypt-only")
    key = ok(admin.call("POST", "/keys/shared-aes/create", {"kty": "oct-HSM", "key_size": 256}))
    version = key["key"]["kid"].rsplit("/", 1)[1]
    sealed = ok(
        admin.call(
            "POST",
            f"/keys/shared-aes/{version}/encrypt",
            {"alg": "A256GCM", "value": b64(SECRET_BLOCK)},
        )
    )
    ciphertext, iv = unb64(sealed["value"]), unb64(sealed["iv"])
    assert len(iv) == 12 and len(ciphertext) == 16
    # The attacker may encrypt: that part of its permission still works.
    ok(
        attacker.call(
            "POST", f"/keys/shared-aes/{version}/encrypt", {"alg": "A256GCM", "value": b64(b"x")}
        )
    )

    for alg in ("A256CBC", "A256CBCPAD"):
        oracle = attacker.call(
            "POST",
            f"/keys/shared-aes/{version}/encrypt",
            {"alg": alg, "value": b64(bytes(16)), "iv": b64(_counter_block(iv, 2))},
        )
        if oracle.status_code == 200:
            keystream = unb64(oracle.json()["value"])[:16]
            assert _xor(ciphertext, keystream) != SECRET_BLOCK, f"{alg} was a block-cipher oracle"
        assert "iv" in refused(oracle, 400)

    # Without a chosen IV the vault picks a random one: the answer is no keystream.
    blind = ok(
        attacker.call(
            "POST",
            f"/keys/shared-aes/{version}/encrypt",
            {"alg": "A256CBC", "value": b64(bytes(16))},
        )
    )
    assert unb64(blind["iv"]) != _counter_block(iv, 2)
    assert _xor(ciphertext, unb64(blind["value"])) != SECRET_BLOCK
    # A GCM IV is always the vault's choice.
    chosen_gcm = attacker.call(
        "POST",
        f"/keys/shared-aes/{version}/encrypt",
        {"alg": "A256GCM", "value": b64(bytes(16)), "iv": b64(iv)},
    )
    assert "iv" in refused(chosen_gcm, 400)


def test_a_caller_who_may_decrypt_keeps_its_chosen_cbc_iv(tenants: DevServer) -> None:
    admin = Caller(tenants, "dev:admin")
    key = ok(admin.call("POST", "/keys/own-iv/create", {"kty": "oct-HSM", "key_size": 128}))
    version = key["key"]["kid"].rsplit("/", 1)[1]
    iv = bytes(range(16))
    encrypted = ok(
        admin.call(
            "POST",
            f"/keys/own-iv/{version}/encrypt",
            {"alg": "A128CBCPAD", "value": b64(b"padded"), "iv": b64(iv)},
        )
    )
    assert unb64(encrypted["iv"]) == iv
    decrypted = ok(
        admin.call(
            "POST",
            f"/keys/own-iv/{version}/decrypt",
            {"alg": "A128CBCPAD", "value": encrypted["value"], "iv": encrypted["iv"]},
        )
    )
    assert unb64(decrypted["value"]) == b"padded"


def test_a_chosen_iv_needs_decrypt_in_the_keys_own_key_ops(tenants: DevServer) -> None:
    admin = Caller(tenants, "dev:admin")
    key = ok(
        admin.call(
            "POST",
            "/keys/encrypt-ops/create",
            {"kty": "oct-HSM", "key_size": 128, "key_ops": ["encrypt", "wrapKey"]},
        )
    )
    version = key["key"]["kid"].rsplit("/", 1)[1]
    chosen = admin.call(
        "POST",
        f"/keys/encrypt-ops/{version}/encrypt",
        {"alg": "A128CBC", "value": b64(bytes(16)), "iv": b64(bytes(16))},
    )
    assert "iv" in refused(chosen, 400)
