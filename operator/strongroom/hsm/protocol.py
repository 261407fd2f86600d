"""The wire format between the vault server and the HSM sidecar.

One JSON document per line over a unix socket; bytes travel as {"b": base64}.
Requests are `{"i": id, "op": name, "a": {arguments}}`, answers
`{"i": id, "r": result}` or `{"i": id, "e": [error class, message]}`.
"""

import base64
import json
import re
from typing import Any

from . import errors

ERRORS: dict[str, type[errors.HsmError]] = {
    cls.__name__: cls
    for cls in (
        errors.HsmError,
        errors.HsmUnavailable,
        errors.TokenNotFound,
        errors.KeyNotFound,
        errors.OperationNotAllowed,
        errors.InvalidInput,
        errors.KeyNotLoaded,
        errors.NotActivated,
        errors.DomainConflict,
    )
}

MAX_LINE = 4 * 1024 * 1024
# Not an HSM operation: the sidecar's own metrics, as Prometheus text, for the vault server to
# serve beside its own (the pool's pod has one metrics port: the vault server's).
METRICS_OP = "sidecar_metrics"
LEADING_ID = re.compile(rb'\{"i":(\d{1,18})[,}]')


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"b": base64.b64encode(value).decode("ascii")}
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and "b" in obj and isinstance(obj["b"], str):
        return base64.b64decode(obj["b"])
    return obj


_encoder = json.JSONEncoder(default=_default, separators=(",", ":")).encode
_decoder = json.JSONDecoder(object_hook=_hook).decode


def encode(message: dict[str, Any]) -> bytes:
    return _encoder(message).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    message = _decoder(line.decode())
    if not isinstance(message, dict):
        raise ValueError("a message must be a JSON object")
    return message


def error_from(payload: list[str]) -> errors.HsmError:
    name, message = payload
    return ERRORS.get(name, errors.HsmError)(message)
