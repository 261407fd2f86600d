"""Finding 5: RSA1_5 decryption must not be a padding oracle (Bleichenbacher).

Every ciphertext of the modulus' length and below it decrypts with 200: a
malformed padding gives a pseudo-random message derived from the ciphertext
and a secret of the key (implicit rejection), as long as a real message could
be, and the same one every time. RSA-OAEP failures are one fixed 400.
"""

import os
import statistics
import time
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .conftest import DevServer, stop_dev
from .tenants import Caller, b64, ok, refused, start_tenants, unb64

TRIES = 1500  # of each kind, interleaved


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    base = tmp_path_factory.mktemp("bleichenbacher")
    server = start_tenants(base / "state", base / "dev.log")
    yield server
    stop_dev(server)


@pytest.fixture(scope="module")
def rsa_key(tenants: DevServer) -> tuple[str, rsa.RSAPublicKey]:
    admin = Caller(tenants, "dev:admin")
    made = ok(admin.call("POST", "/keys/oracle-rsa/create", {"kty": "RSA", "key_size": 2048}))
    jwk = made["key"]
    public = rsa.RSAPublicNumbers(
        int.from_bytes(unb64(jwk["e"]), "big"), int.from_bytes(unb64(jwk["n"]), "big")
    ).public_key()
    return jwk["kid"].rsplit("/", 1)[1], public


def _malformed(public: rsa.RSAPublicKey) -> bytes:
    """A ciphertext below the modulus whose plaintext is not PKCS#1 v1.5 (0x00 0x01 ...)."""
    n, e = public.public_numbers().n, public.public_numbers().e
    encoded = b"\x00\x01" + os.urandom(253)
    return pow(int.from_bytes(encoded, "big"), e, n).to_bytes(256, "big")


def test_malformed_rsa1_5_ciphertexts_decrypt_like_any_other(
    tenants: DevServer, rsa_key: tuple[str, rsa.RSAPublicKey]
) -> None:
    version, public = rsa_key
    decrypter = Caller(tenants, "dev:decrypter")
    path = f"/keys/oracle-rsa/{version}/decrypt"
    good = public.encrypt(b"a real message", padding.PKCS1v15())
    assert (
        unb64(ok(decrypter.call("POST", path, {"alg": "RSA1_5", "value": b64(good)}))["value"])
        == b"a real message"
    )
    seen = set()
    for _ in range(5):
        bad = _malformed(public)
        first = ok(decrypter.call("POST", path, {"alg": "RSA1_5", "value": b64(bad)}))
        again = ok(decrypter.call("POST", path, {"alg": "RSA1_5", "value": b64(bad)}))
        assert first["value"] == again["value"]  # deterministic: retrying reveals nothing
        assert len(unb64(first["value"])) <= 256 - 11
        seen.add(first["value"])
    assert len(seen) == 5
    unwrap = f"/keys/oracle-rsa/{version}/unwrapkey"
    ok(decrypter.call("POST", unwrap, {"alg": "RSA1_5", "value": b64(_malformed(public))}))


def test_rsa_oaep_failures_are_one_fixed_answer(
    tenants: DevServer, rsa_key: tuple[str, rsa.RSAPublicKey]
) -> None:
    version, public = rsa_key
    decrypter = Caller(tenants, "dev:decrypter")
    messages = set()
    for alg, chosen in (("RSA-OAEP", hashes.SHA1()), ("RSA-OAEP-256", hashes.SHA256())):  # noqa: S303
        path = f"/keys/oracle-rsa/{version}/decrypt"
        good = public.encrypt(b"oaep", padding.OAEP(padding.MGF1(chosen), chosen, None))
        assert (
            unb64(ok(decrypter.call("POST", path, {"alg": alg, "value": b64(good)}))["value"])
            == b"oaep"
        )
        for bad in (_malformed(public), bytes(256), good[:-1] + bytes([good[-1] ^ 1])):
            for op in ("decrypt", "unwrapkey"):
                answer = decrypter.call(
                    "POST", f"/keys/oracle-rsa/{version}/{op}", {"alg": alg, "value": b64(bad)}
                )
                message = refused(answer, 400)
                assert "HSM" not in message
                messages.add(message)
    assert len(messages) == 1, messages


def test_no_timing_split_between_valid_and_malformed_padding(
    tenants: DevServer, rsa_key: tuple[str, rsa.RSAPublicKey]
) -> None:
    version, public = rsa_key
    decrypter = Caller(tenants, "dev:decrypter")
    path = f"/keys/oracle-rsa/{version}/decrypt"
    valid = [public.encrypt(os.urandom(32), padding.PKCS1v15()) for _ in range(50)]
    malformed = [_malformed(public) for _ in range(50)]
    timings: dict[str, list[float]] = {"valid": [], "malformed": []}
    for _ in range(20):  # warm up the connection and the key
        ok(decrypter.call("POST", path, {"alg": "RSA1_5", "value": b64(valid[0])}))
    for index in range(TRIES):
        pair = [("valid", valid[index % 50]), ("malformed", malformed[index % 50])]
        if index % 2:
            pair.reverse()
        for kind, ciphertext in pair:
            started = time.perf_counter()
            answer = decrypter.call("POST", path, {"alg": "RSA1_5", "value": b64(ciphertext)})
            timings[kind].append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.text
    valid_median = statistics.median(timings["valid"])
    malformed_median = statistics.median(timings["malformed"])
    tolerance = max(0.05 * valid_median, 0.0005)
    assert abs(valid_median - malformed_median) <= tolerance, (
        f"median valid {valid_median * 1000:.3f} ms, malformed {malformed_median * 1000:.3f} ms"
    )
