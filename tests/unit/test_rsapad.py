"""The RSA decryption paddings of `strongroom.hsm.rsapad`, against published test vectors
and against cases built to the same recipes.

Published vectors: Project Wycheproof (github.com/C2SP/wycheproof, Apache-2.0), the files
`testvectors_v1/rsa_oaep_2048_sha1_mgf1sha1_test.json`,
`testvectors_v1/rsa_oaep_2048_sha256_mgf1sha256_test.json` and
`testvectors_v1/rsa_pkcs1_2048_test.json` at commit
dac1dd4729fd1f8dd9e1e9f3dce51d783da6c166 (their SHA-256 digests are in `WYCHEPROOF`).
They are not part of this repository: the tests read them from the directory named by
$STRONGROOM_WYCHEPROOF (which must then hold them), else from
`wycheproof/testvectors_v1` in the `shared/` folder beside the checkout, and are skipped,
saying so, when neither has them. The built cases below run everywhere.

Each vector is decrypted as the engine does it: raw RSA with the vector's private key
(m = c^d mod n, from cryptography's private numbers), the result left-padded to the
modulus's length, then the decoder. Vectors whose invalidity is in the ciphertext itself
(not the modulus's length, or not below the modulus) never reach a decoder:
`Engine.rsa_decrypt` refuses them on public values before any RSA, and the tests check
that each such vector is one that check refuses.
"""

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from strongroom.hsm.errors import InvalidInput
from strongroom.hsm.rsapad import OAEP_FAILED, oaep_decode, pkcs1_v15_decode

ROOT = Path(__file__).resolve().parents[2]
WYCHEPROOF = {
    "rsa_oaep_2048_sha1_mgf1sha1_test.json": (
        "2c7b3694cd9265eb88ddb586ca29aefcea02938bde772e19a71a4fa601fc71c5"
    ),
    "rsa_oaep_2048_sha256_mgf1sha256_test.json": (
        "83dce701e3d8640ac56e6d7bf37a5a8f9bd6a336e1e932a1e9bfe4ba9c5ea3a9"
    ),
    "rsa_pkcs1_2048_test.json": "28466c4390f1f8943754a990ba36397ebbac628117d91b57f87e1ba200b932f3",
}
HASH_NAMES = {"SHA-1": "sha1", "SHA-256": "sha256"}
KEY_SECRET = b"a secret of the key, as the engine derives one"


def _vector_dir() -> Path | None:
    configured = os.environ.get("STRONGROOM_WYCHEPROOF")
    if configured:
        return Path(configured)
    beside = ROOT.parent / "shared" / "wycheproof" / "testvectors_v1"
    return beside if all((beside / name).is_file() for name in WYCHEPROOF) else None


def _vectors(name: str) -> list[Any]:
    """One pytest.param per test of a Wycheproof file: (its group, the test)."""
    directory = _vector_dir()
    if directory is None:
        reason = (
            f"Wycheproof's {name} is not here: set STRONGROOM_WYCHEPROOF to a directory "
            "holding it, or put it in shared/wycheproof/testvectors_v1 beside the checkout"
        )
        return [pytest.param(None, None, marks=pytest.mark.skip(reason=reason), id="absent")]
    raw = (directory / name).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == WYCHEPROOF[name], f"{name} is another version"
    document = json.loads(raw)
    return [
        pytest.param(group, test, id=f"tc{test['tcId']}")
        for group in document["testGroups"]
        for test in group["tests"]
    ]


def _private_key(group: dict[str, Any]) -> rsa.RSAPrivateKey:
    return _key_of(tuple(sorted(group["privateKey"].items())))


@functools.cache
def _key_of(numbers: tuple[tuple[str, str], ...]) -> rsa.RSAPrivateKey:
    fields = {name: int(value, 16) for name, value in numbers}
    public = rsa.RSAPublicNumbers(fields["publicExponent"], fields["modulus"])
    return rsa.RSAPrivateNumbers(
        p=fields["prime1"],
        q=fields["prime2"],
        d=fields["privateExponent"],
        dmp1=fields["exponent1"],
        dmq1=fields["exponent2"],
        iqmp=fields["coefficient"],
        public_numbers=public,
    ).private_key()


def _engine_refuses_before_rsa(ciphertext: bytes, key: rsa.RSAPrivateKey) -> bool:
    """`Engine.rsa_decrypt`'s check on public values: exactly k bytes, and below n."""
    n = key.public_key().public_numbers().n
    size = (n.bit_length() + 7) // 8
    return len(ciphertext) != size or int.from_bytes(ciphertext, "big") >= n


