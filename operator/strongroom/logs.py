"""Log lines as JSON: one object per record, one physical line per object.

Every field is encoded by `json.dumps`, so quotes, backslashes, newlines and
non-ASCII characters in a message or a traceback cannot break the line or the
object; non-ASCII characters are escaped, so the line is ASCII whatever the
stream's encoding.
"""

import json
import logging
import sys
import time
from typing import Any, TextIO


class JsonFormatter(logging.Formatter):
    """Formats a record as {"time", "level", "logger", "message"}, with "exception" (the
    formatted traceback) when the record carries one and "stack" when it carries a stack."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            # Cached as the base class does, for other handlers of the same record.
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=True, default=str)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """UTC in ISO 8601 with milliseconds: 2024-05-01T12:00:00.123Z."""
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{seconds}.{int(record.msecs):03d}Z"


def configure(level: str, stream: TextIO | None = None) -> None:
    """Send every record at `level` or above to `stream` (standard error) as JSON lines;
    as logging.basicConfig, nothing changes when the root logger has handlers already."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
