"""RSA encryption paddings removed after the HSM's raw RSA (RFC 8017): EME-OAEP, and
EME-PKCS1-v1_5 with implicit rejection, so that neither is a padding oracle.

The caller (`Engine.rsa_decrypt`) checks, on public values only, that the ciphertext is
exactly the modulus's length and below it, applies the private key with CKM_RSA_X_509, and
passes the encoded message, left-padded to the modulus's length, here.
"""

import hashlib
import hmac

from .errors import InvalidInput

OAEP_FAILED = "the ciphertext could not be decrypted"


def _mgf1(seed: bytes, length: int, hash_name: str) -> bytes:
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.new(hash_name, seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:length]


def oaep_decode(encoded: bytes, hash_name: str, label: bytes = b"") -> bytes:
    """EME-OAEP decoding (RFC 8017, 7.1.2) with MGF1 of the same hash; Azure Key Vault's
    RSA-OAEP and RSA-OAEP-256 use the empty label.

    Every check is folded into one flag so that the failure is the same,
    whichever check failed.
    """
    h_len = hashlib.new(hash_name).digest_size
    if len(encoded) < 2 * h_len + 2:
        raise InvalidInput(OAEP_FAILED)
    masked_seed, masked_db = encoded[1 : 1 + h_len], encoded[1 + h_len :]
    seed = bytes(
        a ^ b for a, b in zip(masked_seed, _mgf1(masked_db, h_len, hash_name), strict=True)
    )
    db = bytes(
        a ^ b for a, b in zip(masked_db, _mgf1(seed, len(masked_db), hash_name), strict=True)
    )
    label_hash = hashlib.new(hash_name, label).digest()
    bad = encoded[0] | int(not hmac.compare_digest(db[:h_len], label_hash))
    separator = -1
    for index in range(h_len, len(db)):
        found = separator < 0 and db[index] == 1
        bad |= int(separator < 0 and db[index] not in (0, 1))
        separator = index if found else separator
    if bad or separator < 0:
        raise InvalidInput(OAEP_FAILED)
    return db[separator + 1 :]


def _prf(key: bytes, label: bytes, length: int) -> bytes:
    """`length` pseudo-random bytes: HMAC-SHA256 in counter mode (NIST SP 800-108)."""
    out = b""
    counter = 0
    while len(out) < length:
        out += hmac.new(
            key, counter.to_bytes(2, "big") + label + (length * 8).to_bytes(2, "big"), "sha256"
        ).digest()
        counter += 1
    return out[:length]


def pkcs1_v15_decode(encoded: bytes, ciphertext: bytes, key_secret: bytes) -> bytes:
    """EME-PKCS1-v1_5 decoding (RFC 8017, 7.2.2) with implicit rejection.

    A malformed encoding gives a message derived from the ciphertext under
    `key_secret`: the same one for the same ciphertext, of a length a real
    message could have (0 to k-11 bytes). Both outcomes take the same steps.
    """
    k = len(encoded)
    derivation_key = hmac.new(key_secret, ciphertext, "sha256").digest()
    # The synthetic length: the last of 128 candidates (masked to the bits of
    # k-11) that is at most k-11 bytes; 0 if none is.
    max_length = k - 11
    mask = (1 << max_length.bit_length()) - 1
    candidates = _prf(derivation_key, b"length", 256)
    synthetic_length = 0
    for index in range(0, 256, 2):
        candidate = int.from_bytes(candidates[index : index + 2], "big") & mask
        fits = int(candidate <= max_length)
        synthetic_length = fits * candidate + (1 - fits) * synthetic_length
    synthetic = _prf(derivation_key, b"message", k)
    # The real encoding: 0x00 0x02, at least 8 non-zero padding bytes, 0x00, message.
    good = int(encoded[0] == 0) & int(encoded[1] == 2)
    separator = 0
    for index in range(2, k):
        first_zero = int(encoded[index] == 0) & int(separator == 0)
        separator = first_zero * index + (1 - first_zero) * separator
    good &= int(separator >= 10)
    start = good * (separator + 1) + (1 - good) * (k - synthetic_length)
    source = encoded if good else synthetic
    return source[start:]
