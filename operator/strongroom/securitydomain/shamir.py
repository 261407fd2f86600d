"""Shamir's secret sharing over GF(257), byte by byte, as Managed HSM's security domain has it.

Each byte s of the secret is the constant term of its own polynomial of degree M-1 with
coefficients drawn uniformly from 0..256; share x (1..N) holds f(x) for every byte. A share
is written as 16-bit little-endian words, (x << 9) | f(x): x in the upper seven bits, the
value (0..256, nine bits) below. Any M shares give the secret back by Lagrange interpolation
at 0; fewer give nothing about it.
"""

import secrets
from collections.abc import Callable, Sequence

PRIME = 257
MAX_SHARES = 126  # x has seven bits, and x = 0 would be the secret itself
MIN_REQUIRED = 2


class ShareError(ValueError):
    """Shares that do not combine: the message says why, never what they hold."""


def _random_coefficient() -> int:
    return secrets.randbelow(PRIME)


def split(
    secret: bytes,
    required: int,
    count: int,
    coefficient: Callable[[], int] = _random_coefficient,
) -> list[bytes]:
    """`count` shares of `secret`, any `required` of which give it back. Every byte gets
    fresh coefficients (`coefficient` returns one uniform value in 0..256)."""
    if not MIN_REQUIRED <= required <= count <= MAX_SHARES:
        raise ShareError(
            f"a split needs {MIN_REQUIRED} <= required <= shares <= {MAX_SHARES}, "
            f"not {required} of {count}"
        )
    if not secret:
        raise ShareError("an empty secret has no shares")
    words: list[list[int]] = [[] for _ in range(count)]
    for byte in secret:
        coefficients = [byte] + [coefficient() for _ in range(required - 1)]
        for index in range(count):
            x = index + 1
            value = 0
            for c in reversed(coefficients):  # Horner's rule
                value = (value * x + c) % PRIME
            words[index].append((x << 9) | value)
    return [encode_share(w) for w in words]


def encode_share(words: Sequence[int]) -> bytes:
    return b"".join(w.to_bytes(2, "little") for w in words)


def decode_share(share: bytes) -> tuple[int, list[int]]:
    """The x of a share and its values; ShareError if it is no share."""
    if not share or len(share) % 2:
        raise ShareError("a share is an even, non-zero number of bytes")
    words = [int.from_bytes(share[i : i + 2], "little") for i in range(0, len(share), 2)]
    xs = {w >> 9 for w in words}
    if len(xs) != 1:
        raise ShareError("the words of a share name more than one share index")
    x = xs.pop()
    if x == 0:
        raise ShareError("a share's index is never 0")
    values = [w & 0x1FF for w in words]
    if any(v >= PRIME for v in values):
        raise ShareError("a share holds a value outside GF(257)")
    return x, values


def combine(shares: Sequence[bytes]) -> bytes:
    """The secret from shares (all of them are used: pass exactly the quorum or more)."""
    if len(shares) < MIN_REQUIRED:
        raise ShareError(f"at least {MIN_REQUIRED} shares are needed")
    decoded = [decode_share(s) for s in shares]
    xs = [x for x, _ in decoded]
    if len(set(xs)) != len(xs):
        raise ShareError("two shares have the same index")
    length = len(decoded[0][1])
    if any(len(v) != length for _, v in decoded):
        raise ShareError("the shares are of different lengths")
    # Lagrange basis at 0: l_i = prod_{j != i} x_j / (x_j - x_i)
    basis = []
    for i, xi in enumerate(xs):
        numerator = denominator = 1
        for j, xj in enumerate(xs):
            if j != i:
                numerator = numerator * xj % PRIME
                denominator = denominator * (xj - xi) % PRIME
        basis.append(numerator * pow(denominator, PRIME - 2, PRIME) % PRIME)
    out = bytearray()
    for position in range(length):
        value = sum(b * v[position] for b, (_, v) in zip(basis, decoded, strict=True)) % PRIME
        if value > 255:
            raise ShareError("the shares do not belong together")
        out.append(value)
    return bytes(out)
