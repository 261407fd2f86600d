"""The wire format between the vault server and the HSM sidecar.

One JSON document per line over a unix socket; bytes travel as {"b": base64}.
Requests are `{"i": id, "op": name, "a": {arguments}}`, answers
`{"i": id, "r": result}` or `{"i": id, "e": [error class, message]}`.

`sign`, the operation a busy vault runs most, also has a plain line form, with no JSON on
either side: the request `S<id> <vault> <key id> <alg> <digest, base64>` and its answer
`R<id> <signature, base64>` (an error is answered as above). The client uses it whenever
the three names are printable ASCII without spaces (always, for names the vault server
checked), JSON otherwise.
"""

import base64
import json
import re
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Overlong:
    """A line longer than MAX_LINE, thrown away as it arrived; `request_id` began it, if known."""

    request_id: int | None


class Lines:
    """The lines of a byte stream, each at most MAX_LINE long.

    A longer line is thrown away as it arrives (never held whole) and given back as one
    `Overlong`; the stream stays in step, so the lines after it are read as usual.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._start = 0  # what lies before has been given back
        # While an overlong line is being thrown away: the id that began it, if known.
        self._skipping: tuple[int | None] | None = None

    def feed(self, data: bytes) -> None:
        if self._start:
            del self._buffer[: self._start]
            self._start = 0
        self._buffer += data

    def clear(self) -> None:
        self._buffer.clear()
        self._start = 0

    def next(self) -> bytes | Overlong | None:
        """The next complete line (with its newline), or None until more is fed."""
        buffer, start = self._buffer, self._start
        while True:
            end = buffer.find(b"\n", start)
            if self._skipping is not None:
                if end < 0:
                    self._start = len(buffer)
                    return None
                overlong = Overlong(self._skipping[0])
                self._skipping = None
                self._start = end + 1
                return overlong
            if end < 0 or end - start > MAX_LINE:
                if end >= 0 or len(buffer) - start > MAX_LINE:
                    match = LEADING_ID.match(buffer, start)
                    self._skipping = (int(match.group(1)) if match else None,)
                    if end < 0:
                        start = len(buffer)
                    continue
                self._start = start
                return None
            self._start = end + 1
            return bytes(buffer[start : end + 1])


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


# What begins a plain `sign` request line and its answer line.
SIGN_REQUEST = b"S"
SIGN_ANSWER = b"R"


def frame(request_id: int, op: str, args: dict[str, Any]) -> bytes:
    """The request's line: the plain form for a `sign` whose names allow it, else JSON."""
    if op == "sign":
        names = (args.get("vault"), args.get("key_id"), args.get("alg"))
        digest = args.get("digest")
        if isinstance(digest, bytes) and all(
            isinstance(name, str)
            and name
            and name.isascii()
            and name.isprintable()
            and " " not in name
            for name in names
        ):
            encoded = base64.b64encode(digest).decode()
            return f"S{request_id} {names[0]} {names[1]} {names[2]} {encoded}\n".encode()
    return encode({"i": request_id, "op": op, "a": args})


def decode_sign(line: bytes) -> tuple[int, dict[str, Any]]:
    """The id and arguments of a plain `sign` request line; ValueError if it is not one."""
    fields = line.rstrip(b"\n").split(b" ")
    if len(fields) != 5 or not fields[0].startswith(SIGN_REQUEST):
        raise ValueError("a sign line has five fields")
    request_id = int(fields[0][1:])
    vault, key_id, alg = (field.decode("ascii") for field in fields[1:4])
    digest = base64.b64decode(fields[4], validate=True)
    return request_id, {"vault": vault, "key_id": key_id, "alg": alg, "digest": digest}


def sign_answer(request_id: int, signature: bytes) -> bytes:
    return b"R%d %s\n" % (request_id, base64.b64encode(signature))


def decode_sign_answer(line: bytes) -> tuple[int, bytes]:
    """The id and signature of a plain `sign` answer line; ValueError if it is not one."""
    head, _, encoded = line.rstrip(b"\n").partition(b" ")
    return int(head[1:]), base64.b64decode(encoded, validate=True)


def error_from(payload: list[str]) -> errors.HsmError:
    name, message = payload
    return ERRORS.get(name, errors.HsmError)(message)
