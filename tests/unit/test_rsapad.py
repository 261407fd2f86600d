"""The RSA decryption paddings of `strongroom.hsm.rsapad`, against published test vectors
and against cases built to the same recipes.

Published vectors: those of the `cryptography_vectors` package (pyca/cryptography's test
vectors on PyPI, a pinned test dependency, at the version of `cryptography`), under
`asymmetric/RSA/`:

- `pkcs-1v2-1d2-vec/oaep-vect.txt`: RSA Laboratories' PKCS #1 v2.1 RSA-OAEP vectors
  (SHA-1, MGF1-SHA-1, empty label), 10 keys of 1024 to 2048 bits, 6 messages each, with
  the seeds;
- `oaep-custom/oaep-sha256-sha256.txt`: pyca's RSA-OAEP SHA-256 / MGF1-SHA-256 vectors,
  10 keys of 2048 bits, 6 messages each;
- `pkcs1v15crypt-vectors.txt`: RSA Laboratories' PKCS #1 v1.5 encryption vectors, 15 keys
  of 1024 to 2048 bits, 20 messages each, with the padding strings;
- `oaep-label.txt`: BoringSSL's RSA-OAEP SHA-512 vector with a label.

Each vector is decrypted as the engine does it: raw RSA with the vector's private key
(m = c^d mod n, d from the vector), the result left-padded to the modulus's length, then
the decoder. Every published ciphertext is one `Engine.rsa_decrypt` lets through to the
HSM (exactly k bytes, below n). The invalid cases are the published encodings with bytes
changed: OAEP refuses each with its one fixed error, PKCS #1 v1.5 answers each with a
synthetic message (implicit rejection).
"""

import functools
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cryptography_vectors
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from strongroom.hsm.errors import InvalidInput
from strongroom.hsm.rsapad import OAEP_FAILED, oaep_decode, pkcs1_v15_decode

RSA_VECTORS = Path(cryptography_vectors.__file__).resolve().parent / "asymmetric" / "RSA"
KEY_SECRET = b"a secret of the key, as the engine derives one"
K = 256


@dataclass(frozen=True)
class Vector:
    """One published encryption: the key's private numbers (as the file gives them), the
    message, the ciphertext, and the seed (OAEP) or padding string (PKCS #1 v1.5) the
    encryption used, when the file gives it."""

    fields: tuple[tuple[str, int], ...]
    message: bytes
    ciphertext: bytes
    seed: bytes | None


def _sections(text: str) -> Iterator[tuple[str, str]]:
    """The file as ("Example", title) where a key pair starts, (section, "") at "Public key"
    and "Private key", and (heading, hex digits) for each "# Heading:" and the hex lines
    under it, up to the next comment or blank line. Other comments, and the description
    before the first comment, are passed over."""
    heading: str | None = None
    digits: list[str] = []
    lines = text.splitlines()
    first_comment = next(i for i, line in enumerate(lines) if line.startswith("#"))
    for line in [*lines[first_comment:], ""]:
        stripped = line.strip()
        if heading is not None and (not stripped or stripped.startswith("#")):
            assert digits, f"no value under {heading!r}"
            value = "".join(digits)
            assert re.fullmatch(r"[0-9a-f]+", value), f"{heading}: not hex"
            yield heading, value
            heading, digits = None, []
        if stripped.startswith("#"):
            title = stripped.lstrip("#").strip()
            if title.endswith(":"):
                heading = title[:-1].strip()
            elif re.fullmatch(r"Example(?: \d+: .*)?", title):
                yield "Example", title
            elif title in ("Public key", "Private key"):
                yield title, ""
        elif stripped:
            assert heading is not None, f"a value under no heading: {stripped[:40]!r}"
            digits.append(stripped.replace(" ", "").lower())


PRIVATE_FIELDS = {
    "Modulus": "n",
    "Public exponent": "e",
    "Exponent": "d",
    "Prime 1": "p",
    "Prime 2": "q",
    "Prime exponent 1": "dmp1",
    "Prime exponent 2": "dmq1",
    "Coefficient": "iqmp",
}


