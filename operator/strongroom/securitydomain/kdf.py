"""NIST SP 800-108 key derivation in counter mode with HMAC-SHA512 as the PRF: each block is
HMAC(key, [i]_32 || label || 0x00 || context || [L]_32), i counting from 1, L in bits."""

import hashlib
import hmac

MAX_BITS = 512 * 255


def sp800_108(key: bytes, label: bytes, context: bytes = b"", bits: int = 512) -> bytes:
    if bits <= 0 or bits % 8 or bits > MAX_BITS:
        raise ValueError("the output length is a positive multiple of 8 bits")
    length = bits // 8
    out = b""
    counter = 1
    while len(out) < length:
        message = counter.to_bytes(4, "big") + label + b"\x00" + context + bits.to_bytes(4, "big")
        out += hmac.new(key, message, hashlib.sha512).digest()
        counter += 1
    return out[:length]


def data_key(root: bytes, tag: str) -> bytes:
    """The 64-byte content key of a security domain's data item: the KDF of the root key
    with the item's tag as label, no context."""
    return sp800_108(root, tag.encode("utf-8"), b"", 512)
