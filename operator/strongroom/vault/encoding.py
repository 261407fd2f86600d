"""base64url and time helpers in the forms Azure Key Vault uses on the wire."""

import base64
import binascii
import re
import time

from .errors import BadParameter

_BASE64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: object, field: str) -> bytes:
    if not isinstance(text, str) or not _BASE64URL.fullmatch(text):
        raise BadParameter(f"'{field}' must be a base64url string")
    try:
        return base64.urlsafe_b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise BadParameter(f"'{field}' is not valid base64url") from None


def now() -> int:
    return int(time.time())