def _read(relative: str) -> dict[str, Vector]:
    """The vectors of a file in RSA Laboratories' layout (which pyca's oaep-custom files
    follow), by "<key>.<message>", both counted from 1 as the files do."""
    vectors: dict[str, Vector] = {}
    keys = 0
    section = ""
    public: dict[str, int] = {}
    private: dict[str, int] = {}
    pending: dict[str, bytes] = {}
    count = 0
    for heading, value in _sections((RSA_VECTORS / relative).read_text()):
        if heading == "Example":
            keys, count, section, public, private = keys + 1, 0, "", {}, {}
        elif heading in ("Public key", "Private key"):
            section = heading
        elif heading == "Message":
            assert not pending, f"{relative}: a message without its encryption"
            pending = {"message": bytes.fromhex(value)}
        elif heading == "Seed":
            assert set(pending) == {"message"}, f"{relative}: a seed out of place"
            pending["seed"] = bytes.fromhex(value)
        elif heading == "Encryption":
            assert "message" in pending, f"{relative}: an encryption without its message"
            assert set(private) == set(PRIVATE_FIELDS.values()), f"{relative}: key {keys}"
            assert public == {"n": private["n"], "e": private["e"]}, f"{relative}: key {keys}"
            count += 1
            vectors[f"{keys}.{count}"] = Vector(
                fields=tuple(sorted(private.items())),
                message=pending["message"],
                ciphertext=bytes.fromhex(value),
                seed=pending.get("seed"),
            )
            pending = {}
        elif section == "Public key":
            public[{"Modulus": "n", "Exponent": "e"}[heading]] = int(value, 16)
        elif section == "Private key":
            private[PRIVATE_FIELDS[heading]] = int(value, 16)
        else:
            raise AssertionError(f"{relative}: {heading!r} outside a key")
    assert not pending, f"{relative}: a message without its encryption"
    return vectors


OAEP_SHA1 = _read("pkcs-1v2-1d2-vec/oaep-vect.txt")
OAEP_SHA256 = _read("oaep-custom/oaep-sha256-sha256.txt")
PKCS1_V15 = _read("pkcs1v15crypt-vectors.txt")


def _bits(vectors: dict[str, Vector]) -> list[int]:
    """The modulus sizes of the file's keys, in its order."""
    sizes = {name.split(".")[0]: dict(v.fields)["n"].bit_length() for name, v in vectors.items()}
    return list(sizes.values())


def test_every_published_vector_was_read() -> None:
    """The files' own counts and key sizes: a parser that dropped vectors would test fewer."""
    assert len(OAEP_SHA1) == 10 * 6 and len(OAEP_SHA256) == 10 * 6
    assert len(PKCS1_V15) == 15 * 20
    assert _bits(OAEP_SHA1) == [*range(1024, 1032), 1536, 2048]
    assert _bits(OAEP_SHA256) == [2048] * 10
    assert _bits(PKCS1_V15) == [1024] * 6 + [*range(1025, 1032), 1536, 2048]


