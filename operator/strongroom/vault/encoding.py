"""base64url and time helpers in the forms Azure Key Vault uses on the wire."""

import time

from .. import base64url
from .errors import BadParameter


def b64url(data: bytes) -> str:
    return base64url.encode(data)


def unb64url(text: object, field: str) -> bytes:
    """A request field's base64url bytes; BadParameter naming the field when it is none."""
    if not isinstance(text, str):
        raise BadParameter(f"'{field}' must be a base64url string")
    try:
        return base64url.decode(text)
    except base64url.Base64UrlError as exc:
        raise BadParameter(f"'{field}' {exc}") from None


def now() -> int:
    return int(time.time())
