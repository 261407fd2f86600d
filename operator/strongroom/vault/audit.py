"""The audit trail: one JSON line per call, never a value, a token or key material.

Lines go straight to a file descriptor (standard output by default) in one
write each: no buffering that a crash could lose, and none of the logging
module's per-record cost on the request path.
"""

import json
import os
import sys
import time
from dataclasses import dataclass

_fd = sys.stdout.fileno() if hasattr(sys.stdout, "fileno") else 1


def send_to(fd: int) -> None:
    """Write audit lines to this file descriptor from now on."""
    global _fd
    _fd = fd


# A JSON string, quoted and escaped to ASCII (the C encoder json.dumps uses).
_string = json.encoder.encode_basestring_ascii
_stamp: tuple[int, str] = (0, "")


def _timestamp() -> str:
    """The current second in ISO 8601, formatted once per second rather than once per call."""
    global _stamp
    second = int(time.time())
    if _stamp[0] != second:
        _stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
    return _stamp[1]


@dataclass
class AuditRecord:
    caller: str
    vault: str
    operation: str
    object: str
    version: str
    outcome: int
    latency_ms: float

    def line(self) -> bytes:
        """The record as one compact JSON line (what `json.dumps` with compact separators
        writes, built field by field: this runs for every request)."""
        return (
            f'{{"time":"{_timestamp()}","audit":true,"caller":{_string(self.caller)},'
            f'"vault":{_string(self.vault)},"operation":{_string(self.operation)},'
            f'"object":{_string(self.object)},"version":{_string(self.version)},'
            f'"outcome":{int(self.outcome)},"latency_ms":{float(self.latency_ms)!r}}}\n'
        ).encode()

    def emit(self) -> None:
        os.write(_fd, self.line())