@functools.cache
def _private_key(fields: tuple[tuple[str, int], ...]) -> rsa.RSAPrivateKey:
    """The key of the file's numbers; cryptography checks that they are one RSA key."""
    numbers = dict(fields)
    return rsa.RSAPrivateNumbers(
        p=numbers["p"],
        q=numbers["q"],
        d=numbers["d"],
        dmp1=numbers["dmp1"],
        dmq1=numbers["dmq1"],
        iqmp=numbers["iqmp"],
        public_numbers=rsa.RSAPublicNumbers(numbers["e"], numbers["n"]),
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


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def _params(vectors: dict[str, Vector]) -> list[object]:
    return [pytest.param(vector, id=name) for name, vector in vectors.items()]


def _check_oaep(vector: Vector, hash_name: str) -> None:
    key = _private_key(vector.fields)
    assert not _engine_refuses_before_rsa(vector.ciphertext, key)
    encoded = _raw_rsa(vector.ciphertext, key)
    if vector.seed is not None:
        # The published encoding is the one this file's own encoder builds from the seed.
        assert encoded == _oaep_encode(vector.message, hash_name, seed=vector.seed, k=len(encoded))
    assert oaep_decode(encoded, hash_name) == vector.message
    # Another label, or another hash, and the same encoding is refused.
    other = "sha256" if hash_name == "sha1" else "sha1"
    h_len = hashlib.new(hash_name).digest_size
    changed = {
        "another label": (encoded, hash_name, b"a label"),
        "another hash": (encoded, other, b""),
    }
    # Any byte changed: the first (not 0), the seed's, l_hash's, the message's last.
    for index in (0, 1, h_len, h_len + 1, 2 * h_len, len(encoded) // 2, len(encoded) - 1):
        changed[f"byte {index} flipped"] = (_flip(encoded, index), hash_name, b"")
    for what, (data, name, label) in changed.items():
        with pytest.raises(InvalidInput) as failed:
            oaep_decode(data, name, label)
        assert str(failed.value) == OAEP_FAILED, what


@pytest.mark.parametrize("vector", _params(OAEP_SHA1))
def test_rsa_laboratories_oaep_sha1_vectors(vector: Vector) -> None:
    _check_oaep(vector, "sha1")


@pytest.mark.parametrize("vector", _params(OAEP_SHA256))
def test_pyca_oaep_sha256_vectors(vector: Vector) -> None:
    _check_oaep(vector, "sha256")


def test_boringssl_oaep_sha512_vector_with_a_label() -> None:
    fields: dict[str, str] = {}
    for line in (RSA_VECTORS / "oaep-label.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition(" = ")
            fields[name] = value
    assert fields["RSAPadding"] == "OAEP" and fields["OAEPDigest"] == "SHA512"
    key = serialization.load_der_private_key(bytes.fromhex(fields["KEY"]), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    ciphertext, label = bytes.fromhex(fields["Input"]), bytes.fromhex(fields["OAEPLabel"])
    assert not _engine_refuses_before_rsa(ciphertext, key)
    encoded = _raw_rsa(ciphertext, key)
    assert fields["Output"] == '"Hello World"'
    assert oaep_decode(encoded, "sha512", label) == b"Hello World"
    for wrong_label in (b"", _flip(label, 0)):
        with pytest.raises(InvalidInput) as failed:
            oaep_decode(encoded, "sha512", wrong_label)
        assert str(failed.value) == OAEP_FAILED


def _broken_pkcs1(encoded: bytes) -> dict[str, bytes]:
    """The encoding with bytes changed so that it is no EME-PKCS1-v1_5 encoding at all."""
    body = encoded[2:]
    return {
        "first byte not 0": b"\x01" + encoded[1:],
        "block type 1": encoded[:1] + b"\x01" + body,
        "block type 3": encoded[:1] + b"\x03" + body,
        "a 0 among the first 8 padding bytes": encoded[:9] + b"\x00" + encoded[10:],
        "padding of 7 bytes": encoded[:9] + b"\x00" + bytes(len(encoded) - 10),
        "no 0 after the padding": encoded[:2] + body.replace(b"\x00", b"\xff"),
        "all 0": bytes(len(encoded)),
    }


@pytest.mark.parametrize("vector", _params(PKCS1_V15))
def test_rsa_laboratories_pkcs1_v15_vectors(vector: Vector) -> None:
    key = _private_key(vector.fields)
    assert not _engine_refuses_before_rsa(vector.ciphertext, key)
    encoded = _raw_rsa(vector.ciphertext, key)
    assert vector.seed is not None
    assert encoded == b"\x00\x02" + vector.seed + b"\x00" + vector.message
    assert pkcs1_v15_decode(encoded, vector.ciphertext, KEY_SECRET) == vector.message
    # Implicit rejection: no error, a message as long as a real one could be, the same one
    # each time, not the message the padding once carried, and made of the ciphertext and
    # the key's secret alone: nothing of the decrypted block shows through.
    synthetic = pkcs1_v15_decode(bytes(len(encoded)), vector.ciphertext, KEY_SECRET)
    assert len(synthetic) <= len(encoded) - 11
    assert synthetic != vector.message
    assert synthetic != pkcs1_v15_decode(encoded, vector.ciphertext, b"another key's secret")
    for what, broken in _broken_pkcs1(encoded).items():
        assert len(broken) == len(encoded), what
        decoded = pkcs1_v15_decode(broken, vector.ciphertext, KEY_SECRET)
        assert decoded == pkcs1_v15_decode(broken, vector.ciphertext, KEY_SECRET), what
        assert decoded == synthetic, what


# Cases built to the recipes of Project Wycheproof's RSA-OAEP tests, on this module's own
# EME-OAEP encoder (RFC 8017, 7.1.1 step 2), itself checked above against the published
# encodings.


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
    k: int = K,
) -> bytes:
    h_len = hashlib.new(hash_name).digest_size
    l_hash = hashlib.new(hash_name, label).digest() if l_hash is None else l_hash
    if padding_string is None:
        padding_string = bytes(k - len(message) - 2 * h_len - 2)
    db = l_hash + padding_string + separator + message
    assert len(db) == k - h_len - 1
    seed = os.urandom(h_len) if seed is None else seed
    masked_db = _xor(db, _mgf1(seed, len(db), hash_name))
    masked_seed = _xor(seed, _mgf1(masked_db, h_len, hash_name))
    return first + masked_seed + masked_db


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