def _raw_rsa(ciphertext: bytes, key: rsa.RSAPrivateKey) -> bytes:
    """What the HSM's CKM_RSA_X_509 gives the engine: c^d mod n, in k bytes."""
    numbers = key.private_numbers()
    n = numbers.public_numbers.n
    size = (n.bit_length() + 7) // 8
    return pow(int.from_bytes(ciphertext, "big"), numbers.d, n).to_bytes(size, "big")


def _check_oaep_vector(group: dict[str, Any], test: dict[str, Any]) -> None:
    assert group["mgf"] == "MGF1" and group["mgfSha"] == group["sha"]
    hash_name = HASH_NAMES[group["sha"]]
    key = _private_key(group)
    ciphertext, label = bytes.fromhex(test["ct"]), bytes.fromhex(test["label"])
    if "InvalidCiphertext" in test["flags"]:
        assert test["result"] == "invalid"
        assert _engine_refuses_before_rsa(ciphertext, key)
        return
    assert not _engine_refuses_before_rsa(ciphertext, key)
    encoded = _raw_rsa(ciphertext, key)
    if test["result"] == "valid":
        assert oaep_decode(encoded, hash_name, label) == bytes.fromhex(test["msg"])
        if label:
            # Azure's RSA-OAEP has no label: a labelled ciphertext is refused like any other.
            with pytest.raises(InvalidInput) as unlabelled:
                oaep_decode(encoded, hash_name)
            assert str(unlabelled.value) == OAEP_FAILED
        return
    assert test["result"] == "invalid", test["result"]
    with pytest.raises(InvalidInput) as failed:
        oaep_decode(encoded, hash_name, label)
    assert str(failed.value) == OAEP_FAILED


@pytest.mark.parametrize(("group", "test"), _vectors("rsa_oaep_2048_sha1_mgf1sha1_test.json"))
def test_wycheproof_rsa_oaep_sha1(group: dict[str, Any], test: dict[str, Any]) -> None:
    _check_oaep_vector(group, test)


@pytest.mark.parametrize(("group", "test"), _vectors("rsa_oaep_2048_sha256_mgf1sha256_test.json"))
def test_wycheproof_rsa_oaep_sha256(group: dict[str, Any], test: dict[str, Any]) -> None:
    _check_oaep_vector(group, test)


@pytest.mark.parametrize(("group", "test"), _vectors("rsa_pkcs1_2048_test.json"))
def test_wycheproof_rsa_pkcs1_v15(group: dict[str, Any], test: dict[str, Any]) -> None:
    key = _private_key(group)
    ciphertext, message = bytes.fromhex(test["ct"]), bytes.fromhex(test["msg"])
    if "InvalidCiphertextFormat" in test["flags"]:
        assert test["result"] == "invalid"
        assert _engine_refuses_before_rsa(ciphertext, key)
        return
    assert not _engine_refuses_before_rsa(ciphertext, key)
    encoded = _raw_rsa(ciphertext, key)
    decoded = pkcs1_v15_decode(encoded, ciphertext, KEY_SECRET)
    if test["result"] == "valid":
        assert decoded == message
        return
    assert test["result"] == "invalid" and "InvalidPkcs1Padding" in test["flags"]
    # Implicit rejection: no error, a message as long as a real one could be, the same one
    # each time, not the message the padding once carried, and made of the ciphertext and
    # the key's secret alone: nothing of the decrypted block shows through.
    assert decoded == pkcs1_v15_decode(encoded, ciphertext, KEY_SECRET)
    assert len(decoded) <= len(encoded) - 11
    assert decoded != message
    assert decoded == pkcs1_v15_decode(bytes(len(encoded)), ciphertext, KEY_SECRET)
    assert decoded != pkcs1_v15_decode(encoded, ciphertext, b"another key's secret")


# Cases built to Wycheproof's recipes, on this module's own EME-OAEP encoder (RFC 8017,
# 7.1.1 step 2), so that they need no file.
K = 256


