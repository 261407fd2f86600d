"""base64url (RFC 4648, section 5) as JOSE and Azure Key Vault write it: no padding.

The one place strongroom turns bytes and integers into base64url text and back. Decoding
is strict about the alphabet (standard base64's `+` and `/`, whitespace or any other
character is refused rather than skipped) and accepts the `=` padding some writers add.
"""

import base64
import binascii
import re

_TEXT = re.compile(r"[A-Za-z0-9_-]*={0,2}")


class Base64UrlError(ValueError):
    """The text is not base64url. The message says why, never what the text was, and reads
    after a field's name: "'value' is not valid base64url"."""


def encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode(text: str) -> bytes:
    if not isinstance(text, str) or not _TEXT.fullmatch(text):
        raise Base64UrlError("must be a base64url string")
    stripped = text.rstrip("=")
    try:
        return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError):
        raise Base64UrlError("is not valid base64url") from None


def encode_uint(value: int, length: int | None = None) -> str:
    """A non-negative integer big-endian: in `length` bytes when given (a JWK's EC
    coordinates), else in as few as hold it, at least one (a JWK's RSA `n` and `e`)."""
    if value < 0:
        raise ValueError("a negative integer has no base64url form here")
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return encode(value.to_bytes(size, "big"))


def decode_uint(text: str) -> int:
    """A big-endian non-negative integer; refuses the empty string."""
    data = decode(text)
    if not data:
        raise Base64UrlError("is empty, and so no integer")
    return int.from_bytes(data, "big")