def _mgf1(seed: bytes, length: int, hash_name: str) -> bytes:
    out = b""
    for counter in range(-(-length // hashlib.new(hash_name).digest_size)):
        out += hashlib.new(hash_name, seed + counter.to_bytes(4, "big")).digest()
    return out[:length]


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _oaep_encode(
    message: bytes,
    hash_name: str,
    label: bytes = b"",
    seed: bytes | None = None,
    l_hash: bytes | None = None,
    padding_string: bytes | None = None,
    separator: bytes = b"\x01",
    first: bytes = b"\x00",
) -> bytes:
    h_len = hashlib.new(hash_name).digest_size
    l_hash = hashlib.new(hash_name, label).digest() if l_hash is None else l_hash
    if padding_string is None:
        padding_string = bytes(K - len(message) - 2 * h_len - 2)
    db = l_hash + padding_string + separator + message
    assert len(db) == K - h_len - 1
    seed = os.urandom(h_len) if seed is None else seed
    masked_db = _xor(db, _mgf1(seed, len(db), hash_name))
    masked_seed = _xor(seed, _mgf1(masked_db, h_len, hash_name))
    return first + masked_seed + masked_db


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


@pytest.mark.parametrize("hash_name", ["sha1", "sha256"])
def test_built_oaep_encodings_decode(hash_name: str) -> None:
    h_len = hashlib.new(hash_name).digest_size
    longest = os.urandom(K - 2 * h_len - 2)
    assert oaep_decode(_oaep_encode(b"", hash_name), hash_name) == b""
    assert oaep_decode(_oaep_encode(longest, hash_name), hash_name) == longest
    for seed in (bytes(h_len), b"\xff" * h_len):
        assert oaep_decode(_oaep_encode(b"m", hash_name, seed=seed), hash_name) == b"m"
    labelled = _oaep_encode(b"bound", hash_name, label=b"context")
    assert oaep_decode(labelled, hash_name, b"context") == b"bound"
    with pytest.raises(InvalidInput, match=OAEP_FAILED):
        oaep_decode(labelled, hash_name)


@pytest.mark.parametrize("hash_name", ["sha1", "sha256"])
def test_an_oaep_ciphertext_of_cryptography_with_a_label_decodes_after_raw_rsa(
    hash_name: str,
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    chosen = hashes.SHA1() if hash_name == "sha1" else hashes.SHA256()  # noqa: S303
    ciphertext = key.public_key().encrypt(
        b"attack at dawn", padding.OAEP(padding.MGF1(chosen), chosen, b"a label")
    )
    assert oaep_decode(_raw_rsa(ciphertext, key), hash_name, b"a label") == b"attack at dawn"


def _broken_oaep(hash_name: str) -> dict[str, bytes]:
    h_len = hashlib.new(hash_name).digest_size
    l_hash = hashlib.new(hash_name, b"").digest()
    zeros = K - 6 - 2 * h_len - 2
    return {
        "first byte of l_hash modified": _oaep_encode(
            b"secret", hash_name, l_hash=_flip(l_hash, 0)
        ),
        "last byte of l_hash modified": _oaep_encode(
            b"secret", hash_name, l_hash=_flip(l_hash, h_len - 1)
        ),
        "l_hash all 0": _oaep_encode(b"secret", hash_name, l_hash=bytes(h_len)),
        "l_hash all 1": _oaep_encode(b"secret", hash_name, l_hash=b"\xff" * h_len),
        "first byte of ps modified": _oaep_encode(
            b"secret", hash_name, padding_string=b"\x02" + bytes(zeros - 1)
        ),
        "all bits in ps flipped": _oaep_encode(
            b"secret", hash_name, padding_string=b"\xff" * zeros
        ),
        "ps terminated by 0xff": _oaep_encode(b"secret", hash_name, separator=b"\xff"),
        "ps is all zero": _oaep_encode(b"secret", hash_name, separator=b"\x00"),
        "first byte is 1": _oaep_encode(b"secret", hash_name, first=b"\x01"),
        "em is 0": bytes(K),
        "em is 1": bytes(K - 1) + b"\x01",
        "em is all ones": b"\xff" * K,
        "em shorter than 2 hLen + 2": bytes(2 * h_len + 1),
    }


@pytest.mark.parametrize("hash_name", ["sha1", "sha256"])
def test_every_broken_oaep_encoding_fails_the_same_way(hash_name: str) -> None:
    for what, encoded in _broken_oaep(hash_name).items():
        with pytest.raises(InvalidInput) as failed:
            oaep_decode(encoded, hash_name)
        assert str(failed.value) == OAEP_FAILED, what


def _pkcs1(message: bytes, padding_string: bytes | None = None) -> bytes:
    padding_string = padding_string or b"\x5a" * (K - 3 - len(message))
    return b"\x00\x02" + padding_string + b"\x00" + message


def test_pkcs1_v15_special_paddings_decode() -> None:
    message = b"\x01\x02\x03\x04"
    all_ones = _pkcs1(message, b"\xff" * (K - 3 - len(message)))
    sslv23 = _pkcs1(message, b"\x5a" * (K - 11 - len(message)) + b"\x03" * 8)
    for encoded in (all_ones, sslv23):
        assert pkcs1_v15_decode(encoded, b"c" * K, KEY_SECRET) == message


def test_a_pkcs1_v15_ciphertext_of_cryptography_decodes_after_raw_rsa() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ciphertext = key.public_key().encrypt(b"attack at dawn", padding.PKCS1v15())
    decoded = pkcs1_v15_decode(_raw_rsa(ciphertext, key), ciphertext, KEY_SECRET)
    assert decoded == b"attack at dawn"
